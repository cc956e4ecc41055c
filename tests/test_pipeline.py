"""detect(): MediaPipe's own results on real photos, batching, sharding, presets."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxanchors as ja
from jaxanchors import _compaction as compaction
from jaxanchors import pipeline, presets
from jaxanchors.letterbox import LetterboxTransform, letterbox
import mediapipe_data
import x64_cases
import _util
from _util import count_traces

# Which preset reproduces each recorded graph.
PRESET_OF_MODEL = {"face_short_range": "face_short_range", "face_full_range": "face_full_range",
                   "palm_lite": "palm", "palm_full": "palm", "pose": "pose"}


def _frame(det: ja.Detections, i: int = 0) -> ja.Detections:
  return ja.Detections(*(np.asarray(x)[i] for x in det))


def assert_matches_mediapipe(det: ja.Detections, arrays: dict, stage: str) -> None:
  """Same count and order; boxes and keypoints within 1e-6, scores within 1e-6."""
  n = int(det.valid.sum())
  assert n == len(arrays[f"{stage}_scores"])
  assert det.valid[:n].all()
  np.testing.assert_allclose(np.asarray(ja.to_xywh(det.boxes))[:n], arrays[f"{stage}_boxes"],
                             rtol=0, atol=1e-6)
  np.testing.assert_allclose(det.keypoints[:n], arrays[f"{stage}_keypoints"], rtol=0, atol=1e-6)
  np.testing.assert_allclose(det.scores[:n], arrays[f"{stage}_scores"], rtol=0, atol=1e-6)
  np.testing.assert_array_equal(det.classes[:n], arrays[f"{stage}_labels"])


@pytest.mark.parametrize("name", mediapipe_data.CASES)
def test_each_stage_reproduces_mediapipe_from_its_raw_tensors(name):
  case = mediapipe_data.load(name)
  a = case.arrays
  preset = presets.get(PRESET_OF_MODEL[case.model])
  np.testing.assert_array_equal(ja.anchors_numpy(preset.anchors), a["anchors"])

  decoded = _frame(ja.decode(a["raw_boxes"], a["raw_scores"], a["anchors"], preset.decoder))
  np.testing.assert_array_equal(np.nonzero(decoded.valid)[0], a["decoded_anchor_index"])
  idx = a["decoded_anchor_index"]
  assert_matches_mediapipe(jax.tree.map(lambda x: x[idx], decoded), a, "decoded")

  in_tensor = _frame(pipeline.detect(a["raw_boxes"], a["raw_scores"], preset, max_detections=8))
  assert_matches_mediapipe(in_tensor, a, "nms")

  transform = LetterboxTransform(a["letterbox_padding"], a["transform_matrix"])
  final = _frame(pipeline.detect(a["raw_boxes"], a["raw_scores"], preset, max_detections=8,
                                 transform=transform))
  assert_matches_mediapipe(final, a, "final")


@pytest.mark.parametrize("name", mediapipe_data.CASES)
def test_photo_to_detections_with_our_letterbox(name):
  """Our letterbox transform (from the photo alone) maps back as MediaPipe does."""
  case = mediapipe_data.load(name)
  image = mediapipe_data.photo(case)
  preset = presets.get(PRESET_OF_MODEL[case.model])
  _, transform = letterbox(image, preset.preprocessing)
  final = _frame(pipeline.detect(case.arrays["raw_boxes"], case.arrays["raw_scores"], preset,
                                 max_detections=8, transform=transform))
  assert_matches_mediapipe(final, case.arrays, "final")


# -- the real models ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def litert():
  pytest.importorskip("ai_edge_litert", reason="the real-model tests need the 'models' extra "
                      "(pip install -e '.[models]')")
  from jaxanchors import models
  return models


@pytest.mark.parametrize("name", mediapipe_data.CASES)
def test_real_model_end_to_end_equals_mediapipe(litert, name):
  """Photo -> our letterbox -> the real .tflite -> detect: MediaPipe's detections."""
  case = mediapipe_data.load(name)
  image = mediapipe_data.photo(case)
  preset = presets.get(PRESET_OF_MODEL[case.model])
  model = litert.TFLiteModel.from_name(case.model)
  tensor, transform = letterbox(image, preset.preprocessing)
  raw_boxes, raw_scores = model(np.asarray(tensor)[None])
  np.testing.assert_array_equal(raw_boxes, case.arrays["raw_boxes"])
  np.testing.assert_array_equal(raw_scores, case.arrays["raw_scores"])
  final = _frame(pipeline.detect(raw_boxes, raw_scores, preset, max_detections=8,
                                 transform=transform))
  assert_matches_mediapipe(final, case.arrays, "final")


# The obvious subject of each photo, located by hand in normalised image
# coordinates (x0, y0, x1, y1): the astronaut's face, the cameraman's face.
FACES = {"astronaut": (0.33, 0.12, 0.55, 0.38), "camera": (0.35, 0.18, 0.58, 0.45)}


@pytest.mark.parametrize("model", ["face_short_range", "face_full_range"])
@pytest.mark.parametrize("photo", sorted(FACES))
def test_face_presets_find_the_face(litert, model, photo):
  case = mediapipe_data.load(f"{model}_{photo}")
  image = mediapipe_data.photo(case)
  preset = presets.get(model)
  tensor, transform = letterbox(image, preset.preprocessing)
  raw = litert.TFLiteModel.from_name(model)(np.asarray(tensor)[None])
  det = _frame(pipeline.detect(*raw, preset, max_detections=8, transform=transform))
  assert det.valid.sum() == 1
  x0, y0, x1, y1 = FACES[photo]
  cx, cy = (det.boxes[0, 0] + det.boxes[0, 2]) / 2, (det.boxes[0, 1] + det.boxes[0, 3]) / 2
  assert x0 < cx < x1 and y0 < cy < y1
  assert det.scores[0] > 0.75


def test_pose_and_palm_presets_find_the_person_and_hands(litert):
  # Pose on the astronaut: one person whose first keypoint (hip centre) lies
  # in the lower part of the frame, below the face.
  case = mediapipe_data.load("pose_astronaut")
  image = mediapipe_data.photo(case)
  preset = presets.get("pose")
  tensor, transform = letterbox(image, preset.preprocessing)
  det = _frame(pipeline.detect(*litert.TFLiteModel.from_name("pose")(np.asarray(tensor)[None]),
                               preset, max_detections=8, transform=transform))
  assert det.valid.sum() == 1 and det.scores[0] > 0.5
  hip = det.keypoints[0, 0]
  assert 0.2 < hip[0] < 0.8 and hip[1] > 0.5
  # Palm on the cameraman's gloved hands on the camera (the only hands in
  # scikit-image's photos): two detections, both in the lower half.
  case = mediapipe_data.load("palm_full_camera_hands")
  image = mediapipe_data.photo(case)
  preset = presets.get("palm")
  tensor, transform = letterbox(image, preset.preprocessing)
  det = _frame(pipeline.detect(*litert.TFLiteModel.from_name("palm_full")(np.asarray(tensor)[None]),
                               preset, max_detections=8, transform=transform))
  assert det.valid.sum() == 2 and (det.scores[:2] > 0.5).all()


# -- batching, tracing, sharding -------------------------------------------------------------


def _random_raw(preset, batch, seed=0):
  rng = np.random.default_rng(seed)
  d = preset.decoder
  boxes = rng.normal(0, 0.05 * d.x_scale, batch + (d.num_boxes, d.num_coords)).astype(np.float32)
  scores = rng.normal(-3, 3, batch + (d.num_boxes, d.num_classes)).astype(np.float32)
  return boxes, scores


def test_batched_detect_equals_per_frame_and_traces_once():
  preset = presets.get("face_short_range")
  boxes, scores = _random_raw(preset, (2, 3))
  padding = np.array([0.0, 0.1, 0.0, 0.1], np.float32)
  batched = pipeline.detect(boxes, scores, preset, max_detections=6, transform=padding)
  assert batched.boxes.shape == (2, 3, 6, 4) and batched.keypoints.shape == (2, 3, 6, 6, 2)
  for i in range(2):
    for j in range(3):
      one = pipeline.detect(boxes[i, j], scores[i, j], preset, max_detections=6,
                            transform=padding)
      chex.assert_trees_all_equal(jax.tree.map(lambda x: x[i, j], batched), one)
  with count_traces("_detect") as traces:
    pipeline.detect(boxes + 1, scores, "face_short_range", max_detections=6, transform=padding)
  assert traces.count == 0


def _unfiltered(boxes, scores, options, max_detections):
  """decode + non_max_suppression on every anchor: the definition the pre-filtered path of
  detect must reproduce."""
  anchors = ja.generate_anchors(options.anchors)
  return ja.non_max_suppression(ja.decode(boxes, scores, anchors, options.decoder), options.nms,
                                max_detections=max_detections)


def _assert_same_detections(got, want):
  for name in ("valid", "scores", "classes"):
    np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)
  np.testing.assert_allclose(got.boxes, want.boxes, rtol=0, atol=1e-6)
  np.testing.assert_allclose(got.keypoints, want.keypoints, rtol=0, atol=1e-6)


@pytest.mark.parametrize(("algorithm", "decoder_changes"), [
    ("WEIGHTED", {}), ("DEFAULT", {}), ("WEIGHTED", {"min_score_thresh": 0.75}),
    ("DEFAULT", {"flip_vertically": True}),
    # Clipping raises every logit below -0.1 to -0.1, whose sigmoid (0.475) passes 0.45:
    # candidacy must be decided on the clipped logit, not the raw one.
    ("WEIGHTED", {"score_clipping_thresh": 0.1, "min_score_thresh": 0.45}),
])
def test_prefiltered_detect_equals_decoding_every_anchor(algorithm, decoder_changes):
  """detect decides candidacy from the logits and decodes only those anchors."""
  preset = presets.get("face_short_range")
  options = pipeline.PipelineOptions(
      anchors=preset.anchors, decoder=dataclasses.replace(preset.decoder, **decoder_changes),
      nms=dataclasses.replace(preset.nms, algorithm=algorithm), mapping=preset.mapping)
  assert pipeline._prefilter_applies(options.decoder)
  rng = np.random.default_rng(5)
  boxes, scores = _random_raw(preset, (4,), seed=5)
  thr = options.decoder.min_score_thresh
  logit = np.float32(np.log(thr) - np.log1p(-thr))
  # Logits at, just around and far from the threshold; NaN and infinities; one frame with
  # more candidates than any compaction bucket below N (the whole-row path).
  near = rng.choice(np.array([logit, np.nextafter(logit, np.float32(-1)),
                              np.nextafter(logit, np.float32(1)), logit - 0.03, logit + 0.03,
                              np.nan, np.inf, -np.inf], np.float32), (4, 120))
  scores[:, :120, 0] = near
  scores[3, :, 0] = rng.normal(logit + 1, 1, 896)
  scores[2, 30:, 0] = -20  # few candidates: the smallest bucket when alone
  scores[0, 80:, 0] = -20  # the next bucket
  got = pipeline.detect(boxes, scores, options, max_detections=40)
  want = _unfiltered(boxes, scores, options, 40)
  assert int(want.valid.sum()) > 40 + 25
  _assert_same_detections(got, want)
  # Alone, each frame takes the bucket its own candidate count needs.
  if "score_clipping_thresh" not in decoder_changes:  # with it, every anchor is a candidate
    counts = (scores[..., 0] >= logit - pipeline._LOGIT_MARGIN).sum(-1)
    sizes = compaction.bucket_sizes(896, pipeline._BUCKETS)
    assert counts[2] <= sizes[0] < counts[0] <= sizes[1] and sizes[-2] < counts[3] <= sizes[-1]
  if algorithm == "DEFAULT":  # one frame at a time: WEIGHTED is enough (fast-path tests too)
    return
  for f in range(4):
    _assert_same_detections(pipeline.detect(boxes[f], scores[f], options, max_detections=40),
                            jax.tree.map(lambda x: x[f], want))


def _with_threshold(preset, thr, **nms_changes):
  return pipeline.PipelineOptions(
      anchors=preset.anchors, decoder=dataclasses.replace(preset.decoder, min_score_thresh=thr),
      nms=dataclasses.replace(preset.nms, **nms_changes), mapping=preset.mapping)


def test_per_call_threshold_equals_the_options_and_does_not_recompile():
  """min_score_thresh=x is DecoderOptions(min_score_thresh=x), through one compiled program."""
  preset = presets.get("face_short_range")
  boxes, scores = _random_raw(preset, (3,), seed=11)
  scores[:, :40, 0] = np.linspace(-12, 12, 40)  # every threshold's logit is near some anchor
  pipeline.detect(boxes, scores, preset, max_detections=12)  # compiled here
  # 0.5 is the preset's own; 1e-5 and -1 are below the pre-filter's range (nothing is
  # filtered), 0.99999 and 1.0 above it (the bound of 1 - 1e-4 is used).
  thresholds = (0.5, 0.3, 0.9, 1e-5, 0.0, -1.0, 0.99999, 1.0, np.float32(0.7))
  results = []
  with count_traces("_detect") as traces:
    default = pipeline.detect(boxes, scores, preset, max_detections=12)
    for thr in thresholds:
      results.append(pipeline.detect(boxes, scores, preset, max_detections=12,
                                     min_score_thresh=thr))
  assert traces.count == 0
  chex.assert_trees_all_equal(default, results[0])
  counts = []
  for thr, got in zip(thresholds, results):
    # The definition: the options' own threshold, every anchor decoded, then NMS.
    _assert_same_detections(got, _unfiltered(boxes, scores, _with_threshold(preset, float(thr)),
                                             12))
    counts.append(int(got.valid.sum()))
  assert len(set(counts)) >= 4, counts


def test_per_call_threshold_is_checked():
  preset = presets.get("face_short_range")
  boxes, scores = _random_raw(preset, (1,))
  for bad in (float("nan"), float("inf"), -float("inf")):
    with pytest.raises(ValueError, match="min_score_thresh must be finite"):
      pipeline.detect(boxes, scores, preset, max_detections=2, min_score_thresh=bad)
  with pytest.raises(ValueError, match=r"min_score_thresh=1.5 is above 1"):
    pipeline.detect(boxes, scores, preset, max_detections=2, min_score_thresh=1.5)
  with pytest.raises(TypeError, match="min_score_thresh must be a real number"):
    pipeline.detect(boxes, scores, preset, max_detections=2, min_score_thresh="0.5")
  with pytest.raises(ValueError, match=r"min_score_thresh must be a float scalar"):
    jax.jit(lambda t: pipeline.detect(boxes, scores, preset, max_detections=2,
                                      min_score_thresh=t))(jnp.ones(2))
  # Raw (non-sigmoid) scores have no upper bound.
  raw = pipeline.PipelineOptions(
      anchors=preset.anchors, nms=preset.nms,
      decoder=dataclasses.replace(preset.decoder, sigmoid_score=False, score_clipping_thresh=None))
  det = pipeline.detect(boxes, scores, raw, max_detections=2, min_score_thresh=1.5)
  want = pipeline.detect(boxes, scores, _with_threshold(raw, 1.5), max_detections=2)
  chex.assert_trees_all_equal(det, want)


def test_per_call_threshold_traced_inside_a_users_jit():
  preset = presets.get("face_short_range")
  boxes, scores = _random_raw(preset, (2,), seed=12)
  fn = jax.jit(lambda b, s, t: pipeline.detect(b, s, preset, max_detections=6,
                                               min_score_thresh=t))
  for thr in (0.2, 0.6):
    chex.assert_trees_all_equal(
        fn(boxes, scores, thr),
        pipeline.detect(boxes, scores, _with_threshold(preset, thr), max_detections=6))


def test_detect_images_per_call_threshold_does_not_recompile():
  preset = presets.get("face_short_range")
  rng = np.random.default_rng(0)
  images = rng.integers(0, 255, (1, 96, 80, 3), dtype=np.uint8)
  default = pipeline.detect_images(images, preset, max_detections=4)
  with count_traces("_detect_images") as traces:
    low = pipeline.detect_images(images, preset, max_detections=4, min_score_thresh=1e-3)
    same = pipeline.detect_images(images, preset, max_detections=4, min_score_thresh=0.5)
  assert traces.count == 0
  chex.assert_trees_all_equal(same, default)
  assert int(low.valid.sum()) > int(default.valid.sum())
  with pytest.raises(ValueError, match="above 1"):
    pipeline.detect_images(images, preset, max_detections=4, min_score_thresh=2.0)


def test_detect_under_vmap_equals_batched():
  """Under a user's vmap the bucket switch runs every bucket: same results."""
  preset = presets.get("face_short_range")
  boxes, scores = _random_raw(preset, (3,), seed=8)
  scores[1, :300, 0] = 2.0  # frames needing different buckets
  batched = pipeline.detect(boxes, scores, preset, max_detections=8)
  mapped = jax.vmap(lambda b, s: pipeline.detect(b, s, preset, max_detections=8))(boxes, scores)
  assert int(batched.valid.sum()) > 8
  chex.assert_trees_all_equal(mapped, batched)


def test_mapping_back_and_blending_are_true_divisions_in_every_program():
  """A padding shared by the batch, WEIGHTED blending: batched, vmapped and frame-by-frame
  calls give the same bits, and the mapping equals NumPy's float32 division of the
  unmapped detections. (XLA turned some of these divisions into products by reciprocals
  in one program and not in another: an ulp apart in 1 value in 10.)"""
  rng = np.random.default_rng(0)
  boxes = rng.normal(0, 3, (8, 2016, 18)).astype(np.float32)
  scores = rng.normal(-2, 3, (8, 2016, 1)).astype(np.float32)
  pad = np.array([0.1, 0.0, 0.13, 0.0], np.float32)
  run = lambda b, s, **kw: pipeline.detect(b, s, "palm", max_detections=5, **kw)  # noqa: E731
  batched = run(boxes, scores, transform=pad)
  assert int(batched.valid.sum()) >= 20
  chex.assert_trees_all_equal(jax.vmap(lambda b, s: run(b, s, transform=pad))(boxes, scores),
                              batched)
  frames = [run(boxes[i], scores[i], transform=pad) for i in range(8)]
  chex.assert_trees_all_equal(jax.tree.map(lambda *a: jnp.stack(a), *frames), batched)
  plain = run(boxes, scores)
  sx = np.float32(1) - (pad[0] + pad[2])
  np.testing.assert_array_equal(batched.keypoints[..., 0],
                                (np.asarray(plain.keypoints[..., 0]) - pad[0]) / sx)
  np.testing.assert_array_equal(batched.boxes[..., 2],
                                (np.asarray(plain.boxes[..., 2]) - pad[0]) / sx)


def test_detect_falls_back_to_decoding_every_anchor():
  """Options the logit pre-filter cannot serve (raw scores, bfloat16 logits) and top_k."""
  face = presets.get("face_short_range")
  raw = dataclasses.replace(face.decoder, sigmoid_score=False, score_clipping_thresh=None,
                            min_score_thresh=2.0)
  options = pipeline.PipelineOptions(anchors=face.anchors, decoder=raw, nms=face.nms)
  assert not pipeline._prefilter_applies(options.decoder)
  boxes, scores = _random_raw(face, (2,), seed=6)
  want = _unfiltered(boxes, scores, options, 8)
  assert int(want.valid.sum()) > 0
  _assert_same_detections(pipeline.detect(boxes, scores, options, max_detections=8), want)
  # bfloat16 logits: the sigmoid rounds by up to 2**-8 near 1, more than the bound's margin
  # covers (at threshold 0.99, logit 4.4 rounds to a passing 0.98828125).
  high = dataclasses.replace(face.decoder, min_score_thresh=0.99)
  options = pipeline.PipelineOptions(anchors=face.anchors, decoder=high, nms=face.nms)
  boxes, scores = _random_raw(face, (2,), seed=7)
  scores[:, :200, 0] = np.linspace(4.3, 4.6, 200)
  boxes, scores = jnp.asarray(boxes, jnp.bfloat16), jnp.asarray(scores, jnp.bfloat16)
  want = _unfiltered(boxes, scores, options, 8)
  assert int(want.valid.sum()) > 0
  _assert_same_detections(pipeline.detect(boxes, scores, options, max_detections=8), want)


def _dense_frames(preset, batch, seed, faces, per_face):
  """Frames whose faces light up ``per_face`` anchors each (as a detector's output does):
  ``faces[i]`` faces in frame ``i``, logits around the threshold's, boxes around the face."""
  d = preset.decoder
  anchors = np.asarray(ja.anchors_numpy(preset.anchors))
  rng = np.random.default_rng(seed)
  boxes = rng.normal(0, 2, (batch, d.num_boxes, d.num_coords)).astype(np.float32)
  scores = rng.normal(-6, 2, (batch, d.num_boxes, d.num_classes)).astype(np.float32)
  logit = np.log(d.min_score_thresh) - np.log1p(-d.min_score_thresh)
  for f in range(batch):
    for _ in range(faces[f]):
      centre, size = rng.uniform(0.1, 0.9, 2), rng.uniform(0.05, 0.3)
      near = np.argsort(np.sum((anchors[:, :2] - centre) ** 2, axis=1))[:per_face]
      a = anchors[near]
      if d.num_keypoints:  # XYWH rows (the BlazeFace family)
        boxes[f, near, 0:2] = (centre + rng.normal(0, 0.01, (per_face, 2)) - a[:, :2]) \
            / a[:, 2:] * d.x_scale
        boxes[f, near, 2:4] = np.log(size / a[:, 2:]) * d.w_scale \
            if d.apply_exponential_on_box_size else size / a[:, 2:] * d.w_scale
      cls = rng.integers(0, d.num_classes, per_face)
      scores[f, near, cls] = logit + rng.normal(0.5, 1.5, per_face)
  return boxes, scores


# One preset of each family: short-range face (896 anchors), full-range face (2304),
# palm (2016), pose (2254), SSD multi-class (91 classes, class 0 ignored).
FAMILIES = ["face_short_range", "face_full_range", "palm", "pose", "ssdlite_coco"]


@pytest.mark.parametrize("name", FAMILIES)
def test_fast_path_equals_decoding_every_anchor_for_dense_and_mixed_frames(name):
  """Dense frames, frames of very different candidate counts in one batch, and one frame."""
  preset = presets.get(name)
  assert pipeline._prefilter_applies(preset.decoder)
  faces = [0, 8, 1, 3, 0, 6]
  boxes, scores = _dense_frames(preset, len(faces), 31, faces, 40)
  scores[4, :, :] = np.nan if name == "pose" else 9.0  # every anchor a candidate (or none)
  want = _unfiltered(boxes, scores, pipeline._resolve(name), 12)
  assert int(want.valid.sum()) > 12
  got = pipeline.detect(boxes, scores, name, max_detections=12)
  _assert_same_detections(got, want)
  _assert_descending(got)
  for f in (0, 1, 2):  # B=1
    _assert_same_detections(pipeline.detect(boxes[f:f + 1], scores[f:f + 1], name,
                                            max_detections=12),
                            jax.tree.map(lambda x: x[f:f + 1], want))


@pytest.mark.parametrize("decoder_changes", [
    {"max_results": 5}, {"allow_classes": (0,)}, {"ignore_classes": (0,)},
])
def test_fast_path_class_filters_and_max_results(decoder_changes):
  """max_results counts passing anchors in anchor order; class 0 not allowed means none."""
  preset = presets.get("face_short_range")
  options = pipeline.PipelineOptions(
      anchors=preset.anchors, decoder=dataclasses.replace(preset.decoder, **decoder_changes),
      nms=preset.nms)
  boxes, scores = _dense_frames(preset, 3, 32, [4, 1, 0], 30)
  want = _unfiltered(boxes, scores, options, 10)
  _assert_same_detections(pipeline.detect(boxes, scores, options, max_detections=10), want)
  if "ignore_classes" in decoder_changes:
    assert not want.valid.any()
  else:
    assert want.valid.any()


def test_grouped_large_batch_equals_decoding_every_anchor():
  """More frames than a group: frames sorted by candidate count, groups of their own bucket."""
  preset = presets.get("face_short_range")
  b = pipeline._GROUP * 2 + 3
  rng = np.random.default_rng(33)
  faces = rng.integers(0, 3, b)
  faces[5] = 9  # one dense frame
  boxes, scores = _dense_frames(preset, b, 33, faces, 25)
  scores[7] = 9.0  # one frame whose every anchor is a candidate
  want = _unfiltered(boxes, scores, pipeline._resolve(preset), 10)
  for algorithm in ("WEIGHTED", "DEFAULT"):
    options = pipeline.PipelineOptions(
        anchors=preset.anchors, decoder=preset.decoder,
        nms=dataclasses.replace(preset.nms, algorithm=algorithm), mapping=preset.mapping)
    if algorithm == "DEFAULT":
      want = _unfiltered(boxes, scores, options, 10)
    got = pipeline.detect(boxes.reshape(1, b, 896, 16), scores.reshape(1, b, 896, 1), options,
                          max_detections=10)
    _assert_same_detections(jax.tree.map(lambda x: x[0], got), want)


def _assert_descending(det):
  """Valid slots come first, in descending score order."""
  for valid, scores in zip(np.asarray(det.valid), np.asarray(det.scores)):
    assert not np.any(valid[1:] & ~valid[:-1])
    assert np.all(np.diff(scores[valid]) <= 0)


@pytest.mark.parametrize("name", [n for n in presets.names() if n not in FAMILIES])
def test_every_preset_runs(name):
  """The presets the fast-path tests above do not run (those check the same)."""
  preset = presets.get(name)
  boxes, scores = _random_raw(preset, (6,), seed=len(name))
  det = pipeline.detect(boxes, scores, name, max_detections=12)
  assert det.boxes.shape == (6, 12, 4) and det.valid.dtype == jnp.bool_
  assert det.valid.any()
  _assert_descending(det)


def test_bad_transform_and_config():
  preset = presets.get("face_short_range")
  boxes, scores = _random_raw(preset, (2,))
  with pytest.raises(ValueError, match="does not fit"):
    pipeline.detect(boxes, scores, preset, max_detections=2, transform=np.zeros((3, 4)))
  with pytest.raises(ValueError, match="does not fit"):
    pipeline.detect(boxes, scores, preset, max_detections=2, transform=np.zeros((4, 3)))
  with pytest.raises(ValueError, match="unknown preset"):
    pipeline.detect(boxes, scores, "face", max_detections=2)
  with pytest.raises(ValueError, match="max_detections"):
    pipeline.detect(boxes, scores, preset, max_detections=0)
  with pytest.raises(ValueError, match="num_coords=16"):
    pipeline.detect(boxes[..., :12], scores, preset, max_detections=2)


_SHARDING_SCRIPT = textwrap.dedent("""
    import numpy as np, jax
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    from jaxanchors import pipeline, presets
    from jaxanchors.letterbox import LetterboxTransform
    assert jax.device_count() == 8, jax.devices()
    mesh = Mesh(np.array(jax.devices()), ("batch",))
    shard = lambda x: jax.device_put(x, NamedSharding(mesh, P("batch")))
    one = lambda x: jax.device_put(x, jax.devices()[0])
    rng = np.random.default_rng(0)
    padding = np.tile(np.array([0.0, 0.125, 0.0, 0.125], np.float32), (16, 1))
    matrix = np.tile(np.array([[1, 0, 0, 0], [0, 4 / 3, 0, -1 / 6], [0, 0, 4 / 3, 0],
                               [0, 0, 0, 1]], np.float32), (16, 1, 1))
    # Both ways of mapping back: projection (faces), letterbox removal (pose).
    for name, transform in (("face_short_range", LetterboxTransform(padding, matrix)),
                            ("pose", padding)):
        d = presets.get(name).decoder
        boxes = rng.normal(0, 6, (16, d.num_boxes, d.num_coords)).astype(np.float32)
        scores = rng.normal(-3, 3, (16, d.num_boxes, 1)).astype(np.float32)
        single = pipeline.detect(one(boxes), one(scores), name, max_detections=8,
                                 transform=jax.tree.map(one, transform))
        sharded = pipeline.detect(shard(boxes), shard(scores), name, max_detections=8,
                                  transform=jax.tree.map(shard, transform))
        assert len(sharded.boxes.sharding.device_set) == 8, sharded.boxes.sharding
        for x, y in zip(single, sharded):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
        print("valid", int(np.asarray(single.valid).sum()))
""")



def test_sharded_detect_equals_single_device():
  stdout = _util.run_on_host_devices(_SHARDING_SCRIPT, timeout=300)
  assert int(stdout.split()[-1]) > 0  # the frames did produce detections


# -- bad input never leaks ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["face_short_range", "ssdlite_coco"])
def test_non_finite_keypoints_never_reach_a_valid_slot(name):
  """A NaN or inf in an anchor's keypoint columns drops that anchor, as a NaN box does."""
  preset = presets.get(name)
  d = preset.decoder
  boxes, scores = _random_raw(preset, (2,), seed=21)
  if d.num_keypoints == 0:  # ssdlite: the box columns instead
    columns = list(range(4))
  else:
    columns = list(range(d.keypoint_coord_offset, d.num_coords))
  scores[:, :60] = 4.0  # confident, so they would be emitted (DEFAULT) or blended (WEIGHTED)
  bad = np.zeros(boxes.shape[:2], bool)
  bad[:, :60:3] = True
  for f, i in zip(*np.nonzero(bad)):
    boxes[f, i, columns[(i // 3) % len(columns)]] = [np.nan, np.inf, -np.inf][i % 3]
  got = pipeline.detect(boxes, scores, name, max_detections=20)
  dropped = scores.copy()
  dropped[bad] = -np.inf
  want = pipeline.detect(np.where(bad[..., None], 0, boxes), dropped, name, max_detections=20)
  assert int(want.valid.sum()) > 4
  chex.assert_trees_all_equal(got, want)
  assert np.all(np.isfinite(np.asarray(got.keypoints)))
  # The composed path (every anchor decoded, then NMS) drops them too.
  options = pipeline._resolve(name)
  _assert_same_detections(_unfiltered(boxes, scores, options, 20), want)


def test_detect_on_zero_frames_returns_empty_results():
  preset = presets.get("face_short_range")
  boxes, scores = _random_raw(preset, (2,))
  # The shapes and dtypes of two frames' results (traced, not compiled).
  one = jax.eval_shape(lambda b, s, t: pipeline.detect(b, s, preset, max_detections=3,
                                                       transform=t),
                       boxes, scores, LetterboxTransform(np.zeros((2, 4), np.float32),
                                                         np.zeros((2, 4, 4), np.float32)))
  for batch in ((0,), (3, 0)):
    b = np.zeros(batch + boxes.shape[1:], np.float32)
    s = np.zeros(batch + scores.shape[1:], np.float32)
    for transform in (None, np.zeros(batch + (4,), np.float32),
                      LetterboxTransform(np.zeros(batch + (4,), np.float32),
                                         np.zeros(batch + (4, 4), np.float32))):
      got = pipeline.detect(b, s, preset, max_detections=3, transform=transform)
      for x, y in zip(got, one):
        assert x.shape == batch + y.shape[1:] and x.dtype == y.dtype
  # The checks still apply.
  with pytest.raises(ValueError, match=r"raw_boxes must have shape .* got \(0, 896, 12\)"):
    pipeline.detect(np.zeros((0, 896, 12), np.float32), np.zeros((0, 896, 1), np.float32), preset,
                    max_detections=3)
  # decode and NMS agree.
  empty = ja.decode(b, s, ja.generate_anchors(preset.anchors), preset)
  assert ja.non_max_suppression(empty, preset.nms, max_detections=3).boxes.shape == (3, 0, 3, 4)


def test_x64_mode_gives_the_same_bits(tmp_path):
  """With jax_enable_x64 (a common global setting), float32 inputs give the same results."""
  path = tmp_path / "x64.npz"
  _util.run_python(f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
                   f"import x64_cases; x64_cases.main({str(path)!r})", timeout=900)
  x64 = np.load(path)
  here = x64_cases.cases()
  assert len(x64.files) == sum(len(v) for v in here.values())
  for name, arrays in here.items():
    for i, a in enumerate(arrays):
      b = x64[f"{name}|{i}"]
      assert a.dtype == b.dtype and a.shape == b.shape, (name, i, a.dtype, b.dtype)
      np.testing.assert_array_equal(a, b, err_msg=name)
  assert int(here["detect"][4].sum()) > 0 and int(here["detect ssdlite_coco"][4].sum()) > 0


def test_readme_quick_start_equals_the_step_by_step_composition():
  """The README's quick start (detect in the user's jit) is the fast path and gives the
  results of decoding every anchor then NMS, the composition it shows beside it."""
  import re  # pylint: disable=import-outside-toplevel
  readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
  block = next(b for b in re.findall(r"```python\n(.*?)```", readme, re.S)
               if "def postprocess(" in b)
  code = {}
  exec(block, code)  # noqa: S102 - our own README
  preset = presets.get("face_short_range")
  boxes, scores = _dense_frames(preset, 4, 34, [3, 0, 7, 1], 30)
  fast = code["postprocess"](boxes, scores)
  # The pre-filtered pipeline runs inside the user's jit.
  assert "name=_detect" in str(jax.make_jaxpr(code["postprocess"])(boxes, scores))
  slow = code["postprocess_step_by_step"](boxes, scores)
  assert int(slow.valid.sum()) > 8
  _assert_same_detections(fast, slow)
