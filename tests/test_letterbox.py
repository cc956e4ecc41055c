"""Letterbox: MediaPipe's own input tensors, the NumPy reference, mapping back."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxanchors as ja
from jaxanchors.letterbox import (ImageToTensorOptions, letterbox, letterbox_padding,
                                  project_detections, remove_letterbox)
import mediapipe_data
from _util import reference_dicts
from reference import letterbox as ref

F32 = np.float32


def _options(case):
  o = case.meta["calculators"]["ImageToTensorCalculator"]["options"]
  rng = o["output_tensor_float_range"]
  return ImageToTensorOptions(
      output_tensor_width=o["output_tensor_width"], output_tensor_height=o["output_tensor_height"],
      keep_aspect_ratio=o.get("keep_aspect_ratio", False),
      output_tensor_float_range=(rng["min"], rng["max"]),
      border_mode=o.get("border_mode", "BORDER_UNSPECIFIED").replace("BORDER_", ""))


# -- MediaPipe's own tensors ------------------------------------------------------------

@pytest.mark.parametrize("name", mediapipe_data.CASES)
def test_letterbox_reproduces_mediapipe_input_tensor(name):
  case = mediapipe_data.load(name)
  image = mediapipe_data.photo(case)
  options = _options(case)
  tensor, transform = letterbox(image, options)
  expected = case.arrays["input_tensor"][0]
  np.testing.assert_array_equal(np.asarray(transform.padding), case.arrays["letterbox_padding"])
  np.testing.assert_allclose(np.asarray(transform.matrix), case.arrays["transform_matrix"],
                             rtol=0, atol=1e-7)
  # Bit for bit, including the photos whose sampling positions sit exactly on
  # OpenCV's rounding ties (chelsea, 451 px wide).
  np.testing.assert_array_equal(np.asarray(tensor), expected)


# -- NumPy reference ------------------------------------------------------------------

SIZES = [  # (image h, w), (tensor h, w)
    ((64, 64), (16, 16)),      # square
    ((48, 80), (16, 16)),      # landscape
    ((80, 48), (16, 16)),      # portrait
    ((13, 7), (8, 8)),         # odd sizes, upscaling
    ((30, 45), (12, 20)),      # non-square tensor
    ((9, 31), (24, 24)),       # very wide, upscaling
]


def _quantisation_bound(image: np.ndarray) -> float:
  """Grey levels by which OpenCV's 1/32-pixel rounding of positions may move a value.

  The reference samples at exact positions; we (like OpenCV) round positions to
  1/32 pixel, i.e. move them by at most 1/64 pixel per axis, changing a bilinear
  value by at most (largest neighbour difference, the zero border included) / 64
  per axis, plus one level of rounding to uint8.
  """
  img = np.pad(image.astype(np.int64), ((1, 1), (1, 1), (0, 0)))
  dx = np.abs(np.diff(img, axis=1)).max(initial=0)
  dy = np.abs(np.diff(img, axis=0)).max(initial=0)
  return (dx + dy) / 64 + 1


@pytest.mark.parametrize("image_size,tensor_size", SIZES)
@pytest.mark.parametrize("keep", [True, False])
@pytest.mark.parametrize("value_range", [(-1.0, 1.0), (0.0, 1.0)])
def test_letterbox_matches_reference(image_size, tensor_size, keep, value_range):
  rng = np.random.default_rng(sum(image_size) + sum(tensor_size))
  # A smooth image keeps the (documented) 1/32-pixel quantisation effect small.
  yy, xx = np.mgrid[:image_size[0], :image_size[1]]
  base = 127 + 60 * np.sin(xx / 3.0)[..., None] * np.cos(yy / 4.0)[..., None]
  image = np.clip(base + rng.integers(-3, 4, image_size + (3,)), 0, 255).astype(np.uint8)
  options = ImageToTensorOptions(output_tensor_height=tensor_size[0],
                                 output_tensor_width=tensor_size[1], keep_aspect_ratio=keep,
                                 output_tensor_float_range=value_range, border_mode="ZERO")
  ours, transform = letterbox(image, options)
  expected = ref.image_to_tensor(image, tensor_size[1], tensor_size[0], keep, value_range)
  level = (value_range[1] - value_range[0]) / 255
  assert ours.shape == expected.shape and ours.dtype == jnp.float32
  np.testing.assert_allclose(np.asarray(ours), expected, rtol=0,
                             atol=_quantisation_bound(image) * level + 1e-6)
  padding, _ = ref.pad_roi(image_size[1], image_size[0], tensor_size[1], tensor_size[0], keep)
  np.testing.assert_array_equal(np.asarray(transform.padding), np.array(padding, F32))


def test_zero_border_reads_as_range_minimum_and_replicate_does_not():
  image = np.full((10, 40, 3), 200, np.uint8)
  zero = ImageToTensorOptions(output_tensor_width=8, output_tensor_height=8,
                              keep_aspect_ratio=True, output_tensor_float_range=(-1, 1),
                              border_mode="ZERO")
  tensor, transform = letterbox(image, zero)
  # 10x40 into 8x8: content 2 rows tall, centred; padding = (1 - 1/4) / 2 = 0.375.
  np.testing.assert_array_equal(transform.padding, [0.0, 0.375, 0.0, 0.375])
  assert float(tensor[0, 0, 0]) == -1.0 and float(tensor[-1, 0, 0]) == -1.0
  np.testing.assert_allclose(tensor[4, 4], 200 * 2 / 255 - 1, atol=1e-6)
  replicate = ImageToTensorOptions(output_tensor_width=8, output_tensor_height=8,
                                   keep_aspect_ratio=True, output_tensor_float_range=(-1, 1))
  tensor, _ = letterbox(image, replicate)
  np.testing.assert_allclose(tensor, np.full((8, 8, 3), 200 * 2 / 255 - 1), atol=1e-6)


def test_batches_equal_single_images():
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (2, 3, 24, 40, 3)).astype(np.uint8)
  options = ImageToTensorOptions(output_tensor_width=16, output_tensor_height=16,
                                 keep_aspect_ratio=True, output_tensor_float_range=(-1, 1),
                                 border_mode="ZERO")
  tensors, transform = letterbox(images, options)
  assert tensors.shape == (2, 3, 16, 16, 3) and transform.padding.shape == (2, 3, 4)
  assert transform.matrix.shape == (2, 3, 4, 4)
  one, _ = letterbox(images[1, 2], options)
  np.testing.assert_array_equal(tensors[1, 2], one)
  vmapped, _ = jax.vmap(lambda im: letterbox(im, options))(images[0])
  np.testing.assert_array_equal(vmapped, tensors[0])


def test_linear_method_is_close_but_not_mediapipe():
  yy, xx = np.mgrid[:64, :96]
  image = np.repeat((127 + 100 * np.sin(xx / 9.0) * np.cos(yy / 7.0))[..., None], 3, -1)
  image = image.astype(np.uint8)
  options = ImageToTensorOptions(output_tensor_width=32, output_tensor_height=32,
                                 keep_aspect_ratio=True, output_tensor_float_range=(-1, 1),
                                 border_mode="ZERO")
  a, _ = letterbox(image, options)
  b, _ = letterbox(image, options, method="linear")
  # Same placement: 64x96 into 32x32 leaves 16/3 rows of border above and below.
  np.testing.assert_array_equal(np.asarray(a[:5]), np.full((5, 32, 3), -1.0, F32))
  np.testing.assert_array_equal(np.asarray(b[:5]), np.full((5, 32, 3), -1.0, F32))
  # Inside, the two samplings differ by the half-pixel shift only: a few grey levels.
  inside = jnp.abs(a[7:-7] - b[7:-7])
  assert 0 < float(inside.max()) < 20 * 2 / 255


@pytest.mark.parametrize("image_size", [(480, 640), (640, 480), (500, 500), (301, 451), (1, 999)])
@pytest.mark.parametrize("tensor_size", [(128, 128), (192, 256)])
def test_padding_matches_reference(image_size, tensor_size):
  options = ImageToTensorOptions(output_tensor_height=tensor_size[0],
                                 output_tensor_width=tensor_size[1], keep_aspect_ratio=True,
                                 output_tensor_float_range=(0, 1))
  expected, _ = ref.pad_roi(image_size[1], image_size[0], tensor_size[1], tensor_size[0], True)
  np.testing.assert_array_equal(letterbox_padding(image_size, options), np.array(expected, F32))


# -- mapping back ----------------------------------------------------------------------


def _random_detections(rng, shape, k=3):
  lo = rng.random(shape + (2,)).astype(F32) * 0.8
  boxes = np.concatenate([lo, lo + rng.random(shape + (2,)).astype(F32) * 0.2], -1)
  return ja.Detections(boxes=jnp.asarray(boxes), keypoints=jnp.asarray(rng.random(shape + (k, 2)),
                                                                      jnp.float32),
                       scores=jnp.ones(shape), classes=jnp.zeros(shape, jnp.int32),
                       valid=jnp.ones(shape, bool))


@pytest.mark.parametrize("padding", [[0.0, 0.125, 0.0, 0.125], [0.1875, 0.0, 0.1875, 0.0],
                                     [0.0, 0.0, 0.0, 0.0], [0.05, 0.1, 0.15, 0.2]])
def test_remove_letterbox_and_projection_match_reference(padding):
  rng = np.random.default_rng(7)
  det = _random_detections(rng, (5,))
  ours = remove_letterbox(det, np.array(padding, F32))
  expected = ref.remove_letterbox(reference_dicts(det), padding)
  got = reference_dicts(ours)
  for g, e in zip(got, expected):
    for key in ("xmin", "ymin", "width", "height"):
      np.testing.assert_allclose(g[key], e[key], rtol=0, atol=1e-6)
    np.testing.assert_allclose(g["keypoints"], e["keypoints"], rtol=0, atol=1e-6)
  if padding[0] == padding[2] and padding[1] == padding[3]:
    matrix = np.array(ref.letterbox_matrix(padding), F32)
    projected = project_detections(det, matrix)
    expected = ref.project_detections(reference_dicts(det), matrix)
    for g, e in zip(reference_dicts(projected), expected):
      for key in ("xmin", "ymin", "width", "height"):
        np.testing.assert_allclose(g[key], e[key], rtol=0, atol=1e-6)
      np.testing.assert_allclose(g["keypoints"], e["keypoints"], rtol=0, atol=1e-6)
    chex_close = jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6),
                              projected._replace(scores=None), ours._replace(scores=None))
    del chex_close


def test_remove_letterbox_broadcasts_one_padding_per_image():
  rng = np.random.default_rng(1)
  det = _random_detections(rng, (2, 4))
  paddings = np.array([[0, 0.25, 0, 0.25], [0.1, 0, 0.1, 0]], F32)
  both = remove_letterbox(det, paddings)
  for i in range(2):
    one = remove_letterbox(jax.tree.map(lambda x: x[i], det), paddings[i])
    np.testing.assert_array_equal(both.boxes[i], one.boxes)
    np.testing.assert_array_equal(both.keypoints[i], one.keypoints)


def test_options_validation():
  base = dict(output_tensor_width=8, output_tensor_height=8, output_tensor_float_range=(0, 1))
  for overrides, field in [(dict(output_tensor_width=0), "output_tensor_width"),
                           (dict(output_tensor_float_range=(1, 0)), "output_tensor_float_range"),
                           (dict(output_tensor_float_range=(0,)), "output_tensor_float_range"),
                           (dict(border_mode="MIRROR"), "border_mode"),
                           (dict(keep_aspect_ratio="yes"), "keep_aspect_ratio")]:
    with pytest.raises((ValueError, TypeError), match=field):
      ImageToTensorOptions(**{**base, **overrides})
  options = ImageToTensorOptions(**base)
  with pytest.raises(TypeError, match="uint8 or float"):
    letterbox(np.zeros((4, 4, 3), np.int32), options)
  with pytest.raises(ValueError, match=r"\[..., H, W, C\]"):
    letterbox(np.zeros((4, 4), np.uint8), options)
  with pytest.raises(ValueError, match="method"):
    letterbox(np.zeros((4, 4, 3), np.uint8), options, method="cubic")
