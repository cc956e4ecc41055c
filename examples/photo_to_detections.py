"""Photo to detections with a real MediaPipe model: Detector, draw, JSON.

Usage (after ``pip install -e '.[models,plot,examples]'``)::

  python examples/photo_to_detections.py                       # scikit-image's astronaut
  python examples/photo_to_detections.py photo.jpg --preset pose
  python examples/photo_to_detections.py photo.jpg --runtime litert

Writes ``<stem>_<preset>.png`` (boxes, keypoints and their names drawn) and
``<stem>_<preset>.json`` (the detections in pixels, in the package's one JSON
form: ``ImageDetections.to_dict``) in the current directory. The model is read
from the ``mediapipe`` 0.10.21 wheel on PyPI (downloaded once, cached; see
:mod:`jaxanchors.models`). A photo given by path needs only Pillow (the
``plot`` extra brings it); scikit-image is for the default photo.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

import jaxanchors as ja
from jaxanchors import plot, presets


def main(image: np.ndarray, preset_name: str, stem: str, runtime: str = "jax",
         source: str | None = None) -> ja.ImageDetections:
  detector = ja.Detector.from_preset(preset_name, max_detections=10, runtime=runtime)
  found = detector.detect(image)
  if source is not None:
    found = dataclasses.replace(found, source=source)
  plot.draw_detections(image, found, f"{stem}_{preset_name}.png", keypoint_names=True)
  Path(f"{stem}_{preset_name}.json").write_text(found.to_json(indent=1) + "\n")
  return found


if __name__ == "__main__":
  with_models = [n for n in presets.names() if presets.get(n).model]
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("image", nargs="?", help="a photo; default: scikit-image's astronaut")
  parser.add_argument("--preset", default="face_short_range", choices=with_models)
  parser.add_argument("--runtime", default="jax", choices=("jax", "litert"))
  args = parser.parse_args()
  if args.image is None:
    import skimage.data
    photo, stem = skimage.data.astronaut(), "astronaut"
  else:
    try:
      photo, stem = ja.read_image(args.image), Path(args.image).stem
    except (OSError, ValueError) as e:
      parser.exit(2, f"{parser.prog}: error: cannot read {args.image!r}: {e}\n")
  result = main(photo, args.preset, stem, args.runtime, source=args.image)
  for box, score in zip(result.boxes.tolist(), result.scores.tolist()):
    print(f"{score:.4f}", [round(x, 1) for x in box])
  print(f"wrote {stem}_{args.preset}.png and {stem}_{args.preset}.json", file=sys.stderr)
