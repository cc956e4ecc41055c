"""``torchvision.ops``-style box operations on top of the MediaPipe machinery.

For users who know ``torchvision.ops.nms``, ``batched_nms``, ``box_iou`` and
``box_convert``: same arguments, same conventions, as jittable JAX functions
with static shapes. They are thin wrappers: NMS runs through
:func:`jaxanchors.non_max_suppression` (DEFAULT algorithm, IoU overlap) and IoU
is :func:`jaxanchors.pairwise_overlap`.

Contract:

* ``boxes [..., N, 4]`` are ``[x1, y1, x2, y2]`` (torchvision's ``'xyxy'``, the
  package convention); any leading batch dimensions are independent problems.
  Integer boxes become float32; float16, bfloat16, float32 and float64 are kept.
* NMS results are ``(indices, count)``: ``indices [..., max_output]`` int32
  input positions of the kept boxes in decreasing score order, padded with
  ``-1``; ``count [...]`` int32 the number kept. ``max_output`` is a static
  int (default ``N``): only the first ``max_output`` kept boxes are returned,
  which are exactly torchvision's first ones.
* **Ranking and suppression** are torchvision's CPU kernel: scores sorted
  stably in decreasing order (equal scores keep their input order, ``-0.0``
  equals ``0.0``), then greedy: a box is dropped when its IoU with a kept box
  is strictly greater than ``iou_threshold``. Like torchvision, the float IoU
  is compared with the threshold as a float64 number (``0.3`` is not rounded
  to float32 first). Degenerate boxes (zero or negative width or height) have
  IoU 0 with everything, so they are never suppressed and suppress nothing, as
  in torchvision, where their IoU is 0 or NaN.
* ``iou_threshold`` is a concrete Python number >= 0 (static under ``jit``;
  close over it or mark it static). ``>= 1`` suppresses nothing.
* **MediaPipe's NMS is class-agnostic**: a box suppresses overlapping boxes of
  any class. :func:`batched_nms` is the per-class variant.

Deliberate differences from torchvision:

* A box with a non-finite score (NaN, +-inf) or a non-finite coordinate is
  never kept and suppresses nothing (torchvision ranks NaN scores first and
  keeps NaN boxes).
* IoU follows MediaPipe's float32 rectangle arithmetic (``x2`` is rebuilt as
  ``x1 + (x2 - x1)``, :mod:`jaxanchors.boxes`). It is bit for bit
  torchvision's whenever that rebuild gives ``x2`` back, which holds for
  integer and dyadic coordinates and for most others; otherwise the IoU
  differs by a few float32 ulps, which changes a decision only when an IoU
  lies that close to the threshold. :func:`box_iou` returns 0 where
  torchvision computes ``0 / 0`` (NaN).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxanchors import _validate as v
from jaxanchors.boxes import OverlapType
from jaxanchors.boxes import anchors_to_corners
from jaxanchors.boxes import pairwise_overlap
from jaxanchors.detections import Detections
from jaxanchors.detections import from_xywh
from jaxanchors.detections import to_xywh
from jaxanchors.nms import NmsOptions
from jaxanchors.nms import non_max_suppression

__all__ = ["BOX_FORMATS", "KeptIndices", "batched_nms", "box_convert", "box_iou", "nms"]

BOX_FORMATS = ("xyxy", "xywh", "cxcywh")
"""Formats :func:`box_convert` accepts: corners, corner + size, centre + size."""


class KeptIndices(NamedTuple):
  """Result of :func:`nms` and :func:`batched_nms`.

  Attributes:
    indices: ``[..., max_output]`` int32 input positions of the kept boxes,
      decreasing score, ``-1`` after the last one.
    count: ``[...]`` int32 number of kept boxes.
  """

  indices: jax.Array
  count: jax.Array


def _boxes(name: str, boxes: Any) -> jax.Array:
  """``[..., N, 4]`` float boxes; integers become float32."""
  b = jnp.asarray(boxes)
  if b.dtype == jnp.bool_ or not (jnp.issubdtype(b.dtype, jnp.floating)
                                  or jnp.issubdtype(b.dtype, jnp.integer)):
    raise TypeError(f"{name} must hold real numbers, got dtype {b.dtype}")
  if b.ndim < 2 or b.shape[-1] != 4:
    raise ValueError(f"{name} must have shape [..., N, 4] ([x1, y1, x2, y2]), "
                     f"got shape {tuple(b.shape)}")
  return b if jnp.issubdtype(b.dtype, jnp.floating) else b.astype(jnp.float32)


def _per_box(name: str, x: Any, boxes: jax.Array, *, integer: bool) -> jax.Array:
  """A ``[..., N]`` array matching ``boxes [..., N, 4]``."""
  a = jnp.asarray(x)
  if integer:
    if not jnp.issubdtype(a.dtype, jnp.integer) or a.dtype == jnp.bool_:
      raise TypeError(f"{name} must have an integer dtype, got {a.dtype}")
  elif a.dtype == jnp.bool_ or not (jnp.issubdtype(a.dtype, jnp.floating)
                                    or jnp.issubdtype(a.dtype, jnp.integer)):
    raise TypeError(f"{name} must hold real numbers, got dtype {a.dtype}")
  if tuple(a.shape) != tuple(boxes.shape[:-1]):
    raise ValueError(f"{name} must have shape [..., N] = {tuple(boxes.shape[:-1])} to match "
                     f"boxes {tuple(boxes.shape)}, got {tuple(a.shape)}")
  return a


def _threshold(iou_threshold: Any) -> float:
  """The largest float32 not above ``iou_threshold``, as a Python float.

  For a float32 IoU ``x``, ``x > t`` (compared in float64, as torchvision
  does) holds exactly when ``x`` exceeds that float32.
  """
  if isinstance(iou_threshold, jax.core.Tracer):
    raise TypeError("iou_threshold must be a concrete Python number, not a traced value; "
                    "under jax.jit close over it or mark it static")
  if isinstance(iou_threshold, (np.ndarray, jax.Array)) and np.ndim(iou_threshold) == 0:
    iou_threshold = iou_threshold.item()
  t = v.as_float("iou_threshold", iou_threshold)
  if t < 0:
    raise ValueError(f"iou_threshold must be >= 0, got {t!r} (a negative threshold "
                     "would suppress every box that any kept box does not even touch)")
  f = np.float32(t)
  if float(f) > t:
    f = np.nextafter(f, np.float32(-np.inf))
  return float(f)


def _max_output(max_output: Any, n: int) -> int:
  if max_output is None:
    return n
  if isinstance(max_output, jax.core.Tracer):
    raise TypeError("max_output must be a static Python int, not a traced value")
  return v.as_int("max_output", max_output, minimum=1)


def _run(boxes: jax.Array, scores: jax.Array, threshold: float, slots: int) -> KeptIndices:
  """Greedy IoU NMS through the package's engine; ``boxes [..., N, 4]``, ``scores [..., N]``."""
  batch, n = boxes.shape[:-2], boxes.shape[-2]
  if slots == 0:  # N == 0 and no max_output: nothing to return
    return KeptIndices(jnp.zeros(batch + (0,), jnp.int32), jnp.zeros(batch, jnp.int32))
  if not jnp.issubdtype(scores.dtype, jnp.floating):
    scores = scores.astype(jnp.float32)
  detections = Detections(
      boxes=boxes, keypoints=jnp.zeros(batch + (n, 0, 2), boxes.dtype), scores=scores,
      classes=jnp.zeros(batch + (n,), jnp.int32), valid=jnp.ones(batch + (n,), bool))
  options = NmsOptions(min_suppression_threshold=threshold,
                       overlap_type=OverlapType.INTERSECTION_OVER_UNION, algorithm="DEFAULT")
  _, indices = non_max_suppression(detections, options, max_detections=slots,
                                   return_indices=True)
  return KeptIndices(indices, jnp.sum(indices >= 0, axis=-1, dtype=jnp.int32))


def nms(boxes: ArrayLike, scores: ArrayLike, iou_threshold: float, *,
        max_output: int | None = None) -> KeptIndices:
  """``torchvision.ops.nms`` with static shapes: greedy, class-agnostic IoU NMS.

  This is MediaPipe's ``NonMaxSuppressionCalculator`` with the DEFAULT
  algorithm and ``INTERSECTION_OVER_UNION`` overlap, which like MediaPipe
  ignores classes; :func:`batched_nms` is the per-class variant. Ranking,
  suppression and the differences from torchvision are in the module
  docstring.

  Args:
    boxes: ``[..., N, 4]`` ``[x1, y1, x2, y2]``.
    scores: ``[..., N]`` real scores.
    iou_threshold: Python number >= 0; boxes with IoU ``>`` it are suppressed.
    max_output: static int >= 1, the number of index slots (default ``N``).

  Returns:
    :class:`KeptIndices` ``(indices [..., max_output] int32, count [...] int32)``.
    With ``N == 0`` and no ``max_output``, ``indices`` has shape ``[..., 0]``.

  Raises:
    TypeError: a traced ``iou_threshold``/``max_output``, or non-numeric arrays.
    ValueError: bad shapes, a negative or non-finite threshold, ``max_output < 1``.

  Examples:
    >>> import jax.numpy as jnp
    >>> boxes = jnp.array([[0., 0., 10., 10.], [1., 1., 11., 11.], [20., 20., 30., 30.]])
    >>> keep = nms(boxes, jnp.array([0.9, 0.8, 0.7]), 0.5)
    >>> keep.indices.tolist(), int(keep.count)
    ([0, 2, -1], 2)
  """
  b = _boxes("boxes", boxes)
  s = _per_box("scores", scores, b, integer=False)
  threshold = _threshold(iou_threshold)
  return _run(b, s, threshold, _max_output(max_output, b.shape[-2]))


def batched_nms(boxes: ArrayLike, scores: ArrayLike, idxs: ArrayLike, iou_threshold: float, *,
                max_output: int | None = None) -> KeptIndices:
  """``torchvision.ops.batched_nms``: NMS within each class, results merged by score.

  Boxes of different classes (different ``idxs``) never suppress each other.
  As torchvision does for up to 1000 boxes on CPU (and under tracing), the
  classes are kept apart by shifting each box by ``idx * (max_coordinate + 1)``
  in the boxes' dtype, ``max_coordinate`` the largest finite coordinate of
  its frame, then running :func:`nms` once; so results are torchvision's for
  the same inputs. Where that shift rounds (coordinates with more significant
  bits than the shifted range can hold), suppression among boxes of one class
  is decided on the shifted coordinates, as in torchvision; torchvision's
  class-by-class path for more than 1000 boxes can then differ from both by
  IoUs within rounding of the threshold. Class ids are expected ``>= 0``.

  Args:
    boxes: ``[..., N, 4]`` ``[x1, y1, x2, y2]``.
    scores: ``[..., N]`` real scores.
    idxs: ``[..., N]`` integer class ids.
    iou_threshold: Python number >= 0.
    max_output: static int >= 1, the number of index slots (default ``N``).

  Returns:
    :class:`KeptIndices`, kept boxes of all classes in decreasing score order.

  Examples:
    >>> import jax.numpy as jnp
    >>> boxes = jnp.array([[0., 0., 10., 10.], [1., 1., 11., 11.], [1., 1., 11., 11.]])
    >>> keep = batched_nms(boxes, jnp.array([0.9, 0.8, 0.7]), jnp.array([0, 0, 1]), 0.5)
    >>> keep.indices.tolist()
    [0, 2, -1]
  """
  b = _boxes("boxes", boxes)
  s = _per_box("scores", scores, b, integer=False)
  c = _per_box("idxs", idxs, b, integer=True)
  threshold = _threshold(iou_threshold)
  slots = _max_output(max_output, b.shape[-2])
  if b.shape[-2] == 0 or slots == 0:
    return _run(b, s, threshold, slots)
  finite = jnp.isfinite(b)
  top = jnp.max(jnp.where(finite, b, -jnp.inf), axis=(-2, -1), keepdims=True)
  top = jnp.where(jnp.isfinite(top), top, jnp.zeros_like(top))
  offsets = c.astype(b.dtype)[..., None] * (top + jnp.ones((), b.dtype))
  return _run(b + offsets, s, threshold, slots)


def box_iou(boxes1: ArrayLike, boxes2: ArrayLike) -> jax.Array:
  """``torchvision.ops.box_iou``: ``[..., N, M]`` IoU of ``[..., N, 4]`` and ``[..., M, 4]``.

  :func:`jaxanchors.pairwise_overlap` with ``INTERSECTION_OVER_UNION``: 0 for
  disjoint, touching or degenerate boxes (torchvision: 0, or NaN for two
  zero-area boxes). Leading dimensions broadcast.

  Examples:
    >>> import jax.numpy as jnp
    >>> box_iou(jnp.array([[0., 0., 2., 1.]]), jnp.array([[1., 0., 3., 1.], [5., 5., 6., 6.]])).tolist()
    [[0.3333333432674408, 0.0]]
  """
  b1, b2 = _boxes("boxes1", boxes1), _boxes("boxes2", boxes2)
  return pairwise_overlap(b1, b2, overlap_type=OverlapType.INTERSECTION_OVER_UNION)


def _format(name: str, fmt: Any) -> str:
  if not isinstance(fmt, str):
    raise TypeError(f"{name} must be a string, one of {BOX_FORMATS}, got {fmt!r}")
  if fmt.lower() not in BOX_FORMATS:
    raise ValueError(f"{name} must be one of {BOX_FORMATS}, got {fmt!r}")
  return fmt.lower()


def _xyxy_to_cxcywh(b: jax.Array) -> jax.Array:
  """torchvision's arithmetic: ``c = (x1 + x2) / 2``, ``w = x2 - x1``."""
  lo, hi = b[..., :2], b[..., 2:]
  return jnp.concatenate([(lo + hi) / 2, hi - lo], axis=-1)


def box_convert(boxes: ArrayLike, in_fmt: str, out_fmt: str) -> jax.Array:
  """``torchvision.ops.box_convert`` between ``'xyxy'``, ``'xywh'`` and ``'cxcywh'``.

  ``xyxy`` is ``[x1, y1, x2, y2]``, ``xywh`` ``[x1, y1, w, h]``, ``cxcywh``
  ``[cx, cy, w, h]``. The arithmetic is torchvision's (``w = x2 - x1``,
  ``x2 = x1 + w``, ``cx = (x1 + x2) / 2``, ``x1 = cx - w / 2``), through
  ``xyxy`` between the other two, so float results are identical. Integer
  boxes become float32 first.

  Args:
    boxes: ``[..., 4]``.
    in_fmt: format of ``boxes``.
    out_fmt: wanted format.

  Returns:
    ``[..., 4]`` in ``out_fmt``, floating dtype.

  Examples:
    >>> box_convert([10., 20., 30., 60.], "xyxy", "cxcywh").tolist()
    [20.0, 40.0, 20.0, 40.0]
  """
  i, o = _format("in_fmt", in_fmt), _format("out_fmt", out_fmt)
  b = jnp.asarray(boxes)
  if b.dtype == jnp.bool_ or not (jnp.issubdtype(b.dtype, jnp.floating)
                                  or jnp.issubdtype(b.dtype, jnp.integer)):
    raise TypeError(f"boxes must hold real numbers, got dtype {b.dtype}")
  if b.ndim < 1 or b.shape[-1] != 4:
    raise ValueError(f"boxes must have shape [..., 4], got shape {tuple(b.shape)}")
  if not jnp.issubdtype(b.dtype, jnp.floating):
    b = b.astype(jnp.float32)
  if i == o:
    return b
  xyxy = {"xyxy": lambda x: x, "xywh": from_xywh, "cxcywh": anchors_to_corners}[i](b)
  return {"xyxy": lambda x: x, "xywh": to_xywh, "cxcywh": _xyxy_to_cxcywh}[o](xyxy)
