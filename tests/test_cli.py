"""The command line and the README's code."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import jaxanchors as ja
from jaxanchors import cli, presets

README = Path(__file__).resolve().parents[1] / "README.md"


def run(*args: str) -> tuple[int, str, str]:
  result = subprocess.run([sys.executable, "-m", "jaxanchors", *args], capture_output=True,
                          text=True, timeout=300)
  return result.returncode, result.stdout, result.stderr


@pytest.mark.parametrize("suffix", [".npy", ".csv", ".json", ".txt"])
def test_export_formats_read_back(tmp_path, suffix, capsys):
  path = tmp_path / f"anchors{suffix}"
  assert cli.main(["anchors", "--preset", "ssdlite_coco", "-o", str(path)]) == 0
  expected = ja.anchors_numpy(presets.get("ssdlite_coco").anchors)
  if suffix == ".npy":
    got = np.load(path)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)
  elif suffix == ".csv":
    assert path.read_text().splitlines()[0] == "x_center,y_center,w,h"
    np.testing.assert_array_equal(np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float32),
                                  expected)
  elif suffix == ".json":
    doc = json.loads(path.read_text())
    assert ja.AnchorOptions.from_dict(doc["options"]) == presets.get("ssdlite_coco").anchors
    np.testing.assert_array_equal(np.array(doc["anchors"], np.float32), expected)
  else:  # MediaPipe's golden format: %g, six significant digits
    first = path.read_text().splitlines()[0]
    assert first == "0.025 0.025 0.1 0.1"
    np.testing.assert_allclose(np.loadtxt(path), expected, rtol=5e-6, atol=0)
  out = capsys.readouterr().out
  assert "2034 anchors" in out and "20x20" in out


def test_options_file_and_summary(tmp_path, capsys):
  options = tmp_path / "options.json"
  options.write_text(presets.get("palm").anchors.to_json())
  assert cli.main(["anchors", "--options", str(options)]) == 0
  out = capsys.readouterr().out
  assert "2016 anchors" in out
  assert re.search(r"0\s+8\s+24x24\s+2\s+1152", out)
  assert re.search(r"1,2,3\s+16\s+12x12\s+6\s+864", out)


def test_list_presets(capsys):
  assert cli.main(["anchors", "--list-presets"]) == 0
  out = capsys.readouterr().out.splitlines()
  assert [line.split()[0] for line in out] == list(presets.names())


@pytest.mark.parametrize("args,message", [
    (["anchors", "--preset", "nope"], "unknown preset 'nope'"),
    (["anchors", "--options", "/nonexistent/options.json"], "cannot read options file"),
    (["anchors", "--preset", "pose", "-o", "/nonexistent/dir/a.npy"], "cannot write"),
    (["anchors", "--preset", "pose", "-o", "anchors.bin"], "cannot tell the format"),
    (["anchors"], "give --preset"),
    (["detect", "photo.jpg", "--preset", "ssdlite_coco"], "has no shipped model"),
    (["detect", "photo.jpg", "--preset", "pose", "--max-detections", "0"],
     "--max-detections must be at least 1"),
])
def test_errors_are_one_line_with_status_2(args, message):
  code, out, err = run(*args)
  assert code == 2
  assert err.count("\n") == 1 and message in err and err.startswith("jaxanchors: error:")


def test_bad_options_file(tmp_path):
  bad = tmp_path / "bad.json"
  bad.write_text('{"num_layers": 2, "strides": [8]}')
  code, _, err = run("anchors", "--options", str(bad))
  assert code == 2 and "strides has 1 entries" in err and err.count("\n") == 1
  bad.write_text("[1, 2]")
  code, _, err = run("anchors", "--options", str(bad))
  assert code == 2 and "object" in err


def test_anchor_picture(tmp_path):
  pytest.importorskip("matplotlib", reason="pictures need matplotlib (the 'plot' extra)")
  path = tmp_path / "anchors.png"
  assert cli.main(["anchors", "--preset", "face_short_range", "--plot", str(path), "-q"]) == 0
  assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("runtime", ["jax", "litert"])
def test_detect_command_on_a_photo(tmp_path, runtime):
  pytest.importorskip("ai_edge_litert", reason="needs the 'models' extra")
  pytest.importorskip("tflite", reason="needs the 'models' extra")
  pytest.importorskip("matplotlib", reason="needs matplotlib (the 'plot' extra)")
  data = pytest.importorskip("skimage.data", reason="scikit-image provides the photo")
  from PIL import Image
  photo = tmp_path / "astronaut.png"
  Image.fromarray(data.astronaut()).save(photo)
  out_png, out_json = tmp_path / "faces.png", tmp_path / "faces.json"
  code, out, err = run("detect", str(photo), "--preset", "face_short_range", "-o", str(out_png),
                       "--json", str(out_json), "--runtime", runtime)
  assert code == 0, err
  doc = json.loads(out_json.read_text())
  assert (doc["width"], doc["height"]) == (512, 512) and len(doc["detections"]) == 1
  face = doc["detections"][0]
  # MediaPipe's own detection on this photo (tests/data/mediapipe), in pixels.
  mp_box = np.array([0.34680745, 0.16185777, 0.18621889, 0.18621920]) * 512
  np.testing.assert_allclose(face["box"], [mp_box[0], mp_box[1], mp_box[0] + mp_box[2],
                                           mp_box[1] + mp_box[3]], atol=1e-3)
  assert len(face["keypoints"]) == 6 and abs(face["score"] - 0.92173868) < 1e-6
  assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_readme_code_runs(tmp_path, monkeypatch):
  blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
  assert len(blocks) == 4  # the fourth (two-stage pipelines) runs in test_hand_rois_example.py
  monkeypatch.chdir(tmp_path)
  quick_start = {}
  exec(blocks[2], quick_start)  # noqa: S102 - our own README
  out = quick_start["postprocess"](np.zeros((2, 896, 16), np.float32),
                                   np.full((2, 896, 1), -5.0, np.float32))
  assert out.boxes.shape == (2, 10, 4) and not bool(out.valid.any())
  for module in ("tflite", "matplotlib", "skimage"):
    pytest.importorskip(module, reason="the photo example needs the models and plot extras")
  photo = {}
  exec(blocks[0], photo)  # noqa: S102
  assert int(photo["faces"].valid.sum()) == 1 and (tmp_path / "faces.png").exists()
  inside = {}
  exec(blocks[1], inside)  # noqa: S102
  images = np.stack([photo["image"]] * 2)
  found = inside["find_faces"](inside["net"].params, images)
  np.testing.assert_array_equal(found.valid.sum(axis=-1), [1, 1])
  np.testing.assert_allclose(found.boxes[0], photo["faces"].boxes, rtol=0, atol=1e-6)
