"""Matching, target assignment and hard-negative mining against the TF ArgMaxMatcher reference."""

from __future__ import annotations

import dataclasses
import inspect
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import jaxanchors as ja
from jaxanchors import losses, matching
from jaxanchors.matching import MatcherOptions, Matches
from _util import count_traces, three_ways
from reference.matching import argmax_match as ref_argmax_match
from reference.matching import iou_matrix as ref_iou_matrix

F32 = np.float32


def ref_options(options: MatcherOptions) -> dict:
  return dict(matched_threshold=options.matched_threshold,
              unmatched_threshold=options.unmatched_threshold,
              negatives_lower_than_unmatched=options.negatives_lower_than_unmatched,
              force_match_for_each_row=options.force_match_for_each_row)


def corners(anchors: np.ndarray) -> np.ndarray:
  """Centre-size rows to corners in float64 (exact for the grid values used here)."""
  a = np.asarray(anchors, np.float64)
  return np.concatenate([a[:, :2] - a[:, 2:] / 2, a[:, :2] + a[:, 2:] / 2], axis=1)


# -- options ---------------------------------------------------------------------------


@st.composite
def matcher_kwargs(draw) -> dict:
  """Any combination, valid or not (the reference's checks decide which are)."""
  thresholds = [None, 0.0, 0.3, 0.4, 0.45, 0.5, 0.7, 1.0]
  return dict(matched_threshold=draw(st.sampled_from(thresholds)),
              unmatched_threshold=draw(st.sampled_from(thresholds)),
              negatives_lower_than_unmatched=draw(st.booleans()),
              force_match_for_each_row=draw(st.booleans()))


@given(matcher_kwargs())
def test_options_are_valid_exactly_when_tf_accepts_them(kwargs):
  try:
    ref_argmax_match(np.zeros((1, 1)), None, **kwargs)
    tf_accepts = True
  except ValueError:
    tf_accepts = False
  if tf_accepts:
    options = MatcherOptions(**kwargs)
    expected = kwargs["unmatched_threshold"]
    if expected is None:
      expected = kwargs["matched_threshold"]
    assert options.unmatched_threshold == expected
  else:
    with pytest.raises(ValueError, match="MatcherOptions"):
      MatcherOptions(**kwargs)


@pytest.mark.parametrize("kwargs,error,message", [
    (dict(matched_threshold=0.4, unmatched_threshold=0.5), ValueError,
     r"unmatched_threshold=0\.5 must be <= matched_threshold=0\.4"),
    (dict(matched_threshold=None, unmatched_threshold=0.3), ValueError,
     r"unmatched_threshold=0\.3 needs matched_threshold"),
    (dict(matched_threshold=0.5, negatives_lower_than_unmatched=False), ValueError,
     r"negatives_lower_than_unmatched=False .* matched_threshold=0\.5, unmatched_threshold=0\.5"),
    (dict(matched_threshold=float("nan")), ValueError, r"matched_threshold must be finite"),
    (dict(matched_threshold="0.5"), TypeError, r"matched_threshold must be a real number"),
    (dict(force_match_for_each_row=1), TypeError, r"force_match_for_each_row must be a bool"),
    (dict(overlap_type="IOU"), ValueError, r"overlap_type must be one of .*'IOU'"),
])
def test_invalid_options_name_field_and_value(kwargs, error, message):
  with pytest.raises(error, match=message):
    MatcherOptions(**kwargs)


def test_options_canonicalise_and_hash():
  a = MatcherOptions(matched_threshold=0.5, overlap_type=3)
  b = MatcherOptions(matched_threshold=0.5, unmatched_threshold=0.5,
                     overlap_type="intersection_over_union")
  assert a == b and hash(a) == hash(b)
  assert a.overlap_type is ja.boxes.OverlapType.INTERSECTION_OVER_UNION
  assert MatcherOptions().matched_threshold == 0.5 and MatcherOptions().unmatched_threshold == 0.5
  with pytest.raises(TypeError):
    MatcherOptions(0.5)  # keyword-only
  with pytest.raises(dataclasses.FrozenInstanceError):
    a.matched_threshold = 0.1


# -- argmax_match on similarity matrices -----------------------------------------------

# Few distinct values: ties in rows and columns, thresholds hit exactly.
_SIM_VALUES = [0.0, 0.1, 0.3, 0.4, 0.45, 0.5, 0.7, 1.0, -0.5]

# Options are static (one compilation each), so random cases draw from a fixed set
# that covers every branch: no thresholds, equal thresholds, an ignore band, the
# swapped bands, forcing on and off.
_OPTIONS = [
    MatcherOptions(matched_threshold=None),
    MatcherOptions(matched_threshold=None, force_match_for_each_row=True),
    MatcherOptions(),
    MatcherOptions(force_match_for_each_row=True),
    MatcherOptions(matched_threshold=0.5, unmatched_threshold=0.4),
    MatcherOptions(matched_threshold=0.5, unmatched_threshold=0.3, force_match_for_each_row=True),
    MatcherOptions(matched_threshold=0.7, unmatched_threshold=0.3,
                   negatives_lower_than_unmatched=False),
    MatcherOptions(matched_threshold=0.45, unmatched_threshold=0.0,
                   negatives_lower_than_unmatched=False, force_match_for_each_row=True),
]
# Fixed shapes for the same reason; fewer rows or anchors are padded rows (invalid)
# and zero-sized cases are tested on their own below.
_M, _N = 5, 9


@st.composite
def similarity_cases(draw):
  options = draw(st.sampled_from(_OPTIONS))
  sim = np.array(draw(st.lists(st.sampled_from(_SIM_VALUES), min_size=_M * _N,
                               max_size=_M * _N)), F32).reshape(_M, _N)
  valid = np.array(draw(st.lists(st.booleans(), min_size=_M, max_size=_M)), bool)
  return sim, valid, options


def three_ways_argmax(sim, valid, options):
  """Eager, jit, and vmap over a stack of the case and its row-reversed copy."""
  eager, jitted, stacked = three_ways(
      matching.argmax_match, (sim, valid, options),
      (np.stack([sim, sim[::-1]]), np.stack([valid, valid[::-1]]), options),
      in_axes=(0, 0, None), jitted=jax.jit(matching.argmax_match, static_argnums=2))
  out = []
  for matches in (eager, jitted, Matches(stacked.indices[0])):
    assert isinstance(matches, Matches) and matches.indices.dtype == jnp.int32
    out.append(np.asarray(matches.indices).tolist())
  return out, np.asarray(stacked.indices[1]).tolist()


@given(similarity_cases())
def test_argmax_match_equals_reference(case):
  sim, valid, options = case
  expected = ref_argmax_match(sim, valid, **ref_options(options))
  (eager, jitted, batched), reversed_rows = three_ways_argmax(sim, valid, options)
  assert eager == expected and jitted == expected and batched == expected
  assert reversed_rows == ref_argmax_match(sim[::-1], valid[::-1], **ref_options(options))


def test_hand_worked_matrix():
  # Rows are ground truth, columns anchors.
  sim = np.array([[0.8, 0.8, 0.10, 0.0, 0.45, 0.9],
                  [0.8, 0.2, 0.45, 0.0, 0.30, 0.9],
                  [0.0, 0.0, 0.00, 0.0, 0.00, 0.95]], F32)
  valid = np.array([True, True, False])
  opts = MatcherOptions(matched_threshold=0.5, unmatched_threshold=0.4)
  # col 0: rows 0 and 1 tie at 0.8 -> row 0; col 1 -> row 0; col 2: 0.45 ignored;
  # col 3: 0 negative; col 4: 0.45 ignored; col 5: padded row 2 (0.95) must not win -> row 0.
  assert matching.argmax_match(sim, valid, opts).indices.tolist() == [0, 0, -2, -1, -2, 0]
  swapped = dataclasses.replace(opts, negatives_lower_than_unmatched=False)
  assert matching.argmax_match(sim, valid, swapped).indices.tolist() == [0, 0, -1, -2, -1, 0]
  forced = dataclasses.replace(opts, force_match_for_each_row=True)
  # Rows 0 and 1 both have their best column at 5 (0.9): both claim it, the first row
  # wins (TF's argmax over 0/1 indicators) and row 1 is left without a forced anchor.
  assert matching.argmax_match(sim, valid, forced).indices.tolist() == [0, 0, -2, -1, -2, 0]
  no_thresholds = MatcherOptions(matched_threshold=None)
  assert matching.argmax_match(sim, valid, no_thresholds).indices.tolist() == [0, 0, 1, 0, 0, 0]


def test_force_match_of_a_row_overlapping_nothing_takes_anchor_zero():
  sim = np.array([[0.0, 0.0, 0.0], [0.0, 0.9, 0.2]], F32)
  opts = MatcherOptions(force_match_for_each_row=True)
  assert matching.argmax_match(sim, None, opts).indices.tolist() == [0, 1, -1]
  # Without forcing, nothing reaches 0.5 except anchor 1.
  plain = MatcherOptions()
  assert matching.argmax_match(sim, None, plain).indices.tolist() == [-1, 1, -1]


@pytest.mark.parametrize("m,n", [(0, 4), (3, 0), (0, 0)])
def test_zero_rows_or_columns(m, n):
  sim = np.zeros((m, n), F32)
  for options in _OPTIONS:
    expected = ref_argmax_match(sim, np.ones(m, bool), **ref_options(options))
    got = matching.argmax_match(sim, np.ones(m, bool), options).indices
    assert got.shape == (n,) and got.tolist() == expected == [-1] * n


@pytest.mark.parametrize("m", [0, 3])
def test_no_valid_row_gives_all_negative(m):
  sim = np.full((m, 4), 0.9, F32)
  for options in (MatcherOptions(), MatcherOptions(matched_threshold=None),
                  MatcherOptions(matched_threshold=0.6, unmatched_threshold=0.3,
                                 negatives_lower_than_unmatched=False,
                                 force_match_for_each_row=True)):
    got = matching.argmax_match(sim, np.zeros(m, bool), options).indices
    assert got.tolist() == [-1] * 4


def test_minus_infinity_similarities_never_pick_a_padded_row():
  sim = np.array([[-np.inf, 0.2], [-np.inf, 0.1]], F32)
  opts = MatcherOptions(matched_threshold=None)
  assert matching.argmax_match(sim, np.array([False, True]), opts).indices.tolist() == [1, 1]


def test_threshold_compared_in_the_similarity_dtype():
  # float32(0.7) < 0.7 in float64; TF rounds the threshold to float32 first.
  sim = np.array([[np.float32(0.7)]], F32)
  got = matching.argmax_match(sim, None, MatcherOptions(matched_threshold=0.7))
  assert got.indices.tolist() == [0]


# -- match on boxes -------------------------------------------------------------------


@st.composite
def box_cases(draw):
  """Anchors and ground truth on a 1/16 grid: every IoU is an exact small rational.

  Distinct IoUs then differ by far more than a float32 ulp and none lies within
  an ulp of a threshold unless equal to it, so float32 (ours) and float64 (the
  reference) decide every comparison and every tie identically. Small ranges
  make duplicate anchors (ties between columns) and ground truth that overlaps
  no anchor (force matching to anchor 0) frequent.
  """
  options = draw(st.sampled_from(_OPTIONS))
  centre = st.integers(1, 7).map(lambda i: i / 8)
  size = st.sampled_from([1 / 8, 1 / 4, 3 / 8, 1 / 2])
  anchors = np.array(draw(st.lists(st.tuples(centre, centre, size, size),
                                   min_size=_N, max_size=_N)), F32)
  lo = st.integers(0, 14)
  rows = draw(st.lists(st.tuples(lo, lo, st.integers(1, 8), st.integers(1, 8)),
                       min_size=_M, max_size=_M))
  gt = np.array([(x / 16, y / 16, (x + w) / 16, (y + h) / 16) for x, y, w, h in rows], F32)
  if draw(st.booleans()):  # a ground truth equal to an anchor box: IoU 1, a tie bait
    gt[draw(st.integers(0, _M - 1))] = corners(anchors[:1])[0]
  valid = np.array(draw(st.lists(st.booleans(), min_size=_M, max_size=_M)), bool)
  return anchors, gt, valid, options


@given(box_cases())
def test_match_equals_reference_on_boxes(case):
  anchors, gt, valid, options = case
  similarity = ref_iou_matrix(gt, corners(anchors))
  expected = ref_argmax_match(similarity, valid, **ref_options(options))
  eager = matching.match(anchors, gt, valid, options)
  jitted = jax.jit(matching.match, static_argnums=3)(anchors, gt, valid, options)
  assert eager.indices.tolist() == expected and jitted.indices.tolist() == expected
  positive = np.array(expected) >= 0
  assert eager.positive.tolist() == positive.tolist()
  assert eager.negative.tolist() == (np.array(expected) == -1).tolist()
  assert eager.ignored.tolist() == (np.array(expected) == -2).tolist()
  assert int(eager.num_positives) == int(positive.sum())


@given(box_cases())
def test_overlap_used_by_match_is_the_reference_iou(case):
  anchors, gt, _, _ = case
  ours = np.asarray(ja.boxes.pairwise_overlap(gt, ja.boxes.anchors_to_corners(anchors),
                                              overlap_type="INTERSECTION_OVER_UNION"))
  expected = ref_iou_matrix(gt, corners(anchors))
  # One correctly rounded float32 division of exact operands versus float64.
  np.testing.assert_array_max_ulp(ours, expected.astype(F32), maxulp=1)


def test_match_batched_over_leading_dimensions_and_vmap():
  rng = np.random.default_rng(0)
  anchors = np.concatenate([rng.random((40, 2)), rng.uniform(0.1, 0.4, (40, 2))], 1).astype(F32)
  lo = rng.random((2, 3, 5, 2)) * 0.7
  gt = np.concatenate([lo, lo + rng.uniform(0.05, 0.3, lo.shape)], -1).astype(F32)
  valid = rng.random((2, 3, 5)) < 0.7
  valid[0, 0] = False  # one image without ground truth
  options = MatcherOptions(matched_threshold=0.5, unmatched_threshold=0.3,
                           force_match_for_each_row=True)
  batched = matching.match(anchors, gt, valid, options)
  assert batched.indices.shape == (2, 3, 40)
  mapped = jax.vmap(jax.vmap(matching.match, (None, 0, 0, None)), (None, 0, 0, None))(
      anchors, gt, valid, options)
  np.testing.assert_array_equal(mapped.indices, batched.indices)
  for i in range(2):
    for j in range(3):
      sim = ref_iou_matrix(gt[i, j], corners(anchors))
      assert batched.indices[i, j].tolist() == ref_argmax_match(sim, valid[i, j],
                                                                **ref_options(options))
  assert batched.indices[0, 0].tolist() == [-1] * 40


def test_match_compiles_once_per_shape():
  rng = np.random.default_rng(1)
  anchors = np.concatenate([rng.random((33, 2)), np.full((33, 2), 0.2)], 1).astype(F32)
  gt = rng.random((7, 4)).astype(F32)
  gt[:, 2:] = gt[:, :2] + 0.2
  valid = np.ones(7, bool)
  options = MatcherOptions(force_match_for_each_row=True)
  matching.match(anchors, gt, valid, options)
  equal = MatcherOptions(matched_threshold=0.5, unmatched_threshold=0.5,
                         force_match_for_each_row=True)
  with count_traces("_match") as traces:
    matching.match(anchors, gt + 0.01, ~valid, equal)
  assert traces.count == 0

  @jax.jit
  @chex.assert_max_traces(n=1)
  def f(g, v):
    return matching.match(anchors, g, v, options).indices

  f(gt, valid)
  f(gt[::-1], valid)


@pytest.mark.parametrize("call,error,message", [
    (lambda: matching.match(np.zeros((4, 3), F32), np.zeros((2, 4), F32), None,
                            MatcherOptions()), ValueError, "anchors must have shape"),
    (lambda: matching.match(np.zeros((4, 4), F32), np.zeros((2, 5), F32), None,
                            MatcherOptions()), ValueError, "gt_boxes must have shape"),
    (lambda: matching.match(np.zeros((4, 4), F32), np.zeros((2, 4), F32), np.ones(3, bool),
                            MatcherOptions()), ValueError, r"gt_valid must have shape \(2,\)"),
    (lambda: matching.match(np.zeros((4, 4), F32), np.zeros((2, 4), F32), np.ones(2),
                            MatcherOptions()), TypeError, "gt_valid must be a bool array"),
    (lambda: matching.match(np.zeros((4, 4), F32), np.zeros((2, 4), F32), None, {}),
     TypeError, "options must be MatcherOptions"),
    (lambda: matching.argmax_match(np.zeros((2, 4), np.int32), None, MatcherOptions()),
     TypeError, "similarity must be a float array"),
])
def test_bad_inputs_raise(call, error, message):
  with pytest.raises(error, match=message):
    call()


# -- target assignment -------------------------------------------------------------------


_DECODERS = {
    # XYWH, no exp, 6 keypoints, offsets in input pixels (scale 128).
    "blazeface_pixels": dataclasses.replace(ja.presets.get("face_short_range").decoder,
                                            num_boxes=0),
    "ssd_exp_yxhw": ja.DecoderOptions(num_classes=3, num_coords=8, num_keypoints=2,
                                      keypoint_coord_offset=4, apply_exponential_on_box_size=True,
                                      x_scale=10, y_scale=10, w_scale=5, h_scale=5),
    "xyxy_flipped": ja.DecoderOptions(num_classes=2, num_coords=6, num_keypoints=1,
                                      keypoint_coord_offset=4, box_format="XYXY",
                                      flip_vertically=True, x_scale=64, y_scale=64, w_scale=64,
                                      h_scale=64),
}


def _random_problem(rng, n, m, k, batch=()):
  anchors = np.concatenate([rng.random((n, 2)), rng.uniform(0.1, 0.4, (n, 2))], 1).astype(F32)
  lo = rng.random(batch + (m, 2)) * 0.75
  gt = np.concatenate([lo, lo + rng.uniform(0.05, 0.25, lo.shape)], -1).astype(F32)
  kps = rng.random(batch + (m, k, 2)).astype(F32)
  valid = rng.random(batch + (m,)) < 0.75
  return anchors, gt, kps, valid


@pytest.mark.parametrize("name", sorted(_DECODERS))
def test_decoded_targets_return_the_matched_ground_truth(name):
  decoder = _DECODERS[name]
  rng = np.random.default_rng(7)
  k = decoder.num_keypoints
  anchors, gt, kps, valid = _random_problem(rng, 120, 6, k, batch=(3,))
  classes = rng.integers(0, decoder.num_classes, (3, 6)).astype(np.int32)
  options = MatcherOptions(matched_threshold=0.5, unmatched_threshold=0.35,
                           force_match_for_each_row=True)
  matches = matching.match(anchors, gt, valid, options)
  targets = matching.assign_targets(matches, gt, anchors, decoder, gt_keypoints=kps,
                                    gt_classes=classes)
  idx = np.asarray(matches.indices)
  pos = idx >= 0
  assert pos.sum() >= 10  # enough positives for the checks below to bite
  raw_scores = np.zeros((3, 120, decoder.num_classes), F32)
  det = jax.tree.map(np.asarray, ja.decode(targets.regression, raw_scores, anchors, decoder))
  rows = np.where(pos, idx, 0)
  want_boxes = np.take_along_axis(gt, rows[..., None], axis=1)
  want_kps = np.take_along_axis(kps, rows[..., None, None], axis=1)
  # Float32 rounding: coordinates are below 1.25 and encode and decode each round about
  # four times (observed at most 1.25 ulps of 1.0 over many seeds): 4 ulps of 1.0.
  np.testing.assert_allclose(det.boxes[pos], want_boxes[pos], rtol=0, atol=4 * 2**-23)
  np.testing.assert_allclose(det.keypoints[pos], want_kps[pos], rtol=0, atol=4 * 2**-23)
  assert targets.regression.shape == (3, 120, decoder.num_coords)
  assert np.all(np.asarray(targets.regression)[~pos] == 0)
  np.testing.assert_array_equal(targets.regression_weights, pos.astype(F32))
  np.testing.assert_array_equal(targets.class_weights, (idx != -2).astype(F32))
  want_classes = np.where(pos, np.take_along_axis(classes, rows, axis=1), -1)
  np.testing.assert_array_equal(targets.class_ids, want_classes)
  one_hot = np.asarray(targets.class_one_hot)
  assert one_hot.shape == (3, 120, decoder.num_classes)
  np.testing.assert_array_equal(one_hot.sum(-1), pos.astype(F32))
  np.testing.assert_array_equal(one_hot[pos].argmax(-1), want_classes[pos])
  np.testing.assert_array_equal(targets.matches.indices, idx)


def test_blazeface_recipe_match_on_sized_anchors_encode_on_unit_anchors():
  preset = ja.presets.get("face_short_range")
  unit = np.asarray(ja.generate_anchors(preset))  # w = h = 1, what the model decodes with
  sized = np.asarray(ja.generate_anchors(dataclasses.replace(preset.anchors,
                                                             fixed_anchor_size=False)))
  assert np.all(unit[:, 2:] == 1) and np.array_equal(unit[:, :2], sized[:, :2])
  gt = np.array([[[0.30, 0.20, 0.55, 0.50], [0.60, 0.55, 0.90, 0.95]]], F32)
  kps = np.random.default_rng(4).uniform(0.2, 0.9, (1, 2, 6, 2)).astype(F32)
  matches = matching.match(sized, gt, np.ones((1, 2), bool),
                           MatcherOptions(force_match_for_each_row=True))
  decoder = dataclasses.replace(preset.decoder, min_score_thresh=None)
  targets = matching.assign_targets(matches, gt, unit, decoder, gt_keypoints=kps)
  det = ja.decode(targets.regression, np.zeros((1, 896, 1), F32), unit, decoder)
  idx = np.asarray(matches.indices[0])
  pos = idx >= 0
  assert set(idx[pos].tolist()) == {0, 1}
  np.testing.assert_allclose(np.asarray(det.boxes[0])[pos], gt[0, idx[pos]], rtol=0,
                             atol=4 * 2**-23)
  np.testing.assert_allclose(np.asarray(det.keypoints[0])[pos], kps[0, idx[pos]], rtol=0,
                             atol=4 * 2**-23)


def test_background_class_and_ignored_anchors():
  decoder = _DECODERS["ssd_exp_yxhw"]
  anchors = np.array([[0.25, 0.25, 0.5, 0.5], [0.75, 0.75, 0.5, 0.5], [0.5, 0.5, 0.2, 0.2]], F32)
  gt = np.array([[0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 0.0, 0.0]], F32)  # row 1: all-zero padding
  kps = np.zeros((2, 2, 2), F32)
  matches = Matches(jnp.array([0, -1, -2], jnp.int32))
  t = matching.assign_targets(matches, gt, anchors, decoder, gt_keypoints=kps,
                              gt_classes=np.array([2, 1], np.int32), background_class=0)
  assert t.class_ids.tolist() == [2, 0, 0]
  assert t.class_one_hot.tolist() == [[0, 0, 1], [1, 0, 0], [1, 0, 0]]
  assert t.class_weights.tolist() == [1, 1, 0] and t.regression_weights.tolist() == [1, 0, 0]
  # Anchor 0 is exactly its box: zero offsets and log(1) sizes; keypoints at (0, 0) lie half
  # an anchor size up and left of its centre: -0.5 * scale 10.
  assert t.regression.tolist()[0] == [0, 0, 0, 0, -5, -5, -5, -5]
  assert bool(jnp.all(jnp.isfinite(t.regression)))  # the degenerate padded box is never encoded
  with pytest.raises(ValueError, match=r"background_class=3 is not a class id"):
    matching.assign_targets(matches, gt, anchors, decoder, gt_keypoints=kps, background_class=3)
  with pytest.raises(ValueError, match="gt_keypoints are required"):
    matching.assign_targets(matches, gt, anchors, decoder)


def test_targets_without_ground_truth_rows():
  decoder = _DECODERS["ssd_exp_yxhw"]
  anchors = np.array([[0.5, 0.5, 0.2, 0.2]] * 4, F32)
  gt = np.zeros((0, 4), F32)
  matches = matching.match(anchors, gt, None, MatcherOptions())
  assert matches.indices.tolist() == [-1] * 4
  t = matching.assign_targets(matches, gt, anchors, decoder, gt_keypoints=np.zeros((0, 2, 2), F32))
  assert t.regression.shape == (4, 8) and not np.any(np.asarray(t.regression))
  assert t.class_weights.tolist() == [1.0] * 4


# -- hard-negative mining ------------------------------------------------------------------


@st.composite
def mining_cases(draw):
  # Fixed N and a few static (ratio, min_negatives) pairs: one compilation each. The
  # palette varies the mix, from all negatives to negatives scarcer than the quota.
  palette = draw(st.sampled_from([[-1], [-1] * 7 + [0], [-1, -1, -1, 0], [-2, -1, 0, 1],
                                  [-2, 0, 0, -1], [-2, -2, -2, -1]]))
  indices = draw(st.lists(st.sampled_from(palette), min_size=24, max_size=24))
  losses_ = draw(st.lists(st.sampled_from([0.0, 0.25, 0.5, 1.0, 2.0, 8.0]), min_size=24,
                          max_size=24))
  ratio = draw(st.sampled_from([0.0, 0.5, 1.5, 3.0]))
  min_negatives = draw(st.sampled_from([0, 2]))
  return np.array(indices, np.int32), np.array(losses_, F32), ratio, min_negatives


def check_mining(indices, loss, selected, ratio, min_negatives):
  negative = indices == -1
  num_pos = int(np.sum(indices >= 0))
  expected = min(int(negative.sum()), max(min_negatives, math.floor(ratio * num_pos)))
  assert int(selected.sum()) == expected
  assert not np.any(selected & ~negative)
  rest = negative & ~selected
  if selected.any() and rest.any():
    # Hardest first; among equal losses the lower anchor index is taken first.
    assert loss[selected].min() >= loss[rest].max()
    edge = loss[selected].min()
    if edge == loss[rest].max():
      last_taken = np.nonzero(selected & (loss == edge))[0].max()
      assert last_taken < np.nonzero(rest & (loss == edge))[0].min()


@given(mining_cases())
def test_hard_negative_mining_count_and_order(case):
  indices, loss, ratio, min_negatives = case
  selected = matching.mine_hard_negatives(loss, Matches(jnp.asarray(indices)),
                                          negative_positive_ratio=ratio,
                                          min_negatives=min_negatives)
  assert selected.dtype == jnp.bool_
  check_mining(indices, loss, np.asarray(selected), ratio, min_negatives)


@pytest.mark.parametrize("ratio,positives,expected", [(0.5, 3, 1), (1.5, 1, 1), (1.5, 3, 4),
                                                     (3.0, 2, 6), (0.0, 5, 0)])
def test_negative_quota_rounds_down(ratio, positives, expected):
  indices = np.array([0] * positives + [-1] * 10, np.int32)
  selected = matching.mine_hard_negatives(np.arange(len(indices), dtype=F32),
                                          Matches(jnp.asarray(indices)),
                                          negative_positive_ratio=ratio)
  # floor(ratio * positives) of the highest losses, i.e. the last anchors here.
  assert np.nonzero(np.asarray(selected))[0].tolist() == list(range(len(indices) - expected,
                                                                     len(indices)))


def test_hard_negative_mining_is_per_image_and_compiles_once():
  rng = np.random.default_rng(5)
  indices = rng.choice([-2, -1, -1, -1, -1, 0, 1], (4, 3, 50)).astype(np.int32)
  indices[0, 0] = -1  # an image without positives: only min_negatives are kept
  loss = rng.random((4, 3, 50)).astype(F32)
  selected = np.asarray(matching.mine_hard_negatives(loss, Matches(jnp.asarray(indices)),
                                                     min_negatives=2))
  for i in range(4):
    for j in range(3):
      check_mining(indices[i, j], loss[i, j], selected[i, j], 3.0, 2)
  assert selected[0, 0].sum() == 2
  with count_traces("_mine") as traces:
    matching.mine_hard_negatives(loss[::-1], Matches(jnp.asarray(indices)), min_negatives=2.0)
  assert traces.count == 0
  with pytest.raises(ValueError, match="negative_positive_ratio must be >= 0"):
    matching.mine_hard_negatives(loss, Matches(jnp.asarray(indices)), negative_positive_ratio=-1)
  with pytest.raises(ValueError, match="losses must have the shape"):
    matching.mine_hard_negatives(loss[..., :3], Matches(jnp.asarray(indices)))


# -- end to end: gradients ---------------------------------------------------------------


def test_gradients_flow_through_the_losses_on_the_right_anchors():
  pytest.importorskip("optax", reason="jaxanchors.losses needs optax (an optional dependency)")
  decoder = _DECODERS["ssd_exp_yxhw"]
  rng = np.random.default_rng(11)
  anchors, gt, kps, valid = _random_problem(rng, 80, 4, 2, batch=(2,))
  matches = matching.match(anchors, gt, valid, MatcherOptions(force_match_for_each_row=True,
                                                               unmatched_threshold=0.3))
  targets = matching.assign_targets(matches, gt, anchors, decoder, gt_keypoints=kps)
  raw = jnp.asarray(rng.normal(0, 1, (2, 80, 8)), jnp.float32)
  logits = jnp.asarray(rng.normal(0, 1, (2, 80, 3)), jnp.float32)

  def total(raw, logits):
    cls = losses.sigmoid_binary_cross_entropy(logits, targets.class_one_hot)
    hard = matching.mine_hard_negatives(cls, matches, negative_positive_ratio=2.0)
    weights = jnp.where(matches.positive | hard, targets.class_weights, 0.0)
    box = losses.smooth_l1_loss(raw, targets.regression, targets.regression_weights)
    n = jnp.maximum(jnp.sum(matches.num_positives), 1)
    return (jnp.sum(cls * weights) + jnp.sum(box)) / n, hard

  (value, hard), (g_raw, g_logits) = jax.value_and_grad(total, argnums=(0, 1), has_aux=True)(
      raw, logits)
  assert np.isfinite(float(value))
  pos, hard = np.asarray(matches.positive), np.asarray(hard)
  assert pos.any() and hard.any()
  g_raw, g_logits = np.abs(np.asarray(g_raw)).sum(-1), np.abs(np.asarray(g_logits)).sum(-1)
  assert np.all(np.isfinite(g_raw)) and np.all(np.isfinite(g_logits))
  assert np.all(g_raw[pos] > 0) and np.all(g_raw[~pos] == 0)
  assert np.all(g_logits[pos | hard] > 0) and np.all(g_logits[~(pos | hard)] == 0)


def test_public_functions_take_options_keyword_only_and_are_documented():
  for name in matching.__all__:
    obj = getattr(matching, name)
    if callable(obj):
      assert inspect.getdoc(obj), name
  for fn, keywords in ((matching.assign_targets, {"gt_keypoints", "gt_classes",
                                                  "background_class"}),
                       (matching.mine_hard_negatives, {"negative_positive_ratio",
                                                       "min_negatives"})):
    params = inspect.signature(fn).parameters
    assert {p for p in params if params[p].kind is inspect.Parameter.KEYWORD_ONLY} == keywords
