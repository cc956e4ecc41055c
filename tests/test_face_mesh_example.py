"""The face mesh example: MediaPipe's face mesh on a recorded photo, from the photo alone."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import mediapipe_roi_data as rd

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "face_mesh.py"

for _name in ("tflite", "matplotlib"):
  if importlib.util.find_spec(_name) is None:
    pytest.skip(f"{_name} is not installed: the example needs the models and plot extras",
                allow_module_level=True)


def test_face_mesh_from_the_photo_equals_mediapipe(tmp_path, monkeypatch):
  """Photo -> detector -> ROI -> crop -> mesh network -> landmarks in the photo, against
  MediaPipe's face_landmark_front_cpu on the astronaut turned by 30 degrees. Our crop comes
  from our rect (MediaPipe's within 1e-6), so a few of its pixels may differ from
  MediaPipe's crop; measured: landmarks within 1.3e-6 of the photo's size."""
  spec = importlib.util.spec_from_file_location("face_mesh", EXAMPLE)
  example = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(example)
  case = rd.load("face_astronaut_rot30")
  monkeypatch.chdir(tmp_path)
  rects, points, scores = example.main(rd.photo(case), "astronaut")
  assert (tmp_path / "astronaut_face_mesh.png").stat().st_size > 10_000
  assert np.asarray(rects.valid).tolist() == [True] and points.shape == (1, 468, 3)
  want = case.arrays["ungated_projected_landmarks"][:1, :, :3]
  np.testing.assert_allclose(points, want, rtol=0, atol=5e-6)
  flag = case.landmark_tensors[1][0, 0]
  np.testing.assert_allclose(scores[0], 1 / (1 + np.exp(-np.float64(flag))), rtol=0, atol=1e-6)
