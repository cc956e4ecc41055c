"""Box, keypoint and score decoding: MediaPipe's ``TensorsToDetectionsCalculator``.

Contract (docs/semantics.md §2):

* Raw model outputs ``raw_boxes [..., N, num_coords]`` and
  ``raw_scores [..., N, num_classes]`` (float) are decoded against anchors
  ``[N, 4]`` (rows ``[x_center, y_center, w, h]``, as :mod:`jaxanchors.anchors`
  makes them) into :class:`~jaxanchors.detections.Detections` with one slot per
  anchor. Any number of leading batch dimensions is accepted.
* Decoding follows §2.5 (box formats YXHW / XYWH / XYXY, the latter as
  edge distances from the anchor centre; ``exp`` sizes; keypoints never scaled
  by ``w_scale``/``h_scale``), scoring §2.6 (sigmoid with optional clipping,
  lowest class index wins ties, allow/ignore lists) and filtering §2.7 (class
  allowed, ``score >= min_score_thresh``, width and height not negative and not
  NaN, then the first ``max_results`` passing anchors in anchor order).
  Dropped anchors keep their slot with ``valid = False``.
* Arithmetic is float32 in MediaPipe's order. XLA may contract a multiply-add
  into one fused multiply-add and its ``exp`` is not the C library's, so boxes
  and keypoints agree with MediaPipe to about one float32 rounding step and
  sigmoid scores to about one ulp; raw (non-sigmoid) scores are exact.
* :func:`encode` is the inverse (training targets): ``decode(encode(x)) == x``
  within float32 rounding. Both are differentiable.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import math
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxanchors import _validate as v
from jaxanchors.detections import Detections

__all__ = [
    "BoxFormat",
    "DecoderOptions",
    "anchors_from_yxhw",
    "decode",
    "decode_postprocessed",
    "encode",
]

_FLT_MAX = float(np.finfo(np.float32).max)


class BoxFormat(enum.Enum):
  """``TensorsToDetectionsCalculatorOptions.BoxFormat`` (docs/semantics.md §2.4)."""

  UNSPECIFIED = 0
  YXHW = 1
  XYWH = 2
  XYXY = 3


@v.hash_once
@dataclasses.dataclass(frozen=True, kw_only=True)
class DecoderOptions(v.OptionsMixin):
  """Options of MediaPipe's ``TensorsToDetectionsCalculator`` (docs/semantics.md §2.2).

  Same field names and defaults as the proto.

  ``num_classes`` and ``num_coords`` have no default (MediaPipe requires
  them). Two fields distinguish *unset* from any value, as proto has-bits do:
  ``score_clipping_thresh`` and ``min_score_thresh`` are ``None`` when unset.
  ``box_format`` is ``None`` when absent, in which case
  ``reverse_output_order`` chooses XYWH (true) or YXHW (false); an explicit
  ``UNSPECIFIED`` behaves as YXHW (docs/semantics.md §2.4).

  A sigmoid decoder's ``min_score_thresh`` above 1 is rejected (no score can
  pass; MediaPipe would silently detect nothing).

  Traps kept for fidelity: ``keypoint_coord_offset`` defaults to 0, which with
  keypoints makes them overwrite the decoded box exactly as MediaPipe does
  (§2.11): set 4 for BlazeFace-style rows. The scales default to 0.0, which
  MediaPipe divides by; :func:`decode` refuses a zero scale with an error.

  ``box_boundaries_indices`` is ``(ymin, xmin, ymax, xmax)`` positions in a
  post-processed model's box row (4-tensor path, docs/semantics.md §2.8), ``None`` meaning
  the proto default ``(0, 1, 2, 3)``.

  Attributes:
    num_classes: columns of the score tensor (required).
    num_boxes: rows of the tensors (anchors); 0 leaves them unchecked.
    num_coords: values per row of the box tensor (required), ``4 + 2 *
      num_keypoints``.
    box_coord_offset: position of the 4 box values in a row.
    keypoint_coord_offset: position of the first keypoint value in a row
      (default 0: see the trap above).
    num_keypoints: keypoints per row.
    num_values_per_keypoint: must be 2.
    x_scale, y_scale: divisors of the centre and keypoint offsets.
    w_scale, h_scale: divisors of the width and height.
    apply_exponential_on_box_size: sizes are ``exp(t / scale) * anchor``.
    reverse_output_order: without ``box_format``: XYWH rows (true) or YXHW.
    box_format: :class:`BoxFormat` of the rows, or ``None`` (see above).
    ignore_classes: class ids never scored.
    allow_classes: if not empty, the only class ids scored.
    sigmoid_score: apply the logistic sigmoid to the scores.
    score_clipping_thresh: clip logits to ``[-t, t]`` before the sigmoid;
      ``None`` unset.
    flip_vertically: mirror boxes and keypoints, ``y -> 1 - y``.
    min_score_thresh: drop detections scoring below it; ``None`` unset.
    max_results: keep the first this many passing anchors; negative: all.
    max_classes_per_detection: must be 1.
    box_boundaries_indices: see above.
  """

  num_classes: int
  num_boxes: int = 0
  num_coords: int
  box_coord_offset: int = 0
  keypoint_coord_offset: int = 0
  num_keypoints: int = 0
  num_values_per_keypoint: int = 2
  x_scale: float = 0.0
  y_scale: float = 0.0
  w_scale: float = 0.0
  h_scale: float = 0.0
  apply_exponential_on_box_size: bool = False
  reverse_output_order: bool = False
  box_format: BoxFormat | None = None
  ignore_classes: tuple[int, ...] = ()
  allow_classes: tuple[int, ...] = ()
  sigmoid_score: bool = False
  score_clipping_thresh: float | None = None
  flip_vertically: bool = False
  min_score_thresh: float | None = None
  max_results: int = -1
  max_classes_per_detection: int = 1
  box_boundaries_indices: tuple[int, int, int, int] | None = None

  def __post_init__(self) -> None:
    w = lambda name: f"DecoderOptions.{name}"  # noqa: E731
    for name, minimum in (("num_classes", 1), ("num_boxes", 0), ("num_coords", 4),
                          ("box_coord_offset", 0), ("keypoint_coord_offset", 0),
                          ("num_keypoints", 0), ("num_values_per_keypoint", None),
                          ("max_results", None), ("max_classes_per_detection", 1)):
      v.set_field(self, name, v.as_int(w(name), getattr(self, name), minimum=minimum))
    for name in ("x_scale", "y_scale", "w_scale", "h_scale"):
      v.set_field(self, name, v.as_float(w(name), getattr(self, name)))
    for name in ("score_clipping_thresh", "min_score_thresh"):
      if getattr(self, name) is not None:
        v.set_field(self, name, v.as_float(w(name), getattr(self, name)))
    if self.score_clipping_thresh is not None and self.score_clipping_thresh < 0:
      raise ValueError(f"{w('score_clipping_thresh')} must be >= 0, got "
                       f"{self.score_clipping_thresh}")
    for name in ("apply_exponential_on_box_size", "reverse_output_order", "sigmoid_score",
                 "flip_vertically"):
      v.set_field(self, name, v.as_bool(w(name), getattr(self, name)))
    if self.sigmoid_score and self.min_score_thresh is not None and self.min_score_thresh > 1:
      raise ValueError(f"{w('min_score_thresh')}={self.min_score_thresh} is above 1, which no "
                       "sigmoid score reaches")
    if self.box_format is not None:
      v.set_field(self, "box_format", v.as_enum(w("box_format"), BoxFormat, self.box_format))
    for name in ("ignore_classes", "allow_classes"):
      ids = v.as_tuple(w(name), getattr(self, name))
      ids = tuple(v.as_int(f"{w(name)}[{i}]", c) for i, c in enumerate(ids))
      for i, c in enumerate(ids):
        if not 0 <= c < self.num_classes:
          raise ValueError(f"{w(name)}[{i}]={c} is not a class id in [0, "
                           f"num_classes={self.num_classes})")
      v.set_field(self, name, ids)
    if self.box_boundaries_indices is not None:
      idx = v.as_tuple(w("box_boundaries_indices"), self.box_boundaries_indices)
      idx = tuple(v.as_int(f"{w('box_boundaries_indices')}[{i}]", x) for i, x in enumerate(idx))
      if sorted(idx) != [0, 1, 2, 3]:
        raise ValueError(f"{w('box_boundaries_indices')} must be a permutation of 0..3 "
                         f"(ymin, xmin, ymax, xmax positions), got {idx!r}")
      v.set_field(self, "box_boundaries_indices", idx)

    # docs/semantics.md §2.3.
    if self.max_results == 0:
      raise ValueError(f"{w('max_results')} must not be 0 (negative means no limit)")
    if self.num_values_per_keypoint != 2:
      raise ValueError(f"{w('num_values_per_keypoint')} must be 2, got "
                       f"{self.num_values_per_keypoint}")
    if self.num_keypoints * 2 + 4 != self.num_coords:
      raise ValueError(f"{w('num_coords')}={self.num_coords} must equal 4 + 2 * num_keypoints "
                       f"= {4 + 2 * self.num_keypoints}")
    if self.allow_classes and self.ignore_classes:
      raise ValueError(f"{w('allow_classes')} and ignore_classes cannot both be given")
    if self.box_coord_offset + 4 > self.num_coords:
      raise ValueError(f"{w('box_coord_offset')}={self.box_coord_offset} leaves no room for 4 "
                       f"box values in num_coords={self.num_coords}")
    if self.keypoint_coord_offset + 2 * self.num_keypoints > self.num_coords:
      raise ValueError(f"{w('keypoint_coord_offset')}={self.keypoint_coord_offset} leaves no "
                       f"room for {self.num_keypoints} keypoints in num_coords={self.num_coords}")
    if self.max_classes_per_detection != 1:
      raise ValueError(f"{w('max_classes_per_detection')}={self.max_classes_per_detection}: "
                       "only 1 is supported")

  @property
  def format(self) -> BoxFormat:
    """The effective box format after docs/semantics.md §2.4's precedence rule."""
    if self.box_format is not None:
      return BoxFormat.YXHW if self.box_format is BoxFormat.UNSPECIFIED else self.box_format
    return BoxFormat.XYWH if self.reverse_output_order else BoxFormat.YXHW

  @classmethod
  def dict_in(cls, data: dict[str, Any]) -> dict[str, Any]:
    """Absent keys are unset; ``box_boundaries_indices`` may be the proto's
    ``{ymin, xmin, ymax, xmax}`` mapping."""
    if isinstance(data.get("box_boundaries_indices"), Mapping):
      b = data["box_boundaries_indices"]
      data["box_boundaries_indices"] = tuple(
          b.get(k, d) for k, d in (("ymin", 0), ("xmin", 1), ("ymax", 2), ("xmax", 3)))
    return data


# -- helpers -----------------------------------------------------------------------


def _resolve(options: Any) -> DecoderOptions:
  return v.resolve_options(options, DecoderOptions, "decoder")


def anchors_from_yxhw(anchors: ArrayLike) -> jax.Array:
  """MediaPipe's anchor *tensor* layout ``[N, 4]`` rows ``[y_center, x_center, h, w]``
  (3-tensor models, docs/semantics.md §2.1) to our ``[x_center, y_center, w, h]``."""
  anchors = jnp.asarray(anchors)
  return anchors[..., jnp.array([1, 0, 3, 2])]


def _class_allowed(cls: jax.Array, options: DecoderOptions) -> jax.Array:
  """MediaPipe's class filter for any int id: in the allowlist if there is one,
  else not in the ignore list (so -1 passes unless there is an allowlist)."""
  if options.allow_classes:
    return jnp.isin(cls, jnp.array(options.allow_classes, jnp.int32))
  if options.ignore_classes:
    return ~jnp.isin(cls, jnp.array(options.ignore_classes, jnp.int32))
  return jnp.ones(cls.shape, bool)


def _score(raw_scores: jax.Array, options: DecoderOptions) -> tuple[jax.Array, jax.Array]:
  """Best allowed class and its score per anchor (docs/semantics.md §2.6)."""
  s = raw_scores
  if options.sigmoid_score:
    if options.score_clipping_thresh is not None:
      t = jnp.asarray(options.score_clipping_thresh, s.dtype)
      s = jnp.clip(s, -t, t)
    s = 1 / (1 + jnp.exp(-s))
  allowed = _class_allowed(jnp.arange(options.num_classes, dtype=jnp.int32), options)
  if options.num_classes == 1:
    # The general path below, without its argmax and gather (extra passes over
    # the scores in XLA). A sigmoid lies in [0, 1] unless its input is NaN, so
    # the class is decided on the raw score: no second exp for the class output.
    if options.sigmoid_score:
      usable = allowed[0] & ~jnp.isnan(raw_scores[..., 0])
    else:
      usable = allowed[0] & (s[..., 0] > -_FLT_MAX)
    return (jnp.where(usable, s[..., 0], jnp.asarray(-_FLT_MAX, s.dtype)),
            jnp.where(usable, 0, -1).astype(jnp.int32))
  # MediaPipe starts from best = -FLT_MAX and takes a class only if best < s, in
  # ascending class order: the first maximum strictly above -FLT_MAX wins; NaN never does.
  usable = allowed & (s > -_FLT_MAX)
  masked = jnp.where(usable, s, -jnp.inf)
  best_class = jnp.argmax(masked, axis=-1).astype(jnp.int32)
  best = jnp.take_along_axis(masked, best_class[..., None], axis=-1)[..., 0]
  found = jnp.any(usable, axis=-1)
  score = jnp.where(found, best, jnp.asarray(-_FLT_MAX, s.dtype))
  return score, jnp.where(found, best_class, -1)


def _decode_geometry(raw_boxes: jax.Array, anchors: jax.Array, options: DecoderOptions):
  """Boxes ``[..., N, 4]`` and keypoints (docs/semantics.md §2.5), with MediaPipe's overwrites.

  Written on ``(x, y)`` pairs, with the corners as ``centre + (-1, +1) * half``
  rather than four stacked columns: the same float32 operations per value
  (``c + -h`` is ``c - h``; outputs are bit-identical), but XLA's CPU backend
  compiles a stack of columns into a per-element select, which made the box
  pass about 4x slower (``benchmarks/bench_decode.py``).
  """
  o = options.box_coord_offset
  r = raw_boxes
  fmt = options.format
  dtype = r.dtype
  first, second = r[..., o:o + 2], r[..., o + 2:o + 4]
  if fmt is BoxFormat.YXHW:        # [ty, tx, th, tw]
    t_centre, t_size = first[..., ::-1], second[..., ::-1]
  elif fmt is BoxFormat.XYWH:      # [tx, ty, tw, th]
    t_centre, t_size = first, second
  else:  # XYXY: distances from the anchor centre to the left, top, right, bottom edges.
    t_centre, t_size = (second - first) / 2, first + second
  a_centre, a_size = anchors[..., 0:2], anchors[..., 2:4]  # (x_center, y_center), (w, h)
  xy_scale = jnp.array([options.x_scale, options.y_scale], dtype)
  wh_scale = jnp.array([options.w_scale, options.h_scale], dtype)
  centre = t_centre / xy_scale * a_size + a_centre      # (xc, yc) = t / scale * anchor + anchor
  if options.apply_exponential_on_box_size:
    size = jnp.exp(t_size / wh_scale) * a_size
  else:
    size = t_size / wh_scale * a_size
  side = jnp.array([[-1], [1]], dtype)                  # min corner, max corner
  corners = centre[..., None, :] + side * (size[..., None, :] / 2)
  boxes = corners.reshape(r.shape[:-1] + (4,))           # xmin, ymin, xmax, ymax

  k, q = options.num_keypoints, options.keypoint_coord_offset
  kp = r[..., q:q + 2 * k].reshape(r.shape[:-1] + (k, 2))
  if fmt is BoxFormat.YXHW:
    kp = kp[..., ::-1]
  keypoints = kp / xy_scale * a_size[..., None, :] + a_centre[..., None, :]
  # Keypoints are written after the box, x at q + 2j and y at q + 2j + 1: with
  # keypoint_coord_offset < 4 they overwrite box slots (docs/semantics.md §2.11).
  if k and q < 4:
    # MediaPipe's buffer slots 0..3 hold ymin, xmin, ymax, xmax.
    slots = [boxes[..., 1], boxes[..., 0], boxes[..., 3], boxes[..., 2]]
    for j in range(k):
      for slot, value in ((q + 2 * j, keypoints[..., j, 0]), (q + 2 * j + 1, keypoints[..., j, 1])):
        if slot < 4:
          slots[slot] = value
    ymin, xmin, ymax, xmax = slots
    boxes = jnp.stack([xmin, ymin, xmax, ymax], axis=-1)
  return boxes, keypoints


def _finish(boxes, keypoints, score, cls, candidate, options: DecoderOptions,
            min_score_thresh: jax.Array | None = None) -> Detections:
  """docs/semantics.md §2.7 steps 2-5 (filters, flip) and step 1 (max_results) on whole arrays.

  ``boxes [..., 4]`` are ``[xmin, ymin, xmax, ymax]`` before any flip.
  ``min_score_thresh`` (a traced scalar) replaces the options' threshold.
  """
  xmin, ymin, xmax, ymax = (boxes[..., i] for i in range(4))
  width, height = xmax - xmin, ymax - ymin
  valid = candidate & (width >= 0) & (height >= 0)  # NaN compares false: dropped
  valid &= _class_allowed(cls, options)
  if min_score_thresh is not None:
    valid &= score >= jnp.asarray(min_score_thresh).astype(score.dtype)
  elif options.min_score_thresh is not None:
    valid &= score >= jnp.asarray(options.min_score_thresh, score.dtype)
  if options.max_results > 0:
    valid &= jnp.cumsum(valid, axis=-1) <= options.max_results
  if options.flip_vertically:
    boxes = jnp.stack([xmin, 1 - ymax, xmax, 1 - ymin], axis=-1)
    keypoints = keypoints.at[..., 1].set(1 - keypoints[..., 1])
  return Detections(boxes=boxes, keypoints=keypoints, scores=score,
                    classes=cls.astype(jnp.int32), valid=valid)


def decode_rows(raw_boxes: jax.Array, raw_scores: jax.Array, anchors: jax.Array,
                options: DecoderOptions, *, candidate: jax.Array | None = None,
                min_score_thresh: jax.Array | None = None) -> Detections:
  """Decodes, scores and filters rows of checked raw outputs (docs/semantics.md §2.5-§2.7).

  The package's one decoding entry, shared by :func:`decode` (every anchor)
  and the detection pipeline (only the anchors its score pre-filter kept,
  gathered with their anchor rows): both produce the same values for the same
  row. ``candidate`` (default all) marks the rows that may be valid;
  ``min_score_thresh`` (a scalar, possibly traced) replaces the options'
  threshold, ``-inf`` meaning none. Traced inside the caller's jit, nothing
  is checked here.
  """
  boxes, keypoints = _decode_geometry(raw_boxes, anchors, options)
  score, cls = _score(raw_scores, options)
  if candidate is None:
    candidate = jnp.ones(score.shape, bool)
  return _finish(boxes, keypoints, score, cls, candidate, options, min_score_thresh)


@functools.partial(jax.jit, static_argnames=("options",))
def _decode(raw_boxes, raw_scores, anchors, options: DecoderOptions) -> Detections:
  return decode_rows(raw_boxes, raw_scores, anchors.astype(raw_boxes.dtype), options)


def decode(raw_boxes: ArrayLike, raw_scores: ArrayLike, anchors: ArrayLike,
           options: DecoderOptions) -> Detections:
  """Decodes raw SSD outputs into detections: MediaPipe ``TensorsToDetectionsCalculator``.

  Raw-model (2-tensor) path of docs/semantics.md §2.5–§2.7 on the CPU calculator; see the
  module docstring for conventions and precision.

  Args:
    raw_boxes: ``[..., N, num_coords]`` float regression outputs.
    raw_scores: ``[..., N, num_classes]`` float class logits or scores.
    anchors: ``[N, 4]`` rows ``[x_center, y_center, w, h]`` (see
      :func:`anchors_from_yxhw` for MediaPipe's tensor layout).
    options: static :class:`DecoderOptions`, or a preset carrying them as ``.decoder``.

  Returns:
    :class:`Detections` with ``N`` slots per batch element: ``boxes
    [..., N, 4]``, ``keypoints [..., N, num_keypoints, 2]``, ``scores``,
    ``classes`` (``-1`` where no class was allowed), ``valid``.

  Raises:
    ValueError, TypeError: at trace time, for shapes that disagree with the
      options or each other, non-float inputs, or a zero scale.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxanchors import presets, generate_anchors
    >>> options = DecoderOptions(num_classes=1, num_coords=4, reverse_output_order=True,
    ...                          x_scale=128, y_scale=128, w_scale=128, h_scale=128,
    ...                          sigmoid_score=True, min_score_thresh=0.5)
    >>> anchors = jnp.array([[0.5, 0.5, 1.0, 1.0]])
    >>> d = decode(jnp.array([[16.0, 0.0, 32.0, 64.0]]), jnp.array([[2.0]]), anchors, options)
    >>> d.boxes.tolist(), d.valid.tolist()
    ([[0.5, 0.25, 0.75, 0.75]], [True])
  """
  options = _resolve(options)
  raw_boxes, raw_scores, anchors = v.check_decoder_inputs(raw_boxes, raw_scores, anchors, options)
  return _decode(raw_boxes, raw_scores, anchors, options)


@functools.partial(jax.jit, static_argnames=("options",))
def _decode_postprocessed(boxes, classes, scores, num_detections, options) -> Detections:
  idx = options.box_boundaries_indices or (0, 1, 2, 3)
  ymin, xmin, ymax, xmax = (boxes[..., i] for i in idx)
  m = boxes.shape[-2]
  rows = jnp.arange(m)
  candidate = rows < jnp.asarray(num_detections).astype(jnp.int32)[..., None]
  cls = jnp.trunc(classes).astype(jnp.int32)
  keypoints = jnp.zeros(boxes.shape[:-1] + (0, 2), boxes.dtype)
  return _finish(jnp.stack([xmin, ymin, xmax, ymax], axis=-1), keypoints, scores, cls, candidate,
                 options)


def decode_postprocessed(boxes: ArrayLike, classes: ArrayLike, scores: ArrayLike,
                         num_detections: ArrayLike, options: DecoderOptions) -> Detections:
  """Detections of a model with built-in post-processing (4 tensors, docs/semantics.md §2.8).

  No anchors, sigmoid or decoding: box corners are read at
  ``options.box_boundaries_indices`` (default ymin, xmin, ymax, xmax), rows at
  or beyond ``num_detections`` (truncated to int) are invalid, float classes are
  truncated to ints, and §2.7's filters apply (class filter, threshold,
  size, ``max_results``, flip).

  Args:
    boxes: ``[..., M, 4]``; classes, scores: ``[..., M]``; num_detections:
      ``[...]`` or ``[..., 1]``.
    options: static :class:`DecoderOptions` (``num_coords`` 4), or a preset carrying
      them as ``.decoder``.
  """
  options = _resolve(options)
  boxes, classes, scores, num_detections = map(jnp.asarray, (boxes, classes, scores,
                                                             num_detections))
  for where, x in (("boxes", boxes), ("scores", scores)):
    v.check_float(where, x)
  v.check_shape("boxes", boxes, "[..., M, 4]")
  if classes.shape != boxes.shape[:-1] or scores.shape != boxes.shape[:-1]:
    raise ValueError(f"classes {classes.shape} and scores {scores.shape} must have shape "
                     f"{boxes.shape[:-1]} to match boxes {boxes.shape}")
  if num_detections.shape not in (boxes.shape[:-2], boxes.shape[:-2] + (1,)):
    raise ValueError(f"num_detections must have shape {boxes.shape[:-2]} (or with a trailing 1), "
                     f"got {num_detections.shape}")
  num_detections = num_detections.reshape(boxes.shape[:-2])
  return _decode_postprocessed(boxes, classes, scores, num_detections, options)


# -- encoding (training targets) ---------------------------------------------------


@functools.partial(jax.jit, static_argnames=("options",))
def _encode(boxes, keypoints, anchors, options: DecoderOptions) -> jax.Array:
  dtype = boxes.dtype
  anchors = anchors.astype(dtype)
  axc, ayc, aw, ah = anchors[:, 0], anchors[:, 1], anchors[:, 2], anchors[:, 3]
  xs, ys = jnp.asarray(options.x_scale, dtype), jnp.asarray(options.y_scale, dtype)
  ws, hs = jnp.asarray(options.w_scale, dtype), jnp.asarray(options.h_scale, dtype)
  xmin, ymin, xmax, ymax = (boxes[..., i] for i in range(4))
  if options.flip_vertically:
    ymin, ymax = 1 - ymax, 1 - ymin
    keypoints = keypoints.at[..., 1].set(1 - keypoints[..., 1])
  xc, yc = (xmin + xmax) / 2, (ymin + ymax) / 2
  w, h = xmax - xmin, ymax - ymin
  tx = (xc - axc) / aw * xs
  ty = (yc - ayc) / ah * ys
  if options.apply_exponential_on_box_size:
    tw = jnp.log(w / aw) * ws
    th = jnp.log(h / ah) * hs
  else:
    tw = w / aw * ws
    th = h / ah * hs
  fmt = options.format
  if fmt is BoxFormat.YXHW:
    box = [ty, tx, th, tw]
  elif fmt is BoxFormat.XYWH:
    box = [tx, ty, tw, th]
  else:
    box = [tw / 2 - tx, th / 2 - ty, tw / 2 + tx, th / 2 + ty]
  kx = (keypoints[..., 0] - axc[:, None]) / aw[:, None] * xs
  ky = (keypoints[..., 1] - ayc[:, None]) / ah[:, None] * ys
  kp = jnp.stack([ky, kx] if fmt is BoxFormat.YXHW else [kx, ky], axis=-1)
  kp = kp.reshape(kp.shape[:-2] + (2 * options.num_keypoints,))
  row = [jnp.zeros(boxes.shape[:-1], dtype)] * options.num_coords
  o, q = options.box_coord_offset, options.keypoint_coord_offset
  row[o:o + 4] = box
  out = jnp.stack(row, axis=-1)
  return out.at[..., q:q + 2 * options.num_keypoints].set(kp)


def encode(boxes: ArrayLike, keypoints: ArrayLike | None, anchors: ArrayLike,
           options: DecoderOptions) -> jax.Array:
  """Regression targets that :func:`decode` maps back to ``boxes`` and ``keypoints``.

  The exact inverse of the geometry of :func:`decode` (scores are not
  involved): sizes use ``log`` where decoding uses ``exp``, keypoints are
  encoded too, ``flip_vertically`` is undone. Differentiable; unused row slots
  are 0.

  Args:
    boxes: ``[..., N, 4]`` ``[xmin, ymin, xmax, ymax]`` per anchor (e.g. the
      ground truth matched to each anchor).
    keypoints: ``[..., N, num_keypoints, 2]`` ``(x, y)``, or ``None`` when the
      options have no keypoints.
    anchors: ``[N, 4]`` rows ``[x_center, y_center, w, h]``.
    options: static :class:`DecoderOptions`, or a preset carrying them as ``.decoder``.

  Returns:
    ``[..., N, num_coords]`` raw rows. With ``apply_exponential_on_box_size``
    a box of width or height <= 0 has no encoding and gives NaN.

  Raises:
    ValueError: for shapes that disagree, a zero scale, or options whose
      keypoints overlap the box slots (``keypoint_coord_offset`` < 4 with
      keypoints), which decoding cannot invert.
  """
  options = _resolve(options)
  boxes, anchors = jnp.asarray(boxes), jnp.asarray(anchors)
  v.check_float("boxes", boxes)
  v.check_float("anchors", anchors)
  v.check_shape("boxes", boxes, "[..., N, 4]")
  k = options.num_keypoints
  keypoints = v.keypoints_or_empty("keypoints", keypoints, boxes.shape[:-1], k, boxes.dtype,
                                   pattern="[..., N, num_keypoints, 2]", require_float=True)
  v.check_shape("anchors", anchors, "[N, 4]", N=boxes.shape[-2])
  o, q = options.box_coord_offset, options.keypoint_coord_offset
  if k and (q < 4 or (q < o + 4 and o < q + 2 * k)):
    raise ValueError(f"DecoderOptions.keypoint_coord_offset={options.keypoint_coord_offset} "
                     "puts keypoints over the box values; such rows cannot be encoded")
  v.check_nonzero_scales(options, "; set the model's scale")
  return _encode(boxes, keypoints.astype(boxes.dtype), anchors, options)
