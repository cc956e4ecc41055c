"""Box geometry shared by NMS and anchor matching: MediaPipe's overlap measures.

Contract (docs/semantics.md §3.3):

* Boxes are ``[..., 4]`` arrays ``[xmin, ymin, xmax, ymax]`` (the package
  convention, see :mod:`jaxanchors.detections`).
* MediaPipe holds a box as ``(xmin, ymin, width, height)`` with
  ``width = f32(xmax - xmin)`` and rebuilds the rectangle as
  ``[xmin, f32(xmin + width)] x [ymin, f32(ymin + height)]``; rectangle widths
  and areas are then taken from those rebuilt corners. The functions here
  repeat those roundings, so on float32 input every overlap value equals
  MediaPipe's bit for bit and decisions at a threshold agree exactly.
* ``overlap(r1, r2)`` is 0 when either rectangle is empty (``width < 0`` or
  ``height < 0``), when they do not touch (touching edges count as
  intersecting, with intersection area 0), or when the denominator is not
  ``> 0``. Otherwise, with ``I`` the intersection area:

  - ``JACCARD``: ``I / area(smallest rectangle enclosing both)``. This is the
    proto default and it is **not** IoU: the denominator is the enclosing box,
    so the value is ``<=`` IoU.
  - ``MODIFIED_JACCARD``: ``I / area(r2)``; the argument order matters.
  - ``INTERSECTION_OVER_UNION``: ``I / (area(r1) + area(r2) - I)``, the
    standard IoU used by every shipped MediaPipe graph.

* Arithmetic is done in the boxes' floating dtype (integers become float32).
  Results for non-finite coordinates are unspecified (NMS never passes them).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxanchors import _geometry as g
from jaxanchors import _validate as v
from jaxanchors._geometry import OverlapType

__all__ = ["OverlapType", "anchors_to_corners", "overlap", "pairwise_overlap"]


def _overlap_inputs(boxes1, boxes2, overlap_type, *, pattern):
  """Checked overlap type and boxes of the public overlap functions, in one float dtype."""
  kind = v.as_enum("overlap_type", OverlapType, overlap_type)
  b1, b2 = g.as_float(boxes1), g.as_float(boxes2)
  for where, b in (("boxes1", b1), ("boxes2", b2)):
    v.check_shape(where, b, pattern, note=" ([xmin, ymin, xmax, ymax])")
  dtype = jnp.result_type(b1, b2)
  return kind, b1.astype(dtype), b2.astype(dtype)


def overlap(boxes1: ArrayLike, boxes2: ArrayLike, *, overlap_type: Any) -> jax.Array:
  """MediaPipe's ``OverlapSimilarity(overlap_type, r1, r2)`` elementwise (docs/semantics.md §3.3).

  ``boxes1`` and ``boxes2`` broadcast against each other, so one-to-many is
  ``overlap(box[..., None, :], boxes)``. ``MODIFIED_JACCARD`` divides by the
  area of the box from ``boxes2``.

  Args:
    boxes1: ``[..., 4]`` ``[xmin, ymin, xmax, ymax]`` (MediaPipe's ``r1``).
    boxes2: ``[..., 4]``, broadcast-compatible with ``boxes1`` (``r2``).
    overlap_type: :class:`OverlapType`, its name or its proto number.

  Returns:
    ``[...]`` overlap in the boxes' floating dtype, in ``[0, 1]``.

  Examples:
    >>> import jax.numpy as jnp
    >>> a = jnp.array([0.0, 0.0, 2.0, 1.0])
    >>> b = jnp.array([[1.0, 0.0, 3.0, 1.0], [1.0, 0.5, 3.0, 1.5]])
    >>> overlap(a, b, overlap_type="INTERSECTION_OVER_UNION").tolist()
    [0.3333333432674408, 0.1428571492433548]
    >>> overlap(a, b, overlap_type="JACCARD").tolist()  # enclosing-box denominator
    [0.3333333432674408, 0.1111111119389534]
  """
  kind, b1, b2 = _overlap_inputs(boxes1, boxes2, overlap_type, pattern="[..., 4]")
  return g.overlap(b1, b2, kind)


def pairwise_overlap(boxes1: ArrayLike, boxes2: ArrayLike, *, overlap_type: Any) -> jax.Array:
  """All-pairs overlap: ``out[..., i, j] = overlap(boxes1[..., i, :], boxes2[..., j, :])``.

  Same measure and MediaPipe rounding as :func:`overlap`; the leading
  dimensions broadcast. Memory and time are ``O(N * M)``.

  Args:
    boxes1: ``[..., N, 4]`` ``[xmin, ymin, xmax, ymax]`` (MediaPipe's ``r1``).
    boxes2: ``[..., M, 4]`` (``r2``; ``MODIFIED_JACCARD`` divides by its areas).
    overlap_type: :class:`OverlapType`, its name or its proto number.

  Returns:
    ``[..., N, M]`` overlap in the boxes' floating dtype.

  Examples:
    >>> import jax.numpy as jnp
    >>> a = jnp.array([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 0.5, 0.5]])
    >>> pairwise_overlap(a, a, overlap_type="MODIFIED_JACCARD").tolist()
    [[1.0, 1.0], [0.25, 1.0]]
  """
  kind, b1, b2 = _overlap_inputs(boxes1, boxes2, overlap_type, pattern="[..., N, 4]")
  return g.pairwise(b1, b2, kind)


def anchors_to_corners(anchors: ArrayLike) -> jax.Array:
  """``[..., 4]`` ``[x_center, y_center, w, h]`` to ``[xmin, ymin, xmax, ymax]``.

  Examples:
    >>> anchors_to_corners([0.5, 0.25, 0.5, 0.25]).tolist()
    [0.25, 0.125, 0.75, 0.375]
  """
  a = g.as_float(anchors)
  xc, yc, w, h = a[..., 0], a[..., 1], a[..., 2], a[..., 3]
  return jnp.stack([xc - w / 2, yc - h / 2, xc + w / 2, yc + h / 2], axis=-1)
