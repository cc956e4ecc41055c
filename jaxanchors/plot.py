"""Pictures of anchors and detections (needs ``matplotlib``: ``pip install 'jaxanchors[plot]'``).

Both functions write an image file (format from the extension, e.g. ``.png``)
and return nothing; matplotlib is imported only when they are called, with the
non-interactive ``Agg`` backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from jaxanchors import _validate as v
from jaxanchors.anchors import AnchorOptions, anchor_layers, anchors_numpy
from jaxanchors.detections import Detections

__all__ = ["draw_anchors", "draw_detections"]


def _pyplot():
  try:
    import matplotlib
  except ImportError:
    raise ImportError("pictures need matplotlib: pip install 'jaxanchors[plot]'") from None
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt


def draw_detections(image: Any, detections: Detections, path: str | Path, *,
                    labels: dict[int, str] | None = None) -> None:
  """Draws valid boxes (with score) and keypoints over an image.

  Args:
    image: ``[H, W, C]`` uint8 or float image.
    detections: one frame of :class:`~jaxanchors.detections.Detections` in
      normalised image coordinates (as :func:`~jaxanchors.pipeline.detect`
      returns with a transform).
    path: output file.
    labels: optional class id to name mapping for the captions.
  """
  plt = _pyplot()
  image = np.asarray(image)
  d = Detections(*(np.asarray(x) for x in detections))
  if d.boxes.ndim != 2:
    raise ValueError(f"draw one frame at a time: boxes have shape {d.boxes.shape}")
  h, w = image.shape[:2]
  fig = plt.figure(figsize=(w / 100, h / 100), dpi=100)
  ax = fig.add_axes((0, 0, 1, 1))
  ax.imshow(image)
  ax.set_axis_off()
  for box, kps, score, cls in zip(d.boxes[d.valid], d.keypoints[d.valid], d.scores[d.valid],
                                  d.classes[d.valid]):
    x0, y0, x1, y1 = box * np.array([w, h, w, h])
    ax.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, lw=2, color="lime"))
    name = labels.get(int(cls), str(cls)) + " " if labels else ""
    ax.text(x0, y0 - 3, f"{name}{score:.2f}", color="black", fontsize=9,
            bbox=dict(facecolor="lime", edgecolor="none", pad=1))
    if len(kps):
      ax.scatter(kps[:, 0] * w, kps[:, 1] * h, s=18, c="red", edgecolors="white", linewidths=0.5)
  ax.set_xlim(0, w)
  ax.set_ylim(h, 0)
  fig.savefig(path)
  plt.close(fig)


def draw_anchors(options: AnchorOptions, path: str | Path, *, size: int = 512) -> None:
  """Draws an anchor table: one panel per layer group with its centres, and the
  anchor shapes of the middle cell. With ``fixed_anchor_size`` (every w = h =
  1) the shapes drawn are the nominal ones (layer scale and aspect ratio).
  ``options`` may be a preset carrying them as ``.anchors``."""
  options = v.resolve_options(options, AnchorOptions, "anchors")
  plt = _pyplot()
  table = anchors_numpy(options)
  layers = anchor_layers(options) or None
  groups = []
  start = 0
  for layer in layers or ():
    groups.append((layer, table[start:start + layer.num_anchors]))
    start += layer.num_anchors
  if not groups:
    groups = [(None, table)]
  fig, axes = plt.subplots(1, len(groups), figsize=(size / 100 * len(groups), size / 100 + 0.4),
                           dpi=100, squeeze=False)
  for ax, (layer, rows) in zip(axes[0], groups):
    ax.scatter(rows[:, 0], rows[:, 1], s=4, c="tab:blue")
    if layer is not None:
      per_cell = layer.anchors_per_cell
      middle = (layer.grid_height // 2 * layer.grid_width + layer.grid_width // 2) * per_cell
      cell = np.array(rows[middle:middle + per_cell])
      if options.fixed_anchor_size:
        root = np.sqrt(np.array(layer.aspect_ratios))
        cell[:, 2], cell[:, 3] = np.array(layer.scales) * root, np.array(layer.scales) / root
      title = (f"stride {layer.stride}, {layer.grid_height}x{layer.grid_width}, "
               f"{per_cell}/cell" + (" (nominal sizes)" if options.fixed_anchor_size else ""))
    else:
      cell, title = rows[:0], f"{len(rows)} fixed anchors"
    for xc, yc, aw, ah in cell:
      ax.add_patch(plt.Rectangle((xc - aw / 2, yc - ah / 2), aw, ah, fill=False, lw=1,
                                 color="tab:orange"))
    ax.set_title(title, fontsize=9)
    ax.set_xlim(-0.05, 1.05)
    ax.set_ylim(1.05, -0.05)
    ax.set_aspect("equal")
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)
