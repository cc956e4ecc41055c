"""Decoding: JAX against the NumPy reference, eager / jit / vmap, encode round trips."""

from __future__ import annotations

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import jaxanchors as ja
from jaxanchors import presets
from _util import count_traces, reference_dicts, sweep, three_ways
from reference.decoding import postprocessed_to_detections, tensors_to_detections

F32 = np.float32


# -- comparison with the reference ----------------------------------------------------


def assert_same_detections(ours: ja.Detections, expected: list[dict], *, sigmoid: bool) -> None:
  got = reference_dicts(ours)
  assert [d["anchor_index"] for d in got] == [d["anchor_index"] for d in expected]
  if not expected:
    return
  key = lambda name: (np.array([d[name] for d in got]), np.array([d[name] for d in expected]))  # noqa: E731
  np.testing.assert_array_equal(*key("label_id"))
  ours_s, ref_s = key("score")
  if sigmoid:
    # XLA's float32 exp is faithful, not correctly rounded like the reference's
    # (and glibc's): over 4M logits in [-100, 100] sigmoid differs by at most 4 ulp.
    np.testing.assert_array_max_ulp(ours_s, ref_s, maxulp=4)
  else:
    np.testing.assert_array_equal(ours_s, ref_s)
  for name in ("xmin", "ymin", "width", "height"):
    # Sizes from apply_exponential_on_box_size carry XLA's faithful exp too:
    # a few ulp, more than 1e-6 once a size exceeds 8.
    np.testing.assert_allclose(*key(name), rtol=5e-7, atol=1e-6, err_msg=name)
  kp_ours = np.array([d["keypoints"] for d in got], np.float32)
  kp_ref = np.array([d["keypoints"] for d in expected], np.float32)
  np.testing.assert_allclose(kp_ours, kp_ref, rtol=0, atol=1e-6)


def run_three_ways(raw_boxes, raw_scores, anchors, options):
  """The same case eager, under jit, and under vmap over a stacked batch of two."""
  eager, jitted, stacked = three_ways(
      ja.decode, (raw_boxes, raw_scores, anchors, options),
      (jnp.stack([raw_boxes, raw_boxes[::-1]]), jnp.stack([raw_scores, raw_scores[::-1]]),
       anchors, options),
      in_axes=(0, 0, None, None), jitted=jax.jit(ja.decode, static_argnums=3))
  batched = jax.tree.map(lambda x: x[0], stacked)
  for det in (eager, jitted, batched):
    assert det.boxes.dtype == jnp.float32 and det.classes.dtype == jnp.int32
    assert det.valid.dtype == jnp.bool_ and det.scores.dtype == jnp.float32
  return eager, jitted, batched


def check_against_reference(raw_boxes, raw_scores, anchors, options):
  expected = tensors_to_detections(raw_boxes, raw_scores, anchors, options.to_dict())
  for det in run_three_ways(raw_boxes, raw_scores, anchors, options):
    assert_same_detections(det, expected, sigmoid=options.sigmoid_score)


# -- presets ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", presets.names())
def test_every_preset_matches_reference(name):
  preset = presets.get(name)
  options = preset.decoder
  anchors = ja.anchors_numpy(preset.anchors)
  rng = np.random.default_rng(len(name))
  n = options.num_boxes
  assert n == len(anchors)
  if options.apply_exponential_on_box_size:  # SSD: [ty, tx, th, tw] targets of order 1
    raw_boxes = rng.normal(0.0, 2.0, (n, options.num_coords))
  else:  # BlazeFace: offsets in input pixels
    raw_boxes = rng.normal(0.0, 0.1 * options.x_scale, (n, options.num_coords))
  raw_scores = rng.normal(-1.0, 3.0, (n, options.num_classes))
  check_against_reference(raw_boxes.astype(F32), raw_scores.astype(F32), anchors, options)


# -- hypothesis cases ------------------------------------------------------------------

_SPECIAL_SCORES = [0.0, 0.5, -0.5, 1.0, 2.0, -100.0, 150.0, float("nan"), float("inf"),
                   -float("inf"), -3.4028235e38]


@st.composite
def decoder_cases(draw):
  num_keypoints = draw(st.integers(0, 3))
  num_classes = draw(st.integers(1, 4))
  fmt = draw(st.sampled_from([None, "YXHW", "XYWH", "XYXY", "UNSPECIFIED"]))
  use_exp = draw(st.booleans())
  scale = draw(st.sampled_from([1.0, 10.0, 128.0]))
  kwargs = dict(
      num_classes=num_classes, num_coords=4 + 2 * num_keypoints, num_keypoints=num_keypoints,
      keypoint_coord_offset=4 if num_keypoints else 0, box_format=fmt,
      reverse_output_order=draw(st.booleans()), apply_exponential_on_box_size=use_exp,
      x_scale=scale, y_scale=scale, w_scale=scale, h_scale=scale,
      sigmoid_score=draw(st.booleans()), flip_vertically=draw(st.booleans()),
      max_results=draw(st.sampled_from([-1, 1, 3, 7])))
  if draw(st.booleans()):
    kwargs["score_clipping_thresh"] = draw(st.sampled_from([0.0, 1.0, 100.0]))
  if draw(st.booleans()):
    kwargs["min_score_thresh"] = draw(st.sampled_from([0.0, 0.5, 0.3, 1.0, -1.0]))
  class_filter = draw(st.sampled_from(["none", "allow", "ignore", "empty"]))
  ids = draw(st.lists(st.integers(0, num_classes - 1), min_size=1, max_size=num_classes,
                      unique=True))
  if class_filter == "allow":
    kwargs["allow_classes"] = ids
  elif class_filter == "ignore":
    kwargs["ignore_classes"] = ids
  elif class_filter == "empty":
    kwargs["allow_classes"], kwargs["ignore_classes"] = [], []
  options = ja.DecoderOptions(**kwargs)

  n = draw(st.integers(1, 24))
  seed = draw(st.integers(0, 2**32 - 1))
  rng = np.random.default_rng(seed)
  spread = 1.0 if use_exp else 0.3
  raw_boxes = rng.normal(0.0, spread * scale, (n, options.num_coords))
  if options.format is ja.BoxFormat.XYXY and not use_exp:
    raw_boxes[:, :4] = np.abs(raw_boxes[:, :4])  # edge distances: mostly positive sizes
  if draw(st.booleans()):  # poison a few values
    for _ in range(draw(st.integers(1, 3))):
      raw_boxes[rng.integers(n), rng.integers(options.num_coords)] = draw(
          st.sampled_from([np.nan, np.inf, -np.inf, -5.0 * scale]))
  # Scores mix specials (ties, thresholds exactly hit, NaN, inf) with random values.
  raw_scores = rng.normal(0.0, 2.0, (n, num_classes))
  mask = rng.random((n, num_classes)) < 0.5
  raw_scores[mask] = rng.choice(_SPECIAL_SCORES, mask.sum())
  anchors = np.stack([rng.random(n), rng.random(n), rng.uniform(0.05, 1.0, n),
                      rng.uniform(0.05, 1.0, n)], axis=1)
  if draw(st.booleans()):
    anchors[:, 2:] = 1.0
  return raw_boxes.astype(F32), raw_scores.astype(F32), anchors.astype(F32), options


# Each example compiles three programs; the presets and the hand-written cases
# below cover the same code paths, so CI draws 12 examples (dev: 300).
@sweep(12)
@given(decoder_cases())
def test_matches_reference_on_random_cases(case):
  check_against_reference(*case)


def test_threshold_exactly_hit_is_kept_and_ties_take_lowest_class():
  options = ja.DecoderOptions(num_classes=3, num_coords=4, x_scale=1, y_scale=1, w_scale=1,
                              h_scale=1, min_score_thresh=0.5)
  raw_boxes = np.tile(np.array([[0, 0, 0.2, 0.2]], F32), (3, 1))
  raw_scores = np.array([[0.5, 0.5, 0.1], [0.2, 0.7, 0.7], [0.49999997, 0.1, 0.3]], F32)
  anchors = np.tile(np.array([[0.5, 0.5, 1.0, 1.0]], F32), (3, 1))
  det = ja.decode(raw_boxes, raw_scores, anchors, options)
  assert det.valid.tolist() == [True, True, False]
  assert det.classes.tolist()[:2] == [0, 1]
  np.testing.assert_array_equal(det.scores[:2], np.array([0.5, 0.7], F32))
  check_against_reference(raw_boxes, raw_scores, anchors, options)


def test_blazeface_row_by_hand():
  # XYWH row of 16 values with anchor (0.5, 0.5, 1, 1) and scale 128: centre +
  # 16/128 = 0.625, width 32/128 = 0.25, height 64/128 = 0.5; keypoint 0 at
  # (0.5 - 8/128, 0.5 + 8/128); sigmoid(0) = 0.5 is kept at threshold 0.5.
  options = presets.get("face_short_range").decoder
  options = dataclasses.replace(options, num_boxes=0)
  row = np.zeros((1, 16), F32)
  row[0, :6] = [16, 0, 32, 64, -8, 8]
  det = ja.decode(row, np.zeros((1, 1), F32), np.array([[0.5, 0.5, 1, 1]], F32), options)
  np.testing.assert_array_equal(det.boxes[0], [0.5, 0.25, 0.75, 0.75])
  np.testing.assert_array_equal(det.keypoints[0, 0], [0.4375, 0.5625])
  np.testing.assert_array_equal(det.keypoints[0, 1], [0.5, 0.5])
  assert det.valid.tolist() == [True] and det.scores.tolist() == [0.5]


def test_keypoint_offset_zero_overwrites_the_box_as_mediapipe():
  options = ja.DecoderOptions(num_classes=1, num_coords=6, num_keypoints=1,
                              keypoint_coord_offset=0, reverse_output_order=True,
                              x_scale=1, y_scale=1, w_scale=1, h_scale=1)
  raw_boxes = np.array([[0.1, 0.2, 0.4, 0.4, 0.0, 0.0]], F32)
  raw_scores = np.ones((1, 1), F32)
  anchors = np.array([[0.5, 0.5, 1, 1]], F32)
  det = ja.decode(raw_boxes, raw_scores, anchors, options)
  # Keypoint 0 = (0.6, 0.7) is written over buffer slots 0 (ymin) and 1 (xmin).
  np.testing.assert_allclose(det.boxes[0], [0.7, 0.6, 0.8, 0.9], atol=1e-7)
  check_against_reference(raw_boxes, raw_scores, anchors, options)


def test_every_class_filtered_gives_label_minus_one():
  options = ja.DecoderOptions(num_classes=2, num_coords=4, ignore_classes=(0, 1), x_scale=1,
                              y_scale=1, w_scale=1, h_scale=1)
  det = ja.decode(np.zeros((1, 4), F32), np.ones((1, 2), F32), np.ones((1, 4), F32), options)
  assert det.classes.tolist() == [-1] and det.valid.tolist() == [True]
  assert det.scores.tolist() == [float(-np.finfo(F32).max)]


# -- post-processed (4-tensor) models ----------------------------------------------------


@given(st.integers(0, 2**32 - 1), st.sampled_from([None, (1, 0, 3, 2)]), st.booleans(),
       st.sampled_from([-1, 2]))
def test_postprocessed_matches_reference(seed, indices, flip, max_results):
  rng = np.random.default_rng(seed)
  m = 8
  boxes = rng.random((m, 4)).astype(F32)
  classes = rng.integers(0, 4, m).astype(F32)
  scores = rng.random(m).astype(F32)
  num = F32(rng.integers(0, m + 1))
  options = ja.DecoderOptions(num_classes=4, num_coords=4, ignore_classes=(0,),
                              min_score_thresh=0.25, flip_vertically=flip,
                              max_results=max_results, box_boundaries_indices=indices)
  ref_options = options.to_dict()
  if indices is not None:
    ref_options["box_boundaries_indices"] = dict(zip(("ymin", "xmin", "ymax", "xmax"), indices))
  expected = postprocessed_to_detections(boxes, classes, scores, num, ref_options)
  det = ja.decode_postprocessed(boxes, classes, scores, np.array([num]), options)
  assert_same_detections(det, expected, sigmoid=False)


# -- encode -------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["YXHW", "XYWH", "XYXY"])
@pytest.mark.parametrize("use_exp", [False, True])
@pytest.mark.parametrize("flip", [False, True])
def test_encode_decode_round_trip(fmt, use_exp, flip):
  rng = np.random.default_rng(3)
  n, k = 64, 2
  options = ja.DecoderOptions(num_classes=1, num_coords=8, num_keypoints=k,
                              keypoint_coord_offset=4, box_format=fmt,
                              apply_exponential_on_box_size=use_exp, flip_vertically=flip,
                              x_scale=10, y_scale=10, w_scale=5, h_scale=5)
  anchors = np.concatenate([rng.random((n, 2)), rng.uniform(0.1, 0.5, (n, 2))], 1).astype(F32)
  lo = rng.random((3, n, 2)) * 0.8
  boxes = np.concatenate([lo[0], lo[0] + rng.uniform(0.01, 0.2, (n, 2))], -1).astype(F32)
  keypoints = rng.random((3, n, k, 2)).astype(F32)
  boxes = np.stack([boxes] * 3) + np.arange(3, dtype=F32)[:, None, None] * 0.01
  raw = ja.encode(boxes, keypoints, anchors, options)
  assert raw.shape == (3, n, 8)
  det = ja.decode(raw, jnp.zeros((3, n, 1)), anchors, options)
  np.testing.assert_allclose(det.boxes, boxes, rtol=0, atol=2e-6)
  np.testing.assert_allclose(det.keypoints, keypoints, rtol=0, atol=2e-6)


def test_gradients_through_decode_and_encode_are_finite():
  preset = presets.get("face_short_range")
  anchors = ja.generate_anchors(preset)
  options = preset.decoder
  rng = np.random.default_rng(0)
  raw_boxes = jnp.asarray(rng.normal(0, 5, (896, 16)), jnp.float32)
  raw_scores = jnp.asarray(rng.normal(0, 3, (896, 1)), jnp.float32)

  def loss(raw_boxes, raw_scores):
    det = ja.decode(raw_boxes, raw_scores, anchors, options)
    return jnp.sum(det.boxes**2) + jnp.sum(det.keypoints) + jnp.sum(det.scores)

  grads = jax.grad(loss, argnums=(0, 1))(raw_boxes, raw_scores)
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in grads)
  assert float(jnp.abs(grads[1]).sum()) > 0

  ssd = presets.get("ssdlite_coco")
  ssd_anchors = ja.generate_anchors(ssd)
  targets = jnp.tile(jnp.array([[0.2, 0.3, 0.6, 0.9]]), (2034, 1))
  g = jax.grad(lambda b: jnp.sum(ja.encode(b, None, ssd_anchors, ssd.decoder) ** 2))(targets)
  assert bool(jnp.all(jnp.isfinite(g))) and float(jnp.abs(g).sum()) > 0


# -- tracing, batching, errors ---------------------------------------------------------------


def test_leading_batch_dimensions_and_single_trace():
  preset = presets.get("pose")
  options = preset.decoder
  anchors = ja.generate_anchors(preset)
  rng = np.random.default_rng(1)
  raw_boxes = rng.normal(0, 20, (2, 3, 2254, 12)).astype(F32)
  raw_scores = rng.normal(0, 3, (2, 3, 2254, 1)).astype(F32)
  det = ja.decode(raw_boxes, raw_scores, anchors, options)
  assert det.boxes.shape == (2, 3, 2254, 4) and det.keypoints.shape == (2, 3, 2254, 4, 2)
  for i in range(2):
    for j in range(3):
      one = ja.decode(raw_boxes[i, j], raw_scores[i, j], anchors, options)
      chex.assert_trees_all_close(jax.tree.map(lambda x: x[i, j], det), one, rtol=0, atol=1e-6)

  equal_options = ja.DecoderOptions.from_dict(options.to_dict())
  with count_traces("_decode") as traces:
    ja.decode(raw_boxes + 1, raw_scores, anchors, equal_options)
  assert traces.count == 0

  @jax.jit
  @chex.assert_max_traces(n=1)
  def f(b, s):
    return ja.decode(b, s, anchors, options).boxes

  f(raw_boxes[0], raw_scores[0])
  f(raw_boxes[1], raw_scores[1])


_BAD_TENSORS = [
    ((896, 15), (896, 1), (896, 4), ValueError, "num_coords=16"),
    ((896, 16), (896, 2), (896, 4), ValueError, "num_classes=1"),
    ((896, 16), (895, 1), (896, 4), ValueError, "disagree"),
    ((896, 16), (896, 1), (895, 4), ValueError, "anchors must have shape"),
    ((16,), (1,), (896, 4), ValueError, "raw_boxes must have shape"),
    ((100, 16), (100, 1), (100, 4), ValueError, "num_boxes=896"),
]


@pytest.mark.parametrize("boxes,scores,anchors,error,message", _BAD_TENSORS)
def test_bad_tensors_raise_at_trace_time(boxes, scores, anchors, error, message):
  options = presets.get("face_short_range").decoder
  with pytest.raises(error, match=message):
    ja.decode(np.zeros(boxes, F32), np.zeros(scores, F32), np.zeros(anchors, F32), options)


def test_integer_tensors_are_rejected():
  options = presets.get("face_short_range").decoder
  with pytest.raises(TypeError, match="raw_boxes must be a float array"):
    ja.decode(np.zeros((896, 16), np.int32), np.zeros((896, 1), F32), np.zeros((896, 4), F32),
              options)


def test_zero_scale_is_refused():
  options = ja.DecoderOptions(num_classes=1, num_coords=4)
  with pytest.raises(ValueError, match="x_scale"):
    ja.decode(np.zeros((2, 4), F32), np.zeros((2, 1), F32), np.zeros((2, 4), F32), options)


_INVALID_OPTIONS = [
    (dict(num_coords=5), "num_coords"),
    (dict(num_keypoints=1), "num_coords"),
    (dict(num_values_per_keypoint=3), "num_values_per_keypoint"),
    (dict(max_results=0), "max_results"),
    (dict(allow_classes=(0,), ignore_classes=(1,)), "allow_classes"),
    (dict(allow_classes=(5,)), "allow_classes[0]"),
    (dict(ignore_classes=(-1,)), "ignore_classes[0]"),
    (dict(box_format="XYZW"), "box_format"),
    (dict(x_scale=float("nan")), "x_scale"),
    (dict(score_clipping_thresh=-1.0), "score_clipping_thresh"),
    (dict(min_score_thresh=float("inf")), "min_score_thresh"),
    (dict(box_coord_offset=2), "box_coord_offset"),
    (dict(num_classes=0), "num_classes"),
    (dict(box_boundaries_indices=(0, 1, 1, 3)), "box_boundaries_indices"),
    (dict(max_classes_per_detection=2), "max_classes_per_detection"),
    (dict(sigmoid_score=1), "sigmoid_score"),
    (dict(sigmoid_score=True, min_score_thresh=1.01),
     "DecoderOptions.min_score_thresh=1.01 is above 1, which no sigmoid score reaches"),
]


@pytest.mark.parametrize("overrides,field", _INVALID_OPTIONS)
def test_invalid_decoder_options(overrides, field):
  base = dict(num_classes=2, num_coords=4, x_scale=1, y_scale=1, w_scale=1, h_scale=1)
  with pytest.raises((ValueError, TypeError)) as info:
    ja.DecoderOptions(**{**base, **overrides})
  assert field in str(info.value)


def test_decoder_thresholds_kept():
  """A sigmoid threshold of exactly 1 (only saturated scores pass) and any raw-score
  threshold are valid."""
  base = dict(num_classes=1, num_coords=4)
  assert ja.DecoderOptions(**base, sigmoid_score=True, min_score_thresh=1).min_score_thresh == 1
  assert ja.DecoderOptions(**base, min_score_thresh=7.5).min_score_thresh == 7.5


def test_decoder_options_round_trip_and_format_precedence():
  for name in presets.names():
    options = presets.get(name).decoder
    assert ja.DecoderOptions.from_dict(options.to_dict()) == options
    hash(options)
  base = dict(num_classes=1, num_coords=4)
  assert ja.DecoderOptions(**base).format is ja.BoxFormat.YXHW
  assert ja.DecoderOptions(**base, reverse_output_order=True).format is ja.BoxFormat.XYWH
  assert ja.DecoderOptions(**base, reverse_output_order=True,
                           box_format="UNSPECIFIED").format is ja.BoxFormat.YXHW
  assert ja.DecoderOptions(**base, box_format=3).format is ja.BoxFormat.XYXY


def test_anchors_from_yxhw():
  np.testing.assert_array_equal(ja.anchors_from_yxhw(np.array([[1.0, 2.0, 3.0, 4.0]])),
                                [[2.0, 1.0, 4.0, 3.0]])


def test_detection_helpers():
  det = ja.Detections(boxes=jnp.array([[[0.1, 0.2, 0.5, 0.6]], [[0.0, 0.0, 1.0, 1.0]]]),
                      keypoints=jnp.array([[[[0.5, 0.5]]], [[[1.0, 0.25]]]]),
                      scores=jnp.ones((2, 1)), classes=jnp.zeros((2, 1), jnp.int32),
                      valid=jnp.array([[True], [False]]))
  assert ja.count(det).tolist() == [1, 0]
  np.testing.assert_allclose(ja.to_xywh(det.boxes)[0, 0], [0.1, 0.2, 0.4, 0.4], atol=1e-7)
  np.testing.assert_allclose(ja.from_xywh(ja.to_xywh(det.boxes)), det.boxes, atol=1e-7)
  px = ja.to_pixels(det, width=jnp.array([100.0, 200.0]), height=jnp.array([10.0, 20.0]))
  np.testing.assert_allclose(px.boxes[1, 0], [0, 0, 200, 20])
  np.testing.assert_allclose(px.keypoints[1, 0, 0], [200, 5])
