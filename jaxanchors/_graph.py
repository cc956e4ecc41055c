"""MediaPipe graph configs (``CalculatorGraphConfig``) read with the ``protobuf`` package.

The few MediaPipe messages an SSD detector graph needs are described here, with
the field numbers of MediaPipe's ``.proto`` files, and built at import time into
a private descriptor pool: ``CalculatorGraphConfig`` and its ``Node``,
``CalculatorOptions`` (options attached as proto2 extensions, the legacy
``options { [mediapipe.X.ext] {...} }``) and the option messages of
``SsdAnchorsCalculator``, ``TensorsToDetectionsCalculator``,
``NonMaxSuppressionCalculator``, ``ImageToTensorCalculator`` and the face
detection subgraph's ``FaceDetectionOptions``. Fields this package does not
read are left out; protobuf keeps them as unknown fields (binary) or skips them
(text).

Subgraphs are expanded as MediaPipe does: a node whose ``calculator`` names a
known subgraph is replaced by the subgraph's nodes, the node's options (its
``node_options`` or extensions) become the subgraph's graph options, and each
``option_value: "dest:src"`` of a node copies the field ``src`` of its graph's
options into the field ``dest`` of its own options when ``src`` is set.
"""

from __future__ import annotations

import dataclasses
import pathlib
import re
from typing import Any, Iterable, Mapping

from google.protobuf import any_pb2
from google.protobuf import descriptor_pb2
from google.protobuf import descriptor_pool
from google.protobuf import json_format
from google.protobuf import message_factory
from google.protobuf import text_format

_F = descriptor_pb2.FieldDescriptorProto
_T = {"int32": _F.TYPE_INT32, "int64": _F.TYPE_INT64, "uint64": _F.TYPE_UINT64,
      "float": _F.TYPE_FLOAT, "bool": _F.TYPE_BOOL, "string": _F.TYPE_STRING}

# (message, [(field, number, type, repeated)]); a type starting with "." is a
# message or enum of this file. Numbers are those of MediaPipe's .proto files.
_MESSAGES: dict[str, list[tuple[str, int, str, bool]]] = {
    "CalculatorOptions": [("merge_fields", 1, "bool", False)],
    "CalculatorGraphConfig.Node": [
        ("name", 1, "string", False), ("calculator", 2, "string", False),
        ("input_stream", 3, "string", True), ("output_stream", 4, "string", True),
        ("input_side_packet", 5, "string", True), ("output_side_packet", 6, "string", True),
        ("options", 7, ".mediapipe.CalculatorOptions", False),
        ("node_options", 8, ".google.protobuf.Any", True),
        ("option_value", 17, "string", True)],
    "CalculatorGraphConfig": [
        ("node", 1, ".mediapipe.CalculatorGraphConfig.Node", True),
        ("input_stream", 10, "string", True), ("output_stream", 15, "string", True),
        ("input_side_packet", 16, "string", True), ("output_side_packet", 17, "string", True),
        ("package", 19, "string", False), ("type", 20, "string", False),
        ("graph_options", 1002, ".google.protobuf.Any", True)],
    "SsdAnchorsCalculatorOptions": [
        ("input_size_width", 1, "int32", False), ("input_size_height", 2, "int32", False),
        ("min_scale", 3, "float", False), ("max_scale", 4, "float", False),
        ("anchor_offset_x", 5, "float", False), ("anchor_offset_y", 6, "float", False),
        ("num_layers", 7, "int32", False), ("feature_map_width", 8, "int32", True),
        ("feature_map_height", 9, "int32", True), ("strides", 10, "int32", True),
        ("aspect_ratios", 11, "float", True), ("reduce_boxes_in_lowest_layer", 12, "bool", False),
        ("interpolated_scale_aspect_ratio", 13, "float", False),
        ("fixed_anchor_size", 14, "bool", False),
        ("multiscale_anchor_generation", 15, "bool", False), ("min_level", 16, "int32", False),
        ("max_level", 17, "int32", False), ("anchor_scale", 18, "float", False),
        ("scales_per_octave", 19, "int32", False), ("normalize_coordinates", 20, "bool", False),
        ("fixed_anchors", 21, ".mediapipe.Anchor", True)],
    "Anchor": [("x_center", 1, "float", False), ("y_center", 2, "float", False),
               ("h", 3, "float", False), ("w", 4, "float", False)],
    "TensorsToDetectionsCalculatorOptions": [
        ("num_classes", 1, "int32", False), ("num_boxes", 2, "int32", False),
        ("num_coords", 3, "int32", False), ("x_scale", 4, "float", False),
        ("y_scale", 5, "float", False), ("w_scale", 6, "float", False),
        ("h_scale", 7, "float", False), ("ignore_classes", 8, "int32", True),
        ("keypoint_coord_offset", 9, "int32", False), ("num_keypoints", 10, "int32", False),
        ("num_values_per_keypoint", 11, "int32", False), ("box_coord_offset", 12, "int32", False),
        ("apply_exponential_on_box_size", 13, "bool", False),
        ("reverse_output_order", 14, "bool", False), ("sigmoid_score", 15, "bool", False),
        ("score_clipping_thresh", 16, "float", False), ("flip_vertically", 18, "bool", False),
        ("min_score_thresh", 19, "float", False), ("max_results", 20, "int32", False),
        ("allow_classes", 21, "int32", True),
        ("tensor_mapping", 22, ".mediapipe.TensorsToDetectionsCalculatorOptions.TensorMapping",
         False),
        ("box_boundaries_indices", 23,
         ".mediapipe.TensorsToDetectionsCalculatorOptions.BoxBoundariesIndices", False),
        ("box_format", 24, ".mediapipe.TensorsToDetectionsCalculatorOptions.BoxFormat", False),
        ("max_classes_per_detection", 25, "int32", False)],
    "TensorsToDetectionsCalculatorOptions.TensorMapping": [
        ("detections_tensor_index", 1, "int32", False), ("classes_tensor_index", 2, "int32", False),
        ("scores_tensor_index", 3, "int32", False),
        ("num_detections_tensor_index", 4, "int32", False),
        ("anchors_tensor_index", 5, "int32", False)],
    "TensorsToDetectionsCalculatorOptions.BoxBoundariesIndices": [
        ("ymin", 1, "int32", False), ("xmin", 2, "int32", False), ("ymax", 3, "int32", False),
        ("xmax", 4, "int32", False)],
    "NonMaxSuppressionCalculatorOptions": [
        ("num_detection_streams", 1, "int32", False), ("max_num_detections", 2, "int32", False),
        ("min_suppression_threshold", 3, "float", False),
        ("overlap_type", 4, ".mediapipe.NonMaxSuppressionCalculatorOptions.OverlapType", False),
        ("return_empty_detections", 5, "bool", False), ("min_score_threshold", 6, "float", False),
        ("algorithm", 7, ".mediapipe.NonMaxSuppressionCalculatorOptions.NmsAlgorithm", False),
        ("multiclass_nms", 8, "bool", False)],
    "ImageToTensorCalculatorOptions": [
        ("output_tensor_width", 1, "int32", False), ("output_tensor_height", 2, "int32", False),
        ("keep_aspect_ratio", 3, "bool", False),
        ("output_tensor_float_range", 4,
         ".mediapipe.ImageToTensorCalculatorOptions.FloatRange", False),
        ("border_mode", 6, ".mediapipe.ImageToTensorCalculatorOptions.BorderMode", False),
        ("output_tensor_int_range", 7, ".mediapipe.ImageToTensorCalculatorOptions.IntRange",
         False),
        ("output_tensor_uint_range", 8, ".mediapipe.ImageToTensorCalculatorOptions.UIntRange",
         False)],
    "ImageToTensorCalculatorOptions.FloatRange": [("min", 1, "float", False),
                                                  ("max", 2, "float", False)],
    "ImageToTensorCalculatorOptions.IntRange": [("min", 1, "int64", False),
                                                ("max", 2, "int64", False)],
    "ImageToTensorCalculatorOptions.UIntRange": [("min", 1, "uint64", False),
                                                 ("max", 2, "uint64", False)],
    "FaceDetectionOptions": [
        ("model_path", 1, "string", False), ("tensor_width", 21, "int32", False),
        ("tensor_height", 22, "int32", False), ("num_layers", 23, "int32", False),
        ("strides", 24, "int32", True), ("interpolated_scale_aspect_ratio", 25, "float", False),
        ("num_boxes", 31, "int32", False), ("x_scale", 32, "float", False),
        ("y_scale", 33, "float", False), ("w_scale", 34, "float", False),
        ("h_scale", 35, "float", False), ("min_score_thresh", 36, "float", False)],
}

_ENUMS: dict[str, list[tuple[str, int]]] = {
    "TensorsToDetectionsCalculatorOptions.BoxFormat": [
        ("UNSPECIFIED", 0), ("YXHW", 1), ("XYWH", 2), ("XYXY", 3)],
    "NonMaxSuppressionCalculatorOptions.OverlapType": [
        ("UNSPECIFIED_OVERLAP_TYPE", 0), ("JACCARD", 1), ("MODIFIED_JACCARD", 2),
        ("INTERSECTION_OVER_UNION", 3)],
    "NonMaxSuppressionCalculatorOptions.NmsAlgorithm": [("DEFAULT", 0), ("WEIGHTED", 1)],
    "ImageToTensorCalculatorOptions.BorderMode": [
        ("BORDER_UNSPECIFIED", 0), ("BORDER_ZERO", 1), ("BORDER_REPLICATE", 2)],
}

# Option messages attached to CalculatorOptions as the extension ``ext``.
_EXTENSIONS = {
    "SsdAnchorsCalculatorOptions": 247258239,
    "TensorsToDetectionsCalculatorOptions": 335742639,
    "NonMaxSuppressionCalculatorOptions": 55383100,
    "ImageToTensorCalculatorOptions": 334361939,
    "FaceDetectionOptions": 374290926,
}

_PROTO2_PACKAGE = "mediapipe"


def _file() -> descriptor_pb2.FileDescriptorProto:
  f = descriptor_pb2.FileDescriptorProto(name="jaxanchors/mediapipe_graph.proto",
                                         package=_PROTO2_PACKAGE, syntax="proto2",
                                         dependency=["google/protobuf/any.proto"])
  protos: dict[str, Any] = {}
  for path in sorted(list(_MESSAGES) + list(_ENUMS), key=lambda p: p.count(".")):
    *outer, leaf = path.split(".")
    parent = protos[".".join(outer)] if outer else f
    if path in _ENUMS:
      e = parent.enum_type.add(name=leaf)
      for name, number in _ENUMS[path]:
        e.value.add(name=name, number=number)
      continue
    m = parent.nested_type.add(name=leaf) if outer else f.message_type.add(name=leaf)
    protos[path] = m
  for path, fields in _MESSAGES.items():
    for name, number, kind, repeated in fields:
      field = protos[path].field.add(
          name=name, number=number,
          label=_F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL)
      if kind.startswith("."):
        field.type_name = kind
        field.type = (_F.TYPE_ENUM if kind[len(".mediapipe."):] in _ENUMS else _F.TYPE_MESSAGE)
      else:
        field.type = _T[kind]
  protos["CalculatorOptions"].extension_range.add(start=20000, end=536870912)
  for name, number in _EXTENSIONS.items():
    protos[name].extension.add(name="ext", number=number, label=_F.LABEL_OPTIONAL,
                               type=_F.TYPE_MESSAGE, type_name=f".mediapipe.{name}",
                               extendee=".mediapipe.CalculatorOptions")
  return f


_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(descriptor_pb2.FileDescriptorProto.FromString(any_pb2.DESCRIPTOR.serialized_pb))
_POOL.Add(_file())


def message_class(name: str) -> type:
  """The generated class of ``mediapipe.<name>`` in this module's pool."""
  return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"mediapipe.{name}"))


GraphConfig = message_class("CalculatorGraphConfig")

# The calculators of an SSD detector graph, one of each, and their options. (Graphs from
# before late 2020, with TfLiteTensorsToDetections and ImageTransformation, are not read.)
SSD_CALCULATORS = {
    "SsdAnchorsCalculator": "SsdAnchorsCalculatorOptions",
    "TensorsToDetectionsCalculator": "TensorsToDetectionsCalculatorOptions",
    "NonMaxSuppressionCalculator": "NonMaxSuppressionCalculatorOptions",
    "ImageToTensorCalculator": "ImageToTensorCalculatorOptions",
}
MAPPING_CALCULATORS = {"DetectionProjectionCalculator": "projection",
                       "DetectionLetterboxRemovalCalculator": "letterbox_removal"}

_ANY_URL = re.compile(r"\[\s*type\.googleapis\.com/([A-Za-z_][\w.]*)\s*\]")
_placeholders: set[str] = set()


def _add_placeholders(text: str) -> None:
  """Declares an empty message for each ``Any`` type named in ``text`` that the pool lacks,
  so text parsing can skip their contents as unknown fields."""
  for full in sorted(set(_ANY_URL.findall(text))):
    try:
      _POOL.FindMessageTypeByName(full)
      continue
    except KeyError:
      pass
    package, _, leaf = full.rpartition(".")
    f = descriptor_pb2.FileDescriptorProto(name=f"jaxanchors/placeholder/{full}.proto",
                                           package=package, syntax="proto2")
    f.message_type.add(name=leaf)
    _POOL.Add(f)
    _placeholders.add(full)


def parse_text(text: str) -> Any:
  """A ``CalculatorGraphConfig`` from protobuf text format."""
  _add_placeholders(text)
  graph = GraphConfig()
  text_format.Parse(text, graph, allow_unknown_extension=True, allow_unknown_field=True,
                    descriptor_pool=_POOL)
  return graph


def parse_binary(data: bytes) -> Any:
  """A ``CalculatorGraphConfig`` from its binary encoding (``.binarypb``)."""
  return GraphConfig.FromString(data)


_TEXT_SUFFIXES = (".pbtxt", ".txt", ".textproto", ".prototxt")
_BINARY_SUFFIXES = (".binarypb", ".pb", ".binpb")


def load(path: str | pathlib.Path) -> Any:
  """Reads a graph file: text for ``.pbtxt`` (and ``.txt``, ``.textproto``), binary for
  ``.binarypb`` (and ``.pb``); other names are read as text when they decode as UTF-8.

  Raises ``OSError`` when the file cannot be read and ``ValueError`` naming the
  file when it is not a graph config.
  """
  path = pathlib.Path(path)
  data = path.read_bytes()
  suffix = path.suffix.lower()
  try:
    if suffix in _BINARY_SUFFIXES:
      return parse_binary(data)
    try:
      text = data.decode("utf-8")
    except UnicodeDecodeError:
      if suffix in _TEXT_SUFFIXES:
        raise ValueError("not UTF-8 text") from None
      return parse_binary(data)
    return parse_text(text)
  except Exception as e:  # noqa: BLE001 - protobuf's ParseError / DecodeError
    kind = "binary" if suffix in _BINARY_SUFFIXES else "text"
    raise ValueError(f"{path}: not a MediaPipe graph config ({kind} format): {e}") from None


# -- options of a node ------------------------------------------------------------

def _unpack(any_msg: Any) -> Any | None:
  """The message inside an ``Any``, or None for a type this module does not describe."""
  full = any_msg.type_url.rpartition("/")[2]
  if full in _placeholders:
    return None
  try:
    cls = message_factory.GetMessageClass(_POOL.FindMessageTypeByName(full))
  except KeyError:
    return None
  msg = cls()
  any_msg.Unpack(msg)
  return msg


def node_options(node: Any) -> dict[str, Any]:
  """Short type name -> options message, from the node's extensions and ``node_options``."""
  out: dict[str, Any] = {}
  for name in _EXTENSIONS:
    ext = _POOL.FindExtensionByName(f"mediapipe.{name}.ext")
    if node.HasField("options") and node.options.HasExtension(ext):
      out[name] = node.options.Extensions[ext]
  for packed in node.node_options:
    msg = _unpack(packed)
    if msg is not None:
      out.setdefault(msg.DESCRIPTOR.name, message_class(msg.DESCRIPTOR.name)()).MergeFrom(msg)
  return out


def graph_options(graph: Any) -> dict[str, Any]:
  """Short type name -> the graph's own option defaults (``graph_options``)."""
  out: dict[str, Any] = {}
  for packed in graph.graph_options:
    msg = _unpack(packed)
    if msg is not None:
      out[msg.DESCRIPTOR.name] = msg
  return out


def _field_path(text: str) -> list[str]:
  """MediaPipe's option path: an ``OPTIONS``/``options`` prefix dropped, split at ``/``."""
  for prefix in ("OPTIONS", "options"):
    if text.startswith(prefix):
      text = text[len(prefix):]
      break
  text = text.lstrip("/")
  return [p for p in text.split("/") if p]


def _repeated(field: Any) -> bool:
  flag = getattr(field, "is_repeated", None)  # protobuf >= 5.29; ``label`` before
  return bool(flag) if flag is not None else field.label == field.LABEL_REPEATED


def _get(msg: Any, path: list[str]) -> tuple[bool, Any]:
  """(is set, value) of a field path inside ``msg``."""
  for i, name in enumerate(path):
    field = msg.DESCRIPTOR.fields_by_name.get(name)
    if field is None:
      return False, None
    if _repeated(field):
      value = getattr(msg, name)
      return (len(value) > 0 and i == len(path) - 1), value
    if not msg.HasField(name):
      return False, None
    msg = getattr(msg, name)
  return True, msg


def _set(msg: Any, path: list[str], value: Any) -> None:
  *outer, leaf = path
  for name in outer:
    msg = getattr(msg, name)
  field = msg.DESCRIPTOR.fields_by_name[leaf]
  if _repeated(field):
    del getattr(msg, leaf)[:]
    getattr(msg, leaf).extend(value)
  elif field.message_type is not None:
    getattr(msg, leaf).CopyFrom(value)
  else:
    setattr(msg, leaf, value)


@dataclasses.dataclass
class Resolved:
  """A calculator of the flattened graph: its options and what could not be resolved."""

  calculator: str
  options: dict[str, Any]
  unresolved: dict[str, str]  # dest field -> the option_value that named it
  where: str  # the (sub)graph types it sits in, outermost first


def _apply_option_values(node: Any, opts: dict[str, Any], graph_opts: dict[str, Any],
                         ) -> dict[str, str]:
  """Copies each set ``src`` of ``option_value: "dest:src"`` from ``graph_opts`` into ``opts``."""
  unresolved: dict[str, str] = {}
  for spec in node.option_value:
    dest, _, src = spec.partition(":")
    dpath, spath = _field_path(dest), _field_path(src)
    sources = list(graph_opts.values())
    if not dpath and not spath:  # the whole graph options into the node's options
      for msg in sources:
        opts.setdefault(msg.DESCRIPTOR.name, message_class(msg.DESCRIPTOR.name)()).MergeFrom(msg)
      continue
    found = [v for ok, v in (_get(m, spath) for m in sources) if ok]
    targets = [m for m in opts.values() if dpath and dpath[0] in m.DESCRIPTOR.fields_by_name]
    if not found or not targets:
      unresolved[dpath[-1] if dpath else "*"] = spec
      continue
    _set(targets[0], dpath, found[0])
  return unresolved


def flatten(graph: Any, subgraphs: Mapping[str, Any], *, options: dict[str, Any] | None = None,
            where: str = "", depth: int = 0) -> list[Resolved]:
  """The calculators of ``graph`` with subgraph nodes expanded (``subgraphs``: type -> config)."""
  if depth > 16:
    raise ValueError(f"subgraphs nest more than 16 deep at {where!r}")
  gopts = graph_options(graph)
  for name, msg in (options or {}).items():
    gopts.setdefault(name, message_class(name)()).MergeFrom(msg)
  where = f"{where}/{graph.type or 'graph'}" if where else (graph.type or "graph")
  out: list[Resolved] = []
  for node in graph.node:
    opts = node_options(node)
    unresolved = _apply_option_values(node, opts, gopts)
    if node.calculator in subgraphs:
      out += flatten(subgraphs[node.calculator], subgraphs, options=opts, where=where,
                     depth=depth + 1)
    else:
      out.append(Resolved(node.calculator, opts, unresolved, where))
  return out


def as_dict(msg: Any) -> dict[str, Any]:
  """The fields set in ``msg`` keyed by proto field name, floats as their shortest float32 text."""
  return json_format.MessageToDict(msg, preserving_proto_field_name=True,
                                   use_integers_for_enums=False)


# -- graphs embedded in a binary (subgraphs registered inside MediaPipe's library) --

def _varint(data: bytes, i: int) -> tuple[int, int]:
  shift = value = 0
  while True:
    if i >= len(data) or shift > 63:
      raise ValueError("truncated varint")
    b = data[i]
    value |= (b & 0x7F) << shift
    i += 1
    if not b & 0x80:
      return value, i
    shift += 7


def _top_level_fields(data: bytes, start: int, end: int) -> list[int] | None:
  """Field numbers of the length-delimited top-level fields in ``data[start:end]``, or None."""
  numbers, i = [], start
  try:
    while i < end:
      key, i = _varint(data, i)
      if key & 7 == 2:
        size, i = _varint(data, i)
        i += size
      elif key & 7 == 0:
        _, i = _varint(data, i)
      else:
        return None
      numbers.append(key >> 3)
  except ValueError:
    return None
  return numbers if i == end else None


def embedded_graphs(data: bytes, types: Iterable[str], *, window: int = 1 << 16) -> dict[str, bytes]:
  """Serialized ``CalculatorGraphConfig``s of the given ``type``s found inside ``data``.

  MediaPipe compiles its registered subgraphs into its library as serialized
  configs. Each one ends with its ``type`` field (number 20) and optional
  ``graph_options`` (1002); its start is the earliest position from which the
  bytes parse as top-level fields in increasing field order (as protobuf
  writes them) whose nodes all name a calculator.
  """
  out: dict[str, bytes] = {}
  for name in types:
    raw = name.encode()
    marker = b"\xa2\x01" + bytes([len(raw)]) + raw
    for m in re.finditer(re.escape(marker), data):
      end = m.end()
      while data[end:end + 2] in (b"\xd2\x3e", b"\xca\x3e"):  # graph_options / options
        size, j = _varint(data, end + 2)
        end = j + size
      best = None
      for start in range(m.start() - 1, max(0, m.start() - window) - 1, -1):
        if data[start] != 0x0A:
          continue
        nums = _top_level_fields(data, start, end)
        if nums is None or nums != sorted(nums) or nums.count(20) != 1:
          continue
        try:
          graph = parse_binary(data[start:end])
        except Exception:  # noqa: BLE001 - not a config from here
          continue
        if graph.type == name and all(n.calculator for n in graph.node):
          best = start
      if best is not None:
        out[name] = data[best:end]
        break
  return out


# -- from calculators to the package's options ---------------------------------------

def _one(calcs: list[Resolved], calculator: str, source: str) -> Resolved | None:
  found = [c for c in calcs if c.calculator == calculator]
  if len(found) > 1:
    raise ValueError(f"{source}: {len(found)} {calculator} nodes (in "
                     f"{', '.join(sorted({c.where for c in found}))}); one SSD detector expected")
  return found[0] if found else None


def _fields(c: Resolved) -> dict[str, Any]:
  """The node's options for its calculator as a dict; unresolved option values it needs fail."""
  msg = c.options.get(SSD_CALCULATORS[c.calculator])
  out = as_dict(msg) if msg is not None else {}
  known = message_class(SSD_CALCULATORS[c.calculator]).DESCRIPTOR.fields_by_name
  missing = {dest: spec for dest, spec in c.unresolved.items() if dest in known and dest not in out}
  if missing:
    dest, spec = next(iter(missing.items()))
    src = spec.partition(":")[2]
    raise ValueError(
        f"{c.calculator} (in {c.where}) takes {', '.join(sorted(missing))} from its "
        f"graph's options (option_value {spec!r}), and {src!r} is not set there: import the "
        f"graph that uses {c.where.rsplit('/', 1)[-1]} as a subgraph and sets it")
  return out


def options_of(calcs: list[Resolved], source: str) -> dict[str, Any]:
  """``anchors``, ``decoder``, ``nms``, ``preprocessing``, ``mapping`` of a flattened graph."""
  from jaxanchors.anchors import AnchorOptions
  from jaxanchors.decoding import DecoderOptions
  from jaxanchors.letterbox import ImageToTensorOptions
  from jaxanchors.nms import NmsOptions

  nodes = {name: _one(calcs, name, source) for name in SSD_CALCULATORS}
  absent = [name for name, c in nodes.items() if c is None]
  if absent:
    others = sorted({c.calculator for c in calcs if not c.calculator.endswith("Calculator")})
    hint = (f"; these nodes look like subgraphs whose definitions were not found: "
            f"{', '.join(others)} (pass their graph files as subgraphs=...)") if others else ""
    raise ValueError(f"{source}: no {', '.join(absent)} node{hint}")
  out: dict[str, Any] = {}
  try:
    anchors = _fields(nodes["SsdAnchorsCalculator"])
    anchors["fixed_anchors"] = tuple(
        tuple(a.get(k, 0.0) for k in ("x_center", "y_center", "w", "h"))
        for a in anchors.get("fixed_anchors", ()))
    out["anchors"] = AnchorOptions.from_dict(anchors)

    decoder = _fields(nodes["TensorsToDetectionsCalculator"])
    if "tensor_mapping" in decoder:
      raise ValueError("TensorsToDetectionsCalculator.tensor_mapping (a model with built-in "
                       "post-processing) is not supported here; see decode_postprocessed")
    if "box_boundaries_indices" in decoder:
      b = decoder["box_boundaries_indices"]
      decoder["box_boundaries_indices"] = tuple(
          b.get(k, d) for k, d in (("ymin", 0), ("xmin", 1), ("ymax", 2), ("xmax", 3)))
    out["decoder"] = DecoderOptions.from_dict(decoder)

    nms = _fields(nodes["NonMaxSuppressionCalculator"])
    if nms.pop("multiclass_nms", False):
      raise ValueError("NonMaxSuppressionCalculator.multiclass_nms is not supported "
                       "(this package's MediaPipe NMS is class-agnostic)")
    out["nms"] = NmsOptions.from_dict(nms)

    pre = _fields(nodes["ImageToTensorCalculator"])
    if "output_tensor_float_range" not in pre:
      raise ValueError("ImageToTensorCalculator needs output_tensor_float_range (integer "
                       "tensor ranges are not supported)")
    r = pre["output_tensor_float_range"]
    out["preprocessing"] = ImageToTensorOptions(
        output_tensor_width=pre.get("output_tensor_width", 0),
        output_tensor_height=pre.get("output_tensor_height", 0),
        keep_aspect_ratio=pre.get("keep_aspect_ratio", False),
        output_tensor_float_range=(r.get("min", 0.0), r.get("max", 0.0)),
        border_mode=pre.get("border_mode", "BORDER_UNSPECIFIED").removeprefix("BORDER_"))
  except (TypeError, ValueError) as e:
    raise ValueError(f"{source}: {e}") from None
  mappings = {MAPPING_CALCULATORS[c.calculator] for c in calcs
              if c.calculator in MAPPING_CALCULATORS}
  if len(mappings) > 1:
    raise ValueError(f"{source}: both DetectionProjection and DetectionLetterboxRemoval nodes")
  if mappings:
    out["mapping"] = mappings.pop()
  return out


def snake_case(type_name: str) -> str:
  """``FaceDetectionShortRange`` -> ``face_detection_short_range`` (MediaPipe's file names)."""
  return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", type_name).lower()
