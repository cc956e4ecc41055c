"""MediaPipe's two-stage graphs on real photos (``tests/data/mediapipe_roi``, see tools/README.md).

Each case holds what the hand, pose or face-mesh graph computed between its
detector and its landmark model: the detections it kept, the rect of each
(``raw_rects`` before and ``rects`` after ``RectTransformationCalculator``),
the rects after association, and the landmark model's input tensors (stored as
grey levels: the tensor is ``f32(level * f32(1/255))``, which the recording
tool checked to be exact).

It also holds the landmark stage, per ROI (``R`` = ROIs, in ``crop_levels``
order; the JSON's ``landmarks`` section says where each key comes from):

* ``landmark_tensors_<k>``: ``[R, size]`` float32, output ``k`` of the
  landmark .tflite as MediaPipe's InferenceCalculator gave it, flattened
  (shapes in ``meta["landmarks"]["model"]["outputs"]``; pose outputs 2 and 3,
  segmentation and heatmap, are not stored);
* landmark lists as ``[R, L, 5]`` float32, fields ``x, y, z, visibility,
  presence``, NaN where the proto leaves a field unset
  (``meta["landmarks"]["fields_set"]``): ``norm_landmarks``
  (TensorsToLandmarks, crop-normalised), ``refined_landmarks`` (pose:
  RefineLandmarksFromHeatmap), ``letterbox_removed_landmarks`` (hand, pose),
  ``projected_landmarks`` (LandmarkProjection, image-normalised),
  ``world_landmarks`` and ``projected_world_landmarks`` (hand, pose), and the
  pose's ``*_auxiliary_landmarks``;
* ``landmarks_present`` ``[R]`` bool: the presence gate passed (score >
  threshold). Rows of the keys above are NaN where it did not;
  ``ungated_<key>`` holds the same calculators' results (copied into the graph
  with the same options, fed before the gate) for every ROI, equal to
  ``<key>`` where present;
* ``output_landmarks`` / ``output_world_landmarks``: the graph's outputs
  (``multi_hand_landmarks``, ``pose_landmarks``, ``multi_face_landmarks``, ...),
  one row per present ROI.

The options of these calculators (TensorsToLandmarks, LandmarkLetterboxRemoval,
LandmarkProjection, ...) are in ``meta["options"]``; the calculators from
TensorsToLandmarks to each output in ``meta["landmarks"]["outputs"]``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest

import mediapipe_data

DATA = Path(__file__).resolve().parent / "data" / "mediapipe_roi"
CASES = sorted(p.stem for p in DATA.glob("*.json"))


class Case(NamedTuple):
  name: str
  meta: dict[str, Any]
  arrays: dict[str, np.ndarray]

  @property
  def crops(self) -> np.ndarray:
    """The recorded landmark-model input tensors, ``[R, h, w, 3]`` float32."""
    return self.arrays["crop_levels"].astype(np.float32) * np.float32(1.0 / 255.0)

  @property
  def landmark_tensors(self) -> dict[int, np.ndarray]:
    """The landmark model's stored outputs, ``{k: [R, size_k]}`` float32 (output k flattened)."""
    prefix = "landmark_tensors_"
    found = {int(k[len(prefix):]): v for k, v in self.arrays.items() if k.startswith(prefix)}
    return dict(sorted(found.items()))


def load(name: str) -> Case:
  return Case(name, *mediapipe_data.read(DATA, name))


def rotate(img: np.ndarray, degrees: int) -> np.ndarray:
  """The recording tool's ``rotate_photo``: counter-clockwise, nearest pixel, black outside."""
  if degrees == 0:
    return img
  if degrees == 90:
    return np.ascontiguousarray(np.rot90(img))
  c, s = {30: (np.sqrt(3.0) / 2, 0.5), 135: (-np.sqrt(0.5), np.sqrt(0.5))}[degrees]
  h, w = img.shape[:2]
  out_w = int(np.ceil(abs(w * c) + abs(h * s)))
  out_h = int(np.ceil(abs(w * s) + abs(h * c)))
  u = np.arange(out_w, dtype=np.float64)[None, :] + 0.5 - out_w / 2
  v = np.arange(out_h, dtype=np.float64)[:, None] + 0.5 - out_h / 2
  x = np.floor(c * u - s * v + w / 2).astype(np.int64)
  y = np.floor(s * u + c * v + h / 2).astype(np.int64)
  inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
  out = img[np.clip(y, 0, h - 1), np.clip(x, 0, w - 1)]
  out[~inside] = 0
  return np.ascontiguousarray(out)


def photo(case: Case) -> np.ndarray:
  """The uint8 RGB image MediaPipe saw (rebuilt, turned, hash-checked)."""
  meta = case.meta["photo"]
  base = mediapipe_data.photo(mediapipe_data.Case(meta["name"], {"photo": meta}, {}))
  img = rotate(base, meta["rotate_degrees"])
  if hashlib.sha256(img.tobytes()).hexdigest() != meta["rotated_sha256_of_uint8_rgb_pixels"]:
    pytest.skip(f"the turned {meta['name']} photo differs from the one MediaPipe saw")
  return img
