"""Reference ports of MediaPipe's landmark calculators (second stage of the two-stage graphs).

Written from the C++ sources (MediaPipe's ``mediapipe/calculators/...``); spec
§7.4 describes only the NORM_RECT projection without image size.

* ``tensors_to_landmarks`` -- ``tensor/tensors_to_landmarks_calculator.cc``:
  LANDMARKS (absolute, model-input pixels) and NORM_LANDMARKS.
* ``remove_landmark_letterbox`` --
  ``util/landmark_letterbox_removal_calculator.cc``.
* ``project_landmarks_norm_rect`` / ``project_landmarks_matrix`` --
  ``util/landmark_projection_calculator.cc`` with a NORM_RECT input (with or
  without IMAGE_DIMENSIONS) or a PROJECTION_MATRIX input;
  ``rotated_sub_rect_to_rect_matrix`` is the matrix the NORM_RECT +
  IMAGE_DIMENSIONS path builds (``GetRotatedSubRectToRectTransformMatrix`` in
  ``tensor/image_to_tensor_utils.cc``).
* ``world_landmark_projection`` -- ``util/world_landmark_projection_calculator.cc``.
* ``refine_landmarks_from_heatmap`` --
  ``util/refine_landmarks_from_heatmap_calculator.cc`` (``RefineLandmarksFromHeatMap``).

A landmark (``Landmark`` or ``NormalizedLandmark``) is a dict with keys ``x``,
``y``, ``z`` (np.float32; an unset coordinate reads as the proto default 0) and,
only when the proto's has-bit is set, ``visibility`` and ``presence``. Inputs
may omit ``x``/``y``/``z`` (read as 0). The calculators that start from a copy
of the input landmark (``*new_landmark = landmark``) keep every key of the
input dict, ``visibility`` and ``presence`` included, and overwrite only the
coordinates they compute. A rect is a dict with ``x_center``, ``y_center``,
``width``, ``height``, ``rotation`` (radians), as in :mod:`tests.reference.roi`.

Single precision wherever the C++ computes in ``float``; ``cosf``/``sinf``/
``expf`` are the float32 rounding of the double-precision function (glibc's
float versions are correctly rounded for the arguments used here, nearly
always in general). Products and sums are evaluated unfused, left to right, as
an x86-64 build without FMA does; a build that contracts ``a * b + c`` into an
FMA (clang's default on arm64) can differ in the last bit.
"""

import math

import numpy as np

F32 = np.float32

_TENSORS_TO_LANDMARKS_DEFAULTS = {
    "flip_vertically": False,
    "flip_horizontally": False,
    "normalize_z": 1.0,
    "visibility_activation": "NONE",
    "presence_activation": "NONE",
}


def _expf(x):
    """float32 exp, correctly rounded (computed in double, rounded once), as
    ``expf`` in :mod:`tests.reference.decoding`."""
    with np.errstate(over="ignore"):
        return F32(np.exp(np.float64(x)))


def _cosf(angle):
    return F32(math.cos(float(F32(angle))))


def _sinf(angle):
    return F32(math.sin(float(F32(angle))))


def _get(options, key):
    if key in options:
        return options[key]
    return _TENSORS_TO_LANDMARKS_DEFAULTS[key]


def _apply_activation(activation, value):
    """``ApplyActivation``: SIGMOID is ``1.0f / (1.0f + std::exp(-value))`` in float."""
    if activation == "SIGMOID":
        return F32(F32(1.0) / F32(F32(1.0) + _expf(F32(-value))))
    if activation == "NONE":
        return F32(value)
    raise ValueError(f"unknown activation {activation!r}")


def tensors_to_landmarks(raw, options: dict, outputs=("LANDMARKS", "NORM_LANDMARKS")):
    """``TensorsToLandmarksCalculator``: ``(landmarks, norm_landmarks)``.

    ``raw``: the first input tensor (any shape; its values are read flat, in
    row-major order, as float32). ``options``: dict keyed by
    ``TensorsToLandmarksCalculatorOptions`` field names; ``num_landmarks``,
    ``input_image_width`` and ``input_image_height`` have presence (absent =
    not set), activations are ``"NONE"`` or ``"SIGMOID"``. The FLIP_* input
    stream / side packet overrides are not modelled: the flips are the options'.

    ``outputs`` names the connected output streams (the Open() checks depend
    on it); an output that is not connected is returned as ``None``.

    Per landmark ``i`` with ``offset = i * num_dimensions``
    (``num_dimensions = len(raw) // num_landmarks``, trailing values ignored):

    * ``x = raw[offset]``, or ``input_image_width - raw[offset]`` (int
      converted to float, float subtraction) when flipping horizontally;
    * ``y = raw[offset + 1]`` (or ``input_image_height - ...``) if
      ``num_dimensions > 1``, ``z = raw[offset + 2]`` if ``> 2``, else 0;
    * ``visibility``, ``presence`` from ``raw[offset + 3]``, ``raw[offset + 4]``
      (through their activation) only if ``num_dimensions > 3`` / ``> 4``;
      further dimensions are ignored.

    NORM_LANDMARKS (from the landmarks above, flips included):
    ``x / float(input_image_width)``, ``y / float(input_image_height)`` and
    ``z / float(input_image_width) / normalize_z`` (two float divisions, in
    that order); visibility and presence copied when set.
    """
    outputs = tuple(outputs)
    for name in outputs:
        if name not in ("LANDMARKS", "NORM_LANDMARKS"):
            raise ValueError(f"unknown output {name!r}")
    # LoadOptions: RET_CHECK(options_.has_num_landmarks()).
    if "num_landmarks" not in options:
        raise ValueError("num_landmarks must be set")
    num_landmarks = int(options["num_landmarks"])
    has_size = "input_image_width" in options and "input_image_height" in options
    flip_horizontally = bool(_get(options, "flip_horizontally"))
    flip_vertically = bool(_get(options, "flip_vertically"))
    # Open(): the normalized output needs the size; so does flipping the
    # absolute output.
    if "NORM_LANDMARKS" in outputs and not has_size:
        raise ValueError("Must provide input width/height for getting normalized landmarks.")
    if "LANDMARKS" in outputs and (flip_horizontally or flip_vertically) and not has_size:
        raise ValueError("Must provide input width/height for using flipping when "
                         "outputting landmarks in absolute coordinates.")
    # Unset int32 fields read as 0 (only reachable when nothing needs them).
    image_width = int(options.get("input_image_width", 0))
    image_height = int(options.get("input_image_height", 0))
    normalize_z = F32(_get(options, "normalize_z"))
    visibility_activation = _get(options, "visibility_activation")
    presence_activation = _get(options, "presence_activation")

    # Process(): num_dimensions = num_values / num_landmarks (int division);
    # ABSL_CHECK_GT(num_dimensions, 0). num_landmarks == 0 divides by zero and
    # a negative one gives num_dimensions <= 0: both fail.
    raw_landmarks = [F32(v) for v in np.asarray(raw, dtype=np.float32).reshape(-1)]
    num_values = len(raw_landmarks)
    if num_landmarks <= 0:
        raise ValueError("num_landmarks must be positive (integer division by it)")
    num_dimensions = num_values // num_landmarks
    if not num_dimensions > 0:
        raise ValueError("fewer tensor values than num_landmarks (num_dimensions == 0)")

    output_landmarks = []
    with np.errstate(all="ignore"):
        for ld in range(num_landmarks):
            offset = ld * num_dimensions
            # Unset fields read as 0.
            landmark = {"x": F32(0.0), "y": F32(0.0), "z": F32(0.0)}
            if flip_horizontally:
                landmark["x"] = F32(F32(image_width) - raw_landmarks[offset])
            else:
                landmark["x"] = raw_landmarks[offset]
            if num_dimensions > 1:
                if flip_vertically:
                    landmark["y"] = F32(F32(image_height) - raw_landmarks[offset + 1])
                else:
                    landmark["y"] = raw_landmarks[offset + 1]
            if num_dimensions > 2:
                landmark["z"] = raw_landmarks[offset + 2]
            if num_dimensions > 3:
                landmark["visibility"] = _apply_activation(visibility_activation,
                                                           raw_landmarks[offset + 3])
            if num_dimensions > 4:
                landmark["presence"] = _apply_activation(presence_activation,
                                                         raw_landmarks[offset + 4])
            output_landmarks.append(landmark)

        output_norm_landmarks = None
        if "NORM_LANDMARKS" in outputs:
            width = F32(image_width)  # int operand converted to float
            height = F32(image_height)
            output_norm_landmarks = []
            for landmark in output_landmarks:
                norm_landmark = {
                    "x": F32(landmark["x"] / width),
                    "y": F32(landmark["y"] / height),
                    # Scale Z as X, then the extra uniform normalisation.
                    "z": F32(F32(landmark["z"] / width) / normalize_z),
                }
                if "visibility" in landmark:
                    norm_landmark["visibility"] = landmark["visibility"]
                if "presence" in landmark:
                    norm_landmark["presence"] = landmark["presence"]
                output_norm_landmarks.append(norm_landmark)

    if "LANDMARKS" not in outputs:
        output_landmarks = None
    return output_landmarks, output_norm_landmarks


def remove_landmark_letterbox(landmarks: list, padding) -> list:
    """``LandmarkLetterboxRemovalCalculator`` on one NormalizedLandmarkList.

    ``padding`` is ``[left, top, right, bottom]`` (fractions of the letterboxed
    image). Single precision, no clamping::

        x' = (x - left) / (1 - (left + right))
        y' = (y - top)  / (1 - (top + bottom))
        z' = z          / (1 - (left + right))     # Z scaled as X

    Every other field (visibility, presence) is copied unchanged.
    """
    left = F32(padding[0])
    top = F32(padding[1])
    left_and_right = F32(F32(padding[0]) + F32(padding[2]))
    top_and_bottom = F32(F32(padding[1]) + F32(padding[3]))

    output = []
    with np.errstate(all="ignore"):
        for landmark in landmarks:
            new_x = F32(F32(F32(landmark.get("x", 0.0)) - left) / F32(F32(1.0) - left_and_right))
            new_y = F32(F32(F32(landmark.get("y", 0.0)) - top) / F32(F32(1.0) - top_and_bottom))
            new_z = F32(F32(landmark.get("z", 0.0)) / F32(F32(1.0) - left_and_right))
            new_landmark = dict(landmark)  # *new_landmark = landmark
            new_landmark["x"] = new_x
            new_landmark["y"] = new_y
            new_landmark["z"] = new_z
            output.append(new_landmark)
    return output


def rotated_sub_rect_to_rect_matrix(sub_rect: dict, rect_width: int, rect_height: int,
                                    flip_horizontally: bool = False) -> list:
    """``GetRotatedSubRectToRectTransformMatrix``: 16 float32, row-major.

    ``sub_rect`` is a ``RotatedRect`` in pixels: ``center_x``, ``center_y``,
    ``width``, ``height``, ``rotation``. With ``a, b`` its width and height,
    ``c = cosf(rotation)``, ``d = sinf(rotation)``, ``e, f`` its centre,
    ``g = 1.0f / rect_width``, ``h = 1.0f / rect_height``, ``fl = +-1``::

        [a*c*fl*g, -b*d*g, 0,   (-0.5*a*c*fl + 0.5*b*d + e)*g]
        [a*d*fl*h,  b*c*h, 0,   (-0.5*b*c - 0.5*a*d*fl + f)*h]
        [0,         0,     a*g, 0]
        [0,         0,     0,   1]

    every product and sum in float, left to right.
    """
    a = F32(sub_rect["width"])
    b = F32(sub_rect["height"])
    flip = F32(-1.0) if flip_horizontally else F32(1.0)
    c = _cosf(sub_rect["rotation"])
    d = _sinf(sub_rect["rotation"])
    e = F32(sub_rect["center_x"])
    f = F32(sub_rect["center_y"])
    with np.errstate(all="ignore"):
        g = F32(F32(1.0) / F32(rect_width))
        h = F32(F32(1.0) / F32(rect_height))
        half = F32(0.5)
        zero = F32(0.0)
        matrix = [zero] * 16
        # row 1
        matrix[0] = F32(F32(F32(a * c) * flip) * g)
        matrix[1] = F32(F32(F32(-b) * d) * g)
        matrix[2] = zero
        matrix[3] = F32(F32(F32(F32(F32(F32(F32(-half) * a) * c) * flip)
                                + F32(F32(half * b) * d)) + e) * g)
        # row 2
        matrix[4] = F32(F32(F32(a * d) * flip) * h)
        matrix[5] = F32(F32(b * c) * h)
        matrix[6] = zero
        matrix[7] = F32(F32(F32(F32(F32(F32(-half) * b) * c)
                                - F32(F32(F32(half * a) * d) * flip)) + f) * h)
        # row 3
        matrix[10] = F32(a * g)
        # row 4
        matrix[15] = F32(1.0)
    return matrix


def _project_xy(x, y, z, matrix):
    """``ProjectXY``: ``x * m[0] + y * m[1] + z * m[2] + m[3]`` (and row 2), float, left to right."""
    new_x = F32(F32(F32(F32(x * matrix[0]) + F32(y * matrix[1])) + F32(z * matrix[2])) + matrix[3])
    new_y = F32(F32(F32(F32(x * matrix[4]) + F32(y * matrix[5])) + F32(z * matrix[6])) + matrix[7])
    return new_x, new_y


def _z_scale(matrix):
    """``CalculateZScale``: length of the projected segment (0, 0) -- (1, 0).

    The difference of the projected points is float (``(m[0] + m[3]) - m[3]``,
    not ``m[0]``); ``std::pow(float, 2)`` promotes to double, so the squares,
    their sum and ``std::sqrt`` are double, rounded to float on return.
    """
    zero = F32(0.0)
    a_x, a_y = _project_xy(zero, zero, zero, matrix)
    b_x, b_y = _project_xy(F32(1.0), zero, zero, matrix)
    dx = float(F32(b_x - a_x))
    dy = float(F32(b_y - a_y))
    return F32(math.sqrt(dx ** 2 + dy ** 2))


def _project_with_matrix(landmarks, matrix):
    z_scale = _z_scale(matrix)
    output = []
    for landmark in landmarks:
        x = F32(landmark.get("x", 0.0))
        y = F32(landmark.get("y", 0.0))
        z = F32(landmark.get("z", 0.0))
        new_landmark = dict(landmark)  # *new_landmark = lm
        new_landmark["x"], new_landmark["y"] = _project_xy(x, y, z, matrix)
        new_landmark["z"] = F32(z_scale * z)
        output.append(new_landmark)
    return output


def project_landmarks_norm_rect(landmarks: list, rect: dict, image_dimensions=None,
                                options=None) -> list:
    """``LandmarkProjectionCalculator`` with a NORM_RECT input.

    ``options``: dict keyed by ``LandmarkProjectionCalculatorOptions`` field
    names (``ignore_rotation``, default False).

    Without ``image_dimensions`` (spec §7.4), with ``r`` the rect's rotation
    (0 under ``ignore_rotation``), ``cosf``/``sinf``, in float::

        x0, y0 = x - 0.5, y - 0.5
        x' = (cos r * x0 - sin r * y0) * width  + x_center
        y' = (sin r * x0 + cos r * y0) * height + y_center
        z' = z * width

    With ``image_dimensions = (W, H)`` (the IMAGE_DIMENSIONS pair of ints) the
    rect becomes the pixel ``RotatedRect`` ``(x_center * W, y_center * H,
    width * W, height * H, r)`` and the landmarks go through
    ``project_landmarks_matrix`` with ``rotated_sub_rect_to_rect_matrix(...,
    W, H)``: x, y as above up to rounding, but ``z' = z * z_scale`` with
    ``z_scale = width * sqrt(cos^2 r + (sin r * W / H)^2)`` (up to rounding),
    which equals ``width`` only for ``r = 0`` or a square image.

    Visibility, presence and any other keys are copied.
    """
    options = {} if options is None else options
    ignore_rotation = bool(options.get("ignore_rotation", False))
    angle = F32(0.0) if ignore_rotation else F32(rect["rotation"])
    x_center = F32(rect["x_center"])
    y_center = F32(rect["y_center"])
    width = F32(rect["width"])
    height = F32(rect["height"])

    with np.errstate(all="ignore"):
        if image_dimensions is not None:
            image_width, image_height = int(image_dimensions[0]), int(image_dimensions[1])
            rotated_rect = {
                "center_x": F32(x_center * F32(image_width)),
                "center_y": F32(y_center * F32(image_height)),
                "width": F32(width * F32(image_width)),
                "height": F32(height * F32(image_height)),
                "rotation": angle,
            }
            matrix = rotated_sub_rect_to_rect_matrix(rotated_rect, image_width, image_height,
                                                     flip_horizontally=False)
            return _project_with_matrix(landmarks, matrix)

        cos_angle = _cosf(angle)
        sin_angle = _sinf(angle)
        output = []
        for landmark in landmarks:
            x = F32(F32(landmark.get("x", 0.0)) - F32(0.5))
            y = F32(F32(landmark.get("y", 0.0)) - F32(0.5))
            new_x = F32(F32(cos_angle * x) - F32(sin_angle * y))
            new_y = F32(F32(sin_angle * x) + F32(cos_angle * y))
            new_x = F32(F32(new_x * width) + x_center)
            new_y = F32(F32(new_y * height) + y_center)
            new_z = F32(F32(landmark.get("z", 0.0)) * width)  # Scale Z coordinate as X.
            new_landmark = dict(landmark)  # *new_landmark = landmark
            new_landmark["x"] = new_x
            new_landmark["y"] = new_y
            new_landmark["z"] = new_z
            output.append(new_landmark)
    return output


def project_landmarks_matrix(landmarks: list, matrix) -> list:
    """``LandmarkProjectionCalculator`` with a PROJECTION_MATRIX input.

    ``matrix``: ``std::array<float, 16>``, row-major (flat 16 or nested 4x4).
    In float, left to right::

        x' = x * m[0] + y * m[1] + z * m[2] + m[3]
        y' = x * m[4] + y * m[5] + z * m[6] + m[7]
        z' = z_scale * z

    where ``z_scale`` is the length of the projected segment (0, 0)--(1, 0)
    (see ``_z_scale``). Rows 3 and 4 are never read; ``m[2]``, ``m[6]`` mix z
    into x and y. Visibility, presence and any other keys are copied.
    """
    flat = [F32(v) for v in np.asarray(matrix, dtype=np.float32).reshape(-1)]
    if len(flat) != 16:
        raise ValueError("PROJECTION_MATRIX must have 16 entries")
    with np.errstate(all="ignore"):
        return _project_with_matrix(landmarks, flat)


def world_landmark_projection(landmarks: list, rect=None) -> list:
    """``WorldLandmarkProjectionCalculator``: rotate world landmarks by the rect's rotation.

    Only rotation about the z axis, no scale or translation; ``cosa =
    cosf(rotation)``, ``sina = sinf(rotation)``, in float::

        x' = cosa * x - sina * y
        y' = sina * x + cosa * y

    z, visibility and presence are copied. Without a rect (the NORM_RECT
    input is optional) the landmarks are copied unchanged. There is no
    ``ignore_rotation`` option here.
    """
    output = []
    with np.errstate(all="ignore"):
        if rect is not None:
            cosa = _cosf(rect["rotation"])
            sina = _sinf(rect["rotation"])
        for landmark in landmarks:
            out_landmark = dict(landmark)  # *out_landmark = in_landmark
            if rect is not None:
                x = F32(landmark.get("x", 0.0))
                y = F32(landmark.get("y", 0.0))
                out_landmark["x"] = F32(F32(cosa * x) - F32(sina * y))
                out_landmark["y"] = F32(F32(sina * x) + F32(cosa * y))
            output.append(out_landmark)
    return output


_REFINE_FROM_HEATMAP_DEFAULTS = {
    "kernel_size": 9,
    "min_confidence_to_refine": 0.5,
    "refine_presence": False,
    "refine_visibility": False,
}


def refine_landmarks_from_heatmap(landmarks: list, heatmap, options=None) -> list:
    """``RefineLandmarksFromHeatMap`` (``RefineLandmarksFromHeatmapCalculator``).

    ``heatmap``: float32 ``[H, W, C]`` or ``[1, H, W, C]`` (HWC, channel ``i``
    is landmark ``i``'s raw heatmap). ``options``: dict keyed by
    ``RefineLandmarksFromHeatmapCalculatorOptions`` field names, proto
    defaults when absent (``kernel_size`` 9, ``min_confidence_to_refine`` 0.5,
    ``refine_presence`` / ``refine_visibility`` False). ValueError for the
    RET_CHECKs: rank not 3 or 4, batch != 1, ``C != len(landmarks)``.

    Per landmark ``i`` (x, y, z as float32, unset ones 0)::

        center_col = int(x * W)     # float product, then C++ float -> int:
        center_row = int(y * H)     # truncation toward zero
        # outside [0, W) x [0, H): landmark kept intact (presence and
        # visibility too)
        offset = (kernel_size - 1) / 2                  # int division, toward zero
        cols [max(0, center_col - offset), min(W, center_col + offset + 1)),
        rows likewise (the window is clipped at the heatmap's border)
        for row (outer), col (inner), in float:
            c = 1.0f / (1.0f + expf(-heatmap[row, col, i]))
            sum += c;  max = std::max(max, c)        # max starts at 0
            weighted_col += float(col) * c;  weighted_row += float(row) * c
        if max >= min_confidence_to_refine and sum > 0:
            x = weighted_col / float(W) / sum       # two float divisions
            y = weighted_row / float(H) / sum
        if refine_presence and sum > 0 and presence is set:
            presence = std::min(presence, max)
        if refine_visibility and sum > 0 and visibility is set:
            visibility = std::min(visibility, max)

    The presence / visibility refinement does not depend on the confidence
    threshold. Consequences of the truncation: a landmark whose float
    ``x * W`` lies in ``(-1, 0)`` lands in column 0 and is refined; and the
    float product can round up to the next integer (``float32(0.7) * 10`` is
    7.0 in float, 6.99999988 exactly: column 7, not 6).
    ``kernel_size`` 0 gives offset 0 (a 1 x 1 window), an even one behaves as
    ``kernel_size - 1``. A float -> int conversion out of the int range (NaN,
    inf, huge coordinates) is undefined in C++; x86-64 (``cvttss2si``) gives
    INT_MIN, modelled here: the landmark is kept intact (arm64 would saturate,
    NaN to column 0).

    Every landmark is a copy of its input (``out_lms = in_lms``): all keys
    kept, ``x``, ``y``, ``z`` always present (float32), ``visibility`` and
    ``presence`` (float32) only when set.
    """
    options = {} if options is None else options

    def option(key):
        return options[key] if key in options else _REFINE_FROM_HEATMAP_DEFAULTS[key]

    kernel_size = int(option("kernel_size"))
    min_confidence_to_refine = F32(option("min_confidence_to_refine"))
    refine_presence = bool(option("refine_presence"))
    refine_visibility = bool(option("refine_visibility"))

    # GetHwcFromDims.
    hm = np.asarray(heatmap, dtype=np.float32)
    dims = hm.shape
    if len(dims) == 3:
        hm_height, hm_width, hm_channels = dims
    elif len(dims) == 4:
        if dims[0] != 1:
            raise ValueError("Expected batch to be 1 for BHWC heatmap")
        hm_height, hm_width, hm_channels = dims[1:]
    else:
        raise ValueError(f"Invalid shape size for heatmap tensor {len(dims)}")
    hm = hm.reshape(hm_height, hm_width, hm_channels)
    if len(landmarks) != hm_channels:
        raise ValueError("Expected heatmap to have number of layers == to number of landmarks")

    int_min, int_max = -2**31, 2**31 - 1

    def float_to_int(value):
        # C++ float -> int: truncation toward zero; out of range is UB,
        # x86-64 gives INT_MIN ("integer indefinite").
        if not np.isfinite(value):
            return int_min
        truncated = math.trunc(float(value))
        if truncated < int_min or truncated > int_max:
            return int_min
        return truncated

    # (kernel_size - 1) / 2 in C++: int division truncating toward zero.
    numerator = kernel_size - 1
    offset = numerator // 2 if numerator >= 0 else -((-numerator) // 2)
    width_f = F32(hm_width)  # int operand converted to float
    height_f = F32(hm_height)

    output = []
    with np.errstate(all="ignore"):
        for lm_index, landmark in enumerate(landmarks):
            out_landmark = dict(landmark)  # out_lms = in_lms
            for key in ("x", "y", "z"):
                out_landmark[key] = F32(landmark.get(key, 0.0))
            for key in ("visibility", "presence"):
                if key in landmark:
                    out_landmark[key] = F32(landmark[key])
            output.append(out_landmark)

            center_col = float_to_int(F32(out_landmark["x"] * width_f))
            center_row = float_to_int(F32(out_landmark["y"] * height_f))
            # Point is outside of the heatmap: keep it intact.
            if (center_col < 0 or center_col >= hm_width
                    or center_row < 0 or center_row >= hm_height):
                continue

            begin_col = max(0, center_col - offset)
            end_col = min(hm_width, center_col + offset + 1)
            begin_row = max(0, center_row - offset)
            end_row = min(hm_height, center_row + offset + 1)

            total = F32(0.0)
            weighted_col = F32(0.0)
            weighted_row = F32(0.0)
            max_confidence = F32(0.0)
            for row in range(begin_row, end_row):
                for col in range(begin_col, end_col):
                    confidence = _apply_activation("SIGMOID", hm[row, col, lm_index])
                    total = F32(total + confidence)
                    # std::max(a, b): (a < b) ? b : a
                    if max_confidence < confidence:
                        max_confidence = confidence
                    weighted_col = F32(weighted_col + F32(F32(col) * confidence))
                    weighted_row = F32(weighted_row + F32(F32(row) * confidence))

            if max_confidence >= min_confidence_to_refine and total > 0:
                out_landmark["x"] = F32(F32(weighted_col / width_f) / total)
                out_landmark["y"] = F32(F32(weighted_row / height_f) / total)
            # std::min(a, b): (b < a) ? b : a
            if refine_presence and total > 0 and "presence" in out_landmark:
                if max_confidence < out_landmark["presence"]:
                    out_landmark["presence"] = max_confidence
            if refine_visibility and total > 0 and "visibility" in out_landmark:
                if max_confidence < out_landmark["visibility"]:
                    out_landmark["visibility"] = max_confidence
    return output
