"""Non-maximum suppression: MediaPipe's ``NonMaxSuppressionCalculator``.

Contract (docs/semantics.md §3):

* Input and output are :class:`~jaxanchors.detections.Detections`. The input
  has ``N`` slots, the output ``max_detections`` slots (a static Python int),
  filled in MediaPipe's emission order -- descending score of the retained
  (DEFAULT) or top (WEIGHTED) detection, docs/semantics.md §3.6 -- with ``valid`` marking
  the used ones. Unused slots are zero-filled (class 0) and ``valid=False``.
  Any leading batch dimensions are processed independently.
* **Candidates** are the input slots with ``valid=True``, a finite score,
  four finite box coordinates and finite keypoints. Anything else is ignored: it is never emitted,
  never suppresses or is blended into another detection, and its NaN or inf
  values cannot reach any output.
* **Order.** Candidates are ranked by descending score; equal scores are
  ranked by lower slot index (a stable sort). MediaPipe's ``std::sort`` leaves
  the order of equal scores unspecified (§3.2); this is the deterministic
  choice (docs/semantics.md §6). ``-0.0`` and ``0.0`` are equal scores.
* **Overlap** is :func:`jaxanchors.boxes.overlap` (§3.3), including
  MediaPipe's float32 rebuilding of ``xmax = xmin + width``, so suppression
  decisions at a threshold match MediaPipe bit for bit on float32 input.
  Thresholds are compared as MediaPipe's float32 proto fields:
  ``overlap > f32(min_suppression_threshold)``, ``score < f32(min_score_threshold)``.
* **DEFAULT** (§3.4) is greedy hard NMS; retained detections are emitted
  unchanged. **WEIGHTED** (§3.5) blends boxes and keypoints; see
  :func:`non_max_suppression` for the details.

Deliberate differences from MediaPipe:

* Non-finite scores, boxes and keypoints are not candidates (MediaPipe's sort
  comparator is invalid with NaN scores, §3.2, its decoder drops NaN boxes,
  §2.7, and a NaN keypoint would be emitted or blended into its cluster).
* The output has ``max_detections`` slots. DEFAULT keeps the first
  ``min(max_detections, max_num_detections)`` retained detections (``-1`` =
  no MediaPipe limit), exactly MediaPipe's first ones. WEIGHTED ignores
  ``max_num_detections`` as MediaPipe does; its emission sequence is cut after
  ``max_detections`` outputs, which are exactly MediaPipe's first ones.
* ``return_empty_detections`` and ``num_detection_streams`` have no effect
  (they are validated and kept for fidelity). A frame without candidates yields
  all slots invalid; concatenate several input streams along ``N`` yourself.
* WEIGHTED sums its weights in a different order than MediaPipe's sequential
  loop, so blended values may differ by float32 rounding (a few ulps for the
  usual cluster sizes; the tests hold them to 1e-6).
* The optional ``top_k`` pre-selection is not MediaPipe's (opt-in speed knob).
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxanchors import _compaction as compaction
from jaxanchors import _geometry as g
from jaxanchors import _validate as v
from jaxanchors.boxes import OverlapType
from jaxanchors.detections import Detections

__all__ = ["NmsAlgorithm", "NmsOptions", "OverlapType", "non_max_suppression"]


class NmsAlgorithm(enum.Enum):
  """MediaPipe's ``NonMaxSuppressionCalculatorOptions.NmsAlgorithm`` (docs/semantics.md §3.1).

  Values are the proto numbers; a member, its name (any case) or its number is
  accepted wherever an algorithm is expected.
  """

  DEFAULT = 0
  WEIGHTED = 1


@v.hash_once
@dataclasses.dataclass(frozen=True, kw_only=True)
class NmsOptions(v.OptionsMixin):
  """Options of MediaPipe's ``NonMaxSuppressionCalculator`` (docs/semantics.md §3.1).

  Same field names and defaults as the proto.

  Frozen and hashable, so options can be static arguments of jitted functions.
  Enums accept a member, its name (any case) or its proto number. Construction
  raises ``TypeError``/``ValueError`` naming the field where MediaPipe would
  abort (``num_detection_streams`` or ``max_num_detections`` out of range,
  ``UNSPECIFIED_OVERLAP_TYPE``), and also rejects non-finite thresholds and a
  negative ``min_suppression_threshold`` (every overlap, 0 for disjoint boxes
  included, would exceed it: DEFAULT would keep one box per frame and
  WEIGHTED blend everything into it; almost surely a typo).

  Proto defaults are kept for fidelity even where they are traps:
  ``min_suppression_threshold`` defaults to **1.0**, so DEFAULT suppresses
  nothing and WEIGHTED returns only the single best detection (§3.5 early
  stop); ``overlap_type`` defaults to ``JACCARD``, which is *not* IoU (every
  shipped graph sets ``INTERSECTION_OVER_UNION``).

  Attributes:
    num_detection_streams: number of MediaPipe input streams (>= 1). Has no
      effect here: concatenate streams along the detection axis.
    max_num_detections: DEFAULT output limit; ``-1`` = none. Must not be 0.
      Ignored by WEIGHTED (as in MediaPipe).
    min_suppression_threshold: overlap threshold (>= 0); suppression (DEFAULT)
      or merging (WEIGHTED) needs overlap strictly greater than it.
    overlap_type: :class:`~jaxanchors.boxes.OverlapType`.
    return_empty_detections: MediaPipe's choice between an empty list and no
      packet; no effect with static shapes (all slots invalid).
    min_score_threshold: active only if > 0: processing stops at the first
      ranked detection whose score is below it.
    algorithm: :class:`NmsAlgorithm`.
  """

  num_detection_streams: int = 1
  max_num_detections: int = -1
  min_suppression_threshold: float = 1.0
  overlap_type: OverlapType = OverlapType.JACCARD
  return_empty_detections: bool = False
  min_score_threshold: float = -1.0
  algorithm: NmsAlgorithm = NmsAlgorithm.DEFAULT

  def __post_init__(self) -> None:
    w = lambda name: f"NmsOptions.{name}"  # noqa: E731
    v.set_field(self, "num_detection_streams",
                v.as_int(w("num_detection_streams"), self.num_detection_streams, minimum=1))
    limit = v.as_int(w("max_num_detections"), self.max_num_detections, minimum=-1)
    if limit == 0:
      raise ValueError(f"{w('max_num_detections')} must not be 0 (MediaPipe aborts); "
                       "use -1 for no limit")
    v.set_field(self, "max_num_detections", limit)
    for name in ("min_suppression_threshold", "min_score_threshold"):
      v.set_field(self, name, v.as_float(w(name), getattr(self, name)))
    if self.min_suppression_threshold < 0:
      raise ValueError(f"{w('min_suppression_threshold')} must be >= 0, got "
                       f"{self.min_suppression_threshold} (every pair of boxes would overlap, "
                       "disjoint ones too)")
    v.set_field(self, "overlap_type", v.as_enum(w("overlap_type"), OverlapType, self.overlap_type))
    v.set_field(self, "algorithm", v.as_enum(w("algorithm"), NmsAlgorithm, self.algorithm))
    v.set_field(self, "return_empty_detections",
                v.as_bool(w("return_empty_detections"), self.return_empty_detections))


# -- tuning constants (chosen by measurement on a 2-core x86 CPU; see
# benchmarks/bench_nms.py and benchmarks/RESULTS.md) -------------------------

# Candidate-count buckets: a batch whose largest per-frame candidate count fits
# a bucket is compacted to that many slots before NMS (loop-engine time grows
# about linearly with the slots; each bucket is one more compiled branch).
_BUCKETS = (32, 64, 128, 256, 512, 1024, 4096)
# DEFAULT on more slots than this runs tile by tile (else one while-loop step
# per retained detection over all slots). Single frames would gain from tiles
# from ~512 slots (1024 random boxes, keep 100: loop 0.34 ms, tiles 0.16 ms),
# but a batch pays batched top_k per tile (64 frames x 1024 slots in four
# clusters, keep <= 100: loop 7.9 ms, tiles 25 ms), so the loop keeps every
# bucket up to 1024.
_TILED_MIN = 1024
# Tile size of the tiled DEFAULT NMS: 128 when at most 128 boxes are kept,
# else 256 (20,000 boxes: keep 100 fastest with 128, keep 1000 with 256).
_TILE_SMALL, _TILE = 128, 256
# Kept boxes are compared with a new tile in chunks of this many.
_KEPT_CHUNK = 256
# The loop engine searches slot numbers as float32 (exact below 2**24), which
# saves kernels, and as int32 beyond.
_FLOAT_SLOTS_MAX = 2**24


def _resolve(options: Any) -> NmsOptions:
  return v.resolve_options(options, NmsOptions, "nms")


def _plan(n: int, weighted: bool) -> tuple[tuple[int, str], ...]:
  """Static (slots, engine) per bucket, ascending; the last one holds all ``n`` slots."""
  def engine(p: int) -> str:
    return "tiled" if (not weighted and p > _TILED_MIN) else "loop"
  return tuple((p, engine(p)) for p in compaction.bucket_sizes(n, _BUCKETS))


class _Rows:
  """The per-candidate quantities of one bucket, packed into two arrays.

  ``rects [8, B, P]``: MediaPipe's rectangle (xmin, ymin, rebuilt xmax and
  ymax, area, non-empty), the live score (``-inf`` for non-candidates) and
  WEIGHTED's "its own member" flag, one contiguous row per quantity, as the
  NMS loop reads them whole at every step. ``values [B, P, 4 + 2K + 1]``: the
  box, keypoints and score of each candidate, for the outputs and the
  weighted sums. Both in the widest of the inputs' dtypes, each quantity read
  back in its own, exactly.

  On XLA:CPU a small array costs a kernel launch wherever it is materialised,
  and the loop, the outputs and the weighted sums read a dozen such
  quantities. Computed as two arrays behind an optimisation barrier (which
  keeps XLA from splitting them back into their parts), they cost two kernels,
  and every read is a slice fused into the kernel that uses it.
  """

  def __init__(self, boxes, keypoints, scores, member, thr, *, kind, weighted, dtype):
    self.box_dtype, self.kp_dtype, self.score_dtype = boxes.dtype, keypoints.dtype, scores.dtype
    self.k = keypoints.shape[-2]
    r = g.rects(boxes)
    # Own member: whether each candidate would absorb itself (the §3.5 early stop).
    own = (g.overlap_rects(r, r, kind) > thr) if weighted else jnp.zeros(scores.shape, bool)
    # At most 8 operands each: XLA:CPU fuses a concatenation of no more.
    rects = jnp.stack([a.astype(dtype) for a in (*r, jnp.where(member, scores, -jnp.inf), own)])
    values = jnp.concatenate([boxes.astype(dtype),
                              keypoints.reshape(scores.shape + (-1,)).astype(dtype),
                              scores[..., None].astype(dtype)], axis=-1)
    self.rects, self.values = lax.optimization_barrier((rects, values))

  def rects_of(self, rects) -> g.Rects:
    """The rectangles of ``rects`` (or of columns taken from it)."""
    return g.Rects(*(rects[i].astype(self.box_dtype) for i in range(5)), rects[5] > 0)

  def live(self, rects) -> jax.Array:
    return rects[6].astype(self.score_dtype)

  def own_member(self, rects) -> jax.Array:
    return rects[7] > 0

  def boxes(self, values) -> jax.Array:
    return values[..., :4].astype(self.box_dtype)

  def keypoints(self, values) -> jax.Array:
    kp = values[..., 4:4 + 2 * self.k].astype(self.kp_dtype)
    return kp.reshape(kp.shape[:-1] + (self.k, 2))

  def scores(self, values) -> jax.Array:
    return values[..., -1].astype(self.score_dtype)


def _loop_engine(rows: _Rows, thr, min_score, limit, *, kind, weighted, slots):
  """A batch of frames; one ``lax.while_loop`` step per emitted detection (§3.4, §3.5).

  Each step takes, in every frame still emitting, the best remaining candidate
  ``t`` (first maximum, so ties go to the lower slot), records it as the
  frame's next output and removes what it suppresses (DEFAULT) or absorbs
  (WEIGHTED; each absorbed candidate records the step that absorbed it, so all
  weighted means can be formed after the loop in one segment sum). A frame
  stops when nothing remains, when its best remaining score is below an active
  ``min_score`` (the §3.4/§3.5 break) or at the WEIGHTED early stop; the loop
  ends when every frame has stopped or ``limit`` outputs are out. ``O(B * P)``
  per step, ``O(B * P * outputs)`` in all.

  The frames are stepped together by hand rather than by ``vmap``: the body is
  then a handful of fused XLA kernels, and XLA:CPU runs a loop body of few
  kernels inline, without handing work between threads at every step. Every
  per-candidate quantity is read from ``rows.rects`` (see :class:`_Rows`).

  Returns ``(slot [B, slots], step [B, P])``: the emitting slot of every output
  (``-1`` unused) and, WEIGHTED only, the step that absorbed each candidate
  (``-1`` none; ``None`` for DEFAULT).
  """
  pack = rows.rects
  b, p = pack.shape[1:]
  active = min_score > 0

  def best(live):
    # Slot numbers as float32 make the first-maximum search two float
    # reductions (an integer reduction takes two XLA:CPU kernels).
    iota = lax.broadcasted_iota(jnp.float32 if p < _FLOAT_SLOTS_MAX else jnp.int32, (b, p), 1)
    m = jnp.max(live, axis=1)
    t = jnp.min(jnp.where(live == m[:, None], iota, p), axis=1)
    return m, t.astype(jnp.int32)

  def emitting(m):
    return (m > -jnp.inf) & ~(active & (m < min_score))

  # The loop state is two arrays, each updated by one kernel per step:
  # ``cand [B, P]`` per candidate and ``small [B, slots + 1]`` (the slot of
  # each output, -1 unused, then the step count). DEFAULT's ``cand`` is
  # ``live``, the remaining candidates' scores (-inf for the others);
  # WEIGHTED's is ``step``, the step that absorbed each candidate (-1 if none
  # yet), and ``live`` is read from it. The best candidate is found at the
  # start of each step rather than carried over (values read after their
  # update cost XLA copies). A loop body of at most 8 kernels runs in one
  # XLA:CPU thread; more are run as a concurrent graph over the thread pool,
  # and on small arrays the hand-overs cost more than the work.
  def live_of(cand):
    if weighted:
      return jnp.where(cand < 0, rows.live(pack), -jnp.inf)
    return cand

  def cond(c):
    cand, small = c
    return (small[0, slots] < limit) & jnp.any(emitting(jnp.max(live_of(cand), axis=1)))

  def body(c):
    cand, small = c
    n = small[:, slots:]  # [B, 1], equal entries
    live = live_of(cand)
    m, t = best(live)
    go = emitting(m)[:, None]
    t = t[:, None]
    row = jnp.take_along_axis(pack, t[None], axis=2, mode="promise_in_bounds")  # [8, B, 1]
    top, r = rows.rects_of(row), rows.rects_of(pack)
    is_top = go & (lax.broadcasted_iota(jnp.int32, (b, p), 1) == t)
    if weighted:
      hit = go & (g.overlap_rects(r, top, kind) > thr)  # overlap(other, top)
      # The top is its own member exactly when anything is (threshold < 1 and
      # positive area, or threshold < 0); if not, §3.5 stops the frame here.
      remove = hit | is_top | (go & ~rows.own_member(row))
      cand = jnp.where(remove & (live > -jnp.inf), n, cand)
    else:
      remove = is_top | (go & (g.overlap_rects(top, r, kind) > thr))  # overlap(kept, other)
      cand = jnp.where(remove, -jnp.inf, live)
    col = lax.broadcasted_iota(jnp.int32, (b, slots + 1), 1)
    small = jnp.where(col == slots, n + 1, jnp.where((col == n) & go, t, small))
    return cand, small

  if weighted:
    cand = jnp.full((b, p), -1, jnp.int32)
  else:
    cand = rows.live(pack)
  small = jnp.concatenate([jnp.full((b, slots), -1, jnp.int32), jnp.zeros((b, 1), jnp.int32)], 1)
  step, small = lax.while_loop(cond, body, (cand, small))
  return small[:, :slots], (step if weighted else None)


def _greedy_in_tile(alive: jax.Array, suppresses: jax.Array) -> jax.Array:
  """Greedy keep mask of one score-ordered tile by fixed-point iteration.

  ``suppresses[i, j]`` (only ``i < j``) says a kept ``i`` removes ``j``. The
  map ``keep -> alive & ~any_i(keep[i] & suppresses[i, :])`` has the greedy
  solution as its unique fixed point, and after ``t`` rounds the first ``t``
  entries are final, so iterating until nothing changes ends on the greedy
  result after at most ``T`` rounds (in practice a handful: the longest chain
  of suppressions inside the tile).
  """
  def step(keep):
    return alive & ~jnp.any(suppresses & keep[:, None], axis=0)

  def body(c):
    return step(c[0]), c[0]

  first = step(alive)
  return lax.while_loop(lambda c: jnp.any(c[0] != c[1]), body, (first, alive))[0]


def _tiled_engine(boxes, scores, member, thr, limit, *, kind, slots, tile):
  """One frame of DEFAULT NMS over many candidates, ``tile`` ranked slots at a time.

  Each round fetches the next ``tile`` candidates in rank order with
  ``lax.top_k`` (those ranked after the previous tile's last one), drops those
  an already-kept box suppresses (compared in chunks with the kept boxes only),
  runs exact greedy inside the tile (:func:`_greedy_in_tile`) and appends the
  survivors. Stops once ``limit`` are kept or candidates run out, so the cost
  is ``O(rounds * (P log tile + kept * tile + tile**2))`` and rounds are about
  ``limit / (tile * survival rate)``. Exact for every threshold.
  """
  p = boxes.shape[0]
  key = jnp.where(member, scores, -jnp.inf)
  key = jnp.where(key == 0, jnp.zeros_like(key), key)  # top_k would rank -0.0 below 0.0
  iota = lax.iota(jnp.int32, p)
  upper = np.triu(np.ones((tile, tile), bool), 1)
  chunk = min(_KEPT_CHUNK, slots)
  n_chunks = -(-slots // chunk)
  cap = n_chunks * chunk

  def cross(kept, n, tb):
    """Which tile boxes one of the first ``n`` kept boxes suppresses."""
    def body(c):
      j, sup = c
      kb = lax.dynamic_slice_in_dim(kept, j * chunk, chunk)
      ok = (lax.iota(jnp.int32, chunk) + j * chunk) < n
      hit = (g.pairwise(kb, tb, kind) > thr) & ok[:, None]
      return j + 1, sup | jnp.any(hit, axis=0)
    return lax.while_loop(lambda c: c[0] * chunk < n, body,
                          (jnp.int32(0), jnp.zeros((tile,), bool)))[1]

  def body(c):
    last_s, last_i, n, _, kept, out_i = c
    after = (key < last_s) | ((key == last_s) & (iota > last_i))
    kv, ki = lax.top_k(jnp.where(after, key, -jnp.inf), tile)
    live = kv > -jnp.inf
    tb = boxes[ki]
    alive = live & ~cross(kept, n, tb)
    sup = (g.pairwise(tb, tb, kind) > thr) & upper
    keep = _greedy_in_tile(alive, sup)
    pos = n + jnp.cumsum(keep, dtype=jnp.int32) - 1
    dest = jnp.where(keep & (pos < limit), pos, cap)
    kept = kept.at[dest].set(tb, mode="drop")
    out_i = out_i.at[dest].set(ki.astype(jnp.int32), mode="drop")
    n = n + jnp.sum(keep, dtype=jnp.int32)
    # The tile's last (lowest-ranked) entry, read through reductions: an
    # element slice of the top_k result makes XLA:CPU replace top_k by a full
    # sort inside a loop (~100x slower).
    last_s = jnp.min(kv)
    last_i = jnp.max(jnp.where(kv == last_s, ki, -1)).astype(jnp.int32)
    done = (n >= limit) | ~jnp.all(live)
    return last_s, last_i, n, done, kept, out_i

  init = (jnp.asarray(jnp.inf, key.dtype), jnp.int32(-1), jnp.int32(0), ~jnp.any(member),
          jnp.zeros((cap, 4), boxes.dtype), jnp.full((cap,), -1, jnp.int32))
  out_i = lax.while_loop(lambda c: ~c[3], body, init)[5]
  return out_i[:slots]


def _blend_values(boxes: jax.Array, keypoints: jax.Array, dtype: Any) -> jax.Array:
  """``[..., 1 + 4 + 2K]`` rows ``[1, xmin, ymin, xmin + width, ymin + height, kp...]``.

  The leading 1 makes the score sum come out of the same segment sum; xmax and
  ymax are rebuilt from MediaPipe's float32 width and height (§3.5).
  """
  x, y = boxes[..., 0], boxes[..., 1]
  xmax = x + (boxes[..., 2] - x)
  ymax = y + (boxes[..., 3] - y)
  parts = [jnp.ones_like(x)[..., None], jnp.stack([x, y, xmax, ymax], -1).astype(dtype),
           keypoints.reshape(keypoints.shape[:-2] + (-1,)).astype(dtype)]
  return jnp.concatenate([p.astype(dtype) for p in parts], axis=-1)


def _finite_geometry(boxes: jax.Array, keypoints: jax.Array) -> jax.Array:
  """``[..., P]``: every box coordinate and keypoint value is finite."""
  ok = jnp.all(jnp.isfinite(boxes), axis=-1)
  if keypoints.shape[-2]:
    ok &= jnp.all(jnp.isfinite(keypoints), axis=(-2, -1))
  return ok


def _candidates(valid, scores, min_score, weighted):
  """The candidates, except for the geometry check: valid, finite score and, for
  DEFAULT, not below an active ``min_score`` (DEFAULT breaks at the first such
  score, so those are never retained and never suppress anything)."""
  member = valid & jnp.isfinite(scores)
  if not weighted:
    member = member & ~((min_score > 0) & (scores < min_score))
  return member


def _run_bucket(size, engine, boxes, keypoints, scores, classes, valid, words, counts, thr,
                min_score, limit, *, kind, weighted, slots, blend_dtype):
  """NMS of every row through one engine, after compacting the rows to their
  first ``size`` candidates (unless ``size`` is all ``N`` slots).

  ``words``/``counts`` are the bit words of the candidates before
  the geometry check (finite boxes and keypoints), which is done here, on the
  compacted rows. Returns
  the output :class:`Detections` (WEIGHTED values blended, unused slots
  zero-filled) and the input slot of every output (``-1`` unused).
  """
  b, n = scores.shape
  src = None
  member = None
  if size < n:
    src = compaction.compact(words, counts, n, size)
    member = compaction.filled(counts, size)  # compaction keeps candidates only
    at = jnp.minimum(src, n - 1)
    boxes, scores = compaction.take(boxes, at), compaction.take(scores, at)
    keypoints = compaction.take(keypoints, at)
  else:
    member = _candidates(valid, scores, min_score, weighted)
  member = member & _finite_geometry(boxes, keypoints)
  rows = None
  if engine == "tiled":
    tile = min(_TILE_SMALL if slots <= _TILE_SMALL else _TILE, size)
    pos = jax.vmap(functools.partial(_tiled_engine, kind=kind, slots=slots, tile=tile),
                   in_axes=(0, 0, 0, None, None))(boxes, scores, member, thr, limit)
  else:
    rows = _Rows(boxes, keypoints, scores, member, thr, kind=kind, weighted=weighted,
                 dtype=blend_dtype)
    pos, step = _loop_engine(rows, thr, min_score, limit, kind=kind, weighted=weighted,
                             slots=slots)
  ok = pos >= 0
  at = jnp.maximum(pos, 0)
  out_i = jnp.where(ok, at if src is None else compaction.take(src, at), -1)
  if rows is None:
    return _finish(compaction.take(boxes, at), compaction.take(keypoints, at),
                   compaction.take(scores, at), classes, out_i)
  out = compaction.take(rows.values, at)  # [B, slots, F]: every output's values, one gather
  out_boxes, out_kps, out_scores = rows.boxes(out), rows.keypoints(out), rows.scores(out)
  if not weighted:
    return _finish(out_boxes, out_kps, out_scores, classes, out_i)
  # Weighted sums of every output at once, as one segment sum (scatter-add):
  # sums[l] = sum over p with step_p == l of score_p * values_p. Whatever a
  # candidate holds (a NaN keypoint, say) reaches only the output absorbing it;
  # candidates absorbed by none go to the dropped row ``b * slots``.
  vals = (rows.scores(rows.values).astype(blend_dtype)[..., None]
          * _blend_values(rows.boxes(rows.values), rows.keypoints(rows.values), blend_dtype))
  row = lax.broadcasted_iota(jnp.int32, step.shape, 0)
  seg = jnp.where(step >= 0, row * slots + step, b * slots).reshape(-1)
  d = vals.shape[-1]
  sums = jnp.zeros((b * slots, d), blend_dtype).at[seg].add(vals.reshape(-1, d), mode="drop")
  sums = sums.reshape(b, slots, d)
  means = g.divide(sums[..., 1:], sums[..., :1])
  # Blended exactly when the top is its own member (else §3.5 emits it as is).
  r = g.rects(out_boxes)
  blended = ok & (g.overlap_rects(r, r, kind) > thr)
  out_boxes = jnp.where(blended[..., None], means[..., :4].astype(out_boxes.dtype), out_boxes)
  out_kps = jnp.where(blended[..., None, None],
                      means[..., 4:].reshape(out_kps.shape).astype(out_kps.dtype), out_kps)
  return _finish(out_boxes, out_kps, out_scores, classes, out_i)


def _finish(boxes, keypoints, scores, classes, slot):
  """Output :class:`Detections` with the classes gathered and unused slots
  zero-filled (never NaN from an ignored input), and ``slot``."""
  ok = slot >= 0
  out = (boxes, keypoints, scores,
         compaction.take(classes, jnp.maximum(slot, 0)).astype(jnp.int32))
  out = (jnp.where(ok.reshape(ok.shape + (1,) * (a.ndim - 2)), a, jnp.zeros_like(a)) for a in out)
  return Detections(*out, ok), slot


@functools.partial(jax.jit, static_argnames=("kind", "weighted", "slots", "top_k"))
def _nms_flat(boxes, keypoints, scores, classes, valid, thr, min_score, max_num, *, kind,
              weighted, slots, top_k):
  """NMS on ``[..., N, ...]`` arrays (one batch axis inside); thresholds are traced values."""
  batch, n = scores.shape[:-1], scores.shape[-1]
  b, k = math.prod(batch), keypoints.shape[-2]
  boxes, keypoints = boxes.reshape(b, n, 4), keypoints.reshape(b, n, k, 2)
  scores, classes, valid = scores.reshape(b, n), classes.reshape(b, n), valid.reshape(b, n)
  blend_dtype = jnp.result_type(boxes.dtype, keypoints.dtype, scores.dtype)
  thr = thr.astype(boxes.dtype)
  min_score = min_score.astype(scores.dtype)

  if weighted:
    limit = jnp.int32(slots)  # WEIGHTED ignores max_num_detections (§3.5).
  else:
    limit = jnp.where(max_num > 0, jnp.minimum(max_num, slots), slots)

  src = None
  sel = (boxes, keypoints, scores, classes, valid)
  if top_k is not None and top_k < n:
    member = _candidates(valid, scores, min_score, weighted)
    member = member & _finite_geometry(boxes, keypoints)
    key = jnp.where(member, scores, -jnp.inf)
    key = jnp.where(key == 0, jnp.zeros_like(key), key)  # top_k would rank -0.0 below 0.0
    kv, src = lax.top_k(key, top_k)
    sel = (*(compaction.take(a, src) for a in sel[:4]), kv > -jnp.inf)

  # Candidates are counted (and compacted in the branches) before their boxes
  # are checked, which is done on the compacted boxes only. ``_candidates`` is
  # recomputed where needed rather than passed around: a mask computed once
  # would be one more kernel.
  words, counts = compaction.bit_words(_candidates(sel[4], sel[2], min_score, weighted))
  plan = _plan(n if src is None else top_k, weighted)
  branches = [functools.partial(_run_bucket, size, engine, kind=kind, weighted=weighted,
                                slots=slots, blend_dtype=blend_dtype)
              for size, engine in plan]
  operands = (*sel, words, counts, thr, min_score, limit)
  # The smallest bucket holding every frame's candidates (one choice per batch).
  out, out_i = compaction.switch([size for size, _ in plan], branches, counts, *operands)
  if src is not None:
    out_i = jnp.where(out_i >= 0, compaction.take(src, jnp.maximum(out_i, 0)), -1)
  unflat = lambda a: a.reshape(batch + a.shape[1:])  # noqa: E731
  return Detections(*(unflat(a) for a in out)), unflat(out_i)


def suppress_compacted(d: Detections, options: NmsOptions, *,
                       slots: int) -> tuple[Detections, jax.Array]:
  """NMS of ``[B, S, ...]`` rows through the one engine that fits ``S`` slots,
  without compacting them first: the package's entry for callers that
  compacted their candidates already (the pipeline's pre-filtered path; traced
  inside the caller's jit, ``options`` are compile-time constants here). Same
  semantics as :func:`non_max_suppression`; returns the output and the row
  slot of every output (``-1`` unused)."""
  weighted = options.algorithm is NmsAlgorithm.WEIGHTED
  size = d.scores.shape[1]
  if weighted or options.max_num_detections < 0:
    limit = slots
  else:
    limit = min(options.max_num_detections, slots)
  return _run_bucket(
      size, _plan(size, weighted)[-1][1], *d, None, None,
      jnp.asarray(np.float32(options.min_suppression_threshold), d.boxes.dtype),
      jnp.asarray(np.float32(options.min_score_threshold), d.scores.dtype), jnp.int32(limit),
      kind=options.overlap_type, weighted=weighted, slots=slots,
      blend_dtype=jnp.result_type(d.boxes.dtype, d.keypoints.dtype, d.scores.dtype))


def non_max_suppression(detections: Detections, options: NmsOptions, *, max_detections: int,
                        top_k: int | None = None,
                        return_indices: bool = False) -> Detections | tuple[Detections, jax.Array]:
  """MediaPipe ``NonMaxSuppressionCalculator``, DEFAULT or WEIGHTED, with static shapes.

  The behaviour is described in docs/semantics.md §3.

  Candidates, ranking (stable, ties to the lower slot) and output layout are
  described in the module docstring. Then, per frame:

  * **DEFAULT** (§3.4): walk the ranked candidates; stop at the first score
    below ``min_score_threshold`` when that is > 0; retain a candidate unless
    ``overlap(retained, candidate) > min_suppression_threshold`` for some
    retained one; stop once ``min(max_detections, max_num_detections)`` are
    retained (``-1`` = no MediaPipe limit). Retained detections are emitted
    unchanged.
  * **WEIGHTED** (§3.5): repeatedly take the best remaining candidate ``top``;
    stop if its score is below an active ``min_score_threshold``. Its members
    are *all* remaining candidates (``top`` included, low scores included:
    ``min_score_threshold`` plays no part here) with
    ``overlap(member, top) > min_suppression_threshold``. Emit ``top``'s score
    and class with the score-weighted means of the members' ``xmin``,
    ``ymin``, ``xmin + width``, ``ymin + height`` and keypoints (widths as
    MediaPipe's float32 ``xmax - xmin``), then remove the members. If ``top``
    has no members (threshold >= 1, or ``top`` has zero or negative area) it is
    emitted unchanged and everything remaining is dropped. ``max_num_detections``
    is ignored as in MediaPipe; the emission sequence is cut after
    ``max_detections`` outputs, and those equal MediaPipe's first ones.
    Weighted sums are accumulated in a different order than MediaPipe's
    sequential loop, so blended values can differ from MediaPipe's by a few
    float32 ulps.

  Cost (no full sort anywhere; XLA's CPU sort is slow): the candidates of
  every frame are first compacted, in slot order, to the smallest bucket of
  32, 64, 128, ..., 1024 or 4096 slots that holds the largest frame's
  candidates (a run-time choice for the whole batch, one compiled branch per
  bucket, buckets of at least ``N / 2`` slots are replaced by ``N``); so a
  frame with few valid detections costs little even when ``N`` is large. The
  compaction reads the candidate mask once as 32-bit words and finds the
  ``j``-th candidate by popcount search, ``O(N + P log N)`` per frame. With
  ``P`` such slots:

  * WEIGHTED, and DEFAULT for ``P <= 1024``: one ``lax.while_loop`` step per
    emitted detection, all frames of the batch stepped together, ``O(P)`` per
    frame and step (best remaining score, one overlap row, removal), ending as
    soon as every frame is done: ``O(P * outputs)`` for the busiest frame.
    WEIGHTED forms all weighted means after the loop in one segment sum,
    ``O(P)``.
  * DEFAULT for ``P > 1024`` (tens of thousands of boxes): tiles of ``T``
    ranked candidates (128 if ``max_detections <= 128``, else 256) fetched
    with ``lax.top_k`` (those ranked after the previous tile), checked against
    the boxes kept so far, then exact greedy inside the tile by fixed-point
    iteration; stops as soon as the limit is kept:
    ``O(tiles * (P log T + kept * T + T**2 * rounds))``, where ``rounds`` is
    the longest suppression chain in a tile (a handful). Exact for every
    threshold. Its weak case is heavy suppression (few survivors per tile),
    where it visits many tiles; the loop handles that case better.

  Under a user's ``jax.vmap`` the bucket choice becomes a select that runs
  every bucket (correct, slower): pass batched arrays instead, leading
  dimensions are supported natively.

  Args:
    detections: :class:`~jaxanchors.detections.Detections` with ``boxes
      [..., N, 4]``, ``keypoints [..., N, K, 2]`` (``K`` may be 0), ``scores
      [..., N]`` (floating), ``classes [..., N]`` (integer), ``valid [..., N]``
      (bool). Shapes and dtypes are checked at trace time.
    options: :class:`NmsOptions` (or a preset carrying them as ``.nms``).
      Thresholds are passed to the compiled function as values, so changing
      them does not recompile; the algorithm and overlap type are static.
    max_detections: static number of output slots (>= 1).
    top_k: optional static int >= 1: keep only the ``top_k`` best-ranked
      candidates before NMS (a no-op when ``top_k >= N``). Not MediaPipe
      behaviour: when a frame has more than ``top_k`` candidates, results can
      differ from MediaPipe's (DEFAULT may retain fewer boxes; WEIGHTED no longer
      blends the dropped low-score candidates). An opt-in speed knob.
    return_indices: also return the input slot of every output (the retained
      or top detection), ``[..., max_detections]`` int32, ``-1`` when unused.

  Returns:
    :class:`~jaxanchors.detections.Detections` with ``max_detections`` slots
    in emission order: boxes/keypoints/scores in their input dtypes, classes
    int32, valid bool; or ``(detections, indices)`` with ``return_indices``.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxanchors.detections import Detections, count
    >>> d = Detections(
    ...     boxes=jnp.array([[0.0, 0.0, 0.4, 0.4], [0.0, 0.1, 0.4, 0.5], [0.6, 0.6, 1.0, 1.0]]),
    ...     keypoints=jnp.zeros((3, 0, 2)), scores=jnp.array([0.9, 0.8, 0.7]),
    ...     classes=jnp.zeros(3, jnp.int32), valid=jnp.array([True, True, True]))
    >>> hard = NmsOptions(min_suppression_threshold=0.3, overlap_type="INTERSECTION_OVER_UNION")
    >>> out = non_max_suppression(d, hard, max_detections=4)
    >>> int(count(out)), out.valid.tolist(), out.scores.tolist()
    (2, [True, True, False, False], [0.8999999761581421, 0.699999988079071, 0.0, 0.0])
    >>> weighted = NmsOptions(min_suppression_threshold=0.3, overlap_type="INTERSECTION_OVER_UNION",
    ...                       algorithm="WEIGHTED")
    >>> out = non_max_suppression(d, weighted, max_detections=4)
    >>> [round(x, 4) for x in out.boxes[0].tolist()]  # score-weighted mean of boxes 0 and 1
    [0.0, 0.0471, 0.4, 0.4471]
  """
  options = _resolve(options)
  slots = v.as_int("max_detections", max_detections, minimum=1)
  if top_k is not None:
    top_k = v.as_int("top_k", top_k, minimum=1)
  return_indices = v.as_bool("return_indices", return_indices)
  if not isinstance(detections, Detections):
    raise TypeError(f"detections must be a jaxanchors.Detections, got {type(detections).__name__}")
  detections = Detections(*(a if hasattr(a, "dtype") else np.asarray(a) for a in detections))
  batch, n, k = v.check_detections(detections, Detections)
  if math.prod(batch) == 0 or n == 0:
    out = _empty(detections, batch, k, slots)
  else:
    f32 = np.float32
    out = _nms_flat(
        *detections, f32(options.min_suppression_threshold), f32(options.min_score_threshold),
        np.int32(options.max_num_detections), kind=options.overlap_type,
        weighted=options.algorithm is NmsAlgorithm.WEIGHTED, slots=slots, top_k=top_k)
  return out if return_indices else out[0]


def _empty(d: Detections, batch, k, slots) -> tuple[Detections, jax.Array]:
  """All-invalid output for an empty batch or ``N == 0``."""
  lead = batch + (slots,)
  dt = lambda a: v.shape_dtype(a)[1]  # noqa: E731
  out = Detections(jnp.zeros(lead + (4,), dt(d.boxes)), jnp.zeros(lead + (k, 2), dt(d.keypoints)),
                   jnp.zeros(lead, dt(d.scores)), jnp.zeros(lead, jnp.int32),
                   jnp.zeros(lead, bool))
  return out, jnp.full(lead, -1, jnp.int32)
