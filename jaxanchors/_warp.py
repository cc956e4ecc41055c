"""OpenCV's bilinear sampling as MediaPipe's CPU ``ImageToTensorCalculator`` runs it.

Shared by :mod:`jaxanchors.letterbox` (whole-image letterbox, positions known
when tracing) and :mod:`jaxanchors.roi` (rotated regions, positions computed
on the device). Both hand over the same description of where each tensor pixel
reads (docs/semantics.md §4.1, §7.5):

* ``row``, ``col``: the top-left tap, ``int32 [h, w]``;
* ``frac_y``, ``frac_x``: the position inside the 2x2 cell in 1/32 pixel
  (OpenCV's ``INTER_TAB_SIZE``), ``int32 [h, w]`` in ``0..31``.

Nothing here checks its inputs: the public functions do that first.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

INTER_BITS = 5
TAB = 1 << INTER_BITS  # 32 sub-pixel positions per pixel


def blend(image: jax.Array, row, col, frac_y, frac_x, *, zero_border: bool) -> jax.Array:
  """Bilinear blend of ``image [..., H, W, C]`` at the taps; ``[..., h, w, C]`` float32.

  Taps outside the image read 0 with ``zero_border`` (OpenCV's BORDER_CONSTANT)
  and the nearest edge pixel otherwise (BORDER_REPLICATE). For ``uint8``
  images the weights are OpenCV's fixed point (products of 1/32 steps, summing
  to 1024) and the sum is rounded half up back to an integer grey level, as
  OpenCV does before the value conversion; other dtypes blend in float32.
  """
  image_h, image_w = image.shape[-3], image.shape[-2]
  acc = None
  for dy in range(2):
    wy = frac_y if dy else TAB - frac_y
    r = row + dy
    for dx in range(2):
      wx = frac_x if dx else TAB - frac_x
      c = col + dx
      weight = wy * wx
      if zero_border:  # taps outside read 0
        weight = weight * ((r >= 0) & (r < image_h) & (c >= 0) & (c < image_w))
      tap = image[..., _clip(r, image_h), _clip(c, image_w), :]
      if image.dtype == jnp.uint8:
        term = tap.astype(jnp.int32) * _as(weight, jnp.int32)[..., None]
      else:
        term = tap.astype(jnp.float32) * (_as(weight, jnp.float32) / TAB**2)[..., None]
      acc = term if acc is None else acc + term
  if image.dtype == jnp.uint8:
    # Weights sum to 1024; OpenCV's 15-bit fixed point rounds half up.
    return ((acc + 512) >> 10).astype(jnp.float32)
  return acc


def to_range(pixels: jax.Array, value_range: tuple[float, float]) -> jax.Array:
  """``pixel * f32((max - min) / 255) + min`` in float32 (OpenCV's ``convertTo``)."""
  lo, hi = value_range
  return pixels * np.float32((hi - lo) / 255.0) + jnp.float32(lo)


def _clip(index, size: int):
  if isinstance(index, np.ndarray):
    return np.clip(index, 0, size - 1)
  return jnp.clip(index, 0, size - 1)


def _as(weight, dtype):
  if isinstance(weight, np.ndarray):
    return jnp.asarray(weight.astype(dtype))
  return weight.astype(dtype)
