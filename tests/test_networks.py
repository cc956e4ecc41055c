"""The .tflite networks as JAX functions, against LiteRT running the same files.

LiteRT is the oracle: its reference CPU kernels (no XNNPACK delegate, every
intermediate tensor kept) give each operator's inputs and outputs and the
dequantised and densified weights; its default (XNNPACK) interpreter gives the
outputs users compare with. MediaPipe's recorded runs give the detections.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import pathlib
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxanchors as ja
from jaxanchors import pipeline, presets
import _util
import mediapipe_data

pytest.importorskip("tflite", reason="the network tests need the 'models' extra "
                    "(pip install -e '.[models]')")
litert = pytest.importorskip("ai_edge_litert.interpreter",
                             reason="LiteRT is the oracle: pip install -e '.[models]'")

from jaxanchors import models, networks  # noqa: E402  (after the skips)

MODELS = sorted(models.DETECTOR_MODELS)
LANDMARKS = sorted(models.LANDMARK_MODELS)
PRESET_OF_MODEL = {"face_short_range": "face_short_range", "face_full_range": "face_full_range",
                   "palm_lite": "palm", "palm_full": "palm", "pose": "pose"}


@functools.lru_cache(maxsize=None)
def network(name: str) -> networks.Network:
  return models.load_network(name)


def reference_interpreter(name: str):
  """LiteRT with its reference kernels, keeping every intermediate tensor."""
  it = litert.Interpreter(
      model_path=str(models.model_path(name)), experimental_preserve_all_tensors=True,
      experimental_op_resolver_type=litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
  it.allocate_tensors()
  return it


def random_input(name: str, seed: int = 0) -> np.ndarray:
  shape = network(name).input_shape
  return np.random.default_rng(seed).uniform(-1, 1, (1,) + shape).astype(np.float32)


@functools.lru_cache(maxsize=None)
def reference_run(name: str):
  """(interpreter after one invoke on a random input, that input)."""
  it = reference_interpreter(name)
  x = random_input(name)
  it.set_tensor(it.get_input_details()[0]["index"], x)
  it.invoke()
  return it, x


def rel_error(got, want) -> float:
  want = np.asarray(want, np.float64)
  scale = np.abs(want).max()
  return float(np.abs(np.asarray(got, np.float64) - want).max() / scale) if scale else float(
      np.abs(np.asarray(got)).max())


# -- weights ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", MODELS + LANDMARKS)
def test_weights_equal_litert_dequantized_and_densified_bit_for_bit(name):
  net = network(name)
  it, _ = reference_run(name)
  graph_params = dict(net.graph.param_tensors)
  assert set(graph_params) == set(net.params)
  stored = {s.dtype for s in net.sources.values()}
  assert "float16" in stored or name == "iris_landmark"    # iris stores float32 weights
  if name in ("face_full_range", "pose"):
    assert any(s.sparse for s in net.sources.values())
  for key, tensor in graph_params.items():
    want = it.get_tensor(tensor)
    got = net.params[key]
    assert got.dtype == np.float32 and want.dtype == np.float32, key
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32), err_msg=key)
  # A stored tensor feeding several operators is one parameter.
  assert len({s.tensor for s in net.sources.values()}) == len(net.sources)


def test_densify_decodes_a_hand_built_csr_tensor():
  # [[0, 5, 0, 7], [0, 0, 0, 0], [3, 0, 0, 0]] with the last dimension compressed.
  values = np.array([5, 7, 3], np.float16)
  segments = np.array([0, 2, 2, 3])
  indices = np.array([1, 3, 0])
  dense = networks.densify(values, (3, 4), (0, 1),
                           [("DENSE", 3, None, None), ("SPARSE_CSR", 0, segments, indices)])
  np.testing.assert_array_equal(dense, [[0, 5, 0, 7], [0, 0, 0, 0], [3, 0, 0, 0]])
  # Traversal order (1, 0): the columns are the outer dimension.
  dense_t = networks.densify(np.array([3, 5, 7], np.float32), (3, 4), (1, 0),
                             [("DENSE", 4, None, None),
                              ("SPARSE_CSR", 0, np.array([0, 1, 2, 2, 3]), np.array([2, 0, 0]))])
  np.testing.assert_array_equal(dense_t, [[0, 5, 0, 7], [0, 0, 0, 0], [3, 0, 0, 0]])
  with pytest.raises(ValueError, match="indices out of range"):
    networks.densify(values, (3, 4), (0, 1),
                     [("DENSE", 3, None, None), ("SPARSE_CSR", 0, segments, indices + 2)])


# -- each operator ------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames="graph")
def _each_op(params, inputs, *, graph):
  """Every operator of ``graph`` applied to the given inputs (not chained)."""
  out = {}
  for op in graph.ops:
    args = [params[i] if isinstance(i, str) else inputs[i] for i in op.inputs]
    out[op.output] = networks._OPS[op.kind](*args, *op.options)
  return out


# Of the landmark models, those with operators the detectors do not have.
@pytest.mark.parametrize("name", MODELS + ["hand_landmark_full", "pose_landmark_full"])
def test_each_operator_equals_litert_on_its_real_inputs(name):
  """Every translated operator, fed LiteRT's own input tensors, gives LiteRT's output
  within float32 rounding (jitted): 2e-6 of the output's largest magnitude for the
  detectors; 2e-5 for the landmark models, whose sums cancel more. Measured there: up to
  9.3e-6 on hand_landmark_full's one-unit FULLY_CONNECTED (an output of 0.41 summing
  1152 terms of total magnitude 75; LiteRT and we are 3e-7 and 1e-5 from its float64
  value, and regrouping our sum moves ours anywhere in between) and 8.6e-6 on
  pose_landmark_full's RELU6 convolutions (clipped at 6, large sums before the clip;
  LiteRT is as far from float64 as we are)."""
  net = network(name)
  it, _ = reference_run(name)
  inputs = {t: it.get_tensor(t) for op in net.graph.ops for t in op.inputs if isinstance(t, int)}
  got = _each_op(net.params, inputs, graph=net.graph)
  worst = {}
  for op in net.graph.ops:
    want = it.get_tensor(op.output)
    assert got[op.output].shape == want.shape, op
    err = rel_error(got[op.output], want)
    worst[op.kind] = max(worst.get(op.kind, 0.0), err)
  assert max(worst.values()) <= (2e-6 if name in MODELS else 2e-5), worst
  assert {"CONV_2D", "DEPTHWISE_CONV_2D", "ADD"} <= set(worst)
  if name == "hand_landmark_full":
    assert {"FULLY_CONNECTED", "LOGISTIC", "MEAN"} <= set(worst)


# -- whole networks -----------------------------------------------------------------------


def _photo_inputs(name: str) -> list[tuple[str, np.ndarray, ja.LetterboxTransform]]:
  out = []
  preset = presets.get(PRESET_OF_MODEL[name])
  for case_name in mediapipe_data.CASES:
    case = mediapipe_data.load(case_name)
    if case.model == name:
      tensor, transform = ja.letterbox(mediapipe_data.photo(case), preset.preprocessing)
      out.append((case_name, np.asarray(tensor), transform))
  return out


@functools.lru_cache(maxsize=None)
def batch_run(name: str):
  """One jitted call on [a random frame, every recorded photo of the model]."""
  net = network(name)
  photos = _photo_inputs(name)
  frames = [random_input(name, 1)[0]]
  frames += [tensor for _, tensor, _ in photos]
  x = np.stack(frames)
  boxes, scores = net(x)
  return x, np.asarray(boxes), np.asarray(scores), photos


@pytest.mark.parametrize("name", MODELS)
def test_network_equals_litert_on_random_inputs_and_photos(name):
  """Raw outputs within 1e-5 of each output's scale of LiteRT's default (XNNPACK)
  interpreter and of its reference kernels."""
  x, boxes, scores, photos = batch_run(name)
  assert len(photos) >= 1 and x.shape[0] == len(photos) + 1
  model = models.TFLiteModel.from_name(name)
  reference = reference_interpreter(name)
  net = network(name)
  for i in range(x.shape[0]):
    want_boxes, want_scores = model(x[i:i + 1])
    assert boxes[i:i + 1].shape == want_boxes.shape and scores[i:i + 1].shape == want_scores.shape
    assert rel_error(boxes[i], want_boxes[0]) <= 1e-5
    assert rel_error(scores[i], want_scores[0]) <= 1e-5
    reference.set_tensor(reference.get_input_details()[0]["index"], x[i:i + 1])
    reference.invoke()
    assert rel_error(boxes[i], reference.get_tensor(net.graph.boxes)[0]) <= 1e-5
    assert rel_error(scores[i], reference.get_tensor(net.graph.scores)[0]) <= 1e-5


# Where each landmark model looks in the astronaut photo (rows, columns): the face, an eye,
# the raised hand with the flag, the upper body.
_LANDMARK_CROPS = {"face_landmark": (slice(20, 240), slice(140, 330)),
                   "iris_landmark": (slice(95, 135), slice(185, 235)),
                   "hand_landmark_full": (slice(0, 200), slice(300, 500)),
                   "hand_landmark_lite": (slice(0, 200), slice(300, 500)),
                   "pose_landmark_full": (slice(0, 512), slice(0, 512))}


def _landmark_inputs(name: str) -> np.ndarray:
  """[a random frame in -1..1, a crop of the astronaut photo in 0..1] at the model's size."""
  data = pytest.importorskip("skimage.data", reason="scikit-image gives the test photo")
  height, width, _ = network(name).input_shape
  rows, cols = _LANDMARK_CROPS[name]
  crop = data.astronaut()[rows, cols].astype(np.float32) / 255
  # Nearest-pixel resampling: any real image does.
  ys = (np.arange(height) * crop.shape[0] / height).astype(int)
  xs = (np.arange(width) * crop.shape[1] / width).astype(int)
  return np.stack([random_input(name, 2)[0], crop[ys][:, xs]])


@pytest.mark.parametrize("name", LANDMARKS)
def test_landmark_network_equals_litert(name):
  """Every output of a landmark model, batched in one jitted call, equals LiteRT's default
  (XNNPACK) interpreter and its reference kernels within 1e-5 of the output's scale, or
  within three times what those two disagree by where that is more: pose_landmark_full's
  segmentation logits (up to 1.5e3, sums that cancel) differ between LiteRT's two paths by
  3.5e-4 to 5.4e-4 of their scale, and ours from either by up to 9.7e-4."""
  net = network(name)
  assert not net.is_detector
  x = _landmark_inputs(name)
  got = net(x)
  assert isinstance(got, tuple) and len(got) == len(net.output_names)
  fast = litert.Interpreter(model_path=str(models.model_path(name)))
  fast.allocate_tensors()
  reference = reference_interpreter(name)
  names = tuple(d["name"] for d in fast.get_output_details())
  assert names == net.output_names
  for i in range(x.shape[0]):
    outs = []
    for it in (fast, reference):
      it.set_tensor(it.get_input_details()[0]["index"], x[i:i + 1])
      it.invoke()
      outs.append([it.get_tensor(d["index"])[0] for d in it.get_output_details()])
    for k, (ours, want, other) in enumerate(zip(got, *outs)):
      assert ours.shape == (x.shape[0],) + net.output_shapes[k] and ours.dtype == jnp.float32
      assert ours[i].shape == want.shape, (name, k)
      tol = max(1e-5, 3 * rel_error(want, other))
      assert rel_error(ours[i], want) <= tol, (name, i, names[k], rel_error(ours[i], want))
      assert rel_error(ours[i], other) <= tol, (name, i, names[k], rel_error(ours[i], other))
  assert rel_error(got[0][0], got[0][1]) > 1e-2     # the two frames differ


def test_landmark_models_are_not_detectors():
  """What needs an SSD detector says so for a landmark model; its weights write back."""
  net = network("hand_landmark_full")
  with pytest.raises(ValueError, match="hand_landmark_full.tflite is not an SSD detector"):
    net.num_anchors  # noqa: B018
  with pytest.raises(ValueError, match="not an SSD detector"):
    ja.finetune.head_keys(net)
  with pytest.raises(ValueError, match="unknown model 'hand_landmark_full'; expected a detector"):
    ja.Detector.from_preset("palm", max_detections=1, model="hand_landmark_full")
  with pytest.raises(ValueError, match="expected two float32"):
    models.TFLiteModel.from_name("hand_landmark_full")
  assert net.to_tflite(net.params) == net.path.read_bytes()
  assert set(models.MODELS) == set(models.DETECTOR_MODELS) | set(models.LANDMARK_MODELS)


@pytest.mark.parametrize("name", ["face_short_range", "palm_full"])
def test_litert_run_batch_equals_one_interpreter_frame_by_frame(name):
  """TFLiteModel.run_batch (frames spread over one-thread interpreters on threads) gives
  the bits of the model's own interpreter run frame by frame, for any worker count."""
  model = models.TFLiteModel.from_name(name)
  frames = np.concatenate([random_input(name, seed) for seed in range(5)])
  want = [model(f) for f in frames]
  want_boxes = np.concatenate([w.raw_boxes for w in want])
  want_scores = np.concatenate([w.raw_scores for w in want])
  assert len({w.raw_scores.tobytes() for w in want}) == 5   # the frames differ
  for workers in (None, 1, 2, 3, 8):
    got = model.run_batch(frames, workers=workers)
    assert got.raw_boxes.shape == want_boxes.shape and got.raw_scores.shape == want_scores.shape
    np.testing.assert_array_equal(got.raw_boxes, want_boxes, err_msg=str(workers))
    np.testing.assert_array_equal(got.raw_scores, want_scores, err_msg=str(workers))
  empty = model.run_batch(frames[:0])
  assert empty.raw_boxes.shape == (0,) + want_boxes.shape[1:]
  for bad in (0, -2, 1.5, True, "2"):
    with pytest.raises(ValueError, match="workers"):
      model.run_batch(frames, workers=bad)
  with pytest.raises(ValueError, match="tensors must have shape"):
    model.run_batch(frames[0])


def _run_batch_in_child(model, frames, out):
  out.put(model.run_batch(frames).raw_boxes)


# The child runs LiteRT only, never JAX, so JAX's warning about forking does not apply.
@pytest.mark.filterwarnings("ignore:os.fork\\(\\) was called:RuntimeWarning")
def test_litert_run_batch_works_in_a_forked_child():
  """A process forked after run_batch has none of the parent's worker threads; its
  run_batch starts its own instead of waiting for them forever."""
  if "fork" not in multiprocessing.get_all_start_methods():
    pytest.skip("no fork on this platform")
  model = models.TFLiteModel.from_name("face_short_range")
  frames = np.concatenate([random_input("face_short_range", seed) for seed in range(4)])
  want = model.run_batch(frames, workers=2).raw_boxes
  ctx = multiprocessing.get_context("fork")
  out = ctx.Queue()
  child = ctx.Process(target=_run_batch_in_child, args=(model, frames, out))
  child.start()
  try:
    got = out.get(timeout=60)
  finally:
    child.join(10)
    if child.is_alive():
      child.kill()
  np.testing.assert_array_equal(got, want)
  assert child.exitcode == 0


@pytest.mark.parametrize("name", mediapipe_data.CASES)
def test_photo_to_detections_through_the_jax_network_equals_mediapipe(name):
  """Photo -> our letterbox -> our network -> detect: MediaPipe's recorded detections
  (same count and order, boxes, keypoints and scores within 1e-4)."""
  case = mediapipe_data.load(name)
  x, boxes, scores, photos = batch_run(case.model)
  row = 1 + [n for n, _, _ in photos].index(name)
  transform = dict((n, t) for n, _, t in photos)[name]
  preset = presets.get(PRESET_OF_MODEL[case.model])
  det = jax.tree.map(np.asarray, pipeline.detect(boxes[row], scores[row], preset,
                                                 max_detections=8, transform=transform))
  a = case.arrays
  n = int(det.valid.sum())
  assert n == len(a["final_scores"]) and det.valid[:n].all()
  np.testing.assert_allclose(np.asarray(ja.to_xywh(det.boxes))[:n], a["final_boxes"], rtol=0,
                             atol=1e-4)
  np.testing.assert_allclose(det.keypoints[:n], a["final_keypoints"], rtol=0, atol=1e-4)
  np.testing.assert_allclose(det.scores[:n], a["final_scores"], rtol=0, atol=1e-4)
  np.testing.assert_array_equal(det.classes[:n], a["final_labels"])


# -- JAX transformations (on the smallest model) ------------------------------------------


def test_leading_batch_dims_vmap_and_one_compile():
  net = network("face_short_range")
  x, boxes, scores, _ = batch_run("face_short_range")
  before = networks._apply._cache_size()
  lead = net(x.reshape(2, 3, *x.shape[1:]))
  assert networks._apply._cache_size() == before     # the [6, ...] compile serves
  np.testing.assert_array_equal(np.asarray(lead.raw_boxes).reshape(boxes.shape), boxes)
  vmapped = jax.jit(jax.vmap(net.apply, in_axes=(None, 0)))(net.params, x[:, None])
  np.testing.assert_allclose(np.asarray(vmapped.raw_scores)[:, 0], scores, rtol=0, atol=1e-6)
  net.apply(net.params, x)                           # the unpacked form compiles once too
  before = networks._apply._cache_size()
  net(x + 0.5)
  net.apply({k: v * 1.0 for k, v in net.params.items()}, x)
  net.apply(net.pack({k: v * 1.0 for k, v in net.params.items()}), x)
  assert networks._apply._cache_size() == before     # same shapes: no new compile


def test_packed_params_give_the_same_values():
  # First asked for inside a trace (detect_images in a user's jit), they stay concrete.
  fresh = models.load_network("face_short_range")
  jax.jit(lambda: jax.tree.leaves(fresh.packed_params)[0].sum())()
  assert all(isinstance(x, jax.Array) and not isinstance(x, jax.core.Tracer)
             for x in jax.tree.leaves(fresh.packed_params))
  net = network("face_short_range")
  x, boxes, scores, _ = batch_run("face_short_range")
  packed = net.packed_params
  # One array for every parameter but the CONV_2D kernels (read in place by the products).
  n_conv = sum(op.kind == "CONV_2D" for op in net.graph.ops)
  assert len(jax.tree.leaves(packed)) == 1 + n_conv < len(net.params)
  by_dict = net.apply(net.params, x)
  for got in (net(x), net.apply(packed, x), jax.jit(net.apply)(net.pack(net.params), x)):
    np.testing.assert_array_equal(np.asarray(got.raw_boxes), np.asarray(by_dict.raw_boxes))
    np.testing.assert_array_equal(np.asarray(got.raw_scores), np.asarray(by_dict.raw_scores))
  back = jax.jit(net.unpack)(packed)
  assert set(back) == set(net.params)
  for k, v in net.params.items():
    np.testing.assert_array_equal(np.asarray(back[k]), v)

  # Gradients reach the packed arrays (the unpacking is slices and reshapes of them).
  g = jax.grad(lambda f: jnp.sum(net.unpack(packed._replace(flat=f))[next(iter(
      k for k, _, _ in net._layout))]))(packed.flat)
  assert float(jnp.sum(g)) > 0
  with pytest.raises(ValueError, match=r"packed params.flat has shape \[3\]"):
    net.apply(packed._replace(flat=jnp.zeros(3)), x)
  with pytest.raises(ValueError, match="missing"):
    net.apply(packed._replace(kernels={}), x)


def test_gradient_matches_finite_differences():
  """Gradients in float64 (where central differences are accurate) match finite
  differences; the float32 gradients match the float64 ones."""
  net = network("face_short_range")
  x = random_input("face_short_range", 7)
  key = "conv2d_1/Kernel_dequantize"
  rng = np.random.default_rng(1)
  direction = rng.normal(size=net.params[key].shape)
  d_image = rng.normal(size=x.shape)

  def loss(params, image, dtype):
    boxes, scores = net.apply(params, image, dtype=dtype)
    return jnp.sum(jax.nn.sigmoid(scores)) + 1e-3 * jnp.sum(boxes)

  grad32 = jax.jit(jax.grad(loss, argnums=(0, 1)), static_argnums=2)(net.params, x, "float32")
  assert set(grad32[0]) == set(net.params)
  assert all(np.isfinite(np.asarray(g)).all() for g in grad32[0].values())
  with jax.enable_x64(True):
    params = {k: np.float64(v) for k, v in net.params.items()}
    image = np.float64(x)
    grads, image_grad = jax.jit(jax.grad(loss, argnums=(0, 1)),
                                static_argnums=2)(params, image, "float64")
    forward = jax.jit(loss, static_argnums=2)
    # Small steps: a larger one crosses ReLU kinks (at 1e-5 the difference is off by
    # 0.5%, at 1e-6 by 1e-4); rounding of the float64 loss stays below 1e-8 here.
    eps = 1e-7
    plus = {**params, key: params[key] + eps * direction}
    minus = {**params, key: params[key] - eps * direction}
    numeric = (float(forward(plus, image, "float64"))
               - float(forward(minus, image, "float64"))) / (2 * eps)
    analytic = float(np.vdot(grads[key], direction))
    assert abs(analytic) > 1.0
    assert abs(numeric - analytic) <= 1e-6 * abs(analytic), (numeric, analytic)
    numeric = (float(forward(params, image + eps * d_image, "float64"))
               - float(forward(params, image - eps * d_image, "float64"))) / (2 * eps)
    analytic = float(np.vdot(image_grad, d_image))
    assert abs(numeric - analytic) <= 1e-6 * abs(analytic), (numeric, analytic)
  for k in (key, "conv2d/Kernel_dequantize"):
    assert rel_error(grad32[0][k], grads[k]) <= 1e-3, k
  assert rel_error(grad32[1], image_grad) <= 1e-3


def test_bfloat16_compute_keeps_the_face_detections():
  """bfloat16 compute (8-bit mantissa) moves raw outputs by a few percent; on the
  recorded face photos the detections stay: same count, IoU >= 0.98 with the float32
  ones, scores within 0.01 (measured: IoU >= 0.9857, scores within 0.0072)."""
  net = network("face_short_range")
  x, boxes, scores, photos = batch_run("face_short_range")
  low = net(x, dtype="bfloat16")
  assert low.raw_boxes.dtype == jnp.float32 and low.raw_scores.dtype == jnp.float32
  preset = presets.get("face_short_range")
  full = jax.tree.map(np.asarray, pipeline.detect(boxes, scores, preset, max_detections=8))
  half = jax.tree.map(np.asarray, pipeline.detect(low.raw_boxes, low.raw_scores, preset,
                                                  max_detections=8))
  np.testing.assert_array_equal(full.valid[1:], half.valid[1:])   # the photos
  assert full.valid[1:].sum() >= 5
  ok = full.valid[1:]
  iou = np.asarray(ja.overlap(full.boxes[1:], half.boxes[1:],
                              overlap_type="INTERSECTION_OVER_UNION"))
  assert iou[ok].min() >= 0.98
  assert np.abs(full.scores[1:] - half.scores[1:])[ok].max() <= 0.01
  with pytest.raises(ValueError, match="dtype"):
    net(x, dtype="int8")


def test_bad_inputs_name_the_argument():
  net = network("face_short_range")
  with pytest.raises(ValueError, match=r"images must have shape \[\.\.\., 128, 128, 3\]"):
    net(np.zeros((1, 64, 64, 3), np.float32))
  with pytest.raises(TypeError, match="images must be a float array"):
    net(np.zeros((1, 128, 128, 3), np.uint8))
  with pytest.raises(ValueError, match="missing"):
    net.apply({}, np.zeros((1, 128, 128, 3), np.float32))
  key = next(iter(net.params))
  with pytest.raises(ValueError, match="has shape"):
    net.apply({**net.params, key: np.zeros((1,), np.float32)}, np.zeros((128, 128, 3)))
  with pytest.raises(ValueError, match="unknown model"):
    models.load_network("face_tiny")
  with pytest.raises(FileNotFoundError):
    models.load_network("/nonexistent/model.tflite")


_EXPORT_SCRIPT = textwrap.dedent("""
    import sys
    import jax, numpy as np
    from jax import export
    import jaxanchors.networks  # registers the NetworkOutput result type
    blob = open(sys.argv[1], "rb").read()
    with np.load(sys.argv[2]) as f:
        arrays = {k: f[k] for k in f.files}
    x = arrays.pop("__images__")
    boxes, scores = export.deserialize(blob).call(arrays, x)
    np.savez(sys.argv[3], boxes=np.asarray(boxes), scores=np.asarray(scores))
""")


def test_jax_export_round_trip_in_a_fresh_process(tmp_path):
  net = network("face_short_range")
  x, _, _, _ = batch_run("face_short_range")
  exported = jax.export.export(jax.jit(net.apply))(net.params, x)
  (tmp_path / "net.bin").write_bytes(exported.serialize())
  np.savez(tmp_path / "in.npz", __images__=x, **net.params)
  here = exported.call(net.params, x)
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  result = subprocess.run([sys.executable, "-c", _EXPORT_SCRIPT, str(tmp_path / "net.bin"),
                           str(tmp_path / "in.npz"), str(tmp_path / "out.npz")],
                          env=env, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  with np.load(tmp_path / "out.npz") as out:
    np.testing.assert_array_equal(out["boxes"], np.asarray(here.raw_boxes))
    np.testing.assert_array_equal(out["scores"], np.asarray(here.raw_scores))


_SHARDING_SCRIPT = textwrap.dedent("""
    import jax, numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    from jaxanchors import models
    assert jax.device_count() == 8, jax.devices()
    net = models.load_network("face_short_range")
    x = np.random.default_rng(0).uniform(-1, 1, (8, 128, 128, 3)).astype(np.float32)
    single = net(x)
    mesh = Mesh(np.array(jax.devices()), ("batch",))
    xs = jax.device_put(x, NamedSharding(mesh, P("batch")))
    sharded = jax.jit(net.apply)(net.params, xs)
    assert len(sharded.raw_boxes.sharding.device_set) == 8
    for a, b in zip(single, sharded):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    print("ok")
""")


def test_sharded_batch_equals_one_device():
  assert _util.run_on_host_devices(_SHARDING_SCRIPT).split()[-1] == "ok"


# -- models the translator does not take ---------------------------------------------------


def _tiny_model(path: pathlib.Path, *, op: int = 19, quantized: bool = False,
                signature: tuple[int, ...] | None = None) -> pathlib.Path:
  """A one-operator .tflite: input [1, 4, 4, 3] -> op -> output (default RELU)."""
  import flatbuffers
  import tflite as t

  b = flatbuffers.Builder(1024)

  def ints(start, values):
    start(b, len(values))
    for v in reversed(values):
      b.PrependInt32(v)
    return b.EndVector()

  def floats(start, values):
    start(b, len(values))
    for v in reversed(values):
      b.PrependFloat32(v)
    return b.EndVector()

  def longs(start, values):
    start(b, len(values))
    for v in reversed(values):
      b.PrependInt64(v)
    return b.EndVector()

  def tensor(name, shape, tensor_type=0, quant=False, sig=None):
    name_off = b.CreateString(name)
    shape_off = ints(t.TensorStartShapeVector, list(shape))
    sig_off = ints(t.TensorStartShapeSignatureVector, list(sig)) if sig else None
    q = None
    if quant:
      scale = floats(t.QuantizationParametersStartScaleVector, [0.5])
      zero = longs(t.QuantizationParametersStartZeroPointVector, [0])
      t.QuantizationParametersStart(b)
      t.QuantizationParametersAddScale(b, scale)
      t.QuantizationParametersAddZeroPoint(b, zero)
      q = t.QuantizationParametersEnd(b)
    t.TensorStart(b)
    t.TensorAddShape(b, shape_off)
    if sig_off is not None:
      t.TensorAddShapeSignature(b, sig_off)
    t.TensorAddType(b, tensor_type)
    t.TensorAddBuffer(b, 0)
    t.TensorAddName(b, name_off)
    if q is not None:
      t.TensorAddQuantization(b, q)
    return t.TensorEnd(b)

  tensors = [tensor("image", (1, 4, 4, 3), 9 if quantized else 0, quantized, signature),
             tensor("activated", (1, 4, 4, 3), 9 if quantized else 0, quantized)]
  t.SubGraphStartTensorsVector(b, len(tensors))
  for off in reversed(tensors):
    b.PrependUOffsetTRelative(off)
  tensors_off = b.EndVector()
  op_inputs = ints(t.OperatorStartInputsVector, [0])
  op_outputs = ints(t.OperatorStartOutputsVector, [1])
  t.OperatorStart(b)
  t.OperatorAddOpcodeIndex(b, 0)
  t.OperatorAddInputs(b, op_inputs)
  t.OperatorAddOutputs(b, op_outputs)
  op_off = t.OperatorEnd(b)
  t.SubGraphStartOperatorsVector(b, 1)
  b.PrependUOffsetTRelative(op_off)
  ops_off = b.EndVector()
  sg_inputs = ints(t.SubGraphStartInputsVector, [0])
  sg_outputs = ints(t.SubGraphStartOutputsVector, [1])
  t.SubGraphStart(b)
  t.SubGraphAddTensors(b, tensors_off)
  t.SubGraphAddInputs(b, sg_inputs)
  t.SubGraphAddOutputs(b, sg_outputs)
  t.SubGraphAddOperators(b, ops_off)
  sg_off = t.SubGraphEnd(b)
  t.ModelStartSubgraphsVector(b, 1)
  b.PrependUOffsetTRelative(sg_off)
  subgraphs = b.EndVector()
  t.OperatorCodeStart(b)
  t.OperatorCodeAddBuiltinCode(b, op)
  t.OperatorCodeAddDeprecatedBuiltinCode(b, min(op, 127))
  t.OperatorCodeAddVersion(b, 1)
  code = t.OperatorCodeEnd(b)
  t.ModelStartOperatorCodesVector(b, 1)
  b.PrependUOffsetTRelative(code)
  codes = b.EndVector()
  t.BufferStart(b)
  empty = t.BufferEnd(b)
  t.ModelStartBuffersVector(b, 1)
  b.PrependUOffsetTRelative(empty)
  buffers = b.EndVector()
  t.ModelStart(b)
  t.ModelAddVersion(b, 3)
  t.ModelAddOperatorCodes(b, codes)
  t.ModelAddSubgraphs(b, subgraphs)
  t.ModelAddBuffers(b, buffers)
  b.Finish(t.ModelEnd(b), b"TFL3")
  path.write_bytes(bytes(b.Output()))
  return path


def test_unsupported_models_raise_naming_the_operator_and_tensor(tmp_path):
  # The hand-built model is valid: LiteRT runs it.
  relu = _tiny_model(tmp_path / "relu.tflite")
  it = litert.Interpreter(model_path=str(relu))
  it.allocate_tensors()
  it.set_tensor(0, np.full((1, 4, 4, 3), -2.0, np.float32))
  it.invoke()
  assert (it.get_tensor(1) == 0).all()
  # One output, not a detector's two: a network that returns its outputs as stored.
  net = networks.load(relu)
  assert not net.is_detector and net.output_names == ("activated",)
  assert net.output_shapes == ((4, 4, 3),)
  x = np.random.default_rng(0).normal(size=(2, 4, 4, 3)).astype(np.float32)
  (out,) = net(x)
  np.testing.assert_array_equal(out, np.maximum(x, 0))
  with pytest.raises(ValueError, match=r"relu.tflite is not an SSD detector: its outputs are "
                     r"activated \[4, 4, 3\]"):
    net.num_anchors  # noqa: B018
  with pytest.raises(ValueError, match="not an SSD detector"):
    pipeline.detect_images(np.zeros((4, 4, 3), np.uint8), "face_short_range", max_detections=1,
                           network=net)
  with pytest.raises(ValueError, match=r"operator 0 \(TANH\), producing tensor 'activated', is "
                     "not supported"):
    networks.load(_tiny_model(tmp_path / "tanh.tflite", op=28))
  with pytest.raises(ValueError, match=r"tensor 0 \('image'\).*is quantised"):
    networks.load(_tiny_model(tmp_path / "int8.tflite", quantized=True))
  with pytest.raises(ValueError, match=r"tensor 0 \('image'\) has a dynamic shape"):
    networks.load(_tiny_model(tmp_path / "dynamic.tflite", signature=(-1, -1, 4, 3)))
  garbage = tmp_path / "garbage.tflite"
  garbage.write_bytes(b"\x00" * 7)
  with pytest.raises(ValueError, match="not a TFLite flatbuffer"):
    networks.load(garbage)


# -- photos to detections in one call -----------------------------------------------------


def test_detect_images_is_the_composed_pipeline_and_matches_mediapipe():
  case = mediapipe_data.load("face_short_range_astronaut")
  image = mediapipe_data.photo(case)
  images = np.stack([image, image[:, ::-1]])          # the photo and its mirror image
  preset = presets.get("face_short_range")
  det = jax.tree.map(np.asarray, ja.detect_images(images, preset, max_detections=8))
  assert det.boxes.shape == (2, 8, 4)
  net = network("face_short_range")
  for i in range(2):
    tensor, transform = ja.letterbox(images[i], preset.preprocessing)
    raw_boxes, raw_scores = net(tensor[None])
    want = jax.tree.map(np.asarray, pipeline.detect(raw_boxes[0], raw_scores[0], preset,
                                                    max_detections=8, transform=transform))
    np.testing.assert_array_equal(det.valid[i], want.valid)
    for got_part, want_part in zip(det, want):
      np.testing.assert_allclose(got_part[i], want_part, rtol=0, atol=1e-6)
  a = case.arrays
  n = len(a["final_scores"])
  assert det.valid[0].sum() == n == det.valid[1].sum()
  np.testing.assert_allclose(np.asarray(ja.to_xywh(det.boxes[0]))[:n], a["final_boxes"],
                             rtol=0, atol=1e-4)
  np.testing.assert_allclose(det.scores[0][:n], a["final_scores"], rtol=0, atol=1e-4)
  # New weights are data, not a new program.
  before = pipeline._detect_images._cache_size()
  ja.detect_images(images, preset, max_detections=8,
                   params=net.pack({k: v * 1.01 for k, v in net.params.items()}))
  assert pipeline._detect_images._cache_size() == before
  ja.detect_images(images, preset, max_detections=8, params=net.params)
  before = pipeline._detect_images._cache_size()
  ja.detect_images(images, preset, max_detections=8,
                   params={k: v * 1.01 for k, v in net.params.items()})
  assert pipeline._detect_images._cache_size() == before
  with pytest.raises(ValueError, match="has no shipped model"):
    ja.detect_images(images, "ssdlite_coco", max_detections=8)
  with pytest.raises(ValueError, match=r"images must have shape \[\.\.\., H, W, 3\]"):
    ja.detect_images(images[..., :2], preset, max_detections=8)


# -- writing weights back into a .tflite ---------------------------------------------------


def _float16_rounded(net: networks.Network, params: dict) -> dict:
  return {k: (np.float32(np.float16(v)) if net.sources[k].dtype == "float16" else np.float32(v))
          for k, v in params.items()}


@pytest.mark.parametrize("name", MODELS)
def test_written_tflite_runs_in_litert_as_the_jax_network(name, tmp_path):
  """Unchanged params give the file byte for byte; changed params give a file whose
  LiteRT outputs equal the JAX network on the float16-rounded params (1e-5 of scale)."""
  net = network(name)
  assert net.to_tflite(net.params) == net.path.read_bytes()
  rng = np.random.default_rng(3)
  mask = net.trainable_mask()
  changed = {k: v * (1 + 0.1 * rng.standard_normal(v.shape).astype(np.float32)) * mask[k]
             for k, v in net.params.items()}
  path = models.save_tflite(net, changed, tmp_path / f"{name}.tflite")
  assert path.stat().st_size == net.path.stat().st_size
  rounded = _float16_rounded(net, changed)
  reloaded = models.load_network(path)
  for key, value in rounded.items():
    np.testing.assert_array_equal(reloaded.params[key].view(np.uint32), value.view(np.uint32),
                                  err_msg=key)
  x, boxes, _, _ = batch_run(name)
  ours = net.apply(rounded, x)                      # the compiled program of batch_run
  model = models.TFLiteModel(path)
  for i in range(x.shape[0]):
    want_boxes, want_scores = model(x[i:i + 1])
    assert rel_error(ours.raw_boxes[i], want_boxes[0]) <= 1e-5
    assert rel_error(ours.raw_scores[i], want_scores[0]) <= 1e-5
  assert rel_error(ours.raw_boxes, boxes) > 1e-3      # the new weights did change the outputs


def test_writing_back_refuses_what_the_file_cannot_store():
  net = network("face_full_range")
  sparse = next(k for k, s in net.sources.items() if s.sparse)
  dense = next(k for k, s in net.sources.items() if s.dtype == "float16" and not s.sparse)
  mask = net.trainable_mask()
  assert not mask[sparse].all() and mask[dense].all()
  assert (net.params[sparse][~mask[sparse]] == 0).all()
  filled = net.params[sparse] + (~mask[sparse]) * np.float32(0.5)
  with pytest.raises(ValueError, match=rf"params\['{sparse}'\] is non-zero at \d+ pruned"):
    net.to_tflite({**net.params, sparse: filled})
  with pytest.raises(ValueError, match="overflows float16"):
    net.to_tflite({**net.params, dense: net.params[dense] + 1e5})
  with pytest.raises(ValueError, match="non-finite"):
    net.to_tflite({**net.params, dense: net.params[dense] * np.nan})
  with pytest.raises(ValueError, match="has shape"):
    net.to_tflite({**net.params, dense: net.params[dense][:1]})
  with pytest.raises(ValueError, match="missing"):
    net.to_tflite({k: v for k, v in net.params.items() if k != dense})


def test_masked_updates_keep_pruned_weights_exactly_zero():
  """The trainable_mask recipe: 100 optax steps move stored weights, never pruned ones."""
  optax = pytest.importorskip("optax", reason="the recipe uses optax (the 'train' extra)")
  net = network("pose")
  mask = net.trainable_mask()
  params = {k: jnp.asarray(v) for k, v in net.params.items()}
  target = jax.tree.map(lambda v: jnp.ones_like(v), params)
  keep_pruned = optax.stateless(
      lambda updates, params: jax.tree.map(lambda u, m: u * m, updates, mask))
  optimizer = optax.chain(optax.adamw(1e-2, weight_decay=1e-2), keep_pruned)
  state = optimizer.init(params)

  @jax.jit
  def step(params, state):
    grads = jax.grad(lambda p: sum(jnp.sum((p[k] - target[k]) ** 2) for k in p))(params)
    updates, state = optimizer.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  for _ in range(100):
    params, state = step(params, state)
  sparse = [k for k, s in net.sources.items() if s.sparse]
  assert sparse
  for k in sparse:
    value = np.asarray(params[k])
    assert (value[~mask[k]] == 0).all(), k
    assert np.abs(value[mask[k]] - net.params[k][mask[k]]).max() > 0.5, k
  net.to_tflite({k: np.asarray(v) for k, v in params.items()})   # writable


def test_a_landmark_network_fine_tunes_and_ships_back(tmp_path):
  """A few optax steps on hand_landmark_lite's top layers (finetune.top_keys works on any
  network; differentiating those keys only, the backward pass stops at them), written back
  with save_tflite: LiteRT runs the file and gives the JAX network's outputs on the
  float16-rounded weights (1e-5 of scale)."""
  optax = pytest.importorskip("optax", reason="the recipe uses optax (the 'train' extra)")
  from jaxanchors import finetune  # pylint: disable=import-outside-toplevel
  net = network("hand_landmark_lite")
  keys = finetune.top_keys(net, backbone_layers=3)
  assert 0 < len(keys) < len(net.params)
  x = _landmark_inputs("hand_landmark_lite")
  target = np.asarray(net(x)[0]) + 5.0            # move every landmark by 5 pixels
  frozen = {k: v for k, v in net.params.items() if k not in keys}

  def loss(top):
    return jnp.mean((net.apply({**frozen, **top}, x)[0] - target) ** 2)

  optimizer = optax.adam(1e-3)
  top = {k: jnp.asarray(net.params[k]) for k in keys}
  state = optimizer.init(top)

  @jax.jit
  def step(top, state):
    value, grads = jax.value_and_grad(loss)(top)
    updates, state = optimizer.update(grads, state, top)
    return optax.apply_updates(top, updates), state, value

  values = []
  for _ in range(10):
    top, state, value = step(top, state)
    values.append(float(value))
  assert values[-1] < 0.5 * values[0], values
  params = {**frozen, **{k: np.asarray(v) for k, v in top.items()}}
  path = models.save_tflite(net, params, tmp_path / "hand.tflite")
  rounded = _float16_rounded(net, params)
  ours = net.apply(rounded, x)
  it = litert.Interpreter(model_path=str(path))
  it.allocate_tensors()
  for i in range(x.shape[0]):
    it.set_tensor(it.get_input_details()[0]["index"], x[i:i + 1])
    it.invoke()
    for k, detail in enumerate(it.get_output_details()):
      assert rel_error(ours[k][i], it.get_tensor(detail["index"])[0]) <= 1e-5, (i, k)
