"""The command line and the README's code."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _util import run_python

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
    (["detect", "photo.jpg", "--preset", "pose", "--max-detections", "1e11"],
     "invalid int value: '1e11'"),
    (["anchors", "--preset", "pose", "--no-such-flag"], "unrecognized arguments"),
])
def test_errors_are_one_line_with_status_2(args, message):
  code, out, err = run(*args)
  assert code == 2
  assert err.count("\n") == 1 and message in err and err.startswith("jaxanchors: error:")


def test_version():
  code, out, _ = run("--version")
  assert code == 0 and out == f"jaxanchors {ja.__version__}\n"


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
  assert "XNNPACK" not in err and "Traceback" not in err
  doc = json.loads(out_json.read_text())
  assert (doc["width"], doc["height"]) == (512, 512) and len(doc["detections"]) == 1
  face = doc["detections"][0]
  # MediaPipe's own detection on this photo (tests/data/mediapipe), in pixels.
  mp_box = np.array([0.34680745, 0.16185777, 0.18621889, 0.18621920]) * 512
  np.testing.assert_allclose(face["box"], [mp_box[0], mp_box[1], mp_box[0] + mp_box[2],
                                           mp_box[1] + mp_box[3]], atol=1e-3)
  assert [p["name"] for p in face["keypoints"]][:2] == ["right_eye", "left_eye"]
  assert abs(face["score"] - 0.92173868) < 1e-6
  assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# -- detect: in this process, every mistake refused before a model runs -------------------


@pytest.fixture
def no_model(monkeypatch):
  """Fails the test if a model is fetched or run."""
  from jaxanchors import detector

  def refuse(*args, **kwargs):
    raise AssertionError("a model ran before the arguments were checked")
  monkeypatch.setattr(detector.Detector, "prepare", refuse)
  monkeypatch.setattr(detector.Detector, "_run", refuse)


def main(*args: str) -> tuple[int, str, str]:
  """``cli.main`` in this process (shares compiled programs between tests)."""
  import contextlib
  import io
  out, err = io.StringIO(), io.StringIO()
  with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    try:
      code = cli.main(list(args))
    except SystemExit as e:  # argparse
      code = e.code
  return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
  """A folder with two small face pictures (128 x 128), and one more beside it."""
  pil = pytest.importorskip("PIL.Image", reason="reading images needs Pillow")
  data = pytest.importorskip("skimage.data", reason="scikit-image provides the photo")
  root = tmp_path_factory.mktemp("pictures")
  face = data.astronaut()[60:188, 160:288]
  (root / "folder").mkdir()
  pil.fromarray(face).save(root / "folder" / "1.png")
  pil.fromarray(np.ascontiguousarray(face[:, ::-1])).save(root / "folder" / "2.png")
  pil.fromarray(face).save(root / "face.png")
  (root / "empty").mkdir()
  (root / "notes.txt").write_text("not a picture")
  return root, face


def _mistakes(root):
  face = str(root / "face.png")
  both = [face, str(root / "folder")]
  return [
      ([face, "--max-detections", "0"], "--max-detections must be between 1 and 896"),
      ([face, "--max-detections", "-1"], "--max-detections must be between 1 and 896"),
      ([face, "--max-detections", "100000"], "--max-detections must be between 1 and 896"),
      ([face, "--max-detections", "1e11"], "invalid int value"),
      ([face, "--batch-size", "0"], "--batch-size must be at least 1"),
      ([face, "--min-score", "1.5"], "--min-score must lie in 0..1"),
      ([face, "--min-score", "x"], "invalid float value"),
      ([face, "-o", str(root / "faces.bmpx")], "cannot tell the picture format"),
      ([face, "-o", str(root / "missing" / "x.png")], "no folder"),
      ([face, "--json", str(root / "missing" / "x.json")], "no folder"),
      ([face, "--json", str(root / "folder")], "it is a folder"),
      ([face, "--format", "coco"], "--format coco writes the file given with --json"),
      (both + ["-o", str(root / "faces.png")], "-o must be an existing folder"),
      ([str(root / "absent.png")], "no such file or folder"),
      ([str(root / "empty"), str(root / "absent.png")], "holds no images"),  # folders first
      ([str(root / "*.gif")], "matches no image"),
      ([str(root / "notes.txt")], "cannot tell what"),
      ([face, "--runtime", "tflite"], "invalid choice: 'tflite'"),
      ([face, "--preset", "ssdlite_coco"], "has no shipped model"),
  ]


def test_every_detect_mistake_is_one_line_before_any_model(pictures, no_model):
  root, _ = pictures
  for args, message in _mistakes(root):
    if "--preset" not in args:
      args = args + ["--preset", "face_short_range"]
    json_out = root / "out.json"
    code, out, err = main("detect", *args, "--json", str(json_out)) if (
        "--json" not in args and "--format" not in args) else main("detect", *args)
    assert code == 2, (args, err)
    assert err.count("\n") == 1 and err.startswith("jaxanchors: error:"), (args, err)
    assert message in err, (args, err)
    assert "Traceback" not in err and out == ""
    assert sorted(p.name for p in root.iterdir()) == [
        "empty", "face.png", "folder", "notes.txt"], args  # no output, partial or whole


def test_video_without_pyav_is_a_one_line_error(pictures, no_model, monkeypatch, tmp_path):
  import builtins
  real_import = builtins.__import__

  def no_av(name, *args, **kwargs):
    if name == "av":
      raise ImportError("No module named 'av'")
    return real_import(name, *args, **kwargs)
  monkeypatch.setattr(builtins, "__import__", no_av)
  (tmp_path / "clip.mp4").write_bytes(b"x")
  code, _, err = main("detect", str(tmp_path / "clip.mp4"), "--preset", "pose")
  assert code == 2 and "pip install 'jaxanchors[video]'" in err and err.count("\n") == 1


def _litert(*args):
  return main("detect", *args, "--preset", "face_short_range", "--runtime", "litert", "-q")


def test_a_picture_that_fails_to_decode_leaves_no_output(pictures, tmp_path):
  root, _ = pictures
  good = (root / "face.png").read_bytes()
  (tmp_path / "broken.png").write_bytes(good[:len(good) // 2])  # the header reads, the data ends
  out = tmp_path / "out.jsonl"
  from jaxanchors import images
  assert images.probe_image(tmp_path / "broken.png") == (128, 128)  # passes the checks
  # one picture per call: the first one's line is written before the second fails
  code, _, err = _litert(str(root / "face.png"), str(tmp_path / "broken.png"), "--json", str(out),
                         "--batch-size", "1")
  assert code == 2 and err.count("\n") == 1, err
  assert err.startswith(f"jaxanchors: error: cannot read {str(tmp_path / 'broken.png')!r}")
  assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.png"]


def _detector():
  from jaxanchors.detector import Detector
  return Detector.from_preset("face_short_range", runtime="litert")


def test_folder_glob_and_file_to_json_lines(pictures, tmp_path, capfd):
  root, face = pictures
  out = tmp_path / "faces.jsonl"
  drawn = tmp_path / "drawn"
  drawn.mkdir()
  code, stdout, _ = main("detect", str(root / "folder"), str(root / "f*.png"), "--preset",
                         "face_short_range", "--runtime", "litert", "--json", str(out),
                         "-o", str(drawn), "--batch-size", "2")
  assert code == 0
  assert "XNNPACK" not in capfd.readouterr().err            # LiteRT's banner is left out
  lines = out.read_text().splitlines()
  docs = [json.loads(line) for line in lines]
  assert [d["image"] for d in docs] == [str(root / "folder" / "1.png"),
                                        str(root / "folder" / "2.png"), str(root / "face.png")]
  want = _detector().detect_batch([face, face[:, ::-1], face])
  assert [d["detections"] for d in docs] == [w.to_dict()["detections"] for w in want]
  assert sorted(p.name for p in drawn.iterdir()) == ["1.png", "2.png", "face.png"]
  assert "3 detection(s) in 3 picture(s)" in stdout


def test_coco_results_load_in_pycocotools(pictures, tmp_path):
  coco_module = pytest.importorskip("pycocotools.coco", reason="pycocotools (test extra)")
  root, face = pictures
  out = tmp_path / "results.json"
  assert _litert(str(root / "folder"), "--json", str(out), "--format", "coco")[0] == 0
  results = json.loads(out.read_text())
  gt = coco_module.COCO()
  gt.dataset = {"images": [{"id": 1}, {"id": 2}], "annotations": [],
                "categories": [{"id": 0, "name": "face"}]}
  gt.createIndex()
  res = gt.loadRes(str(out))                                 # numeric names: their ids
  assert sorted(res.getImgIds()) == [1, 2] and len(res.getAnnIds()) == 2
  want = _detector().detect(face)
  (first,) = [r for r in results if r["image_id"] == 1]
  x0, y0, x1, y1 = want.boxes[0].tolist()
  assert first["bbox"] == [x0, y0, x1 - x0, y1 - y0] and first["score"] == want.scores[0]


def test_16_bit_palette_and_exif_files_give_the_8_bit_detections(pictures, tmp_path):
  from PIL import Image
  root, face = pictures
  Image.fromarray(face.mean(axis=-1).round().astype(np.uint16) * 257).save(tmp_path / "g16.png")
  palette = Image.fromarray(face).convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
  palette.save(tmp_path / "p.png")
  exif = Image.Exif()
  exif[0x0112] = 6                                           # stored rotated: reads upright
  Image.fromarray(np.ascontiguousarray(np.rot90(face))).save(tmp_path / "r.png", exif=exif)
  out = tmp_path / "out.jsonl"
  names = ["g16.png", "p.png", "r.png"]
  assert _litert(*(str(tmp_path / n) for n in names), "--json", str(out))[0] == 0
  docs = {json.loads(line)["image"]: json.loads(line) for line in out.read_text().splitlines()}
  gray = np.repeat(face.mean(axis=-1).round().astype(np.uint8)[..., None], 3, axis=-1)
  expected = [gray, np.asarray(palette.convert("RGB")), face]
  want = _detector().detect_batch(expected)
  for name, w in zip(names, want):
    got = docs[str(tmp_path / name)]
    assert got["detections"] == w.to_dict()["detections"] and len(w) == 1, name


def test_progress_bar_on_more_than_a_few_pictures(pictures, tmp_path):
  pytest.importorskip("tqdm", reason="the progress bar is tqdm (the 'cli' extra)")
  root, _ = pictures
  face = str(root / "face.png")
  code, _, err = main("detect", *[face] * 5, "--preset", "face_short_range", "--runtime",
                      "litert", "--batch-size", "1")
  assert code == 0 and "0/5 [" in err                      # tqdm, cleared at the end
  code, _, err = main("detect", *[face] * 4, "--preset", "face_short_range", "--runtime",
                      "litert", "--batch-size", "1")
  assert code == 0 and "/4" not in err                      # a few pictures: no bar
  code, out, err = main("detect", *[face] * 5, "--preset", "face_short_range", "--runtime",
                        "litert", "--batch-size", "1", "-q")
  assert code == 0 and err == "" and out == ""


def test_min_score_reaches_the_detector(pictures, tmp_path):
  root, face = pictures
  score = float(_detector().detect(face).scores[0])
  for threshold, count in ((score + 1e-3, 0), (score - 1e-3, 1)):
    out = tmp_path / "o.jsonl"
    assert _litert(str(root / "face.png"), "--min-score", str(threshold), "--json", str(out))[0] == 0
    assert len(json.loads(out.read_text())["detections"]) == count


def test_readme_code_runs(tmp_path, monkeypatch):
  blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
  # The fourth (two-stage pipelines) runs in test_hand_rois_example.py, the fifth (a global
  # JAX setting) in test_readme_dispatch_setting_runs.
  assert len(blocks) == 5
  monkeypatch.chdir(tmp_path)
  quick_start = {}
  exec(blocks[2], quick_start)  # noqa: S102 - our own README
  out = quick_start["postprocess"](np.zeros((2, 896, 16), np.float32),
                                   np.full((2, 896, 1), -5.0, np.float32))
  assert out.boxes.shape == (2, 10, 4) and not bool(out.valid.any())
  for module in ("tflite", "matplotlib", "skimage"):
    pytest.importorskip(module, reason="the photo example needs the models, plot and "
                        "examples extras")
  photo = {}
  exec(blocks[0], photo)  # noqa: S102
  faces = photo["faces"]
  assert len(faces) == 1 and (tmp_path / "faces.png").exists()
  assert faces.keypoint_names[:2] == ("right_eye", "left_eye")
  inside = {}
  exec(blocks[1], inside)  # noqa: S102
  images = np.stack([photo["image"]] * 2)
  found = inside["find_faces"](inside["net"].params, images)
  np.testing.assert_array_equal(found.valid.sum(axis=-1), [1, 1])
  np.testing.assert_allclose(np.asarray(found.boxes[0, 0]) * 512, faces.boxes[0], rtol=0,
                             atol=1e-3)


def test_readme_dispatch_setting_runs():
  """The Speed section's setting, in a fresh process (it is global)."""
  block = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)[4]
  assert "jax_cpu_enable_async_dispatch" in block
  out = run_python(block + (
      "assert jax.config.values['jax_cpu_enable_async_dispatch'] is False\n"
      "print(int(jax.jit(lambda x: x.sum())(jax.numpy.ones(3))))\n"))
  assert out.split() == ["3"]


def test_readme_json_blocks():
  """The detections example has the schema ImageDetections writes; the options example
  is the short-range face detector's anchors."""
  from jaxanchors.detector import ImageDetections
  detections, options = [json.loads(b) for b in
                         re.findall(r"```json\n(.*?)```", README.read_text(), re.S)]
  back = ImageDetections.from_dict(detections)
  assert back.to_dict()["detections"][0].keys() == detections["detections"][0].keys()
  assert back.to_dict().keys() == detections.keys()
  assert ja.AnchorOptions.from_dict(options) == presets.get("face_short_range").anchors
