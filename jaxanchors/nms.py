"""Non-maximum suppression: MediaPipe's ``NonMaxSuppressionCalculator``.

Contract (spec ``mediapipe.md`` §3):

* Input and output are :class:`~jaxanchors.detections.Detections`. The input
  has ``N`` slots, the output ``max_detections`` slots (a static Python int),
  filled in MediaPipe's emission order -- descending score of the retained
  (DEFAULT) or top (WEIGHTED) detection, spec §3.6 -- with ``valid`` marking
  the used ones. Unused slots are zero-filled (class 0) and ``valid=False``.
  Any leading batch dimensions are processed independently.
* **Candidates** are the input slots with ``valid=True``, a finite score and
  four finite box coordinates. Anything else is ignored: it is never emitted,
  never suppresses or is blended into another detection, and its NaN or inf
  values cannot reach any output.
* **Order.** Candidates are ranked by descending score; equal scores are
  ranked by lower slot index (a stable sort). MediaPipe's ``std::sort`` leaves
  the order of equal scores unspecified (§3.2); this is the deterministic
  choice the spec recommends. ``-0.0`` and ``0.0`` are equal scores.
* **Overlap** is :func:`jaxanchors.boxes.overlap` (§3.3), including
  MediaPipe's float32 rebuilding of ``xmax = xmin + width``, so suppression
  decisions at a threshold match MediaPipe bit for bit on float32 input.
  Thresholds are compared as MediaPipe's float32 proto fields:
  ``overlap > f32(min_suppression_threshold)``, ``score < f32(min_score_threshold)``.
* **DEFAULT** (§3.4) is greedy hard NMS; retained detections are emitted
  unchanged. **WEIGHTED** (§3.5) blends boxes and keypoints; see
  :func:`non_max_suppression` for the details.

Deliberate differences from MediaPipe:

* Non-finite scores and boxes are not candidates (MediaPipe's sort comparator
  is invalid with NaN scores, §3.2, and its decoder drops NaN boxes, §2.7).
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
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxanchors import _validate as v
from jaxanchors.boxes import OverlapType
from jaxanchors.boxes import _Rects
from jaxanchors.boxes import _overlap_rects
from jaxanchors.boxes import _pairwise
from jaxanchors.boxes import _rects
from jaxanchors.detections import Detections

__all__ = ["NmsAlgorithm", "NmsOptions", "OverlapType", "non_max_suppression"]


class NmsAlgorithm(enum.Enum):
  """MediaPipe's ``NonMaxSuppressionCalculatorOptions.NmsAlgorithm`` (spec §3.1).

  Values are the proto numbers; a member, its name (any case) or its number is
  accepted wherever an algorithm is expected.
  """

  DEFAULT = 0
  WEIGHTED = 1


@dataclasses.dataclass(frozen=True, kw_only=True)
class NmsOptions:
  """Options of MediaPipe's ``NonMaxSuppressionCalculator`` (spec §3.1), same names and defaults.

  Frozen and hashable, so options can be static arguments of jitted functions.
  Enums accept a member, its name (any case) or its proto number. Construction
  raises ``TypeError``/``ValueError`` naming the field where MediaPipe would
  abort (``num_detection_streams`` or ``max_num_detections`` out of range,
  ``UNSPECIFIED_OVERLAP_TYPE``), and also rejects non-finite thresholds.

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
    min_suppression_threshold: overlap threshold; suppression (DEFAULT) or
      merging (WEIGHTED) needs overlap strictly greater than it.
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
    v.set_field(self, "overlap_type", v.as_enum(w("overlap_type"), OverlapType, self.overlap_type))
    v.set_field(self, "algorithm", v.as_enum(w("algorithm"), NmsAlgorithm, self.algorithm))
    v.set_field(self, "return_empty_detections",
                v.as_bool(w("return_empty_detections"), self.return_empty_detections))

  @classmethod
  def from_dict(cls, data: Mapping[str, Any]) -> "NmsOptions":
    """Options from a dict keyed by proto field names (enums as names or numbers)."""
    return v.from_dict(cls, dict(data), where="NmsOptions")

  def to_dict(self) -> dict[str, Any]:
    """A plain dict with the proto field names, defaults left out; inverse of :meth:`from_dict`."""
    return v.to_dict(self, skip_defaults=True)

  @classmethod
  def from_json(cls, text: str) -> "NmsOptions":
    """Options from a JSON object with the proto field names."""
    return cls.from_dict(v.parse_json_object(text, where="NmsOptions"))

  def to_json(self, **kwargs: Any) -> str:
    """JSON text of :meth:`to_dict`; ``kwargs`` go to :func:`json.dumps`."""
    import json
    return json.dumps(self.to_dict(), **kwargs)


# -- tuning constants (chosen by measurement on a 2-core x86 CPU; see
# benchmarks/bench_nms.py and benchmarks/RESULTS.md) -------------------------

# Candidate-count buckets: a batch whose largest per-frame candidate count fits
# a bucket is compacted to that many slots before NMS (loop-engine time grows
# about linearly with the slots; each bucket is one more compiled branch).
_BUCKETS = (32, 64, 128, 256, 512, 1024, 4096)
# DEFAULT on more slots than this runs tile by tile (else one while-loop step
# per retained detection over all slots). Single frames would gain from tiles
# from ~512 slots (1024 random boxes, keep 100: loop 0.21 ms, tiles 0.14 ms),
# but a batch pays batched top_k per tile and gains nothing when few boxes are
# kept (64 frames x 1024, four clusters: loop 0.8 ms, tiles 42 ms), so the
# loop keeps every bucket up to 1024.
_TILED_MIN = 1024
# Tile size of the tiled DEFAULT NMS: 128 when at most 128 boxes are kept,
# else 256 (20,000 boxes: keep 100 fastest with 128, keep 1000 with 256).
_TILE_SMALL, _TILE = 128, 256
# Kept boxes are compared with a new tile in chunks of this many.
_KEPT_CHUNK = 256

_trace_count = 0  # incremented on every trace of _nms_flat (tests check it)


def _resolve(options: Any) -> NmsOptions:
  return v.resolve_options(options, NmsOptions, "nms")


def _plan(n: int, weighted: bool) -> tuple[tuple[int, str], ...]:
  """Static (slots, engine) per bucket, ascending; the last one holds all ``n`` slots."""
  def engine(p: int) -> str:
    return "tiled" if (not weighted and p > _TILED_MIN) else "loop"
  sizes = [b for b in _BUCKETS if 2 * b <= n] + [n]
  return tuple((p, engine(p)) for p in sizes)


def _cumsum_bool(mask: jax.Array, block: int = 64) -> jax.Array:
  """Inclusive int32 prefix count of a bool ``[B, N]`` array, as two small matmuls.

  ``jnp.cumsum`` is a slow serial scan on XLA:CPU; counts below 2**24 are exact
  in float32 whatever the summation order.
  """
  b, n = mask.shape
  pad = (-n) % block
  x = jnp.pad(mask.astype(jnp.float32), ((0, 0), (0, pad))).reshape(b, -1, block)
  nb = x.shape[1]
  upper = np.triu(np.ones((block, block), np.float32))
  strict = np.triu(np.ones((nb, nb), np.float32), 1)
  hi = lax.Precision.HIGHEST
  inner = jnp.einsum("bkj,ji->bki", x, upper, precision=hi)
  outer = jnp.einsum("bk,kl->bl", inner[..., -1], strict, precision=hi)
  return (inner + outer[..., None]).reshape(b, -1)[:, :n].astype(jnp.int32)


def _compact(member: jax.Array, size: int, cs: jax.Array | None = None) -> jax.Array:
  """Slot indices ``[B, size]`` of the first ``size`` members of each row, in index order.

  Rows with fewer members are padded with ``N`` (out of range). ``cs`` is
  :func:`_cumsum_bool` of ``member`` when already at hand.
  """
  b, n = member.shape
  cs = _cumsum_bool(member) if cs is None else cs
  dest = jnp.where(member, cs - 1, size)  # size = dropped
  out = jnp.full((b, size), n, jnp.int32)
  return jax.vmap(lambda o, d: o.at[d].set(lax.iota(jnp.int32, n), mode="drop"))(out, dest)


def _loop_engine(boxes, scores, member, vals, thr, min_score, limit, *, kind, weighted, slots):
  """One frame; one ``lax.while_loop`` step per emitted detection (spec §3.4, §3.5).

  Each step takes the best remaining candidate ``t`` (first maximum, so ties go
  to the lower slot) and removes what it suppresses (DEFAULT) or what it
  absorbs (WEIGHTED; each absorbed candidate records the output slot that
  absorbed it, and all weighted means are formed after the loop in one
  segment sum). The loop ends when nothing remains, when the best remaining score
  is below an active ``min_score`` (the §3.4/§3.5 break), at ``limit``
  outputs, or at the WEIGHTED early stop. ``O(P)`` per step, ``O(P * outputs)``
  in all; each step is a handful of fused XLA kernels.

  Returns ``(slot, blended, blend_values)``: the emitting slot per output
  (``-1`` unused), whether its values were blended, and the blended values
  (WEIGHTED only).
  """
  p = boxes.shape[0]
  key = jnp.where(member, scores, -jnp.inf)
  iota = lax.iota(jnp.int32, p)
  out_slot = lax.iota(jnp.int32, slots)
  rects = _rects(boxes)  # per-box rectangle quantities, computed once
  table = jnp.stack([a.astype(boxes.dtype) for a in rects], axis=-1)  # one gather per step
  active = min_score > 0

  def best(live):
    m = jnp.max(live)
    return m, jnp.min(jnp.where(live == m, iota, p))

  def cond(c):
    _, n, stop, m = c[:4]
    return ~stop & (n < limit) & (m > -jnp.inf) & ~(active & (m < min_score))

  def body(c):
    # ``live``: the scores of the remaining candidates, -inf for the others.
    live, n, stop, m, t, out_i, owner = c
    row = table[t]
    top = _Rects(*(row[i] for i in range(5)), row[5] > 0)
    out_i = jnp.where(out_slot == n, t, out_i)
    if weighted:
      hit = (live > -jnp.inf) & (_overlap_rects(rects, top, kind) > thr)  # overlap(other, top)
      owner = jnp.where(hit, n, owner)
      # The top is its own member exactly when anything is (threshold < 1 and
      # positive area, or threshold < 0): the §3.5 early-stop test, as a scalar.
      stop = ~(_overlap_rects(top, top, kind) > thr)
    else:
      hit = (_overlap_rects(top, rects, kind) > thr) | (iota == t)  # overlap(kept, candidate)
    live = jnp.where(hit, -jnp.inf, live)
    m, t = best(live)
    return live, n + 1, stop, m, t, out_i, owner

  m0, t0 = best(key)
  init = (key, jnp.int32(0), jnp.bool_(False), m0, t0, jnp.full((slots,), -1, jnp.int32),
          jnp.full((p,), -1, jnp.int32))
  out = lax.while_loop(cond, body, init)
  out_i, owner = out[5], out[6]
  if not weighted:
    return out_i, jnp.zeros((slots,), bool), jnp.zeros((slots, vals.shape[-1] - 1), vals.dtype)
  # Weighted sums of every output at once, as one segment sum (scatter-add):
  # sums[l] = sum over p with owner_p == l of score_p * vals_p. Whatever a
  # candidate holds (a NaN keypoint, say) reaches only the output absorbing it;
  # non-members go to slot ``slots``, which is dropped.
  dest = jnp.where(owner >= 0, owner, slots)
  contrib = scores.astype(vals.dtype)[:, None] * vals
  sums = jnp.zeros((slots, vals.shape[-1]), vals.dtype).at[dest].add(contrib, mode="drop")
  means = sums[:, 1:] / sums[:, :1]
  blended = (out_i >= 0) & (owner[jnp.maximum(out_i, 0)] == out_slot)
  return out_i, blended, means


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
      hit = (_pairwise(kb, tb, kind) > thr) & ok[:, None]
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
    sup = (_pairwise(tb, tb, kind) > thr) & upper
    keep = _greedy_in_tile(alive, sup)
    pos = n + jnp.cumsum(keep.astype(jnp.int32)) - 1
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

  The leading 1 makes the score sum come out of the same dot product; xmax and
  ymax are rebuilt from MediaPipe's float32 width and height (§3.5).
  """
  x, y = boxes[..., 0], boxes[..., 1]
  xmax = x + (boxes[..., 2] - x)
  ymax = y + (boxes[..., 3] - y)
  parts = [jnp.ones_like(x)[..., None], jnp.stack([x, y, xmax, ymax], -1).astype(dtype),
           keypoints.reshape(keypoints.shape[:-2] + (-1,)).astype(dtype)]
  return jnp.concatenate([p.astype(dtype) for p in parts], axis=-1)


def _take(a: jax.Array, idx: jax.Array) -> jax.Array:
  """``a[b, idx[b, j], ...]`` for ``a [B, N, ...]`` and ``idx [B, M]``."""
  return jnp.take_along_axis(a, idx.reshape(idx.shape + (1,) * (a.ndim - 2)), axis=1)


def _run_bucket(size, engine, boxes, keypoints, scores, member, cs, thr, min_score, limit, *,
                kind, weighted, slots, blend_dtype):
  """Compacts every row to its first ``size`` candidates (unless ``size`` is all
  slots) and runs one engine; returns ``(slot, blended, blend_values)`` per output.
  ``cs`` is the prefix count of ``member`` (or None)."""
  n = boxes.shape[1]
  src = None
  if size < n:
    src = _compact(member, size, cs)
    member = src < n  # compaction keeps candidates only
    safe = jnp.minimum(src, n - 1)
    boxes, scores = _take(boxes, safe), _take(scores, safe)
    if weighted:
      keypoints = _take(keypoints, safe)
  d = 4 + 2 * keypoints.shape[2]
  if engine == "tiled":
    tile = min(_TILE_SMALL if slots <= _TILE_SMALL else _TILE, size)
    out_i = jax.vmap(functools.partial(_tiled_engine, kind=kind, slots=slots, tile=tile),
                     in_axes=(0, 0, 0, None, None))(boxes, scores, member, thr, limit)
    out_b = jnp.zeros(out_i.shape, bool)
    out_v = jnp.zeros(out_i.shape + (d,), blend_dtype)
  else:
    if weighted:
      vals = _blend_values(boxes, keypoints, blend_dtype)
    else:
      vals = jnp.zeros(boxes.shape[:2] + (1,), blend_dtype)
    fn = functools.partial(_loop_engine, kind=kind, weighted=weighted, slots=slots)
    out_i, out_b, out_v = jax.vmap(fn, in_axes=(0, 0, 0, 0, None, None, None))(
        boxes, scores, member, vals, thr, min_score, limit)
    if not weighted:
      out_v = jnp.zeros(out_i.shape + (d,), blend_dtype)
  if src is not None:
    out_i = jnp.where(out_i >= 0, _take(src, jnp.maximum(out_i, 0)), -1)
  return out_i, out_b, out_v


@functools.partial(jax.jit, static_argnames=("kind", "weighted", "slots", "top_k"))
def _nms_flat(boxes, keypoints, scores, classes, valid, thr, min_score, max_num, *, kind,
              weighted, slots, top_k):
  """NMS on ``[..., N, ...]`` arrays (one batch axis inside); thresholds are traced values."""
  global _trace_count
  _trace_count += 1
  batch, n = scores.shape[:-1], scores.shape[-1]
  b, k = math.prod(batch), keypoints.shape[-2]
  boxes, keypoints = boxes.reshape(b, n, 4), keypoints.reshape(b, n, k, 2)
  scores, classes, valid = scores.reshape(b, n), classes.reshape(b, n), valid.reshape(b, n)
  blend_dtype = jnp.result_type(boxes.dtype, keypoints.dtype, scores.dtype)
  thr = thr.astype(boxes.dtype)
  min_score = min_score.astype(scores.dtype)

  member = valid & jnp.isfinite(scores) & jnp.all(jnp.isfinite(boxes), axis=-1)
  if weighted:
    limit = jnp.int32(slots)  # WEIGHTED ignores max_num_detections (§3.5).
  else:
    # DEFAULT breaks at the first score below an active min_score_threshold, so
    # those candidates are never retained and never suppress anything.
    member = member & ~((min_score > 0) & (scores < min_score))
    limit = jnp.where(max_num > 0, jnp.minimum(max_num, slots), slots)

  src = None
  if top_k is not None and top_k < n:
    key = jnp.where(member, scores, -jnp.inf)
    key = jnp.where(key == 0, jnp.zeros_like(key), key)  # top_k would rank -0.0 below 0.0
    kv, src = lax.top_k(key, top_k)
    sel = Detections(_take(boxes, src), _take(keypoints, src), _take(scores, src),
                     _take(classes, src), kv > -jnp.inf)
  else:
    sel = Detections(boxes, keypoints, scores, classes, member)

  plan = _plan(sel.scores.shape[1], weighted)
  branches = [functools.partial(_run_bucket, size, engine, kind=kind, weighted=weighted,
                                slots=slots, blend_dtype=blend_dtype)
              for size, engine in plan]
  if len(branches) == 1:
    out_i, out_b, out_v = branches[0](sel.boxes, sel.keypoints, sel.scores, sel.valid, None,
                                      thr, min_score, limit)
  else:
    # The smallest bucket holding every frame's candidates (one choice per batch).
    cs = _cumsum_bool(sel.valid)
    most = jnp.max(cs[:, -1])
    which = jnp.sum(most > jnp.asarray([size for size, _ in plan[:-1]], jnp.int32))
    out_i, out_b, out_v = lax.switch(which, branches, sel.boxes, sel.keypoints, sel.scores,
                                     sel.valid, cs, thr, min_score, limit)
  if src is not None:
    out_i = jnp.where(out_i >= 0, _take(src, jnp.maximum(out_i, 0)), -1)

  ok = out_i >= 0
  safe = jnp.maximum(out_i, 0)
  out_boxes, out_kps = _take(boxes, safe), _take(keypoints, safe)
  if weighted:
    blended = out_b[..., None]
    out_boxes = jnp.where(blended, out_v[..., :4].astype(boxes.dtype), out_boxes)
    out_kps = jnp.where(blended[..., None],
                        out_v[..., 4:].reshape(out_kps.shape).astype(keypoints.dtype), out_kps)
  out = Detections(out_boxes, out_kps, _take(scores, safe), _take(classes, safe).astype(jnp.int32),
                   ok)
  # Unused slots are zero-filled (never NaN from an ignored input).
  out = Detections(*(jnp.where(ok.reshape(ok.shape + (1,) * (a.ndim - 2)), a, jnp.zeros_like(a))
                     for a in out[:4]), ok)
  unflat = lambda a: a.reshape(batch + a.shape[1:])  # noqa: E731
  return Detections(*(unflat(a) for a in out)), unflat(out_i)


def _shape_dtype(x: Any) -> tuple[tuple[int, ...], np.dtype]:
  if not (hasattr(x, "shape") and hasattr(x, "dtype")):
    x = np.asarray(x)
  return tuple(x.shape), np.dtype(x.dtype)


def _check(detections: Any) -> tuple[tuple[int, ...], int, int]:
  """Validates a ``Detections`` (shapes, dtypes); returns (batch shape, N, K)."""
  if not isinstance(detections, Detections):
    raise TypeError(f"detections must be a jaxanchors.Detections, got {type(detections).__name__}")
  (bs, bd), (ks, kd), (ss, sd), (cs, cd), (vs, vd) = (
      _shape_dtype(a) for a in detections)
  if len(bs) < 2 or bs[-1] != 4:
    raise ValueError(f"Detections.boxes must have shape [..., N, 4], got {bs}")
  batch, n = bs[:-2], bs[-2]
  lead = batch + (n,)
  for name, got in (("scores", ss), ("classes", cs), ("valid", vs)):
    if got != lead:
      raise ValueError(f"Detections.{name} must have shape [..., N] = {lead} to match "
                       f"boxes {bs}, got {got}")
  if len(ks) != len(bs) + 1 or ks[:-2] != lead or ks[-1] != 2:
    raise ValueError(f"Detections.keypoints must have shape [..., N, K, 2] with [..., N] = "
                     f"{lead} to match boxes {bs}, got {ks}")
  for name, dt in (("boxes", bd), ("keypoints", kd), ("scores", sd)):
    if not jnp.issubdtype(dt, jnp.floating):
      raise TypeError(f"Detections.{name} must have a floating dtype, got {dt}")
  if not jnp.issubdtype(cd, jnp.integer):
    raise TypeError(f"Detections.classes must have an integer dtype (int32), got {cd}")
  if vd != np.bool_:
    raise TypeError(f"Detections.valid must have dtype bool, got {vd}")
  return batch, n, ks[-2]


def non_max_suppression(detections: Detections, options: NmsOptions, *, max_detections: int,
                        top_k: int | None = None,
                        return_indices: bool = False) -> Detections | tuple[Detections, jax.Array]:
  """MediaPipe ``NonMaxSuppressionCalculator`` (DEFAULT or WEIGHTED, spec §3) with static shapes.

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
  frame with few valid detections costs little even when ``N`` is large. With
  ``P`` such slots:

  * WEIGHTED, and DEFAULT for ``P <= 1024``: one ``lax.while_loop`` step per
    emitted detection, ``O(P)`` each (best remaining score, one overlap row,
    removal), ending as soon as nothing remains: ``O(P * outputs)``. WEIGHTED
    forms all weighted means after the loop in one segment sum, ``O(P)``.
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
  batch, n, k = _check(detections)
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
  dt = lambda a: _shape_dtype(a)[1]  # noqa: E731
  out = Detections(jnp.zeros(lead + (4,), dt(d.boxes)), jnp.zeros(lead + (k, 2), dt(d.keypoints)),
                   jnp.zeros(lead, dt(d.scores)), jnp.zeros(lead, jnp.int32),
                   jnp.zeros(lead, bool))
  return out, jnp.full(lead, -1, jnp.int32)
