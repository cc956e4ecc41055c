"""The face fine-tuning example, shortened: the loss falls and the written file runs in LiteRT."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "finetune_face_detector.py"

for _name in ("optax", "tflite", "skimage", "ai_edge_litert"):
  if importlib.util.find_spec(_name) is None:
    pytest.skip(f"{_name} is not installed: the fine-tuning example needs the train and "
                "models extras (pip install 'jaxanchors[train,models,test]')",
                allow_module_level=True)


def _load_example():
  spec = importlib.util.spec_from_file_location("finetune_face_detector", EXAMPLE)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_rotation_of_points_matches_rot90():
  """Keypoints rotate with the pixels: a marked pixel lands where rotate_points says."""
  example = _load_example()
  image = np.zeros((5, 5))
  image[1, 3] = 1  # row 1, column 3: centre (3.5, 1.5) / 5
  for k in range(4):
    row, col = np.argwhere(np.rot90(image, k))[0]
    u, v = example.rotate_points(np.array([3.5, 1.5]) / 5, k)
    np.testing.assert_allclose([u * 5, v * 5], [col + 0.5, row + 0.5], atol=1e-12)


def test_faces_are_split_by_image():
  example = _load_example()
  train, held = example.load_faces()
  assert len(train) + len(held) == 100
  flat = {f.tobytes() for f in train}
  assert not any(f.tobytes() in flat for f in held)


def test_shortened_run_lowers_the_loss_and_writes_a_file_litert_runs(tmp_path):
  example = _load_example()
  out = tmp_path / "face_rotated.tflite"
  result = example.main(steps=24, train_images=8, eval_images=4, batch=8, litert_frames=8,
                        out=str(out), verbose=False)
  curve = [loss for _, loss in result["loss_curve"]]
  assert curve[-1] < 0.8 * curve[0], curve
  assert out.is_file() and result["path"] == str(out)
  # LiteRT on the written file: the JAX network's raw outputs on its float16 weights
  # within 1e-5 of scale, and the same detections.
  assert result["litert_error"] < 1e-5, result
  assert result["same_count"] and result["detection_error"] < 1e-4, result
