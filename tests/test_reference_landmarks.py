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
