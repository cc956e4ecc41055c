"""Reference ports of the letterbox handling around MediaPipe's SSD graphs (spec §4).

* ``pad_roi`` -- ImageToTensor ``keep_aspect_ratio`` ROI expansion and the
  ``LETTERBOX_PADDING`` it reports (§4.1 step 2).
* ``image_to_tensor`` -- ImageToTensor CPU (OpenCV) path for a whole-image ROI
  (§4.1 steps 1-4).
* ``letterbox_matrix`` -- the ``MATRIX`` output for an unrotated full-image ROI
  with keep-aspect (§4.1 step 5).
* ``project_detections`` -- ``DetectionProjectionCalculator`` (§4.2).
* ``remove_letterbox`` -- ``DetectionLetterboxRemovalCalculator`` (§4.3).

Detections are dicts as produced by ``decoding`` (xmin, ymin, width, height,
keypoints as (x, y) pairs; other keys copied). Padding is ``[left, top, right,
bottom]`` as fractions of the tensor size.
"""

import math

import numpy as np

F32 = np.float32


def remove_letterbox(detections: list, padding) -> list:
    """§4.3 ``DetectionLetterboxRemovalCalculator``; single precision, no clamping."""
    left = F32(padding[0])
    top = F32(padding[1])
    right = F32(padding[2])
    bottom = F32(padding[3])
    left_and_right = F32(left + right)
    top_and_bottom = F32(top + bottom)
    x_scale = F32(F32(1.0) - left_and_right)
    y_scale = F32(F32(1.0) - top_and_bottom)

    output = []
    with np.errstate(all="ignore"):
        for detection in detections:
            out = dict(detection)
            # xmin' = (xmin - l) / (1 - (l + r)) ; ymin' = (ymin - t) / (1 - (t + b))
            out["xmin"] = F32(F32(F32(detection["xmin"]) - left) / x_scale)
            out["ymin"] = F32(F32(F32(detection["ymin"]) - top) / y_scale)
            # width' = width / (1 - (l + r)) ; height' = height / (1 - (t + b))
            out["width"] = F32(F32(detection["width"]) / x_scale)
            out["height"] = F32(F32(detection["height"]) / y_scale)
            # keypoints likewise
            keypoints = []
            for keypoint in detection.get("keypoints", []):
                keypoint_x = F32(F32(F32(keypoint[0]) - left) / x_scale)
                keypoint_y = F32(F32(F32(keypoint[1]) - top) / y_scale)
                keypoints.append((keypoint_x, keypoint_y))
            out["keypoints"] = keypoints
            output.append(out)
    return output


def pad_roi(image_width, image_height, tensor_width, tensor_height, keep_aspect_ratio=True):
    """§4.1 steps 1-2 for a whole-image ROI.

    Returns ``([left, top, right, bottom], (roi_center_x, roi_center_y,
    roi_width, roi_height))``; padding as fractions of the tensor, ROI in pixels.
    Single precision throughout.
    """
    # §4.1 step 1: whole image, centre at half size, rotation 0.
    roi_width = F32(image_width)
    roi_height = F32(image_height)
    roi_center_x = F32(F32(0.5) * roi_width)
    roi_center_y = F32(F32(0.5) * roi_height)
    if not keep_aspect_ratio:
        # Stretch: no padding, ROI unchanged.
        zero = F32(0.0)
        return [zero, zero, zero, zero], (roi_center_x, roi_center_y, roi_width, roi_height)

    # §4.1 step 2: t = tensor_h / tensor_w, r = roi_h / roi_w (single precision).
    tensor_aspect = F32(F32(tensor_height) / F32(tensor_width))
    roi_aspect = F32(roi_height / roi_width)
    vertical_padding = F32(0.0)
    horizontal_padding = F32(0.0)
    if tensor_aspect > roi_aspect:
        # ROI height becomes roi_w * t; vertical padding (1 - r/t) / 2.
        new_width = roi_width
        new_height = F32(roi_width * tensor_aspect)
        vertical_padding = F32(F32(F32(1.0) - F32(roi_aspect / tensor_aspect)) / F32(2.0))
    else:
        # ROI width becomes roi_h / t; horizontal padding (1 - t/r) / 2.
        new_width = F32(roi_height / tensor_aspect)
        new_height = roi_height
        horizontal_padding = F32(F32(F32(1.0) - F32(tensor_aspect / roi_aspect)) / F32(2.0))
    padding = [horizontal_padding, vertical_padding, horizontal_padding, vertical_padding]
    return padding, (roi_center_x, roi_center_y, new_width, new_height)


def letterbox_matrix(padding):
    """§4.1 step 5 for an unrotated full-image ROI with keep-aspect.

    Row-major 4x4 list mapping tensor-normalized (x, y) to image-normalized
    coordinates: ``x_img = (x - ph) / (1 - 2 ph)``, ``y_img = (y - pv) / (1 - 2 pv)``
    with ``ph = padding[0]``, ``pv = padding[1]``. Written as ``x_img = sx * x + tx``
    with ``sx = 1 / (1 - 2 ph)`` and ``tx = -ph * sx``; each entry is computed in
    double and rounded to float32 (MediaPipe stores the matrix as 16 floats), so
    applying it can differ from the divided form by an ulp or two.
    """
    horizontal = float(F32(padding[0]))
    vertical = float(F32(padding[1]))
    scale_x = 1.0 / (1.0 - 2.0 * horizontal)
    scale_y = 1.0 / (1.0 - 2.0 * vertical)
    return [
        [F32(scale_x), F32(0.0), F32(0.0), F32(-horizontal * scale_x)],
        [F32(0.0), F32(scale_y), F32(0.0), F32(-vertical * scale_y)],
        [F32(0.0), F32(0.0), F32(1.0), F32(0.0)],
        [F32(0.0), F32(0.0), F32(0.0), F32(1.0)],
    ]


def _project_point(matrix, x, y):
    """Apply the row-major 4x4 matrix to (x, y, 0, 1); keep the first two rows.

    Single precision, left to right: x' = m00*x + m01*y + m03.
    """
    x = F32(x)
    y = F32(y)
    new_x = F32(F32(F32(matrix[0][0]) * x + F32(matrix[0][1]) * y) + F32(matrix[0][3]))
    new_y = F32(F32(F32(matrix[1][0]) * x + F32(matrix[1][1]) * y) + F32(matrix[1][3]))
    return new_x, new_y


def project_detections(detections, matrix4x4) -> list:
    """§4.2 ``DetectionProjectionCalculator``.

    Projects every keypoint and the four box corners (xmin, ymin), (xmax, ymin),
    (xmax, ymax), (xmin, ymax) with ``xmax = xmin + width`` in single precision,
    then takes the axis-aligned bounding box of the projected corners.
    ``matrix4x4`` is row-major (nested 4x4 or flat 16).
    """
    flat = list(np.asarray(matrix4x4, dtype=np.float32).reshape(-1))
    if len(flat) != 16:
        raise ValueError("matrix must have 16 entries")
    matrix = [flat[0:4], flat[4:8], flat[8:12], flat[12:16]]

    output = []
    with np.errstate(all="ignore"):
        for detection in detections:
            out = dict(detection)
            # Keypoints.
            keypoints = []
            for keypoint in detection.get("keypoints", []):
                keypoints.append(_project_point(matrix, keypoint[0], keypoint[1]))
            out["keypoints"] = keypoints

            # Box corners.
            xmin = F32(detection["xmin"])
            ymin = F32(detection["ymin"])
            xmax = F32(xmin + F32(detection["width"]))
            ymax = F32(ymin + F32(detection["height"]))
            corners = [(xmin, ymin), (xmax, ymin), (xmax, ymax), (xmin, ymax)]
            left = F32(np.finfo(np.float32).max)
            top = F32(np.finfo(np.float32).max)
            right = F32(-np.finfo(np.float32).max)
            bottom = F32(-np.finfo(np.float32).max)
            for corner_x, corner_y in corners:
                projected_x, projected_y = _project_point(matrix, corner_x, corner_y)
                left = projected_x if projected_x < left else left
                top = projected_y if projected_y < top else top
                right = projected_x if right < projected_x else right
                bottom = projected_y if bottom < projected_y else bottom
            out["xmin"] = left
            out["ymin"] = top
            out["width"] = F32(right - left)
            out["height"] = F32(bottom - top)
            output.append(out)
    return output


def image_to_tensor(image_uint8, tensor_width, tensor_height, keep_aspect_ratio, value_range=(-1.0, 1.0)):
    """§4.1 steps 1-4, CPU (OpenCV) path, whole-image ROI, rotation 0, BORDER_ZERO.

    Returns float32 ``[tensor_height, tensor_width, C]``.

    Interpretation written down:

    * ROI: the whole image (centre ``(W/2, H/2)``, size ``(W, H)``), expanded by
      ``pad_roi`` when ``keep_aspect_ratio``. Its corners are ``left = cx -
      roi_w/2``, ``right = cx + roi_w/2``, ``top = cy - roi_h/2``, ``bottom = cy +
      roi_h/2`` in pixel-index coordinates (pixel ``(i, j)`` sits at ``x = i,
      y = j``; no half-pixel centring).
    * "Corners mapped onto (0,H),(0,0),(W,0),(W,H)": the ROI corners in
      bottom-left, top-left, top-right, bottom-right order (cv::boxPoints order
      for an unrotated rect) go to tensor points (0, H_t), (0, 0), (W_t, 0),
      (W_t, H_t), where W_t, H_t are the tensor width and height (not W_t - 1).
      Without rotation that perspective transform is the affine map
      ``x_t = (x - left) * W_t / roi_w``, ``y_t = (y - top) * H_t / roi_h``.
    * warpPerspective maps each destination pixel ``(x, y)`` (integer indices)
      through the inverse: ``x_src = left + x * roi_w / W_t``, ``y_src = top + y *
      roi_h / H_t`` (computed here in double).
    * Bilinear: ``x0 = floor(x_src)``, ``fx = x_src - x0`` (same for y); value =
      ``(1-fx)(1-fy) p[y0][x0] + fx(1-fy) p[y0][x0+1] + (1-fx)fy p[y0+1][x0] +
      fx fy p[y0+1][x0+1]``, each tap outside the image reading 0 (BORDER_ZERO /
      constant 0). OpenCV quantises ``fx``, ``fy`` to 1/32 and uses fixed-point
      weights; that is NOT emulated here (differences up to about 1 grey level).
    * warpPerspective writes into an image of the source type (uint8), so the
      bilinear value is rounded to the nearest integer (half up) and saturated to
      [0, 255] before step 4. (This is OpenCV's output-type rule; the spec's
      step 4 speaks of "pixel" values.)
    * Step 4 value range, single precision: ``out = f32(f32(pixel * scale) + min)``
      with ``scale = f32((max - min) / 255)``; zero padding therefore becomes
      ``min``.
    """
    image = np.asarray(image_uint8)
    if image.ndim != 3:
        raise ValueError("image must be [H, W, C]")
    image_height, image_width, channels = image.shape
    pixels = image.tolist()

    # §4.1 steps 1-2: ROI (whole image, expanded when keeping the aspect ratio).
    _, (roi_center_x, roi_center_y, roi_width, roi_height) = pad_roi(
        image_width, image_height, tensor_width, tensor_height, keep_aspect_ratio
    )
    left = float(roi_center_x) - float(roi_width) / 2.0
    top = float(roi_center_y) - float(roi_height) / 2.0
    step_x = float(roi_width) / float(tensor_width)
    step_y = float(roi_height) / float(tensor_height)

    # §4.1 step 4 constants.
    range_min = F32(value_range[0])
    range_max = F32(value_range[1])
    scale = F32(F32(range_max - range_min) / F32(255.0))

    def tap(row, column, channel):
        # BORDER_ZERO: outside the image reads 0.
        if row < 0 or row >= image_height or column < 0 or column >= image_width:
            return 0.0
        return float(pixels[row][column][channel])

    output = np.zeros((tensor_height, tensor_width, channels), dtype=np.float32)
    # §4.1 step 3: one destination pixel at a time.
    for y in range(tensor_height):
        for x in range(tensor_width):
            source_x = left + x * step_x
            source_y = top + y * step_y
            x0 = math.floor(source_x)
            y0 = math.floor(source_y)
            fx = source_x - x0
            fy = source_y - y0
            for c in range(channels):
                value = (
                    (1.0 - fx) * (1.0 - fy) * tap(y0, x0, c)
                    + fx * (1.0 - fy) * tap(y0, x0 + 1, c)
                    + (1.0 - fx) * fy * tap(y0 + 1, x0, c)
                    + fx * fy * tap(y0 + 1, x0 + 1, c)
                )
                # uint8 intermediate: round half up, saturate.
                pixel = math.floor(value + 0.5)
                pixel = min(255, max(0, pixel))
                # §4.1 step 4: value range in single precision.
                output[y, x, c] = F32(F32(F32(pixel) * scale) + range_min)
    return output
