"""Reference port of MediaPipe's ``SsdAnchorsCalculator`` (spec §1).

``ssd_anchors(options)`` returns a float32 array ``[N, 4]`` with columns
``x_center, y_center, w, h`` in MediaPipe's emission order.

``options`` is a dict keyed by ``SsdAnchorsCalculatorOptions`` field names
(spec §1.2). An absent key means the field is not set: its proto default is used,
and for the fixed-anchor rule of §1.3 step 1 "present" means "key in dict".

Single precision is placed where the spec's precision notes (§1.4 "Precision
summary", §1.6 "Arithmetic") say the C++ rounds; everything else is double.
"""

import math

import numpy as np

F32 = np.float32

# §1.2 proto defaults of the fields that have a non-zero / non-empty default.
_DEFAULTS = {
    "input_size_width": 0,
    "input_size_height": 0,
    "min_scale": 0.0,
    "max_scale": 0.0,
    "anchor_offset_x": 0.5,
    "anchor_offset_y": 0.5,
    "num_layers": 0,
    "feature_map_width": [],
    "feature_map_height": [],
    "strides": [],
    "aspect_ratios": [],
    "reduce_boxes_in_lowest_layer": False,
    "interpolated_scale_aspect_ratio": 1.0,
    "fixed_anchor_size": False,
    "multiscale_anchor_generation": False,
    "min_level": 3,
    "max_level": 7,
    "anchor_scale": 4.0,
    "scales_per_octave": 2,
    "normalize_coordinates": True,
    "fixed_anchors": [],
}


def _get(options, key):
    if key in options:
        return options[key]
    return _DEFAULTS[key]


def _fixed_anchor_row(anchor):
    """One fixed anchor (tuple or dict) as (x_center, y_center, w, h) float32."""
    if isinstance(anchor, dict):
        return [
            F32(anchor["x_center"]),
            F32(anchor["y_center"]),
            F32(anchor["w"]),
            F32(anchor["h"]),
        ]
    x_center, y_center, w, h = anchor
    return [F32(x_center), F32(y_center), F32(w), F32(h)]


def _to_array(rows):
    if not rows:
        return np.zeros((0, 4), dtype=np.float32)
    return np.array(rows, dtype=np.float32)


def _grid_from_stride(input_size, stride):
    # §1.4 "Grid size": ceil(f32(input) / f32(stride)), division in single
    # precision, then converted to int.
    with np.errstate(divide="ignore", invalid="ignore"):
        quotient = F32(input_size) / F32(stride)
    if not np.isfinite(quotient):
        raise ValueError("grid size is not finite (stride 0?)")
    return int(math.ceil(float(quotient)))


def _calculate_scale(min_scale, max_scale, stride_index, num_strides):
    """§1.4 CalculateScale."""
    min_scale = F32(min_scale)
    max_scale = F32(max_scale)
    if num_strides == 1:
        # n == 1: (min + max) * 0.5, all single precision.
        return F32(F32(min_scale + max_scale) * F32(0.5))
    # f32 subtraction; product with i and division by f32(n - 1) in double;
    # sum with min_scale in double; rounded to single on return.
    diff = float(F32(max_scale - min_scale))
    value = float(min_scale) + diff * float(stride_index) / float(F32(num_strides - 1))
    return F32(value)


def ssd_anchors(options: dict) -> np.ndarray:
    """MediaPipe ``SsdAnchorsCalculator`` output as float32 ``[N, 4]``.

    Columns are ``x_center, y_center, w, h``. Raises ``ValueError`` where
    MediaPipe returns an error, CHECK-fails or loops forever (§1.3, §1.5).
    """
    # §1.3 step 1: fixed anchors.
    fixed_anchors = _get(options, "fixed_anchors")
    if len(fixed_anchors) > 0:
        for key in ("input_size_height", "input_size_width", "min_scale", "max_scale", "num_layers"):
            if key in options:
                raise ValueError(f"fixed_anchors given together with {key}")
        if _get(options, "multiscale_anchor_generation"):
            raise ValueError("fixed_anchors given together with multiscale_anchor_generation")
        rows = []
        for anchor in fixed_anchors:
            rows.append(_fixed_anchor_row(anchor))
        return _to_array(rows)

    feature_map_height = list(_get(options, "feature_map_height"))
    feature_map_width = list(_get(options, "feature_map_width"))
    strides = list(_get(options, "strides"))

    # §1.3 step 2.
    if len(feature_map_height) == 0 and len(strides) == 0:
        raise ValueError("Both feature map shape and strides are missing")

    # §1.3 step 3.
    multiscale = bool(_get(options, "multiscale_anchor_generation"))
    if multiscale:
        num_layers = int(_get(options, "max_level")) - int(_get(options, "min_level")) + 1
    else:
        num_layers = int(_get(options, "num_layers"))
    if len(feature_map_height) > 0:
        # (MediaPipe only logs "Strides will be ignored" here; they are not.)
        if len(feature_map_height) != num_layers:
            raise ValueError("len(feature_map_height) != number of layers")
        if len(feature_map_height) != len(feature_map_width):
            raise ValueError("len(feature_map_height) != len(feature_map_width)")
    else:
        if len(strides) != num_layers:
            raise ValueError("len(strides) != number of layers")

    # §1.3 step 4.
    if multiscale:
        return _multiscale_anchors(options, strides, feature_map_height, feature_map_width)
    return _standard_anchors(options, num_layers, strides, feature_map_height, feature_map_width)


def _standard_anchors(options, num_layers, strides, feature_map_height, feature_map_width):
    """§1.4 standard algorithm."""
    min_scale = F32(_get(options, "min_scale"))
    max_scale = F32(_get(options, "max_scale"))
    anchor_offset_x = F32(_get(options, "anchor_offset_x"))
    anchor_offset_y = F32(_get(options, "anchor_offset_y"))
    aspect_ratios = [F32(r) for r in _get(options, "aspect_ratios")]
    reduce_lowest = bool(_get(options, "reduce_boxes_in_lowest_layer"))
    interpolated = F32(_get(options, "interpolated_scale_aspect_ratio"))
    fixed_anchor_size = bool(_get(options, "fixed_anchor_size"))
    input_size_height = int(_get(options, "input_size_height"))
    input_size_width = int(_get(options, "input_size_width"))

    # §1.4: n is the number of strides, not num_layers.
    n = len(strides)

    rows = []
    layer = 0
    # §1.4 "Layer grouping": groups of consecutive layers with equal stride.
    while layer < num_layers:
        # §1.5: with no stride for this layer the inner loop never advances and
        # MediaPipe's Open() loops forever.
        if layer >= n:
            raise ValueError("fewer strides than layers: MediaPipe would loop forever")
        ratios = []
        scales = []
        j = layer
        while j < n and strides[j] == strides[layer]:
            scale = _calculate_scale(min_scale, max_scale, j, n)
            if j == 0 and reduce_lowest:
                # §1.4 reduced lowest layer: fixed 3-anchor set, first scale is
                # the literal f32(0.1), no interpolated anchor.
                ratios.append(F32(1.0))
                scales.append(F32(0.1))
                ratios.append(F32(2.0))
                scales.append(scale)
                ratios.append(F32(0.5))
                scales.append(scale)
            else:
                # Aspect ratios in list order, each with this layer's own scale.
                for ratio in aspect_ratios:
                    ratios.append(ratio)
                    scales.append(scale)
                # Interpolated anchor last (on when the option is > 0).
                if interpolated > 0.0:
                    if j == n - 1:
                        scale_next = F32(1.0)
                    else:
                        scale_next = _calculate_scale(min_scale, max_scale, j + 1, n)
                    # single-precision product and single-precision sqrt
                    scales.append(np.sqrt(F32(scale * scale_next)))
                    ratios.append(interpolated)
            j += 1

        # §1.4 per-anchor sizes: h = scale / sqrt(ratio), w = scale * sqrt(ratio),
        # all single precision.
        anchor_heights = []
        anchor_widths = []
        for k in range(len(ratios)):
            ratio_sqrt = np.sqrt(F32(ratios[k]))
            with np.errstate(divide="ignore", invalid="ignore"):
                anchor_heights.append(F32(scales[k] / ratio_sqrt))
                anchor_widths.append(F32(scales[k] * ratio_sqrt))

        # §1.4 "Grid size": group's first layer.
        if len(feature_map_height) > 0:
            feature_map_h = int(feature_map_height[layer])
            feature_map_w = int(feature_map_width[layer])
        else:
            feature_map_h = _grid_from_stride(input_size_height, strides[layer])
            feature_map_w = _grid_from_stride(input_size_width, strides[layer])

        # §1.4 emission: row y, column x, anchor k.
        for y in range(feature_map_h):
            for x in range(feature_map_w):
                for k in range(len(anchor_heights)):
                    # Centres: f32(f32(x + offset) * 1.0f) / f32(grid), single precision.
                    x_center = F32(F32(F32(x) + anchor_offset_x) * F32(1.0)) / F32(feature_map_w)
                    y_center = F32(F32(F32(y) + anchor_offset_y) * F32(1.0)) / F32(feature_map_h)
                    if fixed_anchor_size:
                        w = F32(1.0)
                        h = F32(1.0)
                    else:
                        w = anchor_widths[k]
                        h = anchor_heights[k]
                    rows.append([F32(x_center), F32(y_center), w, h])
        layer = j

    return _to_array(rows)


def _multiscale_anchors(options, strides, feature_map_height, feature_map_width):
    """§1.6 multiscale (RetinaNet-style) algorithm."""
    min_level = int(_get(options, "min_level"))
    max_level = int(_get(options, "max_level"))
    anchor_scale = F32(_get(options, "anchor_scale"))
    scales_per_octave = int(_get(options, "scales_per_octave"))
    aspect_ratios = [F32(r) for r in _get(options, "aspect_ratios")]
    normalize = bool(_get(options, "normalize_coordinates"))
    input_size_height = int(_get(options, "input_size_height"))
    input_size_width = int(_get(options, "input_size_width"))

    rows = []
    for i, level in enumerate(range(min_level, max_level + 1)):
        # stride = f32(2^level), not taken from `strides`.
        stride = F32(2.0 ** level)
        base = F32(stride * anchor_scale)
        # scales: pow in double, then rounded to single.
        scales = []
        for k in range(scales_per_octave):
            scales.append(F32(2.0 ** (float(k) / float(scales_per_octave))))

        # Offset rule, per axis.
        d = int(2 ** level)
        half_stride = F32(float(stride) / 2.0)
        if input_size_height % d == 0 or input_size_height == 1:
            offset_y = half_stride
        else:
            offset_y = F32(0.0)
        if input_size_width % d == 0 or input_size_width == 1:
            offset_x = half_stride
        else:
            offset_x = F32(0.0)

        # Grid of index i: explicit lists, or ceil(input / strides[i]) as in §1.4.
        if len(feature_map_height) > 0:
            feature_map_h = int(feature_map_height[i])
            feature_map_w = int(feature_map_width[i])
        else:
            feature_map_h = _grid_from_stride(input_size_height, strides[i])
            feature_map_w = _grid_from_stride(input_size_width, strides[i])

        # Ordering: level, row y, column x, aspect ratio (outer), scale (inner).
        for y in range(feature_map_h):
            for x in range(feature_map_w):
                for a in aspect_ratios:
                    a_sqrt = np.sqrt(a)
                    for sc in scales:
                        # Single precision, left to right.
                        with np.errstate(divide="ignore", invalid="ignore"):
                            h = F32(F32(sc * base) / a_sqrt)
                            w = F32(F32(sc * a_sqrt) * base)
                            y_center = F32(F32(F32(y) * stride) + offset_y)
                            x_center = F32(F32(F32(x) * stride) + offset_x)
                            if normalize:
                                h = F32(h / F32(input_size_height))
                                y_center = F32(y_center / F32(input_size_height))
                                w = F32(w / F32(input_size_width))
                                x_center = F32(x_center / F32(input_size_width))
                        rows.append([x_center, y_center, w, h])
    return _to_array(rows)
