"""Per-row compaction of masked slots, shared by NMS and the detection pipeline.

A batch ``[B, N]`` whose rows have few members (candidates of NMS, anchors
that pass the score pre-filter) is worked on as ``[B, size]``: the members of
every row gathered in slot order into ``size`` slots, ``size`` the smallest
bucket that holds the busiest row. The choice is made at run time, once per
batch, over one compiled branch per bucket.

* :func:`bit_words` reads a mask once as 32-slot words with prefix counts;
* :func:`compact` finds the ``j``-th member of each row by popcount search;
* :func:`take` gathers rows at those indices;
* :func:`bucket_sizes` is the static plan of bucket sizes for ``N`` slots and
  :func:`switch` runs the branch of the smallest one that fits.

All of it is written for XLA:CPU, where ``jnp.cumsum`` over ``N``, scatters,
integer reductions and sorts are slow (see ``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

# Prefix counts over at most this many 32-slot words (N <= 8192) are one
# matmul with a triangular constant, longer ones a cumsum.
DOT_CUMSUM_MAX = 256
# Prefix counts of batches of at most this many (frames x words x words) are a
# masked sum (one kernel), larger ones a matmul (three: operand, dot, result).
SUM_CUMSUM_MAX = 2**13
# Compaction finds each output's word by comparing with all word counts up to
# this many words (N <= 2048), by binary search beyond.
COUNT_WORDS_MAX = 64


def bit_words(member: jax.Array) -> tuple[jax.Array, jax.Array]:
  """32-slot words of a bool ``[B, N]`` mask: ``(words [B, W] uint32, counts [B, W] int32)``.

  Bit ``k`` of word ``w`` is ``member[:, 32 * w + k]``; ``counts`` is the
  inclusive prefix count of members over the words. One pass over the mask,
  then ``[B, W]``-sized work only (``jnp.cumsum`` over ``N`` and scatters are
  slow on XLA:CPU).
  """
  b, n = member.shape
  m = jnp.pad(member, ((0, 0), (0, (-n) % 32))).reshape(b, -1, 32)
  words = jnp.sum(m.astype(jnp.uint32) << lax.iota(jnp.uint32, 32), axis=-1, dtype=jnp.uint32)
  pc = lax.population_count(words).astype(jnp.int32)
  nw = words.shape[1]
  if b * nw * nw <= SUM_CUMSUM_MAX:
    # Few frames of few words: a masked sum, one kernel with the popcounts.
    upper = lax.broadcasted_iota(jnp.int32, (nw, nw), 0) <= lax.broadcasted_iota(
        jnp.int32, (nw, nw), 1)
    return words, jnp.sum(jnp.where(upper, pc[:, :, None], 0), axis=1, dtype=jnp.int32)
  if nw > DOT_CUMSUM_MAX:
    return words, jnp.cumsum(pc, axis=1, dtype=jnp.int32)
  # A short prefix sum as one small matmul (``jnp.cumsum`` is several XLA:CPU
  # kernels); float32 is exact for these integer counts (< 2**24).
  counts = jnp.dot(pc.astype(jnp.float32), np.triu(np.ones((nw, nw), np.float32)),
                   precision=lax.Precision.HIGHEST)
  return words, counts.astype(jnp.int32)


def compact(words: jax.Array, counts: jax.Array, n: int, size: int) -> jax.Array:
  """Slot indices ``[B, size]`` of the first ``size`` members of each row, in slot order.

  Rows with fewer members are padded with ``n`` (out of range). Output ``j``
  is the ``j``-th member: its word is the first one whose inclusive count
  exceeds ``j``, its bit is found by a 5-step binary search on popcounts.
  ``O(size * min(W, 3 log W))`` per row.
  """
  b, nw = words.shape
  j = lax.broadcasted_iota(jnp.int32, (b, size), 1)
  # w = the number of words whose inclusive count is <= j: counted directly
  # over a few words, binary-searched over many.
  if nw <= COUNT_WORDS_MAX:
    w = jnp.sum((counts[:, None, :] <= j[:, :, None]).astype(jnp.int32), axis=-1, dtype=jnp.int32)
  else:
    lo, hi = jnp.zeros_like(j), jnp.full_like(j, nw)
    for _ in range(nw.bit_length()):
      mid = (lo + hi) // 2
      c = jnp.take_along_axis(counts, jnp.minimum(mid, nw - 1), axis=1, mode="promise_in_bounds")
      right = (mid < nw) & (c <= j)
      lo, hi = jnp.where(right, mid + 1, lo), jnp.where(right, hi, mid)
    w = lo
  wc = jnp.minimum(w, nw - 1)
  word = jnp.take_along_axis(words, wc, axis=1, mode="promise_in_bounds")
  rank = j - (jnp.take_along_axis(counts, wc, axis=1, mode="promise_in_bounds")
              - lax.population_count(word).astype(jnp.int32))
  bit = jnp.zeros_like(j)
  for half in (16, 8, 4, 2, 1):
    low = lax.population_count((word >> bit.astype(jnp.uint32)) & jnp.uint32((1 << half) - 1))
    up = rank >= low.astype(jnp.int32)
    rank = jnp.where(up, rank - low.astype(jnp.int32), rank)
    bit = jnp.where(up, bit + half, bit)
  return jnp.where(w < nw, 32 * w + bit, n)


def filled(counts: jax.Array, size: int) -> jax.Array:
  """Bool ``[B, size]``: the slots of :func:`compact`'s output that hold a member
  (``compact(...) < n``), from the row counts alone; cheaper than comparing its
  indices, which XLA recomputes in every kernel that reads them."""
  return lax.broadcasted_iota(jnp.int32, (counts.shape[0], size), 1) < counts[:, -1:]


def take(a: jax.Array, idx: jax.Array) -> jax.Array:
  """Rows of ``a [..., N, *T]`` at in-range ``idx [..., M]``: ``[..., M, *T]``.

  ``a[b, idx[b, j], ...]`` for the usual ``a [B, N, ...]`` and ``idx [B, M]``.
  """
  return jnp.take_along_axis(a, idx.reshape(idx.shape + (1,) * (a.ndim - idx.ndim)),
                             axis=idx.ndim - 1, mode="promise_in_bounds")


def bucket_sizes(n: int, buckets: Sequence[int]) -> list[int]:
  """Static bucket sizes for ``n`` slots, ascending: the ``buckets`` of at most
  ``n / 2`` slots (a larger one saves too little), then ``n`` itself."""
  return [size for size in buckets if 2 * size <= n] + [n]


def switch(sizes: Sequence[int], branches: Sequence[Callable[..., Any]], counts: jax.Array,
           *operands: Any) -> Any:
  """Runs ``branches[i](*operands)`` for the smallest ``sizes[i]`` that holds
  every row's members (``counts`` from :func:`bit_words`; one choice for the
  whole batch). A single branch is called directly."""
  if len(branches) == 1:
    return branches[0](*operands)
  most = jnp.max(counts[:, -1])
  which = jnp.sum(most > jnp.asarray(sizes[:-1], jnp.int32), dtype=jnp.int32)
  return lax.switch(which, branches, *operands)
