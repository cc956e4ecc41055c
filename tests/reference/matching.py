"""Reference port of the TF Object Detection API's ``ArgMaxMatcher``.

Written from reading (not copying) the public TensorFlow sources
``research/object_detection/matchers/argmax_matcher.py`` and
``research/object_detection/core/matcher.py`` in the tensorflow/models
repository (the version whose ``_match`` takes ``valid_rows``), plus their test
file ``argmax_matcher_test.py``. It is a literal loop port over Python scalars:
slow on purpose, so it can be read beside the TF code step by step. Only NumPy
and the standard library are used.

Conventions (TF's ``Match`` class): rows are ground-truth boxes, columns are
anchors, and the result holds one int per column:

* ``>= 0`` -- the column is matched to that row (a positive anchor);
* ``-1``   -- the column is unmatched (a negative anchor);
* ``-2``   -- the column is ignored (neither positive nor negative).

What TF does, step by step (names follow ``ArgMaxMatcher._match``):

1. ``__init__`` validation (raises ``ValueError``): ``unmatched_threshold`` set
   while ``matched_threshold`` is None; ``unmatched_threshold >
   matched_threshold``; ``negatives_lower_than_unmatched=False`` with equal
   thresholds. ``unmatched_threshold=None`` means "same as matched_threshold".
   Note the equality test in TF also fires for ``matched_threshold=None`` with
   ``negatives_lower_than_unmatched=False`` (``None == None``); this port raises
   there too.
2. ``_match_when_rows_are_empty``: a matrix with zero rows gives -1 everywhere.
3. ``matches = argmax(similarity, axis=0)`` -- best row per column.
4. If ``matched_threshold`` is not None: ``matched_vals = reduce_max(axis=0)``,
   ``below_unmatched_threshold = unmatched > v``, ``between_thresholds =
   (v >= unmatched) and (matched > v)``; with ``negatives_lower_than_unmatched``
   below -> -1 and between -> -2, otherwise below -> -2 and between -> -1
   (``_set_values_using_indicator``). Columns with ``v >= matched`` keep the row.
5. If ``force_match_for_each_row``: ``force_match_column_ids = argmax(similarity,
   axis=1)`` (best column per row); ``force_match_column_indicators =
   one_hot(column ids, N) * valid_rows[:, None]``; ``force_match_row_ids =
   argmax(indicators, axis=0)``; ``force_match_column_mask = reduce_max(
   indicators, axis=0) > 0``; ``final = where(mask, force_match_row_ids,
   matches)``. The forced row overrides whatever step 3/4 produced for that
   column (positive, negative or ignored alike).

Ties. TF leaves ties to ``tf.argmax``. The TF 2 documentation of
``tf.math.argmax`` states that it returns the smallest index on ties (that
contract was narrowed in TF commit "Narrow down argmin/argmax contract to always
return the smallest index for ties"; the ``tf.compat.v1.argmax`` page still says
the identity is not guaranteed). This port therefore uses the lowest index on
every tie:

* step 3: equal similarities in a column -> the lowest (valid) row index;
* step 5, per row: equal similarities in a row -> the lowest column index;
* step 5, per column: the one-hot indicators are 0/1, so when several valid rows
  chose the same column their indicators are all 1 and ``argmax`` over rows picks
  the FIRST (lowest-index) of them. The other rows lose that column and are not
  re-assigned elsewhere (TF does no second pass), so a row can end up matched to
  nothing even with ``force_match_for_each_row=True``.

Where this port deliberately differs from TF (as the project asked):

* Padded rows. In TF ``valid_rows`` is only used in step 5 (invalid rows never
  force a match); steps 3-4 take the argmax/max over ALL rows, so an invalid row
  with a high similarity would still win a column. TF's target assigner relies
  on padded ground truth being all-zero boxes (IoU 0) so this rarely matters.
  Here invalid rows are excluded from steps 3-4 as well: they never match.
* All rows invalid. TF only special-cases a matrix with zero rows. Here "no valid
  rows" (zero rows, or every row invalid) returns -1 for every column. (With
  all-zero padded similarities TF gives the same -1 when ``matched_threshold`` is
  positive and ``negatives_lower_than_unmatched`` is True, but -2 when it is
  False and row 0 when ``matched_threshold`` is None.)

Numerics: comparisons are done in the similarity matrix's own floating dtype,
with the thresholds rounded to that dtype first, as TF converts the Python
threshold to the tensor's dtype (so a float32 ``0.7`` IoU is >= a ``0.7``
threshold). Integer/bool matrices are converted to float64. NaN similarities
have no defined TF behaviour here and raise ``ValueError``.
"""

import math

import numpy as np


def _validate_thresholds(matched_threshold, unmatched_threshold,
                         negatives_lower_than_unmatched):
    """ArgMaxMatcher.__init__ checks; returns the effective unmatched threshold."""
    # TF: unmatched_threshold given but matched_threshold None -> ValueError.
    if matched_threshold is None and unmatched_threshold is not None:
        raise ValueError("unmatched_threshold requires matched_threshold to be set")
    # TF: unmatched_threshold defaults to matched_threshold.
    if unmatched_threshold is None:
        unmatched = matched_threshold
    else:
        # TF: unmatched_threshold > matched_threshold -> ValueError.
        if unmatched_threshold > matched_threshold:
            raise ValueError(
                f"unmatched_threshold ({unmatched_threshold}) must be <= "
                f"matched_threshold ({matched_threshold})")
        unmatched = unmatched_threshold
    # TF: negatives in between the thresholds needs a non-empty between zone.
    # (TF's check is a plain ==, so None == None raises as well.)
    if not negatives_lower_than_unmatched and unmatched == matched_threshold:
        raise ValueError(
            "negatives_lower_than_unmatched=False needs unmatched_threshold < "
            f"matched_threshold (got matched={matched_threshold}, "
            f"unmatched={unmatched})")
    return unmatched


def argmax_match(similarity, valid_rows, *, matched_threshold,
                 unmatched_threshold=None, negatives_lower_than_unmatched=True,
                 force_match_for_each_row=False):
    """Match each column (anchor) of ``similarity`` [M, N] to a row (ground truth).

    Args:
      similarity: array [M, N]; higher means more similar (e.g. IoU).
      valid_rows: bool array [M] (or None for "all valid"); invalid (padded) rows
        never match and never force a match.
      matched_threshold: positive if the best valid similarity is >= this; None
        means every column is matched to its best valid row (no thresholds).
      unmatched_threshold: lower threshold; None means ``matched_threshold``.
      negatives_lower_than_unmatched: True -> below unmatched is -1 (negative)
        and between is -2 (ignored); False -> below is -2 and between is -1.
      force_match_for_each_row: every valid row claims its best column.

    Returns:
      list of N Python ints: row index, -1 (unmatched) or -2 (ignored).
    """
    unmatched = _validate_thresholds(matched_threshold, unmatched_threshold,
                                     negatives_lower_than_unmatched)

    sim = np.asarray(similarity)
    if sim.ndim != 2:
        raise ValueError(f"similarity must be 2-D [M, N], got shape {sim.shape}")
    if not np.issubdtype(sim.dtype, np.floating):
        sim = sim.astype(np.float64)
    num_rows, num_cols = sim.shape

    if valid_rows is None:
        valid = [True] * num_rows
    else:
        valid_arr = np.asarray(valid_rows)
        if valid_arr.shape != (num_rows,):
            raise ValueError(
                f"valid_rows must have shape ({num_rows},), got {valid_arr.shape}")
        valid = [bool(v) for v in valid_arr]

    # Python scalars in the similarity dtype (thresholds rounded like TF does).
    scalar = sim.dtype.type
    values = [[scalar(sim[r, c]) for c in range(num_cols)] for r in range(num_rows)]
    for r in range(num_rows):
        for c in range(num_cols):
            if math.isnan(float(values[r][c])):
                raise ValueError(f"similarity[{r}, {c}] is NaN")
    hi = None if matched_threshold is None else scalar(matched_threshold)
    lo = None if unmatched is None else scalar(unmatched)

    # _match_when_rows_are_empty (extended here to "no valid rows"): all -1.
    if num_rows == 0 or not any(valid):
        return [-1] * num_cols

    matches = []
    for c in range(num_cols):
        # matches = argmax(similarity, 0), restricted to valid rows; strict '>'
        # keeps the lowest row index on ties (tf.math.argmax contract).
        best_row = -1
        best_val = None
        for r in range(num_rows):
            if not valid[r]:
                continue
            if best_row < 0 or values[r][c] > best_val:
                best_row = r
                best_val = values[r][c]

        if hi is None:
            # matched_threshold is None: no thresholding, always matched.
            matches.append(best_row)
            continue

        # matched_vals = reduce_max(similarity, 0) -> best_val.
        below_unmatched_threshold = lo > best_val
        between_thresholds = (best_val >= lo) and (hi > best_val)
        # _set_values_using_indicator, in TF's order.
        result = best_row
        if negatives_lower_than_unmatched:
            if below_unmatched_threshold:
                result = -1
            if between_thresholds:
                result = -2
        else:
            if below_unmatched_threshold:
                result = -2
            if between_thresholds:
                result = -1
        matches.append(result)

    if force_match_for_each_row and num_cols > 0:
        # force_match_column_ids = argmax(similarity, 1): best column per row,
        # lowest column index on ties (strict '>').
        force_match_column_ids = []
        for r in range(num_rows):
            best_col = 0
            for c in range(1, num_cols):
                if values[r][c] > values[r][best_col]:
                    best_col = c
            force_match_column_ids.append(best_col)

        # force_match_column_indicators = one_hot(ids, N) * valid_rows[:, None];
        # force_match_row_ids = argmax(indicators, 0) -> the FIRST valid row whose
        # indicator is 1 in that column; force_match_column_mask = any such row.
        for c in range(num_cols):
            force_row = -1  # -1 == mask False for this column
            for r in range(num_rows):
                indicator = 1 if (valid[r] and force_match_column_ids[r] == c) else 0
                if indicator == 1:
                    force_row = r
                    break  # argmax over 0/1 values stops at the first 1
            # final_matches = where(mask, force_match_row_ids, matches)
            if force_row >= 0:
                matches[c] = force_row

    return [int(m) for m in matches]


def iou_matrix(gt_boxes, anchor_boxes):
    """Pairwise IoU [M, N] (float64) of boxes given as [xmin, ymin, xmax, ymax].

    Intersection sides are clamped at 0; areas are (xmax - xmin) * (ymax - ymin)
    as in TF's box ops (boxes are assumed well formed); the IoU is 0 wherever the
    union is <= 0.
    """
    gt = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    anchors = np.asarray(anchor_boxes, dtype=np.float64).reshape(-1, 4)
    out = np.zeros((gt.shape[0], anchors.shape[0]), dtype=np.float64)
    for i in range(gt.shape[0]):
        gx0, gy0, gx1, gy1 = (float(v) for v in gt[i])
        g_area = (gx1 - gx0) * (gy1 - gy0)
        for j in range(anchors.shape[0]):
            ax0, ay0, ax1, ay1 = (float(v) for v in anchors[j])
            a_area = (ax1 - ax0) * (ay1 - ay0)
            iw = max(0.0, min(gx1, ax1) - max(gx0, ax0))
            ih = max(0.0, min(gy1, ay1) - max(gy0, ay0))
            inter = iw * ih
            union = g_area + a_area - inter
            out[i, j] = inter / union if union > 0.0 else 0.0
    return out
