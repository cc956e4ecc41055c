"""Landmark tensors to landmarks (``jaxanchors.landmarks``): against the NumPy reference
(``tests/reference/landmarks.py``) and MediaPipe's recorded landmark graphs."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mediapipe_roi_data as rd
from jaxanchors import landmarks as lm
from jaxanchors import presets, roi
from reference import landmarks as ref

F32 = np.float32


def _ref_options(options: lm.LandmarkOptions) -> dict:
  d = {"num_landmarks": options.num_landmarks, "flip_vertically": options.flip_vertically,
       "flip_horizontally": options.flip_horizontally, "normalize_z": options.normalize_z,
       "visibility_activation": options.visibility_activation.name,
       "presence_activation": options.presence_activation.name}
  if options.input_image_width is not None:
    d["input_image_width"] = options.input_image_width
  if options.input_image_height is not None:
    d["input_image_height"] = options.input_image_height
  return d


def _as_arrays(ref_list: list, num: int) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
  points = np.array([[p["x"], p["y"], p["z"]] for p in ref_list], F32).reshape(num, 3)
  vis = np.array([p["visibility"] for p in ref_list], F32) if "visibility" in ref_list[0] else None
  pres = np.array([p["presence"] for p in ref_list], F32) if "presence" in ref_list[0] else None
  return points, vis, pres


def _assert_equal_to_reference(got: lm.Landmarks, want_list: list, num: int) -> None:
  points, vis, pres = _as_arrays(want_list, num)
  np.testing.assert_array_equal(np.asarray(got.points), points)
  for ours, theirs in ((got.visibility, vis), (got.presence, pres)):
    assert (ours is None) == (theirs is None)
    if theirs is not None:
      np.testing.assert_array_equal(np.asarray(ours), theirs)


CASES = {
    "hand": (lm.GRAPH_OPTIONS["hand_landmark"], 3),
    "hand world": (lm.GRAPH_OPTIONS["hand_world_landmark"], 3),
    "face": (lm.GRAPH_OPTIONS["face_landmark"], 3),
    "pose": (lm.GRAPH_OPTIONS["pose_landmark"], 5),
    "flips": (lm.LandmarkOptions(num_landmarks=7, input_image_width=96, input_image_height=64,
                                 flip_horizontally=True, flip_vertically=True,
                                 normalize_z=0.3), 3),
    "two values": (lm.LandmarkOptions(num_landmarks=5, input_image_width=33,
                                      input_image_height=17), 2),
    "four values, sigmoid": (lm.LandmarkOptions(num_landmarks=6, input_image_width=50,
                                                input_image_height=70,
                                                visibility_activation="SIGMOID"), 4),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_decode_equals_the_reference_bit_for_bit(name):
  """Normalised and absolute landmarks of 3 regions, each region's tensor through the
  reference one at a time; a few values beyond num_landmarks x D are ignored."""
  options, dims = CASES[name]
  rng = np.random.default_rng(len(name))
  values = options.num_landmarks * dims + (2 if name == "flips" else 0)
  raw = rng.normal(0, 80, (3, values)).astype(F32)
  for k in range(3, dims):   # visibility and presence logits: see test_subnormal_sigmoid
    raw[:, k::dims] = rng.normal(0, 8, raw[:, k::dims].shape)
  sized = options.input_image_width is not None
  for normalized in ((True, False) if sized else (False,)):
    got = lm.decode_landmarks(raw, options, normalized=normalized)
    assert got.points.shape == (3, options.num_landmarks, 3)
    for r in range(3):
      want_abs, want_norm = ref.tensors_to_landmarks(
          raw[r], _ref_options(options),
          outputs=("NORM_LANDMARKS",) if normalized else ("LANDMARKS",))
      want = want_norm if normalized else want_abs
      _assert_equal_to_reference(jax.tree.map(lambda a, r=r: a[r], got), want,
                                 options.num_landmarks)


def test_letterbox_removal_and_world_projection_equal_the_reference():
  rng = np.random.default_rng(5)
  options = lm.GRAPH_OPTIONS["pose_landmark"]
  raw = rng.normal(0, 60, (4, 39 * 5)).astype(F32)
  raw[:, 3::5], raw[:, 4::5] = rng.normal(0, 8, (2, 4, 39))
  decoded = lm.decode_landmarks(raw, options)
  padding = np.array([[0.0, 0.125, 0.0, 0.125], [0.1, 0.0, 0.2, 0.0], [0, 0, 0, 0],
                      [0.05, 0.07, 0.03, 0.01]], F32)
  removed = lm.remove_letterbox(decoded, padding)
  world = lm.project_world_landmarks(lm.decode_landmarks(raw, options, normalized=False),
                                     np.array([0.3, -2.0, 0.0, 3.1], F32))
  for r in range(4):
    _, norm = ref.tensors_to_landmarks(raw[r], _ref_options(options), outputs=("NORM_LANDMARKS",))
    _assert_equal_to_reference(jax.tree.map(lambda a, r=r: a[r], removed),
                               ref.remove_landmark_letterbox(norm, padding[r]), 39)
  rotations = [0.3, -2.0, 0.0, 3.1]
  for r in range(4):
    absolute, _ = ref.tensors_to_landmarks(raw[r], _ref_options(options), outputs=("LANDMARKS",))
    want = ref.world_landmark_projection(absolute, {"rotation": F32(rotations[r])})
    points, _, _ = _as_arrays(want, 39)
    # cos and sin: rounded from float64 here, the C library's float versions in the
    # reference: an ulp apart at most, so the products by up to 1 ulp of the landmark.
    np.testing.assert_allclose(np.asarray(world.points[r]), points, rtol=2.4e-7, atol=0)


def test_subnormal_sigmoid_is_flushed_on_cpu():
  """A sigmoid below float32's smallest normal (logits under about -87.3) is a subnormal
  in MediaPipe's C++ (logits from -87.3 to -88.7; below, exp overflows and it is 0) and 0
  here where the device flushes subnormals (XLA:CPU does);
  above it the values are MediaPipe's."""
  options = lm.LandmarkOptions(num_landmarks=1, input_image_width=8, input_image_height=8,
                               visibility_activation="SIGMOID")
  raw = np.array([[1, 2, 3, -87.0], [1, 2, 3, -88.0]], F32)
  got = np.asarray(lm.decode_landmarks(raw, options).visibility)[:, 0]
  want = [ref.tensors_to_landmarks(r, _ref_options(options), outputs=("NORM_LANDMARKS",))[1][0]
          ["visibility"] for r in raw]
  assert got[0] == want[0] and got[0] > np.finfo(F32).tiny
  assert 0 < want[1] < np.finfo(F32).tiny
  if jax.default_backend() == "cpu":
    assert got[1] == 0


def test_jit_vmap_and_leading_dimensions():
  options = lm.GRAPH_OPTIONS["hand_landmark"]
  raw = np.random.default_rng(1).normal(0, 100, (2, 3, 63)).astype(F32)
  whole = lm.decode_landmarks(raw, options)
  assert whole.points.shape == (2, 3, 21, 3) and whole.visibility is None
  mapped = jax.vmap(lambda r: lm.decode_landmarks(r, options))(raw)
  np.testing.assert_array_equal(mapped.points, whole.points)   # true divisions under vmap too
  np.testing.assert_array_equal(whole.points[..., 0], raw[..., 0::3] / F32(224))
  jitted = jax.jit(lambda r: lm.decode_landmarks(r, options))(raw)
  np.testing.assert_array_equal(jitted.points, whole.points)


def test_bad_input_names_the_argument_and_value():
  options = lm.GRAPH_OPTIONS["hand_landmark"]
  with pytest.raises(ValueError, match="raw has 20 values per region, fewer than "
                     "num_landmarks=21"):
    lm.decode_landmarks(np.zeros((2, 20), F32), options)
  with pytest.raises(TypeError, match="raw must be a float32 array, got dtype int32"):
    lm.decode_landmarks(np.zeros((2, 63), np.int32), options)
  with pytest.raises(TypeError, match="options must be LandmarkOptions"):
    lm.decode_landmarks(np.zeros((2, 63), F32), {"num_landmarks": 21})
  world = lm.GRAPH_OPTIONS["hand_world_landmark"]
  with pytest.raises(ValueError, match="input_image_width and input_image_height are needed"):
    lm.decode_landmarks(np.zeros((63,), F32), world)
  with pytest.raises(ValueError, match="input_image_width and input_image_height are needed"):
    lm.decode_landmarks(np.zeros((63,), F32), dataclasses.replace(world, flip_vertically=True),
                        normalized=False)
  with pytest.raises(ValueError, match="num_landmarks must be >= 1, got 0"):
    lm.LandmarkOptions(num_landmarks=0)
  with pytest.raises(ValueError, match="normalize_z must not be 0"):
    lm.LandmarkOptions(num_landmarks=1, normalize_z=0.0)
  with pytest.raises(ValueError, match="visibility_activation must be one of NONE, SIGMOID"):
    lm.LandmarkOptions(num_landmarks=1, visibility_activation="RELU")
  decoded = lm.decode_landmarks(np.zeros((2, 63), F32), options)
  with pytest.raises(ValueError, match="padding must have shape"):
    lm.remove_letterbox(decoded, np.zeros((2, 3), F32))
  with pytest.raises(ValueError, match="padding of shape .* must broadcast"):
    lm.remove_letterbox(decoded, np.zeros((3, 4), F32))
  with pytest.raises(ValueError, match="rotation of shape .* must broadcast"):
    lm.project_world_landmarks(decoded, np.zeros((5,), F32))
  with pytest.raises(TypeError, match="landmarks.points must be float32, got dtype int32"):
    lm.remove_letterbox(decoded._replace(points=np.zeros((2, 21, 3), np.int32)),
                        np.zeros((2, 4), F32))
  with pytest.raises(TypeError, match="landmarks must be jaxanchors.landmarks.Landmarks"):
    lm.project_world_landmarks(np.zeros((2, 21, 3), F32), np.zeros(2, F32))
  assert jnp.isfinite(lm.remove_letterbox(decoded, np.zeros((2, 4), F32)).points).all()


# -- MediaPipe's recorded landmark graphs ---------------------------------------------------

# The TensorsToLandmarks node each graph's image landmarks come from, and the world one.
_GRAPH_KEYS = {"hand": ("hand_landmark", "hand_world_landmark"),
               "face": ("face_landmark", None),
               "pose": ("pose_landmark", "pose_world_landmark")}
# The model output holding the world landmarks.
_WORLD_OUTPUT = {"hand": 3, "pose": 4}


def _recorded(case: rd.Case, key: str) -> lm.Landmarks:
  """A recorded ``[R, L, 5]`` list (x, y, z, visibility, presence; NaN = unset)."""
  a = case.arrays[key]
  has = lambda k: bool(a.size) and not np.isnan(a[..., k]).all()  # noqa: E731
  return lm.Landmarks(a[..., :3], a[..., 3] if has(3) else None, a[..., 4] if has(4) else None)


def _assert_landmarks(got: lm.Landmarks, want: lm.Landmarks, atol: float = 0.0) -> None:
  for ours, theirs in zip(got, want):
    assert (ours is None) == (theirs is None)
    if theirs is not None:
      np.testing.assert_allclose(np.asarray(ours), theirs, rtol=0, atol=atol)


def _rects(case: rd.Case):
  rows = case.arrays["associated_rects"].astype(F32)
  return roi.Rects(*(jnp.asarray(rows[:, i]) for i in range(5)), jnp.ones(len(rows), bool))


def _crop_options(case: rd.Case):
  """The landmark model's crop options of the recorded graph's preset."""
  return presets.get({"hand": "palm", "pose": "pose", "face": "face_short_range"}[
      case.meta["graph"]]).roi.crop


def test_graph_options_are_the_recorded_graphs():
  """Each of GRAPH_OPTIONS is, field for field, a TensorsToLandmarks node of the recorded
  graph (the options as the graph sets them; defaults left out on both sides)."""
  seen = set()
  for name in rd.CASES:
    case = rd.load(name)
    nodes = [n["options"] for n in case.meta["options"]["tensors_to_landmarks"]]
    for key in _GRAPH_KEYS[case.meta["graph"]]:
      if key is not None:
        assert lm.GRAPH_OPTIONS[key].to_dict() in nodes, (name, key, nodes)
        seen.add(key)
  assert seen == set(lm.GRAPH_OPTIONS)


@pytest.mark.parametrize("name", rd.CASES)
def test_each_landmark_stage_equals_mediapipe(name):
  """Given MediaPipe's input to each stage, its output bit for bit: decoding, letterbox
  removal, the projection to the image and the world landmarks' rotation (on these runs
  the float64-rounded cos and sin equal the C library's)."""
  case = rd.load(name)
  graph = case.meta["graph"]
  rects = _rects(case)
  if not len(case.arrays["associated_rects"]):
    pytest.skip("MediaPipe found nothing in this photo")
  tensors = case.landmark_tensors
  image_key, world_key = _GRAPH_KEYS[graph]
  decoded = lm.decode_landmarks(tensors[0], lm.GRAPH_OPTIONS[image_key])
  _assert_landmarks(decoded, _recorded(case, "ungated_norm_landmarks"))
  if graph == "pose":   # refined from the heatmap first (not part of the package)
    removed_in = _recorded(case, "ungated_refined_landmarks")
    removed_in = jax.tree.map(lambda a: a[:, :33], removed_in)
  else:
    removed_in = decoded
  if "ungated_letterbox_removed_landmarks" in case.arrays:
    _, transform = roi.crop(rd.photo(case), rects, _crop_options(case))
    removed = lm.remove_letterbox(removed_in, transform.padding)
    _assert_landmarks(removed, _recorded(case, "ungated_letterbox_removed_landmarks"))
    projected_in = _recorded(case, "ungated_letterbox_removed_landmarks")
  else:
    projected_in = decoded
  projected = roi.project_landmarks(projected_in.points, rects)
  want = _recorded(case, "ungated_projected_landmarks")
  np.testing.assert_array_equal(np.asarray(projected), want.points)
  if world_key is not None:
    world = lm.decode_landmarks(tensors[_WORLD_OUTPUT[graph]], lm.GRAPH_OPTIONS[world_key],
                                normalized=False)
    _assert_landmarks(world, _recorded(case, "ungated_world_landmarks"))
    if graph == "pose":   # the first 33, with the image landmarks' visibility and presence
      world = lm.Landmarks(world.points[:, :33], decoded.visibility[:, :33],
                           decoded.presence[:, :33])
    turned = lm.project_world_landmarks(world, rects.rotation)
    _assert_landmarks(turned, _recorded(case, "ungated_projected_world_landmarks"))


@pytest.mark.parametrize("name", ["hand_astronaut_tall_rot0", "face_faces2_rot30",
                                  "pose_astronaut_rot30"])
def test_second_stage_through_the_jax_network_equals_mediapipe(name):
  """MediaPipe's crops through our landmark network, then decoding, letterbox removal and
  projection (pose: after the heatmap refinement, on its first 33 landmarks): MediaPipe's
  landmarks in the image within 2e-5 (the network's float32 rounding: its outputs equal
  LiteRT's within 1e-5 of their scale, 5e-5 for pose; see test_networks)."""
  pytest.importorskip("tflite", reason="the landmark networks need the 'models' extra")
  from jaxanchors import models  # pylint: disable=import-outside-toplevel
  case = rd.load(name)
  graph = case.meta["graph"]
  net = models.load_network({"hand": "hand_landmark_full", "face": "face_landmark",
                             "pose": "pose_landmark_full"}[graph])
  outputs = net(case.crops)
  raw = np.asarray(outputs[0]).reshape(len(case.crops), -1)
  want_raw = case.landmark_tensors[0]
  # As in test_networks: pose's deeper sums round further apart (2.5e-5 there).
  scale = 5e-5 if graph == "pose" else 1e-5
  assert np.abs(raw - want_raw).max() <= scale * np.abs(want_raw).max()
  options = lm.GRAPH_OPTIONS[_GRAPH_KEYS[graph][0]]
  decoded = lm.decode_landmarks(jnp.asarray(raw), options)
  rects = _rects(case)
  if graph == "pose":
    _assert_landmarks(decoded, _recorded(case, "ungated_norm_landmarks"), atol=2e-5)
    decoded = lm.refine_from_heatmap(decoded, outputs[3], lm.POSE_REFINEMENT)
    decoded = jax.tree.map(lambda a: a[:, :33], decoded)
  if graph in ("hand", "pose"):
    _, transform = roi.crop(rd.photo(case), rects, _crop_options(case))
    decoded = lm.remove_letterbox(decoded, transform.padding)
  projected = roi.project_landmarks(decoded.points, rects)
  want = case.arrays["ungated_projected_landmarks"][..., :3]
  np.testing.assert_allclose(np.asarray(projected), want, rtol=0, atol=2e-5)
  assert np.abs(np.asarray(projected) - want).max() > 0   # not the same arithmetic by chance


@pytest.mark.parametrize("name", [n for n in rd.CASES if n.startswith("pose_")])
def test_heatmap_refinement_equals_mediapipe(name):
  """The pose graph's refinement, from MediaPipe's decoded landmarks and the heatmap of our
  pose network on MediaPipe's crop (the heatmap is not recorded; the network's outputs
  equal LiteRT's within 2e-6 of their scale there): MediaPipe's refined landmarks within
  1e-6 (measured: 3.9e-7), the same landmarks moved, and the options the recorded
  graph's."""
  pytest.importorskip("tflite", reason="the pose heatmap comes from the 'models' extra")
  from jaxanchors import models  # pylint: disable=import-outside-toplevel
  case = rd.load(name)
  node = case.meta["options"]["refine_landmarks_from_heatmap"][0]["options"]
  assert lm.POSE_REFINEMENT.to_dict() == {k: v for k, v in node.items()
                                          if getattr(lm.HeatmapRefinementOptions(), k) != v}
  heatmap = models.load_network("pose_landmark_full")(case.crops)[3]
  before = _recorded(case, "ungated_norm_landmarks")
  got = lm.refine_from_heatmap(before, heatmap, lm.POSE_REFINEMENT)
  want = _recorded(case, "ungated_refined_landmarks")
  np.testing.assert_allclose(np.asarray(got.points), want.points, rtol=0, atol=1e-6)
  moved = np.any(want.points != before.points, axis=-1)
  assert moved.sum() >= 10
  np.testing.assert_array_equal(np.any(np.asarray(got.points) != before.points, axis=-1), moved)
  np.testing.assert_array_equal(np.asarray(got.visibility), want.visibility)


@pytest.mark.parametrize("kernel_size,refine", [(7, False), (9, True), (4, True), (0, False),
                                                (-2, True), (3, False)])
def test_heatmap_refinement_equals_the_reference_bit_for_bit(kernel_size, refine):
  """Random heatmaps and landmarks on, near and off the heatmap's edges (slightly negative
  coordinates read cell 0, as C++ truncates), NaN, and both refinement switches."""
  rng = np.random.default_rng(kernel_size + 10 * refine)
  num, h, w = 12, 16, 20
  raw = np.zeros((3, num * 5), F32)
  raw[:, 0::5] = rng.uniform(-0.1, 1.1, (3, num)) * 256
  raw[:, 1::5] = rng.uniform(-0.1, 1.1, (3, num)) * 256
  raw[:, 0:2] = [-1.0, 128.0]   # x slightly below 0: cell 0, refined
  raw[1, 5:7] = [np.nan, 10.0]
  raw[:, 3::5], raw[:, 4::5] = rng.normal(0, 3, (2, 3, num))
  options = lm.GRAPH_OPTIONS["pose_landmark"]
  options = dataclasses.replace(options, num_landmarks=num)
  decoded = lm.decode_landmarks(raw, options)
  heatmap = rng.normal(-1, 2.5, (3, h, w, num)).astype(F32)
  refine_options = lm.HeatmapRefinementOptions(kernel_size=kernel_size,
                                               min_confidence_to_refine=0.6,
                                               refine_presence=refine, refine_visibility=refine)
  got = lm.refine_from_heatmap(decoded, heatmap, refine_options)
  moved = 0
  for r in range(3):
    _, norm = ref.tensors_to_landmarks(raw[r], _ref_options(options), outputs=("NORM_LANDMARKS",))
    want = ref.refine_landmarks_from_heatmap(norm, heatmap[r], refine_options.to_dict())
    _assert_equal_to_reference(jax.tree.map(lambda a, r=r: a[r], got), want, num)
    moved += sum(a["x"] != b["x"] for a, b in zip(norm, want) if not np.isnan(a["x"]))
  assert (moved > 0) == (kernel_size >= 0)
