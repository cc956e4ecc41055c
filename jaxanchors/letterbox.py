"""Letterbox preprocessing and mapping detections back to the image.

MediaPipe's ``ImageToTensorCalculator`` (CPU, docs/semantics.md §4.1),
``DetectionLetterboxRemovalCalculator`` (§4.3) and
``DetectionProjectionCalculator`` (§4.2), for a whole-image region of interest
without rotation.

Contract:

* Images are ``[..., H, W, C]``, ``uint8`` or float with values in 0..255, one
  size for the whole batch (shapes are static). The model tensor is
  ``[..., h, w, C]`` float32 in ``output_tensor_float_range``.
* With ``keep_aspect_ratio`` the image is scaled to fit and centred; the
  border is filled in pixel space *before* normalisation, so zero padding reads
  as the range minimum (-1 for [-1, 1]).
* The transform back is returned as data: ``padding [..., 4]`` =
  ``[left, top, right, bottom]`` as fractions of the tensor (MediaPipe's
  ``LETTERBOX_PADDING``) and ``matrix [..., 4, 4]`` mapping tensor-normalised
  to image-normalised coordinates (MediaPipe's ``MATRIX`` output).
* ``method="mediapipe"`` reproduces OpenCV's ``warpPerspective`` as MediaPipe
  calls it, bit for bit: the perspective matrix solved and inverted as OpenCV
  does (its round-off decides ties), pixel indices as coordinates (no
  half-pixel centring), source positions rounded to 1/32 pixel, bilinear
  weights in 1/1024 steps, and for ``uint8`` images the result rounded back to
  ``uint8`` before normalisation, then ``pixel * scale + min`` in float32.
  Sampling positions are computed in float64 with NumPy when tracing (image and
  tensor sizes are static), so only the gather runs on the device. On the 15
  recorded MediaPipe runs in ``tests/data/mediapipe`` the tensor is identical.
  ``method="linear"`` is a plain centre-aligned bilinear resize
  (``jax.image.scale_and_translate``), smoother but not MediaPipe's values.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxanchors import _geometry
from jaxanchors import _validate as v
from jaxanchors import _warp
from jaxanchors.detections import Detections

__all__ = [
    "BorderMode",
    "DetectionMapping",
    "ImageToTensorOptions",
    "LetterboxTransform",
    "letterbox",
    "letterbox_padding",
    "project_detections",
    "remove_letterbox",
]

_F32 = np.float32
_INTER_BITS = _warp.INTER_BITS
_TAB = _warp.TAB  # OpenCV's INTER_TAB_SIZE: 32 sub-pixel positions


class BorderMode(enum.Enum):
  """``ImageToTensorCalculatorOptions.BorderMode``; UNSPECIFIED behaves as REPLICATE."""

  UNSPECIFIED = 0
  ZERO = 1
  REPLICATE = 2


@v.hash_once
@dataclasses.dataclass(frozen=True, kw_only=True)
class ImageToTensorOptions(v.OptionsMixin):
  """Options of MediaPipe's ``ImageToTensorCalculator`` used by the SSD graphs (§4.1).

  Attributes:
    output_tensor_width, output_tensor_height: model input size in pixels.
    keep_aspect_ratio: letterbox (True) or stretch (False, the proto default).
    output_tensor_float_range: ``(min, max)`` of the float tensor; pixel 0 maps
      to min and 255 to max.
    border_mode: what fills the letterbox border; UNSPECIFIED is REPLICATE as
      in MediaPipe, the BlazeFace-family graphs set ZERO.
  """

  output_tensor_width: int
  output_tensor_height: int
  keep_aspect_ratio: bool = False
  output_tensor_float_range: tuple[float, float]
  border_mode: BorderMode = BorderMode.UNSPECIFIED

  def __post_init__(self) -> None:
    w = lambda name: f"ImageToTensorOptions.{name}"  # noqa: E731
    for name in ("output_tensor_width", "output_tensor_height"):
      v.set_field(self, name, v.as_int(w(name), getattr(self, name), minimum=1))
    v.set_field(self, "keep_aspect_ratio", v.as_bool(w("keep_aspect_ratio"),
                                                     self.keep_aspect_ratio))
    rng = v.as_tuple(w("output_tensor_float_range"), self.output_tensor_float_range)
    if len(rng) != 2:
      raise ValueError(f"{w('output_tensor_float_range')} must be (min, max), got {rng!r}")
    lo, hi = (v.as_float(f"{w('output_tensor_float_range')}[{i}]", x) for i, x in enumerate(rng))
    if not lo < hi:
      raise ValueError(f"{w('output_tensor_float_range')} needs min < max, got {(lo, hi)!r}")
    v.set_field(self, "output_tensor_float_range", (lo, hi))
    v.set_field(self, "border_mode", v.as_enum(w("border_mode"), BorderMode, self.border_mode))


class DetectionMapping(str, enum.Enum):
  """How a graph maps detections back to the image (docs/semantics.md §4.2, §4.3).

  ``PROJECTION`` is MediaPipe's ``DetectionProjectionCalculator`` (through the
  transform's matrix; the face graphs), ``LETTERBOX_REMOVAL`` its
  ``DetectionLetterboxRemovalCalculator`` (through the padding; palm, pose and
  older graphs). Both agree to float32 rounding for unrotated letterboxes.
  Wherever a mapping is accepted, a member or its name (any case, so the
  values ``"projection"`` and ``"letterbox_removal"`` too) may be given; the
  members compare equal to those strings.
  """

  PROJECTION = "projection"
  LETTERBOX_REMOVAL = "letterbox_removal"


class LetterboxTransform(NamedTuple):
  """How a model tensor relates to its image (see the module docstring).

  Attributes:
    padding: ``[..., 4]`` ``[left, top, right, bottom]`` fractions of the tensor.
    matrix: ``[..., 4, 4]`` row-major, tensor-normalised to image-normalised.
  """

  padding: jax.Array
  matrix: jax.Array


def _roi(image_h: int, image_w: int, options: ImageToTensorOptions):
  """ROI ``(centre_x, centre_y, width, height)`` in pixels and padding (§4.1 steps 1-2)."""
  cx, cy = _F32(0.5) * _F32(image_w), _F32(0.5) * _F32(image_h)
  roi_w, roi_h = _F32(image_w), _F32(image_h)
  pad_h = pad_v = _F32(0.0)
  if options.keep_aspect_ratio:
    t = _F32(options.output_tensor_height) / _F32(options.output_tensor_width)
    r = roi_h / roi_w
    if t > r:
      roi_h = roi_w * t
      pad_v = (_F32(1.0) - r / t) / _F32(2.0)
    else:
      roi_w = roi_h / t
      pad_h = (_F32(1.0) - t / r) / _F32(2.0)
  return (cx, cy, roi_w, roi_h), np.array([pad_h, pad_v, pad_h, pad_v], _F32)


def letterbox_padding(image_size: tuple[int, int], options: ImageToTensorOptions) -> np.ndarray:
  """MediaPipe's ``LETTERBOX_PADDING`` ``[left, top, right, bottom]`` for an image size.

  Args:
    image_size: ``(height, width)`` in pixels.
    options: :class:`ImageToTensorOptions`, or a preset carrying them as
      ``.preprocessing``.

  Examples:
    >>> o = ImageToTensorOptions(output_tensor_width=128, output_tensor_height=128,
    ...                          keep_aspect_ratio=True, output_tensor_float_range=(-1, 1))
    >>> letterbox_padding((480, 640), o).tolist()
    [0.0, 0.125, 0.0, 0.125]
  """
  options = v.resolve_options(options, ImageToTensorOptions, "preprocessing")
  return _roi(int(image_size[0]), int(image_size[1]), options)[1]


def _matrix(image_h: int, image_w: int, options: ImageToTensorOptions) -> np.ndarray:
  """Tensor-normalised -> image-normalised 4x4 matrix (§4.1 step 5, no rotation)."""
  (cx, cy, roi_w, roi_h), _ = _roi(image_h, image_w, options)
  m = np.eye(4, dtype=np.float64)
  m[0, 0] = float(roi_w) / image_w
  m[1, 1] = float(roi_h) / image_h
  m[2, 2] = m[0, 0]  # MediaPipe scales z by the ROI width too
  m[0, 3] = (float(cx) - float(roi_w) / 2) / image_w
  m[1, 3] = (float(cy) - float(roi_h) / 2) / image_h
  return m.astype(_F32)


def _lu_solve(a: list[list[float]], b: list[float]) -> list[float]:
  """Gaussian elimination with partial pivoting in OpenCV's order (its ``LU`` solver).

  The order of operations matters: the round-off of this solve decides how
  OpenCV breaks exact ties when it rounds sampling positions.
  """
  m = len(a)
  for i in range(m):
    k = max(range(i, m), key=lambda j: (abs(a[j][i]), -j))
    if k != i:
      a[i], a[k], b[i], b[k] = a[k], a[i], b[k], b[i]
    d = -1.0 / a[i][i]
    for j in range(i + 1, m):
      alpha = a[j][i] * d
      for c in range(i + 1, m):
        a[j][c] += alpha * a[i][c]
      b[j] += alpha * b[i]
  for i in range(m - 1, -1, -1):
    total = b[i]
    for k in range(i + 1, m):
      total -= a[i][k] * b[k]
    b[i] = total / a[i][i]
  return b


def _perspective(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
  """OpenCV's ``getPerspectiveTransform`` (8x8 system, LU), in float64."""
  a = [[0.0] * 8 for _ in range(8)]
  b = [0.0] * 8
  for i in range(4):
    sx, sy, dx, dy = float(src[i][0]), float(src[i][1]), float(dst[i][0]), float(dst[i][1])
    a[i][0] = a[i + 4][3] = sx
    a[i][1] = a[i + 4][4] = sy
    a[i][2] = a[i + 4][5] = 1.0
    a[i][6], a[i][7] = -sx * dx, -sy * dx
    a[i + 4][6], a[i + 4][7] = -sx * dy, -sy * dy
    b[i], b[i + 4] = dx, dy
  return np.array(_lu_solve(a, b) + [1.0]).reshape(3, 3)


def _invert3(s: np.ndarray) -> np.ndarray:
  """OpenCV's closed-form 3x3 inverse (``invert`` with DECOMP_LU for n <= 3)."""
  s = [[float(x) for x in row] for row in s]
  det = (s[0][0] * (s[1][1] * s[2][2] - s[1][2] * s[2][1])
         - s[0][1] * (s[1][0] * s[2][2] - s[1][2] * s[2][0])
         + s[0][2] * (s[1][0] * s[2][1] - s[1][1] * s[2][0]))
  d = 1.0 / det
  return np.array([
      [(s[1][1] * s[2][2] - s[1][2] * s[2][1]) * d, (s[0][2] * s[2][1] - s[0][1] * s[2][2]) * d,
       (s[0][1] * s[1][2] - s[0][2] * s[1][1]) * d],
      [(s[1][2] * s[2][0] - s[1][0] * s[2][2]) * d, (s[0][0] * s[2][2] - s[0][2] * s[2][0]) * d,
       (s[0][2] * s[1][0] - s[0][0] * s[1][2]) * d],
      [(s[1][0] * s[2][1] - s[1][1] * s[2][0]) * d, (s[0][1] * s[2][0] - s[0][0] * s[2][1]) * d,
       (s[0][0] * s[1][1] - s[0][1] * s[1][0]) * d]])


@functools.lru_cache(maxsize=32)
def _warp_taps(image_h: int, image_w: int, options: ImageToTensorOptions):
  """Where OpenCV's ``warpPerspective`` samples each tensor pixel, as MediaPipe calls it.

  The ROI's corners (``cv::boxPoints`` in float32: bottom-left, top-left,
  top-right, bottom-right) map onto the tensor corners ``(0, h), (0, 0),
  (w, 0), (w, h)``; the matrix is inverted, and every tensor pixel ``(x, y)``
  is sent through the inverse in float64, column by column inside blocks of 64
  columns as OpenCV does, and rounded to 1/32 pixel (nearest, ties to even).

  Returns ``(row, col, frac_y, frac_x)`` int32 arrays ``[h, w]``: the top-left
  tap and the 1/32 fractions.
  """
  out_h, out_w = options.output_tensor_height, options.output_tensor_width
  (cx, cy, roi_w, roi_h), _ = _roi(image_h, image_w, options)
  half = _F32(0.5)
  # cv::RotatedRect::points for angle 0 (sin = 0, cos = 1), in float32.
  p0 = (cx - half * roi_w, cy + half * roi_h)
  p1 = (cx - half * roi_w, cy - half * roi_h)
  src = [p0, p1, (_F32(2) * cx - p0[0], _F32(2) * cy - p0[1]),
         (_F32(2) * cx - p1[0], _F32(2) * cy - p1[1])]
  dst = [(0.0, out_h), (0.0, 0.0), (out_w, 0.0), (out_w, out_h)]
  m = _invert3(_perspective(src, dst)).reshape(-1)
  block = min(64, out_w)  # OpenCV's 32*32-pixel blocks, 16 rows high
  x = np.arange(out_w, dtype=np.float64)
  x0 = np.floor_divide(x, block) * block  # block origin
  x1 = x - x0
  y = np.arange(out_h, dtype=np.float64)[:, None]
  xw = (m[0] * x0 + m[1] * y) + m[2]
  yw = (m[3] * x0 + m[4] * y) + m[5]
  ww = (m[6] * x0 + m[7] * y) + m[8]
  w = ww + m[6] * x1
  with np.errstate(divide="ignore"):
    w = np.where(w != 0, _TAB / w, 0.0)
  limit = float(np.iinfo(np.int32).max)
  fx = np.clip((xw + m[0] * x1) * w, -limit - 1, limit)
  fy = np.clip((yw + m[3] * x1) * w, -limit - 1, limit)
  ix, iy = np.rint(fx).astype(np.int64), np.rint(fy).astype(np.int64)
  out = (iy >> _INTER_BITS, ix >> _INTER_BITS, iy & (_TAB - 1), ix & (_TAB - 1))
  return tuple(a.astype(np.int32) for a in out)


@functools.partial(jax.jit, static_argnames=("options", "method"))
def _letterbox(image: jax.Array, options: ImageToTensorOptions, method: str):
  image_h, image_w = image.shape[-3], image.shape[-2]
  out_h, out_w = options.output_tensor_height, options.output_tensor_width
  (cx, cy, roi_w, roi_h), padding = _roi(image_h, image_w, options)
  left = float(cx) - float(roi_w) / 2
  top = float(cy) - float(roi_h) / 2
  lo, hi = options.output_tensor_float_range
  if method == "mediapipe":
    row, col, fy, fx = _warp_taps(image_h, image_w, options)
    pixels = _warp.blend(image, row, col, fy, fx,
                         zero_border=options.border_mode is BorderMode.ZERO)
  elif method == "linear":
    spatial = (image.ndim - 3, image.ndim - 2)
    scale = jnp.array([out_h / float(roi_h), out_w / float(roi_w)], jnp.float32)
    translation = -jnp.array([top, left], jnp.float32) * scale
    shape = image.shape[:-3] + (out_h, out_w, image.shape[-1])
    pixels = jax.image.scale_and_translate(
        image.astype(jnp.float32), shape, spatial, scale, translation, method="linear",
        antialias=False)
    if options.border_mode is not BorderMode.ZERO and options.keep_aspect_ratio:
      raise ValueError("method='linear' supports border_mode ZERO only with keep_aspect_ratio")
  else:
    raise ValueError(f"method must be 'mediapipe' or 'linear', got {method!r}")
  tensor = _warp.to_range(pixels, (lo, hi))
  batch = image.shape[:-3]
  matrix = jnp.broadcast_to(jnp.asarray(_matrix(image_h, image_w, options)), batch + (4, 4))
  return tensor, LetterboxTransform(jnp.broadcast_to(jnp.asarray(padding), batch + (4,)), matrix)


def letterbox(image: ArrayLike, options: ImageToTensorOptions, *,
              method: str = "mediapipe") -> tuple[jax.Array, LetterboxTransform]:
  """Image to model tensor: MediaPipe ``ImageToTensorCalculator`` on the CPU (§4.1).

  Args:
    image: ``[..., H, W, C]`` ``uint8`` (or float in 0..255).
    options: static :class:`ImageToTensorOptions`, or a preset carrying them as
      ``.preprocessing``.
    method: ``"mediapipe"`` (OpenCV's sampling, see the module docstring) or
      ``"linear"`` (``jax.image`` bilinear, border ZERO).

  Returns:
    ``(tensor [..., h, w, C] float32, LetterboxTransform)``.

  Examples:
    >>> import numpy as np
    >>> o = ImageToTensorOptions(output_tensor_width=4, output_tensor_height=4,
    ...                          keep_aspect_ratio=True, output_tensor_float_range=(-1, 1),
    ...                          border_mode="ZERO")
    >>> tensor, t = letterbox(np.full((2, 4, 3), 255, np.uint8), o)
    >>> t.padding.tolist()  # 2x4 into 4x4: one row of border above and below
    [0.0, 0.25, 0.0, 0.25]
    >>> tensor[:, 0, 0].tolist()  # 255 * f32(2/255) - 1 rounds up, in MediaPipe too
    [-1.0, 1.0000001192092896, 1.0000001192092896, -1.0]
  """
  options = v.resolve_options(options, ImageToTensorOptions, "preprocessing")
  image = jnp.asarray(image)
  v.check_image("image", image)
  return _letterbox(image, options, method)


# -- mapping back ----------------------------------------------------------------------


def remove_letterbox(detections: Detections, padding: ArrayLike) -> Detections:
  """MediaPipe ``DetectionLetterboxRemovalCalculator`` (docs/semantics.md §4.3).

  ``x' = (x - left) / (1 - (left + right))`` and likewise for y, applied to box
  corners and keypoints; no clamping. ``padding`` is ``[..., 4]``
  ``[left, top, right, bottom]``, broadcast against the detections' leading
  dimensions (one padding per image, or one for all).
  """
  padding = jnp.asarray(padding, detections.boxes.dtype)
  v.check_shape("padding", padding, "[..., 4]")
  l, t, r, b = (padding[..., i, None] for i in range(4))
  sx, sy = 1 - (l + r), 1 - (t + b)
  boxes = detections.boxes
  div = _geometry.divide
  xmin, ymin = div(boxes[..., 0] - l, sx), div(boxes[..., 1] - t, sy)
  xmax, ymax = div(boxes[..., 2] - l, sx), div(boxes[..., 3] - t, sy)
  kp = detections.keypoints
  kx = div(kp[..., 0] - l[..., None], sx[..., None])
  ky = div(kp[..., 1] - t[..., None], sy[..., None])
  return detections._replace(boxes=jnp.stack([xmin, ymin, xmax, ymax], axis=-1),
                             keypoints=jnp.stack([kx, ky], axis=-1))


def project_detections(detections: Detections, matrix: ArrayLike) -> Detections:
  """MediaPipe ``DetectionProjectionCalculator`` (docs/semantics.md §4.2).

  Applies the row-major 4x4 ``matrix [..., 4, 4]`` (``z = 0``, ``w = 1``) to
  keypoints and the four box corners and takes the axis-aligned bounding box
  of the projected corners. For an unrotated letterbox this equals
  :func:`remove_letterbox` up to float rounding.
  """
  m = jnp.asarray(matrix, detections.boxes.dtype)
  v.check_shape("matrix", m, "[..., 4, 4]")
  m = m[..., None, :, :]  # broadcast over the detection axis

  def apply(x, y):
    return (m[..., 0, 0] * x + m[..., 0, 1] * y + m[..., 0, 3],
            m[..., 1, 0] * x + m[..., 1, 1] * y + m[..., 1, 3])

  b = detections.boxes
  cx, cy = zip(*(apply(b[..., i], b[..., j]) for i, j in ((0, 1), (2, 1), (2, 3), (0, 3))))
  cx, cy = jnp.stack(cx, -1), jnp.stack(cy, -1)
  boxes = jnp.stack([cx.min(-1), cy.min(-1), cx.max(-1), cy.max(-1)], axis=-1)
  kp = detections.keypoints
  mk = m[..., None, :, :]
  kx = mk[..., 0, 0] * kp[..., 0] + mk[..., 0, 1] * kp[..., 1] + mk[..., 0, 3]
  ky = mk[..., 1, 0] * kp[..., 0] + mk[..., 1, 1] * kp[..., 1] + mk[..., 1, 3]
  return detections._replace(boxes=boxes, keypoints=jnp.stack([kx, ky], axis=-1))
