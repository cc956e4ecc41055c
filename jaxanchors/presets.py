"""Options of every MediaPipe SSD model, by name (docs/semantics.md §5).

A :class:`Preset` bundles what one shipped graph configures, so one name sets up
anchors (and, as the pipeline grows, decoding, NMS and preprocessing). Counts
are those of each graph's ``num_boxes``.

========================  =====  ================  =======
name                      input  strides           anchors
========================  =====  ================  =======
``face_short_range``      128    8,16,16,16        896
``face_full_range``       192    4                 2304
``blazeface_back``        256    16,32,32,32       896
``palm``                  192    8,16,16,16        2016
``palm_128``              128    8,16,16,16        896
``palm_v1``               256    8,16,32,32,32     2944
``pose``                  224    8,16,32,32,32     2254
``ssdlite_coco``          320    16..512           2034
``objectron_oidv4``       300    16..512           1917
========================  =====  ================  =======

``face_short_range_tasks`` and ``pose_tasks`` are the MediaPipe Tasks graphs'
option-proto defaults for the same models (NMS threshold 0.5 instead of 0.3).
The Tasks ``PoseDetector`` uses 0.5; the Tasks ``FaceDetector`` front ends
(Python, C++, Java, Web, iOS) set 0.3, so a ``FaceDetector`` with its default
options is exactly ``face_short_range``.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Iterable

from jaxanchors import _validate as v
from jaxanchors.anchors import AnchorOptions
from jaxanchors.decoding import DecoderOptions
from jaxanchors.letterbox import DetectionMapping, ImageToTensorOptions
from jaxanchors.nms import NmsOptions
from jaxanchors.roi import RectOptions, RoiOptions

__all__ = ["Preset", "from_graph", "get", "names", "PRESETS"]


@v.hash_once
@dataclasses.dataclass(frozen=True, kw_only=True)
class Preset:
  """Everything one MediaPipe graph configures for its SSD model.

  Attributes:
    name: the lookup name.
    description: the model and the graph it comes from.
    anchors: ``SsdAnchorsCalculator`` options.
    decoder: ``TensorsToDetectionsCalculator`` options.
    nms: ``NonMaxSuppressionCalculator`` options.
    preprocessing: ``ImageToTensorCalculator`` options (input size, value
      range, keep-aspect, border). Graphs from before late 2020 used
      ``ImageTransformationCalculator`` FIT instead (docs/semantics.md §4.4); their presets
      give the equivalent ImageToTensor letterbox.
    mapping: how the graph maps detections back to the image, a
      :class:`~jaxanchors.letterbox.DetectionMapping` (or its name):
      ``PROJECTION`` (DetectionProjection, face graphs) or
      ``LETTERBOX_REMOVAL`` (DetectionLetterboxRemoval, palm and pose).
    model: name of the real model in :mod:`jaxanchors.models`, if shipped.
    keypoint_names: the name of each keypoint, in the model's order, as
      MediaPipe documents them (``()`` when unnamed). Face: the six points of
      MediaPipe's ``FaceKeypoint``. Pose: the detector's four points (mid-hip
      centre, a point encoding the full body's size and rotation, mid-shoulder
      centre, the same for the upper body). Palm: MediaPipe names point 0
      (wrist centre) and point 2 (middle finger MCP); points 1-4 lie in a row
      with point 2 second (the index to pinky MCPs) and points 5-6 towards the
      thumb (its CMC and MCP), as the recorded runs in ``tests/data/mediapipe``
      show.
    labels: class name of each class id (``label_id``), from the graph's label
      map (``"???"`` marks ids without a class); ``()`` for single-class
      detectors, whose graphs name no class.
    roi: for detectors that feed a landmark model, what the landmark graph
      does in between (:class:`~jaxanchors.roi.RoiOptions`: rects, crop,
      how many, association; docs/semantics.md §7.6), else ``None``.
  """

  name: str
  description: str
  anchors: AnchorOptions
  decoder: DecoderOptions
  nms: NmsOptions
  preprocessing: ImageToTensorOptions
  mapping: DetectionMapping = DetectionMapping.PROJECTION
  model: str | None = None
  keypoint_names: tuple[str, ...] = ()
  labels: tuple[str, ...] = ()
  roi: RoiOptions | None = None

  def __post_init__(self) -> None:
    v.set_field(self, "mapping", v.as_enum("Preset.mapping", DetectionMapping, self.mapping))
    for name in ("keypoint_names", "labels"):
      value = v.as_tuple(f"Preset.{name}", getattr(self, name))
      if not all(isinstance(x, str) for x in value):
        raise TypeError(f"Preset.{name} must hold strings, got {value!r}")
      v.set_field(self, name, value)
    k = self.decoder.num_keypoints
    if self.keypoint_names and len(self.keypoint_names) != k:
      raise ValueError(f"Preset.keypoint_names has {len(self.keypoint_names)} names for "
                       f"{k} keypoints")
    if self.labels and len(self.labels) != self.decoder.num_classes:
      raise ValueError(f"Preset.labels has {len(self.labels)} names for "
                       f"{self.decoder.num_classes} classes")
    if self.roi is not None and not isinstance(self.roi, RoiOptions):
      raise TypeError(f"Preset.roi must be RoiOptions or None, got {type(self.roi).__name__}")

  @property
  def input_size(self) -> tuple[int, int]:
    """Model input ``(height, width)`` in pixels."""
    return self.anchors.input_size_height, self.anchors.input_size_width


def _blaze(size: int, strides: tuple[int, ...], min_scale: float = 0.1484375,
           interp: float = 1.0) -> AnchorOptions:
  """The BlazeFace-family anchor recipe: fixed unit-size anchors, aspect 1."""
  return AnchorOptions(
      num_layers=len(strides), min_scale=min_scale, max_scale=0.75,
      input_size_height=size, input_size_width=size, anchor_offset_x=0.5,
      anchor_offset_y=0.5, strides=strides, aspect_ratios=(1.0,),
      interpolated_scale_aspect_ratio=interp, fixed_anchor_size=True)


def _blaze_decoder(num_boxes: int, num_keypoints: int, scale: float,
                   min_score_thresh: float) -> DecoderOptions:
  """BlazeFace-family rows: [dx, dy, w, h, kp0x, kp0y, ...] in input pixels."""
  return DecoderOptions(
      num_classes=1, num_boxes=num_boxes, num_coords=4 + 2 * num_keypoints,
      box_coord_offset=0, keypoint_coord_offset=4, num_keypoints=num_keypoints,
      num_values_per_keypoint=2, sigmoid_score=True, score_clipping_thresh=100.0,
      reverse_output_order=True, x_scale=scale, y_scale=scale, w_scale=scale, h_scale=scale,
      min_score_thresh=min_score_thresh)


def _ssd_decoder(num_classes: int, num_boxes: int, min_score_thresh: float) -> DecoderOptions:
  """SSD-MobileNet rows: [ty, tx, th, tw] with exp sizes, class 0 = background."""
  return DecoderOptions(
      num_classes=num_classes, num_boxes=num_boxes, num_coords=4, ignore_classes=(0,),
      sigmoid_score=True, apply_exponential_on_box_size=True, x_scale=10.0, y_scale=10.0,
      h_scale=5.0, w_scale=5.0, min_score_thresh=min_score_thresh)


def _weighted(threshold: float = 0.3, **kwargs) -> NmsOptions:
  """The BlazeFace-family NMS: WEIGHTED blending with IoU."""
  return NmsOptions(min_suppression_threshold=threshold, overlap_type="INTERSECTION_OVER_UNION",
                    algorithm="WEIGHTED", **kwargs)


def _input(size: int, value_range: tuple[float, float] = (-1.0, 1.0), keep: bool = True,
           border: str = "ZERO") -> ImageToTensorOptions:
  return ImageToTensorOptions(output_tensor_width=size, output_tensor_height=size,
                              keep_aspect_ratio=keep, output_tensor_float_range=value_range,
                              border_mode=border)


def _mobile_ssd(size: int) -> AnchorOptions:
  """SSD-MobileNet anchors of the COCO / Objectron object detectors."""
  return AnchorOptions(
      num_layers=6, min_scale=0.2, max_scale=0.95, input_size_height=size,
      input_size_width=size, anchor_offset_x=0.5, anchor_offset_y=0.5,
      strides=(16, 32, 64, 128, 256, 512), aspect_ratios=(1.0, 2.0, 0.5, 3.0, 0.3333),
      reduce_boxes_in_lowest_layer=True)


_IOU = "INTERSECTION_OVER_UNION"

# MediaPipe's FaceKeypoint order (face detection solution, the Tasks FaceDetector).
_FACE_KEYPOINTS = ("right_eye", "left_eye", "nose_tip", "mouth_center", "right_ear_tragion",
                   "left_ear_tragion")
_PALM_KEYPOINTS = ("wrist_center", "index_finger_mcp", "middle_finger_mcp", "ring_finger_mcp",
                   "pinky_mcp", "thumb_cmc", "thumb_mcp")
_POSE_KEYPOINTS = ("hip_center", "full_body_size_rotation", "shoulder_center",
                   "upper_body_size_rotation")
# The graphs' label maps: ssdlite_object_detection_labelmap.txt (COCO ids, "???" where
# COCO has no class) and object_detection_oidv4_labelmap.txt.
_COCO_LABELS = tuple("""???|person|bicycle|car|motorcycle|airplane|bus|train|truck|boat|
traffic light|fire hydrant|???|stop sign|parking meter|bench|bird|cat|dog|horse|sheep|cow|
elephant|bear|zebra|giraffe|???|backpack|umbrella|???|???|handbag|tie|suitcase|frisbee|skis|
snowboard|sports ball|kite|baseball bat|baseball glove|skateboard|surfboard|tennis racket|
bottle|???|wine glass|cup|fork|knife|spoon|bowl|banana|apple|sandwich|orange|broccoli|carrot|
hot dog|pizza|donut|cake|chair|couch|potted plant|bed|???|dining table|???|???|toilet|???|tv|
laptop|mouse|remote|keyboard|cell phone|microwave|oven|toaster|sink|refrigerator|???|book|
clock|vase|scissors|teddy bear|hair drier|toothbrush""".replace("\n", "").split("|"))
_OIDV4_LABELS = tuple("""???|Bicycle|Boot|Laptop|Person|Chair|Cattle|Desk|Cat|Computer mouse|
Computer monitor|Box|Mug|Coffee cup|Stationary bicycle|Table|Bottle|High heels|Vehicle|
Footwear|Dog|Book|Camera|Car""".replace("\n", "").split("|"))
# The landmark graphs' detection-to-ROI stages (mediapipe 0.10.21, docs/semantics.md §7.6).
_HAND_ROI = RoiOptions(  # hand_landmark_tracking_cpu: PalmDetectionDetectionToRoi, HandLandmarkCpu
    rect=RectOptions(rotation_vector_start_keypoint_index=0, rotation_vector_end_keypoint_index=2,
                     rotation_vector_target_angle_degrees=90, scale_x=2.6, scale_y=2.6,
                     shift_y=-0.5, square_long=True),
    crop=_input(224, (0.0, 1.0), keep=True, border="UNSPECIFIED"),
    max_rois=2, association=0.5)
_POSE_ROI = RoiOptions(  # pose_landmark_cpu: PoseDetectionToRoi, PoseLandmarkByRoiCpu
    rect=RectOptions(conversion="ALIGNMENT_POINTS", rotation_vector_start_keypoint_index=0,
                     rotation_vector_end_keypoint_index=1, rotation_vector_target_angle_degrees=90,
                     scale_x=1.25, scale_y=1.25, square_long=True),
    crop=_input(256, (0.0, 1.0), keep=True, border="UNSPECIFIED"),
    max_rois=1)
_FACE_ROI = RoiOptions(  # face_landmark_front_cpu: FaceDetectionFrontDetectionToRoi, FaceLandmarkCpu
    rect=RectOptions(rotation_vector_start_keypoint_index=0, rotation_vector_end_keypoint_index=1,
                     rotation_vector_target_angle_degrees=0, scale_x=1.5, scale_y=1.5,
                     square_long=True),
    crop=_input(192, (0.0, 1.0), keep=False, border="UNSPECIFIED"),
    max_rois=1, association=0.5)

PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset(
        name="face_short_range",
        description="BlazeFace front / face detection short range, 128x128 (semantics §5.2)",
        anchors=_blaze(128, (8, 16, 16, 16)),
        decoder=_blaze_decoder(896, 6, 128.0, 0.5),
        nms=_weighted(), preprocessing=_input(128), mapping="projection",
        model="face_short_range",
        keypoint_names=_FACE_KEYPOINTS, roi=_FACE_ROI),
    Preset(
        name="face_full_range",
        description="Face detection full range (dense and sparse), 192x192 (semantics §5.3)",
        anchors=_blaze(192, (4,), interp=0.0),
        decoder=_blaze_decoder(2304, 6, 192.0, 0.6),
        nms=_weighted(), preprocessing=_input(192), mapping="projection",
        model="face_full_range",
        keypoint_names=_FACE_KEYPOINTS, roi=_FACE_ROI),
    Preset(
        name="blazeface_back",
        description="BlazeFace back camera, 256x256, graphs 2020-05 to 2021-05 (semantics §5.4)",
        anchors=_blaze(256, (16, 32, 32, 32), min_scale=0.15625),
        decoder=_blaze_decoder(896, 6, 256.0, 0.65),
        nms=_weighted(return_empty_detections=True), preprocessing=_input(256),
        mapping="letterbox_removal",
        keypoint_names=_FACE_KEYPOINTS),
    Preset(
        name="palm",
        description="Palm detection lite/full, 192x192, 2021-11 on (semantics §5.5)",
        anchors=_blaze(192, (8, 16, 16, 16)),
        decoder=_blaze_decoder(2016, 7, 192.0, 0.5),
        nms=_weighted(), preprocessing=_input(192, (0.0, 1.0)), mapping="letterbox_removal",
        model="palm_full",
        keypoint_names=_PALM_KEYPOINTS, roi=_HAND_ROI),
    Preset(
        name="palm_128",
        description="Palm detection 128x128, 2020-11 to 2021-11 (semantics §5.5)",
        anchors=_blaze(128, (8, 16, 16, 16)),
        decoder=_blaze_decoder(896, 7, 128.0, 0.5),
        nms=_weighted(), preprocessing=_input(128, border="UNSPECIFIED"),
        mapping="letterbox_removal",
        keypoint_names=_PALM_KEYPOINTS),
    Preset(
        name="palm_v1",
        description="Original palm detection 256x256, 2019-2020 (semantics §5.5)",
        anchors=_blaze(256, (8, 16, 32, 32, 32), min_scale=0.1171875),
        decoder=_blaze_decoder(2944, 7, 256.0, 0.5),
        nms=_weighted(min_score_threshold=0.5, return_empty_detections=True),
        preprocessing=_input(256), mapping="letterbox_removal",
        keypoint_names=_PALM_KEYPOINTS),
    Preset(
        name="pose",
        description="BlazePose detector, 224x224 (semantics §5.6)",
        anchors=_blaze(224, (8, 16, 32, 32, 32)),
        decoder=_blaze_decoder(2254, 4, 224.0, 0.5),
        nms=_weighted(), preprocessing=_input(224), mapping="letterbox_removal", model="pose",
        keypoint_names=_POSE_KEYPOINTS, roi=_POSE_ROI),
    Preset(
        name="ssdlite_coco",
        description="SSDLite object detection (COCO), 320x320 (semantics §5.7)",
        anchors=_mobile_ssd(320),
        decoder=_ssd_decoder(91, 2034, 0.6),
        nms=NmsOptions(min_suppression_threshold=0.4, max_num_detections=3, overlap_type=_IOU,
                       return_empty_detections=True),
        preprocessing=_input(320, keep=False, border="UNSPECIFIED"),
        labels=_COCO_LABELS),
    Preset(
        name="objectron_oidv4",
        description="Objectron SSD MobileNetV2 (Open Images v4 subset), 300x300 (semantics §5.8)",
        anchors=_mobile_ssd(300),
        decoder=_ssd_decoder(24, 1917, 0.5),
        nms=NmsOptions(min_suppression_threshold=0.5, max_num_detections=100, overlap_type=_IOU,
                       return_empty_detections=True),
        preprocessing=_input(300, keep=False, border="UNSPECIFIED"),
        labels=_OIDV4_LABELS),
)}

# MediaPipe Tasks graphs with their option protos' defaults: same models, anchors
# and decoding; NMS merges only above IoU 0.5 (docs/semantics.md §5.2, §5.6).
for _base, _name in (("face_short_range", "face_short_range_tasks"), ("pose", "pose_tasks")):
  PRESETS[_name] = dataclasses.replace(
      PRESETS[_base], name=_name, nms=_weighted(0.5),
      description=PRESETS[_base].description.replace(
          "(semantics", "Tasks graph's proto defaults, NMS 0.5 (semantics"))


def names() -> tuple[str, ...]:
  """All preset names, in the order of the table above, then the Tasks variants."""
  return tuple(PRESETS)


def get(name: str) -> Preset:
  """The preset called ``name``; ``ValueError`` listing the known names otherwise.

  Examples:
    >>> get("pose").anchors.strides
    (8, 16, 32, 32, 32)
  """
  if isinstance(name, Preset):
    return name
  try:
    return PRESETS[name]
  except (KeyError, TypeError):
    raise ValueError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}") from None


def _subgraph_file(folder: pathlib.Path, type_name: str) -> pathlib.Path | None:
  from jaxanchors import _graph  # pylint: disable=import-outside-toplevel
  for stem in (_graph.snake_case(type_name), type_name):
    for suffix in (".pbtxt", ".binarypb"):
      if (folder / (stem + suffix)).is_file():
        return folder / (stem + suffix)
  return None


def from_graph(path: str | os.PathLike[str], *, subgraphs: Iterable[str | os.PathLike[str]] = (),
               name: str | None = None) -> Preset:
  """A :class:`Preset` from a MediaPipe graph config, text (``.pbtxt``) or binary (``.binarypb``).

  Reads the options of the graph's ``SsdAnchorsCalculator``,
  ``TensorsToDetectionsCalculator``, ``NonMaxSuppressionCalculator`` and
  ``ImageToTensorCalculator`` (one of each), and the mapping back to the image
  (``DetectionProjectionCalculator``: ``"projection"``,
  ``DetectionLetterboxRemovalCalculator``: ``"letterbox_removal"``). Options
  may be attached either way MediaPipe allows: ``options { [mediapipe.X.ext]
  {...} }`` or ``node_options { [type.googleapis.com/mediapipe.X] {...} }``.

  A node that runs a subgraph (``calculator: "FaceDetectionShortRange"``) is
  expanded when the subgraph's config is known: given in ``subgraphs``, or a
  file next to ``path`` named after its type, MediaPipe style
  (``face_detection_short_range.pbtxt`` or ``.binarypb``, or the type name
  itself). The node's options become the subgraph's graph options, and
  ``option_value: "dest:src"`` fields are copied from them as in MediaPipe.
  :func:`jaxanchors.models.graph_path` extracts the graphs of the
  ``mediapipe`` wheel, the subgraphs it compiles in included. Graphs from
  before late 2020 (``TfLiteTensorsToDetectionsCalculator`` and
  ``ImageTransformationCalculator``) are not read.

  Args:
    path: the graph file.
    subgraphs: more graph files, each defining the subgraph named by its ``type``.
    name: the preset's name (default: the graph's ``type``, else the file's stem).

  Returns:
    A :class:`Preset` with ``model=None``.

  Raises:
    ImportError: protobuf is not installed (the ``graphs`` extra).
    OSError: a file cannot be read.
    ValueError: not a graph config; no (or more than one) SSD detector in it;
      an option that comes from a graph option (``option_value``) the graph
      does not set, named in the message; options the package does not support.
  """
  try:
    from jaxanchors import _graph  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise ImportError("presets.from_graph needs protobuf: pip install 'jaxanchors[graphs]'"
                      ) from e
  path = pathlib.Path(path)
  graph = _graph.load(path)
  known: dict[str, object] = {}
  for sub in subgraphs:
    config = _graph.load(sub)
    if not config.type:
      raise ValueError(f"{sub}: a subgraph config needs a type (the calculator name it defines)")
    known[config.type] = config
  pending = [graph, *known.values()]
  while pending:  # subgraphs found next to the file, and theirs
    for node in pending.pop().node:
      calc = node.calculator
      if calc in known or calc.endswith("Calculator") or calc == graph.type:
        continue
      found = _subgraph_file(path.parent, calc)
      if found is not None:
        known[calc] = _graph.load(found)
        pending.append(known[calc])
  parts = _graph.options_of(_graph.flatten(graph, known), str(path))
  return Preset(name=name or graph.type or path.stem,
                description=f"imported from MediaPipe graph {path.name}", **parts)
