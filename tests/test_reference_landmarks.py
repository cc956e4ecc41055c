"""Self-check of ``tests/reference/landmarks.py`` (MediaPipe's landmark calculators).

Every expectation is worked out by hand in the comments, or taken from
MediaPipe's own calculator tests (``landmark_projection_calculator_test.cc``,
``landmark_letterbox_removal_calculator_test.cc``) with their tolerances, never
from the reference itself. Exact equality where the float32 arithmetic is exact
(powers of two, short binary fractions); otherwise an absolute tolerance stated
next to the assertion.

Two float32 facts used below:

* ``float32(pi/2) = 1.57079637...`` exceeds pi/2 by ``d = 4.3711390e-8``, so
  ``cosf(float32(pi/2)) = -sin(d) = float32(-4.371139e-8)`` (called ``C90``)
  and ``sinf(float32(pi/2)) = 1`` exactly (``1 - d^2/2`` rounds to 1).
* Spacing of float32 values: 2^-24 (6.0e-8) in [0.5, 1), 2^-25 (3.0e-8) in
  [0.25, 0.5), 2^-26 (1.5e-8) in [0.125, 0.25).
"""

import math

import numpy as np
import pytest

from reference.landmarks import (
    project_landmarks_matrix,
    project_landmarks_norm_rect,
    refine_landmarks_from_heatmap,
    remove_landmark_letterbox,
    rotated_sub_rect_to_rect_matrix,
    tensors_to_landmarks,
    world_landmark_projection,
)
from reference.roi import project_landmark

F32 = np.float32
ROT90 = F32(math.pi / 2)
ROT30 = F32(math.pi / 6)
C90 = F32(-4.371139e-08)  # cosf(float32(pi/2)), see the module docstring


def _xyz(landmark):
    return [landmark["x"], landmark["y"], landmark["z"]]


def _all_float32(landmarks):
    return all(type(v) is F32 for lm in landmarks for v in lm.values())


# --------------------------------------------------------------------------
# TensorsToLandmarksCalculator
# --------------------------------------------------------------------------

def test_tensors_to_landmarks_five_dimensions_activations_normalize_z():
    # num_landmarks 2, 10 values -> num_dimensions 5: x, y, z, visibility, presence.
    # visibility SIGMOID, presence NONE (default). Image 256 x 128, normalize_z 2.
    options = {"num_landmarks": 2, "input_image_width": 256, "input_image_height": 128,
               "normalize_z": 2.0, "visibility_activation": "SIGMOID"}
    raw = np.array([[64, 32, -16, 0, 0.25],
                    [300, -8, 1, 100, -3]], dtype=np.float32)
    landmarks, norm = tensors_to_landmarks(raw, options)
    # Landmark 0: sigmoid(0) = 1 / (1 + 1) = 0.5; presence passes through.
    assert landmarks[0] == {"x": 64.0, "y": 32.0, "z": -16.0, "visibility": 0.5, "presence": 0.25}
    # Landmark 1: sigmoid(100): expf(-100) = 3.7e-44 (a subnormal) and
    # 1 + 3.7e-44 rounds to 1 -> 1 / 1 = 1 exactly. No clamping of x = 300 > width.
    assert landmarks[1] == {"x": 300.0, "y": -8.0, "z": 1.0, "visibility": 1.0, "presence": -3.0}
    # NORM: x / 256, y / 128, z / 256 / 2 (all powers of two: exact).
    #   64/256 = 0.25, 32/128 = 0.25, -16/256/2 = -0.03125
    #   300/256 = 1.171875, -8/128 = -0.0625, 1/256/2 = 0.001953125
    assert norm[0] == {"x": 0.25, "y": 0.25, "z": -0.03125, "visibility": 0.5, "presence": 0.25}
    assert norm[1] == {"x": 1.171875, "y": -0.0625, "z": 0.001953125,
                       "visibility": 1.0, "presence": -3.0}
    assert _all_float32(landmarks) and _all_float32(norm)


def test_tensors_to_landmarks_sigmoid_values():
    # presence SIGMOID: sigmoid(-100): expf(100) = 2.7e43 overflows float32 to
    # inf, 1 / (1 + inf) = 0 exactly. sigmoid(ln 3) = 1 / (1 + 1/3) = 0.75 up to
    # the rounding of ln 3, expf, the sum and the quotient: within 2 ulp of 0.75
    # (ulp 6e-8) -> atol 1.2e-7.
    options = {"num_landmarks": 2, "input_image_width": 1, "input_image_height": 1,
               "visibility_activation": "SIGMOID", "presence_activation": "SIGMOID"}
    raw = [0, 0, 0, math.log(3), -100,
           0, 0, 0, -math.log(3), 0]
    landmarks, _ = tensors_to_landmarks(raw, options)
    assert landmarks[0]["presence"] == 0.0
    assert abs(float(landmarks[0]["visibility"]) - 0.75) <= 1.2e-7
    # sigmoid(-ln 3) = 1 / (1 + 3) = 0.25, ulp 3e-8 -> atol 6e-8; sigmoid(0) = 0.5.
    assert abs(float(landmarks[1]["visibility"]) - 0.25) <= 6e-8
    assert landmarks[1]["presence"] == 0.5


def test_tensors_to_landmarks_flips_before_normalising():
    # flip_horizontally: x = 256 - 64 = 192; flip_vertically: y = 128 - 32 = 96;
    # z is not flipped. NORM: 192/256 = 0.75, 96/128 = 0.75, z -16/256 = -0.0625.
    options = {"num_landmarks": 1, "input_image_width": 256, "input_image_height": 128,
               "flip_horizontally": True, "flip_vertically": True}
    landmarks, norm = tensors_to_landmarks([64, 32, -16], options)
    assert landmarks == [{"x": 192.0, "y": 96.0, "z": -16.0}]
    assert norm == [{"x": 0.75, "y": 0.75, "z": -0.0625}]
    # One flip only: x = 256 - 64 = 192, y kept at 32 -> 0.25.
    options = dict(options, flip_vertically=False)
    _, norm = tensors_to_landmarks([64, 32, -16], options)
    assert norm == [{"x": 0.75, "y": 0.25, "z": -0.0625}]


def test_tensors_to_landmarks_two_and_three_dimensions():
    options = {"num_landmarks": 3, "input_image_width": 4, "input_image_height": 8}
    # 6 values / 3 landmarks -> num_dimensions 2: z unset (reads 0), no
    # visibility / presence keys. NORM: x / 4, y / 8, z = 0 / 4 / 1 = 0.
    landmarks, norm = tensors_to_landmarks([1, 2, 3, 4, 5, 6], options)
    assert landmarks == [{"x": 1.0, "y": 2.0, "z": 0.0}, {"x": 3.0, "y": 4.0, "z": 0.0},
                         {"x": 5.0, "y": 6.0, "z": 0.0}]
    assert norm == [{"x": 0.25, "y": 0.25, "z": 0.0}, {"x": 0.75, "y": 0.5, "z": 0.0},
                    {"x": 1.25, "y": 0.75, "z": 0.0}]
    # 10 values / 3 landmarks -> num_dimensions 3 (integer division), the last
    # value is never read. Landmarks at offsets 0, 3, 6; z / 4.
    landmarks, norm = tensors_to_landmarks([1, 2, 3, 4, 5, 6, 7, 8, 9, 99], options)
    assert landmarks == [{"x": 1.0, "y": 2.0, "z": 3.0}, {"x": 4.0, "y": 5.0, "z": 6.0},
                         {"x": 7.0, "y": 8.0, "z": 9.0}]
    assert norm[2] == {"x": 1.75, "y": 1.0, "z": 2.25}


def test_tensors_to_landmarks_one_and_six_dimensions():
    # num_dimensions 1: only x is read; y reads 0.
    options = {"num_landmarks": 2, "input_image_width": 2, "input_image_height": 2}
    landmarks, norm = tensors_to_landmarks([1, 3], options)
    assert landmarks == [{"x": 1.0, "y": 0.0, "z": 0.0}, {"x": 3.0, "y": 0.0, "z": 0.0}]
    assert norm == [{"x": 0.5, "y": 0.0, "z": 0.0}, {"x": 1.5, "y": 0.0, "z": 0.0}]
    # num_dimensions 6: the sixth value is ignored.
    options = {"num_landmarks": 1, "input_image_width": 2, "input_image_height": 2}
    landmarks, _ = tensors_to_landmarks([1, 2, 3, 4, 5, 6], options)
    assert landmarks == [{"x": 1.0, "y": 2.0, "z": 3.0, "visibility": 4.0, "presence": 5.0}]


def test_tensors_to_landmarks_z_divided_twice_in_float():
    # z / width / normalize_z with z = 1, width = 7, normalize_z = 7:
    #   1/7 in float: 1/7 lies in [2^-3, 2^-2), spacing 2^-26;
    #     2^26 / 7 = 9586980.57 -> 9586981 * 2^-26.
    #   / 7: the quotient lies in [2^-6, 2^-5), spacing 2^-29;
    #     9586981 * 8 / 7 = 10956549.71 -> 10956550 * 2^-29.
    # (A single division by 49 would give 2^29 / 49 = 10956549.2 -> 10956549.)
    options = {"num_landmarks": 1, "input_image_width": 7, "input_image_height": 7,
               "normalize_z": 7.0}
    _, norm = tensors_to_landmarks([0, 0, 1], options)
    assert norm[0]["z"] == F32(10956550 * 2.0**-29)
    assert norm[0]["z"] != F32(10956549 * 2.0**-29)


def test_tensors_to_landmarks_output_selection_and_ret_checks():
    raw = [1, 2, 3]
    # num_landmarks is required.
    with pytest.raises(ValueError):
        tensors_to_landmarks(raw, {"input_image_width": 4, "input_image_height": 4})
    # NORM_LANDMARKS needs both width and height.
    with pytest.raises(ValueError):
        tensors_to_landmarks(raw, {"num_landmarks": 1, "input_image_width": 4})
    with pytest.raises(ValueError):
        tensors_to_landmarks(raw, {"num_landmarks": 1}, outputs=("NORM_LANDMARKS",))
    # LANDMARKS alone needs no size (the world-landmark graphs) ...
    landmarks, norm = tensors_to_landmarks(raw, {"num_landmarks": 1}, outputs=("LANDMARKS",))
    assert landmarks == [{"x": 1.0, "y": 2.0, "z": 3.0}] and norm is None
    # ... unless it is flipped.
    with pytest.raises(ValueError):
        tensors_to_landmarks(raw, {"num_landmarks": 1, "flip_vertically": True},
                             outputs=("LANDMARKS",))
    # Only NORM_LANDMARKS connected: the absolute list is not returned.
    landmarks, norm = tensors_to_landmarks(
        raw, {"num_landmarks": 1, "input_image_width": 4, "input_image_height": 4},
        outputs=("NORM_LANDMARKS",))
    assert landmarks is None and norm == [{"x": 0.25, "y": 0.5, "z": 0.75}]
    # ABSL_CHECK_GT(num_dimensions, 0): 3 values for 4 landmarks -> 3 // 4 = 0.
    with pytest.raises(ValueError):
        tensors_to_landmarks(raw, {"num_landmarks": 4}, outputs=("LANDMARKS",))
    # num_landmarks 0 divides by zero.
    with pytest.raises(ValueError):
        tensors_to_landmarks(raw, {"num_landmarks": 0}, outputs=("LANDMARKS",))


# --------------------------------------------------------------------------
# LandmarkLetterboxRemovalCalculator
# --------------------------------------------------------------------------

def test_letterbox_removal_maps_x_y_and_scales_z_as_x():
    # padding [l, t, r, b] = [0.25, 0.125, 0.25, 0.375]: l + r = 0.5, t + b = 0.5.
    #   x' = (x - 0.25) / 0.5, y' = (y - 0.125) / 0.5, z' = z / 0.5 (x's scale).
    #   (0.5, 0.375, -0.1) -> (0.5, 0.5, 2 * float32(-0.1)) -- halving is exact,
    #   so z' = float32(-0.2); visibility and presence copied unchanged.
    #   (0, 1, 0) -> (-0.5, 1.75, 0): no clamping to [0, 1].
    padding = [0.25, 0.125, 0.25, 0.375]
    landmarks = [{"x": F32(0.5), "y": F32(0.375), "z": F32(-0.1), "visibility": F32(0.7),
                  "presence": F32(0.3)},
                 {"x": F32(0.0), "y": F32(1.0), "z": F32(0.0)}]
    out = remove_landmark_letterbox(landmarks, padding)
    assert out[0] == {"x": 0.5, "y": 0.5, "z": F32(-0.2), "visibility": F32(0.7),
                      "presence": F32(0.3)}
    assert out[1] == {"x": -0.5, "y": 1.75, "z": 0.0}
    assert "visibility" not in out[1]
    assert _all_float32(out)


def test_letterbox_removal_z_uses_left_right_only():
    # Vertical padding only [0, 0.25, 0, 0.25]: x and z unchanged, y' = (y - 0.25) / 0.5.
    out = remove_landmark_letterbox([{"x": F32(0.3), "y": F32(0.5), "z": F32(0.3)}],
                                    [0.0, 0.25, 0.0, 0.25])
    assert out == [{"x": F32(0.3), "y": 0.5, "z": F32(0.3)}]
    # Horizontal padding only [0.125, 0, 0.375, 0]: x' = (x - 0.125) / 0.5,
    # z' = z / 0.5, y unchanged. (0.625, 0.3, 0.25) -> (1.0, 0.3, 0.5).
    out = remove_landmark_letterbox([{"x": F32(0.625), "y": F32(0.3), "z": F32(0.25)}],
                                    [0.125, 0.0, 0.375, 0.0])
    assert out == [{"x": 1.0, "y": F32(0.3), "z": 0.5}]


def test_letterbox_removal_mediapipe_cases():
    # landmark_letterbox_removal_calculator_test.cc, tolerance 1e-5 as there:
    # padding [0.2, 0, 0.3, 0]: (0.5, 0.5) -> (0.6, 0.5), (0.2, 0.2) -> (0, 0.2),
    # (0.7, 0.7) -> (1, 0.7); padding [0, 0.2, 0, 0.3] the same with x, y swapped.
    points = [(0.5, 0.5), (0.2, 0.2), (0.7, 0.7)]
    landmarks = [{"x": F32(x), "y": F32(y)} for x, y in points]
    out = remove_landmark_letterbox(landmarks, [0.2, 0.0, 0.3, 0.0])
    got = [(float(lm["x"]), float(lm["y"])) for lm in out]
    np.testing.assert_allclose(got, [(0.6, 0.5), (0.0, 0.2), (1.0, 0.7)], rtol=0, atol=1e-5)
    out = remove_landmark_letterbox(landmarks, [0.0, 0.2, 0.0, 0.3])
    got = [(float(lm["x"]), float(lm["y"])) for lm in out]
    np.testing.assert_allclose(got, [(0.5, 0.6), (0.2, 0.0), (0.7, 1.0)], rtol=0, atol=1e-5)
    # z was unset: it reads 0 and is written (0 / 0.5 = 0).
    assert all(lm["z"] == 0.0 for lm in out)


# --------------------------------------------------------------------------
# LandmarkProjectionCalculator, NORM_RECT (no image size)
# --------------------------------------------------------------------------

def test_projection_norm_rect_mediapipe_cases():
    # ProjectingWithDefaultRect: the unit rect maps (10, 20, -0.5) to itself
    # ((10 - 0.5) * 1 + 0.5 = 10 etc., exact).
    unit = {"x_center": 0.5, "y_center": 0.5, "width": 1.0, "height": 1.0, "rotation": 0.0}
    out = project_landmarks_norm_rect([{"x": F32(10), "y": F32(20), "z": F32(-0.5)}], unit)
    assert out == [{"x": 10.0, "y": 20.0, "z": -0.5}]
    # ProjectingWithCroppedRectForSquareImage: rect (0.5, 0.5, 0.5 x 2), (1, 1, -0.5):
    # x = 0.5 * 0.5 + 0.5 = 0.75, y = 0.5 * 2 + 0.5 = 1.5, z = -0.5 * 0.5 = -0.25.
    cropped = {"x_center": 0.5, "y_center": 0.5, "width": 0.5, "height": 2.0, "rotation": 0.0}
    out = project_landmarks_norm_rect([{"x": F32(1), "y": F32(1), "z": F32(-0.5)}], cropped)
    assert out == [{"x": 0.75, "y": 1.5, "z": -0.25}]


def test_projection_norm_rect_rotation_90():
    # rect centre (0.5, 0.5), 0.5 x 1, rotation float32(pi/2): cos = C90, sin = 1.
    rect = {"x_center": 0.5, "y_center": 0.5, "width": 0.5, "height": 1.0, "rotation": ROT90}
    landmarks = [
        {"x": F32(0.75), "y": F32(0.5), "z": F32(0.2), "visibility": F32(0.9)},
        {"x": F32(0.5), "y": F32(1.0), "z": F32(0.0), "presence": F32(0.1)},
    ]
    out = project_landmarks_norm_rect(landmarks, rect)
    # (0.75, 0.5): x0 = 0.25, y0 = 0.
    #   new_x = C90 * 0.25 - 1 * 0 = -1.09e-8; * 0.5 + 0.5 = 0.5 - 5.5e-9, which
    #   is below half the spacing under 0.5 (1.5e-8) -> 0.5.
    #   new_y = 1 * 0.25 + C90 * 0 = 0.25; * 1 + 0.5 = 0.75.
    #   z = 0.2 * 0.5 = float32(0.1) (halving is exact). Visibility copied.
    assert out[0] == {"x": 0.5, "y": 0.75, "z": F32(0.1), "visibility": F32(0.9)}
    # (0.5, 1.0): x0 = 0, y0 = 0.5.
    #   new_x = C90 * 0 - 1 * 0.5 = -0.5; * 0.5 + 0.5 = 0.25.
    #   new_y = 1 * 0 + C90 * 0.5 = -2.19e-8; * 1 + 0.5 = 0.5 - 2.19e-8: the
    #   float32 values around are 0.5 - 2^-25 (0.5 - 2.98e-8, 0.79e-8 away) and
    #   0.5 (2.19e-8 away) -> 0.5 - 2^-25 = 0.49999997, not 0.5.
    assert out[1] == {"x": 0.25, "y": F32(0.5 - 2.0**-25), "z": 0.0, "presence": F32(0.1)}
    # ignore_rotation: the same rect without its rotation.
    #   (0.75, 0.5): x = 0.25 * 0.5 + 0.5 = 0.625, y = 0 * 1 + 0.5 = 0.5.
    out = project_landmarks_norm_rect(landmarks[:1], rect, options={"ignore_rotation": True})
    assert _xyz(out[0]) == [0.625, 0.5, F32(0.1)]


def test_projection_norm_rect_rotation_30():
    # rect centre (0.4, 0.6), 0.2 x 0.3, rotation float32(pi/6):
    # cos = sqrt(3)/2 = 0.8660254, sin = 0.5.
    rect = {"x_center": 0.4, "y_center": 0.6, "width": 0.2, "height": 0.3, "rotation": ROT30}
    landmarks = [{"x": F32(1.0), "y": F32(0.5), "z": F32(0.4)},
                 {"x": F32(0.5), "y": F32(0.0), "z": F32(-1.0)}]
    out = project_landmarks_norm_rect(landmarks, rect)
    # (1, 0.5): x0 = 0.5, y0 = 0 -> new (0.5 cos, 0.5 sin) = (0.4330127, 0.25);
    #   x = 0.4330127 * 0.2 + 0.4 = 0.48660254, y = 0.25 * 0.3 + 0.6 = 0.675,
    #   z = 0.4 * 0.2 = 0.08.
    # (0.5, 0): x0 = 0, y0 = -0.5 -> new (-sin * -0.5, cos * -0.5) = (0.25, -0.4330127);
    #   x = 0.25 * 0.2 + 0.4 = 0.45, y = -0.4330127 * 0.3 + 0.6 = 0.47009619,
    #   z = -1 * 0.2 = -0.2.
    # Each result goes through about six float32 roundings (the rect's fields,
    # cos/sin, products, sums) of at most half a spacing (<= 3e-8 below 1):
    # atol 1.5e-7.
    expected = [[0.4 + 0.1 * math.sqrt(3) / 2, 0.675, 0.08],
                [0.45, 0.6 - 0.15 * math.sqrt(3) / 2, -0.2]]
    got = [[float(v) for v in _xyz(lm)] for lm in out]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1.5e-7)


@pytest.mark.parametrize("rect", [
    {"x_center": 0.5, "y_center": 0.5, "width": 0.5, "height": 2.0, "rotation": 0.0},
    {"x_center": 0.5, "y_center": 0.5, "width": 0.5, "height": 1.0, "rotation": ROT90},
    {"x_center": 0.4, "y_center": 0.6, "width": 0.2, "height": 0.3, "rotation": ROT30},
    {"x_center": 0.3137, "y_center": 0.7071, "width": 0.4142, "height": 0.2718,
     "rotation": -2.345},
])
def test_projection_norm_rect_agrees_with_roi_reference(rect):
    # Same formula as tests/reference/roi.py's project_landmark (spec §7.4):
    # x and y must agree bit for bit.
    rng = np.random.default_rng(7)
    points = rng.uniform(-0.2, 1.2, size=(25, 3)).astype(np.float32)
    rect = {k: F32(v) for k, v in rect.items()}
    landmarks = [{"x": x, "y": y, "z": z} for x, y, z in points]
    out = project_landmarks_norm_rect(landmarks, rect)
    for landmark, projected in zip(landmarks, out):
        x, y = project_landmark(landmark["x"], landmark["y"], rect)
        assert (projected["x"], projected["y"]) == (x, y)
        # and z is scaled by the rect's width
        assert projected["z"] == F32(landmark["z"] * rect["width"])


# --------------------------------------------------------------------------
# LandmarkProjectionCalculator, NORM_RECT + IMAGE_DIMENSIONS
# --------------------------------------------------------------------------

def test_projection_with_image_dimensions_mediapipe_cases():
    # landmark_projection_calculator_test.cc, kAbsError 1e-6:
    # cropped rect (0.5, 0.5, 0.5 x 2), 1 x 1 image: (1, 1, -0.5) -> (0.75, 1.5, -0.25).
    cropped = {"x_center": 0.5, "y_center": 0.5, "width": 0.5, "height": 2.0, "rotation": 0.0}
    out = project_landmarks_norm_rect([{"x": F32(1), "y": F32(1), "z": F32(-0.5)}], cropped,
                                      image_dimensions=(1, 1))
    np.testing.assert_allclose([float(v) for v in _xyz(out[0])], [0.75, 1.5, -0.25],
                               rtol=0, atol=1e-6)
    # rect (0.5, 0.5, 0.5 x 1), rotation 1.57079632679, (0.5, 1, 0):
    # 1 x 1 image -> (0, 0.5, 0); 2 x 1 image -> (0.25, 0.5, 0).
    rotated = {"x_center": 0.5, "y_center": 0.5, "width": 0.5, "height": 1.0,
               "rotation": 1.57079632679}
    landmark = [{"x": F32(0.5), "y": F32(1.0), "z": F32(0.0)}]
    for dims, expected in (((1, 1), [0.0, 0.5, 0.0]), ((2, 1), [0.25, 0.5, 0.0])):
        out = project_landmarks_norm_rect(landmark, rotated, image_dimensions=dims)
        np.testing.assert_allclose([float(v) for v in _xyz(out[0])], expected,
                                   rtol=0, atol=1e-6)


def test_projection_z_depends_on_path_for_rotated_rect_on_non_square_image():
    # 200 x 100 image, rect centre (0.5, 0.5), 0.25 x 0.5, rotation float32(pi/2):
    # in pixels a 50 x 50 square centred at (100, 50).
    rect = {"x_center": 0.5, "y_center": 0.5, "width": 0.25, "height": 0.5, "rotation": ROT90}
    landmark = [{"x": F32(1.0), "y": F32(0.5), "z": F32(1.0), "visibility": F32(0.8)}]
    # (1, 0.5) is half the rect's width along its x axis: 25 px, which the
    # rotation turns downwards: pixel (100, 75) -> normalised (0.5, 0.75).
    # z is scaled by the length of the projected unit x segment: 50 px, turned
    # vertical, is 50 / 100 = 0.5 of the image height -> z' = 0.5.
    #   Matrix (a = b = 50, c = C90, d = 1, e = 100, f = 50, g = float32(1/200),
    #   h = float32(1/100) = 0.01 - 2.2e-10):
    #   m[0] = 50 * C90 * g = -1.09e-8.
    #   m[3] = (-25 * C90 + 25 + 100) * g: 25 + 1.09e-6 rounds to 25 + 2^-19
    #   (spacing 1.9e-6), + 100 back to 125 (spacing 7.6e-6); 125 * g =
    #   0.625 - 1.4e-8 -> 0.625 (half spacing 3e-8). m[0] + m[3] = 0.625 - 1.09e-8
    #   -> 0.625, so dx = 0.625 - 0.625 = 0.
    #   m[4] = 50 * 1 * h = 0.5 - 1.1e-8 -> 0.5 (half spacing below 0.5: 1.5e-8).
    #   m[7] = (-25 * C90 - 25 + 50) * h: 1.09e-6 - 25 -> -25 + 2^-19, + 50 ->
    #   25 + 2^-19; * h = 0.25 + 1.35e-8 -> 0.25 (half spacing above 0.25: 1.5e-8).
    #   dy = (0.5 + 0.25) - 0.25 = 0.5; z_scale = sqrt(0^2 + 0.5^2) = 0.5 exactly.
    out = project_landmarks_norm_rect(landmark, rect, image_dimensions=(200, 100))
    assert out[0]["z"] == 0.5
    assert out[0]["visibility"] == F32(0.8)
    np.testing.assert_allclose([float(out[0]["x"]), float(out[0]["y"])], [0.5, 0.75],
                               rtol=0, atol=6e-8)  # one spacing at 0.5..1
    # Without IMAGE_DIMENSIONS: z' = z * width = 0.25 whatever the rotation;
    # x, y agree (the rect is square in pixels): x = C90 * 0.5 * 0.25 + 0.5 -> 0.5,
    # y = 0.5 * 0.5 + 0.5 = 0.75.
    out = project_landmarks_norm_rect(landmark, rect)
    assert _xyz(out[0]) == [0.5, 0.75, 0.25]
    # Unrotated, both paths scale z by the width: 50 / 200 = 0.25.
    flat = dict(rect, rotation=0.0)
    out = project_landmarks_norm_rect(landmark, flat, image_dimensions=(200, 100))
    assert out[0]["z"] == 0.25


def test_sub_rect_matrix_rows():
    # GetRotatedSubRectToRectTransformMatrix for the pixel rect of
    # GetRoi(1280, 720, rect (0.5, 0.5, 0.5 x 2)) -- centre (640, 360),
    # size 640 x 1440, rotation 0 -- as MediaPipe's ProjectingWithCroppedRectMatrix:
    #   a = 640, b = 1440, c = 1, d = 0, g = float32(1/1280), h = float32(1/720)
    #   m[0] = 640 * g, m[1] = -0, m[3] = (-320 + 0 + 640) * g = 320 * g,
    #   m[5] = 1440 * h, m[7] = (-720 - 0 + 360) * h = -360 * h, m[10] = 640 * g.
    # 1/1280 = 2^-8 / 5: float32 rounding then * 640 (= 5 * 2^7) is 0.5 up to
    # 1.2e-8 -> 0.5; likewise 320 * g -> 0.25, 1440 * h -> 2, -360 * h -> -0.5.
    sub_rect = {"center_x": 640.0, "center_y": 360.0, "width": 640.0, "height": 1440.0,
                "rotation": 0.0}
    m = rotated_sub_rect_to_rect_matrix(sub_rect, 1280, 720)
    assert m == [0.5, 0.0, 0.0, 0.25,
                 0.0, 2.0, 0.0, -0.5,
                 0.0, 0.0, 0.5, 0.0,
                 0.0, 0.0, 0.0, 1.0]
    assert all(type(v) is F32 for v in m)
    # MediaPipe's test expects (1, 1, -0.5) -> exactly (0.75, 1.5, -0.25):
    # 0.5 + 0.25, 2 - 0.5; z_scale = (0.5 + 0.25) - 0.25 = 0.5, -0.5 * 0.5.
    out = project_landmarks_matrix([{"x": F32(1), "y": F32(1), "z": F32(-0.5)}], m)
    assert out == [{"x": 0.75, "y": 1.5, "z": -0.25}]
    # flip_horizontally negates the x scale and mirrors the offset:
    # m[0] = -0.5, m[3] = (320 + 640) * g = 0.75.
    m = rotated_sub_rect_to_rect_matrix(sub_rect, 1280, 720, flip_horizontally=True)
    assert (m[0], m[3]) == (-0.5, 0.75)


# --------------------------------------------------------------------------
# LandmarkProjectionCalculator, PROJECTION_MATRIX
# --------------------------------------------------------------------------

def _matrix(rows):
    return np.array(rows, dtype=np.float32)


def test_projection_matrix_mediapipe_cases():
    # landmark_projection_calculator_test.cc (EqualsProto, exact):
    lm = [{"x": F32(10), "y": F32(20), "z": F32(-0.5)}]
    identity = _matrix(np.eye(4))
    assert project_landmarks_matrix(lm, identity) == [{"x": 10.0, "y": 20.0, "z": -0.5}]
    # scale diag(10, 100, 1, 1): z_scale = |(10, 0)| = 10.
    scale = _matrix([[10, 0, 0, 0], [0, 100, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    out = project_landmarks_matrix(lm + [{"x": F32(5), "y": F32(6), "z": F32(7)}], scale)
    assert out == [{"x": 100.0, "y": 2000.0, "z": -5.0}, {"x": 50.0, "y": 600.0, "z": 70.0}]
    # translate (1, 2): z_scale = (1 + 1) - 1 = 1.
    translate = _matrix([[1, 0, 0, 1], [0, 1, 0, 2], [0, 0, 1, 0], [0, 0, 0, 1]])
    assert project_landmarks_matrix(lm, translate) == [{"x": 11.0, "y": 22.0, "z": -0.5}]
    # rotation by 90 degrees: (4, 0) -> (0, 4), z_scale = |(0, 1)| = 1.
    rotate = _matrix([[0, -1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    out = project_landmarks_matrix([{"x": F32(4), "y": F32(0), "z": F32(-0.5)}], rotate)
    assert out == [{"x": 0.0, "y": 4.0, "z": -0.5}]


def test_projection_matrix_z_scale_and_z_mixing():
    # m[0] = 3, m[4] = 4: z_scale = sqrt(9 + 16) = 5. m[2] = 2 adds 2 z to x,
    # m[6] = -1 subtracts z from y; rows 3, 4 (here garbage) are never read.
    # (1, 2, 0.5, visibility 0.25): x = 3 + 0 + 1 + 0 = 4, y = 4 + 2 * 1 - 0.5 + 0.5
    # = 6 with m[5] = 1, m[7] = 0.5; z = 5 * 0.5 = 2.5.
    m = _matrix([[3, 0, 2, 0], [4, 1, -1, 0.5], [9, 9, 9, 9], [9, 9, 9, 9]])
    out = project_landmarks_matrix(
        [{"x": F32(1), "y": F32(2), "z": F32(0.5), "visibility": F32(0.25)}], m)
    assert out == [{"x": 4.0, "y": 6.0, "z": 2.5, "visibility": 0.25}]
    # The z scale is measured by projecting (0, 0) and (1, 0) and subtracting in
    # float: with m[0] = 1 and m[3] = 2^25 (float spacing 4 there),
    # (1 + 2^25) rounds to 2^25, so dx = 0 and z_scale = 0: z collapses to 0.
    m = _matrix([[1, 0, 0, 2**25], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    out = project_landmarks_matrix([{"x": F32(8), "y": F32(0), "z": F32(3)}], m)
    assert out == [{"x": 2.0**25 + 8, "y": 0.0, "z": 0.0}]
    with pytest.raises(ValueError):
        project_landmarks_matrix(out, np.eye(3))


# --------------------------------------------------------------------------
# WorldLandmarkProjectionCalculator
# --------------------------------------------------------------------------

def test_world_landmark_projection_rotations():
    world = [{"x": F32(1.0), "y": F32(0.0), "z": F32(5.0), "visibility": F32(0.5),
              "presence": F32(0.75)},
             {"x": F32(2.0), "y": F32(1.0), "z": F32(-1.0)}]
    # 90 degrees: (1, 0) -> (C90 * 1 - 1 * 0, 1 * 1 + C90 * 0) = (C90, 1);
    # (2, 1) -> (2 C90 - 1, 2 + C90) = (-1 - 8.7e-8, 2 - 4.4e-8) -> (-1.0000001, 2):
    #   below -1 the spacing is 1.2e-7, so -1 - 8.7e-8 rounds to -1 - 2^-23;
    #   below 2 the spacing is 1.2e-7 (half 6e-8 > 4.4e-8), so 2.
    # z, visibility, presence untouched; no scale or translation (width etc. unused).
    rect = {"x_center": 0.3, "y_center": 0.3, "width": 0.1, "height": 0.1, "rotation": ROT90}
    out = world_landmark_projection(world, rect)
    assert out[0] == {"x": C90, "y": 1.0, "z": 5.0, "visibility": 0.5, "presence": 0.75}
    assert out[1] == {"x": F32(-1 - 2.0**-23), "y": 2.0, "z": -1.0}
    # 30 degrees: (2, 1) -> (2 cos - sin, 2 sin + cos) = (sqrt(3) - 0.5, 1 + sqrt(3)/2)
    # = (1.2320508, 1.8660254); a few roundings of at most 6e-8 in [1, 2): atol 2.4e-7.
    out = world_landmark_projection(world, dict(rect, rotation=ROT30))
    np.testing.assert_allclose([float(out[1]["x"]), float(out[1]["y"])],
                               [math.sqrt(3) - 0.5, 1 + math.sqrt(3) / 2], rtol=0, atol=2.4e-7)
    assert out[1]["z"] == -1.0
    # Without a rect the landmarks are copied.
    assert world_landmark_projection(world) == world


# --------------------------------------------------------------------------
# RefineLandmarksFromHeatmapCalculator (RefineLandmarksFromHeatMap)
# --------------------------------------------------------------------------
# Raw heatmap values with exact float32 sigmoids:
#   -100: expf(100) = 2.7e43 overflows to inf, 1 / (1 + inf) = 0.
#      0: 1 / (1 + 1) = 0.5.
#    100: expf(-100) = 3.7e-44, 1 + 3.7e-44 rounds to 1, 1 / 1 = 1.
HM_Z, HM_H, HM_O = -100.0, 0.0, 100.0


def _heatmap(*channels):
    """HWC float32 heatmap from one [H][W] grid of raw values per channel."""
    return np.stack([np.array(c, dtype=np.float32) for c in channels], axis=-1)


def test_refine_from_heatmap_weighted_average_3x3():
    Z, H, O = HM_Z, HM_H, HM_O
    grid = [[O, Z, Z, O],
            [Z, Z, O, Z],
            [Z, H, Z, O],
            [H, Z, Z, Z]]
    landmark = {"x": F32(0.3), "y": F32(0.6), "z": F32(-0.25), "visibility": F32(0.75),
                "presence": F32(0.8)}
    # 4 x 4 heatmap: center_col = int(float32(0.3) * 4 = 1.2) = 1,
    # center_row = int(float32(0.6) * 4 = 2.4) = 2. kernel 3 -> offset 1:
    # cols 0..2, rows 1..3 (row 0 and col 3, with their ones, are outside).
    # In the window: (1, 2) -> 1, (2, 1) -> 0.5, (3, 0) -> 0.5, the rest 0.
    #   sum = 1 + 0.5 + 0.5 = 2, max = 1 >= 0.5.
    #   weighted_col = 2 * 1 + 1 * 0.5 + 0 * 0.5 = 2.5
    #   weighted_row = 1 * 1 + 2 * 0.5 + 3 * 0.5 = 3.5
    #   x = 2.5 / 4 / 2 = 0.3125, y = 3.5 / 4 / 2 = 0.4375 (all exact).
    # z copied; visibility / presence untouched (refine_* default False).
    expected = {"x": 0.3125, "y": 0.4375, "z": -0.25, "visibility": F32(0.75),
                "presence": F32(0.8)}
    out = refine_landmarks_from_heatmap([landmark], _heatmap(grid), {"kernel_size": 3})
    assert out == [expected]
    assert _all_float32(out)
    # The same heatmap as [1, H, W, C].
    out = refine_landmarks_from_heatmap([landmark], _heatmap(grid)[None], {"kernel_size": 3})
    assert out == [expected]
    # The input is not modified; an unset z reads 0.
    assert landmark["x"] == F32(0.3)
    out = refine_landmarks_from_heatmap([{"x": F32(0.3), "y": F32(0.6)}], _heatmap(grid),
                                        {"kernel_size": 3})
    assert out == [{"x": 0.3125, "y": 0.4375, "z": 0.0}]


def test_refine_from_heatmap_mediapipe_cases():
    # refine_landmarks_from_heatmap_calculator_test.cc (FloatEq: 4 ulp).
    z = -1e16  # sigmoid(z) = 0
    options = {"kernel_size": 3, "min_confidence_to_refine": 0.1,
               "refine_presence": True, "refine_visibility": True}
    # Smoke: 3 x 3, raw 1 at (row 1, col 0); landmark (0.5, 0.5) -> col = row =
    # int(1.5) = 1, full window. sum = c = sigmoid(1), weighted_col = 0 * c,
    # weighted_row = 1 * c: x = 0 / 3 / c = 0, y = (c / 3) / c = 1/3 up to
    # two roundings. No presence / visibility key appears.
    out = refine_landmarks_from_heatmap(
        [{"x": 0.5, "y": 0.5}], _heatmap([[z, z, z], [1, z, z], [z, z, z]]), options)
    assert out[0]["x"] == 0.0 and set(out[0]) == {"x", "y", "z"}
    np.testing.assert_array_max_ulp(out[0]["y"], F32(1 / 3), maxulp=4)
    # Border (2 channels): landmark 0 at (0, 0): window rows 0..1, cols 0..1 of
    # channel 0 holds one 0.5 at (1, 0): x = 0, y = (0.5 / 3) / 0.5 = 2 *
    # float32(1/6) = float32(1/3) exactly (halving / doubling is exact).
    # Landmark 1 at (0.9, 0.9): int(float32(0.9) * 3 = 2.7) = 2, window rows
    # 1..2, cols 1..2 of channel 1: 0.5 at (1, 2) and (2, 2). sum = 1,
    # weighted_col = 2 * 0.5 + 2 * 0.5 = 2, weighted_row = 0.5 + 1 = 1.5:
    # x = float32(2 / 3) / 1, y = 1.5 / 3 / 1 = 0.5.
    ch0 = [[z, z, z], [0, z, 0], [z, z, z]]
    ch1 = [[z, z, z], [0, z, 0], [z, z, 0]]
    out = refine_landmarks_from_heatmap([{"x": 0.0, "y": 0.0}, {"x": 0.9, "y": 0.9}],
                                        _heatmap(ch0, ch1), options)
    assert _xyz(out[0]) == [0.0, F32(1 / 3), 0.0]
    assert _xyz(out[1]) == [F32(2) / F32(3), 0.5, 0.0]


def test_refine_from_heatmap_outside_kept_intact():
    # 4 x 4 heatmap of raw 0 (confidence 0.5 everywhere), 6 channels; the
    # default kernel 9 (offset 4) covers it all from anywhere.
    # Inside control, (0.5, 0.5): sum = 16 * 0.5 = 8, weighted_col = 0.5 * (0 +
    # 1 + 2 + 3) * 4 = 12: x = y = 12 / 4 / 8 = 0.375; max 0.5 >= 0.5;
    # presence 0.9 and visibility 0.7 become min(., 0.5) = 0.5.
    # Outside: x = 1 -> col 4 == W; y = -0.3 -> int(-1.2) = -1; y = 1.25 ->
    # row 5; x = -0.25 -> int(-1.0) = -1. These are skipped entirely: neither
    # the coordinates nor presence / visibility change.
    # NaN: the C++ float -> int conversion is undefined; x86-64 gives INT_MIN,
    # so the reference keeps it intact too.
    extra = {"presence": F32(0.9), "visibility": F32(0.7)}
    landmarks = [dict(x=F32(0.5), y=F32(0.5), z=F32(1), **extra),
                 dict(x=F32(1.0), y=F32(0.5), z=F32(2), **extra),
                 dict(x=F32(0.5), y=F32(-0.3), z=F32(3), **extra),
                 dict(x=F32(0.5), y=F32(1.25), z=F32(4), **extra),
                 dict(x=F32(-0.25), y=F32(0.5), z=F32(5), **extra),
                 dict(x=F32(np.nan), y=F32(0.5), z=F32(6), **extra)]
    heatmap = np.zeros((4, 4, 6), dtype=np.float32)
    out = refine_landmarks_from_heatmap(
        landmarks, heatmap, {"refine_presence": True, "refine_visibility": True})
    assert out[0] == {"x": 0.375, "y": 0.375, "z": 1.0, "presence": 0.5, "visibility": 0.5}
    assert out[1:5] == landmarks[1:5]
    assert math.isnan(out[5]["x"])
    assert {k: v for k, v in out[5].items() if k != "x"} == \
        {k: v for k, v in landmarks[5].items() if k != "x"}


def test_refine_from_heatmap_slightly_negative_x_truncates_to_column_0():
    # C++ quirk: center_col = int(x * W) truncates toward zero, so
    # float32(-0.01) * 4 = -0.04 gives column 0 (floor would give -1, outside)
    # and the landmark is refined. float32(-0.25) * 4 = -1 exactly -> -1: kept.
    # y = 0.6 -> int(2.4) = 2. kernel 3: cols 0..1, rows 1..3 (the one at
    # (2, 2) is outside). In the window, rows outer: (1, 0) -> 0.5,
    # (2, 1) -> 1, (3, 0) -> 0.5.
    #   sum = 0.5 + 1 + 0.5 = 2, weighted_col = 0 + 1 + 0 = 1,
    #   weighted_row = 0.5 + 2 + 1.5 = 4: x = 1 / 4 / 2 = 0.125, y = 4 / 4 / 2 = 0.5.
    Z, H, O = HM_Z, HM_H, HM_O
    grid = [[Z, Z, Z, Z],
            [H, Z, Z, Z],
            [Z, O, O, Z],
            [H, Z, Z, Z]]
    landmarks = [{"x": F32(-0.01), "y": F32(0.6), "z": F32(0)},
                 {"x": F32(-0.25), "y": F32(0.6), "z": F32(0)}]
    out = refine_landmarks_from_heatmap(landmarks, _heatmap(grid, grid), {"kernel_size": 3})
    assert out[0] == {"x": 0.125, "y": 0.5, "z": 0.0}
    assert out[1] == landmarks[1]


def test_refine_from_heatmap_float_product_before_truncation():
    # x * W is a float product: float32(0.7) = 11744051 * 2^-24, times 10 is
    # 7 - 2^-23 = 6.99999988 exactly, which rounds to 7.0 in float32 (spacing
    # 4.8e-7 in [4, 8)) -> column 7, not 6. 1 x 10 heatmap, a single one at
    # col 8, kernel 3: window 6..8 contains it -> sum 1, weighted_col 8:
    # x = 8 / 10 / 1 = float32(0.8); y = 0.5 -> row int(0.5) = 0: y = 0 / 1 / 1.
    # (From column 6 the window 5..7 would be all zeros: sum 0, kept at 0.7.)
    Z, O = HM_Z, HM_O
    grid = [[Z] * 8 + [O, Z]]
    out = refine_landmarks_from_heatmap([{"x": F32(0.7), "y": F32(0.5)}], _heatmap(grid),
                                        {"kernel_size": 3})
    assert out == [{"x": F32(0.8), "y": 0.0, "z": 0.0}]


def test_refine_from_heatmap_threshold_presence_visibility():
    # 3 x 3 heatmap of raw 0: every confidence 0.5, max 0.5, sum 4.5.
    heatmap = np.zeros((3, 3, 1), dtype=np.float32)
    landmark = {"x": F32(0.5), "y": F32(0.5), "z": F32(0), "presence": F32(0.9),
                "visibility": F32(0.7)}
    # max 0.5 < 0.6: coordinates kept. Presence / visibility are refined
    # regardless of the threshold (only sum > 0 is required): min(0.9, 0.5).
    out = refine_landmarks_from_heatmap(
        [landmark], heatmap, {"kernel_size": 3, "min_confidence_to_refine": 0.6})
    assert out == [landmark]
    out = refine_landmarks_from_heatmap(
        [landmark], heatmap,
        {"kernel_size": 3, "min_confidence_to_refine": 0.6, "refine_presence": True})
    assert out == [dict(landmark, presence=F32(0.5))]
    out = refine_landmarks_from_heatmap(
        [landmark], heatmap,
        {"kernel_size": 3, "min_confidence_to_refine": 0.6, "refine_visibility": True})
    assert out == [dict(landmark, visibility=F32(0.5))]
    # min keeps a value already below the max: visibility 0.25 stays.
    low = dict(landmark, visibility=F32(0.25))
    out = refine_landmarks_from_heatmap(
        [low], heatmap, {"kernel_size": 3, "min_confidence_to_refine": 0.6,
                         "refine_presence": True, "refine_visibility": True})
    assert out == [dict(low, presence=F32(0.5))]
    # max == threshold (default 0.5) refines (>=): weighted_col = 0.5 * (0 + 1
    # + 2) * 3 = 4.5: x = 4.5 / 3 / 4.5 = 1.5 / 4.5 = float32(1/3); y alike.
    out = refine_landmarks_from_heatmap([landmark], heatmap, {"kernel_size": 3})
    assert out == [dict(landmark, x=F32(1) / F32(3), y=F32(1) / F32(3))]


def test_refine_from_heatmap_zero_sum_changes_nothing():
    # All confidences 0: max 0 >= min_confidence 0 but sum == 0, so neither the
    # coordinates nor presence / visibility (which min(., 0) would zero) change.
    heatmap = np.full((3, 3, 1), HM_Z, dtype=np.float32)
    landmark = {"x": F32(0.5), "y": F32(0.5), "z": F32(0), "presence": F32(0.9),
                "visibility": F32(0.7)}
    out = refine_landmarks_from_heatmap(
        [landmark], heatmap, {"min_confidence_to_refine": 0.0, "refine_presence": True,
                              "refine_visibility": True})
    assert out == [landmark]


def test_refine_from_heatmap_kernel_sizes():
    # 1 x 16 heatmap: ones at cols 3, 12, 13; 0.5 at cols 9, 10; landmark
    # x = 0.5 -> col 8, y = 0.5 -> row 0 (y becomes 0 / 1 / sum = 0).
    Z, H, O = HM_Z, HM_H, HM_O
    grid = [[Z, Z, Z, O, Z, Z, Z, Z, Z, H, H, Z, O, O, Z, Z]]
    landmark = [{"x": F32(0.5), "y": F32(0.5)}]

    def refine(options, lms=landmark):
        return refine_landmarks_from_heatmap(lms, _heatmap(grid), options)[0]

    # Default kernel 9, offset 4: cols 4..12 -> 0.5 (9), 0.5 (10), 1 (12).
    #   sum = 2, weighted_col = 4.5 + 5 + 12 = 21.5: x = 21.5 / 16 / 2 = 0.671875.
    assert refine({}) == {"x": 0.671875, "y": 0.0, "z": 0.0}
    # kernel 5, offset 2: cols 6..10 -> sum 1, weighted 9.5: x = 9.5 / 16 = 0.59375.
    assert refine({"kernel_size": 5})["x"] == 0.59375
    # kernel 4 (even): offset int(3 / 2) = 1, as kernel 3: cols 7..9 -> 0.5 at 9:
    # x = 4.5 / 16 / 0.5 = 0.5625.
    assert refine({"kernel_size": 4})["x"] == 0.5625
    assert refine({"kernel_size": 3})["x"] == 0.5625
    # kernel 0: offset (0 - 1) / 2 = 0 in C++ (truncation; floor would give -1
    # and an empty window): a 1 x 1 window. x = 0.59: int(9.44) = 9 -> col 9
    # alone: x = 4.5 / 16 / 0.5 = 0.5625.
    assert refine({"kernel_size": 0}, [{"x": F32(0.59), "y": F32(0.5)}])["x"] == 0.5625
    # kernel -2: offset int(-3 / 2) = -1: empty window, sum 0, kept.
    assert refine({"kernel_size": -2}, [{"x": F32(0.59), "y": F32(0.5)}])["x"] == F32(0.59)


def test_refine_from_heatmap_float32_accumulation_order():
    # c = sigmoid(-17) = 1 / (1 + float32(expf(17))) = 4.14e-8: below 2^-24
    # (5.96e-8, half the spacing above 1), with 3c = 1.24e-7 in (2^-24, 3 * 2^-24).
    # 3 x 3, landmark (0.5, 0.5) -> (1, 1), kernel 3: the whole heatmap.
    # Both channels: c at (0, 0), (1, 0), (2, 0) (weight col 0); a one at
    # (0, 2) in channel 0, at (2, 2) in channel 1. weighted_col = 2 in both.
    # Channel 0, rows outer: c, c + 1 -> 1, 1 + c -> 1, 1 + c -> 1: sum = 1;
    #   x = float32(2 / 3) / 1 = 11184811 * 2^-24.
    # Channel 1: c, 2c, 3c, 3c + 1 -> 1 + 2^-23: sum = 1 + 2^-23;
    #   x = 11184811 * 2^-24 / (1 + 2^-23) = (11184811 - 1.33) * 2^-24
    #   -> 11184810 * 2^-24, one ulp lower.
    #   weighted_row = c + 2c + 2 -> 2 + 2^-22 (3c above half the spacing
    #   2^-23 = 1.19e-7); / 3 = (2^25 + 4) / 3 * 2^-24 = 11184812 * 2^-24 exactly;
    #   / (1 + 2^-23) = 11184810.67 * 2^-24 -> 11184811 * 2^-24.
    # (A sum in double, rounded once, would give 11184810 * 2^-24 for both x.)
    Z, O, S = HM_Z, HM_O, -17.0
    ch0 = [[S, Z, O], [S, Z, Z], [S, Z, Z]]
    ch1 = [[S, Z, Z], [S, Z, Z], [S, Z, O]]
    landmarks = [{"x": F32(0.5), "y": F32(0.5)}] * 2
    out = refine_landmarks_from_heatmap(landmarks, _heatmap(ch0, ch1), {"kernel_size": 3})
    assert out[0]["x"] == F32(11184811 * 2.0**-24)
    assert out[1]["x"] == F32(11184810 * 2.0**-24)
    assert out[1]["y"] == F32(11184811 * 2.0**-24)
    # channel 0: weighted_row = 0 + c + 2c = 3c, y = 3c / 3 / 1 ~= c.
    assert abs(float(out[0]["y"]) - 4.14e-8) < 1e-10


def test_refine_from_heatmap_ret_checks():
    landmarks = [{"x": 0.5, "y": 0.5}]
    heatmap = np.zeros((3, 3, 1), dtype=np.float32)
    # Rank 2 or 5: invalid shape size.
    with pytest.raises(ValueError):
        refine_landmarks_from_heatmap(landmarks, heatmap[..., 0], {})
    with pytest.raises(ValueError):
        refine_landmarks_from_heatmap(landmarks, heatmap[None, None], {})
    # BHWC with batch 2.
    with pytest.raises(ValueError):
        refine_landmarks_from_heatmap(landmarks, np.zeros((2, 3, 3, 1), np.float32), {})
    # Channels != number of landmarks (3-D and 4-D).
    with pytest.raises(ValueError):
        refine_landmarks_from_heatmap(landmarks * 2, heatmap, {})
    with pytest.raises(ValueError):
        refine_landmarks_from_heatmap(landmarks, np.zeros((1, 3, 3, 2), np.float32), {})
    # Batch 1 is fine: 9 * 0.5 = 4.5, weighted 0.5 * 3 * 3 = 4.5 -> 1.5 / 4.5.
    out = refine_landmarks_from_heatmap(landmarks, heatmap[None], {})
    assert _xyz(out[0]) == [F32(1) / F32(3), F32(1) / F32(3), 0.0]
