"""Overlap measures (spec §3.3): hand-computed values and the NumPy reference, bit for bit."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxanchors import boxes as bx
from jaxanchors.boxes import OverlapType
from reference.nms import overlap as ref_overlap

KINDS = list(OverlapType)
F32 = np.float32


def _xywh(box):
  """Our [xmin, ymin, xmax, ymax] as MediaPipe's decoder hands it over: f32 width."""
  return (box[0], box[1], F32(box[2] - box[0]), F32(box[3] - box[1]))


# -- hand-computed values ---------------------------------------------------------

# (box1, box2, {kind: expected}); expected values worked out by hand.
HAND = [
    # Side by side, overlapping half of each: I = 1, union = 3 = enclosing box.
    ([0, 0, 2, 1], [1, 0, 3, 1], {"JACCARD": 1 / 3, "MODIFIED_JACCARD": 1 / 2,
                                  "INTERSECTION_OVER_UNION": 1 / 3}),
    # Diagonal overlap: I = 1, union = 7, enclosing box 3 x 3 = 9 (JACCARD < IoU).
    ([0, 0, 2, 2], [1, 1, 3, 3], {"JACCARD": 1 / 9, "MODIFIED_JACCARD": 1 / 4,
                                  "INTERSECTION_OVER_UNION": 1 / 7}),
    # Small box inside a big one: the argument order matters for MODIFIED_JACCARD.
    ([0, 0, 4, 4], [1, 1, 2, 2], {"JACCARD": 1 / 16, "MODIFIED_JACCARD": 1.0,
                                  "INTERSECTION_OVER_UNION": 1 / 16}),
    ([1, 1, 2, 2], [0, 0, 4, 4], {"JACCARD": 1 / 16, "MODIFIED_JACCARD": 1 / 16,
                                  "INTERSECTION_OVER_UNION": 1 / 16}),
    # Identical boxes.
    ([0.25, 0.5, 0.75, 1.0], [0.25, 0.5, 0.75, 1.0], {k.name: 1.0 for k in KINDS}),
    # Touching edges intersect, with area 0.
    ([0, 0, 1, 1], [1, 0, 2, 1], {k.name: 0.0 for k in KINDS}),
    # Disjoint.
    ([0, 0, 1, 1], [2, 2, 3, 3], {k.name: 0.0 for k in KINDS}),
    # Empty rectangle (negative width) inside another: 0.
    ([0.6, 0, 0.4, 1], [0, 0, 1, 1], {k.name: 0.0 for k in KINDS}),
    # Zero-area box inside another: I = 0.
    ([0.5, 0.5, 0.5, 0.5], [0, 0, 1, 1], {k.name: 0.0 for k in KINDS}),
    # Two identical zero-area boxes: every denominator is 0, so 0.
    ([0.5, 0.5, 0.5, 0.5], [0.5, 0.5, 0.5, 0.5], {k.name: 0.0 for k in KINDS}),
]


@pytest.mark.parametrize("b1,b2,expected", HAND)
@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_hand_computed(b1, b2, expected, kind):
  got = bx.overlap(jnp.array(b1, jnp.float32), jnp.array(b2, jnp.float32), overlap_type=kind)
  assert got.dtype == jnp.float32 and got.shape == ()
  np.testing.assert_allclose(float(got), expected[kind.name], rtol=2e-7, atol=0)
  # The reference agrees with the hand value too.
  ref = ref_overlap(_xywh(np.array(b1, F32)), _xywh(np.array(b2, F32)), kind.name)
  np.testing.assert_allclose(float(ref), expected[kind.name], rtol=2e-7, atol=0)


def test_enum_spellings_and_proto_numbers():
  assert [k.value for k in OverlapType] == [1, 2, 3]
  a, b = jnp.array([0.0, 0.0, 2.0, 2.0]), jnp.array([1.0, 1.0, 3.0, 3.0])
  by_member = bx.overlap(a, b, overlap_type=OverlapType.MODIFIED_JACCARD)
  assert bx.overlap(a, b, overlap_type="modified_jaccard") == by_member
  assert bx.overlap(a, b, overlap_type=2) == by_member
  for bad in (0, "UNSPECIFIED_OVERLAP_TYPE", "IOU", 4, True):
    with pytest.raises(ValueError, match="overlap_type"):
      bx.overlap(a, b, overlap_type=bad)


def test_shapes_broadcasting_and_errors():
  rng = np.random.default_rng(0)
  a = rng.random((2, 3, 4)).astype(F32)
  b = rng.random((2, 5, 4)).astype(F32)
  pw = bx.pairwise_overlap(a, b, overlap_type="INTERSECTION_OVER_UNION")
  assert pw.shape == (2, 3, 5) and pw.dtype == jnp.float32
  one_to_many = bx.overlap(a[:, 1, None, :], b, overlap_type="INTERSECTION_OVER_UNION")
  assert one_to_many.shape == (2, 5)
  np.testing.assert_array_equal(one_to_many, pw[:, 1, :])
  with pytest.raises(ValueError, match=r"boxes2 must have shape \[\.\.\., N, 4\].*\(5, 3\)"):
    bx.pairwise_overlap(a[0], np.zeros((5, 3), F32), overlap_type=1)
  with pytest.raises(ValueError, match=r"boxes1 must have shape \[\.\.\., 4\].*\(2,\)"):
    bx.overlap(np.zeros(2, F32), np.zeros(4, F32), overlap_type=1)
  # Integer boxes are computed in float32.
  assert bx.overlap(jnp.array([0, 0, 2, 2]), jnp.array([1, 1, 3, 3]),
                    overlap_type=3).dtype == jnp.float32


# -- against the reference: exact equality ----------------------------------------


def _random_boxes(rng, n):
  """Boxes where float32 rounding matters: offsets up to 1e3, tiny/zero/negative sizes."""
  xy = rng.uniform(-0.2, 1.2, (n, 2)).astype(F32)
  wh = (rng.uniform(0, 0.6, (n, 2)) ** 2).astype(F32)
  wh[rng.random(n) < 0.05, 0] = 0
  wh[rng.random(n) < 0.05, 1] *= -1
  out = np.concatenate([xy, xy + wh], axis=1).astype(F32)
  far = rng.random(n) < 0.3
  out[far] *= F32(rng.uniform(1, 1000))
  return out


def _pairs(seed=0, n=2000):
  rng = np.random.default_rng(seed)
  a, b = _random_boxes(rng, n), _random_boxes(rng, n)
  b[: n // 4] = a[: n // 4] + rng.normal(0, 1e-3, (n // 4, 4)).astype(F32)  # near duplicates
  b[n // 4: n // 4 + 50] = a[n // 4: n // 4 + 50]  # exact duplicates
  return a, b


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_equals_reference_bit_for_bit(kind):
  a, b = _pairs()
  ref = np.array([ref_overlap(_xywh(p), _xywh(q), kind.name) for p, q in zip(a, b)], F32)
  assert (ref > 0).mean() > 0.2  # the set exercises real overlaps
  eager = np.asarray(bx.overlap(a, b, overlap_type=kind))
  jitted = np.asarray(jax.jit(lambda x, y: bx.overlap(x, y, overlap_type=kind))(a, b))
  np.testing.assert_array_equal(eager, ref)
  np.testing.assert_array_equal(jitted, ref)
  # Pairwise under jit (the form NMS uses) too.
  m = 150
  ref_pw = np.array([[ref_overlap(_xywh(p), _xywh(q), kind.name) for q in b[:m]] for p in a[:m]],
                    F32)
  pw = jax.jit(lambda x, y: bx.pairwise_overlap(x, y, overlap_type=kind))(a[:m], b[:m])
  np.testing.assert_array_equal(np.asarray(pw), ref_pw)


def _naive_iou(p, q):
  """Textbook float32 IoU from the corners, without MediaPipe's rebuilt xmax."""
  iw = min(p[2], q[2]) - max(p[0], q[0])
  ih = min(p[3], q[3]) - max(p[1], q[1])
  if iw < 0 or ih < 0:
    return F32(0)
  inter = F32(iw * ih)
  union = F32(F32((p[2] - p[0]) * (p[3] - p[1])) + F32((q[2] - q[0]) * (q[3] - q[1]))) - inter
  return F32(inter / union) if union > 0 else F32(0)


def test_rebuilt_corners_matter():
  """The random set contains pairs where textbook IoU differs from MediaPipe's."""
  a, b = _pairs(seed=1)
  kind = OverlapType.INTERSECTION_OVER_UNION
  ours = np.asarray(jax.jit(lambda x, y: bx.overlap(x, y, overlap_type=kind))(a, b))
  ref = np.array([ref_overlap(_xywh(p), _xywh(q), kind.name) for p, q in zip(a, b)], F32)
  naive = np.array([_naive_iou(p, q) for p, q in zip(a, b)], F32)
  differs = naive != ref
  assert differs.sum() >= 5, "no pair where the rounding matters; the test would be vacuous"
  np.testing.assert_array_equal(ours[differs], ref[differs])
