"""plot: pictures as arrays, files only when asked, a frame of a batch, anchor grids."""

from __future__ import annotations

import numpy as np
import pytest

import jaxanchors as ja
from jaxanchors import presets
from jaxanchors.detector import ImageDetections

pytest.importorskip("matplotlib", reason="pictures need matplotlib (the 'plot' extra)")
from jaxanchors import plot  # noqa: E402


def _image(h=60, w=80):
  rng = np.random.default_rng(1)
  return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def _detections(valid):
  boxes = np.array([[0.25, 0.25, 0.75, 0.75], [0.1, 0.1, 0.2, 0.2]], np.float32)
  kps = np.array([[[0.5, 0.5]], [[0.15, 0.15]]], np.float32)
  return ja.Detections(boxes, kps, np.array([0.9, 0.8], np.float32), np.zeros(2, np.int32),
                       np.array(valid))


def test_draw_returns_the_image_where_nothing_is_drawn(tmp_path):
  image = _image()
  nothing = plot.draw_detections(image, _detections([False, False]))
  assert nothing.dtype == np.uint8 and nothing.shape == image.shape
  np.testing.assert_array_equal(nothing, image)
  assert list(tmp_path.iterdir()) == []
  drawn = plot.draw_detections(image, _detections([True, False]), tmp_path / "d.png")
  changed = np.any(drawn != image, axis=-1)
  ys, xs = np.nonzero(changed)
  # the box (20..60 x 15..45 pixels) and its caption above it; the invalid slot is not drawn
  assert 15 <= xs.min() and xs.max() <= 65 and ys.max() <= 48
  assert not changed[5:13, 7:17].any()
  assert (tmp_path / "d.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_draw_a_frame_of_a_batch_and_pixels_with_names():
  image = _image()
  batch = ja.Detections(*(np.stack([a, a]) for a in _detections([True, False])))
  with pytest.raises(ValueError, match="index="):
    plot.draw_detections(image, batch)
  one = plot.draw_detections(image, _detections([True, False]))
  np.testing.assert_array_equal(plot.draw_detections(np.stack([image, image]), batch, index=1),
                                one)
  in_pixels = ImageDetections(
      boxes=np.array([[20, 15, 60, 45]], np.float32), keypoints=np.array([[[40, 30]]], np.float32),
      scores=np.array([0.9], np.float32), classes=np.zeros(1, np.int32), width=80, height=60,
      preset="x", keypoint_names=("nose_tip",))
  np.testing.assert_array_equal(plot.draw_detections(image, in_pixels), one)
  named = plot.draw_detections(image, in_pixels, keypoint_names=True)
  assert np.any(named != one)          # the name is written
  assert np.any(plot.draw_detections(image, in_pixels, keypoint_names=["a long name"]) != named)


def test_anchor_grid_wraps_at_three_panels(tmp_path):
  six = plot.draw_anchors(presets.get("ssdlite_coco"), size=200)     # 6 layer groups
  assert six.shape == (2 * 240, 3 * 200, 3)
  two = plot.draw_anchors(presets.get("face_short_range"), tmp_path / "a.png", size=200)
  assert two.shape == (240, 400, 3) and (tmp_path / "a.png").exists()
