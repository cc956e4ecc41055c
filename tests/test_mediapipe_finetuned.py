"""MediaPipe runs a face detector fine-tuned and written back by jaxanchors, and agrees with us.

``tests/data/finetuned/face_rotated_small.tflite`` is ``face_short_range``
fine-tuned to rotated faces by the fine-tuning example (written by
``tools/finetuned_face_testdata.py``, with the held-out frames beside it).
``tests/data/mediapipe_finetuned/`` records what MediaPipe 0.10.21 computes
with that file on those frames (``tools/mediapipe_golden.py --finetuned``):
its legacy face detection graph with the graph's ``model_path`` option set to
the file, its Tasks ``FaceDetectorGraph`` expanded and tapped, and the Tasks
Python API ``FaceDetector`` (plus the shipped file through the Tasks API, for
comparison). Here our side runs the same file: ``load_network(path)``, then
:func:`jaxanchors.detect_images` with the ``face_short_range`` preset.

Precision. Our letterbox gives MediaPipe's input tensor bit for bit. The
network is not XNNPACK: JAX sums the convolutions in another order, and the
raw outputs differ by a few float32 ulp (at most 2.2e-4 on raw boxes of up
to 370 pixels, 6.3e-7 of the largest magnitude), which is at most 1.7e-6
once divided by the 128-pixel scale. Boxes, keypoints and scores are
therefore compared at 2e-6 (measured over these frames: 1.8e-7 for boxes,
2.4e-7 for keypoints and scores). The Tasks Python API returns integer pixel
boxes (``DetectionTransformationCalculator``: each of xmin, ymin, width,
height times the image size in float32, truncated toward zero, clamped to
the image); they are compared as integers with that formula applied to our
boxes (no box edge lies within 2e-6 of a pixel boundary, where truncation
could flip), and its keypoints and scores, which it passes on untouched, at
2e-6.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import jax
import numpy as np
import pytest

import jaxanchors as ja
from jaxanchors import presets
from jaxanchors.letterbox import LetterboxTransform, letterbox

HERE = Path(__file__).resolve().parent
DATA = HERE / "data" / "mediapipe_finetuned"
FINETUNED = HERE / "data" / "finetuned"
MODEL = FINETUNED / "face_rotated_small.tflite"
FRAMES = FINETUNED / "heldout_composites"
CASES = sorted(p.stem for p in DATA.glob("*.json"))
PRESET = presets.get("face_short_range")
TOL = 2e-6
MAX_DETECTIONS = 8

if not CASES:
  pytest.skip(f"no MediaPipe recordings in {DATA}: run `mpvenv/bin/python "
              "tools/mediapipe_golden.py --finetuned tests/data/finetuned/"
              "face_rotated_small.tflite` (see tools/README.md)", allow_module_level=True)
pytest.importorskip("tflite", reason="load_network needs the 'models' extra "
                    "(pip install -e '.[models]')")


def _case(name: str) -> tuple[dict, dict[str, np.ndarray], np.ndarray]:
  """(JSON document, npz arrays, the uint8 frame MediaPipe saw)."""
  doc = json.loads((DATA / f"{name}.json").read_text())
  with np.load(DATA / f"{name}.npz") as npz:
    arrays = {k: npz[k] for k in npz.files}
  with np.load(FRAMES.with_suffix(".npz")) as npz:
    image = npz[name]
  assert hashlib.sha256(image.tobytes()).hexdigest() == doc["frame"]["sha256_of_uint8_rgb_pixels"]
  return doc, arrays, image


@pytest.fixture(scope="module")
def network():
  from jaxanchors import models
  return models.load_network(MODEL)


@pytest.fixture(scope="module")
def ours(network):
  """Our detections on every frame: ``detect_images`` with the fine-tuned network."""
  out = {}
  for name in CASES:
    _, _, image = _case(name)
    det = ja.detect_images(image, PRESET, max_detections=MAX_DETECTIONS, network=network)
    out[name] = jax.tree.map(np.asarray, det)
  return out


def test_recorded_file_is_the_committed_fine_tuned_file():
  digest = hashlib.sha256(MODEL.read_bytes()).hexdigest()
  for name in CASES:
    doc = json.loads((DATA / f"{name}.json").read_text())
    assert doc["model_file"]["sha256"] == digest, name
    assert doc["model_file"]["sha256"] != doc["model_file"]["base_sha256"]


def test_fine_tuned_weights_differ_from_the_shipped_ones(network):
  from jaxanchors import models
  shipped = models.load_network("face_short_range").params
  assert shipped.keys() == network.params.keys()
  changed = [k for k in shipped if not np.array_equal(shipped[k], network.params[k])]
  # The heads and the last backbone layers were trained, the rest was frozen.
  assert 0 < len(changed) < len(shipped), changed


@pytest.mark.parametrize("graph", ["legacy_graph", "tasks_graph"])
def test_mediapipes_expanded_graph_is_the_face_short_range_preset(graph):
  """The options MediaPipe's expansion gives both graphs (the Tasks FaceDetector's
  hard-coded anchors and decoding, the Python API's default min_detection_confidence
  0.5 and min_suppression_threshold 0.3) are exactly the preset's."""
  pytest.importorskip("google.protobuf", reason="graph import needs the 'graphs' extra")
  got = presets.from_graph(DATA / f"{graph}.pbtxt")
  for part in ("anchors", "decoder", "nms", "preprocessing", "mapping"):
    assert getattr(got, part) == getattr(PRESET, part), part


@pytest.mark.parametrize("name", CASES)
def test_our_letterbox_is_mediapipes_input_tensor(name):
  _, a, image = _case(name)
  tensor, transform = letterbox(image, PRESET.preprocessing)
  np.testing.assert_array_equal(np.asarray(tensor)[None], a["input_tensor"])
  np.testing.assert_array_equal(transform.padding, a["letterbox_padding"])
  np.testing.assert_array_equal(transform.matrix, a["transform_matrix"])


def _assert_close(det: ja.Detections, a: dict, stage: str) -> None:
  """Same count and order; boxes (xywh), keypoints and scores within TOL; same labels."""
  n = int(det.valid.sum())
  assert n == len(a[f"{stage}_scores"]), (n, len(a[f"{stage}_scores"]))
  assert det.valid[:n].all()
  np.testing.assert_allclose(np.asarray(ja.to_xywh(det.boxes))[:n], a[f"{stage}_boxes"],
                             rtol=0, atol=TOL)
  np.testing.assert_allclose(det.keypoints[:n], a[f"{stage}_keypoints"], rtol=0, atol=TOL)
  np.testing.assert_allclose(det.scores[:n], a[f"{stage}_scores"], rtol=0, atol=TOL)
  np.testing.assert_array_equal(det.classes[:n], a[f"{stage}_labels"])


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("route", ["legacy", "tasks"])
def test_detect_images_equals_mediapipe(ours, name, route):
  """Frame -> detect_images on the fine-tuned file: MediaPipe's normalized final
  detections (the legacy graph's output; the Tasks graph's DetectionProjection output)."""
  _, a, _ = _case(name)
  _assert_close(ours[name], a, f"{route}_final")


@pytest.mark.parametrize("name", CASES)
def test_network_on_mediapipes_input_tensor_equals_its_raw_outputs(network, name):
  """The JAX network on MediaPipe's own input tensor: XNNPACK's outputs to a few
  float32 ulp (5e-6 of each output's largest magnitude), and the same detections."""
  _, a, _ = _case(name)
  raw_boxes, raw_scores = (np.asarray(x) for x in network(a["input_tensor"]))
  for ours_, theirs in ((raw_boxes, a["raw_boxes"]), (raw_scores, a["raw_scores"])):
    assert np.max(np.abs(ours_ - theirs)) <= 5e-6 * np.max(np.abs(theirs))
  transform = LetterboxTransform(a["letterbox_padding"], a["transform_matrix"])
  det = jax.tree.map(np.asarray, ja.detect(raw_boxes[0], raw_scores[0], PRESET,
                                           max_detections=MAX_DETECTIONS, transform=transform))
  _assert_close(det, a, "legacy_final")


def pixel_boxes(boxes_xywh: np.ndarray, width: int, height: int) -> np.ndarray:
  """MediaPipe's DetectionTransformationCalculator: relative -> integer pixel box."""
  size = np.array([width, height, width, height], np.float32)
  return np.clip(np.trunc(np.asarray(boxes_xywh, np.float32) * size), 0, size).astype(np.int32)


@pytest.mark.parametrize("name", CASES)
def test_tasks_api_result_equals_ours(ours, name):
  """What ``FaceDetector.detect`` returns: integer pixel boxes, normalized keypoints, scores."""
  doc, a, image = _case(name)
  det = ours[name]
  n = int(det.valid.sum())
  assert n == doc["tasks_api"]["count"] == len(a["tasks_api_scores"])
  h, w = image.shape[:2]
  xywh = np.asarray(ja.to_xywh(det.boxes))[:n]
  got = pixel_boxes(xywh, w, h)
  # Truncation can only differ where our value lies within TOL of an integer.
  scaled = xywh * np.array([w, h, w, h], np.float32)
  near = np.abs(scaled - np.round(scaled)) < TOL * max(w, h)
  assert not near.any(), "a box edge sits on a pixel boundary; compare with slack there"
  np.testing.assert_array_equal(got, a["tasks_api_pixel_boxes"])
  np.testing.assert_allclose(det.keypoints[:n], a["tasks_api_keypoints"], rtol=0, atol=TOL)
  np.testing.assert_allclose(det.scores[:n], a["tasks_api_scores"], rtol=0, atol=TOL)


def _best_iou(pixel_boxes_: np.ndarray, face_xyxy: np.ndarray, w: int, h: int) -> float:
  if not len(pixel_boxes_):
    return 0.0
  b = pixel_boxes_.astype(np.float64)
  det = np.stack([b[:, 0] / w, b[:, 1] / h, (b[:, 0] + b[:, 2]) / w, (b[:, 1] + b[:, 3]) / h], -1)
  lo, hi = np.maximum(det[:, :2], face_xyxy[:2]), np.minimum(det[:, 2:], face_xyxy[2:])
  inter = np.prod(np.clip(hi - lo, 0, None), axis=-1)
  area = lambda x: np.prod(x[..., 2:] - x[..., :2], axis=-1)  # noqa: E731
  return float(np.max(inter / (area(det) + area(face_xyxy) - inter)))


def test_in_mediapipe_the_fine_tuned_file_finds_rotated_faces_the_shipped_one_misses():
  """MediaPipe's own Tasks API results against the frames' ground truth: on the rotated
  frames chosen for it, every face is found (IoU >= 0.5) with the fine-tuned file and
  none with the shipped one; the upright face is found by both."""
  rotated = found_tuned = found_shipped = 0
  for name in CASES:
    doc, a, image = _case(name)
    if name.startswith("missed"):
      continue
    h, w = image.shape[:2]
    for face, rotation in zip(doc["frame"]["face_boxes_xyxy"], doc["frame"]["rotation_degrees"]):
      face = np.asarray(face)
      tuned = _best_iou(a["tasks_api_pixel_boxes"], face, w, h) >= 0.5
      shipped = _best_iou(a["shipped_tasks_api_pixel_boxes"], face, w, h) >= 0.5
      if rotation == 0:
        assert tuned and shipped, name
      else:
        rotated += 1
        found_tuned += tuned
        found_shipped += shipped
  assert rotated >= 6 and found_tuned == rotated and found_shipped < rotated / 2, (
      rotated, found_tuned, found_shipped)


def test_frames_are_the_fine_tuning_examples_held_out_composites():
  """The stored frames are rebuilt by the example's and the data tool's functions."""
  for mod in ("optax", "skimage"):
    pytest.importorskip(mod, reason="rebuilding the frames needs the example's dependencies")
  import importlib.util
  import skimage
  spec = importlib.util.spec_from_file_location(
      "finetuned_face_testdata", HERE.parent / "tools" / "finetuned_face_testdata.py")
  tool = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(tool)
  manifest = json.loads(FRAMES.with_suffix(".json").read_text())
  if skimage.__version__ != manifest["frames_from"]["scikit-image"]:
    pytest.skip(f"frames were made with scikit-image {manifest['frames_from']['scikit-image']}"
                f", this is {skimage.__version__}: its resizing may differ in the last bit")
  first = 1 + max(i for frame in manifest["frames"] for i in frame["held_out_index"])
  held = tool.held_out_set(tool.load_example(), faces=manifest["frames_from"]["held_out_faces"],
                           first=first)
  images = tool.to_uint8(held["images"])
  with np.load(FRAMES.with_suffix(".npz")) as npz:
    for frame in manifest["frames"]:
      image, boxes, rotations = tool.make_frame(frame, images, held["boxes"][:, :1],
                                                held["rotation"])
      np.testing.assert_array_equal(image, npz[frame["name"]])
      np.testing.assert_array_equal(boxes, npz[f"{frame['name']}_boxes"])
      np.testing.assert_array_equal(rotations, npz[f"{frame['name']}_rotations"])
