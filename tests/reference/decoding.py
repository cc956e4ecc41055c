"""Reference port of MediaPipe's ``TensorsToDetectionsCalculator``, CPU path (spec §2).

Two entry points:

* ``tensors_to_detections(raw_boxes, raw_scores, anchors, options)`` -- raw
  model (2 or 3 tensors): box/keypoint decoding against anchors (§2.5), scoring
  (§2.6) and conversion/filtering (§2.7), with the §2.11 edge cases.
* ``postprocessed_to_detections(boxes, classes, scores, num_detections, options)``
  -- model with built-in post-processing (4 tensors, §2.8), one class per
  detection.

``options`` is a dict keyed by ``TensorsToDetectionsCalculatorOptions`` field
names (§2.2). An absent key means "not set": ``score_clipping_thresh`` and
``min_score_thresh`` are only active when present, and ``box_format`` only wins
over ``reverse_output_order`` when present (§2.4). Enum values are strings.

``anchors`` rows are ``(x_center, y_center, w, h)`` (the golden-file / Anchor
order, not the 3-tensor ``[y, x, h, w]`` layout).

Each detection is a dict::

    {"anchor_index": int, "score": np.float32, "label_id": int,
     "xmin": np.float32, "ymin": np.float32, "width": np.float32,
     "height": np.float32, "keypoints": [(np.float32 x, np.float32 y), ...]}

All decoding arithmetic is single precision in the order of §2.5. ``exp`` is
``expf`` below: the float32 rounding of the double-precision exponential, i.e.
correctly rounded, as glibc's ``expf`` (error < 0.502 ulp) nearly always is.
NumPy's own float32 ``exp`` is up to 2 ulp off and is not used.
"""

import numpy as np

F32 = np.float32
FLT_MAX = np.finfo(np.float32).max

_DEFAULTS = {
    "num_boxes": 0,
    "keypoint_coord_offset": 0,
    "num_keypoints": 0,
    "num_values_per_keypoint": 2,
    "box_coord_offset": 0,
    "x_scale": 0.0,
    "y_scale": 0.0,
    "w_scale": 0.0,
    "h_scale": 0.0,
    "apply_exponential_on_box_size": False,
    "reverse_output_order": False,
    "ignore_classes": [],
    "allow_classes": [],
    "sigmoid_score": False,
    "flip_vertically": False,
    "max_results": -1,
    "max_classes_per_detection": 1,
}


def expf(x):
    """float32 exp, correctly rounded (computed in double, rounded once)."""
    with np.errstate(over="ignore"):
        return F32(np.exp(np.float64(x)))


def _get(options, key):
    if key in options:
        return options[key]
    return _DEFAULTS[key]


def _box_format(options):
    """§2.4: explicit box_format wins (UNSPECIFIED behaves as YXHW); otherwise
    reverse_output_order selects XYWH, else YXHW."""
    if "box_format" in options:
        fmt = options["box_format"]
        if fmt == "UNSPECIFIED":
            return "YXHW"
        if fmt not in ("YXHW", "XYWH", "XYXY"):
            raise ValueError(f"unknown box_format {fmt!r}")
        return fmt
    if _get(options, "reverse_output_order"):
        return "XYWH"
    return "YXHW"


def _class_filter(options):
    """§2.3 class-filter validation; returns (allow_list, ignore_set)."""
    allow_classes = [int(c) for c in _get(options, "allow_classes")]
    ignore_classes = [int(c) for c in _get(options, "ignore_classes")]
    if len(allow_classes) > 0 and len(ignore_classes) > 0:
        raise ValueError("allow_classes and ignore_classes are mutually exclusive")
    return allow_classes, ignore_classes


def _is_class_allowed(class_id, allow_classes, ignore_classes):
    """§2.6 "Allowed": allowlist if non-empty, else not in the ignore set."""
    if len(allow_classes) > 0:
        return class_id in allow_classes
    return class_id not in ignore_classes


def _validate_common(options):
    # §2.3: CHECK max_results != 0.
    if int(_get(options, "max_results")) == 0:
        raise ValueError("max_results must not be 0")


def tensors_to_detections(raw_boxes, raw_scores, anchors, options: dict) -> list:
    """Raw-model path of MediaPipe ``TensorsToDetectionsCalculator`` (CPU), §2.5-§2.7.

    raw_boxes: float32 ``[num_boxes, num_coords]``; raw_scores: float32
    ``[num_boxes, num_classes]``; anchors: ``[num_boxes, 4]`` as
    ``(x_center, y_center, w, h)``. Returns the list of detection dicts in anchor
    index order.
    """
    # §2.3 validation.
    if "num_classes" not in options or "num_coords" not in options:
        raise ValueError("num_classes and num_coords must be set")
    _validate_common(options)
    num_classes = int(options["num_classes"])
    num_coords = int(options["num_coords"])
    num_keypoints = int(_get(options, "num_keypoints"))
    num_values_per_keypoint = int(_get(options, "num_values_per_keypoint"))
    if num_values_per_keypoint != 2:
        raise ValueError("num_values_per_keypoint must be 2")
    if num_keypoints * num_values_per_keypoint + 4 != num_coords:
        raise ValueError("num_keypoints * 2 + 4 must equal num_coords")
    allow_classes, ignore_classes = _class_filter(options)

    raw_boxes = np.asarray(raw_boxes, dtype=np.float32)
    raw_scores = np.asarray(raw_scores, dtype=np.float32)
    anchors = np.asarray(anchors, dtype=np.float32)
    if raw_boxes.ndim != 2 or raw_boxes.shape[1] != num_coords:
        raise ValueError("raw_boxes must be [num_boxes, num_coords]")
    num_boxes = raw_boxes.shape[0]
    if "num_boxes" in options and int(options["num_boxes"]) != num_boxes:
        raise ValueError("raw_boxes rows != num_boxes")
    if raw_scores.ndim != 2 or raw_scores.shape[0] != num_boxes or raw_scores.shape[1] != num_classes:
        raise ValueError("raw_scores must be [num_boxes, num_classes]")
    if anchors.ndim != 2 or anchors.shape[1] != 4 or anchors.shape[0] < num_boxes:
        # §2.9: the CPU path would read out of bounds with fewer anchors.
        raise ValueError("need one anchor (x_center, y_center, w, h) per box")

    box_format = _box_format(options)
    box_coord_offset = int(_get(options, "box_coord_offset"))
    keypoint_coord_offset = int(_get(options, "keypoint_coord_offset"))
    x_scale = F32(_get(options, "x_scale"))
    y_scale = F32(_get(options, "y_scale"))
    w_scale = F32(_get(options, "w_scale"))
    h_scale = F32(_get(options, "h_scale"))
    apply_exp = bool(_get(options, "apply_exponential_on_box_size"))
    sigmoid_score = bool(_get(options, "sigmoid_score"))
    has_clipping = "score_clipping_thresh" in options
    clipping_thresh = F32(options["score_clipping_thresh"]) if has_clipping else None
    has_min_score = "min_score_thresh" in options
    min_score_thresh = F32(options["min_score_thresh"]) if has_min_score else None
    flip_vertically = bool(_get(options, "flip_vertically"))
    max_results = int(_get(options, "max_results"))

    # Flat row-major views, as the C++ indexes them (r[i*num_coords + ...]).
    raw = [F32(v) for v in raw_boxes.reshape(-1)]
    raw_score_list = [F32(v) for v in raw_scores.reshape(-1)]
    total = len(raw)

    def read(index):
        if index < 0 or index >= total:
            raise ValueError("box/keypoint offset reads outside the box tensor")
        return raw[index]

    # Output buffer of decoded values (zero-initialised, num_boxes * num_coords).
    decoded = [F32(0.0)] * total

    def write(index, value):
        if index < 0 or index >= total:
            raise ValueError("keypoint offset writes outside the box tensor")
        decoded[index] = value

    with np.errstate(all="ignore"):
        # ---- §2.5 decoding: all anchors first, into the output buffer ----
        for i in range(num_boxes):
            anchor_x_center = F32(anchors[i][0])
            anchor_y_center = F32(anchors[i][1])
            anchor_w = F32(anchors[i][2])
            anchor_h = F32(anchors[i][3])
            o = i * num_coords + box_coord_offset

            # §2.5 table: tx, ty, tw, th per box format.
            if box_format == "YXHW":
                tx = read(o + 1)
                ty = read(o)
                tw = read(o + 3)
                th = read(o + 2)
            elif box_format == "XYWH":
                tx = read(o)
                ty = read(o + 1)
                tw = read(o + 2)
                th = read(o + 3)
            else:  # XYXY: distances to left, top, right, bottom edges
                tx = F32(F32(read(o + 2) - read(o)) / F32(2.0))
                ty = F32(F32(read(o + 3) - read(o + 1)) / F32(2.0))
                tw = F32(read(o) + read(o + 2))
                th = F32(read(o + 1) + read(o + 3))

            # §2.5 single precision, in this order.
            x_center = F32(F32(F32(tx / x_scale) * anchor_w) + anchor_x_center)
            y_center = F32(F32(F32(ty / y_scale) * anchor_h) + anchor_y_center)
            if apply_exp:
                h = F32(expf(F32(th / h_scale)) * anchor_h)
                w = F32(expf(F32(tw / w_scale)) * anchor_w)
            else:
                h = F32(F32(th / h_scale) * anchor_h)
                w = F32(F32(tw / w_scale) * anchor_w)
            ymin = F32(y_center - F32(h / F32(2.0)))
            xmin = F32(x_center - F32(w / F32(2.0)))
            ymax = F32(y_center + F32(h / F32(2.0)))
            xmax = F32(x_center + F32(w / F32(2.0)))

            # Written at i*num_coords + 0..3 WITHOUT box_coord_offset.
            base = i * num_coords
            write(base + 0, ymin)
            write(base + 1, xmin)
            write(base + 2, ymax)
            write(base + 3, xmax)

            # §2.5 keypoints (written after the box: §2.11 overwrite).
            for k in range(num_keypoints):
                q = i * num_coords + keypoint_coord_offset + k * num_values_per_keypoint
                if box_format == "YXHW":
                    keypoint_y = read(q)
                    keypoint_x = read(q + 1)
                else:  # XYWH and XYXY store (x, y)
                    keypoint_x = read(q)
                    keypoint_y = read(q + 1)
                keypoint_x = F32(F32(F32(keypoint_x / x_scale) * anchor_w) + anchor_x_center)
                keypoint_y = F32(F32(F32(keypoint_y / y_scale) * anchor_h) + anchor_y_center)
                write(q, keypoint_x)
                write(q + 1, keypoint_y)

        # ---- §2.6 scoring ----
        detection_scores = []
        detection_classes = []
        for i in range(num_boxes):
            best_score = F32(-FLT_MAX)
            best_class = -1
            for c in range(num_classes):
                if not _is_class_allowed(c, allow_classes, ignore_classes):
                    continue
                s = raw_score_list[i * num_classes + c]
                if sigmoid_score:
                    if has_clipping:
                        # clamp to [-t, t]
                        if s < -clipping_thresh:
                            s = F32(-clipping_thresh)
                        elif s > clipping_thresh:
                            s = clipping_thresh
                    s = F32(F32(1.0) / F32(F32(1.0) + expf(F32(-s))))
                # strict: lowest class index wins ties
                if best_score < s:
                    best_score = s
                    best_class = c
            detection_scores.append(best_score)
            detection_classes.append(best_class)

        # ---- §2.7 conversion and filtering, anchor index order ----
        output = []
        for i in range(num_boxes):
            # 1. max_results stop.
            if max_results > 0 and len(output) >= max_results:
                break
            score = detection_scores[i]
            class_id = detection_classes[i]
            # 2. class filter (rejects class -1 under an allowlist) and
            #    min_score_thresh (strict <, equal is kept).
            if not _is_class_allowed(class_id, allow_classes, ignore_classes):
                continue
            if has_min_score and score < min_score_thresh:
                continue
            # 3. Box read back from the output buffer at i*num_coords + 0..3.
            base = i * num_coords
            ymin = decoded[base + 0]
            xmin = decoded[base + 1]
            ymax = decoded[base + 2]
            xmax = decoded[base + 3]
            detection = _make_detection(i, score, class_id, ymin, xmin, ymax, xmax, flip_vertically)
            if detection is None:
                continue
            # 4. Keypoints read back from the output buffer.
            for k in range(num_keypoints):
                q = base + keypoint_coord_offset + k * num_values_per_keypoint
                keypoint_x = decoded[q]
                keypoint_y = decoded[q + 1]
                if flip_vertically:
                    keypoint_y = F32(F32(1.0) - keypoint_y)
                detection["keypoints"].append((keypoint_x, keypoint_y))
            # 5. Emit.
            output.append(detection)
    return output


def _make_detection(index, score, class_id, ymin, xmin, ymax, xmax, flip_vertically):
    """§2.7 step 3: box fields and the size filter. Returns None when dropped."""
    with np.errstate(all="ignore"):
        out_xmin = F32(xmin)
        if flip_vertically:
            out_ymin = F32(F32(1.0) - F32(ymax))
        else:
            out_ymin = F32(ymin)
        # single-precision subtractions
        width = F32(F32(xmax) - F32(xmin))
        height = F32(F32(ymax) - F32(ymin))
    if width < 0 or height < 0 or np.isnan(width) or np.isnan(height):
        return None
    return {
        "anchor_index": int(index),
        "score": F32(score),
        "label_id": int(class_id),
        "xmin": out_xmin,
        "ymin": out_ymin,
        "width": width,
        "height": height,
        "keypoints": [],
    }


def postprocessed_to_detections(boxes, classes, scores, num_detections, options: dict) -> list:
    """4-tensor path (model with built-in post-processing), spec §2.8.

    boxes: ``[max_det, 4]``; classes, scores: ``[max_det]`` (classes are floats
    cast to int); num_detections: a float truncated to int. Box corners are read
    from ``options["box_boundaries_indices"]`` (dict with keys ymin, xmin, ymax,
    xmax; default 0, 1, 2, 3). Only ``max_classes_per_detection == 1``.
    "anchor_index" is the row index; "keypoints" is empty.
    """
    _validate_common(options)
    if int(_get(options, "max_classes_per_detection")) != 1:
        raise ValueError("this reference supports max_classes_per_detection == 1 only")
    allow_classes, ignore_classes = _class_filter(options)

    indices = {"ymin": 0, "xmin": 1, "ymax": 2, "xmax": 3}
    if "box_boundaries_indices" in options:
        given = options["box_boundaries_indices"]
        for key in indices:
            if key in given:
                indices[key] = int(given[key])
    if sorted(indices.values()) != [0, 1, 2, 3]:
        raise ValueError("box_boundaries_indices must be a permutation of 0..3")

    has_min_score = "min_score_thresh" in options
    min_score_thresh = F32(options["min_score_thresh"]) if has_min_score else None
    flip_vertically = bool(_get(options, "flip_vertically"))
    max_results = int(_get(options, "max_results"))

    boxes = np.asarray(boxes, dtype=np.float32)
    classes = np.asarray(classes, dtype=np.float32).reshape(-1)
    scores = np.asarray(scores, dtype=np.float32).reshape(-1)
    # num_detections: float tensor, truncated to int.
    count_value = float(np.asarray(num_detections, dtype=np.float32).reshape(-1)[0])
    if not np.isfinite(count_value):
        raise ValueError("num_detections is not finite")
    count = int(count_value)
    if count > boxes.shape[0] or count > classes.shape[0] or count > scores.shape[0]:
        raise ValueError("num_detections exceeds the tensor sizes")

    output = []
    for i in range(count):
        # §2.7 step 1: max_results stop.
        if max_results > 0 and len(output) >= max_results:
            break
        class_value = float(classes[i])
        if not np.isfinite(class_value):
            raise ValueError("class value is not finite")
        class_id = int(class_value)  # cast truncates toward zero
        score = F32(scores[i])
        # §2.7 step 2: class filter and min_score_thresh.
        if not _is_class_allowed(class_id, allow_classes, ignore_classes):
            continue
        if has_min_score and score < min_score_thresh:
            continue
        # §2.8: corners from box_boundaries_indices, then §2.7 step 3.
        row = boxes[i]
        ymin = F32(row[indices["ymin"]])
        xmin = F32(row[indices["xmin"]])
        ymax = F32(row[indices["ymax"]])
        xmax = F32(row[indices["xmax"]])
        detection = _make_detection(i, score, class_id, ymin, xmin, ymax, xmax, flip_vertically)
        if detection is None:
            continue
        output.append(detection)
    return output
