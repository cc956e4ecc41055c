"""Box geometry shared by NMS and anchor matching: MediaPipe's overlap measures.

Contract (spec ``mediapipe.md`` §3.3):

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

import enum
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxanchors import _validate as v

__all__ = ["OverlapType", "anchors_to_corners", "overlap", "pairwise_overlap"]


class OverlapType(enum.Enum):
  """MediaPipe's ``NonMaxSuppressionCalculatorOptions.OverlapType`` (spec §3.1, §3.3).

  Values are the proto numbers. ``UNSPECIFIED_OVERLAP_TYPE`` (0), a fatal error
  in MediaPipe, is not a member. Anywhere an overlap type is accepted, a member,
  its name (any case) or its proto number may be given.
  """

  JACCARD = 1
  MODIFIED_JACCARD = 2
  INTERSECTION_OVER_UNION = 3


def _float(boxes: ArrayLike) -> jax.Array:
  boxes = jnp.asarray(boxes)
  if not jnp.issubdtype(boxes.dtype, jnp.floating):
    boxes = boxes.astype(jnp.float32)
  return boxes


def _check_boxes(name: str, boxes: jax.Array, min_ndim: int) -> None:
  if boxes.ndim < min_ndim or boxes.shape[-1] != 4:
    want = "[..., 4]" if min_ndim == 1 else "[..., N, 4]"
    raise ValueError(f"{name} must have shape {want} ([xmin, ymin, xmax, ymax]), "
                     f"got shape {tuple(boxes.shape)}")


def _product(a: jax.Array, b: jax.Array) -> jax.Array:
  """``a * b`` rounded on its own, never fused into a later add (no FMA).

  XLA's CPU backend may contract ``a * b + c`` into one fused multiply-add,
  which skips the rounding of the product that MediaPipe's C++ performs and
  moves IoU by an ulp. Feeding the product through ``max(., 0)`` (a no-op for
  the non-negative areas that reach a result) leaves nothing to contract.
  """
  return jnp.maximum(a * b, 0)


class _Rects(NamedTuple):
  """Per-box quantities of MediaPipe's ``Rectangle_f`` (see the module docstring)."""

  x: jax.Array  # xmin
  y: jax.Array  # ymin
  X: jax.Array  # f32(xmin + f32(xmax - xmin))
  Y: jax.Array  # f32(ymin + f32(ymax - ymin))
  area: jax.Array  # (X - x) * (Y - y), rounded on its own
  nonempty: jax.Array  # width >= 0 and height >= 0


def _rects(b: jax.Array) -> _Rects:
  """MediaPipe's rectangle of each ``[..., 4]`` box, as ``[...]`` arrays."""
  x, y = b[..., 0], b[..., 1]
  w, h = b[..., 2] - x, b[..., 3] - y
  X, Y = x + w, y + h
  # Width()/Height() of a rectangle are recomputed from its rebuilt corners.
  return _Rects(x, y, X, Y, _product(X - x, Y - y), (w >= 0) & (h >= 0))


def _overlap_rects(r1: _Rects, r2: _Rects, kind: OverlapType) -> jax.Array:
  """Overlap of broadcast-compatible rectangles (spec §3.3)."""
  iw = jnp.minimum(r1.X, r2.X) - jnp.maximum(r1.x, r2.x)
  ih = jnp.minimum(r1.Y, r2.Y) - jnp.maximum(r1.y, r2.y)
  # Not empty and touching (a zero-width intersection counts, with area 0).
  hit = r1.nonempty & r2.nonempty & (iw >= 0) & (ih >= 0)
  inter = jnp.where(hit, iw * ih, 0)
  if kind is OverlapType.JACCARD:
    uw = jnp.maximum(r1.X, r2.X) - jnp.minimum(r1.x, r2.x)
    uh = jnp.maximum(r1.Y, r2.Y) - jnp.minimum(r1.y, r2.y)
    denom = uw * uh
  elif kind is OverlapType.MODIFIED_JACCARD:
    denom = r2.area
  else:
    denom = (r1.area + r2.area) - inter
  ok = hit & (denom > 0)
  # The safe denominator keeps 0/0 and x/negative out of the unselected branch.
  return jnp.where(ok, inter / jnp.where(ok, denom, 1), 0)


def _overlap(b1: jax.Array, b2: jax.Array, kind: OverlapType) -> jax.Array:
  """Elementwise overlap of broadcast-compatible ``[..., 4]`` boxes (spec §3.3)."""
  return _overlap_rects(_rects(b1), _rects(b2), kind)


def _pairwise(b1: jax.Array, b2: jax.Array, kind: OverlapType) -> jax.Array:
  """``[..., N, M]`` overlap of ``[..., N, 4]`` and ``[..., M, 4]`` boxes."""
  r1, r2 = _rects(b1), _rects(b2)
  return _overlap_rects(_Rects(*(a[..., :, None] for a in r1)),
                        _Rects(*(a[..., None, :] for a in r2)), kind)


def _overlap_inputs(boxes1, boxes2, overlap_type, *, min_ndim):
  """Checked overlap type and boxes of the public overlap functions, in one float dtype."""
  kind = v.as_enum("overlap_type", OverlapType, overlap_type)
  b1, b2 = _float(boxes1), _float(boxes2)
  _check_boxes("boxes1", b1, min_ndim)
  _check_boxes("boxes2", b2, min_ndim)
  dtype = jnp.result_type(b1, b2)
  return kind, b1.astype(dtype), b2.astype(dtype)


def overlap(boxes1: ArrayLike, boxes2: ArrayLike, *, overlap_type: Any) -> jax.Array:
  """MediaPipe's ``OverlapSimilarity(overlap_type, r1, r2)`` elementwise (spec §3.3).

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
  kind, b1, b2 = _overlap_inputs(boxes1, boxes2, overlap_type, min_ndim=1)
  return _overlap(b1, b2, kind)


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
  kind, b1, b2 = _overlap_inputs(boxes1, boxes2, overlap_type, min_ndim=2)
  return _pairwise(b1, b2, kind)


def anchors_to_corners(anchors: ArrayLike) -> jax.Array:
  """``[..., 4]`` ``[x_center, y_center, w, h]`` to ``[xmin, ymin, xmax, ymax]``.

  Examples:
    >>> anchors_to_corners([0.5, 0.25, 0.5, 0.25]).tolist()
    [0.25, 0.125, 0.75, 0.375]
  """
  a = jnp.asarray(anchors)
  if not jnp.issubdtype(a.dtype, jnp.floating):
    a = a.astype(jnp.float32)
  xc, yc, w, h = a[..., 0], a[..., 1], a[..., 2], a[..., 3]
  return jnp.stack([xc - w / 2, yc - h / 2, xc + w / 2, yc + h / 2], axis=-1)
