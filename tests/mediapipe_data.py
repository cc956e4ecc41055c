"""MediaPipe's own results on real photos (``tests/data/mediapipe``, see tools/README.md)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest

DATA = Path(__file__).resolve().parent / "data" / "mediapipe"
CASES = sorted(p.stem for p in DATA.glob("*.json"))


class Case(NamedTuple):
  name: str
  meta: dict[str, Any]
  arrays: dict[str, np.ndarray]

  @property
  def model(self) -> str:
    return self.meta["model"]


def read(folder: Path, name: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
  """A recorded case's metadata (``name.json``) and arrays (``name.npz``) in ``folder``."""
  meta = json.loads((folder / f"{name}.json").read_text())
  with np.load(folder / f"{name}.npz") as npz:
    arrays = {k: npz[k] for k in npz.files}
  return meta, arrays


def load(name: str) -> Case:
  return Case(name, *read(DATA, name))


def photo(case: Case) -> np.ndarray:
  """Rebuilds the uint8 RGB photo from scikit-image and checks its hash."""
  data = pytest.importorskip("skimage.data", reason="scikit-image rebuilds the test photos")
  parts = []
  for part in case.meta["photo"]["parts"]:
    img = getattr(data, part["skimage_function"].rsplit(".", 1)[1])()
    if img.ndim == 2:
      img = np.stack([img] * 3, axis=-1)
    crop = part["crop_y0_y1_x0_x1"]
    if crop:
      img = img[crop[0]:crop[1], crop[2]:crop[3]]
    parts.append(img[..., :3])
  img = np.ascontiguousarray(np.concatenate(parts, axis=1))
  digest = hashlib.sha256(img.tobytes()).hexdigest()
  if digest != case.meta["photo"]["sha256_of_uint8_rgb_pixels"]:
    pytest.skip(f"scikit-image's {case.meta['photo']['name']} photo differs from the one "
                "MediaPipe saw (another scikit-image version?)")
  return img
