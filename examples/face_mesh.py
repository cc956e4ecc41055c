"""Face detection -> face ROI -> MediaPipe's face mesh model -> 468 landmarks, in one jitted call.

Usage (after ``pip install -e '.[models,plot]'`` and scikit-image)::

  python examples/face_mesh.py                  # scikit-image's astronaut
  python examples/face_mesh.py photo.jpg

What ``face_landmark_front_cpu`` does for one frame, every step in JAX: the
short-range face detector (``ja.detect_images``), the face's rotated ROI and
its 192x192 crop (``roi.select_rois``, ``roi.crop``), the face mesh network read
from MediaPipe's ``face_landmark.tflite`` (``models.load_network``), its
tensor decoded (``landmarks.decode_landmarks``) and projected back to the photo
(``roi.project_landmarks``). Writes ``<stem>_face_mesh.png``: the photo with the
ROI and the landmarks, and the face up close, landmarks coloured by depth.

MediaPipe keeps a face's landmarks only when the mesh model's face score is
above 0.5; the score is printed beside each face.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import jax
import numpy as np

import jaxanchors as ja
from jaxanchors import landmarks, models, presets, roi

PRESET = presets.get("face_short_range")
MESH = models.load_network("face_landmark")


@jax.jit
def face_mesh(images):
  """uint8 ``[..., H, W, 3]`` -> (rects ``[..., 1]``, landmarks ``[..., 1, 468, 3]`` as
  fractions of the photo (``z`` scaled as ``x``), face scores ``[..., 1]``)."""
  faces = ja.detect_images(images, PRESET, max_detections=1)
  rects = roi.select_rois(faces, PRESET.roi, image_size=images.shape[-3:-1])
  crops, _ = roi.crop(images, rects, PRESET.roi)
  mesh, face_flag = MESH(crops)                       # [..., 1, 1, 1, 1404], [..., 1, 1, 1, 1]
  raw = mesh.reshape(mesh.shape[:-3] + (-1,))
  found = landmarks.decode_landmarks(raw, landmarks.GRAPH_OPTIONS["face_landmark"])
  # The face crop stretches (no letterbox), so the projection follows the decoding.
  points = roi.project_landmarks(found.points, rects)
  return rects, points, jax.nn.sigmoid(face_flag.reshape(face_flag.shape[:-3]))


def draw(image: np.ndarray, rects: roi.Rects, points: np.ndarray, scores: np.ndarray,
         path: str) -> None:
  """The photo with each face's ROI, and beside it the first face's mesh up close."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  height, width = image.shape[:2]
  faces = np.flatnonzero(np.asarray(rects.valid))
  fig, axes = plt.subplots(1, 2, figsize=(9, 4.5))
  for ax in axes:
    ax.imshow(image)
    ax.set_axis_off()
  for i in faces:
    xc, yc, w, h, r = (float(np.asarray(a)[i]) for a in rects[:5])
    cx, cy, w, h = xc * width, yc * height, w * width, h * height
    b, a = 0.5 * math.cos(r), 0.5 * math.sin(r)
    p0 = (cx - a * h - b * w, cy + b * h - a * w)
    p1 = (cx + a * h - b * w, cy - b * h - a * w)
    box = np.array([p0, p1, (2 * cx - p0[0], 2 * cy - p0[1]), (2 * cx - p1[0], 2 * cy - p1[1]), p0])
    x, y = points[i, :, 0] * width, points[i, :, 1] * height
    for ax, size in ((axes[0], 1), (axes[1], 6)):
      ax.plot(box[:, 0], box[:, 1], color="tab:orange", lw=1.2)
      ax.scatter(x, y, c=-points[i, :, 2], s=size, cmap="viridis")
    axes[0].set_title(f"face score {float(scores[i]):.2f}", fontsize=10)
  if len(faces):
    x, y = points[faces[0], :, 0] * width, points[faces[0], :, 1] * height
    pad = 0.15 * max(np.ptp(x), np.ptp(y))
    axes[1].set_xlim(x.min() - pad, x.max() + pad)
    axes[1].set_ylim(y.max() + pad, y.min() - pad)
    axes[1].set_title("468 landmarks, coloured by depth", fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=60)
  plt.close(fig)


def main(image: np.ndarray, stem: str) -> tuple[roi.Rects, np.ndarray, np.ndarray]:
  """Runs :func:`face_mesh` on one photo, writes ``<stem>_face_mesh.png``, returns its outputs."""
  rects, points, scores = face_mesh(image)
  points, scores = np.asarray(points), np.asarray(scores)
  draw(image, rects, points, scores, f"{stem}_face_mesh.png")
  for i in np.flatnonzero(np.asarray(rects.valid)):
    print(f"face {i}: score {scores[i]:.3f}, landmarks x {points[i, :, 0].min():.3f}.."
          f"{points[i, :, 0].max():.3f}, y {points[i, :, 1].min():.3f}..{points[i, :, 1].max():.3f}")
  return rects, points, scores


if __name__ == "__main__":
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("photo", nargs="?", help="a photo (default: scikit-image's astronaut)")
  args = parser.parse_args()
  if args.photo:
    photo, name = ja.read_image(args.photo), Path(args.photo).stem
  else:
    from skimage import data  # pylint: disable=import-outside-toplevel
    photo, name = data.astronaut(), "astronaut"
  main(photo, name)
