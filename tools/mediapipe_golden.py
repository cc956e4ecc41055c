"""Record MediaPipe's own SSD detector results on real photos, as test data.

For each (model, photo) pair of ``PAIRS`` this runs the graph that ships in
the ``mediapipe==0.10.21`` wheel (face detection short/full range, palm
detection lite/full, pose detection), expanded into its calculators, with a
few read-only taps added, and writes

    tests/data/mediapipe/<model>_<photo>.npz   (compressed NumPy arrays)
    tests/data/mediapipe/<model>_<photo>.json  (readable: options, detections, checks)

The photos themselves are not stored: they come from ``skimage.data`` at test
time (the JSON names the function, the crop, and the SHA-256 of the pixels).

RUNS ONLY IN A SEPARATE VIRTUAL ENVIRONMENT. ``mediapipe`` pins numpy<2,
which would break the project's jax environment. Create it with::

    python3.11 -m venv mpvenv
    mpvenv/bin/pip install 'mediapipe==0.10.21' scikit-image ai-edge-litert

and run, from the project root::

    mpvenv/bin/python tools/mediapipe_golden.py              # write the files
    mpvenv/bin/python tools/mediapipe_golden.py --explore    # counts for every model x photo
    mpvenv/bin/python tools/mediapipe_golden.py --out DIR    # another output folder
    mpvenv/bin/python tools/mediapipe_golden.py --finetuned tests/data/finetuned/face_rotated_small.tflite

``--finetuned FILE`` records MediaPipe running a ``face_short_range`` file
with new weights (written by ``jaxanchors.models.save_tflite``) on the
held-out frames that ``tools/finetuned_face_testdata.py`` stores beside it,
into ``tests/data/mediapipe_finetuned/<frame>.{npz,json}``, three ways:

* the legacy graph ``FaceDetectionShortRangeCpu`` with its own
  ``FaceDetectionOptions.model_path`` option set to the file (the graph
  forwards it to the InferenceCalculator; checked in the expanded graph),
  tapped as below (``legacy_*`` arrays);
* the Tasks graph ``mediapipe.tasks.vision.face_detector.FaceDetectorGraph``
  with the options the Tasks Python API builds (``FaceDetectorOptions`` with
  ``model_asset_path`` = the file, all else default), expanded and tapped the
  same way (``tasks_*``; "final" is DetectionProjection's normalized output,
  before DetectionTransformation turns boxes into pixels);
* the Tasks Python API itself, ``FaceDetector.detect`` (``tasks_api_*``:
  integer pixel boxes, normalized keypoints, scores), and the same call with
  the shipped file (``shipped_tasks_api_*``), for comparison.

Extra checks for this mode: the API's result equals the expanded Tasks
graph's output exactly, and its pixel boxes are DetectionTransformation's
formula applied to the tapped normalized boxes; the legacy/Tasks differences
are stored (``checks``). Both expanded graphs are written as
``legacy_graph.pbtxt`` and ``tasks_graph.pbtxt``.

What is tapped (nothing in the shipped graph is changed; the taps only read):

* ``ImageToTensorCalculator``'s TENSORS output, via ``TensorsToFloatsCalculator``
  (the exact float32 model input, reshaped to ``[1, h, w, 3]``);
* ``InferenceCalculatorCpu``'s TENSORS output, via
  ``TensorsToEmbeddingsCalculator`` (one float embedding per output tensor,
  i.e. every raw model output, unmodified: no L2 normalization, no
  quantization);
* the ``SsdAnchorsCalculator`` side packet (MediaPipe's own anchors);
* ``TensorsToDetectionsCalculator``'s output (``decoded_*``: before NMS,
  model-input coordinates), ``NonMaxSuppressionCalculator``'s output
  (``nms_*``: model-input coordinates) and the graph output after
  ``DetectionProjectionCalculator`` (face) or
  ``DetectionLetterboxRemovalCalculator`` (palm, pose) (``final_*``: image
  coordinates);
* ``LETTERBOX_PADDING`` (std::array<float, 4>) and ``MATRIX``
  (std::array<float, 16>) cannot be read from Python (no packet getter for
  std::array). They are measured instead: a probe detection with known
  keypoints is sent through an extra ``DetectionLetterboxRemovalCalculator``
  and an extra ``DetectionProjectionCalculator`` fed with the real padding and
  matrix; the padding and matrix computed in float32 with MediaPipe's formulas
  must reproduce the probe results (checked here).

Checks done before a file is written (the run fails otherwise; the measured
differences are stored in the JSON):

* the expanded graph's calculator options equal the spec's (§5.2, §5.3, §5.5,
  §5.6);
* the same graph without taps gives identical final detections;
* LiteRT (``ai-edge-litert``) running the same .tflite on the recorded input
  tensor reproduces the recorded raw outputs (max abs difference <= 1e-3);
* a float32 NumPy re-computation of each stage from the one before it
  (decoding §2.5-2.7 from raw outputs + MediaPipe's anchors, WEIGHTED NMS §3.5
  from the decoded list, projection / letterbox removal §4.2-4.3 from the NMS
  list) agrees to <= 1e-5, and so does the input tensor redone with OpenCV
  from the photo (``opencv_input_tensor``);
* the detections' keypoint count and the tensor sizes match the options.

``decoded_anchor_index`` is the one array not read from MediaPipe: it is the
anchor index of each decoded detection, from that NumPy re-computation (its
count and values match MediaPipe's list, so the order is the anchor order).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import pathlib
import platform
import re
import sys

import numpy as np

try:
  import mediapipe
  from google.protobuf import json_format
  from google.protobuf import message_factory
  from google.protobuf import symbol_database
  from google.protobuf import text_format
  from mediapipe.framework import calculator_pb2
  from mediapipe.framework.formats import detection_pb2
  from mediapipe.framework.formats import rect_pb2
  from mediapipe.python import packet_creator
  from mediapipe.python import packet_getter
  from mediapipe.python._framework_bindings import calculator_graph
  from mediapipe.python._framework_bindings import image_frame
  from mediapipe.python._framework_bindings import resource_util
  from mediapipe.python._framework_bindings import validated_graph_config
  from mediapipe.tasks.cc.core.proto import model_resources_calculator_pb2
  from mediapipe.tasks.cc.vision.face_detector.proto import face_detector_graph_options_pb2
  from mediapipe.tasks.python.core import base_options
  from mediapipe.tasks.python.vision import face_detector
  import skimage
  import skimage.data
except ImportError as e:  # pragma: no cover - depends on the venv
  sys.exit(f"{e}\nThis script runs only in the mediapipe venv; see its docstring.")

MEDIAPIPE_VERSION = "0.10.21"
ROOT = pathlib.Path(__file__).resolve().parents[1]
SITE = pathlib.Path(mediapipe.__file__).resolve().parent.parent  # resource root

# Option protos that must be importable so options print and compare by name.
_OPTION_MODULES = (
    "mediapipe.calculators.tensor.image_to_tensor_calculator_pb2",
    "mediapipe.calculators.tensor.inference_calculator_pb2",
    "mediapipe.calculators.tensor.tensors_to_detections_calculator_pb2",
    "mediapipe.calculators.tensor.tensors_to_floats_calculator_pb2",
    "mediapipe.calculators.tflite.ssd_anchors_calculator_pb2",
    "mediapipe.calculators.util.non_max_suppression_calculator_pb2",
    "mediapipe.calculators.core.constant_side_packet_calculator_pb2",
    "mediapipe.framework.tool.switch_container_pb2",
    "mediapipe.framework.formats.object_detection.anchor_pb2",
    "mediapipe.modules.face_detection.face_detection_pb2",
    "mediapipe.tasks.cc.core.proto.model_resources_calculator_pb2",
    "mediapipe.tasks.cc.vision.face_detector.proto.face_detector_graph_options_pb2",
    "mediapipe.tasks.cc.components.containers.proto.embeddings_pb2",
)

# ---------------------------------------------------------------------------
# Models: the shipped graphs, and the options spec §5 says they carry.
# ---------------------------------------------------------------------------

_FACE_PRE = {"keep_aspect_ratio": True, "output_tensor_float_range": {"min": -1.0, "max": 1.0},
             "border_mode": "BORDER_ZERO"}
_NMS = {"min_suppression_threshold": 0.3, "overlap_type": "INTERSECTION_OVER_UNION",
        "algorithm": "WEIGHTED"}
_DECODE = {"num_classes": 1, "box_coord_offset": 0, "keypoint_coord_offset": 4,
           "num_values_per_keypoint": 2, "reverse_output_order": True, "sigmoid_score": True,
           "score_clipping_thresh": 100.0}
_ANCHORS = {"min_scale": 0.1484375, "max_scale": 0.75, "anchor_offset_x": 0.5,
            "anchor_offset_y": 0.5, "aspect_ratios": [1.0], "fixed_anchor_size": True}


def _scales(s: int) -> dict[str, float]:
  return {"x_scale": float(s), "y_scale": float(s), "w_scale": float(s), "h_scale": float(s)}


MODELS: dict[str, dict] = {
    "face_short_range": {
        "spec": "§5.2",
        "graph": {"binarypb": "mediapipe/modules/face_detection/face_detection_short_range_cpu.binarypb"},
        "tflite": "mediapipe/modules/face_detection/face_detection_short_range.tflite",
        "mapping": "DetectionProjectionCalculator",
        "expected": {
            "ImageToTensorCalculator": {"output_tensor_width": 128, "output_tensor_height": 128,
                                        **_FACE_PRE},
            "SsdAnchorsCalculator": {"input_size_width": 128, "input_size_height": 128,
                                     "num_layers": 4, "strides": [8, 16, 16, 16],
                                     "interpolated_scale_aspect_ratio": 1.0, **_ANCHORS},
            "TensorsToDetectionsCalculator": {"num_boxes": 896, "num_coords": 16,
                                              "num_keypoints": 6, "min_score_thresh": 0.5,
                                              **_scales(128), **_DECODE},
            "NonMaxSuppressionCalculator": _NMS,
        },
    },
    "face_full_range": {
        "spec": "§5.3",
        "graph": {"binarypb": "mediapipe/modules/face_detection/face_detection_full_range_cpu.binarypb"},
        "tflite": "mediapipe/modules/face_detection/face_detection_full_range_sparse.tflite",
        "mapping": "DetectionProjectionCalculator",
        "expected": {
            "ImageToTensorCalculator": {"output_tensor_width": 192, "output_tensor_height": 192,
                                        **_FACE_PRE},
            "SsdAnchorsCalculator": {"input_size_width": 192, "input_size_height": 192,
                                     "num_layers": 1, "strides": [4],
                                     "interpolated_scale_aspect_ratio": 0.0, **_ANCHORS},
            "TensorsToDetectionsCalculator": {"num_boxes": 2304, "num_coords": 16,
                                              "num_keypoints": 6, "min_score_thresh": 0.6,
                                              **_scales(192), **_DECODE},
            "NonMaxSuppressionCalculator": _NMS,
        },
    },
    **{
        f"palm_{variant}": {
            "spec": "§5.5",
            "graph": {"subgraph": "PalmDetectionCpu", "model_complexity": complexity},
            "tflite": f"mediapipe/modules/palm_detection/palm_detection_{variant}.tflite",
            "mapping": "DetectionLetterboxRemovalCalculator",
            "expected": {
                "ImageToTensorCalculator": {
                    "output_tensor_width": 192, "output_tensor_height": 192,
                    "keep_aspect_ratio": True,
                    "output_tensor_float_range": {"min": 0.0, "max": 1.0},
                    "border_mode": "BORDER_ZERO"},
                "SsdAnchorsCalculator": {"input_size_width": 192, "input_size_height": 192,
                                         "num_layers": 4, "strides": [8, 16, 16, 16],
                                         **_ANCHORS},
                "TensorsToDetectionsCalculator": {"num_boxes": 2016, "num_coords": 18,
                                                  "num_keypoints": 7, "min_score_thresh": 0.5,
                                                  **_scales(192), **_DECODE},
                "NonMaxSuppressionCalculator": _NMS,
            },
        } for variant, complexity in (("lite", 0), ("full", 1))
    },
    "pose": {
        "spec": "§5.6",
        "graph": {"subgraph": "PoseDetectionCpu"},
        "tflite": "mediapipe/modules/pose_detection/pose_detection.tflite",
        "mapping": "DetectionLetterboxRemovalCalculator",
        "expected": {
            "ImageToTensorCalculator": {"output_tensor_width": 224, "output_tensor_height": 224,
                                        "gpu_origin": "TOP_LEFT", **_FACE_PRE},
            "SsdAnchorsCalculator": {"input_size_width": 224, "input_size_height": 224,
                                     "num_layers": 5, "strides": [8, 16, 32, 32, 32],
                                     **_ANCHORS},
            "TensorsToDetectionsCalculator": {"num_boxes": 2254, "num_coords": 12,
                                              "num_keypoints": 4, "min_score_thresh": 0.5,
                                              **_scales(224), **_DECODE},
            "NonMaxSuppressionCalculator": _NMS,
        },
    },
}

# ---------------------------------------------------------------------------
# Photos: skimage.data images (grey ones repeated to RGB), each optionally
# cropped (crop = [y0, y1, x0, x1]), placed side by side when there are several.
# Non-square photos give a non-zero letterbox padding; "faces2" puts two faces
# in one image so NMS keeps two detections. scikit-image bundles no photo of a
# bare hand and none of a full body: "camera" (cameraman, gloved hands on a
# camera) and "astronaut" (upper body) are the closest.
# ---------------------------------------------------------------------------

PHOTOS: dict[str, list[tuple[str, list[int] | None]]] = {
    "astronaut": [("astronaut", None)],
    "astronaut_wide": [("astronaut", [0, 300, 0, 512])],
    "astronaut_tall": [("astronaut", [0, 512, 96, 416])],
    "camera": [("camera", None)],
    "camera_hands": [("camera", [100, 356, 120, 376])],
    "faces2": [("astronaut", [0, 256, 96, 352]), ("camera", [20, 276, 100, 356])],
    "chelsea": [("chelsea", None)],
    "coffee": [("coffee", None)],
}

PAIRS: list[tuple[str, str]] = [
    ("face_short_range", "astronaut"),
    ("face_short_range", "astronaut_wide"),
    ("face_short_range", "camera"),
    ("face_short_range", "faces2"),
    ("face_short_range", "chelsea"),
    ("face_full_range", "astronaut"),
    ("face_full_range", "astronaut_tall"),
    ("face_full_range", "camera"),
    ("face_full_range", "faces2"),
    ("palm_lite", "chelsea"),
    ("palm_full", "camera_hands"),
    ("palm_full", "astronaut_tall"),
    ("pose", "astronaut"),
    ("pose", "astronaut_wide"),
    ("pose", "camera"),
]


def load_photo(name: str) -> tuple[np.ndarray, dict]:
  """The uint8 RGB [h, w, 3] image of PHOTOS[name], and its description for the JSON."""
  parts, code = [], []
  for fn, crop in PHOTOS[name]:
    part = np.asarray(getattr(skimage.data, fn)())
    expr = f"skimage.data.{fn}()"
    if part.ndim == 2:
      part = np.stack([part] * 3, axis=-1)
      expr = f"np.stack([{expr}] * 3, axis=-1)"
    part = part[..., :3]
    if crop is not None:
      y0, y1, x0, x1 = crop
      part = part[y0:y1, x0:x1]
      expr = f"{expr}[{y0}:{y1}, {x0}:{x1}]"
    parts.append(part)
    code.append(expr)
  img = np.ascontiguousarray(np.concatenate(parts, axis=1), dtype=np.uint8)
  rebuild = code[0] if len(code) == 1 else f"np.concatenate([{', '.join(code)}], axis=1)"
  return img, {
      "name": name,
      "parts": [{"skimage_function": f"skimage.data.{fn}", "crop_y0_y1_x0_x1": crop}
                for fn, crop in PHOTOS[name]],
      "height": int(img.shape[0]),
      "width": int(img.shape[1]),
      "rebuild": f"img = {rebuild}  # uint8 RGB [h, w, 3]",
      "sha256_of_uint8_rgb_pixels": hashlib.sha256(img.tobytes()).hexdigest(),
  }


# ---------------------------------------------------------------------------
# Graph building.
# ---------------------------------------------------------------------------

def _import_option_protos() -> None:
  for mod in _OPTION_MODULES:
    importlib.import_module(mod)


def expanded_graph(model: str) -> calculator_pb2.CalculatorGraphConfig:
  """The model's shipped graph with all subgraphs expanded (MediaPipe's own expansion)."""
  g = MODELS[model]["graph"]
  v = validated_graph_config.ValidatedGraphConfig()
  if "binarypb" in g:
    v.initialize(binary_graph_path=str(SITE / g["binarypb"]))
  else:
    graph_side = node_side = ""
    if "model_complexity" in g:
      graph_side = 'input_side_packet: "model_complexity" '
      node_side = 'input_side_packet: "MODEL_COMPLEXITY:model_complexity" '
    text = ('input_stream: "image" output_stream: "detections" ' + graph_side +
            f'node {{ calculator: "{g["subgraph"]}" input_stream: "IMAGE:image" '
            f'output_stream: "DETECTIONS:detections" {node_side}}}')
    v.initialize(graph_config=text)
  config = calculator_pb2.CalculatorGraphConfig()
  config.ParseFromString(v.binary_config)
  return config


def _node(config, calculator: str):
  nodes = [n for n in config.node if n.calculator.startswith(calculator)]
  if len(nodes) != 1:
    raise RuntimeError(f"expected one {calculator} node, found {[n.calculator for n in nodes]}")
  return nodes[0]


def _stream(entries, tag: str) -> str | None:
  for e in entries:
    parts = e.split(":")
    if len(parts) == 2 and parts[0] == tag:
      return parts[1]
  return None


def _options(node) -> dict:
  """A node's calculator options as a plain dict (proto field names, enums by name)."""
  msgs = []
  if node.HasField("options"):
    for _, value in node.options.ListFields():
      msgs.append(value)
  for any_msg in node.node_options:
    type_name = any_msg.type_url.split("/")[-1]
    desc = symbol_database.Default().pool.FindMessageTypeByName(type_name)
    msg = message_factory.GetMessageClass(desc)()
    any_msg.Unpack(msg)
    msgs.append(msg)
  if len(msgs) != 1:
    raise RuntimeError(f"{node.calculator}: expected one options message, got {len(msgs)}")
  return json_format.MessageToDict(msgs[0], preserving_proto_field_name=True)


class Taps:
  """Names of the streams added to the graph."""
  INPUT = "tap_input_tensor"
  RAW = "tap_raw_outputs"
  PROBE_IN = "tap_probe_detection"
  PROBE_VEC = "tap_probe_detections"
  PROBE_LB = "tap_probe_letterbox_removed"
  PROBE_PROJ = "tap_probe_projected"
  PADDING = "tap_letterbox_padding"
  MATRIX = "tap_transform_matrix"


def tapped_graph(config: calculator_pb2.CalculatorGraphConfig, final: str = "detections"
                 ) -> tuple[calculator_pb2.CalculatorGraphConfig, dict]:
  """A copy of ``config`` with read-only taps; returns it and the names of the key streams.

  ``final`` names the stream of the detections mapped back to the image,
  still normalized (the graph's output in the legacy graphs).
  """
  g = calculator_pb2.CalculatorGraphConfig()
  g.CopyFrom(config)
  itt = _node(g, "ImageToTensorCalculator")
  inf = _node(g, "InferenceCalculator")
  t2d = _node(g, "TensorsToDetectionsCalculator")
  nms = _node(g, "NonMaxSuppressionCalculator")
  anchors = _node(g, "SsdAnchorsCalculator")
  names = {
      "input_tensors": _stream(itt.output_stream, "TENSORS"),
      "raw_tensors": _stream(inf.output_stream, "TENSORS"),
      "decoded": _stream(t2d.output_stream, "DETECTIONS"),
      "nms": nms.output_stream[0],
      "final": final,
      "anchors": anchors.output_side_packet[0],
  }
  # ImageToTensor: make both MATRIX and LETTERBOX_PADDING available (extra outputs only).
  padding = _stream(itt.output_stream, "LETTERBOX_PADDING")
  if padding is None:
    padding = Taps.PADDING
    itt.output_stream.append(f"LETTERBOX_PADDING:{padding}")
  matrix = _stream(itt.output_stream, "MATRIX")
  if matrix is None:
    matrix = Taps.MATRIX
    itt.output_stream.append(f"MATRIX:{matrix}")
  g.input_stream.append(Taps.PROBE_IN)
  g.output_side_packet.append(names["anchors"])
  text_format.Merge(f"""
    node {{ calculator: "TensorsToFloatsCalculator"
            input_stream: "TENSORS:{names['input_tensors']}" output_stream: "FLOATS:{Taps.INPUT}" }}
    node {{ calculator: "TensorsToEmbeddingsCalculator"
            input_stream: "TENSORS:{names['raw_tensors']}" output_stream: "EMBEDDINGS:{Taps.RAW}" }}
    node {{ calculator: "MergeDetectionsToVectorCalculator"
            input_stream: "{Taps.PROBE_IN}" output_stream: "{Taps.PROBE_VEC}" }}
    node {{ calculator: "DetectionLetterboxRemovalCalculator"
            input_stream: "DETECTIONS:{Taps.PROBE_VEC}" input_stream: "LETTERBOX_PADDING:{padding}"
            output_stream: "DETECTIONS:{Taps.PROBE_LB}" }}
    node {{ calculator: "DetectionProjectionCalculator"
            input_stream: "DETECTIONS:{Taps.PROBE_VEC}" input_stream: "PROJECTION_MATRIX:{matrix}"
            output_stream: "DETECTIONS:{Taps.PROBE_PROJ}" }}
  """, g)
  return g, names


# Probe keypoints (tensor-normalized): origin, unit x, unit y, (1, 1), centre.
PROBE_KEYPOINTS = np.array([[0, 0], [1, 0], [0, 1], [1, 1], [0.5, 0.5]], np.float32)
PROBE_BOX = np.array([0.25, 0.25, 0.5, 0.5], np.float32)  # xmin, ymin, width, height


def _probe_detection() -> detection_pb2.Detection:
  d = detection_pb2.Detection()
  d.score.append(1.0)
  d.label_id.append(0)
  loc = d.location_data
  loc.format = loc.RELATIVE_BOUNDING_BOX
  box = loc.relative_bounding_box
  box.xmin, box.ymin, box.width, box.height = (float(v) for v in PROBE_BOX)
  for x, y in PROBE_KEYPOINTS:
    kp = loc.relative_keypoints.add()
    kp.x, kp.y = float(x), float(y)
  return d


def run_graph(config, image: np.ndarray, *, side_packets: dict, observe: list[str],
              probe: bool, side_outputs: list[str] = (), tasks: bool = False) -> dict:
  """Runs ``config`` once on ``image``.

  ``tasks``: the graph is a Tasks graph, fed as the Tasks Python API feeds it
  (an ``Image`` packet on ``image`` and a whole-image, unrotated
  ``NormalizedRect`` on ``norm_rect``) instead of an ``ImageFrame``.

  Returns, per observed stream, its one non-empty packet, or None when the
  stream only advanced its timestamp bound (the calculator emitted nothing,
  e.g. NonMaxSuppression on an empty input).
  """
  resource_util.set_resource_dir(str(SITE))
  graph = calculator_graph.CalculatorGraph(graph_config=config)
  packets: dict = {name: [] for name in observe}
  for name in observe:
    graph.observe_output_stream(name, lambda s, p: packets[s].append(p), True)
  graph.start_run({k: packet_creator.create_int(v) for k, v in side_packets.items()})
  if tasks:
    graph.add_packet_to_input_stream("image", packet_creator.create_image(
        mediapipe.Image(image_format=mediapipe.ImageFormat.SRGB, data=image)).at(0))
    graph.add_packet_to_input_stream("norm_rect", packet_creator.create_proto(
        rect_pb2.NormalizedRect(x_center=0.5, y_center=0.5, width=1, height=1,
                                rotation=0)).at(0))
  else:
    graph.add_packet_to_input_stream(
        "image", packet_creator.create_image_frame(image_format=image_frame.ImageFormat.SRGB,
                                                    data=image).at(0))
  if probe:
    graph.add_packet_to_input_stream(Taps.PROBE_IN,
                                     packet_creator.create_proto(_probe_detection()).at(0))
  graph.close()  # waits until every packet is processed
  got: dict = {}
  for name, plist in packets.items():
    full = [p for p in plist if not p.is_empty()]
    if len(full) > 1:
      raise RuntimeError(f"{name}: {len(full)} packets for one image")
    got[name] = full[0] if full else None
  for name in side_outputs:
    got[name] = graph.get_output_side_packet(name)
  return got


def _detections(packet) -> list:
  return [] if packet is None else packet_getter.get_proto_list(packet)


def detections_to_arrays(dets, num_keypoints: int) -> dict[str, np.ndarray]:
  boxes, kps, scores, labels = [], [], [], []
  for d in dets:
    loc = d.location_data
    if loc.format != loc.RELATIVE_BOUNDING_BOX:
      raise RuntimeError(f"unexpected location format {loc.format}")
    if len(d.score) != 1 or len(d.label_id) != 1:
      raise RuntimeError(f"expected one score and label, got {list(d.score)} {list(d.label_id)}")
    b = loc.relative_bounding_box
    boxes.append([b.xmin, b.ymin, b.width, b.height])
    kps.append([[k.x, k.y] for k in loc.relative_keypoints])
    scores.append(d.score[0])
    labels.append(d.label_id[0])
    if len(kps[-1]) != num_keypoints:
      raise RuntimeError(f"detection has {len(kps[-1])} keypoints, expected {num_keypoints}")
  n = len(boxes)
  return {
      "boxes": np.asarray(boxes, np.float32).reshape(n, 4),
      "keypoints": np.asarray(kps, np.float32).reshape(n, num_keypoints, 2),
      "scores": np.asarray(scores, np.float32).reshape(n),
      "labels": np.asarray(labels, np.int32).reshape(n),
  }


# ---------------------------------------------------------------------------
# MediaPipe's padding / matrix formulas (image_to_tensor_utils.cc), float32.
# ---------------------------------------------------------------------------

def expected_padding_and_matrix(height: int, width: int, tensor_h: int, tensor_w: int):
  f = np.float32
  roi_w, roi_h = f(width), f(height)
  cx, cy = f(0.5) * f(width), f(0.5) * f(height)
  tensor_ar = f(tensor_h) / f(tensor_w)
  roi_ar = roi_h / roi_w
  hpad = vpad = f(0)
  if tensor_ar > roi_ar:
    new_w, new_h = roi_w, roi_w * tensor_ar
    vpad = (f(1) - roi_ar / tensor_ar) / f(2)
  else:
    new_w, new_h = roi_h / tensor_ar, roi_h
    hpad = (f(1) - tensor_ar / roi_ar) / f(2)
  padding = np.array([hpad, vpad, hpad, vpad], np.float32)
  a, b = new_w, new_h
  g, h = f(1) / f(width), f(1) / f(height)
  m = np.zeros((4, 4), np.float32)
  m[0, 0] = a * g
  m[0, 3] = (f(-0.5) * a + cx) * g
  m[1, 1] = b * h
  m[1, 3] = (f(-0.5) * b + cy) * h
  m[2, 2] = a * g
  m[3, 3] = f(1)
  return padding, m


# ---------------------------------------------------------------------------
# Independent float32 NumPy re-computation (spec §2.5-2.7, §3.5, §4.2-4.3),
# used only to check that the recorded stages are consistent with each other.
# ---------------------------------------------------------------------------

def numpy_decode(raw_boxes, raw_scores, anchors, o: dict) -> tuple[np.ndarray, dict]:
  """TensorsToDetections for XYWH, one class, sigmoid with clipping; returns (indices, arrays)."""
  f = np.float32
  r = raw_boxes[0].astype(f)
  axc, ayc, aw, ah = (anchors[:, i] for i in range(4))
  xc = r[:, 0] / f(o["x_scale"]) * aw + axc
  yc = r[:, 1] / f(o["y_scale"]) * ah + ayc
  w = r[:, 2] / f(o["w_scale"]) * aw
  h = r[:, 3] / f(o["h_scale"]) * ah
  ymin, xmin = yc - h / f(2), xc - w / f(2)
  ymax, xmax = yc + h / f(2), xc + w / f(2)
  k = o["keypoint_coord_offset"]
  kx = r[:, k::2][:, :o["num_keypoints"]] / f(o["x_scale"]) * aw[:, None] + axc[:, None]
  ky = r[:, k + 1::2][:, :o["num_keypoints"]] / f(o["y_scale"]) * ah[:, None] + ayc[:, None]
  t = f(o["score_clipping_thresh"])
  s = np.clip(raw_scores[0, :, 0].astype(f), -t, t)
  with np.errstate(over="ignore"):
    s = (f(1) / (f(1) + np.exp(-s))).astype(f)
  width, height = xmax - xmin, ymax - ymin
  keep = (s >= f(o["min_score_thresh"])) & (width >= 0) & (height >= 0)
  idx = np.nonzero(keep)[0]
  return idx, {"boxes": np.stack([xmin, ymin, width, height], -1)[idx],
               "keypoints": np.stack([kx, ky], -1)[idx], "scores": s[idx]}


def _iou(a, b) -> np.float32:
  f = np.float32
  ax1, ay1, ax2, ay2 = a[0], a[1], a[0] + a[2], a[1] + a[3]
  bx1, by1, bx2, by2 = b[0], b[1], b[0] + b[2], b[1] + b[3]
  if a[2] < 0 or a[3] < 0 or b[2] < 0 or b[3] < 0:
    return f(0)
  if bx2 < ax1 or bx1 > ax2 or by2 < ay1 or by1 > ay2:
    return f(0)
  inter = (min(ax2, bx2) - max(ax1, bx1)) * (min(ay2, by2) - max(ay1, by1))
  union = a[2] * a[3] + b[2] * b[3] - inter
  return f(inter / union) if union > 0 else f(0)


def numpy_weighted_nms(d: dict, threshold: float) -> dict:
  """WEIGHTED NMS of §3.5 in float32 with sequential sums."""
  f = np.float32
  boxes, kps, scores = d["boxes"], d["keypoints"], d["scores"]
  remaining = list(np.argsort(-scores, kind="stable"))
  out_b, out_k, out_s = [], [], []
  while remaining:
    top = remaining[0]
    cands = [e for e in remaining if _iou(boxes[e], boxes[top]) > f(threshold)]
    rest = [e for e in remaining if e not in cands]
    total = f(0)
    acc = np.zeros(4, f)
    acc_k = np.zeros(kps.shape[1:], f)
    for e in cands:
      sc = scores[e]
      total = f(total + sc)
      b = boxes[e]
      acc = (acc + np.array([b[0], b[1], b[0] + b[2], b[1] + b[3]], f) * sc).astype(f)
      acc_k = (acc_k + kps[e] * sc).astype(f)
    if cands:
      x0, y0, x1, y1 = acc / total
      out_b.append([x0, y0, x1 - x0, y1 - y0])
      out_k.append(acc_k / total)
    else:
      out_b.append(boxes[top])
      out_k.append(kps[top])
    out_s.append(scores[top])
    if len(rest) == len(remaining):
      break
    remaining = rest
  n = len(out_s)
  return {"boxes": np.asarray(out_b, f).reshape(n, 4),
          "keypoints": np.asarray(out_k, f).reshape((n,) + kps.shape[1:]),
          "scores": np.asarray(out_s, f).reshape(n)}


def numpy_map_back(d: dict, mapping: str, padding, matrix) -> dict:
  """DetectionProjection (face graphs) or DetectionLetterboxRemoval (palm, pose)."""
  f = np.float32
  b, k = d["boxes"], d["keypoints"]
  if mapping == "DetectionLetterboxRemovalCalculator":
    l, t, r, bt = padding
    sx, sy = f(1) - (l + r), f(1) - (t + bt)
    boxes = np.stack([(b[:, 0] - l) / sx, (b[:, 1] - t) / sy, b[:, 2] / sx, b[:, 3] / sy], -1)
    kps = np.stack([(k[..., 0] - l) / sx, (k[..., 1] - t) / sy], -1)
  else:
    def proj(x, y):
      return (x * matrix[0, 0] + y * matrix[0, 1] + matrix[0, 3],
              x * matrix[1, 0] + y * matrix[1, 1] + matrix[1, 3])
    x0, y0, x1, y1 = b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    cx, cy = zip(*(proj(x, y) for x, y in ((x0, y0), (x1, y0), (x1, y1), (x0, y1))))
    cx, cy = np.stack(cx), np.stack(cy)
    xmin, ymin, xmax, ymax = cx.min(0), cy.min(0), cx.max(0), cy.max(0)
    boxes = np.stack([xmin, ymin, xmax - xmin, ymax - ymin], -1)
    kps = np.stack(proj(k[..., 0], k[..., 1]), -1)
  return {"boxes": boxes.astype(f).reshape(b.shape), "keypoints": kps.astype(f).reshape(k.shape),
          "scores": d["scores"]}


def opencv_input_tensor(image: np.ndarray, tensor_h: int, tensor_w: int, lo: float,
                        hi: float) -> np.ndarray:
  """ImageToTensor's CPU path (§4.1) redone with OpenCV, to check our reading of it.

  Keep-aspect ROI corners -> tensor corners (0,H),(0,0),(W,0),(W,H);
  ``cv2.warpPerspective`` on the uint8 image (INTER_LINEAR, constant 0 border);
  then ``f32(v * f32((hi - lo) / 255) + lo)`` with ONE rounding (a fused
  multiply-add; rounding the product first differs by 1 ulp on some values).
  """
  import cv2  # pylint: disable=import-outside-toplevel  (a dependency of mediapipe)
  f = np.float32
  h, w = image.shape[:2]
  roi_w, roi_h = f(w), f(h)
  tensor_ar, roi_ar = f(tensor_h) / f(tensor_w), roi_h / roi_w
  if tensor_ar > roi_ar:
    roi_h = roi_w * tensor_ar
  else:
    roi_w = roi_h / tensor_ar
  cx, cy = f(0.5) * f(w), f(0.5) * f(h)
  src = np.array([[cx - roi_w / 2, cy + roi_h / 2], [cx - roi_w / 2, cy - roi_h / 2],
                  [cx + roi_w / 2, cy - roi_h / 2], [cx + roi_w / 2, cy + roi_h / 2]], f)
  dst = np.array([[0, tensor_h], [0, 0], [tensor_w, 0], [tensor_w, tensor_h]], f)
  warped = cv2.warpPerspective(image, cv2.getPerspectiveTransform(src, dst), (tensor_w, tensor_h),
                               flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                               borderValue=0)
  scale = np.float64(f((hi - lo) / 255.0))
  return (warped.astype(np.float64) * scale + np.float64(f(lo))).astype(f)[None]


def _stage_diff(mine: dict, theirs: dict) -> float | None:
  """Max abs difference over boxes, keypoints and scores; None when the counts differ."""
  if mine["scores"].shape != theirs["scores"].shape:
    return None
  return max(_max_abs(mine[k], theirs[k]) for k in ("boxes", "keypoints", "scores"))


def _max_abs(a, b) -> float:
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if a.shape != b.shape:
    raise RuntimeError(f"shape mismatch {a.shape} vs {b.shape}")
  return float(np.max(np.abs(a - b))) if a.size else 0.0


def litert_outputs(tflite: pathlib.Path, tensor: np.ndarray) -> list[np.ndarray]:
  """Runs the .tflite with LiteRT; outputs in the model's output order."""
  from ai_edge_litert.interpreter import Interpreter  # pylint: disable=import-outside-toplevel
  it = Interpreter(model_path=str(tflite))
  it.allocate_tensors()
  it.set_tensor(it.get_input_details()[0]["index"], tensor)
  it.invoke()
  return [it.get_tensor(d["index"]).copy() for d in it.get_output_details()]


# ---------------------------------------------------------------------------
# One (model, photo) pair.
# ---------------------------------------------------------------------------

def record(model: str, photo: str) -> tuple[dict, dict]:
  """Runs everything for one pair; returns (arrays for the npz, document for the JSON)."""
  info = MODELS[model]
  image, photo_doc = load_photo(photo)
  config = expanded_graph(model)
  side = ({"model_complexity": info["graph"]["model_complexity"]}
          if "model_complexity" in info["graph"] else {})
  tflite = SITE / info["tflite"]
  arrays, run = record_run(model, image, config, side=side, tflite=tflite,
                           label=f"{model}/{photo}")
  doc = {
      "model": model,
      "photo": photo_doc,
      "spec_section": info["spec"],
      "tflite": {"wheel_member": info["tflite"],
                 "sha256": hashlib.sha256(tflite.read_bytes()).hexdigest()},
      "graph": ({"binarypb": info["graph"]["binarypb"]} if "binarypb" in info["graph"] else
                {"subgraph": info["graph"]["subgraph"], "side_packets": side}),
      "mapping_back": info["mapping"],
      **run,
      "versions": _versions(),
      "npz_keys": {k: [list(v.shape), str(v.dtype)] for k, v in arrays.items()},
  }
  return arrays, doc


def _versions() -> dict:
  return {"mediapipe": mediapipe.__version__, "numpy": np.__version__,
          "scikit-image": skimage.__version__, "python": platform.python_version(),
          "machine": platform.machine()}


def _det_list(arr: dict) -> list[dict]:
  return [{"score": float(s), "label_id": int(c),
           "xmin_ymin_width_height": [float(v) for v in bx],
           "keypoints_xy": [[float(x), float(y)] for x, y in kp]}
          for bx, kp, s, c in zip(arr["boxes"], arr["keypoints"], arr["scores"], arr["labels"])]


def record_run(model: str, image: np.ndarray, config, *, side: dict, tflite: pathlib.Path,
               label: str, final: str = "detections", tasks: bool = False,
               untapped_check: bool = True) -> tuple[dict, dict]:
  """One tapped run of an expanded graph on ``image``, with every check of the docstring.

  ``final`` names the normalized output stream (see :func:`tapped_graph`),
  ``tasks`` feeds the graph as a Tasks graph (see :func:`run_graph`).
  ``untapped_check``: compare with the same graph without taps (the caller
  does it otherwise, e.g. through the Tasks API). Returns the arrays for the
  npz and the JSON entries from ``input_tensor`` to ``calculators``.
  """
  info = MODELS[model]

  # Options: the expanded graph's, checked against the spec.
  calculators = {}
  for calc in ("ImageToTensorCalculator", "SsdAnchorsCalculator", "InferenceCalculator",
               "TensorsToDetectionsCalculator", "NonMaxSuppressionCalculator", info["mapping"]):
    node = _node(config, calc)
    opts = _options(node) if (node.HasField("options") or node.node_options) else {}
    calculators[calc] = {"calculator": node.calculator, "options": opts,
                         "input_stream": list(node.input_stream),
                         "output_stream": list(node.output_stream)}
  for calc, expected in info["expected"].items():
    got = calculators[calc]["options"]
    for key, want in expected.items():
      if key not in got or got[key] != want:
        raise RuntimeError(f"{label}: {calc}.{key} = {got.get(key)!r}, spec {info['spec']} "
                           f"says {want!r}")
  t2d = calculators["TensorsToDetectionsCalculator"]["options"]
  itt = calculators["ImageToTensorCalculator"]["options"]
  num_boxes, num_coords, num_kp = t2d["num_boxes"], t2d["num_coords"], t2d["num_keypoints"]
  num_classes = t2d["num_classes"]
  th, tw = itt["output_tensor_height"], itt["output_tensor_width"]

  tapped, names = tapped_graph(config, final)
  observe = [Taps.INPUT, Taps.RAW, Taps.PROBE_LB, Taps.PROBE_PROJ,
             names["decoded"], names["nms"], names["final"]]
  got = run_graph(tapped, image, side_packets=side, observe=observe, probe=True,
                  side_outputs=[names["anchors"]], tasks=tasks)
  required = [Taps.INPUT, Taps.RAW, Taps.PROBE_LB, Taps.PROBE_PROJ, names["decoded"]]
  missing = [s for s in required if got[s] is None]
  if missing:
    raise RuntimeError(f"{label}: no packet on {missing}")
  emitted = {stage: got[names[stage]] is not None for stage in ("decoded", "nms", "final")}

  input_tensor = np.asarray(packet_getter.get_float_list(got[Taps.INPUT]), np.float32)
  input_tensor = input_tensor.reshape(1, th, tw, 3)
  emb = packet_getter.get_proto(got[Taps.RAW])
  raw = [np.asarray(e.float_embedding.values, np.float32) for e in emb.embeddings]
  if len(raw) != 2 or raw[0].size != num_boxes * num_coords or raw[1].size != num_boxes * num_classes:
    raise RuntimeError(f"{model}: raw outputs of sizes {[r.size for r in raw]}")
  raw_boxes = raw[0].reshape(1, num_boxes, num_coords)  # InferenceCalculator order: 0 boxes,
  raw_scores = raw[1].reshape(1, num_boxes, num_classes)  # 1 scores (TensorsToDetections' default)

  anchors_list = packet_getter.get_proto_list(got[names["anchors"]])
  anchors = np.array([[a.x_center, a.y_center, a.w, a.h] for a in anchors_list], np.float32)
  if anchors.shape != (num_boxes, 4):
    raise RuntimeError(f"{model}: anchors {anchors.shape}")

  stages = {}
  for stage in ("decoded", "nms", "final"):
    stages[stage] = detections_to_arrays(_detections(got[names[stage]]), num_kp)

  probe_lb = detections_to_arrays(_detections(got[Taps.PROBE_LB]),
                                  len(PROBE_KEYPOINTS))
  probe_proj = detections_to_arrays(_detections(got[Taps.PROBE_PROJ]),
                                    len(PROBE_KEYPOINTS))
  padding, matrix = expected_padding_and_matrix(image.shape[0], image.shape[1], th, tw)
  # What the padding / matrix predict for the probe, in float32 as the calculators compute.
  l, t, r, b = padding
  sx, sy = np.float32(1) - (l + r), np.float32(1) - (t + b)
  lb_kp = np.stack([(PROBE_KEYPOINTS[:, 0] - l) / sx, (PROBE_KEYPOINTS[:, 1] - t) / sy], -1)
  proj_kp = np.stack([matrix[0, 0] * PROBE_KEYPOINTS[:, 0] + matrix[0, 1] * PROBE_KEYPOINTS[:, 1] + matrix[0, 3],
                      matrix[1, 0] * PROBE_KEYPOINTS[:, 0] + matrix[1, 1] * PROBE_KEYPOINTS[:, 1] + matrix[1, 3]], -1)
  probe_check = {
      "letterbox_removal_keypoints_max_abs_diff": _max_abs(probe_lb["keypoints"][0], lb_kp),
      "projection_keypoints_max_abs_diff": _max_abs(probe_proj["keypoints"][0], proj_kp),
  }
  if max(probe_check.values()) > 1e-6:
    raise RuntimeError(f"{label}: padding/matrix formulas disagree with MediaPipe: "
                       f"{probe_check}")

  # Float32 NumPy re-computation of each stage from the previous recorded one.
  dec_idx, dec = numpy_decode(raw_boxes, raw_scores, anchors, t2d)
  nms_opts = calculators["NonMaxSuppressionCalculator"]["options"]
  consistency = {
      "decoded_from_raw_outputs_and_anchors": _stage_diff(dec, stages["decoded"]),
      "nms_from_decoded": _stage_diff(
          numpy_weighted_nms(stages["decoded"], nms_opts["min_suppression_threshold"]),
          stages["nms"]),
      "final_from_nms": _stage_diff(
          numpy_map_back(stages["nms"], info["mapping"], padding, matrix), stages["final"]),
  }
  rng = itt["output_tensor_float_range"]
  consistency["input_tensor_from_opencv_warp"] = _max_abs(
      opencv_input_tensor(image, th, tw, rng["min"], rng["max"]), input_tensor)
  bad = {k: v for k, v in consistency.items() if v is None or v > 1e-5}
  if bad:
    raise RuntimeError(f"{label}: recorded stages inconsistent: {consistency}")

  # The untapped graph must give the same final detections.
  if untapped_check:
    plain = run_graph(config, image, side_packets=side, observe=["detections"], probe=False)
    plain_final = detections_to_arrays(_detections(plain["detections"]), num_kp)
    if (plain["detections"] is not None) != emitted["final"]:
      raise RuntimeError(f"{label}: taps changed whether detections are emitted")
    for k in plain_final:
      if not np.array_equal(plain_final[k], stages["final"][k]):
        raise RuntimeError(f"{label}: taps changed the final detections ({k})")

  # LiteRT on the recorded input tensor.
  lite = litert_outputs(tflite, input_tensor)
  lite_boxes = [o for o in lite if o.shape[-1] == num_coords][0]
  lite_scores = [o for o in lite if o.shape[-1] == num_classes][0]
  litert_check = {
      "raw_boxes_max_abs_diff": _max_abs(lite_boxes, raw_boxes),
      "raw_scores_max_abs_diff": _max_abs(lite_scores, raw_scores),
      "raw_boxes_max_abs": float(np.abs(raw_boxes).max()),
      "raw_scores_max_abs": float(np.abs(raw_scores).max()),
  }
  if max(litert_check["raw_boxes_max_abs_diff"], litert_check["raw_scores_max_abs_diff"]) > 1e-3:
    raise RuntimeError(f"{label}: LiteRT disagrees with MediaPipe: {litert_check}")

  arrays = {
      "input_tensor": input_tensor,
      "raw_boxes": raw_boxes,
      "raw_scores": raw_scores,
      "anchors": anchors,
      "letterbox_padding": padding,
      "transform_matrix": matrix,
      "probe_keypoints": PROBE_KEYPOINTS,
      "probe_box": PROBE_BOX,
      "probe_letterbox_removed_box": probe_lb["boxes"][0],
      "probe_letterbox_removed_keypoints": probe_lb["keypoints"][0],
      "probe_projected_box": probe_proj["boxes"][0],
      "probe_projected_keypoints": probe_proj["keypoints"][0],
  }
  for stage, arr in stages.items():
    for k, v in arr.items():
      arrays[f"{stage}_{k}"] = v
  arrays["decoded_anchor_index"] = dec_idx.astype(np.int32)

  run = {
      "input_tensor": {"shape": [1, th, tw, 3], "dtype": "float32",
                       "min": float(input_tensor.min()), "max": float(input_tensor.max())},
      "raw_outputs": {"raw_boxes_shape": list(raw_boxes.shape),
                      "raw_scores_shape": list(raw_scores.shape)},
      "letterbox_padding_left_top_right_bottom": [float(v) for v in padding],
      "transform_matrix_row_major": [float(v) for v in matrix.ravel()],
      "probe_check": probe_check,
      "numpy_recomputation_max_abs_diff": consistency,
      "litert_check": litert_check,
      "counts": {stage: int(arr["scores"].shape[0]) for stage, arr in stages.items()},
      "packet_emitted": emitted,
      "detections": {stage: _det_list(arr) for stage, arr in stages.items()},
      "calculators": calculators,
  }
  return arrays, run


# ---------------------------------------------------------------------------
# --finetuned FILE: a face_short_range file with new weights (written by
# jaxanchors.models.save_tflite) in MediaPipe's legacy graph, in the Tasks
# FaceDetector graph and through the Tasks Python API.
# ---------------------------------------------------------------------------

FINETUNED_BASE = "face_short_range"
FINETUNED_FRAMES = ROOT / "tests" / "data" / "finetuned" / "heldout_composites"
TASKS_GRAPH = "mediapipe.tasks.vision.face_detector.FaceDetectorGraph"


def _shown(path: pathlib.Path) -> str:
  """A path as the JSON shows it: relative to the project when inside it."""
  try:
    return path.resolve().relative_to(ROOT).as_posix()
  except ValueError:
    return path.name


def _replace_strings(obj, old: str, new: str):
  """``obj`` (JSON-like) with every string equal to ``old`` replaced by ``new``."""
  if isinstance(obj, dict):
    return {k: _replace_strings(v, old, new) for k, v in obj.items()}
  if isinstance(obj, list):
    return [_replace_strings(v, old, new) for v in obj]
  return new if obj == old else obj


def legacy_graph_with_model(model_file: pathlib.Path) -> calculator_pb2.CalculatorGraphConfig:
  """``FaceDetectionShortRangeCpu`` with ``FaceDetectionOptions.model_path`` = ``model_file``.

  The graph's own option: the wheel's graph forwards its FaceDetectionOptions
  (``option_value: "OPTIONS:options"``) down to the InferenceCalculator's
  ``model_path``. Expanded by MediaPipe; the expanded InferenceCalculator
  must load ``model_file``.
  """
  text = ('input_stream: "image" output_stream: "detections" '
          'node { calculator: "FaceDetectionShortRangeCpu" input_stream: "IMAGE:image" '
          'output_stream: "DETECTIONS:detections" node_options { '
          '[type.googleapis.com/mediapipe.FaceDetectionOptions] { '
          f'model_path: "{model_file}" }} }} }}')
  v = validated_graph_config.ValidatedGraphConfig()
  v.initialize(graph_config=text)
  config = calculator_pb2.CalculatorGraphConfig()
  config.ParseFromString(v.binary_config)
  got = _options(_node(config, "InferenceCalculator")).get("model_path")
  if got != str(model_file):
    raise RuntimeError(f"legacy graph: InferenceCalculator.model_path = {got!r}, "
                       f"expected {str(model_file)!r}")
  return config


def tasks_options(model_file: pathlib.Path):
  """The Tasks Python API's ``FaceDetectorOptions`` for ``model_file``, all else default."""
  return face_detector.FaceDetectorOptions(
      base_options=base_options.BaseOptions(model_asset_path=str(model_file)))


def tasks_graph(model_file: pathlib.Path) -> tuple[calculator_pb2.CalculatorGraphConfig, str, dict]:
  """The Tasks ``FaceDetectorGraph`` as the Python API configures it, expanded by MediaPipe.

  The node options are the API's own (``FaceDetectorOptions(...).to_pb2()``).
  Without the task runner's model-resources cache service, the expansion
  gives the inference subgraph's ``ModelResourcesCalculator`` the model file
  itself (``model_file.file_name``); that it names ``model_file`` is checked.
  (The option protos must be imported before the expanded config is parsed
  in Python, or the calculator's options are lost on the way back.) The
  recorded pixel detections must equal the Python API's.

  Returns the config, the name of the DetectionProjectionCalculator's output
  (normalized detections in image coordinates, before
  ``DetectionTransformationCalculator`` turns them into pixels) and the
  graph options as a dict.
  """
  mrc, fdo = model_resources_calculator_pb2, face_detector_graph_options_pb2
  options = tasks_options(model_file).to_pb2()
  top = calculator_pb2.CalculatorGraphConfig()
  top.input_stream.extend(["IMAGE:image", "NORM_RECT:norm_rect"])
  top.output_stream.append("DETECTIONS:detections")
  node = top.node.add(calculator=TASKS_GRAPH)
  node.input_stream.extend(["IMAGE:image", "NORM_RECT:norm_rect"])
  node.output_stream.append("DETECTIONS:detections")
  node.options.Extensions[fdo.FaceDetectorGraphOptions.ext].CopyFrom(options)
  v = validated_graph_config.ValidatedGraphConfig()
  v.initialize(graph_config=top)
  config = calculator_pb2.CalculatorGraphConfig()
  config.ParseFromString(v.binary_config)
  resources = _node(config, "ModelResourcesCalculator")
  opts = resources.options.Extensions[mrc.ModelResourcesCalculatorOptions.ext]
  if opts.model_resources_tag or opts.model_file.file_name != str(model_file):
    raise RuntimeError(f"Tasks graph: ModelResourcesCalculator does not load {model_file}: "
                       f"{opts}")
  final = _stream(_node(config, "DetectionProjectionCalculator").output_stream, "DETECTIONS")
  return config, final, json_format.MessageToDict(options, preserving_proto_field_name=True)


def pixel_detections_to_arrays(dets, num_keypoints: int) -> dict[str, np.ndarray]:
  """Detections in ``BOUNDING_BOX`` format (integer pixels), normalized keypoints."""
  boxes, kps, scores, labels = [], [], [], []
  for d in dets:
    loc = d.location_data
    if loc.format != loc.BOUNDING_BOX:
      raise RuntimeError(f"unexpected location format {loc.format}")
    b = loc.bounding_box
    boxes.append([b.xmin, b.ymin, b.width, b.height])
    kps.append([[k.x, k.y] for k in loc.relative_keypoints])
    scores.append(d.score[0])
    labels.append(d.label_id[0])
  n = len(boxes)
  return {"pixel_boxes": np.asarray(boxes, np.int32).reshape(n, 4),
          "keypoints": np.asarray(kps, np.float32).reshape(n, num_keypoints, 2),
          "scores": np.asarray(scores, np.float32).reshape(n),
          "labels": np.asarray(labels, np.int32).reshape(n)}


def tasks_api_detect(model_file: pathlib.Path, image: np.ndarray, num_keypoints: int) -> dict:
  """``FaceDetector.detect`` of the Tasks Python API, as arrays.

  ``pixel_boxes`` ``[n, 4]`` int32 ``origin_x, origin_y, width, height``
  (``BoundingBox``); keypoints normalized (``NormalizedKeypoint``), scores
  (``categories[0].score``), labels (``categories[0].index``).
  """
  with face_detector.FaceDetector.create_from_options(tasks_options(model_file)) as detector:
    result = detector.detect(mediapipe.Image(image_format=mediapipe.ImageFormat.SRGB,
                                             data=np.ascontiguousarray(image)))
  n = len(result.detections)
  for d in result.detections:
    if len(d.categories) != 1 or len(d.keypoints) != num_keypoints:
      raise RuntimeError(f"Tasks API: unexpected detection {d}")
  return {
      "pixel_boxes": np.array([[d.bounding_box.origin_x, d.bounding_box.origin_y,
                                d.bounding_box.width, d.bounding_box.height]
                               for d in result.detections], np.int32).reshape(n, 4),
      "keypoints": np.array([[[k.x, k.y] for k in d.keypoints] for d in result.detections],
                            np.float32).reshape(n, num_keypoints, 2),
      "scores": np.array([d.categories[0].score for d in result.detections],
                         np.float32).reshape(n),
      "labels": np.array([d.categories[0].index for d in result.detections],
                         np.int32).reshape(n),
  }


def pixel_boxes(boxes_xywh: np.ndarray, width: int, height: int) -> np.ndarray:
  """``DetectionTransformationCalculator``: each of xmin, ymin, width, height
  times the image width / height in float32, truncated toward zero (the
  float -> int conversion), clamped to [0, size]."""
  f = np.float32
  size = np.array([width, height, width, height], f)
  v = np.trunc(np.asarray(boxes_xywh, f) * size)
  return np.clip(v, 0, size).astype(np.int32)


def _pixel_list(arr: dict) -> list[dict]:
  return [{"score": float(s), "label_id": int(c),
           "origin_x_y_width_height_pixels": [int(v) for v in bx],
           "keypoints_xy": [[float(x), float(y)] for x, y in kp]}
          for bx, kp, s, c in zip(arr["pixel_boxes"], arr["keypoints"], arr["scores"],
                                  arr["labels"])]


def load_frames(stem: pathlib.Path) -> tuple[list[dict], dict[str, np.ndarray]]:
  """The frames of ``tools/finetuned_face_testdata.py`` (``stem``.json / .npz)."""
  manifest = json.loads(stem.with_suffix(".json").read_text())
  with np.load(stem.with_suffix(".npz")) as npz:
    arrays = {k: npz[k] for k in npz.files}
  for frame in manifest["frames"]:
    img = arrays[frame["name"]]
    if hashlib.sha256(img.tobytes()).hexdigest() != frame["sha256_of_uint8_rgb_pixels"]:
      raise RuntimeError(f"frame {frame['name']}: pixels differ from the manifest's hash")
  return manifest["frames"], arrays


def record_finetuned(model_file: pathlib.Path, frame: dict, image: np.ndarray,
                     frame_file: pathlib.Path) -> tuple[dict, dict]:
  """The fine-tuned file on one frame: legacy graph, Tasks graph, Tasks API; the
  shipped file through the Tasks API for comparison."""
  name = frame["name"]
  num_kp = MODELS[FINETUNED_BASE]["expected"]["TensorsToDetectionsCalculator"]["num_keypoints"]
  h, w = image.shape[:2]

  legacy_arrays, legacy = record_run(FINETUNED_BASE, image, legacy_graph_with_model(model_file),
                                     side={}, tflite=model_file, label=f"legacy/{name}")
  config, final, graph_options = tasks_graph(model_file)
  tasks_arrays, tasks = record_run(FINETUNED_BASE, image, config, side={}, tflite=model_file,
                                   label=f"tasks/{name}", final=final, tasks=True,
                                   untapped_check=False)
  # The same expanded graph without taps: its pixel output is what the API returns.
  plain = run_graph(config, image, side_packets={}, observe=["detections"], probe=False,
                    tasks=True)
  graph_pixels = pixel_detections_to_arrays(_detections(plain["detections"]), num_kp)
  api = tasks_api_detect(model_file, image, num_kp)
  shipped_file = SITE / MODELS[FINETUNED_BASE]["tflite"]
  shipped = tasks_api_detect(shipped_file, image, num_kp)

  final_norm = {k[len("final_"):]: v for k, v in tasks_arrays.items() if k.startswith("final_")}
  checks = {
      "tasks_api_equals_tasks_graph": all(
          np.array_equal(api[k], graph_pixels[k]) for k in api),
      "tasks_api_pixel_boxes_from_tasks_final_max_abs_diff": _max_abs(
          pixel_boxes(final_norm["boxes"], w, h), api["pixel_boxes"])
      if len(api["scores"]) == len(final_norm["scores"]) else None,
      "tasks_api_keypoints_scores_vs_tasks_final_max_abs_diff": max(
          _max_abs(api["keypoints"], final_norm["keypoints"]),
          _max_abs(api["scores"], final_norm["scores"]))
      if len(api["scores"]) == len(final_norm["scores"]) else None,
      "legacy_vs_tasks_max_abs_diff": {
          k: (_max_abs(legacy_arrays[k], tasks_arrays[k])
              if legacy_arrays[k].shape == tasks_arrays[k].shape else None)
          for k in ("input_tensor", "raw_boxes", "raw_scores", "final_boxes", "final_keypoints",
                    "final_scores")},
  }
  if not (checks["tasks_api_equals_tasks_graph"]
          and checks["tasks_api_pixel_boxes_from_tasks_final_max_abs_diff"] == 0.0
          and checks["tasks_api_keypoints_scores_vs_tasks_final_max_abs_diff"] == 0.0):
    raise RuntimeError(f"{name}: the Tasks API and the tapped Tasks graph disagree: {checks}")

  keep = ("input_tensor", "raw_boxes", "raw_scores", "letterbox_padding", "transform_matrix")
  arrays = {k: legacy_arrays[k] for k in keep}
  for k in keep[:3]:  # stored once when both routes agree
    if not np.array_equal(legacy_arrays[k], tasks_arrays[k]):
      arrays[f"tasks_{k}"] = tasks_arrays[k]
  for route, src in (("legacy", legacy_arrays), ("tasks", tasks_arrays)):
    for k, v in src.items():
      if k.startswith(("decoded_", "nms_", "final_")):
        arrays[f"{route}_{k}"] = v
  for prefix, src in (("tasks_api", api), ("shipped_tasks_api", shipped)):
    for k, v in src.items():
      arrays[f"{prefix}_{k}"] = v

  shown = _shown(model_file)
  doc = {
      "frame": {**frame, "file": _shown(frame_file)},
      "model_file": {"path": shown, "sha256": hashlib.sha256(model_file.read_bytes()).hexdigest(),
                     "base_model": FINETUNED_BASE,
                     "base_wheel_member": MODELS[FINETUNED_BASE]["tflite"],
                     "base_sha256": hashlib.sha256(shipped_file.read_bytes()).hexdigest()},
      "legacy": {"graph": "FaceDetectionShortRangeCpu, FaceDetectionOptions.model_path = the file",
                 **_replace_strings(legacy, str(model_file), shown)},
      "tasks": {"graph": TASKS_GRAPH,
                "graph_options": _replace_strings(graph_options, str(model_file), shown),
                "model_resources": "ModelResourcesCalculator.model_file.file_name = the file "
                                   "(set by the graph's expansion)",
                **_replace_strings(tasks, str(model_file), shown)},
      "tasks_api": {
          "call": "FaceDetector.create_from_options(FaceDetectorOptions(base_options="
                  "BaseOptions(model_asset_path=FILE))).detect(mp.Image(SRGB, frame))",
          "count": int(api["scores"].shape[0]), "detections": _pixel_list(api)},
      "shipped_tasks_api": {"model": MODELS[FINETUNED_BASE]["tflite"],
                            "count": int(shipped["scores"].shape[0]),
                            "detections": _pixel_list(shipped)},
      "checks": checks,
      "versions": _versions(),
      "npz_keys": {k: [list(v.shape), str(v.dtype)] for k, v in arrays.items()},
  }
  return arrays, doc


def main_finetuned(model_file: pathlib.Path, frames_stem: pathlib.Path, out: pathlib.Path) -> int:
  model_file = model_file.resolve()
  frames, images = load_frames(frames_stem)
  out.mkdir(parents=True, exist_ok=True)
  # The two expanded graphs, as MediaPipe expanded them (presets.from_graph reads them).
  for stem, config, what in (
      ("legacy_graph", legacy_graph_with_model(model_file),
       "FaceDetectionShortRangeCpu with FaceDetectionOptions.model_path set to the file"),
      ("tasks_graph", tasks_graph(model_file)[0],
       f"{TASKS_GRAPH} with the Tasks Python API's default FaceDetectorOptions")):
    text = text_format.MessageToString(config).replace(str(model_file), _shown(model_file))
    (out / f"{stem}.pbtxt").write_text(
        f"# {what}, expanded by mediapipe {mediapipe.__version__}.\n"
        "# Written by tools/mediapipe_golden.py --finetuned.\n" + text)
  for frame in frames:
    arrays, doc = record_finetuned(model_file, frame, images[frame["name"]],
                                   frames_stem.with_suffix(".npz"))
    np.savez_compressed(out / f"{frame['name']}.npz", **arrays)
    (out / f"{frame['name']}.json").write_text(_dumps(doc))
    print(f"{frame['name']}: legacy {doc['legacy']['counts']}, tasks {doc['tasks']['counts']}, "
          f"tasks API {doc['tasks_api']['count']}, shipped (tasks API) "
          f"{doc['shipped_tasks_api']['count']}; legacy vs tasks "
          f"{doc['checks']['legacy_vs_tasks_max_abs_diff']}; "
          f"npz={(out / (frame['name'] + '.npz')).stat().st_size} B", flush=True)
  return 0


def _dumps(doc: dict) -> str:
  """JSON with every innermost list of numbers on one line."""
  text = json.dumps(doc, indent=1, ensure_ascii=False)
  flat = re.compile(r"\[\s*((?:-?[\d.eE+-]+|null|true|false)(?:,\s*(?:-?[\d.eE+-]+|null|true|false))*)\s*\]")
  return flat.sub(lambda m: "[" + ", ".join(v.strip() for v in m.group(1).split(",")) + "]", text) + "\n"


# ---------------------------------------------------------------------------
# Two-stage graphs (``--roi``): detections -> rects -> landmark-model crops.
# Kept apart from the detector recording above; writes tests/data/mediapipe_roi/.
# ---------------------------------------------------------------------------

# Stream prefixes of the pose graph's landmark subgraphs (TensorsToPoseLandmarksAndSegmentation,
# PoseLandmarksAndSegmentationInverseProjection), as MediaPipe's expansion names them.
_POSE_T = "poselandmarkbyroicpu__tensorstoposelandmarksandsegmentation__"
_POSE_P = "poselandmarkbyroicpu__poselandmarksandsegmentationinverseprojection__"

ROI_GRAPHS: dict[str, dict] = {
    "hand": {
        "binarypb": "mediapipe/modules/hand_landmark/hand_landmark_tracking_cpu.binarypb",
        "side_packets": {"num_hands": 2, "model_complexity": 1, "use_prev_landmarks": False},
        "detections": "palm_detections", "rects": "hand_rects_from_palm_detections",
        "associated": "hand_rects", "roi_output": "hand_rect_from_palm_detection",
        "tensor": [224, 224],
        "landmarks": {
            "tflite": "mediapipe/modules/hand_landmark/hand_landmark_full.tflite",
            "per_roi": {
                "norm_landmarks": "handlandmarkcpu__landmarks",
                "letterbox_removed_landmarks": "handlandmarkcpu__scaled_landmarks",
                "projected_landmarks": "single_hand_landmarks",
                "world_landmarks": "handlandmarkcpu__unprojected_world_landmarks",
                "projected_world_landmarks": "single_hand_world_landmarks",
            },
            "outputs": {"output_landmarks": "multi_hand_landmarks",
                        "output_world_landmarks": "multi_hand_world_landmarks"},
            "chains": {"output_landmarks": "norm_landmarks",
                       "output_world_landmarks": "world_landmarks"},
            "shape_only": {},
        },
    },
    "pose": {
        "binarypb": "mediapipe/modules/pose_landmark/pose_landmark_cpu.binarypb",
        "side_packets": {"model_complexity": 1, "smooth_landmarks": False,
                         "enable_segmentation": False, "smooth_segmentation": False,
                         "use_prev_landmarks": False},
        "detections": "pose_detection", "rects": None,
        "associated": "pose_rect", "roi_output": "pose_rect_from_detection",
        "tensor": [256, 256],
        "landmarks": {
            "tflite": "mediapipe/modules/pose_landmark/pose_landmark_full.tflite",
            "per_roi": {
                "norm_landmarks": _POSE_T + "raw_landmarks",
                "refined_landmarks": _POSE_T + "all_landmarks",
                "letterbox_removed_landmarks": _POSE_P + "adjusted_landmarks",
                "letterbox_removed_auxiliary_landmarks": _POSE_P + "adjusted_auxiliary_landmarks",
                "projected_landmarks": "unfiltered_pose_landmarks",
                "projected_auxiliary_landmarks": "unfiltered_auxiliary_landmarks",
                "world_landmarks": _POSE_T + "all_world_landmarks",
                "projected_world_landmarks": "unfiltered_world_landmarks",
            },
            "outputs": {"output_landmarks": "pose_landmarks",
                        "output_world_landmarks": "pose_world_landmarks"},
            "chains": {"output_landmarks": "norm_landmarks",
                       "output_world_landmarks": "world_landmarks"},
            "shape_only": {2: "segmentation (TensorsToSegmentation, gated off: "
                              "enable_segmentation is false)",
                           3: "heatmap (RefineLandmarksFromHeatmap)"},
        },
    },
    "face": {
        "binarypb": "mediapipe/modules/face_landmark/face_landmark_front_cpu.binarypb",
        "side_packets": {"num_faces": 2, "use_prev_landmarks": False, "with_attention": False},
        "detections": "face_detections", "rects": "face_rects_from_detections",
        "associated": "face_rects", "roi_output": "face_rect_from_detection",
        "tensor": [192, 192],
        "landmarks": {
            "tflite": "mediapipe/modules/face_landmark/face_landmark.tflite",
            "per_roi": {
                # with_attention is false: switch container c0 of FaceLandmarkCpu.
                "norm_landmarks":
                    "facelandmarkcpu__switchcontainer_2__c0__facelandmarkcpu__landmarks",
                "projected_landmarks": "face_landmarks",
            },
            "outputs": {"output_landmarks": "multi_face_landmarks"},
            "chains": {"output_landmarks": "norm_landmarks"},
            "shape_only": {},
        },
    },
}

# (graph, photo, degrees): rotated copies make the rects' rotation matter.
ROI_CASES: list[tuple[str, str, int]] = [
    *[("hand", "camera_hands", d) for d in (0, 30, 90, 135)],
    ("hand", "astronaut_tall", 0),
    *[("pose", "astronaut", d) for d in (0, 30, 90, 135)],
    *[("face", "faces2", d) for d in (0, 30, 90, 135)],
    ("face", "astronaut", 30),
]


def rotate_photo(img: np.ndarray, degrees: int) -> np.ndarray:
  """The photo turned counter-clockwise by ``degrees`` (0, 30, 90 or 135).

  90 is ``np.rot90``. 30 and 135 sample the nearest pixel on a canvas that
  holds the whole turned photo (black outside it), with sines and cosines from
  square roots so the result is the same on every machine.
  """
  if degrees == 0:
    return img
  if degrees == 90:
    return np.ascontiguousarray(np.rot90(img))
  c, s = {30: (np.sqrt(3.0) / 2, 0.5), 135: (-np.sqrt(0.5), np.sqrt(0.5))}[degrees]
  h, w = img.shape[:2]
  out_w = int(np.ceil(abs(w * c) + abs(h * s)))
  out_h = int(np.ceil(abs(w * s) + abs(h * c)))
  u = np.arange(out_w, dtype=np.float64)[None, :] + 0.5 - out_w / 2
  v = np.arange(out_h, dtype=np.float64)[:, None] + 0.5 - out_h / 2
  # Inverse map: a canvas pixel looks up the photo pixel that lands there.
  x = np.floor(c * u - s * v + w / 2).astype(np.int64)
  y = np.floor(s * u + c * v + h / 2).astype(np.int64)
  inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
  out = img[np.clip(y, 0, h - 1), np.clip(x, 0, w - 1)]
  out[~inside] = 0
  return np.ascontiguousarray(out)


# ---------------------------------------------------------------------------
# The landmark stage (``--roi``): the landmark model's raw outputs and the
# landmarks the graph computes from them, per ROI, up to its outputs.
# ---------------------------------------------------------------------------

_LANDMARK_OPTION_MODULES = (
    "mediapipe.calculators.core.gate_calculator_pb2",
    "mediapipe.calculators.core.split_vector_calculator_pb2",
    "mediapipe.calculators.image.warp_affine_calculator_pb2",
    "mediapipe.calculators.tensor.tensors_to_classification_calculator_pb2",
    "mediapipe.calculators.tensor.tensors_to_landmarks_calculator_pb2",
    "mediapipe.calculators.tensor.tensors_to_segmentation_calculator_pb2",
    "mediapipe.calculators.util.landmark_projection_calculator_pb2",
    "mediapipe.calculators.util.landmarks_refinement_calculator_pb2",
    "mediapipe.calculators.util.landmarks_smoothing_calculator_pb2",
    "mediapipe.calculators.util.landmarks_to_detection_calculator_pb2",
    "mediapipe.calculators.util.refine_landmarks_from_heatmap_calculator_pb2",
    "mediapipe.calculators.util.thresholding_calculator_pb2",
    "mediapipe.calculators.util.visibility_copy_calculator_pb2",
    "mediapipe.calculators.util.visibility_smoothing_calculator_pb2",
    "mediapipe.framework.formats.landmark_pb2",
)

# Option protos of calculators that may leave their options unset (defaults then apply).
_OPTIONS_TYPE = {
    "TensorsToLandmarksCalculator": "mediapipe.TensorsToLandmarksCalculatorOptions",
    "LandmarkProjectionCalculator": "mediapipe.LandmarkProjectionCalculatorOptions",
    "RefineLandmarksFromHeatmapCalculator": "mediapipe.RefineLandmarksFromHeatmapCalculatorOptions",
    "ThresholdingCalculator": "mediapipe.ThresholdingCalculatorOptions",
    "TensorsToFloatsCalculator": "mediapipe.TensorsToFloatsCalculatorOptions",
    "VisibilityCopyCalculator": "mediapipe.VisibilityCopyCalculatorOptions",
}

# What the ungated copy duplicates: every node of these kinds downstream of the
# landmark model's presence gates (stops at loops' ends, smoothing, rects).
_UNGATED_CALCULATORS = frozenset({
    "SwitchDemuxCalculator", "SwitchMuxCalculator", "SplitTensorVectorCalculator",
    "TensorsToLandmarksCalculator", "RefineLandmarksFromHeatmapCalculator",
    "LandmarksRefinementCalculator", "SplitNormalizedLandmarkListCalculator",
    "SplitLandmarkListCalculator", "VisibilityCopyCalculator",
    "LandmarkLetterboxRemovalCalculator", "LandmarkProjectionCalculator",
    "WorldLandmarkProjectionCalculator"})
UNGATED = "ungated__"

# The calculator (and output tag) each per-ROI key must come from.
_PER_ROI_SOURCE = {
    "norm_landmarks": ("TensorsToLandmarksCalculator", "NORM_LANDMARKS"),
    "world_landmarks": ("TensorsToLandmarksCalculator", "LANDMARKS"),
    "refined_landmarks": ("RefineLandmarksFromHeatmapCalculator", "NORM_LANDMARKS"),
    "letterbox_removed_landmarks": ("LandmarkLetterboxRemovalCalculator", "LANDMARKS"),
    "letterbox_removed_auxiliary_landmarks": ("LandmarkLetterboxRemovalCalculator", "LANDMARKS"),
    "projected_landmarks": ("LandmarkProjectionCalculator", "NORM_LANDMARKS"),
    "projected_auxiliary_landmarks": ("LandmarkProjectionCalculator", "NORM_LANDMARKS"),
    "projected_world_landmarks": ("WorldLandmarkProjectionCalculator", "LANDMARKS"),
}
LANDMARK_FIELDS = ("x", "y", "z", "visibility", "presence")
# The per-ROI key each graph output is compared with (the last projection before it).
_CHAIN_END = {"output_landmarks": "projected_landmarks",
              "output_world_landmarks": "projected_world_landmarks"}


def _sname(entry: str) -> str:
  """The stream name of a ``TAG:index:name`` entry."""
  return entry.split(":")[-1]


def _stag(entry: str) -> str:
  return entry.split(":")[0] if ":" in entry else ""


def _renamed(entry: str, name: str) -> str:
  parts = entry.split(":")
  return ":".join(parts[:-1] + [name])


def _node_options(node) -> tuple[dict | None, dict | None]:
  """(options as the graph sets them, None if it sets none; the same plus every other
  scalar field at its proto default, None when the calculator has no options proto)."""
  msgs = []
  if node.HasField("options"):
    msgs += [value for _, value in node.options.ListFields()]
  pool = symbol_database.Default().pool
  for any_msg in node.node_options:
    msg = message_factory.GetMessageClass(
        pool.FindMessageTypeByName(any_msg.type_url.split("/")[-1]))()
    any_msg.Unpack(msg)
    msgs.append(msg)
  if len(msgs) > 1:
    raise RuntimeError(f"{node.name}: {len(msgs)} options messages")
  if msgs:
    msg = msgs[0]
  elif node.calculator in _OPTIONS_TYPE:
    msg = message_factory.GetMessageClass(
        pool.FindMessageTypeByName(_OPTIONS_TYPE[node.calculator]))()
  else:
    return None, None
  given = json_format.MessageToDict(msgs[0], preserving_proto_field_name=True) if msgs else None
  full = dict(given or {})
  for f in msg.DESCRIPTOR.fields:
    if f.label == f.LABEL_REPEATED or f.type == f.TYPE_MESSAGE or f.containing_oneof:
      continue
    value = getattr(msg, f.name)
    if f.type == f.TYPE_ENUM:
      value = f.enum_type.values_by_number[value].name
    full.setdefault(f.name, value)
  return given, full


def _describe(node) -> dict:
  given, full = _node_options(node)
  d = {"node": node.name, "calculator": node.calculator,
       "input_streams": list(node.input_stream), "output_streams": list(node.output_stream)}
  if node.input_side_packet:
    d["input_side_packets"] = list(node.input_side_packet)
  d["options"] = given
  d["options_with_defaults"] = full
  if full is None:
    d["note"] = "the calculator has no options proto"
  return d


def _landmark_count(g, stream: str) -> int | None:
  """Landmarks in a landmark-list stream, from the options of the nodes that make it."""
  node = next((n for n in g.node if stream in [_sname(s) for s in n.output_stream]), None)
  if node is None:
    return None
  if node.calculator == "TensorsToLandmarksCalculator":
    return int(_node_options(node)[1]["num_landmarks"])
  if node.calculator in ("SplitNormalizedLandmarkListCalculator", "SplitLandmarkListCalculator"):
    r = _options(node)["ranges"][[_sname(s) for s in node.output_stream].index(stream)]
    return int(r["end"]) - int(r.get("begin", 0))
  if node.calculator == "LandmarksRefinementCalculator":
    return None
  ins = [s for s in node.input_stream if "LANDMARKS" in _stag(s)]
  if node.calculator == "VisibilityCopyCalculator":
    ins = [s for s in ins if _stag(s) == "LANDMARKS_TO"]
  if node.calculator == "SwitchMuxCalculator":
    ins = [s for s in node.input_stream if s.startswith("C0__")]
  return _landmark_count(g, _sname(ins[0])) if ins else None


def _tag_index(entries) -> list[tuple[str, int, str]]:
  """(tag, index, stream) of each ``TAG:index:name`` / ``TAG:name`` / ``name`` entry."""
  out, untagged = [], 0
  for e in entries:
    parts = e.split(":")
    if len(parts) == 3:
      out.append((parts[0], int(parts[1]), parts[2]))
    elif len(parts) == 2:
      out.append((parts[0], 0, parts[1]))
    else:
      out.append(("", untagged, parts[0]))
      untagged += 1
  return out


def _paths(nodes, src: str, dst: str) -> list[list[tuple[int, str]]]:
  """Every chain of nodes that carries the landmarks of stream ``src`` to stream ``dst``.

  A step enters a node through an untagged input or one tagged ``*LANDMARKS*``,
  ``ITEM`` or ``ITERABLE`` (not IMAGE_SIZE, OBJECT_SCALE_ROI, ...), and a
  switch (SwitchDemux / SwitchMux) is left through the output of the same tag;
  PreviousLoopback (the back edge to the next frame) is not entered.
  """
  found = []

  def carries(tag):
    tag = re.sub(r"^C\d+__", "", tag)
    return tag in ("", "ITEM", "ITERABLE") or "LANDMARKS" in tag

  def walk(stream, path):
    if stream == dst:
      found.append(path)
      return
    for i, n in enumerate(nodes):
      if n.calculator == "PreviousLoopbackCalculator" or i in [j for j, _ in path]:
        continue
      for tag, index, name in _tag_index(n.input_stream):
        if name != stream or not carries(tag):
          continue
        outs = _tag_index(n.output_stream)
        if n.calculator == "SwitchDemuxCalculator":
          outs = [o for o in outs if re.sub(r"^C\d+__", "", o[0]) == tag and o[1] == index]
        elif n.calculator == "SwitchMuxCalculator":
          outs = [o for o in outs if o[0] == re.sub(r"^C\d+__", "", tag) and o[1] == index]
        for _, _, out in outs:
          walk(out, path + [(i, out)])

  walk(src, [])
  return found


def _landmark_taps(g, name: str, inference_input: str) -> dict:
  """Adds the landmark-stage taps to ``g``; returns what to observe and how to read it.

  * each output of the SplitTensorVectorCalculator(s) that split the landmark
    model's output vector (fed directly or through a SwitchDemux) goes to a
    ``TensorsToFloatsCalculator`` (the inference output itself is not tapped:
    SplitTensorVector moves the tensors out and fails with "Packet isn't the
    sole owner of the holder" when a second reader holds that packet);
  * the nodes between the presence gates and the projections are copied with
    streams renamed ``ungated__<stream>``, fed with the gates' inputs, so the
    landmarks are computed (by MediaPipe's calculators, same options) for
    ROIs the gate closes too;
  * the rest are streams of the graph, observed as they are.
  """
  info = ROI_GRAPHS[name]["landmarks"]
  if info["tflite"] not in text_format.MessageToString(g):
    raise RuntimeError(f"{name}: {info['tflite']} is not in the expanded graph")
  original = [calculator_pb2.CalculatorGraphConfig.Node() for _ in g.node]
  for copy, n in zip(original, g.node):
    copy.CopyFrom(n)

  def consumers(stream):
    return [n for n in original if stream in [_sname(s) for s in n.input_stream]]

  def producer(stream):
    found = [n for n in original if stream in [_sname(s) for s in n.output_stream]]
    if len(found) != 1:
      raise RuntimeError(f"{name}: {len(found)} producers of {stream}")
    return found[0]

  inf = [n for n in original if n.calculator.startswith("InferenceCalculator")
         and _stream(n.input_stream, "TENSORS") == inference_input]
  if len(inf) != 1:
    raise RuntimeError(f"{name}: {len(inf)} landmark InferenceCalculators")
  raw = _stream(inf[0].output_stream, "TENSORS")
  feeds = {raw} | {_sname(s) for n in consumers(raw) if n.calculator == "SwitchDemuxCalculator"
                   for s in n.output_stream}
  splits = [n for n in original if n.calculator == "SplitTensorVectorCalculator"
            and _sname(n.input_stream[0]) in feeds]
  if not splits:
    raise RuntimeError(f"{name}: no SplitTensorVectorCalculator on the landmark model's output")
  taps = []
  for n in splits:
    ranges = _options(n)["ranges"]
    if len(ranges) != len(n.output_stream):
      raise RuntimeError(f"{n.name}: {len(ranges)} ranges, {len(n.output_stream)} outputs")
    for r, s in zip(ranges, n.output_stream):
      begin, end = int(r.get("begin", 0)), int(r["end"])
      entry = {"split": n.name, "stream": _sname(s), "model_outputs": [begin, end], "tap": None}
      if end - begin == 1:  # TensorsToFloats reads the first tensor of the vector
        entry["tap"] = f"tap_landmark_output_{len(taps)}"
        text_format.Merge(f"""
          node {{ calculator: "TensorsToFloatsCalculator"
                  input_stream: "TENSORS:{_sname(s)}" output_stream: "FLOATS:{entry['tap']}" }}
        """, g)
      taps.append(entry)

  # Presence gates: GateCalculators whose ALLOW comes from a ThresholdingCalculator.
  thresholds = {_stream(n.output_stream, "FLAG"): n for n in original
                if n.calculator == "ThresholdingCalculator"}
  gates, gate_map = [], {}
  for n in original:
    allow = _stream(n.input_stream, "ALLOW")
    if n.calculator == "GateCalculator" and allow in thresholds:
      ins = [_sname(s) for s in n.input_stream if not _stag(s)]
      outs = [_sname(s) for s in n.output_stream if not _stag(s)]
      gate_map.update(zip(outs, ins))
      gates.append(n)
  if not gates:
    raise RuntimeError(f"{name}: no presence gate")
  # Ungated copies, to a fixed point.
  marked, renamed = [], {}
  changed = True
  while changed:
    changed = False
    for i, n in enumerate(original):
      if i in marked or n.calculator not in _UNGATED_CALCULATORS:
        continue
      if any(_sname(s) in gate_map or _sname(s) in renamed for s in n.input_stream):
        marked.append(i)
        renamed.update({_sname(s): UNGATED + _sname(s) for s in n.output_stream})
        changed = True
  for i in sorted(marked):
    c = g.node.add()
    c.CopyFrom(original[i])
    if c.name:
      c.name = UNGATED + c.name
    for j, s in enumerate(c.input_stream):
      src = _sname(s)
      c.input_stream[j] = _renamed(s, renamed.get(src, gate_map.get(src, src)))
    for j, s in enumerate(c.output_stream):
      c.output_stream[j] = _renamed(s, renamed[_sname(s)])

  per_roi, counts = {}, {}
  for key, stream in info["per_roi"].items():
    calc, tag = _PER_ROI_SOURCE[key]
    node = producer(stream)
    if node.calculator != calc or _stream(node.output_stream, tag) != stream:
      raise RuntimeError(f"{name}: {key} = {stream} is not {calc}'s {tag} output")
    if stream not in renamed:
      raise RuntimeError(f"{name}: {key} has no ungated copy")
    per_roi[key] = {"stream": stream, "ungated_stream": renamed[stream], "node": node.name,
                    "calculator": calc, "output_tag": tag}
    counts[key] = _landmark_count(g, stream)
  vector_outputs = {}  # graph output -> whether it is a vector of lists (an EndLoop's)
  for key, stream in info["outputs"].items():
    if stream not in [_sname(s) for s in g.output_stream]:
      raise RuntimeError(f"{name}: {stream} is not a graph output")
    counts[key] = counts[_CHAIN_END[key]]
    vector_outputs[key] = producer(stream).calculator.startswith("EndLoop")

  chains = {}
  for key, start in info["chains"].items():
    paths = _paths(original, info["per_roi"][start], info["outputs"][key])
    if not paths:
      raise RuntimeError(f"{name}: nothing leads from {start} to {key}")
    chains[key] = {"from": start, "from_stream": info["per_roi"][start],
                   "to_stream": info["outputs"][key],
                   "paths": [[{"node": original[i].name, "calculator": original[i].calculator,
                               "output_stream": s, "options": _node_options(original[i])[0]}
                              for i, s in p] for p in paths]}

  kinds = {"tensors_to_landmarks": "TensorsToLandmarksCalculator",
           "landmark_letterbox_removal": "LandmarkLetterboxRemovalCalculator",
           "landmark_projection": "LandmarkProjectionCalculator",
           "world_landmark_projection": "WorldLandmarkProjectionCalculator",
           "refine_landmarks_from_heatmap": "RefineLandmarksFromHeatmapCalculator",
           "landmarks_refinement": "LandmarksRefinementCalculator",
           "split_landmarks": ("SplitNormalizedLandmarkListCalculator",
                               "SplitLandmarkListCalculator"),
           "visibility_copy": "VisibilityCopyCalculator"}
  options = {}
  for key, calc in kinds.items():
    found = [_describe(n) for n in original if n.calculator in (
        calc if isinstance(calc, tuple) else (calc,))]
    if found:
      options[key] = found
  options["landmark_model_split"] = [_describe(n) for n in splits]
  options["presence_gate"] = {
      "thresholding": [_describe(n) for n in thresholds.values()
                       if _stream(n.output_stream, "FLAG") in
                       [_stream(x.input_stream, "ALLOW") for x in gates]],
      "gates": [_describe(n) for n in gates]}
  # The presence score (TensorsToFloats -> Thresholding) and the model output behind it,
  # traced back through SwitchMux (one candidate per switch branch).
  thresholding = options["presence_gate"]["thresholding"]
  if len(thresholding) != 1:
    raise RuntimeError(f"{name}: {len(thresholding)} presence thresholds")
  score_stream = _sname(thresholding[0]["input_streams"][0])

  def sources(stream):
    hits = [(e["model_outputs"][0], e["tap"]) for e in taps if e["stream"] == stream and e["tap"]]
    node = producer(stream)
    if hits or node.calculator != "SwitchMuxCalculator":
      return hits
    position = [_sname(s) for s in node.output_stream].index(stream)
    tag, index, _ = _tag_index(node.output_stream)[position]
    return [hit for t, i, s in _tag_index(node.input_stream)
            if re.fullmatch(r"C\d+__" + re.escape(tag), t) and i == index for hit in sources(s)]

  flt = producer(score_stream)
  options["presence_gate"]["score"] = _describe(flt)
  presence = {"stream": score_stream, "from_tensor_stream": _stream(flt.input_stream, "TENSORS"),
              "candidates": sources(_stream(flt.input_stream, "TENSORS"))}
  if not presence["candidates"]:
    raise RuntimeError(f"{name}: the presence score comes from no tapped model output")

  observe = [e["tap"] for e in taps if e["tap"]] + [score_stream]
  for d in per_roi.values():
    observe += [d["stream"], d["ungated_stream"]]
  observe += list(info["outputs"].values())
  for c in chains.values():
    observe += [s["output_stream"] for p in c["paths"] for s in p]
  for found in options.values():
    for d in (found if isinstance(found, list) else [found["score"], *found["thresholding"],
                                                     *found["gates"]]):
      observe += [_sname(s) for s in d["output_streams"]]
  return {"inference": {"node": inf[0].name, "output_stream": raw}, "taps": taps,
          "per_roi": per_roi, "outputs": dict(info["outputs"]), "counts": counts,
          "vector_outputs": vector_outputs,
          "chains": chains, "options": options, "presence": presence,
          "observe": list(dict.fromkeys(observe))}


def _landmark_rows(protos, count: int) -> np.ndarray:
  """NormalizedLandmarkList / LandmarkList protos -> [n, count, 5] float32, NaN where unset."""
  out = np.full((len(protos), count, len(LANDMARK_FIELDS)), np.nan, np.float32)
  for i, p in enumerate(protos):
    if len(p.landmark) != count:
      raise RuntimeError(f"{len(p.landmark)} landmarks, expected {count}")
    for j, lm in enumerate(p.landmark):
      out[i, j] = [getattr(lm, f) if lm.HasField(f) else np.nan for f in LANDMARK_FIELDS]
  return out


def record_landmarks(name: str, lm: dict, got: dict, roi_ts: list[int], crops: np.ndarray,
                     image_hw: tuple[int, int]) -> tuple[dict, dict, dict]:
  """The landmark stage of one case: (arrays, JSON section, options for ``options``)."""
  info = ROI_GRAPHS[name]["landmarks"]
  n_roi = len(roi_ts)
  if roi_ts != sorted(set(roi_ts)):
    raise RuntimeError(f"{name}: ROI timestamps {roi_ts} are not increasing")

  def by_roi(stream):
    d = {}
    for p in got[stream]:
      ts = p.timestamp.value
      if ts in d or ts not in roi_ts:
        raise RuntimeError(f"{stream}: packet at {ts}, ROIs at {roi_ts}")
      d[ts] = p
    return d

  # Raw model outputs, checked against LiteRT on the recorded crops.
  from ai_edge_litert.interpreter import Interpreter  # pylint: disable=import-outside-toplevel
  it = Interpreter(model_path=str(SITE / info["tflite"]))
  it.allocate_tensors()
  details = it.get_output_details()
  lite = []
  for crop in crops:
    it.set_tensor(it.get_input_details()[0]["index"],
                  (crop.astype(np.float32) * np.float32(1.0 / 255.0))[None])
    it.invoke()
    lite.append([it.get_tensor(d["index"]).copy() for d in details])
  arrays, outputs_doc, litert = {}, [], {}
  for k, d in enumerate(details):
    shape = [int(v) for v in d["shape"]]
    size = int(np.prod(shape))
    active = [e for e in lm["taps"] if e["tap"] and e["model_outputs"][0] == k
              and got[e["tap"]]]
    if len(active) > 1:
      raise RuntimeError(f"{name}: output {k} arrives on {len(active)} taps")
    if n_roi and not active:
      raise RuntimeError(f"{name}: output {k} was not tapped")
    values = np.zeros((n_roi, size), np.float32)
    if active:
      packets = by_roi(active[0]["tap"])
      if sorted(packets) != roi_ts:
        raise RuntimeError(f"{name}: output {k} on {sorted(packets)}, ROIs on {roi_ts}")
      for i, ts in enumerate(roi_ts):
        v = np.asarray(packet_getter.get_float_list(packets[ts]), np.float32)
        if v.size != size:
          raise RuntimeError(f"{name}: output {k} has {v.size} values, LiteRT shape {shape}")
        values[i] = v
    litert[str(k)] = _max_abs(values, np.stack([o[k].reshape(-1) for o in lite])
                              if n_roi else values)
    key = None if k in info["shape_only"] else f"landmark_tensors_{k}"
    if key:
      arrays[key] = values
    splits = [e for e in lm["taps"] if e["model_outputs"][0] <= k < e["model_outputs"][1]]
    outputs_doc.append({
        "index": k, "tflite_name": d["name"], "shape": shape, "npz_key": key,
        **({"not_stored": info["shape_only"][k]} if k in info["shape_only"] else {}),
        "split_streams": [{"split": e["split"], "stream": e["stream"],
                           "range": e["model_outputs"], "emitted": bool(e["tap"] and got[e["tap"]])}
                          for e in splits]})
  if max(litert.values(), default=0.0) > 1e-4:
    raise RuntimeError(f"{name}: LiteRT disagrees with MediaPipe's landmark model: {litert}")

  # Landmarks per ROI: the graph's own streams (NaN rows where the gate closed) and
  # the ungated copies (every ROI).
  present = None
  per_roi_doc, fields_set, checks = {}, {}, {"ungated_equals_graph_where_present": {}}
  for key, d in lm["per_roi"].items():
    count = lm["counts"][key]
    graph_packets, ungated_packets = by_roi(d["stream"]), by_roi(d["ungated_stream"])
    mask = np.array([ts in graph_packets for ts in roi_ts], bool)
    if present is None:
      present = mask
    elif not np.array_equal(mask, present):
      raise RuntimeError(f"{name}: {key} is present for {mask}, norm_landmarks for {present}")
    if sorted(ungated_packets) != roi_ts:
      raise RuntimeError(f"{name}: ungated {key} on {sorted(ungated_packets)}, ROIs {roi_ts}")
    full = np.full((n_roi, count, len(LANDMARK_FIELDS)), np.nan, np.float32)
    rows = _landmark_rows([packet_getter.get_proto(graph_packets[ts])
                           for ts in roi_ts if ts in graph_packets], count)
    full[mask] = rows
    ungated = _landmark_rows([packet_getter.get_proto(ungated_packets[ts]) for ts in roi_ts],
                             count)
    same = bool(np.array_equal(ungated[mask], full[mask], equal_nan=True))
    checks["ungated_equals_graph_where_present"][key] = same
    if not same:
      raise RuntimeError(f"{name}: the ungated copy of {key} differs from the graph's")
    arrays[key] = full
    arrays[UNGATED.rstrip("_") + "_" + key] = ungated
    fields_set[key] = [f for j, f in enumerate(LANDMARK_FIELDS)
                       if n_roi and not np.isnan(ungated[..., j]).all()]
    if any(np.isnan(ungated[..., LANDMARK_FIELDS.index(f)]).any() for f in fields_set[key]):
      raise RuntimeError(f"{name}: {key} sets a field on some landmarks only")
    per_roi_doc[key] = {**d, "num_landmarks": count}
  arrays["landmarks_present"] = present

  # The graph's outputs: one list per present ROI (hand, face: EndLoop vectors), or the
  # single pose list.
  outputs_doc_final = {}
  checks["output_minus_chain_end_max_abs_diff"] = {}
  for key, stream in lm["outputs"].items():
    packets = got[stream]
    if len(packets) > 1:
      raise RuntimeError(f"{name}: {len(packets)} packets on {stream}")
    protos = []
    if packets:
      protos = (packet_getter.get_proto_list(packets[0]) if lm["vector_outputs"][key]
                else [packet_getter.get_proto(packets[0])])
    count = lm["counts"][key]
    arrays[key] = _landmark_rows(protos, count)
    chain = lm["chains"][key]
    end = _CHAIN_END[key]
    want = arrays[end][present]
    if want.shape != arrays[key].shape:
      raise RuntimeError(f"{name}: {key} {arrays[key].shape}, present {end} {want.shape}")
    checks["output_minus_chain_end_max_abs_diff"][key] = _max_abs(
        np.nan_to_num(arrays[key], nan=0.0), np.nan_to_num(want, nan=0.0))
    if not np.array_equal(np.isnan(arrays[key]), np.isnan(want)):
      raise RuntimeError(f"{name}: {key} and {end} set different fields")
    fields_set[key] = [f for j, f in enumerate(LANDMARK_FIELDS)
                       if len(protos) and not np.isnan(arrays[key][..., j]).all()]
    # The chain from the TensorsToLandmarks output to this output, with what each step
    # emitted on this run (0 packets: a switch branch not taken, or the gate closed).
    paths = [[{**s, "packets": len(got[s["output_stream"]])} for s in p] for p in chain["paths"]]
    taken = [p for p in paths if all(s["packets"] for s in p)]
    if len(taken) > 1:
      raise RuntimeError(f"{name}: {len(taken)} paths to {key} emitted")
    if any(s["calculator"] == "LandmarksSmoothingCalculator" for s in (taken or paths)[0]) and (
        key == "output_landmarks"):
      # Even with no_filter, LandmarksSmoothing takes normalized landmarks to pixels and
      # back: x * w / w, y * h / h, z * w / w in float32.
      h, w = np.float32(image_hw[0]), np.float32(image_hw[1])
      trip = want.copy()
      for j, size in ((0, w), (1, h), (2, w)):
        trip[..., j] = (want[..., j] * size).astype(np.float32) / size
      diff = _max_abs(np.nan_to_num(arrays[key], nan=0.0), np.nan_to_num(trip, nan=0.0))
      checks.setdefault("output_minus_pixel_round_trip_of_chain_end_max_abs_diff", {})[key] = diff
      if diff:
        raise RuntimeError(f"{name}: {key} is not {end} taken to pixels and back")
    outputs_doc_final[key] = {
        "stream": stream, "rows": "one per ROI with landmarks_present, in ROI order",
        "packet": "a vector of landmark lists" if lm["vector_outputs"][key]
                  else "one landmark list",
        "compare_with": end, "chain_from": chain["from"], "chain_from_stream": chain["from_stream"],
        "calculators_after_tensors_to_landmarks": [s["calculator"] for s in (taken or paths)[0]],
        "path": (taken or paths)[0],
        "path_is": "the path whose every step emitted on this run" if taken else
                   "the first path: none emitted on this run (no ROI passed the gate)",
        "other_paths": [p for p in paths if p is not (taken or paths)[0]]}
  score_packets = by_roi(lm["presence"]["stream"])
  if sorted(score_packets) != roi_ts:
    raise RuntimeError(f"{name}: presence scores on {sorted(score_packets)}, ROIs on {roi_ts}")
  scores = np.array([packet_getter.get_float(score_packets[ts]) for ts in roi_ts], np.float32)
  emitted = [k for k, tap in lm["presence"]["candidates"] if got[tap]]
  presence = emitted[0] if len(emitted) == 1 else None
  for found in lm["options"].values():  # what each listed node emitted on this run
    for d in (found if isinstance(found, list) else [found["score"], *found["thresholding"],
                                                     *found["gates"]]):
      d["packets_on_this_run"] = sum(len(got.get(_sname(s), [])) for s in d["output_streams"])
  activation = lm["options"]["presence_gate"]["score"]["options_with_defaults"]["activation"]
  threshold = lm["options"]["presence_gate"]["thresholding"][0]["options_with_defaults"][
      "threshold"]
  if n_roi and presence is None:
    raise RuntimeError(f"{name}: the presence score's model output arrives on {emitted}")
  score_diff = None
  if n_roi:
    raw_score = arrays[f"landmark_tensors_{presence}"][:, 0]
    if activation == "NONE":
      want_score = raw_score
    elif activation == "SIGMOID":
      want_score = (np.float32(1) / (np.float32(1) + np.exp(-raw_score))).astype(np.float32)
    else:
      raise RuntimeError(f"{name}: presence activation {activation}")
    score_diff = _max_abs(scores, want_score)
    if score_diff > 1e-6:
      raise RuntimeError(f"{name}: presence scores {scores} are not {activation} of output "
                         f"{presence} ({raw_score})")
  if not np.array_equal(present, scores.astype(np.float64) > threshold):
    raise RuntimeError(f"{name}: present {present} is not score > {threshold} ({scores})")
  doc = {
      "layout": "[R, L, 5] float32 per ROI in crop_levels order, fields x, y, z, visibility, "
                "presence; NaN where the proto leaves a field unset (fields_set) and in rows "
                "of ROIs whose presence gate closed (landmarks_present false). "
                "output_* rows: one per present ROI. landmark_tensors_<k>: [R, size] float32, "
                "model output k flattened (shape in model.outputs)",
      "ungated": "ungated_<key>: the same MediaPipe calculators with the same options, copied "
                 "into the graph and fed with the presence gates' inputs, so every ROI has "
                 "them; equal to <key> bit for bit where landmarks_present",
      "model": {"tflite": info["tflite"], "inference": lm["inference"], "outputs": outputs_doc},
      "presence": {"score_stream": lm["presence"]["stream"],
                   "model_output": presence,
                   "activation": activation,
                   "scores_minus_activation_of_model_output_max_abs_diff": score_diff,
                   "model_output_per_switch_branch": [k for k, _ in lm["presence"]["candidates"]],
                   "scores": scores.tolist(),
                   "threshold": threshold,
                   "present": present.tolist(),
                   "note": "ThresholdingCalculator: present when double(score) > threshold "
                           "(checked); the gates then pass the landmark tensors on"},
      "per_roi": per_roi_doc,
      "outputs": outputs_doc_final,
      "fields_set": fields_set,
      "checks": {"litert_max_abs_diff_per_output": litert, **checks},
  }
  return arrays, doc, lm["options"]


def _roi_graph(name: str):
  """The expanded landmark graph with taps on the detector's and landmark model's tensors."""
  info = ROI_GRAPHS[name]
  for mod in ("mediapipe.calculators.util.detections_to_rects_calculator_pb2",
              "mediapipe.calculators.util.rect_transformation_calculator_pb2",
              "mediapipe.calculators.util.association_calculator_pb2",
              "mediapipe.framework.formats.rect_pb2", *_LANDMARK_OPTION_MODULES):
    importlib.import_module(mod)
  v = validated_graph_config.ValidatedGraphConfig()
  v.initialize(binary_graph_path=str(SITE / info["binarypb"]))
  config = calculator_pb2.CalculatorGraphConfig()
  config.ParseFromString(v.binary_config)
  g = calculator_pb2.CalculatorGraphConfig()
  g.CopyFrom(config)
  # The rect transformation that writes the ROI, and the converter feeding it.
  transform = [n for n in g.node if n.calculator == "RectTransformationCalculator"
               and info["roi_output"] in list(n.output_stream)]
  if len(transform) != 1:
    raise RuntimeError(f"{name}: expected one RectTransformation writing {info['roi_output']}")
  raw = _stream(transform[0].input_stream, "NORM_RECT")
  converters = [n for n in g.node if raw in [s.split(":")[-1] for s in n.output_stream]]
  crops = [n for n in g.node if n.calculator == "ImageToTensorCalculator"
           and _stream(n.input_stream, "NORM_RECT") is not None]
  if len(converters) != 1 or len(crops) != 1:
    raise RuntimeError(f"{name}: {len(converters)} rect converters, {len(crops)} ROI crops")
  tensors = _stream(crops[0].output_stream, "TENSORS")
  text_format.Merge(f"""
    node {{ calculator: "TensorsToFloatsCalculator"
            input_stream: "TENSORS:{tensors}" output_stream: "FLOATS:tap_roi_tensor" }}
  """, g)
  streams = {"raw_rect": raw, "roi": info["roi_output"], "associated": info["associated"],
             "detections": info["detections"], "tensor": "tap_roi_tensor"}
  options = {"converter": {"calculator": converters[0].calculator,
                           "options": _options(converters[0])},
             "transformation": _options(transform[0]),
             "crop": _options(crops[0])}
  assoc = [n for n in g.node if n.calculator == "AssociationNormRectCalculator"]
  if assoc:
    options["association"] = _options(assoc[0])
  clip = [n for n in g.node if n.calculator == "ClipDetectionVectorSizeCalculator"]
  if clip:
    options["clip_detections"] = {"side_packet": list(clip[0].input_side_packet)}
  landmarks = _landmark_taps(g, name, inference_input=tensors)
  return g, streams, options, landmarks


def _run_all_packets(config, image: np.ndarray, side: dict, observe: list[str]) -> dict:
  """Like run_graph, but keeps every non-empty packet of each stream (loops emit several)."""
  resource_util.set_resource_dir(str(SITE))
  graph = calculator_graph.CalculatorGraph(graph_config=config)
  packets: dict = {name: [] for name in observe}
  for name in observe:
    graph.observe_output_stream(name, lambda s, p: packets[s].append(p), True)
  side_packets = {k: (packet_creator.create_bool(v) if isinstance(v, bool)
                      else packet_creator.create_int(v)) for k, v in side.items()}
  graph.start_run(side_packets)
  graph.add_packet_to_input_stream(
      "image", packet_creator.create_image_frame(image_format=image_frame.ImageFormat.SRGB,
                                                  data=image).at(0))
  graph.close()
  return {k: [p for p in v if not p.is_empty()] for k, v in packets.items()}


def _rect_array(rects) -> np.ndarray:
  return np.array([[r.x_center, r.y_center, r.width, r.height, r.rotation] for r in rects],
                  np.float32).reshape(len(rects), 5)


def record_roi(name: str, photo: str, degrees: int) -> tuple[dict, dict]:
  """One (landmark graph, photo, rotation) case: arrays for the npz, document for the JSON."""
  info = ROI_GRAPHS[name]
  base, photo_doc = load_photo(photo)
  image = rotate_photo(base, degrees)
  config, streams, options, landmarks = _roi_graph(name)
  observe = list(dict.fromkeys([*streams.values(), *landmarks["observe"]]))
  got = _run_all_packets(config, image, info["side_packets"], observe)

  det_packets = got[streams["detections"]]
  if name == "pose":  # one Detection, not a vector
    dets = [packet_getter.get_proto(p) for p in det_packets]
  else:
    dets = packet_getter.get_proto_list(det_packets[0]) if det_packets else []
  num_kp = {"hand": 7, "pose": 4, "face": 6}[name]
  det_arrays = detections_to_arrays(dets, num_kp)
  raw = _rect_array([packet_getter.get_proto(p) for p in got[streams["raw_rect"]]])
  rois = _rect_array([packet_getter.get_proto(p) for p in got[streams["roi"]]])
  assoc_packets = got[streams["associated"]]
  if name == "pose":
    associated = _rect_array([packet_getter.get_proto(p) for p in assoc_packets])
  else:
    associated = _rect_array(packet_getter.get_proto_list(assoc_packets[0])
                             if assoc_packets else [])
  th, tw = info["tensor"]
  tensors = [np.asarray(packet_getter.get_float_list(p), np.float32).reshape(th, tw, 3)
             for p in got[streams["tensor"]]]
  if len(raw) != len(dets) or len(rois) != len(dets) or len(tensors) != len(associated):
    raise RuntimeError(f"{name}/{photo}/{degrees}: {len(dets)} detections, {len(raw)} raw rects, "
                       f"{len(rois)} ROIs, {len(associated)} associated, {len(tensors)} crops")
  # Every crop value is a grey level times f32(1/255): store the levels, check the floats.
  scale = np.float32(1.0 / 255.0)
  levels = []
  for t in tensors:
    lv = np.rint(t.astype(np.float64) * 255.0)
    if lv.min() < 0 or lv.max() > 255 or not np.array_equal(
        (lv.astype(np.float32) * scale).astype(np.float32), t):
      raise RuntimeError(f"{name}/{photo}/{degrees}: a crop value is not level * f32(1/255)")
    levels.append(lv.astype(np.uint8))
  crops = np.stack(levels) if levels else np.zeros((0, th, tw, 3), np.uint8)
  arrays = {
      **{f"detections_{k}": v for k, v in det_arrays.items()},
      "raw_rects": raw, "rects": rois, "associated_rects": associated, "crop_levels": crops,
  }
  lm_arrays, lm_doc, lm_options = record_landmarks(
      name, landmarks, got, [p.timestamp.value for p in got[streams["tensor"]]], crops,
      image.shape[:2])
  if set(lm_arrays) & set(arrays) or set(lm_options) & set(options):
    raise RuntimeError(f"{name}: a landmark key would replace an existing one")
  arrays.update(lm_arrays)
  options.update(lm_options)
  doc = {
      "graph": name,
      "binarypb": info["binarypb"],
      "side_packets": info["side_packets"],
      "photo": {**photo_doc, "rotate_degrees": degrees, "rotated_height": int(image.shape[0]),
                "rotated_width": int(image.shape[1]),
                "rotated_sha256_of_uint8_rgb_pixels": hashlib.sha256(image.tobytes()).hexdigest(),
                "rotate": "tools/mediapipe_golden.py rotate_photo (counter-clockwise)"},
      "streams": streams,
      "options": options,
      "rects_x_y_w_h_rotation": {"raw": raw.tolist(), "roi": rois.tolist(),
                                 "associated": associated.tolist()},
      "crop": {"tensor_shape": [th, tw, 3],
               "stored_as": "crop_levels uint8; tensor = f32(level * f32(1/255)), checked exact"},
      "landmarks": lm_doc,
      "versions": {"mediapipe": mediapipe.__version__, "numpy": np.__version__,
                   "scikit-image": skimage.__version__, "python": platform.python_version()},
      "npz_keys": {k: [list(v.shape), str(v.dtype)] for k, v in arrays.items()},
  }
  return arrays, doc


def _json_differences(old, new, where: str = "") -> list[str]:
  """Where ``new`` does not hold ``old`` unchanged (new dict keys are allowed)."""
  if isinstance(old, dict) and isinstance(new, dict):
    return [d for k in old for d in (_json_differences(old[k], new[k], f"{where}.{k}")
                                     if k in new else [f"{where}.{k} missing"])]
  return [] if old == new and type(old) is type(new) else [f"{where}: {old!r} -> {new!r}"]


def roi_differences(out: pathlib.Path, stem: str, arrays: dict, doc: dict) -> list[str]:
  """What a new recording would change in the stored files' arrays and fields (new ones may
  be added: every stored array must come out bit-identical, every stored field equal)."""
  diffs = []
  if (out / f"{stem}.npz").exists():
    with np.load(out / f"{stem}.npz") as old:
      for k in old.files:
        a = old[k]
        b = arrays.get(k)
        if b is None:
          diffs.append(f"{k}: missing")
        elif a.dtype != b.dtype or a.shape != b.shape or a.tobytes() != b.tobytes():
          diffs.append(f"{k}: {a.dtype}{list(a.shape)} -> {b.dtype}{list(b.shape)}, "
                       f"bytes {'same' if a.tobytes() == b.tobytes() else 'different'}")
  if (out / f"{stem}.json").exists():
    diffs += _json_differences(json.loads((out / f"{stem}.json").read_text()),
                               json.loads(_dumps(doc)))
  return diffs


def main_roi(out: pathlib.Path, only: list[str] | None) -> int:
  """Writes the ``--roi`` cases to ``out``.

  Where a case's files exist, every array and JSON field they hold must come out
  the same (bit for bit); the new recording only adds keys. Otherwise nothing
  of that case is written and the run fails: move the old files away to
  record from scratch.
  """
  out.mkdir(parents=True, exist_ok=True)
  for name, photo, degrees in ROI_CASES:
    stem = f"{name}_{photo}_rot{degrees}"
    if only and stem not in only:
      continue
    arrays, doc = record_roi(name, photo, degrees)
    diffs = roi_differences(out, stem, arrays, doc)
    if diffs:
      raise RuntimeError(f"{stem}: the stored files would change:\n  " + "\n  ".join(diffs[:20]))
    np.savez_compressed(out / f"{stem}.npz", **arrays)
    (out / f"{stem}.json").write_text(_dumps(doc))
    print(f"{stem}: detections={len(arrays['detections_scores'])} "
          f"rois={len(arrays['rects'])} crops={len(arrays['crop_levels'])} "
          f"npz={(out / f'{stem}.npz').stat().st_size} B", flush=True)
  return 0


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--out", type=pathlib.Path, default=None,
                      help="output folder (default: tests/data/mediapipe)")
  parser.add_argument("--explore", action="store_true",
                      help="print detection counts for every model x photo; write nothing")
  parser.add_argument("--only", nargs="*", help="model_photo names to (re)write")
  parser.add_argument("--finetuned", type=pathlib.Path, metavar="FILE",
                      help="record a fine-tuned face_short_range .tflite on the held-out "
                           "frames instead (default --out: tests/data/mediapipe_finetuned)")
  parser.add_argument("--frames", type=pathlib.Path, default=FINETUNED_FRAMES,
                      help="with --finetuned: the frames' .npz/.json stem "
                           "(tools/finetuned_face_testdata.py writes them)")
  parser.add_argument("--roi", action="store_true",
                      help="record the landmark graphs' rects and crops instead "
                           "(tests/data/mediapipe_roi unless --out is given)")
  args = parser.parse_args(argv)
  if mediapipe.__version__ != MEDIAPIPE_VERSION:
    sys.exit(f"needs mediapipe=={MEDIAPIPE_VERSION}, found {mediapipe.__version__}")
  _import_option_protos()
  if args.roi:
    out = args.out if "--out" in (argv or sys.argv) else ROOT / "tests" / "data" / "mediapipe_roi"
    return main_roi(out, args.only)

  if args.finetuned is not None:
    out = args.out or ROOT / "tests" / "data" / "mediapipe_finetuned"
    return main_finetuned(args.finetuned, args.frames, out)

  if args.explore:
    for model in MODELS:
      for photo in PHOTOS:
        _, doc = record(model, photo)
        top = doc["detections"]["final"][:1]
        print(f"{model:17s} {photo:15s} counts={doc['counts']} top={top[0]['score'] if top else None}"
              f" litert={doc['litert_check']['raw_boxes_max_abs_diff']:.2e}", flush=True)
    return 0

  args.out = args.out or ROOT / "tests" / "data" / "mediapipe"
  args.out.mkdir(parents=True, exist_ok=True)
  for model, photo in PAIRS:
    stem = f"{model}_{photo}"
    if args.only and stem not in args.only:
      continue
    arrays, doc = record(model, photo)
    np.savez_compressed(args.out / f"{stem}.npz", **arrays)
    (args.out / f"{stem}.json").write_text(_dumps(doc))
    print(f"{stem}: counts={doc['counts']} npz={(args.out / f'{stem}.npz').stat().st_size} B",
          flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
