"""Reference port of MediaPipe's ``NonMaxSuppressionCalculator`` (spec §3).

Detections are dicts in the format produced by ``decoding`` (keys used: score,
label_id, xmin, ymin, width, height, keypoints; "anchor_index" and any other keys
are carried through unchanged). Each detection holds a single (score, label_id)
pair, so §3.2 step 2 (keep the best label) is the identity here.

``options`` is a dict keyed by ``NonMaxSuppressionCalculatorOptions`` field names
(§3.1); absent keys take the proto defaults (min_suppression_threshold 1.0,
overlap_type JACCARD, algorithm DEFAULT, max_num_detections -1,
min_score_threshold -1.0).

Decisions where MediaPipe is unspecified or where this port simplifies:

* §3.2 sort: MediaPipe uses ``std::sort`` with a strict ``>`` comparator, so the
  order of equal scores is unspecified. Here the sort is STABLE and descending:
  equal scores keep their input-list order (lower input position first). NaN
  scores make MediaPipe's comparator invalid; here they raise ``ValueError``.
* Empty input: MediaPipe emits nothing (or an empty list when
  ``return_empty_detections``); both are returned here as ``[]``.
* ``max_num_detections``: -1 means no limit; any other negative value is also
  treated as no limit; 0 is a CHECK failure (``ValueError``).
* The pixel-space ``IMAGE`` input and multiple input streams are not modelled
  (pass the concatenated list).
"""

import numpy as np

F32 = np.float32

_DEFAULTS = {
    "max_num_detections": -1,
    "min_score_threshold": -1.0,
    "min_suppression_threshold": 1.0,
    "overlap_type": "JACCARD",
    "return_empty_detections": False,
    "algorithm": "DEFAULT",
}


def _get(options, key):
    if key in options:
        return options[key]
    return _DEFAULTS[key]


def _std_max(a, b):
    # std::max(a, b): returns a unless a < b.
    return b if a < b else a


def _std_min(a, b):
    # std::min(a, b): returns a unless b < a.
    return b if b < a else a


def _rectangle(r):
    """§3.3: rectangle [xmin, xmin + width] x [ymin, ymin + height], with the
    maxima recomputed by single-precision addition. Returns corners."""
    xmin, ymin, width, height = (F32(v) for v in r)
    with np.errstate(all="ignore"):
        xmax = F32(xmin + width)
        ymax = F32(ymin + height)
    return xmin, ymin, xmax, ymax


def _is_empty(rect):
    xmin, ymin, xmax, ymax = rect
    return xmin > xmax or ymin > ymax


def _area(xmin, ymin, xmax, ymax):
    with np.errstate(all="ignore"):
        return F32(F32(xmax - xmin) * F32(ymax - ymin))


def overlap(r1, r2, overlap_type: str) -> np.float32:
    """§3.3 overlap measure of two rectangles ``(xmin, ymin, width, height)``.

    The rectangle is empty when a recomputed maximum is below its minimum (for
    finite inputs this is width < 0 or height < 0; a tiny negative width that
    rounds away in ``xmin + width`` gives a zero-area, non-empty rectangle, and
    the result is 0 either way).
    """
    a = _rectangle(r1)
    b = _rectangle(r2)
    a_xmin, a_ymin, a_xmax, a_ymax = a
    b_xmin, b_ymin, b_xmax, b_ymax = b

    # Empty or not touching (touching edges count as intersecting) -> 0.
    if _is_empty(a) or _is_empty(b):
        return F32(0.0)
    if b_xmax < a_xmin or a_xmax < b_xmin or b_ymax < a_ymin or a_ymax < b_ymin:
        return F32(0.0)

    # Intersection rectangle and its area.
    i_xmin = _std_max(a_xmin, b_xmin)
    i_ymin = _std_max(a_ymin, b_ymin)
    i_xmax = _std_min(a_xmax, b_xmax)
    i_ymax = _std_min(a_ymax, b_ymax)
    if i_xmin > i_xmax or i_ymin > i_ymax:
        intersection = F32(0.0)
    else:
        intersection = _area(i_xmin, i_ymin, i_xmax, i_ymax)

    with np.errstate(all="ignore"):
        if overlap_type == "JACCARD":
            # Area of the smallest rectangle enclosing both (not the union!).
            u_xmin = _std_min(a_xmin, b_xmin)
            u_ymin = _std_min(a_ymin, b_ymin)
            u_xmax = _std_max(a_xmax, b_xmax)
            u_ymax = _std_max(a_ymax, b_ymax)
            normalization = _area(u_xmin, u_ymin, u_xmax, u_ymax)
        elif overlap_type == "MODIFIED_JACCARD":
            normalization = _area(b_xmin, b_ymin, b_xmax, b_ymax)
        elif overlap_type == "INTERSECTION_OVER_UNION":
            normalization = F32(
                F32(_area(a_xmin, a_ymin, a_xmax, a_ymax) + _area(b_xmin, b_ymin, b_xmax, b_ymax))
                - intersection
            )
        else:
            raise ValueError(f"unsupported overlap_type {overlap_type!r}")

        # Denominator not > 0 -> 0.
        if normalization > 0.0:
            return F32(intersection / normalization)
    return F32(0.0)


def _box(detection):
    return (detection["xmin"], detection["ymin"], detection["width"], detection["height"])


def _sorted_indices(detections):
    """§3.2 step 3: descending score; stable (ties keep input order)."""
    for detection in detections:
        if np.isnan(F32(detection["score"])):
            raise ValueError("NaN score")
    order = list(range(len(detections)))
    # Python's sort is stable; a descending key keeps equal scores in input order.
    order.sort(key=lambda index: -float(F32(detections[index]["score"])))
    return order


def non_max_suppression(detections: list, options: dict) -> list:
    """MediaPipe ``NonMaxSuppressionCalculator`` (§3), DEFAULT or WEIGHTED.

    Returns the output detections (fresh dicts) in emission order.
    """
    max_num_detections = int(_get(options, "max_num_detections"))
    if max_num_detections == 0:
        raise ValueError("max_num_detections must not be 0")
    algorithm = _get(options, "algorithm")
    overlap_type = _get(options, "overlap_type")
    if overlap_type not in ("JACCARD", "MODIFIED_JACCARD", "INTERSECTION_OVER_UNION"):
        raise ValueError(f"unsupported overlap_type {overlap_type!r}")

    # §3.2 step 1: empty input -> nothing / empty list (both [] here).
    # §3.2 step 2: drop detections without a label.
    kept_input = []
    for detection in detections:
        if detection.get("label_id") is None:
            continue
        kept_input.append(detection)
    if len(kept_input) == 0:
        return []

    if algorithm == "DEFAULT":
        return _default_nms(kept_input, options, max_num_detections, overlap_type)
    if algorithm == "WEIGHTED":
        return _weighted_nms(kept_input, options, overlap_type)
    raise ValueError(f"unknown algorithm {algorithm!r}")


def _default_nms(detections, options, max_num_detections, overlap_type):
    """§3.4 DEFAULT (greedy hard NMS)."""
    min_score_threshold = F32(_get(options, "min_score_threshold"))
    min_suppression_threshold = F32(_get(options, "min_suppression_threshold"))
    # -1 (any negative) = no limit: the limit becomes the input size.
    if max_num_detections > -1:
        limit = max_num_detections
    else:
        limit = len(detections)

    output = []
    kept_boxes = []
    for index in _sorted_indices(detections):
        candidate = detections[index]
        score = F32(candidate["score"])
        # min_score_threshold only active if > 0.
        if min_score_threshold > 0 and score < min_score_threshold:
            break
        suppressed = False
        for kept_box in kept_boxes:
            # overlap(retained, candidate)
            if overlap(kept_box, _box(candidate), overlap_type) > min_suppression_threshold:
                suppressed = True
                break
        if not suppressed:
            output.append(_copy_detection(candidate))
            kept_boxes.append(_box(candidate))
        # checked after every candidate
        if len(output) >= limit:
            break
    return output


def _weighted_nms(detections, options, overlap_type):
    """§3.5 WEIGHTED (BlazeFace blending)."""
    min_score_threshold = F32(_get(options, "min_score_threshold"))
    min_suppression_threshold = F32(_get(options, "min_suppression_threshold"))

    output = []
    remaining = _sorted_indices(detections)
    while len(remaining) > 0:
        top = detections[remaining[0]]
        if min_score_threshold > 0 and F32(top["score"]) < min_score_threshold:
            break

        # Candidates among remaining (including top): overlap(det[e], top) > thr.
        candidates = []
        rest = []
        for e in remaining:
            if overlap(_box(detections[e]), _box(top), overlap_type) > min_suppression_threshold:
                candidates.append(e)
            else:
                rest.append(e)

        out = _copy_detection(top)
        if len(candidates) > 0:
            num_keypoints = len(top["keypoints"])
            total_score = F32(0.0)
            weighted_xmin = F32(0.0)
            weighted_ymin = F32(0.0)
            weighted_xmax = F32(0.0)
            weighted_ymax = F32(0.0)
            weighted_keypoints = [[F32(0.0), F32(0.0)] for _ in range(num_keypoints)]
            with np.errstate(all="ignore"):
                # Single-precision sums in sorted order.
                for e in candidates:
                    candidate = detections[e]
                    s = F32(candidate["score"])
                    xmin = F32(candidate["xmin"])
                    ymin = F32(candidate["ymin"])
                    width = F32(candidate["width"])
                    height = F32(candidate["height"])
                    total_score = F32(total_score + s)
                    weighted_xmin = F32(weighted_xmin + F32(xmin * s))
                    weighted_ymin = F32(weighted_ymin + F32(ymin * s))
                    weighted_xmax = F32(weighted_xmax + F32(F32(xmin + width) * s))
                    weighted_ymax = F32(weighted_ymax + F32(F32(ymin + height) * s))
                    if len(candidate["keypoints"]) < num_keypoints:
                        raise ValueError("candidate has fewer keypoints than the top detection")
                    for j in range(num_keypoints):
                        keypoint_x = F32(candidate["keypoints"][j][0])
                        keypoint_y = F32(candidate["keypoints"][j][1])
                        weighted_keypoints[j][0] = F32(weighted_keypoints[j][0] + F32(keypoint_x * s))
                        weighted_keypoints[j][1] = F32(weighted_keypoints[j][1] + F32(keypoint_y * s))
                new_xmin = F32(weighted_xmin / total_score)
                new_ymin = F32(weighted_ymin / total_score)
                new_xmax = F32(weighted_xmax / total_score)
                new_ymax = F32(weighted_ymax / total_score)
                out["xmin"] = new_xmin
                out["ymin"] = new_ymin
                out["width"] = F32(new_xmax - new_xmin)
                out["height"] = F32(new_ymax - new_ymin)
                new_keypoints = []
                for j in range(num_keypoints):
                    new_keypoints.append(
                        (
                            F32(weighted_keypoints[j][0] / total_score),
                            F32(weighted_keypoints[j][1] / total_score),
                        )
                    )
                out["keypoints"] = new_keypoints
        # Output keeps the top's score and label.
        output.append(out)

        # Early stop: nothing consumed (top is not its own candidate) -> drop the rest.
        if len(rest) == len(remaining):
            break
        remaining = rest
    return output


def _copy_detection(detection):
    """Fresh dict; keypoints list copied so callers cannot alias the input."""
    out = dict(detection)
    out["keypoints"] = [tuple(kp) for kp in detection.get("keypoints", [])]
    return out
