"""Self-check of ``tests/reference/matching.py`` (TF ArgMaxMatcher semantics).

Every expectation is worked out by hand in the comments (or taken from the TF
Object Detection API's own ``argmax_matcher_test.py``), never from the reference
itself. Result codes: row index >= 0 matched, -1 unmatched, -2 ignored.
"""

import numpy as np
import pytest

from reference.matching import argmax_match, iou_matrix

ALL3 = np.ones(3, dtype=bool)

# The matrix used throughout TF's argmax_matcher_test.py.
#   column maxima: col0 = 3 (row 2), col1 = 1 (row 0), col2 = 2 (row 1),
#                  col3 = 3 (row 0), col4 = 4 (row 1)
TF_SIM = np.array([[1, 1, 1, 3, 1],
                   [2, -1, 2, 0, 4],
                   [3, 0, -1, 0, 0]], dtype=np.float32)


# --------------------------------------------------------------------------
# Plain thresholding
# --------------------------------------------------------------------------

def test_no_threshold_matches_every_column_to_its_best_row():
    # matched_threshold=None: every column takes its argmax row.
    # col0 {1,2,3}->2, col1 {1,-1,0}->0, col2 {1,2,-1}->1, col3 {3,0,0}->0,
    # col4 {1,4,0}->1
    got = argmax_match(TF_SIM, ALL3, matched_threshold=None)
    assert got == [2, 0, 1, 0, 1]
    assert all(type(v) is int for v in got)


def test_matched_threshold_only():
    # threshold 3 (unmatched defaults to 3, so no between zone):
    # maxima [3, 1, 2, 3, 4] -> >=3 matched, else -1
    assert argmax_match(TF_SIM, ALL3, matched_threshold=3.0) == [2, -1, -1, 0, 1]


def test_between_zone_is_ignored_when_negatives_lower_than_unmatched():
    # matched 3, unmatched 2: col1 max 1 < 2 -> -1 (negative);
    # col2 max 2 in [2, 3) -> -2 (ignored); others matched as before.
    got = argmax_match(TF_SIM, ALL3, matched_threshold=3.0, unmatched_threshold=2.0)
    assert got == [2, -1, -2, 0, 1]


def test_between_zone_is_negative_when_negatives_not_lower():
    # negatives_lower_than_unmatched=False swaps the codes:
    # col1 max 1 < 2 -> -2 (ignored); col2 max 2 in [2, 3) -> -1 (negative).
    got = argmax_match(TF_SIM, ALL3, matched_threshold=3.0, unmatched_threshold=2.0,
                       negatives_lower_than_unmatched=False)
    assert got == [2, -2, -1, 0, 1]


def test_threshold_boundaries_are_inclusive_from_above():
    # one row, thresholds matched 0.5 / unmatched 0.4:
    # 0.5 == matched -> matched (0); 0.4 == unmatched -> between -> -2;
    # 0.3999 < unmatched -> -1; 0.49999 between -> -2
    sim = np.array([[0.5, 0.4, 0.3999, 0.49999]])
    got = argmax_match(sim, np.ones(1, bool), matched_threshold=0.5,
                       unmatched_threshold=0.4)
    assert got == [0, -2, -1, -2]
    # and the swapped convention: 0.4 -> -1, 0.3999 -> -2, 0.49999 -> -1
    got = argmax_match(sim, np.ones(1, bool), matched_threshold=0.5,
                       unmatched_threshold=0.4, negatives_lower_than_unmatched=False)
    assert got == [0, -1, -2, -1]


def test_thresholds_compare_in_the_similarity_dtype():
    # float32(0.7) = 0.699999988... < the float64 0.7, but TF compares after
    # converting the threshold to float32, where both are equal -> matched.
    sim = np.array([[0.7]], dtype=np.float32)
    assert argmax_match(sim, np.ones(1, bool), matched_threshold=0.7) == [0]
    # The same value held in float64 is genuinely below 0.7 -> -1.
    sim64 = sim.astype(np.float64)
    assert argmax_match(sim64, np.ones(1, bool), matched_threshold=0.7) == [-1]


# --------------------------------------------------------------------------
# Empty / padded ground truth
# --------------------------------------------------------------------------

def test_zero_rows_gives_all_unmatched():
    # TF _match_when_rows_are_empty: -1 for each of the 5 columns.
    sim = np.zeros((0, 5), dtype=np.float32)
    valid = np.zeros(0, dtype=bool)
    assert argmax_match(sim, valid, matched_threshold=None) == [-1] * 5
    assert argmax_match(sim, valid, matched_threshold=0.5,
                        force_match_for_each_row=True) == [-1] * 5


@pytest.mark.parametrize("kwargs", [
    dict(matched_threshold=None),
    dict(matched_threshold=0.5),
    dict(matched_threshold=0.5, unmatched_threshold=0.3,
         negatives_lower_than_unmatched=False),
    dict(matched_threshold=0.5, force_match_for_each_row=True),
    dict(matched_threshold=None, force_match_for_each_row=True),
])
def test_all_rows_invalid_gives_all_unmatched(kwargs):
    # Rows exist but all are padding (even with high similarities): every
    # column is -1, whatever the thresholds, and nothing is forced.
    sim = np.array([[0.9, 0.2, 0.0],
                    [0.1, 0.8, 0.0]])
    assert argmax_match(sim, np.zeros(2, bool), **kwargs) == [-1, -1, -1]


def test_zero_columns():
    sim = np.zeros((2, 0))
    assert argmax_match(sim, np.ones(2, bool), matched_threshold=0.5,
                        force_match_for_each_row=True) == []


def test_padded_rows_never_match_even_when_most_similar():
    # row 1 is padding with the highest value in both columns.
    # valid rows only = row 0: col0 0.6 >= 0.5 -> 0; col1 0.2 < 0.5 -> -1.
    # (TF itself takes the column argmax over all rows and would give [1, 1];
    #  the reference deliberately excludes padded rows.)
    sim = np.array([[0.6, 0.2],
                    [0.9, 0.9]])
    got = argmax_match(sim, np.array([True, False]), matched_threshold=0.5)
    assert got == [0, -1]
    # without thresholds too: every column goes to the only valid row.
    assert argmax_match(sim, np.array([True, False]), matched_threshold=None) == [0, 0]


def test_tf_force_match_padded_groundtruth_case():
    # TF's test_return_correct_matches_using_force_match_padded_groundtruth:
    # matched 3, unmatched 2, force; rows 2 and 4 are padding (all zeros).
    sim = np.array([[1, 1, 1, 3, 1],
                    [-1, 0, -2, -2, -1],
                    [0, 0, 0, 0, 0],
                    [3, 0, -1, 2, 0],
                    [0, 0, 0, 0, 0]], dtype=np.float32)
    valid = np.array([True, True, False, True, False])
    # thresholds over valid rows 0,1,3: col0 max 3 (row 3) -> 3; col1 max 1 -> -1;
    # col2 max 1 -> -1; col3 max 3 (row 0) -> 0; col4 max 1 -> -1.
    # force: row0 best col3, row1 best col1 (0 is its max), row3 best col0.
    # -> [3, 1, -1, 0, -1]  (TF expects matched cols [0,1,3] -> rows [3,1,0],
    #    unmatched cols [2, 4]).
    got = argmax_match(sim, valid, matched_threshold=3.0, unmatched_threshold=2.0,
                       force_match_for_each_row=True)
    assert got == [3, 1, -1, 0, -1]


def test_padded_row_does_not_force_a_match():
    # row 1 is padding; its best column would be col1 but it must not claim it.
    # row 0 best col0 (0.3) -> forced. col1: only valid row 0 has 0.1 -> -1.
    sim = np.array([[0.3, 0.1],
                    [0.0, 0.9]])
    got = argmax_match(sim, np.array([True, False]), matched_threshold=0.5,
                       force_match_for_each_row=True)
    assert got == [0, -1]


# --------------------------------------------------------------------------
# Force match
# --------------------------------------------------------------------------

def test_tf_unmatched_row_with_and_without_force_match():
    # TF's test_return_correct_matches_unmatched_row_{not_,while_}using_force_match
    sim = np.array([[1, 1, 1, 3, 1],
                    [-1, 0, -2, -2, -1],
                    [3, 0, -1, 2, 0]], dtype=np.float32)
    # maxima: col0 3 (row 2), col1 1 (row 0), col2 1 (row 0), col3 3 (row 0),
    # col4 1 (row 0) -> [2, -1, -1, 0, -1]
    assert argmax_match(sim, ALL3, matched_threshold=3.0,
                        unmatched_threshold=2.0) == [2, -1, -1, 0, -1]
    # force: row0 -> col3, row1 -> col1 (its max 0), row2 -> col0
    # -> col1 now matched to row 1: [2, 1, -1, 0, -1]
    assert argmax_match(sim, ALL3, matched_threshold=3.0, unmatched_threshold=2.0,
                        force_match_for_each_row=True) == [2, 1, -1, 0, -1]


def test_force_match_for_gt_that_overlaps_no_anchor_above_threshold():
    gt = np.array([[0, 0, 10, 10],
                   [20, 20, 30, 30]], dtype=float)
    anchors = np.array([[0, 0, 5, 5],        # vs gt0: 25 / 100 = 0.25
                        [5, 5, 15, 15],      # vs gt0: 25 / (100+100-25) = 1/7
                        [20, 20, 30, 30]],   # vs gt1: 1.0
                       dtype=float)
    iou = iou_matrix(gt, anchors)
    np.testing.assert_allclose(iou, [[0.25, 1 / 7, 0.0],
                                     [0.0, 0.0, 1.0]])
    # matched 0.5 / unmatched 0.4: col0 0.25 -> -1, col1 1/7 -> -1, col2 1 -> 1
    assert argmax_match(iou, np.ones(2, bool), matched_threshold=0.5,
                        unmatched_threshold=0.4) == [-1, -1, 1]
    # force: gt0's best anchor is col0 (0.25) -> matched to row 0 anyway.
    assert argmax_match(iou, np.ones(2, bool), matched_threshold=0.5,
                        unmatched_threshold=0.4,
                        force_match_for_each_row=True) == [0, -1, 1]


def test_force_match_overrides_ignored_column():
    # negatives_lower_than_unmatched=False, 0.5 / 0.3: col0 0.1 < 0.3 -> -2,
    # col1 0.05 -> -2; force row0 -> col0 -> [0, -2].
    sim = np.array([[0.1, 0.05]])
    assert argmax_match(sim, np.ones(1, bool), matched_threshold=0.5,
                        unmatched_threshold=0.3,
                        negatives_lower_than_unmatched=False,
                        force_match_for_each_row=True) == [0, -2]
    # negatives lower, between zone: 0.4 in [0.3, 0.5) -> -2, forced -> 0
    sim = np.array([[0.4, 0.35]])
    assert argmax_match(sim, np.ones(1, bool), matched_threshold=0.5,
                        unmatched_threshold=0.3,
                        force_match_for_each_row=True) == [0, -2]


def test_force_match_steals_a_column_from_a_more_similar_row():
    # col0: rows {0.3, 0.9} -> row 1 (matched, 0.9 >= 0.5);
    # col1: rows {0.1, 0.95} -> row 1.
    # force: row0's best is col0 (0.3) -> col0 := 0 although row 1 is better;
    # row1's best is col1 -> col1 := 1.
    sim = np.array([[0.3, 0.1],
                    [0.9, 0.95]])
    assert argmax_match(sim, np.ones(2, bool), matched_threshold=0.5) == [1, 1]
    assert argmax_match(sim, np.ones(2, bool), matched_threshold=0.5,
                        force_match_for_each_row=True) == [0, 1]
    # the same with no thresholds at all
    assert argmax_match(sim, np.ones(2, bool), matched_threshold=None,
                        force_match_for_each_row=True) == [0, 1]


def test_two_rows_forcing_the_same_column_first_row_wins():
    sim = np.array([[0.1, 0.3, 0.0],
                    [0.2, 0.1, 0.0],
                    [0.0, 0.4, 0.05]])
    # thresholds 0.5: column maxima 0.2, 0.4, 0.05 -> all -1 without force.
    assert argmax_match(sim, ALL3, matched_threshold=0.5) == [-1, -1, -1]
    # force: row0 -> col1, row1 -> col0, row2 -> col1.
    # col1 is chosen by rows 0 and 2; TF's argmax over the 0/1 one-hot column
    # picks the FIRST row (0), even though row 2 is more similar (0.4 > 0.3).
    # row 2 gets nothing (no second pass): [1, 0, -1].
    assert argmax_match(sim, ALL3, matched_threshold=0.5,
                        force_match_for_each_row=True) == [1, 0, -1]
    # with row 0 padded, row 2 is the first valid row choosing col1: [1, 2, -1]
    assert argmax_match(sim, np.array([False, True, True]), matched_threshold=0.5,
                        force_match_for_each_row=True) == [1, 2, -1]


# --------------------------------------------------------------------------
# Ties
# --------------------------------------------------------------------------

def test_column_tie_goes_to_lowest_valid_row():
    # col0: rows 0 and 1 both 0.7 -> row 0; col1: 0.2 vs 0.8 -> row 1.
    sim = np.array([[0.7, 0.2],
                    [0.7, 0.8]])
    assert argmax_match(sim, np.ones(2, bool), matched_threshold=0.5) == [0, 1]
    assert argmax_match(sim, np.ones(2, bool), matched_threshold=None) == [0, 1]
    # row 0 padded -> the tie no longer exists: col0 -> row 1.
    assert argmax_match(sim, np.array([False, True]), matched_threshold=0.5) == [1, 1]
    # three-way tie on a later row set: rows 1 and 2 tie at 0.6 -> row 1.
    sim3 = np.array([[0.1], [0.6], [0.6]])
    assert argmax_match(sim3, ALL3, matched_threshold=0.5) == [1]


def test_row_tie_in_force_match_goes_to_lowest_column():
    # row 0 ties between col0 and col1 (0.3) -> forces col0 only.
    sim = np.array([[0.3, 0.3, 0.1]])
    assert argmax_match(sim, np.ones(1, bool), matched_threshold=0.5,
                        force_match_for_each_row=True) == [0, -1, -1]
    # all-equal row (e.g. IoU 0 everywhere) -> column 0 is forced.
    sim = np.array([[0.0, 0.0, 0.0]])
    assert argmax_match(sim, np.ones(1, bool), matched_threshold=0.5,
                        force_match_for_each_row=True) == [0, -1, -1]


def test_ties_in_both_directions_together():
    # Both rows tie across cols 0 and 1 -> both choose col0; row 0 wins col0.
    # Column ties: col0 rows {0.4, 0.4} -> row 0; col1 likewise -> row 0.
    # thresholds 0.5/0.3: col0, col1 max 0.4 -> between -> -2; col2 0 -> -1.
    # force: col0 := row 0 -> [0, -2, -1]; row 1 gets nothing.
    sim = np.array([[0.4, 0.4, 0.0],
                    [0.4, 0.4, 0.0]])
    assert argmax_match(sim, np.ones(2, bool), matched_threshold=0.5,
                        unmatched_threshold=0.3) == [-2, -2, -1]
    assert argmax_match(sim, np.ones(2, bool), matched_threshold=0.5,
                        unmatched_threshold=0.3,
                        force_match_for_each_row=True) == [0, -2, -1]


# --------------------------------------------------------------------------
# Argument validation (ArgMaxMatcher.__init__)
# --------------------------------------------------------------------------

SIM1 = np.array([[0.5]])
V1 = np.ones(1, bool)


def test_unmatched_above_matched_raises():
    with pytest.raises(ValueError):
        argmax_match(SIM1, V1, matched_threshold=0.4, unmatched_threshold=0.5)


def test_equal_thresholds_with_negatives_not_lower_raises():
    with pytest.raises(ValueError):
        argmax_match(SIM1, V1, matched_threshold=0.5, unmatched_threshold=0.5,
                     negatives_lower_than_unmatched=False)
    # unmatched None defaults to matched -> equal -> also an error
    with pytest.raises(ValueError):
        argmax_match(SIM1, V1, matched_threshold=0.5,
                     negatives_lower_than_unmatched=False)


def test_unmatched_without_matched_raises():
    with pytest.raises(ValueError):
        argmax_match(SIM1, V1, matched_threshold=None, unmatched_threshold=0.4)


def test_no_threshold_with_negatives_not_lower_raises_like_tf():
    # TF's equality check sees None == None and raises.
    with pytest.raises(ValueError):
        argmax_match(SIM1, V1, matched_threshold=None,
                     negatives_lower_than_unmatched=False)


def test_equal_thresholds_are_fine_with_negatives_lower():
    # TF test_valid_arguments_corner_case: matched == unmatched == 1 is allowed.
    sim = np.array([[1.0, 0.9]])
    assert argmax_match(sim, V1, matched_threshold=1, unmatched_threshold=1) == [0, -1]


def test_bad_shapes_raise():
    with pytest.raises(ValueError):
        argmax_match(np.zeros(3), np.ones(3, bool), matched_threshold=0.5)
    with pytest.raises(ValueError):
        argmax_match(np.zeros((2, 3)), np.ones(3, bool), matched_threshold=0.5)


# --------------------------------------------------------------------------
# iou_matrix
# --------------------------------------------------------------------------

def test_iou_matrix_hand_values():
    gt = [[0, 0, 2, 1],          # area 2
          [0, 0, 0, 0]]          # zero area
    anchors = [[1, 0, 3, 1],     # vs gt0: inter 1, union 2+2-1 = 3 -> 1/3
               [0, 0, 2, 1],     # identical to gt0 -> 1
               [5, 5, 6, 6],     # disjoint -> 0
               [0, 0, 1, 2]]     # vs gt0: inter 1x1, union 2+2-1 -> 1/3
    got = iou_matrix(gt, anchors)
    assert got.dtype == np.float64 and got.shape == (2, 4)
    np.testing.assert_allclose(got, [[1 / 3, 1.0, 0.0, 1 / 3],
                                     [0.0, 0.0, 0.0, 0.0]])


def test_iou_matrix_degenerate_pair_and_empty_inputs():
    # two zero-area boxes at the same point: union 0 -> 0, not NaN.
    assert iou_matrix([[1, 1, 1, 1]], [[1, 1, 1, 1]]).tolist() == [[0.0]]
    assert iou_matrix(np.zeros((0, 4)), [[0, 0, 1, 1]]).shape == (0, 1)
    assert iou_matrix([[0, 0, 1, 1]], np.zeros((0, 4))).shape == (1, 0)
