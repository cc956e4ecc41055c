"""Rectangle geometry shared by :mod:`jaxanchors.boxes`, :mod:`jaxanchors.nms`
and :mod:`jaxanchors.matching`: MediaPipe's rectangles and overlap measures.

The contract (boxes ``[..., 4]`` ``[xmin, ymin, xmax, ymax]``, MediaPipe's
float32 rebuilding of ``xmax = xmin + width``, the three overlap measures) is
stated once, in :mod:`jaxanchors.boxes` (docs/semantics.md §3.3). Nothing here
checks its inputs: the public functions do that first.
"""

from __future__ import annotations

import enum
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.custom_batching import custom_vmap
from jax.typing import ArrayLike


class OverlapType(enum.Enum):
  """MediaPipe's ``NonMaxSuppressionCalculatorOptions.OverlapType`` (docs/semantics.md §3.3).

  Values are the proto numbers. ``UNSPECIFIED_OVERLAP_TYPE`` (0), a fatal error
  in MediaPipe, is not a member. Anywhere an overlap type is accepted, a member,
  its name (any case) or its proto number may be given.
  """

  JACCARD = 1
  MODIFIED_JACCARD = 2
  INTERSECTION_OVER_UNION = 3


OverlapType.__module__ = "jaxanchors.boxes"  # where users find it


def as_float(boxes: ArrayLike) -> jax.Array:
  """``boxes`` as an array of a floating dtype (integers become float32)."""
  boxes = jnp.asarray(boxes)
  if not jnp.issubdtype(boxes.dtype, jnp.floating):
    boxes = boxes.astype(jnp.float32)
  return boxes


def product(a: jax.Array, b: jax.Array) -> jax.Array:
  """``a * b`` rounded on its own, never fused into a later add (no FMA).

  XLA's CPU backend may contract ``a * b + c`` into one fused multiply-add,
  which skips the rounding of the product that MediaPipe's C++ performs and
  moves IoU by an ulp. Feeding the product through ``max(., 0)`` (a no-op for
  the non-negative areas that reach a result) leaves nothing to contract.
  """
  return jnp.maximum(a * b, 0)


class Rects(NamedTuple):
  """Per-box quantities of MediaPipe's ``Rectangle_f`` (see :mod:`jaxanchors.boxes`)."""

  x: jax.Array  # xmin
  y: jax.Array  # ymin
  X: jax.Array  # f32(xmin + f32(xmax - xmin))
  Y: jax.Array  # f32(ymin + f32(ymax - ymin))
  area: jax.Array  # (X - x) * (Y - y), rounded on its own
  nonempty: jax.Array  # width >= 0 and height >= 0


def rects(b: jax.Array) -> Rects:
  """MediaPipe's rectangle of each ``[..., 4]`` box, as ``[...]`` arrays."""
  x, y = b[..., 0], b[..., 1]
  w, h = b[..., 2] - x, b[..., 3] - y
  X, Y = x + w, y + h
  # Width()/Height() of a rectangle are recomputed from its rebuilt corners.
  return Rects(x, y, X, Y, product(X - x, Y - y), (w >= 0) & (h >= 0))


def overlap_rects(r1: Rects, r2: Rects, kind: OverlapType) -> jax.Array:
  """Overlap of broadcast-compatible rectangles (docs/semantics.md §3.3)."""
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


def overlap(b1: jax.Array, b2: jax.Array, kind: OverlapType) -> jax.Array:
  """Elementwise overlap of broadcast-compatible ``[..., 4]`` boxes (docs/semantics.md §3.3)."""
  return overlap_rects(rects(b1), rects(b2), kind)


def pairwise(b1: jax.Array, b2: jax.Array, kind: OverlapType) -> jax.Array:
  """``[..., N, M]`` overlap of ``[..., N, 4]`` and ``[..., M, 4]`` boxes."""
  r1, r2 = rects(b1), rects(b2)
  return overlap_rects(Rects(*(a[..., :, None] for a in r1)),
                       Rects(*(a[..., None, :] for a in r2)), kind)


def signed_product(a: jax.Array, b: jax.Array) -> jax.Array:
  """``a * b`` of any sign, rounded on its own (never fused into a later add).

  The signed counterpart of :func:`product`: ``max(p, 0) + min(p, 0)`` is
  ``p`` (one term is ``p``, the other zero), and an add of two non-products
  leaves XLA nothing to contract into a fused multiply-add.
  """
  p = a * b
  return jnp.maximum(p, 0) + jnp.minimum(p, 0)


@custom_vmap
def _full_divide(numerator: jax.Array, denominator: jax.Array) -> jax.Array:
  return numerator / jax.lax.optimization_barrier(denominator)


@_full_divide.def_vmap
def _full_divide_vmap(axis_size, in_batched, numerator, denominator):
  # Under vmap an unbatched divisor would be broadcast outside the barrier:
  # both operands take the batch axis first.
  numerator, denominator = (x if batched else jnp.broadcast_to(x, (axis_size,) + x.shape)
                            for x, batched in zip((numerator, denominator), in_batched))
  return _full_divide(numerator, denominator), True


@jax.custom_jvp
def _barrier_divide(numerator: jax.Array, denominator: jax.Array) -> jax.Array:
  return _full_divide(numerator, denominator)


@_barrier_divide.defjvp
def _barrier_divide_jvp(primals, tangents):
  (numerator, denominator), (dn, dd) = primals, tangents
  quotient = _barrier_divide(numerator, denominator)
  return quotient, (dn - quotient * dd) / denominator


def divide(numerator: jax.Array, denominator: jax.Array) -> jax.Array:
  """IEEE division, as MediaPipe divides, under ``jit``, ``vmap`` and ``grad``.

  XLA rewrites ``a / broadcast(b)`` into ``a * broadcast(1 / b)`` (one rounding
  more), and whether it does depends on the rest of the program: a keypoint
  mapped back inside ``detect``'s branches came out an ulp off where the same
  division alone did not. Float32 quotients are therefore computed as
  :func:`exact_divide` does (in float64, rounded once) on CPUs and GPUs; on
  other devices (TPUs have no float64) and for other dtypes, a full-shaped
  divisor behind an optimisation barrier (under ``vmap`` given the batch axis
  before the barrier) keeps the true division wherever XLA honours the barrier.
  """
  dtype = jnp.result_type(numerator, denominator)
  shape = jnp.broadcast_shapes(jnp.shape(numerator), jnp.shape(denominator))
  numerator = jnp.broadcast_to(jnp.asarray(numerator, dtype), shape)
  denominator = jnp.broadcast_to(jnp.asarray(denominator, dtype), shape)
  if dtype != jnp.float32:
    return _barrier_divide(numerator, denominator)
  return jax.lax.platform_dependent(numerator, denominator, cpu=exact_divide,
                                    cuda=exact_divide, rocm=exact_divide,
                                    default=_barrier_divide)


def libm(fn, *args: jax.Array) -> jax.Array:
  """A float32 ``atan2``/``sin``/``cos``: the float64 result rounded (nearly always the
  correctly rounded float32). XLA's float32 versions can be a few ulps off; the C
  library's ``atan2f`` (glibc 2.36) is not always correctly rounded either, so
  rotations may still differ from MediaPipe's by an ulp or two (docs/semantics.md §7.7).
  """
  with jax.enable_x64(True):
    return fn(*(a.astype(jnp.float64) for a in args)).astype(jnp.float32)


def exact_divide(numerator: jax.Array, denominator: jax.Array) -> jax.Array:
  """The correctly rounded float32 quotient, whatever XLA rewrites around it.

  Computed in float64 (enabled locally) and rounded once: the float64 quotient,
  even as XLA's ``a * (1 / b)``, is within far less of the exact one than a
  float32 quotient can lie from a float32 rounding boundary, so the rounding
  gives IEEE float32 division's result, under ``vmap`` too. :func:`divide`'s
  float32 path on CPUs and GPUs; needs a device with float64.
  """
  with jax.enable_x64(True):
    quotient = jnp.asarray(numerator).astype(jnp.float64) / jnp.asarray(denominator).astype(
        jnp.float64)
    return quotient.astype(jnp.float32)
