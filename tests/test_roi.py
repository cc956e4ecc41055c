"""jaxanchors.roi against MediaPipe's recorded two-stage runs and the NumPy reference."""

from __future__ import annotations

import dataclasses
import math
import textwrap

import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxanchors as ja
from jaxanchors import presets, roi
from jaxanchors.letterbox import ImageToTensorOptions

import mediapipe_roi_data as rd
from _util import count_traces, run_on_host_devices, sweep, three_ways
from reference import roi as ref

F = np.float32
PRESET = {"hand": "palm", "pose": "pose", "face": "face_short_range"}
FIELDS = ("x_center", "y_center", "width", "height", "rotation")


def _detections(case: rd.Case) -> ja.Detections:
  a = case.arrays
  b = a["detections_boxes"]  # xmin, ymin, width, height (MediaPipe's)
  n = len(b)
  boxes = np.stack([b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]], -1).reshape(n, 4)
  return ja.Detections(jnp.asarray(boxes), jnp.asarray(a["detections_keypoints"]),
                       jnp.asarray(a["detections_scores"]), jnp.zeros(n, jnp.int32),
                       jnp.ones(n, bool))


def _size(case: rd.Case) -> tuple[int, int]:
  return case.meta["photo"]["rotated_height"], case.meta["photo"]["rotated_width"]


def _roi_options(case: rd.Case) -> roi.RoiOptions:
  """The preset's options, with as many ROIs as the recorded graph was asked for."""
  options = presets.get(PRESET[case.meta["graph"]]).roi
  side = case.meta["side_packets"]
  return dataclasses.replace(options, max_rois=side.get("num_hands", side.get("num_faces", 1)))


def _as_array(rects: roi.Rects) -> np.ndarray:
  return np.stack([np.asarray(x) for x in rects[:5]], -1)


def _rects(rows: np.ndarray, valid=None) -> roi.Rects:
  rows = np.asarray(rows, F)
  valid = np.ones(rows.shape[:-1], bool) if valid is None else valid
  return roi.Rects(*(jnp.asarray(rows[..., i]) for i in range(5)), jnp.asarray(valid))


def _assert_rects_close(got: np.ndarray, want: np.ndarray) -> None:
  assert got.shape == want.shape
  np.testing.assert_allclose(got[..., :4], want[..., :4], rtol=0, atol=1e-6)
  np.testing.assert_allclose(got[..., 4], want[..., 4], rtol=0, atol=1e-5)


# -- presets ---------------------------------------------------------------------------


@pytest.mark.parametrize("graph", sorted(PRESET))
def test_preset_roi_options_are_the_recorded_graphs(graph):
  name = next(c for c in rd.CASES if c.startswith(graph + "_"))
  recorded = rd.load(name).meta["options"]
  o = presets.get(PRESET[graph]).roi
  conv = recorded["converter"]
  want_conv = {"DetectionsToRectsCalculator": roi.RectConversion.BOUNDING_BOX,
               "AlignmentPointsRectsCalculator": roi.RectConversion.ALIGNMENT_POINTS}
  assert o.rect.conversion is want_conv[conv["calculator"]]
  rect_fields = {k: getattr(o.rect, k) for k in conv["options"]}
  assert rect_fields == pytest.approx(conv["options"])
  tr = recorded["transformation"]
  assert {k: getattr(o.rect, k) for k in tr} == pytest.approx(tr)
  for k in ("shift_x", "shift_y", "scale_x", "scale_y", "square_long", "square_short"):
    if k not in tr:  # proto defaults
      assert getattr(o.rect, k) == {"scale_x": 1.0, "scale_y": 1.0}.get(k, 0)
  crop = recorded["crop"]
  assert o.crop.output_tensor_width == crop["output_tensor_width"]
  assert o.crop.output_tensor_height == crop["output_tensor_height"]
  assert o.crop.keep_aspect_ratio == crop.get("keep_aspect_ratio", False)
  assert o.crop.output_tensor_float_range == (crop["output_tensor_float_range"]["min"],
                                              crop["output_tensor_float_range"]["max"])
  assert o.crop.border_mode.name == crop.get("border_mode", "BORDER_UNSPECIFIED")[7:]
  want_assoc = recorded.get("association", {}).get("min_similarity_threshold")
  assert o.association == (pytest.approx(want_assoc) if want_assoc is not None else None)
  assert ("clip_detections" in recorded) == (graph != "pose")  # pose keeps one detection
  assert presets.get("face_full_range").roi == presets.get("face_short_range").roi


# -- MediaPipe's recorded runs ---------------------------------------------------------


@pytest.mark.parametrize("name", rd.CASES)
def test_rects_equal_mediapipe(name):
  case = rd.load(name)
  if len(case.arrays["detections_scores"]) == 0:
    pytest.skip("MediaPipe found nothing in this photo")
  o = _roi_options(case)
  det, size = _detections(case), _size(case)
  untransformed = dataclasses.replace(o.rect, scale_x=1.0, scale_y=1.0, shift_x=0.0,
                                      shift_y=0.0, square_long=False)
  _assert_rects_close(_as_array(roi.detections_to_rects(det, untransformed, image_size=size)),
                      case.arrays["raw_rects"])
  _assert_rects_close(_as_array(roi.detections_to_rects(det, o, image_size=size)),
                      case.arrays["rects"])
  kept = roi.select_rois(det, o, image_size=size)
  _assert_rects_close(_as_array(kept)[np.asarray(kept.valid)], case.arrays["associated_rects"])


@pytest.mark.parametrize("name", rd.CASES)
def test_crops_equal_mediapipe_bit_for_bit(name):
  case = rd.load(name)
  rects = case.arrays["associated_rects"]
  if len(rects) == 0:
    pytest.skip("MediaPipe found nothing in this photo")
  image = rd.photo(case)
  tensors, transform = roi.crop(image, _rects(rects), _roi_options(case))
  assert tensors.dtype == jnp.float32
  np.testing.assert_array_equal(np.asarray(tensors), case.crops)
  assert transform.matrix.shape == (len(rects), 4, 4)


def test_recorded_runs_cover_rotations_and_crops_leaving_the_image():
  rotations, leaving = set(), 0
  for name in rd.CASES:
    case = rd.load(name)
    r = case.arrays["associated_rects"]
    rotations |= {case.meta["photo"]["rotate_degrees"]} if len(r) else set()
    h, w = _size(case)
    for x, y, rw, rh, _ in r:  # the square's half-diagonal reaches past an edge
      half = 0.5 * math.hypot(rw * w, rh * h)
      leaving += (x * w - half < 0 or y * h - half < 0 or x * w + half > w or y * h + half > h)
  assert rotations == {0, 30, 90, 135}
  assert leaving >= 3


# -- the NumPy reference ---------------------------------------------------------------


_unit = st.floats(0.05, 0.95)


@st.composite
def _detection_lists(draw, n_max=4, k=7):
  n = draw(st.integers(1, n_max))
  dets = []
  for _ in range(n):
    x0, y0 = draw(_unit), draw(_unit)
    w, h = draw(st.floats(0.01, 0.5)), draw(st.floats(0.01, 0.5))
    kps = [(F(draw(_unit)), F(draw(_unit))) for _ in range(k)]
    x0, y0 = F(x0), F(y0)  # the width Detections' [xmin, xmax] gives back
    dets.append(dict(xmin=x0, ymin=y0, width=F(F(x0 + F(w)) - x0), height=F(F(y0 + F(h)) - y0),
                     keypoints=kps))
  return dets


def _to_detections(dets, k=7) -> ja.Detections:
  n = len(dets)
  boxes = np.array([[d["xmin"], d["ymin"], F(d["xmin"] + d["width"]),
                     F(d["ymin"] + d["height"])]
                    for d in dets], F)
  kps = np.array([d["keypoints"] for d in dets], F).reshape(n, k, 2)
  return ja.Detections(jnp.asarray(boxes), jnp.asarray(kps), jnp.ones(n), jnp.zeros(n, jnp.int32),
                       jnp.ones(n, bool))


@sweep(25)
@hypothesis.given(dets=_detection_lists(), preset=st.sampled_from(["palm", "pose", "face_short_range"]),
                  size=st.tuples(st.integers(60, 900), st.integers(60, 900)),
                  keypoints_mode=st.booleans())
def test_rects_match_reference(dets, preset, size, keypoints_mode):
  o = presets.get(preset).roi.rect
  if keypoints_mode and o.conversion is roi.RectConversion.BOUNDING_BOX:
    o = dataclasses.replace(o, conversion="KEYPOINTS", shift_x=0.25)
  conv = {"BOUNDING_BOX": "box", "KEYPOINTS": "keypoints", "ALIGNMENT_POINTS": "alignment"}
  height, width = size
  got = _as_array(roi.detections_to_rects(_to_detections(dets), o, image_size=size))
  for i, d in enumerate(dets):
    r = ref.detection_to_rect(d, conversion=conv[o.conversion.name],
                              start=o.rotation_vector_start_keypoint_index,
                              end=o.rotation_vector_end_keypoint_index,
                              target=ref.target_angle(o.rotation_vector_target_angle_degrees),
                              width=width, height=height)
    r = ref.transform_rect(r, scale_x=o.scale_x, scale_y=o.scale_y, shift_x=o.shift_x,
                           shift_y=o.shift_y, square_long=o.square_long,
                           square_short=o.square_short, width=width, height=height)
    # Both round atan2/sin/cos from float64 (the reference through Python's math),
    # whose float64 results may round to neighbouring floats: at most 2 ulps apart.
    # Near +-pi an ulp may move the angle across the branch cut: compare turns modulo 2 pi.
    want = np.array([r[f] for f in FIELDS], F)
    diff = np.abs(got[i] - want).astype(np.float64)
    diff[4] = abs(math.remainder(float(got[i][4]) - float(want[4]), 2 * math.pi))
    # An ulp of atan2 near pi/2 or pi is 1.2e-7 / 2.4e-7 absolute, whatever the result's size.
    assert (diff[:4] <= 2.5e-7).all() and diff[4] <= 2 * np.spacing(F(np.pi)), (got[i], want)


@pytest.mark.parametrize("keep,zero,tensor", [
    (False, False, (16, 16)), (True, False, (12, 20)), (False, True, (20, 12)),
    (True, True, (16, 16))])
def test_crop_matches_reference_bit_for_bit(keep, zero, tensor):
  rng = np.random.default_rng(hash((keep, zero, tensor)) % 2**32)
  image = rng.integers(0, 256, (23, 31, 3), dtype=np.uint8)
  rows = np.concatenate([rng.uniform(-0.3, 1.3, (8, 2)), rng.uniform(0.05, 1.5, (8, 2)),
                         rng.uniform(-3.2, 3.2, (8, 1))], -1).astype(F)
  rows[0, 4] = 0.0  # upright
  rows[1, 4] = F(math.pi / 2)
  th, tw = tensor
  o = ImageToTensorOptions(output_tensor_width=tw, output_tensor_height=th, keep_aspect_ratio=keep,
                           output_tensor_float_range=(0.0, 1.0),
                           border_mode="ZERO" if zero else "REPLICATE")
  got, transform = roi.crop(image, _rects(rows), o)
  for i, row in enumerate(rows):
    want, padding = ref.crop(image, dict(zip(FIELDS, row)), out_w=tw, out_h=th,
                             keep_aspect=keep, value_range=(0.0, 1.0), zero_border=zero)
    np.testing.assert_array_equal(np.asarray(got[i]), want)
    np.testing.assert_array_equal(np.asarray(transform.padding[i]), np.array(padding, F))


@sweep(20)
@hypothesis.given(rows=st.lists(st.tuples(_unit, _unit, st.floats(0.05, 0.6),
                                          st.floats(0.05, 0.6)), min_size=1, max_size=6),
                  valid=st.lists(st.booleans(), min_size=6, max_size=6),
                  thr=st.sampled_from([0.0, 0.3, 0.5]))
def test_association_matches_reference(rows, valid, thr):
  n = len(rows)
  rects = np.array([r + (0.0,) for r in rows], F)
  got = roi.associate_rects(_rects(rects, np.array(valid[:n])), min_similarity=thr)
  idx = [i for i in range(n) if valid[i]]
  listed = [dict(zip(FIELDS, rects[i])) for i in idx]
  want = {idx[j] for j in ref.associate(listed, thr)}
  assert set(np.nonzero(np.asarray(got.valid))[0]) == want


def test_association_keeps_the_later_of_two_overlapping_rects():
  rows = [[0.5, 0.5, 0.2, 0.2, 0.0], [0.51, 0.5, 0.2, 0.2, 0.0], [0.1, 0.1, 0.1, 0.1, 0.0]]
  got = roi.associate_rects(_rects(rows), min_similarity=0.5)
  assert np.asarray(got.valid).tolist() == [False, True, True]


def test_project_landmarks_matches_reference_and_maps_crop_corners_to_rect_corners():
  rect = dict(zip(FIELDS, map(F, (0.4, 0.6, 0.3, 0.2, 0.7))))
  lm = np.array([[0, 0, 0.5], [1, 0.5, 0], [1, 1, -0.25], [0.5, 0.5, 0], [0.2, 0.9, 1]], F)
  got = np.asarray(roi.project_landmarks(lm[None], _rects([[rect[f] for f in FIELDS]])))[0]
  for (x, y, z), (gx, gy, gz) in zip(lm, got):
    assert (gx, gy) == ref.project_landmark(x, y, rect)
    assert gz == F(z * rect["width"])
  c, s = math.cos(0.7), math.sin(0.7)  # (1, 0.5) sits half a width along the turned x axis
  np.testing.assert_allclose(got[1, :2] - got[3, :2], [0.5 * 0.3 * c, 0.5 * 0.2 * s], atol=1e-6)


# -- validity, batching, compilation ---------------------------------------------------


def test_invalid_detection_gives_invalid_rect_and_zero_crop():
  case = rd.load("pose_astronaut_rot30")
  det = _detections(case)
  det = jax.tree.map(lambda a: jnp.concatenate([a, a]), det)._replace(
      valid=jnp.array([False, True]))
  o = presets.get("pose").roi
  rects = roi.detections_to_rects(det, o, image_size=_size(case))
  assert np.asarray(rects.valid).tolist() == [False, True]
  assert all(np.isfinite(np.asarray(a)).all() for a in rects[:5])
  tensors, _ = roi.crop(rd.photo(case), rects, o)
  assert not np.asarray(tensors[0]).any()
  np.testing.assert_array_equal(np.asarray(tensors[1]), case.crops[0])
  empty = rects._replace(width=jnp.zeros(2), valid=jnp.ones(2, bool))
  assert not np.asarray(roi.crop(rd.photo(case), empty, o)[0]).any()


def _rng_rects(rng, shape):
  rows = np.concatenate([rng.uniform(0.1, 0.9, shape + (2,)), rng.uniform(0.1, 0.8, shape + (2,)),
                         rng.uniform(-3, 3, shape + (1,))], -1)
  return _rects(rows, rng.uniform(size=shape) > 0.2)


def test_batched_vmapped_and_jitted_crops_equal_per_frame():
  rng = np.random.default_rng(3)
  images = rng.integers(0, 256, (3, 37, 29, 3), dtype=np.uint8)
  rects = _rng_rects(rng, (3, 2))
  o = dataclasses.replace(presets.get("palm").roi.crop, output_tensor_width=24,
                          output_tensor_height=24)
  fn = lambda img, r: roi.crop(img, r, o)  # noqa: E731
  frames = [fn(images[i], jax.tree.map(lambda a: a[i], rects)) for i in range(3)]
  batched = fn(images, rects)
  eager, jitted, vmapped = three_ways(fn, (images[0], jax.tree.map(lambda a: a[0], rects)),
                                      (images, rects))
  for i in range(3):
    for a, b in zip(jax.tree.leaves(frames[i]), jax.tree.leaves(jax.tree.map(lambda x: x[i], batched))):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    for a, b in zip(jax.tree.leaves(frames[i]), jax.tree.leaves(jax.tree.map(lambda x: x[i], vmapped))):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  for a, b, c in zip(jax.tree.leaves(frames[0]), jax.tree.leaves(eager), jax.tree.leaves(jitted)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(c))
  # Same options and shapes, other rects and pixels: no new trace.
  with count_traces("_crop") as traces:
    fn(images[::-1], _rng_rects(rng, (3, 2)))
  assert traces.count == 0


@pytest.mark.parametrize("preset", ["palm", "pose", "face_short_range"])
def test_vmapped_select_rois_equals_batched_bit_for_bit(preset):
  """Under vmap the image size is not batched; a quotient by it stays a true division
  (XLA otherwise multiplies by the reciprocal, an ulp apart in about 1 value in 25)."""
  rng = np.random.default_rng(8)
  o = presets.get(preset).roi
  k = {"palm": 7, "pose": 4, "face_short_range": 6}[preset]
  c = rng.uniform(0.2, 0.8, (6, 4, 2))
  d = ja.Detections(jnp.asarray(np.concatenate([c - 0.1, c + 0.13], -1), jnp.float32),
                    jnp.asarray(rng.uniform(0, 1, (6, 4, k, 2)), jnp.float32),
                    jnp.ones((6, 4)), jnp.zeros((6, 4), jnp.int32), jnp.ones((6, 4), bool))
  fn = lambda x: roi.select_rois(x, o, image_size=(333, 517))  # noqa: E731
  for a, b in zip(fn(d), jax.vmap(fn)(d)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_batched_rects_equal_per_frame_and_compile_once():
  case = rd.load("hand_camera_hands_rot0")
  det = _detections(case)
  rng = np.random.default_rng(1)
  batch = jax.tree.map(lambda a: jnp.stack([a, a, a]), det)
  batch = batch._replace(keypoints=batch.keypoints + jnp.asarray(
      rng.normal(0, 0.01, batch.keypoints.shape), jnp.float32))
  o = presets.get("palm").roi
  whole = roi.select_rois(batch, o, image_size=(256, 256))
  for i in range(3):
    one = roi.select_rois(jax.tree.map(lambda a: a[i], batch), o, image_size=(256, 256))
    for a, b in zip(one, whole):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b[i]))
  vmapped = jax.vmap(lambda d: roi.select_rois(d, o, image_size=(256, 256)))(batch)
  for a, b in zip(vmapped, whole):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  # Same options and shapes, other values: nothing is traced again.
  moved = batch._replace(keypoints=batch.keypoints + 0.01)
  with count_traces("_to_rects") as traces, count_traces("_associate") as assoc:
    roi.select_rois(moved, o, image_size=(256, 256))
    roi.select_rois(jax.tree.map(lambda a: a[0], moved), o, image_size=(256, 256))
  assert traces.count == 0 and assoc.count == 0


_SHARDING_SCRIPT = textwrap.dedent("""
    import numpy as np, jax, jax.numpy as jnp
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    from jaxanchors import presets, roi
    mesh = Mesh(np.array(jax.devices()), ("batch",))
    shard = lambda x: jax.device_put(x, NamedSharding(mesh, P("batch")))
    one = lambda x: jax.device_put(x, jax.devices()[0])
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (8, 41, 33, 3), dtype=np.uint8)
    rows = np.concatenate([rng.uniform(0.1, 0.9, (8, 2, 2)), rng.uniform(0.1, 0.8, (8, 2, 2)),
                           rng.uniform(-3, 3, (8, 2, 1))], -1).astype(np.float32)
    rects = roi.Rects(*(rows[..., i] for i in range(5)), np.ones((8, 2), bool))
    o = presets.get("pose").roi.crop
    single = roi.crop(one(images), jax.tree.map(one, rects), o)
    sharded = roi.crop(shard(images), jax.tree.map(shard, rects), o)
    assert len(sharded[0].sharding.device_set) == 8, sharded[0].sharding
    for x, y in zip(jax.tree.leaves(single), jax.tree.leaves(sharded)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    print("ok")
""")


def test_sharded_crop_equals_single_device():
  assert run_on_host_devices(_SHARDING_SCRIPT, timeout=300).split()[-1] == "ok"


# -- options and errors ----------------------------------------------------------------


@pytest.mark.parametrize("kwargs,match", [
    (dict(rotation_vector_start_keypoint_index=0), "go together"),
    (dict(rotation_vector_start_keypoint_index=0, rotation_vector_end_keypoint_index=1),
     "exactly one"),
    (dict(rotation_vector_target_angle=1.0), "needs"),
    (dict(conversion="ALIGNMENT_POINTS"), "ALIGNMENT_POINTS"),
    (dict(scale_x=0.0), "scale_x"),
    (dict(square_long=True, square_short=True), "exclude"),
    (dict(conversion="CORNERS"), "conversion"),
])
def test_rect_options_reject_what_mediapipe_rejects(kwargs, match):
  with pytest.raises(ValueError, match=match):
    roi.RectOptions(**kwargs)


def test_options_round_trip_and_bad_inputs():
  o = presets.get("palm").roi
  assert roi.RoiOptions.from_json(o.to_json()) == o
  assert hash(o) == hash(roi.RoiOptions.from_dict(o.to_dict()))
  det = _detections(rd.load("hand_camera_hands_rot0"))
  few = det._replace(keypoints=det.keypoints[:, :2])
  with pytest.raises(ValueError, match="needs at least 3"):
    roi.detections_to_rects(few, o, image_size=(256, 256))
  with pytest.raises(ValueError, match="image_size"):
    roi.detections_to_rects(det, o, image_size=(256,))
  with pytest.raises(TypeError, match="Rects"):
    roi.crop(np.zeros((8, 8, 3), np.uint8), (1, 2), o)
  with pytest.raises(ValueError, match="landmarks"):
    roi.project_landmarks(np.zeros((1, 3, 4)), _rects([[0.5, 0.5, 0.1, 0.1, 0]]))
