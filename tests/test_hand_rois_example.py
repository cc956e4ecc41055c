"""The two-stage example end to end: JAX's palm detector, ROIs and crops against MediaPipe's run."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest

import mediapipe_roi_data as rd

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "hand_rois.py"

for _name in ("tflite", "matplotlib"):
  if importlib.util.find_spec(_name) is None:
    pytest.skip(f"{_name} is not installed: the example needs the models and plot extras",
                allow_module_level=True)


def test_example_rects_equal_mediapipe_hand_rois(tmp_path, monkeypatch):
  spec = importlib.util.spec_from_file_location("hand_rois", EXAMPLE)
  example = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(example)
  case = rd.load("hand_camera_hands_rot0")
  monkeypatch.chdir(tmp_path)
  got = example.main(rd.photo(case), "camera")  # network, rects and crops in one jitted call
  want = case.arrays["associated_rects"]
  assert got.shape == want.shape == (2, 5)
  np.testing.assert_allclose(got[:, :4], want[:, :4], rtol=0, atol=1e-6)
  np.testing.assert_allclose(got[:, 4], want[:, 4], rtol=0, atol=1e-5)
  assert (tmp_path / "camera_hand_rois.png").stat().st_size > 10_000


def test_readme_two_stage_block_runs():
  blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
  code = next(b for b in blocks if "select_rois" in b)
  scope = {}
  exec(code, scope)  # noqa: S102 - our own README
  case = rd.load("hand_camera_hands_rot0")
  rects, crops = scope["hand_inputs"](rd.photo(case))
  assert crops.shape == (2, 224, 224, 3)
  got = np.stack([np.asarray(a) for a in rects[:5]], -1)[np.asarray(rects.valid)]
  want = case.arrays["associated_rects"]
  np.testing.assert_allclose(got[:, :4], want[:, :4], rtol=0, atol=1e-6)
  np.testing.assert_allclose(got[:, 4], want[:, 4], rtol=0, atol=1e-5)
  # The second stage: the hand landmark network on those crops gives LiteRT's outputs
  # (within 1e-5 of each output's scale).
  litert = pytest.importorskip("ai_edge_litert.interpreter", reason="LiteRT is the oracle")
  from jaxanchors import models  # pylint: disable=import-outside-toplevel
  rects, landmarks, presence = scope["hands"](rd.photo(case))
  assert landmarks.shape == (2, 63) and presence.shape == (2, 1)
  it = litert.Interpreter(model_path=str(models.model_path("hand_landmark_full")))
  it.allocate_tensors()
  outputs = it.get_output_details()
  for i in range(2):
    it.set_tensor(it.get_input_details()[0]["index"], np.asarray(crops[i:i + 1]))
    it.invoke()
    for ours, detail in ((landmarks, outputs[0]), (presence, outputs[1])):
      want_i = it.get_tensor(detail["index"])[0]
      scale = np.abs(want_i).max()
      assert np.abs(np.asarray(ours[i]) - want_i).max() <= 1e-5 * scale, (i, detail["name"])
