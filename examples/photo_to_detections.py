"""Photo to detections with a real MediaPipe model: letterbox, LiteRT, detect, draw.

Usage (after ``pip install -e '.[models,plot]'``)::

  python examples/photo_to_detections.py                       # scikit-image's astronaut
  python examples/photo_to_detections.py photo.jpg --preset pose

Writes ``<stem>_<preset>.png`` (boxes and keypoints drawn) and
``<stem>_<preset>.json`` (detections in image pixels) next to the current
directory. The model is read from the ``mediapipe`` 0.10.21 wheel on PyPI
(downloaded once, cached; see :mod:`jaxanchors.models`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax
import numpy as np

import jaxanchors as ja
from jaxanchors import models, plot, presets


def main(image: np.ndarray, preset_name: str, stem: str) -> list[dict]:
  preset = presets.get(preset_name)
  tensor, transform = ja.letterbox(image, preset.preprocessing)            # [h, w, 3] float32
  raw_boxes, raw_scores = models.TFLiteModel.from_name(preset.model)(np.asarray(tensor)[None])
  found = ja.detect(raw_boxes[0], raw_scores[0], preset, max_detections=10, transform=transform)
  plot.draw_detections(image, found, f"{stem}_{preset_name}.png")

  pixels = jax.tree.map(np.asarray, ja.to_pixels(found, width=image.shape[1],
                                                 height=image.shape[0]))
  records = [dict(score=round(float(s), 4), box_xyxy=np.round(b.astype(float), 1).tolist(),
                  keypoints=np.round(k.astype(float), 1).tolist())
             for b, k, s, ok in zip(pixels.boxes, pixels.keypoints, pixels.scores, pixels.valid)
             if ok]
  Path(f"{stem}_{preset_name}.json").write_text(json.dumps(records, indent=1) + "\n")
  return records


if __name__ == "__main__":
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("image", nargs="?", help="a photo; default: scikit-image's astronaut")
  parser.add_argument("--preset", default="face_short_range")
  args = parser.parse_args()
  if args.image is None:
    import skimage.data
    photo, stem = skimage.data.astronaut(), "astronaut"
  else:
    from PIL import Image
    photo, stem = np.asarray(Image.open(args.image).convert("RGB")), Path(args.image).stem
  for record in main(photo, args.preset, stem):
    print(record["score"], record["box_xyxy"])
