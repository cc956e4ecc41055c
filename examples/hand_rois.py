"""Palm detection -> rotated hand ROIs -> the hand landmark model's input, in one jitted call.

Usage (after ``pip install -e '.[models,plot]'`` and scikit-image)::

  python examples/hand_rois.py                  # scikit-image's cameraman, his gloved hands
  python examples/hand_rois.py photo.jpg

Runs MediaPipe's palm detector translated to JAX (``ja.detect_images``), then
what ``hand_landmark_tracking_cpu`` does before its landmark model
(``roi.select_rois``: rect from the box, rotation from wrist to middle finger,
shifted, squared and scaled 2.6x, association; ``roi.crop``: the rotated
224x224 crops, bit for bit MediaPipe's for its rects). Writes
``<stem>_hand_rois.png``: the photo with each ROI (its top edge thick, the
side the fingers point to), and the crops beside it.

The hand landmark model runs in JAX too (``models.load_network("hand_landmark_full")``),
and :mod:`jaxanchors.landmarks` turns its tensors into landmarks in the image: the
README's "Two-stage pipelines" chains them; ``examples/face_mesh.py`` draws a
face mesh the same way.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import jax
import numpy as np

import jaxanchors as ja
from jaxanchors import presets, roi

PRESET = presets.get("palm")


@jax.jit
def hand_inputs(images):
  """uint8 ``[..., H, W, 3]`` -> (palms, rects ``[..., 2]``, crops ``[..., 2, 224, 224, 3]``)."""
  palms = ja.detect_images(images, PRESET, max_detections=4)
  rects = roi.select_rois(palms, PRESET.roi, image_size=images.shape[-3:-1])
  crops, _ = roi.crop(images, rects, PRESET.roi)
  return palms, rects, crops


def corners(rect: np.ndarray, height: int, width: int) -> np.ndarray:
  """The ROI's corners in pixels, in the crop's order: bottom-left, top-left, top-right, bottom-right."""
  xc, yc, w, h, r = rect
  cx, cy, w, h = xc * width, yc * height, w * width, h * height
  b, a = 0.5 * math.cos(r), 0.5 * math.sin(r)
  p0 = (cx - a * h - b * w, cy + b * h - a * w)
  p1 = (cx + a * h - b * w, cy - b * h - a * w)
  return np.array([p0, p1, (2 * cx - p0[0], 2 * cy - p0[1]), (2 * cx - p1[0], 2 * cy - p1[1])])


def draw(image: np.ndarray, rects: roi.Rects, crops: np.ndarray, path: str) -> None:
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  valid = np.asarray(rects.valid)
  rows = np.stack([np.asarray(a) for a in rects[:5]], -1)[valid]
  shown = np.asarray(crops)[valid]
  fig, axes = plt.subplots(1, 1 + max(len(rows), 1), figsize=(3 * (1 + max(len(rows), 1)), 3),
                           gridspec_kw={"width_ratios": [1.6] + [1] * max(len(rows), 1)})
  axes[0].imshow(image)
  colours = ["tab:orange", "tab:cyan", "tab:pink", "tab:lime"]
  for i, row in enumerate(rows):
    c = corners(row, *image.shape[:2])
    loop = np.vstack([c, c[:1]])
    axes[0].plot(loop[:, 0], loop[:, 1], color=colours[i % 4], lw=1.2)
    axes[0].plot(c[1:3, 0], c[1:3, 1], color=colours[i % 4], lw=3.5)  # the crop's top edge
    axes[1 + i].imshow(shown[i])
    axes[1 + i].set_title(f"ROI {i}: {math.degrees(row[4]):.0f} deg", fontsize=9,
                          color=colours[i % 4])
  for ax in axes:
    ax.set_axis_off()
  fig.tight_layout()
  fig.savefig(path, dpi=72)
  plt.close(fig)


def main(image: np.ndarray, stem: str) -> np.ndarray:
  palms, rects, crops = hand_inputs(image)
  draw(image, rects, crops, f"{stem}_hand_rois.png")
  return np.stack([np.asarray(a) for a in rects[:5]], -1)[np.asarray(rects.valid)]


if __name__ == "__main__":
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("image", nargs="?", help="a photo; default: scikit-image's cameraman")
  args = parser.parse_args()
  if args.image is None:
    import skimage.data
    grey = skimage.data.camera()[100:356, 120:376]
    photo, stem = np.ascontiguousarray(np.stack([grey] * 3, -1)), "camera_hands"
  else:
    from PIL import Image
    photo, stem = np.asarray(Image.open(args.image).convert("RGB")), Path(args.image).stem
  for rect in main(photo, stem):
    print("x_center y_center width height rotation:", np.round(rect, 4).tolist())
