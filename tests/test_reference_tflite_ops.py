"""Self-check of the TFLite float-op reference (``tests/reference/tflite_ops.py``).

Small cases worked out by hand (expected numbers derived in the comments), then,
where LiteRT and the cached MediaPipe models are present, one instance of each op
type from the real models: the reference fed with LiteRT's own input tensors must
give LiteRT's output tensor.
"""

import functools
import os
from pathlib import Path

import numpy as np
import pytest


from reference import tflite_ops as ref

F32 = np.float32


def _img(rows):
  """2-D list -> [1, H, W, 1] float32."""
  return np.asarray(rows, F32)[None, :, :, None]


# --------------------------------------------------------------------------- padding


@pytest.mark.parametrize("size,k,s,d,padding,expected", [
    (4, 3, 2, 1, "SAME", (0, 2)),   # out 2, total (2-1)*2+3-4 = 1 -> 0 before, 1 after
    (5, 3, 2, 1, "SAME", (1, 3)),   # out 3, total 2*2+3-5 = 2 -> 1 before
    (5, 2, 2, 1, "SAME", (0, 3)),   # out 3, total 2*2+2-5 = 1 -> 0 before
    (6, 5, 2, 1, "SAME", (1, 3)),   # out 3, total 2*2+5-6 = 3 -> 1 before, 2 after
    (7, 3, 1, 2, "SAME", (2, 7)),   # eff 5, total 4 -> 2 before
    (98, 3, 2, 1, "VALID", (0, 48)),  # (98-3+2)//2
    (5, 3, 1, 2, "VALID", (0, 1)),  # eff 5
])
def test_padding_and_output_size(size, k, s, d, padding, expected):
  assert ref.padding_and_output_size(size, k, s, d, padding) == expected


# --------------------------------------------------------------------------- conv


X3 = [[1, 2, 3], [4, 5, 6], [7, 8, 9]]


def test_conv2d_3x3_same_plus_kernel():
  # Plus-shaped kernel: each output is the sum of the cell and its 4 neighbours
  # that are inside the image.
  plus = np.asarray([[0, 1, 0], [1, 1, 1], [0, 1, 0]], F32)[None, :, :, None]
  out = ref.conv2d(_img(X3), plus, None, padding="SAME")
  np.testing.assert_array_equal(out[0, :, :, 0], [[7, 11, 11], [17, 25, 23], [19, 29, 23]])
  # VALID with bias 1: the single centre output, 25 + 1.
  out = ref.conv2d(_img(X3), plus, np.asarray([1], F32), padding="VALID")
  np.testing.assert_array_equal(out, np.full((1, 1, 1, 1), 26, F32))


def test_conv2d_is_a_correlation_not_a_convolution():
  # w[0,0] = 1, w[2,2] = 2: VALID centre = 1*x[0,0] + 2*x[2,2] = 1 + 18 = 19
  # (a flipped kernel would give 9 + 2 = 11). SAME top-left = 2 * x[1,1] = 10.
  w = np.zeros((1, 3, 3, 1), F32)
  w[0, 0, 0, 0], w[0, 2, 2, 0] = 1, 2
  assert ref.conv2d(_img(X3), w, padding="VALID")[0, 0, 0, 0] == 19
  assert ref.conv2d(_img(X3), w, padding="SAME")[0, 0, 0, 0] == 10


@pytest.mark.parametrize("width,expected", [
    (4, [321, 43]),       # pad 0 before: x0+10x1+100x2 = 1+20+300, x2+10x3 = 3+40
    (5, [210, 432, 54]),  # pad 1 before: 10x0+100x1, x1+10x2+100x3, x3+10x4
])
def test_conv2d_same_stride2_offsets(width, expected):
  x = np.arange(1, width + 1, dtype=F32)[None, None, :, None]
  w = np.asarray([1, 10, 100], F32)[None, None, :, None]
  out = ref.conv2d(x, w, stride=(2, 2), padding="SAME")
  np.testing.assert_array_equal(out[0, 0, :, 0], expected)


def test_conv2d_dilation_and_channels():
  # Dilation 2, kernel [1, 10] along W, VALID: out_i = x_i + 10 x_{i+2}.
  x = np.arange(5, dtype=F32)[None, None, :, None]
  w = np.asarray([1, 10], F32)[None, None, :, None]
  out = ref.conv2d(x, w, dilation=(1, 2), padding="VALID")
  np.testing.assert_array_equal(out[0, 0, :, 0], [20, 31, 42])
  # 1x1 conv = matrix product over channels: w[co, 0, 0, ci].
  x = np.asarray([1, 10], F32).reshape(1, 1, 1, 2)
  w = np.asarray([[1, 2], [3, 4], [-5, 0]], F32).reshape(3, 1, 1, 2)
  out = ref.conv2d(x, w, np.asarray([0, 0, 0.5], F32), padding="VALID")
  np.testing.assert_array_equal(out.ravel(), [21, 43, -4.5])


@pytest.mark.parametrize("activation,expected", [
    (None, [-4.5, 0.5, 8]), ("NONE", [-4.5, 0.5, 8]), ("RELU", [0, 0.5, 8]),
    ("RELU6", [0, 0.5, 6]), ("RELU_N1_TO_1", [-1, 0.5, 1])])
def test_fused_activations(activation, expected):
  x = np.ones((1, 1, 1, 1), F32)
  w = np.ones((3, 1, 1, 1), F32)
  out = ref.conv2d(x, w, np.asarray([-5.5, -0.5, 7], F32), activation=activation)
  np.testing.assert_array_equal(out.ravel(), expected)


def test_conv2d_accumulates_in_float64():
  # 1e8 + 1 - 1e8 over three taps: float32 running sums give 0, exact sum is 1.
  x = np.asarray([1e8, 1, -1e8], F32)[None, None, :, None]
  w = np.ones((1, 1, 3, 1), F32)
  assert ref.conv2d(x, w, padding="VALID")[0, 0, 0, 0] == 1


# --------------------------------------------------------------------------- depthwise


def test_depthwise_channel_order_with_multiplier():
  # Ci = 2, M = 2: output channel ic * M + m reads input channel ic.
  x = np.asarray([10, 100], F32).reshape(1, 1, 1, 2)
  w = np.asarray([1, 2, 3, 4], F32).reshape(1, 1, 1, 4)
  out = ref.depthwise_conv2d(x, w, np.asarray([0, 0, 0, 1], F32), depth_multiplier=2)
  np.testing.assert_array_equal(out.ravel(), [10, 20, 300, 401])


def test_depthwise_3x3_same_stride2_even_and_odd():
  # Per channel: channel 0 sums its 3x3 window (ones kernel), channel 1 takes the
  # window's centre times 2. 4x4 input x[i, j] = 4i + j: 0 padding before, 1 after.
  # (0,0): rows/cols 0..2, sum 3*4*(0+1+2) + 3*(0+1+2) = 45, centre x[1,1] = 5;
  # (0,1): rows 0..2, cols 2..3: 2*4*3 + 3*(2+3) = 39, centre x[1,3] = 7;
  # (1,0): rows 2..3, cols 0..2: 3*4*(2+3) + 2*3 = 66, centre x[3,1] = 13;
  # (1,1): rows/cols 2..3: 10+11+14+15 = 50, centre x[3,3] = 15.
  x4 = np.arange(16, dtype=F32).reshape(1, 4, 4, 1)
  x = np.concatenate([x4, x4], axis=-1)
  w = np.zeros((1, 3, 3, 2), F32)
  w[0, :, :, 0] = 1
  w[0, 1, 1, 1] = 2
  out = ref.depthwise_conv2d(x, w, stride=(2, 2), padding="SAME")
  assert out.shape == (1, 2, 2, 2)
  np.testing.assert_array_equal(out[0, :, :, 0], [[45, 39], [66, 50]])
  np.testing.assert_array_equal(out[0, :, :, 1], [[10, 14], [26, 30]])
  # 5x5 input: 1 padding cell before, output (0,0) window rows/cols -1..1:
  # x[i, j] = 5i + j, sum over i, j in {0, 1} = 0 + 1 + 5 + 6 = 12.
  x5 = np.arange(25, dtype=F32).reshape(1, 5, 5, 1)
  out = ref.depthwise_conv2d(x5, np.ones((1, 3, 3, 1), F32), stride=(2, 2), padding="SAME")
  assert out.shape == (1, 3, 3, 1)
  assert out[0, 0, 0, 0] == 12
  assert out[0, 1, 1, 0] == 9 * 12  # centred on x[2,2] = 12
  assert out[0, 2, 2, 0] == 18 + 19 + 23 + 24


# --------------------------------------------------------------------------- pooling


NEG = -np.arange(1, 10, dtype=F32).reshape(3, 3)  # all negative: padding must not win


def test_max_pool_same_ignores_padding():
  # 3x3, filter 2, stride 2, SAME: out 2x2, total padding 1 -> after only.
  out = ref.max_pool2d(_img(NEG), filter=(2, 2), stride=(2, 2), padding="SAME")
  np.testing.assert_array_equal(out[0, :, :, 0], [[-1, -3], [-7, -9]])
  out = ref.max_pool2d(_img(NEG), filter=(2, 2), stride=(2, 2), padding="VALID")
  np.testing.assert_array_equal(out[0, :, :, 0], [[-1]])
  out = ref.max_pool2d(_img(-NEG), filter=(2, 2), stride=(2, 2), padding="SAME",
                       activation="RELU6")
  np.testing.assert_array_equal(out[0, :, :, 0], [[5, 6], [6, 6]])


def test_avg_pool_counts_only_inside_cells():
  # (1+2+4+5)/4 = 3, (3+6)/2 = 4.5, (7+8)/2 = 7.5, 9/1.
  out = ref.avg_pool2d(_img(NEG), filter=(2, 2), stride=(2, 2), padding="SAME")
  np.testing.assert_array_equal(out[0, :, :, 0], [[-3, -4.5], [-7.5, -9]])
  # 3x3 window, stride 1, SAME on 3x3: corner (0,0) averages 1,2,4,5 -> 3;
  # centre averages all nine -> 5; edge (0,1) averages 1,2,3,4,5,6 -> 3.5.
  out = ref.avg_pool2d(_img(-NEG), filter=(3, 3), stride=(1, 1), padding="SAME")
  assert (out[0, 0, 0, 0], out[0, 1, 1, 0], out[0, 0, 1, 0]) == (3, 5, 3.5)


# --------------------------------------------------------------------------- resize


@pytest.mark.parametrize("align_corners,half_pixel,expected", [
    # scale 1/2, source x = (o + .5)/2 - .5 = -.25, .25, .75, 1.25:
    # -.25 -> lo = hi = 0 -> 0; .25 -> 0*.75 + 4*.25 = 1; .75 -> 3; 1.25 -> lo = hi = 1 -> 4.
    (False, True, [0, 1, 3, 4]),
    # legacy: source x = o/2 = 0, .5, 1, 1.5 -> 0, 2, 4, 4 (hi clamped).
    (False, False, [0, 2, 4, 4]),
    # align corners: scale (2-1)/(4-1), source x = 0, 1/3, 2/3, 1.
    (True, False, [0, 4 / 3, 8 / 3, 4]),
])
def test_resize_bilinear_1d_by_hand(align_corners, half_pixel, expected):
  x = np.asarray([0, 4], F32)[None, None, :, None]
  out = ref.resize_bilinear(x, (1, 4), align_corners=align_corners,
                            half_pixel_centers=half_pixel)
  np.testing.assert_allclose(out[0, 0, :, 0], np.asarray(expected, F32), rtol=0, atol=1e-6)
  # Same along H.
  out = ref.resize_bilinear(np.swapaxes(x, 1, 2), (4, 1), align_corners=align_corners,
                            half_pixel_centers=half_pixel)
  np.testing.assert_allclose(out[0, :, 0, 0], np.asarray(expected, F32), rtol=0, atol=1e-6)


def test_resize_bilinear_2d_half_pixel():
  # 2x2 [[0, 4], [8, 12]] -> 4x4: separable, rows weights as in the 1-D case:
  # output (1, 2): y = .25 -> rows 0,1 with .75/.25; x = .75 -> cols 0,1 with .25/.75:
  # .75*(.25*0 + .75*4) + .25*(.25*8 + .75*12) = 2.25 + 2.75 = 5.
  x = _img([[0, 4], [8, 12]])
  out = ref.resize_bilinear(x, (4, 4))
  assert out[0, 1, 2, 0] == 5
  np.testing.assert_array_equal(out[0, 0, :, 0], [0, 1, 3, 4])
  np.testing.assert_array_equal(out[0, :, 0, 0], [0, 2, 6, 8])
  # Downscale 4 -> 2, scale 2: source x = .5, 2.5 -> means of neighbours.
  out = ref.resize_bilinear(np.asarray([0, 1, 2, 3], F32)[None, None, :, None], (1, 2))
  np.testing.assert_array_equal(out.ravel(), [0.5, 2.5])


# --------------------------------------------------------------------------- depth to space


def test_depth_to_space_tflite_order():
  x = np.arange(8, dtype=F32).reshape(1, 1, 1, 8)
  out = ref.depth_to_space(x, 2)  # out depth 2: pixel (h, w) takes [(2h + w) * 2, +1]
  assert out.shape == (1, 2, 2, 2)
  np.testing.assert_array_equal(out[0], [[[0, 1], [2, 3]], [[4, 5], [6, 7]]])
  # x[i, j, c] = (2i + j) * 4 + c, out depth 1: out[h, w] = x[h//2, w//2, 2(h%2) + w%2].
  x = np.arange(16, dtype=F32).reshape(1, 2, 2, 4)
  out = ref.depth_to_space(x, 2)
  np.testing.assert_array_equal(out[0, :, :, 0], [[0, 1, 4, 5], [2, 3, 6, 7],
                                                  [8, 9, 12, 13], [10, 11, 14, 15]])
  with pytest.raises(ValueError):
    ref.depth_to_space(np.zeros((1, 1, 1, 6), F32), 2)


# --------------------------------------------------------------------------- element-wise


def test_prelu_broadcast():
  x = np.asarray([[-2, 3], [-1, -4]], F32).reshape(1, 2, 2)
  out = ref.prelu(x, np.asarray([0.5, 0.25], F32))
  np.testing.assert_array_equal(out[0], [[-1, 3], [-0.5, -1]])
  np.testing.assert_array_equal(ref.prelu(np.asarray([0, -0.0, -8], F32), F32(0.5)), [0, 0, -4])


def test_pad():
  out = ref.pad(np.asarray([[1, 2]], F32), [[1, 0], [0, 2]])
  np.testing.assert_array_equal(out, [[0, 0, 0, 0], [1, 2, 0, 0]])
  out = ref.pad(np.ones((1, 1, 1, 2), F32), [[0, 0], [1, 1], [0, 0], [0, 1]], value=7)
  assert out.shape == (1, 3, 1, 3)
  np.testing.assert_array_equal(out[0, :, 0, :], [[7, 7, 7], [1, 1, 7], [7, 7, 7]])


def test_add_concat_reshape():
  a = np.asarray([[-3, 0.25], [0.5, 2]], F32)
  out = ref.add(a, np.asarray([1, -0.5], F32), "RELU_N1_TO_1")
  np.testing.assert_array_equal(out, [[-1, -0.25], [1, 1]])
  np.testing.assert_array_equal(ref.add(a, a, "RELU"), [[0, 0.5], [1, 4]])
  out = ref.concatenation([a, np.full((2, 1), -7, F32)], -1, "RELU")
  np.testing.assert_array_equal(out, [[0, 0.25, 0], [0.5, 2, 0]])
  np.testing.assert_array_equal(ref.concatenation([a, a], 0), np.vstack([a, a]))
  np.testing.assert_array_equal(ref.reshape(np.arange(6), [1, -1, 2]),
                                [[[0, 1], [2, 3], [4, 5]]])


# --------------------------------------------------------------------------- fully connected


def test_fully_connected_weights_are_units_by_depth():
  # w[u, i]: unit 0 = x0 - x2, unit 1 = (x0 + x1 + x2) / 2; bias [1, -1].
  # Row [1, 2, 3]: 1 - 3 + 1 = -1, 3 - 1 = 2; row [4, 5, 6]: 4 - 6 + 1 = -1, 7.5 - 1 = 6.5.
  x = np.asarray([[1, 2, 3], [4, 5, 6]], F32)
  w = np.asarray([[1, 0, -1], [0.5, 0.5, 0.5]], F32)
  b = np.asarray([1, -1], F32)
  np.testing.assert_array_equal(ref.fully_connected(x, w, b), [[-1, 2], [-1, 6.5]])
  np.testing.assert_array_equal(ref.fully_connected(x, w, b, activation="RELU"), [[0, 2], [0, 6.5]])
  np.testing.assert_array_equal(ref.fully_connected(x, w, b, activation="RELU6"), [[0, 2], [0, 6]])
  np.testing.assert_array_equal(ref.fully_connected(x, w, b, activation="RELU_N1_TO_1"),
                                [[-1, 1], [-1, 1]])
  # No bias: 1 - 3 = -2, 3; 4 - 6 = -2, 7.5.
  np.testing.assert_array_equal(ref.fully_connected(x, w), [[-2, 3], [-2, 7.5]])
  # One unit [1, 10, 100] reads the digits of x backwards: [1, 2, 3] -> 1 + 20 + 300 = 321.
  out = ref.fully_connected(np.asarray([1, 2, 3], F32), np.asarray([[1, 10, 100]], F32))
  np.testing.assert_array_equal(out, [[321]])


def test_fully_connected_flattens_the_input():
  # x = 0..11 as [1, 2, 6], input_depth 3: rows [0,1,2] .. [9,10,11], unit
  # [1, 10, 100]: 0 + 10 + 200 = 210, 3 + 40 + 500 = 543, 876, 1209 (steps of 333).
  x = np.arange(12, dtype=F32).reshape(1, 2, 6)
  w = np.asarray([[1, 10, 100]], F32)
  out = ref.fully_connected(x, w)
  assert out.shape == (4, 1)
  np.testing.assert_array_equal(out.ravel(), [210, 543, 876, 1209])
  # keep_num_dims keeps the leading dims: [1, 2, 2, 3] -> [1, 2, 2, 1], same rows.
  out = ref.fully_connected(x.reshape(1, 2, 2, 3), w, keep_num_dims=True)
  assert out.shape == (1, 2, 2, 1)
  np.testing.assert_array_equal(out.ravel(), [210, 543, 876, 1209])
  # ... which needs the last dim to be input_depth (TFLite fails to prepare otherwise).
  with pytest.raises(ValueError):
    ref.fully_connected(x, w, keep_num_dims=True)
  # 7 elements do not split into rows of 3.
  with pytest.raises(ValueError):
    ref.fully_connected(np.zeros(7, F32), w)


def test_fully_connected_accumulates_in_float64():
  # 1e8 + 1 - 1e8: a float32 running sum gives 0, the exact sum is 1.
  out = ref.fully_connected(np.asarray([[1e8, 1, -1e8]], F32), np.ones((1, 3), F32))
  assert out[0, 0] == 1


# --------------------------------------------------------------------------- logistic


def test_logistic():
  # 1 / (1 + e^0) = 1/2; x = +-ln 3: 1 / (1 + 1/3) = 3/4, 1 / (1 + 3) = 1/4;
  # x = -20: e^-20 / (1 + e^-20) = 2.0611536e-9 (e^-20 = 2.0611536224e-9, the
  # 1 + e^-20 changes it by a factor 1 - 2e-9); x = +-1000: 1 and 0, no overflow.
  x = np.asarray([[0, np.log(3), -np.log(3)], [-20, 1000, -1000]], F32)
  out = ref.logistic(x)
  assert out.dtype == F32 and out.shape == (2, 3)
  np.testing.assert_allclose(out, np.asarray([[0.5, 0.75, 0.25], [2.0611536e-9, 1, 0]], F32),
                             rtol=1e-7, atol=0)
  assert out[0, 0] == 0.5 and out[1, 1] == 1 and out[1, 2] == 0


# --------------------------------------------------------------------------- mean


def test_mean_axes():
  # x[i, j, k] = 12i + 4j + k on [2, 3, 4].
  x = np.arange(24, dtype=F32).reshape(2, 3, 4)
  # Over j (mean of 4j for j < 3 is 4): 12i + 4 + k.
  out = ref.mean(x, [1], False)
  np.testing.assert_array_equal(out, [[4, 5, 6, 7], [16, 17, 18, 19]])
  # Over k (mean 1.5), negative axis: 12i + 4j + 1.5.
  np.testing.assert_array_equal(ref.mean(x, [-1], False),
                                [[1.5, 5.5, 9.5], [13.5, 17.5, 21.5]])
  # Over i and k (means 6 and 1.5), kept as size 1: 4j + 7.5; repeats count once.
  for axes in ([0, 2], [2, -1, 0]):
    out = ref.mean(x, axes, True)
    assert out.shape == (1, 3, 1)
    np.testing.assert_array_equal(out.ravel(), [7.5, 11.5, 15.5])
  # Every axis: mean of 0..23 = 11.5, rank 0 (or [1, 1, 1] kept).
  assert ref.mean(x, [0, 1, 2], False).shape == ()
  assert ref.mean(x, [0, 1, 2], False) == 11.5
  np.testing.assert_array_equal(ref.mean(x, [2, 0, 1], True), np.full((1, 1, 1), 11.5))
  # No axis: the input itself.
  np.testing.assert_array_equal(ref.mean(x, [], False), x)
  with pytest.raises(ValueError):
    ref.mean(x, [3], False)


def test_mean_global_average_pool():
  # NHWC [1, 2, 2, 2] over (H, W) as in the landmark models: channel 0 holds
  # 1, 2, 3, 4 (mean 2.5), channel 1 holds -8, 0, 0, 0 (mean -2).
  x = np.asarray([[[1, -8], [2, 0]], [[3, 0], [4, 0]]], F32)[None]
  np.testing.assert_array_equal(ref.mean(x, [1, 2], False), [[2.5, -2]])
  assert ref.mean(x, [1, 2], True).shape == (1, 1, 1, 2)


def test_mean_accumulates_in_float64():
  # (1e8 + 1 - 1e8 + 0) / 4 = 0.25; float32 running sums lose the 1 and give 0.
  assert ref.mean(np.asarray([1e8, 1, -1e8, 0], F32), [0], False) == 0.25
  # A zero-size reduced axis: 0 / 0 = NaN.
  assert np.isnan(ref.mean(np.zeros((2, 0), F32), [1], False)).all()


# --------------------------------------------------------------------------- densify


def _dense(n):
  return {"format": "DENSE", "dense_size": n}


def _csr(segments, indices):
  return {"format": "SPARSE_CSR", "array_segments": segments, "array_indices": indices}


def test_densify_csr_row_and_column_major():
  dense = np.asarray([[0, 1, 0], [2, 0, 3]], F32)
  out = ref.densify([1, 2, 3], (2, 3), [0, 1], None, [_dense(2), _csr([0, 1, 3], [1, 0, 2])])
  np.testing.assert_array_equal(out, dense)
  # Traversal (d1, d0): columns first, CSR over rows of each column.
  out = ref.densify([2, 1, 3], (2, 3), [1, 0], None, [_dense(3), _csr([0, 1, 2, 3], [1, 0, 1])])
  np.testing.assert_array_equal(out, dense)


def test_densify_two_sparse_levels():
  # 2x2x2 with only [0,1,1] = 5 and [1,0,0] = 6: level 1 sparse under a dense
  # level 0, level 2 sparse under the kept level-1 entries (positions 0 and 1).
  out = ref.densify([5, 6], (2, 2, 2), [0, 1, 2], None,
                    [_dense(2), _csr([0, 1, 2], [1, 0]), _csr([0, 1, 2], [1, 0])])
  expected = np.zeros((2, 2, 2), F32)
  expected[0, 1, 1], expected[1, 0, 0] = 5, 6
  np.testing.assert_array_equal(out, expected)


def test_densify_block_sparse():
  # 4x4 with 2x2 blocks (block_map [0, 1]): block row 0 keeps block col 0, block
  # row 1 keeps block col 1. Values of a block follow the inner traversal.
  expected = np.zeros((4, 4), F32)
  expected[:2, :2] = [[1, 2], [3, 4]]
  expected[2:, 2:] = [[5, 6], [7, 8]]
  md = [_dense(2), _csr([0, 1, 2], [0, 1]), _dense(2), _dense(2)]
  out = ref.densify(np.arange(1, 9, dtype=F32), (4, 4), [0, 1, 2, 3], [0, 1], md)
  np.testing.assert_array_equal(out, expected)
  # Column-major inside each block.
  out = ref.densify(np.asarray([1, 3, 2, 4, 5, 7, 6, 8], F32), (4, 4), [0, 1, 3, 2], [0, 1], md)
  np.testing.assert_array_equal(out, expected)
  # 1-D blocks of 4 along d1 of a 2x8 tensor; only block (0, 1) is stored.
  out = ref.densify([1, 2, 3, 4], (2, 8), [0, 1, 2], [1],
                    [_dense(2), _csr([0, 1, 1], [1]), _dense(4)])
  expected = np.zeros((2, 8), F32)
  expected[0, 4:] = [1, 2, 3, 4]
  np.testing.assert_array_equal(out, expected)


def test_densify_rejects_inconsistent_metadata():
  with pytest.raises(ValueError):
    ref.densify([1, 2], (2, 3), [0, 1], None, [_dense(2), _csr([0, 1, 3], [1, 0, 2])])
  with pytest.raises(ValueError):
    ref.densify([1], (2, 3), [0, 0], None, [_dense(2), _dense(3)])


# --------------------------------------------------------------------------- LiteRT

MODELS = Path(os.path.expanduser("~/.cache/jaxanchors/mediapipe-0.10.21"))
TOL = 2e-6  # of the output's max |value|

_PADDING = {0: "SAME", 1: "VALID"}
_ACT = {0: None, 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6"}


def _litert():
  interpreter = pytest.importorskip("ai_edge_litert.interpreter",
                                    reason="LiteRT (ai-edge-litert) is not installed")
  tflite = pytest.importorskip("tflite", reason="the tflite flatbuffer package is not installed")
  return interpreter, tflite


@functools.lru_cache(maxsize=None)
def _run(model):
  """(tflite subgraph, op-name list, interpreter after one invoke on a seeded input)."""
  interpreter, tflite = _litert()
  path = MODELS / f"{model}.tflite"
  if not path.is_file():
    pytest.skip(f"{path} is absent (fetched by jaxanchors on first use)")
  m = tflite.Model.GetRootAsModel(path.read_bytes(), 0)
  names = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
  sg = m.Subgraphs(0)
  ops = []
  for i in range(sg.OperatorsLength()):
    code = m.OperatorCodes(sg.Operators(i).OpcodeIndex())
    ops.append(names[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())])
  # Without the default (XNNPACK) delegate, so every op runs as a TFLite kernel
  # and every intermediate tensor, dequantized weights included, is kept.
  it = interpreter.Interpreter(
      model_path=str(path), experimental_preserve_all_tensors=True,
      experimental_op_resolver_type=interpreter.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
  it.allocate_tensors()
  inp = it.get_input_details()[0]
  x = np.random.default_rng(0).uniform(-1, 1, inp["shape"]).astype(F32)
  it.set_tensor(inp["index"], x)
  it.invoke()
  return tflite, m, sg, ops, it


def _options(tflite, op, cls):
  o = getattr(tflite, cls)()
  t = op.BuiltinOptions()
  o.Init(t.Bytes, t.Pos)
  return o


def _sparse_vector(tflite, kind, table):
  cls = {1: "Int32Vector", 2: "Uint16Vector", 3: "Uint8Vector"}[kind]
  v = getattr(tflite, cls)()
  v.Init(table.Bytes, table.Pos)
  return v.ValuesAsNumpy()


def _find(ops, sg, it, name, pred):
  for i, n in enumerate(ops):
    if n == name and pred(sg.Operators(i)):
      return i
  raise LookupError(f"no {name} op matches")


def _shape(it, sg, op, k):
  return it.get_tensor(int(op.InputsAsNumpy()[k])).shape


def _fused(op):
  import tflite
  return _options(tflite, op, "AddOptions").FusedActivationFunction()


# (model, op type, predicate on (it, sg, op) picking the instance)
CASES = {
    "conv 1x1": ("face_detection_short_range", "CONV_2D",
                 lambda it, sg, op: _shape(it, sg, op, 1)[1:3] == (1, 1)),
    "conv 5x5 s2 SAME": ("face_detection_short_range", "CONV_2D",
                         lambda it, sg, op: _shape(it, sg, op, 1)[1:3] == (5, 5)),
    "conv 3x3 s2 VALID relu6": ("pose_detection", "CONV_2D",
                                lambda it, sg, op: _shape(it, sg, op, 1)[1:3] == (3, 3)),
    "depthwise 3x3 s1": ("face_detection_short_range", "DEPTHWISE_CONV_2D",
                         lambda it, sg, op: _shape(it, sg, op, 0)[1] == 32
                         and _shape(it, sg, op, 1)[1] == 3),
    "depthwise 3x3 s2": ("face_detection_short_range", "DEPTHWISE_CONV_2D",
                         lambda it, sg, op: _shape(it, sg, op, 0)[1:] == (32, 32, 42)),
    "depthwise 5x5 s1": ("palm_detection_full", "DEPTHWISE_CONV_2D",
                         lambda it, sg, op: _shape(it, sg, op, 0)[1:] == (12, 12, 256)),
    "depthwise 5x5 s2 SAME": ("palm_detection_full", "DEPTHWISE_CONV_2D",
                              lambda it, sg, op: _shape(it, sg, op, 0)[1:] == (24, 24, 128)
                              and _shape(it, sg, op, 1)[1] == 5
                              and it.get_tensor(int(op.OutputsAsNumpy()[0])).shape[1] == 12),
    "depthwise 5x5 s2 VALID relu6": ("pose_detection", "DEPTHWISE_CONV_2D",
                                     lambda it, sg, op: _shape(it, sg, op, 0)[1] == 60),
    "max pool": ("face_detection_short_range", "MAX_POOL_2D", lambda it, sg, op: True),
    "resize bilinear": ("face_detection_full_range_sparse", "RESIZE_BILINEAR",
                        lambda it, sg, op: True),
    "depth to space": ("face_detection_full_range_sparse", "DEPTH_TO_SPACE",
                       lambda it, sg, op: True),
    "prelu": ("palm_detection_full", "PRELU", lambda it, sg, op: _shape(it, sg, op, 0)[1] == 24),
    "pad": ("face_detection_full_range_sparse", "PAD",
            lambda it, sg, op: _shape(it, sg, op, 0)[1] == 48),
    "add": ("face_detection_short_range", "ADD", lambda it, sg, op: True),
    "add relu": ("face_detection_full_range_sparse", "ADD",
                 lambda it, sg, op: _fused(op) == 1 and _shape(it, sg, op, 0)[1] == 12),
    "add relu6": ("pose_detection", "ADD", lambda it, sg, op: _fused(op) == 3),
    "concatenation": ("face_detection_short_range", "CONCATENATION", lambda it, sg, op: True),
    "reshape": ("face_detection_short_range", "RESHAPE", lambda it, sg, op: True),
    "densify face": ("face_detection_full_range_sparse", "DENSIFY", lambda it, sg, op: True),
    "densify pose": ("pose_detection", "DENSIFY", lambda it, sg, op: True),
    # hand_landmark_full: MEAN over (H, W) of [1, 7, 7, 1152] (global average
    # pool), then FULLY_CONNECTED heads on [1, 1152] with weights [units, 1152].
    "mean": ("hand_landmark_full", "MEAN", lambda it, sg, op: True),
    "fully connected": ("hand_landmark_full", "FULLY_CONNECTED",
                        lambda it, sg, op: _shape(it, sg, op, 1)[0] == 63),
    "fully connected 1 unit": ("hand_landmark_full", "FULLY_CONNECTED",
                               lambda it, sg, op: _shape(it, sg, op, 1)[0] == 1),
    "logistic": ("hand_landmark_full", "LOGISTIC", lambda it, sg, op: True),
    "logistic pose": ("pose_landmark_full", "LOGISTIC", lambda it, sg, op: True),
}


def _reference(tflite, sg, op, name, it):
  """Runs the reference on LiteRT's input tensors of ``op``."""
  ins = [int(t) for t in op.InputsAsNumpy()]
  get = lambda k: it.get_tensor(ins[k]) if ins[k] >= 0 else None  # noqa: E731
  if name == "CONV_2D":
    o = _options(tflite, op, "Conv2DOptions")
    return ref.conv2d(get(0), get(1), get(2), stride=(o.StrideH(), o.StrideW()),
                      dilation=(o.DilationHFactor(), o.DilationWFactor()),
                      padding=_PADDING[o.Padding()], activation=_ACT[o.FusedActivationFunction()])
  if name == "DEPTHWISE_CONV_2D":
    o = _options(tflite, op, "DepthwiseConv2DOptions")
    return ref.depthwise_conv2d(
        get(0), get(1), get(2), stride=(o.StrideH(), o.StrideW()),
        dilation=(o.DilationHFactor(), o.DilationWFactor()), padding=_PADDING[o.Padding()],
        depth_multiplier=o.DepthMultiplier(), activation=_ACT[o.FusedActivationFunction()])
  if name == "MAX_POOL_2D":
    o = _options(tflite, op, "Pool2DOptions")
    return ref.max_pool2d(get(0), filter=(o.FilterHeight(), o.FilterWidth()),
                          stride=(o.StrideH(), o.StrideW()), padding=_PADDING[o.Padding()],
                          activation=_ACT[o.FusedActivationFunction()])
  if name == "RESIZE_BILINEAR":
    o = _options(tflite, op, "ResizeBilinearOptions")
    return ref.resize_bilinear(get(0), get(1), align_corners=o.AlignCorners(),
                               half_pixel_centers=o.HalfPixelCenters())
  if name == "DEPTH_TO_SPACE":
    return ref.depth_to_space(get(0), _options(tflite, op, "DepthToSpaceOptions").BlockSize())
  if name == "PRELU":
    return ref.prelu(get(0), get(1))
  if name == "PAD":
    return ref.pad(get(0), get(1))
  if name == "ADD":
    o = _options(tflite, op, "AddOptions")
    return ref.add(get(0), get(1), _ACT[o.FusedActivationFunction()])
  if name == "CONCATENATION":
    o = _options(tflite, op, "ConcatenationOptions")
    return ref.concatenation([get(k) for k in range(len(ins))], o.Axis(),
                             _ACT[o.FusedActivationFunction()])
  if name == "RESHAPE":
    out_shape = it.get_tensor(int(op.OutputsAsNumpy()[0])).shape
    return ref.reshape(get(0), out_shape)
  if name == "FULLY_CONNECTED":
    o = _options(tflite, op, "FullyConnectedOptions")
    assert o.WeightsFormat() == tflite.FullyConnectedOptionsWeightsFormat.DEFAULT
    return ref.fully_connected(get(0), get(1), get(2) if len(ins) > 2 else None,
                               keep_num_dims=o.KeepNumDims(),
                               activation=_ACT[o.FusedActivationFunction()])
  if name == "LOGISTIC":
    return ref.logistic(get(0))
  if name == "MEAN":
    return ref.mean(get(0), get(1), _options(tflite, op, "ReducerOptions").KeepDims())
  if name == "DENSIFY":
    t = sg.Tensors(ins[0])
    sp = t.Sparsity()
    md = []
    for i in range(sp.DimMetadataLength()):
      d = sp.DimMetadata(i)
      if d.Format() == tflite.DimensionType.DENSE:
        md.append({"format": "DENSE", "dense_size": d.DenseSize()})
      else:
        md.append({"format": "SPARSE_CSR",
                   "array_segments": _sparse_vector(tflite, d.ArraySegmentsType(),
                                                    d.ArraySegments()),
                   "array_indices": _sparse_vector(tflite, d.ArrayIndicesType(),
                                                   d.ArrayIndices())})
    values = it.get_tensor(ins[0])
    block_map = sp.BlockMapAsNumpy() if sp.BlockMapLength() else None
    return ref.densify(values, t.ShapeAsNumpy(), sp.TraversalOrderAsNumpy(), block_map, md)
  raise AssertionError(name)


@pytest.mark.parametrize("case", sorted(CASES))
def test_reference_matches_litert(case):
  model, name, pred = CASES[case]
  tflite, _, sg, ops, it = _run(model)
  index = _find(ops, sg, it, name, lambda op: pred(it, sg, op))
  op = sg.Operators(index)
  expected = it.get_tensor(int(op.OutputsAsNumpy()[0]))
  got = _reference(tflite, sg, op, name, it)
  assert got.shape == expected.shape and got.dtype == expected.dtype
  scale = float(np.abs(expected.astype(np.float64)).max())
  err = float(np.abs(got.astype(np.float64) - expected).max())
  assert scale > 0, "a test op with an all-zero output checks nothing"
  assert err <= TOL * scale, f"{case}: op {index}, max error {err:.3g} (scale {scale:.3g})"
