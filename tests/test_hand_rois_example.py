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
  rects, crops, _ = scope["hand_inputs"](rd.photo(case))
  assert crops.shape == (2, 224, 224, 3)
  got = np.stack([np.asarray(a) for a in rects[:5]], -1)[np.asarray(rects.valid)]
  want = case.arrays["associated_rects"]
  np.testing.assert_allclose(got[:, :4], want[:, :4], rtol=0, atol=1e-6)
  np.testing.assert_allclose(got[:, 4], want[:, 4], rtol=0, atol=1e-5)
  # The second stage against MediaPipe's hand presence scores (below its 0.5 gate here:
  # no bare hand in this photo) and the landmarks it computes before that gate, in the
  # image. The crops come from our rects (MediaPipe's within 1e-6), where 0.3% of the crop
  # values differ by up to 5 grey levels from MediaPipe's crops; measured: presence within
  # 5.2e-4, landmarks within 3.1e-4 of the image size. Stage by stage, on MediaPipe's own
  # crops and tensors, test_landmarks checks the chain bit for bit.
  rects, presence, points = scope["hands"](rd.photo(case))
  assert points.shape == (2, 21, 3) and presence.shape == (2, 1)
  np.testing.assert_allclose(np.asarray(presence)[:, 0], case.landmark_tensors[1][:, 0],
                             rtol=0, atol=1e-3)
  np.testing.assert_allclose(np.asarray(points),
                             case.arrays["ungated_projected_landmarks"][..., :3], rtol=0,
                             atol=1e-3)
