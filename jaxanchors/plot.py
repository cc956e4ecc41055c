"""Pictures of anchors and detections (needs ``matplotlib``: ``pip install 'jaxanchors[plot]'``).

Both functions draw with matplotlib's Agg canvas (no window, no global
backend switch) and return the picture as an RGB ``uint8`` array ``[H, W,
3]``; given a ``path`` they also write it (format from the extension, e.g.
``.png``, ``.jpg``, ``.pdf``, ``.svg``). :func:`draw_detections` returns an
array of the image's own size, the image's pixels unchanged where nothing is
drawn.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from jaxanchors import _validate as v
from jaxanchors.anchors import AnchorOptions, anchor_layers, anchors_numpy
from jaxanchors.detections import Detections
from jaxanchors.images import as_rgb

__all__ = ["draw_anchors", "draw_detections"]

_PANELS_PER_ROW = 3


def _figure(width_px: int, height_px: int) -> Any:
  """A Figure of exactly ``width_px`` x ``height_px`` pixels on an Agg canvas."""
  try:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
  except ImportError:
    raise ImportError("pictures need matplotlib: pip install 'jaxanchors[plot]'") from None
  fig = Figure(figsize=(width_px / 100, height_px / 100), dpi=100)
  FigureCanvasAgg(fig)
  return fig


def _finish(fig: Any, path: str | Path | None) -> np.ndarray:
  fig.canvas.draw()
  picture = np.array(fig.canvas.buffer_rgba())[..., :3]
  if path is not None:
    fig.savefig(path)
  return picture


def _one_frame(image: Any, detections: Any, index: int | None) -> tuple[np.ndarray, Any]:
  """The image and one frame of detections, selecting ``index`` from a batch."""
  image = np.asarray(image)
  batched = np.asarray(detections.scores).ndim > 1 if isinstance(detections, Detections) else False
  if batched:
    if index is None:
      raise ValueError(f"detections hold a batch (scores {np.shape(detections.scores)}): "
                       "pass index= to draw one frame")
    detections = Detections(*(np.asarray(x)[index] for x in detections))
    if np.asarray(detections.scores).ndim != 1:
      raise ValueError("index= must select one frame: detections have more than one batch "
                       f"dimension (scores {np.shape(detections.scores)})")
    if image.ndim == 4:
      image = image[index]
  elif index is not None and image.ndim == 4:
    image = image[index]
  return as_rgb(image), detections


def _display(image: np.ndarray) -> np.ndarray:
  """RGB uint8 as drawn: float images (0..255) rounded and clipped."""
  if image.dtype == np.uint8:
    return image
  return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def draw_detections(image: Any, detections: Any, path: str | Path | None = None, *,
                    labels: Mapping[int, str] | Sequence[str] | None = None,
                    keypoint_names: bool | Sequence[str] = False,
                    index: int | None = None) -> np.ndarray:
  """Draws valid boxes (with score) and keypoints over an image; returns the picture.

  Args:
    image: ``[H, W]`` or ``[H, W, C]`` picture (anything
      :func:`jaxanchors.images.as_rgb` takes), or ``[B, H, W, C]`` with ``index``.
    detections: :class:`~jaxanchors.detections.Detections` in normalised image
      coordinates (as :func:`~jaxanchors.pipeline.detect` returns with a
      transform), one frame or a batch with ``index``; or a
      :class:`jaxanchors.detector.ImageDetections` (pixels).
    path: also write the picture there (format from the extension).
    labels: class id to name, a mapping or a sequence (default: the
      :class:`~jaxanchors.detector.ImageDetections`' own labels, if any).
    keypoint_names: ``True`` writes each keypoint's name (those the
      :class:`~jaxanchors.detector.ImageDetections` carry, else its index); a
      sequence gives the names.
    index: the frame to draw when ``detections`` (and ``image``) hold a batch.

  Returns:
    ``[H, W, 3]`` uint8 RGB, the image's size.

  Raises:
    ValueError: a batch without ``index``; an image that is not a picture.
    ImportError: matplotlib is not installed.
  """
  image, det = _one_frame(image, detections, index)
  h, w = image.shape[:2]
  names: Sequence[str] = ()
  if isinstance(det, Detections):
    ok = np.asarray(det.valid, bool)
    boxes = np.asarray(det.boxes, np.float64)[ok] * [w, h, w, h]
    kps = np.asarray(det.keypoints, np.float64)[ok] * [w, h]
    scores, classes = np.asarray(det.scores)[ok], np.asarray(det.classes)[ok]
  else:  # ImageDetections: pixels already
    boxes, kps = np.asarray(det.boxes, np.float64), np.asarray(det.keypoints, np.float64)
    scores, classes = np.asarray(det.scores), np.asarray(det.classes)
    names = det.keypoint_names
    if labels is None and det.labels:
      labels = det.labels
  if keypoint_names is True:
    names = names or [str(i) for i in range(kps.shape[1] if kps.ndim == 3 else 0)]
  elif keypoint_names is False or keypoint_names is None:
    names = ()
  else:
    names = list(keypoint_names)
  fig = _figure(w, h)
  ax = fig.add_axes((0, 0, 1, 1))
  ax.imshow(_display(image), interpolation="none")
  ax.set_axis_off()
  from matplotlib.patches import Rectangle  # pylint: disable=import-outside-toplevel
  for box, points, score, cls in zip(boxes, kps, scores, classes):
    x0, y0, x1, y1 = box
    ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, lw=2, color="lime"))
    name = ""
    if labels is not None:
      try:
        name = f"{labels[int(cls)]} "
      except (KeyError, IndexError):
        name = f"{int(cls)} "
    ax.text(x0, y0 - 3, f"{name}{score:.2f}", color="black", fontsize=9,
            bbox=dict(facecolor="lime", edgecolor="none", pad=1))
    if len(points):
      ax.scatter(points[:, 0], points[:, 1], s=18, c="red", edgecolors="white", linewidths=0.5)
      for (x, y), label in zip(points, names):
        ax.annotate(label, (x, y), xytext=(4, 2), textcoords="offset points", fontsize=7,
                    color="white", bbox=dict(facecolor="black", alpha=0.5, edgecolor="none",
                                             pad=0.5))
  ax.set_xlim(-0.5, w - 0.5)
  ax.set_ylim(h - 0.5, -0.5)
  return _finish(fig, path)


def draw_anchors(options: AnchorOptions, path: str | Path | None = None, *,
                 size: int = 400) -> np.ndarray:
  """Draws an anchor table; returns the picture.

  One panel per layer group with its centres and the anchor shapes of the
  middle cell, three panels to a row (a six-group table is a 2 x 3 grid). With
  ``fixed_anchor_size`` (every w = h = 1) the shapes drawn are the nominal ones
  (layer scale and aspect ratio). ``options`` may be a preset carrying them as
  ``.anchors``; ``size`` is a panel's width in pixels.
  """
  options = v.resolve_options(options, AnchorOptions, "anchors")
  size = v.as_int("size", size, minimum=64)
  table = anchors_numpy(options)
  layers = anchor_layers(options) or None
  groups = []
  start = 0
  for layer in layers or ():
    groups.append((layer, table[start:start + layer.num_anchors]))
    start += layer.num_anchors
  if not groups:
    groups = [(None, table)]
  cols = min(len(groups), _PANELS_PER_ROW)
  rows = math.ceil(len(groups) / cols)
  fig = _figure(size * cols, (size + 40) * rows)
  axes = fig.subplots(rows, cols, squeeze=False).ravel()
  from matplotlib.patches import Rectangle  # pylint: disable=import-outside-toplevel
  for ax, (layer, rows_) in zip(axes, groups):
    ax.scatter(rows_[:, 0], rows_[:, 1], s=max(0.5, min(4.0, 4000 / len(rows_))), c="tab:blue")
    if layer is not None:
      per_cell = layer.anchors_per_cell
      middle = (layer.grid_height // 2 * layer.grid_width + layer.grid_width // 2) * per_cell
      cell = np.array(rows_[middle:middle + per_cell])
      if options.fixed_anchor_size:
        root = np.sqrt(np.array(layer.aspect_ratios))
        cell[:, 2], cell[:, 3] = np.array(layer.scales) * root, np.array(layer.scales) / root
      title = (f"stride {layer.stride}, {layer.grid_height}x{layer.grid_width}, "
               f"{per_cell}/cell" + (" (nominal)" if options.fixed_anchor_size else ""))
    else:
      cell, title = rows_[:0], f"{len(rows_)} fixed anchors"
    for xc, yc, aw, ah in cell:
      ax.add_patch(Rectangle((xc - aw / 2, yc - ah / 2), aw, ah, fill=False, lw=1,
                             color="tab:orange"))
    ax.set_title(title, fontsize=10)
    ax.set_xlim(-0.05, 1.05)
    ax.set_ylim(1.05, -0.05)
    ax.set_aspect("equal")
    ax.tick_params(labelsize=8)
  for ax in axes[len(groups):]:
    ax.set_axis_off()
  fig.tight_layout()
  return _finish(fig, path)
