"""Training targets: anchor matching, target assignment and hard-negative mining.

Contract:

* Matching is the TF Object Detection API's ``ArgMaxMatcher`` (rows are
  ground-truth boxes, columns are anchors). :func:`argmax_match` works on any
  similarity matrix ``[..., M, N]``; :func:`match` builds that matrix from
  anchors and ground-truth boxes with :func:`jaxanchors.boxes.pairwise_overlap`
  (``similarity[..., m, n] = overlap(gt m, anchor n)``, so ``MODIFIED_JACCARD``
  divides by the anchor's area).
* Anchors are the package's ``[N, 4]`` rows ``[x_center, y_center, w, h]``;
  :func:`match` turns them into corners ``xc -+ w / 2``, ``yc -+ h / 2`` in
  float32, the boxes :func:`jaxanchors.decode` produces for zero offsets.
  Ground truth is padded to a static ``M``: ``gt_boxes [..., M, 4]``
  ``[xmin, ymin, xmax, ymax]`` with ``gt_valid [..., M]``. Any leading batch
  dimensions are accepted and shared by every input except the anchors.
* A match is one int32 per anchor (TF's ``Match.match_results``): ``>= 0`` the
  index of the matched ground truth (a positive anchor), :data:`NEGATIVE`
  ``-1`` (unmatched, a negative) or :data:`IGNORE` ``-2`` (neither).
* Semantics are TF's, step by step: each anchor takes its best row
  (``argmax``); below ``unmatched_threshold`` it is negative, in
  ``[unmatched_threshold, matched_threshold)`` ignored (the two swap with
  ``negatives_lower_than_unmatched=False``); with ``force_match_for_each_row``
  every valid ground truth then claims its best anchor, overriding whatever
  that anchor had. Thresholds are compared in the similarity's dtype (TF
  converts the Python threshold to the tensor's dtype).
* Ties go to the lowest index everywhere: an anchor equally close to two
  ground truths takes the lower row; a ground truth equally close to two
  anchors force-matches the lower column (a ground truth that overlaps no
  anchor therefore force-matches anchor 0, as in TF); when several ground
  truths force-match the same anchor the first row wins and the others are not
  re-assigned (TF does no second pass), so a valid ground truth can end up
  with no anchor.
* Deliberate differences from TF, both about padding: invalid (padded) rows
  are excluded from every step, not only from force matching, so a padded row
  never matches whatever its box; with no valid row at all every anchor is
  negative (TF special-cases only a matrix with zero rows). NaN similarities
  give unspecified matches.
* Everything is jit-compiled once per shape and options; options are static.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxanchors import _compaction as compaction
from jaxanchors import _validate as v
from jaxanchors.boxes import OverlapType, anchors_to_corners, pairwise_overlap
from jaxanchors.decoding import DecoderOptions, encode

__all__ = [
    "IGNORE",
    "NEGATIVE",
    "MatcherOptions",
    "Matches",
    "Targets",
    "argmax_match",
    "assign_targets",
    "match",
    "mine_hard_negatives",
]

NEGATIVE = -1
"""Match value of an unmatched (negative) anchor."""
IGNORE = -2
"""Match value of an ignored anchor (neither positive nor negative)."""


@v.hash_once
@dataclasses.dataclass(frozen=True, kw_only=True)
class MatcherOptions(v.OptionsMixin):
  """Options of the TF Object Detection API's ``ArgMaxMatcher``, same names and defaults.

  Defaults are the ``ArgMaxMatcher`` proto's (0.5 / 0.5, negatives below).
  ``matched_threshold=None`` is the proto's ``ignore_thresholds``: every
  anchor is matched to its best ground truth whatever the overlap.
  ``unmatched_threshold=None`` means "equal to ``matched_threshold``" and is
  stored as that value, so equal configurations compare (and hash) equal.

  Construction raises ``ValueError`` where TF's constructor does: an
  ``unmatched_threshold`` without ``matched_threshold``, ``unmatched_threshold
  > matched_threshold``, and ``negatives_lower_than_unmatched=False`` with equal
  thresholds (no band for the negatives; TF's test also fires when both are
  ``None``).

  Attributes:
    matched_threshold: an anchor whose best overlap is ``>=`` this is positive.
    unmatched_threshold: below this (``<``) an anchor is negative (or ignored,
      see ``negatives_lower_than_unmatched``).
    negatives_lower_than_unmatched: ``True``: below ``unmatched_threshold`` is
      negative and between the thresholds ignored; ``False``: the reverse.
    force_match_for_each_row: every valid ground truth also claims the anchor
      it overlaps most (torchvision's "low-quality matches", SSD's bipartite
      step).
    overlap_type: the similarity :func:`match` computes, a
      :class:`~jaxanchors.boxes.OverlapType` (or its name or proto number);
      default ``INTERSECTION_OVER_UNION``. Not used by :func:`argmax_match`.
  """

  matched_threshold: float | None = 0.5
  unmatched_threshold: float | None = None
  negatives_lower_than_unmatched: bool = True
  force_match_for_each_row: bool = False
  overlap_type: OverlapType = OverlapType.INTERSECTION_OVER_UNION

  def __post_init__(self) -> None:
    w = lambda name: f"MatcherOptions.{name}"  # noqa: E731
    for name in ("matched_threshold", "unmatched_threshold"):
      if getattr(self, name) is not None:
        v.set_field(self, name, v.as_float(w(name), getattr(self, name)))
    for name in ("negatives_lower_than_unmatched", "force_match_for_each_row"):
      v.set_field(self, name, v.as_bool(w(name), getattr(self, name)))
    v.set_field(self, "overlap_type",
                v.as_enum(w("overlap_type"), OverlapType, self.overlap_type))
    matched, unmatched = self.matched_threshold, self.unmatched_threshold
    if matched is None and unmatched is not None:
      raise ValueError(f"{w('unmatched_threshold')}={unmatched} needs matched_threshold, "
                       "got matched_threshold=None")
    if unmatched is None:
      unmatched = matched
    elif unmatched > matched:
      raise ValueError(f"{w('unmatched_threshold')}={unmatched} must be <= "
                       f"matched_threshold={matched}")
    if not self.negatives_lower_than_unmatched and unmatched == matched:
      raise ValueError(f"{w('negatives_lower_than_unmatched')}=False puts negatives between "
                       f"the thresholds, which must then differ: matched_threshold={matched}, "
                       f"unmatched_threshold={unmatched}")
    v.set_field(self, "unmatched_threshold", unmatched)


class Matches(NamedTuple):
  """Per-anchor matches, a pytree that flows through jit and vmap.

  Attributes:
    indices: ``[..., N]`` int32: the matched ground-truth row (``>= 0``),
      :data:`NEGATIVE` (-1) or :data:`IGNORE` (-2).
  """

  indices: jax.Array

  @property
  def positive(self) -> jax.Array:
    """``[..., N]`` bool: matched to a ground truth."""
    return self.indices >= 0

  @property
  def negative(self) -> jax.Array:
    """``[..., N]`` bool: unmatched (background)."""
    return self.indices == NEGATIVE

  @property
  def ignored(self) -> jax.Array:
    """``[..., N]`` bool: neither positive nor negative."""
    return self.indices == IGNORE

  @property
  def num_positives(self) -> jax.Array:
    """``[...]`` int32 number of positive anchors."""
    return jnp.sum(self.positive, axis=-1, dtype=jnp.int32)


class Targets(NamedTuple):
  """Per-anchor training targets from :func:`assign_targets`.

  Attributes:
    regression: ``[..., N, num_coords]`` raw rows that :func:`jaxanchors.decode`
      maps to the matched ground truth (:func:`jaxanchors.encode`); 0 on
      anchors that are not positive.
    regression_weights: ``[..., N]`` float, 1 on positives, else 0.
    class_ids: ``[..., N]`` int32, the matched ground truth's class on
      positives, ``background_class`` (default -1) elsewhere.
    class_one_hot: ``[..., N, num_classes]`` float one-hot of ``class_ids``
      (all zeros for -1, i.e. sigmoid "no class").
    class_weights: ``[..., N]`` float, 1 on positives and negatives, 0 on
      ignored anchors.
    matches: the :class:`Matches` the targets were built from.
  """

  regression: jax.Array
  regression_weights: jax.Array
  class_ids: jax.Array
  class_one_hot: jax.Array
  class_weights: jax.Array
  matches: Matches


# -- matching ------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("options",))
def _argmax_match(similarity: jax.Array, valid: jax.Array, options: MatcherOptions) -> jax.Array:
  m, n = similarity.shape[-2:]
  if m == 0 or n == 0:
    return jnp.full(similarity.shape[:-2] + (n,), NEGATIVE, jnp.int32)
  dtype = similarity.dtype
  valid_col = valid[..., :, None]
  # Step 3, over valid rows only: the best value, then the lowest valid row
  # holding it (robust to -inf similarities, unlike masking with -inf alone).
  best = jnp.max(jnp.where(valid_col, similarity, -jnp.inf), axis=-2)
  indices = jnp.argmax(valid_col & (similarity == best[..., None, :]), axis=-2).astype(jnp.int32)
  if options.matched_threshold is not None:
    # Step 4: TF's _set_values_using_indicator, thresholds in the matrix dtype.
    hi = jnp.asarray(options.matched_threshold, dtype)
    lo = jnp.asarray(options.unmatched_threshold, dtype)
    below = best < lo
    between = (best >= lo) & (best < hi)
    low_value, band_value = ((NEGATIVE, IGNORE) if options.negatives_lower_than_unmatched
                             else (IGNORE, NEGATIVE))
    indices = jnp.where(below, low_value, jnp.where(between, band_value, indices))
  if options.force_match_for_each_row:
    # Step 5: each valid row claims its best column (lowest on ties); where
    # several rows claim one column the first row wins.
    column = jnp.argmax(similarity, axis=-1)
    claims = (column[..., :, None] == jnp.arange(n)) & valid_col
    forced_row = jnp.argmax(claims, axis=-2).astype(jnp.int32)
    indices = jnp.where(jnp.any(claims, axis=-2), forced_row, indices)
  # No valid row: every anchor is negative (TF's empty-matrix case).
  return jnp.where(jnp.any(valid, axis=-1)[..., None], indices, NEGATIVE).astype(jnp.int32)


def _check_options(options: Any) -> MatcherOptions:
  # No preset carries matcher options: MediaPipe's graphs run trained models.
  return v.resolve_options(options, MatcherOptions, None)


def argmax_match(similarity: ArrayLike, valid_rows: ArrayLike | None,
                 options: MatcherOptions) -> Matches:
  """TF ``ArgMaxMatcher.match`` on a similarity matrix (rows ground truth, columns anchors).

  See the module docstring for the semantics, ties and padding.

  Args:
    similarity: ``[..., M, N]`` float, higher is more similar.
    valid_rows: ``[..., M]`` bool, or ``None`` for all rows valid.
    options: static :class:`MatcherOptions` (``overlap_type`` is not used). No preset
      carries matcher options: MediaPipe's graphs only run trained models.

  Returns:
    :class:`Matches` with ``indices [..., N]`` int32.

  Examples:
    >>> import jax.numpy as jnp
    >>> sim = jnp.array([[0.9, 0.45, 0.1, 0.0],
    ...                  [0.0, 0.0,  0.2, 0.3]])
    >>> opts = MatcherOptions(matched_threshold=0.5, unmatched_threshold=0.4)
    >>> argmax_match(sim, None, opts).indices.tolist()
    [0, -2, -1, -1]
    >>> opts = MatcherOptions(matched_threshold=0.5, unmatched_threshold=0.4,
    ...                       force_match_for_each_row=True)
    >>> argmax_match(sim, None, opts).indices.tolist()
    [0, -2, -1, 1]
    >>> argmax_match(sim, jnp.array([True, False]), opts).indices.tolist()
    [0, -2, -1, -1]
  """
  options = _check_options(options)
  sim = jnp.asarray(similarity)
  v.check_float("similarity", sim)
  v.check_shape("similarity", sim, "[..., M, N]")
  valid = v.mask_or_all("valid_rows", valid_rows, sim.shape[:-1])
  return Matches(_argmax_match(sim, valid, options))


@functools.partial(jax.jit, static_argnames=("options",))
def _match(anchors, gt_boxes, gt_valid, options: MatcherOptions) -> jax.Array:
  sim = pairwise_overlap(gt_boxes, anchors_to_corners(anchors).astype(gt_boxes.dtype),
                         overlap_type=options.overlap_type)
  return _argmax_match(sim, gt_valid, options)


def match(anchors: ArrayLike, gt_boxes: ArrayLike, gt_valid: ArrayLike | None,
          options: MatcherOptions) -> Matches:
  """Matches anchors to padded ground-truth boxes: TF ``ArgMaxMatcher`` on their overlap.

  The anchors' corners (module docstring) are compared with every ground
  truth by ``options.overlap_type`` (default IoU) and :func:`argmax_match`
  decides. For fixed-size anchors (BlazeFace tables have ``w = h = 1``) pass
  a table with meaningful sizes here, e.g. the same :class:`AnchorOptions` with
  ``fixed_anchor_size=False``: the centres and order are the same, so the
  matches apply to the decoding anchors unchanged.

  Args:
    anchors: ``[N, 4]`` rows ``[x_center, y_center, w, h]``.
    gt_boxes: ``[..., M, 4]`` float ``[xmin, ymin, xmax, ymax]``, padded to a
      static ``M``.
    gt_valid: ``[..., M]`` bool (``False`` marks padding), or ``None`` for all
      rows valid.
    options: static :class:`MatcherOptions` (no preset carries them, see
      :func:`argmax_match`).

  Returns:
    :class:`Matches` with ``indices [..., N]`` int32.

  Examples:
    >>> import jax.numpy as jnp
    >>> anchors = jnp.array([[0.25, 0.25, 0.5, 0.5], [0.75, 0.75, 0.5, 0.5],
    ...                      [0.75, 0.25, 0.5, 0.5]])
    >>> gt = jnp.array([[0.0, 0.0, 0.5, 0.6], [0.5, 0.5, 0.7, 0.7], [0.0, 0.0, 1.0, 1.0]])
    >>> valid = jnp.array([True, True, False])
    >>> match(anchors, gt, valid, MatcherOptions()).indices.tolist()
    [0, -1, -1]
    >>> m = match(anchors, gt, valid, MatcherOptions(force_match_for_each_row=True))
    >>> m.indices.tolist(), m.positive.tolist()
    ([0, 1, -1], [True, True, False])
  """
  options = _check_options(options)
  anchors, gt_boxes = jnp.asarray(anchors), jnp.asarray(gt_boxes)
  for where, x in (("anchors", anchors), ("gt_boxes", gt_boxes)):
    v.check_float(where, x)
  v.check_shape("anchors", anchors, "[N, 4]", note=" ([x_center, y_center, w, h])")
  v.check_shape("gt_boxes", gt_boxes, "[..., M, 4]", note=" ([xmin, ymin, xmax, ymax])")
  gt_valid = v.mask_or_all("gt_valid", gt_valid, gt_boxes.shape[:-1])
  return Matches(_match(anchors, gt_boxes, gt_valid, options))


# -- target assignment ---------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("options", "background_class"))
def _assign(indices, gt_boxes, gt_keypoints, gt_classes, anchors, options: DecoderOptions,
            background_class: int | None) -> Targets:
  dtype = gt_boxes.dtype
  anchors = anchors.astype(dtype)
  positive = indices >= 0
  batch = indices.shape
  k = options.num_keypoints
  # Anchors that are not positive encode their own box (offsets 0, finite even
  # with log sizes); their rows are zeroed below.
  boxes = jnp.broadcast_to(anchors_to_corners(anchors), batch + (4,))
  keypoints = jnp.broadcast_to(anchors[:, None, :2], batch + (k, 2))
  cls = jnp.full(batch, -1, jnp.int32)
  if gt_boxes.shape[-2]:
    rows = jnp.clip(indices, 0, gt_boxes.shape[-2] - 1)
    boxes = jnp.where(positive[..., None], compaction.take(gt_boxes, rows), boxes)
    keypoints = jnp.where(positive[..., None, None], compaction.take(gt_keypoints, rows), keypoints)
    cls = jnp.where(positive, compaction.take(gt_classes, rows), cls)
  raw = encode(boxes, keypoints if k else None, anchors, options)
  regression = jnp.where(positive[..., None], raw, 0)
  if background_class is not None:
    cls = jnp.where(positive, cls, background_class)
  one_hot = jax.nn.one_hot(cls, options.num_classes, dtype=dtype)
  return Targets(regression=regression, regression_weights=positive.astype(dtype),
                 class_ids=cls, class_one_hot=one_hot,
                 class_weights=(indices != IGNORE).astype(dtype), matches=Matches(indices))


def assign_targets(matches: Matches, gt_boxes: ArrayLike, anchors: ArrayLike,
                   options: DecoderOptions, *, gt_keypoints: ArrayLike | None = None,
                   gt_classes: ArrayLike | None = None,
                   background_class: int | None = None) -> Targets:
  """Regression and classification targets with per-anchor weights (TF ``TargetAssigner``).

  Positive anchors regress to their matched ground truth through
  :func:`jaxanchors.encode`, so ``decode(targets.regression)`` on them gives
  the ground-truth box and keypoints back within float32 rounding. Negatives
  and ignored anchors get zero rows and zero regression weight; ignored
  anchors also get zero classification weight.

  ``anchors`` are the *decoding* anchors (those given to
  :func:`jaxanchors.decode` at inference), which may differ in size from the
  table used for :func:`match` (BlazeFace's unit anchors).

  Args:
    matches: from :func:`match` or :func:`argmax_match`, ``indices [..., N]``.
    gt_boxes: ``[..., M, 4]`` float ``[xmin, ymin, xmax, ymax]``, the padded
      ground truth the matches index. A positive matched to a box of zero
      width or height encodes to ``-inf``/NaN with exponential sizes.
    anchors: ``[N, 4]`` rows ``[x_center, y_center, w, h]``.
    options: static :class:`~jaxanchors.DecoderOptions` (or a preset carrying them as
      ``.decoder``) of the model head
      (box format, scales, keypoints, ``num_classes``).
    gt_keypoints: ``[..., M, num_keypoints, 2]`` ``(x, y)``; required when the
      options have keypoints.
    gt_classes: ``[..., M]`` int class ids in ``[0, num_classes)``; default all
      0 (a single-class detector). Out-of-range ids give an all-zero one-hot.
    background_class: class id given to anchors that are not positive; ``None``
      (default) gives -1 and an all-zero one-hot (sigmoid scoring with no
      background class, as BlazeFace); e.g. 0 for SSD heads whose class 0 is
      background.

  Returns:
    :class:`Targets`.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxanchors import DecoderOptions
    >>> opts = DecoderOptions(num_classes=1, num_coords=4, reverse_output_order=True,
    ...                       x_scale=10, y_scale=10, w_scale=5, h_scale=5,
    ...                       apply_exponential_on_box_size=True)
    >>> anchors = jnp.array([[0.25, 0.25, 0.5, 0.5], [0.75, 0.75, 0.5, 0.5]])
    >>> gt = jnp.array([[0.0, 0.0, 0.5, 0.5]])
    >>> t = assign_targets(Matches(jnp.array([0, -1])), gt, anchors, opts)
    >>> t.regression.tolist(), t.class_one_hot.tolist(), t.class_weights.tolist()
    ([[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]], [[1.0], [0.0]], [1.0, 1.0])
  """
  if not isinstance(matches, Matches):
    raise TypeError(f"matches must be Matches, got {type(matches).__name__}")
  options = v.resolve_options(options, DecoderOptions, "decoder")
  indices = jnp.asarray(matches.indices)
  gt_boxes, anchors = jnp.asarray(gt_boxes), jnp.asarray(anchors)
  for where, x in (("gt_boxes", gt_boxes), ("anchors", anchors)):
    v.check_float(where, x)
  if not jnp.issubdtype(indices.dtype, jnp.integer) or indices.ndim < 1:
    raise TypeError(f"matches.indices must be an int array [..., N], got {indices.dtype} "
                    f"{indices.shape}")
  lead, n = indices.shape[:-1], indices.shape[-1]
  if gt_boxes.ndim < 2 or gt_boxes.shape[-1] != 4 or gt_boxes.shape[:-2] != lead:
    raise ValueError(f"gt_boxes must have shape {lead + ('M', 4)} to go with matches "
                     f"{indices.shape}, got {gt_boxes.shape}")
  v.check_shape("anchors", anchors, "[N, 4]", N=n)
  gt_keypoints = v.keypoints_or_empty("gt_keypoints", gt_keypoints, gt_boxes.shape[:-1],
                                      options.num_keypoints, gt_boxes.dtype,
                                      pattern="[..., M, num_keypoints, 2]",
                                      require_float=False)
  if gt_classes is None:
    gt_classes = jnp.zeros(gt_boxes.shape[:-1], jnp.int32)
  gt_classes = jnp.asarray(gt_classes)
  v.check_int("gt_classes", gt_classes)
  if gt_classes.shape != gt_boxes.shape[:-1]:
    raise ValueError(f"gt_classes must have shape {gt_boxes.shape[:-1]}, got "
                     f"{gt_classes.shape}")
  if background_class is not None:
    background_class = v.as_int("background_class", background_class, minimum=0)
    if background_class >= options.num_classes:
      raise ValueError(f"background_class={background_class} is not a class id in [0, "
                       f"num_classes={options.num_classes})")
  return _assign(indices.astype(jnp.int32), gt_boxes,
                 gt_keypoints.astype(gt_boxes.dtype), gt_classes.astype(jnp.int32), anchors,
                 options, background_class)


# -- hard-negative mining ------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("ratio", "min_negatives"))
def _mine(losses, indices, ratio: float, min_negatives: int) -> jax.Array:
  negative = indices == NEGATIVE
  num_pos = jnp.sum(indices >= 0, axis=-1, dtype=jnp.int32)
  num_neg = jnp.sum(negative, axis=-1, dtype=jnp.int32)
  quota = jnp.floor(num_pos.astype(jnp.float32) * jnp.float32(ratio)).astype(jnp.int32)
  keep = jnp.minimum(jnp.maximum(quota, min_negatives), num_neg)
  # Rank negatives by loss, highest first, lowest anchor index on ties; every
  # other anchor sorts after them, so rank < keep selects negatives only.
  key = jnp.where(negative, losses, -jnp.inf)
  order = jnp.argsort(-key, axis=-1, stable=True)
  rank = jnp.argsort(order, axis=-1, stable=True)
  return negative & (rank < keep[..., None])


def mine_hard_negatives(losses: ArrayLike, matches: Matches, *,
                        negative_positive_ratio: float = 3.0,
                        min_negatives: int = 0) -> jax.Array:
  """SSD hard-negative mining with static shapes: the highest-loss negatives per image.

  Per image (the last axis), keeps ``min(num_negatives, max(min_negatives,
  floor(ratio * num_positives)))`` negative anchors, those with the largest
  ``losses`` (lowest anchor index first among equal losses), as a mask; the
  product ``ratio * num_positives`` is taken in float32. Use it as the
  classification weight of negatives (positives keep theirs, the other
  negatives get 0). The selection is not differentiable (a mask); the loss
  it weights is. Unlike TF's ``HardExampleMiner``, there is no NMS among the
  mined anchors. NaN losses give an unspecified selection.

  Args:
    losses: ``[..., N]`` float per-anchor classification loss.
    matches: :class:`Matches` with ``indices [..., N]``.
    negative_positive_ratio: static, ``>= 0``; SSD uses 3.
    min_negatives: static, ``>= 0``; negatives kept even in an image with no
      positives (TF's ``min_negatives_per_image``).

  Returns:
    ``[..., N]`` bool, ``True`` on the selected negatives only.

  Examples:
    >>> import jax.numpy as jnp
    >>> m = Matches(jnp.array([0, -1, -1, -2, -1, -1]))
    >>> loss = jnp.array([5.0, 0.1, 0.9, 9.0, 0.5, 0.9])
    >>> mine_hard_negatives(loss, m, negative_positive_ratio=2).tolist()
    [False, False, True, False, False, True]
  """
  if not isinstance(matches, Matches):
    raise TypeError(f"matches must be Matches, got {type(matches).__name__}")
  ratio = v.as_float("negative_positive_ratio", negative_positive_ratio, minimum=0.0)
  min_negatives = v.as_int("min_negatives", min_negatives, minimum=0)
  losses, indices = jnp.asarray(losses), jnp.asarray(matches.indices)
  v.check_float("losses", losses)
  if losses.shape != indices.shape or losses.ndim < 1:
    raise ValueError(f"losses must have the shape of matches.indices {indices.shape} "
                     f"([..., N]), got {losses.shape}")
  return _mine(losses, indices, ratio, min_negatives)
