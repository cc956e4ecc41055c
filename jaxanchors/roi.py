"""Detections to rotated regions of interest, their crops, and landmarks back.

The glue of MediaPipe's two-stage pipelines (palm -> hand landmarks, pose
detector -> pose landmarks, face detector -> face mesh), docs/semantics.md §7:
``DetectionsToRectsCalculator`` / ``AlignmentPointsRectsCalculator`` then
``RectTransformationCalculator`` (:func:`detections_to_rects`),
``AssociationNormRectCalculator`` (:func:`associate_rects`), the CPU
``ImageToTensorCalculator`` with a rotated region (:func:`crop`) and
``LandmarkProjectionCalculator`` (:func:`project_landmarks`).

Contract:

* :class:`Rects` are MediaPipe's ``NormalizedRect``: centre and size as
  fractions of the image width and height, ``rotation`` in radians (MediaPipe's
  convention: the rotation vector, turned by it, points at the target angle,
  counted counter-clockwise with y up), batched like the detections they come
  from (``[..., N]``). Slots that are not ``valid`` hold zeros and must be
  ignored; a detection slot that is not valid gives a rect that is not valid.
* Rect arithmetic is float32 in MediaPipe's order, products never fused into a
  following add. ``atan2``, ``sin`` and ``cos`` are rounded from float64 and
  can differ from the C library's float versions by an ulp or two: on the
  recorded runs centres and sizes agree with MediaPipe's to 6e-8 and rotations
  to 6e-7 rad. A crop depends on its rect to the last bit, so crops are bit
  for bit MediaPipe's given MediaPipe's rects.
* :func:`crop` reproduces OpenCV's ``warpPerspective`` as MediaPipe calls it,
  bit for bit, for any rotation: the corners from ``cv::RotatedRect`` in
  float32, the 8x8 perspective system solved with OpenCV's LU (partial
  pivoting, back substitution through the reciprocal pivots) and the closed
  3x3 inverse in float64, sampling positions rounded to 1/32 pixel, bilinear
  weights in 1/1024 steps. These positions depend on the rects, so they are
  computed on the device in float64 (locally enabled, whatever
  ``jax_enable_x64`` says): the device must support float64 (CPU and GPU do).
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxanchors import _geometry
from jaxanchors import _validate as v
from jaxanchors import _warp
from jaxanchors.detections import Detections
from jaxanchors.letterbox import BorderMode, ImageToTensorOptions, LetterboxTransform

__all__ = [
    "RectConversion",
    "RectOptions",
    "Rects",
    "RoiOptions",
    "associate_rects",
    "crop",
    "detections_to_rects",
    "project_landmarks",
    "select_rois",
]

_F32 = np.float32
_mul = _geometry.signed_product
_div = _geometry.divide


class RectConversion(enum.Enum):
  """How a detection becomes a rect (docs/semantics.md §7.1).

  ``BOUNDING_BOX``: ``DetectionsToRectsCalculator`` DEFAULT/USE_BOUNDING_BOX
  (the box's centre and size). ``KEYPOINTS``: its USE_KEYPOINTS (the keypoints'
  bounding box). ``ALIGNMENT_POINTS``: ``AlignmentPointsRectsCalculator``
  (centre at the start keypoint, a square of twice the distance to the end
  keypoint, in pixels).
  """

  BOUNDING_BOX = 1
  KEYPOINTS = 2
  ALIGNMENT_POINTS = 3


@v.hash_once
@dataclasses.dataclass(frozen=True, kw_only=True)
class RectOptions(v.OptionsMixin):
  """``DetectionsToRectsCalculatorOptions`` + ``RectTransformationCalculatorOptions`` (§7.1-7.2).

  Attributes:
    conversion: a :class:`RectConversion` (or its name).
    rotation_vector_start_keypoint_index, rotation_vector_end_keypoint_index:
      the keypoints whose vector sets the rotation (and, for
      ``ALIGNMENT_POINTS``, the centre and size). ``None``: no rotation.
    rotation_vector_target_angle: the vector's angle after rotation, radians
      (counter-clockwise from +x); exactly one of it and
      ``rotation_vector_target_angle_degrees`` with a rotation vector.
    rotation_vector_target_angle_degrees: the same in degrees.
    scale_x, scale_y: factors on the (squared) width and height, > 0.
    shift_x, shift_y: centre shift along the rect's own axes, in fractions of
      its width and height (applied before squaring and scaling).
    square_long, square_short: make the rect a square (in pixels) of its long
      or short side; at most one.
  """

  conversion: RectConversion = RectConversion.BOUNDING_BOX
  rotation_vector_start_keypoint_index: int | None = None
  rotation_vector_end_keypoint_index: int | None = None
  rotation_vector_target_angle: float | None = None
  rotation_vector_target_angle_degrees: float | None = None
  scale_x: float = 1.0
  scale_y: float = 1.0
  shift_x: float = 0.0
  shift_y: float = 0.0
  square_long: bool = False
  square_short: bool = False

  def __post_init__(self) -> None:
    w = lambda name: f"RectOptions.{name}"  # noqa: E731
    v.set_field(self, "conversion", v.as_enum(w("conversion"), RectConversion, self.conversion))
    start, end = (self.rotation_vector_start_keypoint_index,
                  self.rotation_vector_end_keypoint_index)
    for name in ("rotation_vector_start_keypoint_index", "rotation_vector_end_keypoint_index"):
      if getattr(self, name) is not None:
        v.set_field(self, name, v.as_int(w(name), getattr(self, name), minimum=0))
    for name in ("rotation_vector_target_angle", "rotation_vector_target_angle_degrees"):
      if getattr(self, name) is not None:
        v.set_field(self, name, v.as_float(w(name), getattr(self, name)))
    if (start is None) != (end is None):
      raise ValueError(f"{w('rotation_vector_start_keypoint_index')} and "
                       f"{w('rotation_vector_end_keypoint_index')} go together, got "
                       f"{start!r} and {end!r}")
    angles = (self.rotation_vector_target_angle, self.rotation_vector_target_angle_degrees)
    if start is not None and sum(a is not None for a in angles) != 1:
      raise ValueError(f"a rotation vector needs exactly one of {w('rotation_vector_target_angle')}"
                       f" and {w('rotation_vector_target_angle_degrees')}, got {angles!r}")
    if start is None and any(a is not None for a in angles):
      raise ValueError(f"a target angle needs {w('rotation_vector_start_keypoint_index')}, "
                       f"got {angles!r}")
    if self.conversion is RectConversion.ALIGNMENT_POINTS and start is None:
      raise ValueError(f"{w('conversion')} ALIGNMENT_POINTS needs the rotation vector's "
                       "start and end keypoint indices")
    for name in ("scale_x", "scale_y"):
      v.set_field(self, name, v.as_float(w(name), getattr(self, name), positive=True))
    for name in ("shift_x", "shift_y"):
      v.set_field(self, name, v.as_float(w(name), getattr(self, name)))
    for name in ("square_long", "square_short"):
      v.set_field(self, name, v.as_bool(w(name), getattr(self, name)))
    if self.square_long and self.square_short:
      raise ValueError(f"{w('square_long')} and {w('square_short')} exclude each other")

  @property
  def target_angle(self) -> np.float32 | None:
    """The target angle in radians as MediaPipe stores it (float32), or None."""
    if self.rotation_vector_start_keypoint_index is None:
      return None
    if self.rotation_vector_target_angle is not None:
      return _F32(self.rotation_vector_target_angle)
    # M_PI * degrees / 180 in double, stored as float.
    return _F32(math.pi * float(_F32(self.rotation_vector_target_angle_degrees)) / 180.0)


@v.hash_once
@dataclasses.dataclass(frozen=True, kw_only=True)
class RoiOptions(v.OptionsMixin):
  """What a two-stage graph does between its detector and its landmark model (§7.6).

  Attributes:
    rect: :class:`RectOptions` (detection to rect, then the transformation).
    crop: the landmark model's :class:`~jaxanchors.letterbox.ImageToTensorOptions`.
    max_rois: how many detections the graph keeps (its first ones), >= 1.
    association: ``AssociationNormRectCalculator``'s ``min_similarity_threshold``,
      or ``None`` when the graph does not associate.
  """

  rect: RectOptions
  crop: ImageToTensorOptions
  max_rois: int = 1
  association: float | None = None

  def __post_init__(self) -> None:
    if isinstance(self.rect, dict):
      v.set_field(self, "rect", RectOptions.from_dict(self.rect))
    if isinstance(self.crop, dict):
      v.set_field(self, "crop", ImageToTensorOptions.from_dict(self.crop))
    if not isinstance(self.rect, RectOptions):
      raise TypeError(f"RoiOptions.rect must be RectOptions, got {type(self.rect).__name__}")
    if not isinstance(self.crop, ImageToTensorOptions):
      raise TypeError(f"RoiOptions.crop must be ImageToTensorOptions, got "
                      f"{type(self.crop).__name__}")
    v.set_field(self, "max_rois", v.as_int("RoiOptions.max_rois", self.max_rois, minimum=1))
    if self.association is not None:
      v.set_field(self, "association", v.as_float("RoiOptions.association", self.association,
                                                  minimum=0.0))


class Rects(NamedTuple):
  """Rotated rectangles, MediaPipe's ``NormalizedRect`` (see the module docstring).

  Attributes:
    x_center, y_center: ``[..., N]`` float32, fractions of the image width / height.
    width, height: ``[..., N]`` float32, fractions of the image width / height.
    rotation: ``[..., N]`` float32 radians.
    valid: ``[..., N]`` bool.
  """

  x_center: jax.Array
  y_center: jax.Array
  width: jax.Array
  height: jax.Array
  rotation: jax.Array
  valid: jax.Array


# -- detections to rects ----------------------------------------------------------------


def _normalize_radians(angle: jax.Array) -> jax.Array:
  """``angle - 2 pi floor((angle + pi) / (2 pi))`` in float64, rounded to float32."""
  with jax.enable_x64(True):
    a = angle.astype(jnp.float64)
    turns = jnp.floor(_geometry.divide(a - (-math.pi), jnp.float64(2 * math.pi)))
    out = (a - _mul(jnp.float64(2 * math.pi), turns)).astype(jnp.float32)
  return out


def _image_size(image_size, lead: tuple[int, ...]) -> tuple[jax.Array, jax.Array]:
  size = jnp.asarray(image_size)
  if size.shape[-1:] != (2,) or not (jnp.issubdtype(size.dtype, jnp.integer)
                                     or jnp.issubdtype(size.dtype, jnp.floating)):
    raise ValueError(f"image_size must be (height, width) or [..., 2] per image, got shape "
                     f"{size.shape}")
  v.check_broadcasts("image_size", size[..., 0], lead[:-1], "detections' batch shape")
  if not isinstance(size, jax.core.Tracer) and bool(np.any(np.asarray(size) < 1)):
    raise ValueError(f"image_size must be positive, got {np.asarray(size).tolist()}")
  size = size.astype(jnp.float32)
  return size[..., 0, None], size[..., 1, None]  # height, width, [..., 1]


def detections_to_rects(detections: Detections, options: RectOptions, *,
                        image_size: ArrayLike) -> Rects:
  """Each detection's rect: MediaPipe's detection-to-rect calculators then ``RectTransformation``.

  ``DetectionsToRectsCalculator`` (box or keypoints, rotation from a keypoint
  vector) or ``AlignmentPointsRectsCalculator``, then
  ``RectTransformationCalculator`` on the normalised rect (docs/semantics.md
  §7.1-7.2), in float32.

  Args:
    detections: :class:`~jaxanchors.Detections` ``[..., N]`` in image-normalised
      coordinates (after the letterbox is removed).
    options: :class:`RectOptions`, or a :class:`RoiOptions` (its ``rect``).
    image_size: ``(height, width)`` in pixels, or ``[..., 2]`` per image.

  Returns:
    :class:`Rects` ``[..., N]``.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxanchors import Detections
    >>> d = Detections(jnp.array([[0.2, 0.4, 0.4, 0.6]]), jnp.zeros((1, 0, 2)), jnp.ones(1),
    ...                jnp.zeros(1, jnp.int32), jnp.ones(1, bool))
    >>> r = detections_to_rects(d, RectOptions(scale_x=2.0, scale_y=2.0, square_long=True),
    ...                         image_size=(100, 200))
    >>> [round(float(x[0]), 4) for x in r[:5]]  # the box is 40 x 20 px: a 80 x 80 px square
    [0.3, 0.5, 0.4, 0.8, 0.0]
  """
  if isinstance(options, RoiOptions):
    options = options.rect
  options = v.resolve_options(options, RectOptions, None)
  batch, n, k = v.check_detections(detections, Detections)
  start, end = (options.rotation_vector_start_keypoint_index,
                options.rotation_vector_end_keypoint_index)
  needed = max(start, end) + 1 if start is not None else (
      2 if options.conversion is RectConversion.KEYPOINTS else 0)
  if k < needed:
    raise ValueError(f"detections have {k} keypoints; RectOptions needs at least {needed} "
                     f"(rotation vector {start} -> {end}, conversion {options.conversion.name})")
  height, width = _image_size(image_size, batch + (n,))
  return _to_rects(detections, options, height, width)


@functools.partial(jax.jit, static_argnames=("options",))
def _to_rects(det: Detections, options: RectOptions, img_h: jax.Array, img_w: jax.Array) -> Rects:
  f32 = jnp.float32
  boxes, kp = det.boxes.astype(f32), det.keypoints.astype(f32)
  start, end = (options.rotation_vector_start_keypoint_index,
                options.rotation_vector_end_keypoint_index)
  if options.conversion is RectConversion.BOUNDING_BOX:
    w, h = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
    xc, yc = boxes[..., 0] + w / 2, boxes[..., 1] + h / 2
  elif options.conversion is RectConversion.KEYPOINTS:
    lo, hi = kp.min(axis=-2), kp.max(axis=-2)
    xc, yc = (lo[..., 0] + hi[..., 0]) / 2, (lo[..., 1] + hi[..., 1]) / 2
    w, h = hi[..., 0] - lo[..., 0], hi[..., 1] - lo[..., 1]
  else:  # ALIGNMENT_POINTS: in pixels
    # Products rounded on their own: a fused multiply-add would turn equal
    # keypoints into a tiny non-zero difference.
    cx, cy = _mul(kp[..., start, 0], img_w), _mul(kp[..., start, 1], img_h)
    sx, sy = _mul(kp[..., end, 0], img_w), _mul(kp[..., end, 1], img_h)
    dx, dy = sx - cx, sy - cy
    size = jnp.sqrt(_mul(dx, dx) + _mul(dy, dy)) * 2
    xc, yc = _div(cx, img_w), _div(cy, img_h)
    w, h = _div(size, img_w), _div(size, img_h)
  if start is not None:
    x0, y0 = _mul(kp[..., start, 0], img_w), _mul(kp[..., start, 1], img_h)
    x1, y1 = _mul(kp[..., end, 0], img_w), _mul(kp[..., end, 1], img_h)
    angle = jnp.float32(options.target_angle) - _geometry.libm(jnp.arctan2, -(y1 - y0), x1 - x0)
    rotation = _normalize_radians(angle)
  else:
    rotation = jnp.zeros_like(xc)
  xc, yc, w, h = _transform(xc, yc, w, h, rotation, options, img_h, img_w)
  valid = det.valid
  zero = jnp.zeros_like(xc)
  return Rects(*(jnp.where(valid, a, zero) for a in (xc, yc, w, h, rotation)), valid)


def _transform(xc, yc, w, h, rotation, options: RectOptions, img_h, img_w):
  """``RectTransformationCalculator`` on a normalised rect (§7.2)."""
  sx, sy = jnp.float32(options.shift_x), jnp.float32(options.shift_y)
  if options.shift_x or options.shift_y:
    c, s = _geometry.libm(jnp.cos, rotation), _geometry.libm(jnp.sin, rotation)
    x_shift = _div(_mul(_mul(_mul(img_w, w), sx), c) - _mul(_mul(_mul(img_h, h), sy), s), img_w)
    y_shift = _div(_mul(_mul(_mul(img_w, w), sx), s) + _mul(_mul(_mul(img_h, h), sy), c), img_h)
    upright = rotation == 0
    xc = jnp.where(upright, xc + _mul(w, sx), xc + x_shift)
    yc = jnp.where(upright, yc + _mul(h, sy), yc + y_shift)
  if options.square_long or options.square_short:
    pick = jnp.maximum if options.square_long else jnp.minimum
    side = pick(w * img_w, h * img_h)
    w, h = _div(side, img_w), _div(side, img_h)
  return xc, yc, w * jnp.float32(options.scale_x), h * jnp.float32(options.scale_y)


def select_rois(detections: Detections, options: RoiOptions, *,
                image_size: ArrayLike) -> Rects:
  """The graph's whole detection-to-ROI stage: first ``max_rois`` detections, rects, association.

  The valid detections keep their order; the first ``options.max_rois`` of
  them become rects (:func:`detections_to_rects`), and when the graph
  associates, overlapping rects are dropped (:func:`associate_rects`).

  Args:
    detections: ``[..., N]`` image-normalised detections.
    options: :class:`RoiOptions`, or a preset carrying them as ``.roi``.
    image_size: ``(height, width)`` in pixels, or ``[..., 2]`` per image.

  Returns:
    :class:`Rects` ``[..., max_rois]``.
  """
  options = v.resolve_options(options, RoiOptions, "roi")
  batch, n, _ = v.check_detections(detections, Detections)
  m = options.max_rois
  order = jnp.argsort(~detections.valid, axis=-1, stable=True)[..., :m]
  picked = jax.tree.map(
      lambda a: jnp.take_along_axis(a, order.reshape(order.shape + (1,) * (a.ndim - order.ndim)),
                                    axis=len(batch)), detections)
  if n < m:  # fewer slots than ROIs: pad with invalid ones
    pad = m - n
    picked = jax.tree.map(
        lambda a: jnp.concatenate([a, jnp.zeros(a.shape[:len(batch)] + (pad,) + a.shape[len(batch) + 1:],
                                                a.dtype)], axis=len(batch)), picked)
  rects = detections_to_rects(picked, options.rect, image_size=image_size)
  if options.association is not None:
    rects = associate_rects(rects, min_similarity=options.association)
  return rects


def associate_rects(rects: Rects, *, min_similarity: float) -> Rects:
  """MediaPipe ``AssociationNormRectCalculator`` on one list of rects (§7.3).

  Rects enter MediaPipe's list in slot order; each one removes the rects
  already listed whose IoU with it (axis-aligned, rotation ignored) exceeds
  ``min_similarity``. So a valid rect survives unless a later valid rect
  overlaps it; survivors keep their slots and order, the others become
  invalid.

  Args:
    rects: :class:`Rects` ``[..., N]``.
    min_similarity: IoU threshold, >= 0.

  Returns:
    :class:`Rects` ``[..., N]`` with ``valid`` cleared on dropped slots.
  """
  thr = v.as_float("min_similarity", min_similarity, minimum=0.0)
  if not isinstance(rects, Rects):
    raise TypeError(f"rects must be a jaxanchors.roi.Rects, got {type(rects).__name__}")
  return _associate(rects, thr)


@functools.partial(jax.jit, static_argnames=("thr",))
def _associate(rects: Rects, thr: float) -> Rects:
  w, h = rects.width, rects.height
  x = rects.x_center - w / 2  # MediaPipe: in double, then float; the same value
  y = rects.y_center - h / 2
  r = _geometry.Rects(x, y, x + w, y + h, _geometry.product((x + w) - x, (y + h) - y),
                      (w >= 0) & (h >= 0))
  ri = _geometry.Rects(*(a[..., :, None] for a in r))
  rj = _geometry.Rects(*(a[..., None, :] for a in r))
  iou = _geometry.overlap_rects(ri, rj, _geometry.OverlapType.INTERSECTION_OVER_UNION)
  n = w.shape[-1]
  later = np.arange(n)[None, :] > np.arange(n)[:, None]
  hit = (iou > np.float32(thr)) & later & rects.valid[..., None, :] & rects.valid[..., :, None]
  return rects._replace(valid=rects.valid & ~hit.any(axis=-1))


# -- crops ----------------------------------------------------------------------------


def _pad_roi(w, h, options: ImageToTensorOptions):
  """``PadRoi``: the ROI grown to the tensor's aspect ratio, and the padding (§4.1 step 2)."""
  zero = jnp.zeros_like(w)
  if not options.keep_aspect_ratio:
    return w, h, jnp.stack([zero] * 4, axis=-1)
  t = jnp.full_like(w, _F32(options.output_tensor_height) / _F32(options.output_tensor_width))
  r = _div(h, w)
  taller = t > r
  new_w = jnp.where(taller, w, _div(h, t))
  new_h = jnp.where(taller, w * t, h)
  pad_v = jnp.where(taller, (1 - _div(r, t)) / 2, zero)
  pad_h = jnp.where(taller, zero, (1 - _div(t, r)) / 2)
  return new_w, new_h, jnp.stack([pad_h, pad_v, pad_h, pad_v], axis=-1)


def _sub_rect_matrix(cx, cy, w, h, rotation, img_w: int, img_h: int):
  """``GetRotatedSubRectToRectTransformMatrix`` (no flip), float32: ``[..., 4, 4]``."""
  a, b = w, h
  c, d = _geometry.libm(jnp.cos, rotation), _geometry.libm(jnp.sin, rotation)
  g, hh = _F32(1) / _F32(img_w), _F32(1) / _F32(img_h)
  zero, one = jnp.zeros_like(a), jnp.ones_like(a)
  m03 = _mul(_mul(_F32(-0.5), a), c) + _mul(_mul(_F32(0.5), b), d) + cx
  m13 = _mul(_mul(_F32(-0.5), b), c) - _mul(_mul(_F32(0.5), a), d) + cy
  rows = [[a * c * g, -b * d * g, zero, m03 * g],
          [a * d * hh, b * c * hh, zero, m13 * hh],
          [zero, zero, a * g, zero],
          [zero, zero, zero, one]]
  return jnp.stack([jnp.stack(r, axis=-1) for r in rows], axis=-2)


def _box_points(cx, cy, w, h, rotation):
  """``cv::RotatedRect(centre, size, degrees).points()``: 4 corners ``[4, 2]`` float32.

  The angle goes to degrees as MediaPipe writes it (``rotation * 180.f / M_PI``,
  the product in float, the quotient in double, stored as float), and back to
  radians in double inside OpenCV, whose cosine and sine are rounded to float.
  """
  with jax.enable_x64(True):
    # True divisions: XLA would fold "* pi / 180" into one product otherwise.
    deg = _geometry.divide((rotation * _F32(180)).astype(jnp.float64), jnp.float64(math.pi))
    deg = deg.astype(jnp.float32)
    rad = _geometry.divide(deg.astype(jnp.float64) * math.pi, jnp.float64(180.0))
    b = jnp.cos(rad).astype(jnp.float32) * _F32(0.5)
    a = jnp.sin(rad).astype(jnp.float32) * _F32(0.5)
  p0x = (cx - _mul(a, h)) - _mul(b, w)
  p0y = (cy + _mul(b, h)) - _mul(a, w)
  p1x = (cx + _mul(a, h)) - _mul(b, w)
  p1y = (cy - _mul(b, h)) - _mul(a, w)
  p2x, p2y = _F32(2) * cx - p0x, _F32(2) * cy - p0y
  p3x, p3y = _F32(2) * cx - p1x, _F32(2) * cy - p1y
  return jnp.stack([jnp.stack([p0x, p0y]), jnp.stack([p1x, p1y]), jnp.stack([p2x, p2y]),
                    jnp.stack([p3x, p3y])])


def _lu_solve(a: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
  """OpenCV's ``LU`` for float64 (partial pivoting, reciprocal pivots); ``(x, ok)``.

  Loops (not unrolled Python) keep the compiled program small; masked updates
  add exact zeros where OpenCV leaves an entry alone.
  """
  m = a.shape[0]
  idx = jnp.arange(m)
  eps = np.finfo(np.float64).eps * 100

  def eliminate(i, carry):
    a, b, ok = carry
    col = jnp.where(idx >= i, jnp.abs(jnp.take(a, i, axis=1)), -1.0)
    best = col.max()
    k = jnp.where(col == best, idx, m).min()  # the first largest, as OpenCV's strict >
    ok = ok & (best >= eps)
    row_i, row_k = jnp.take(a, i, axis=0), jnp.take(a, k, axis=0)
    b_i, b_k = jnp.take(b, i), jnp.take(b, k)
    a = jnp.where((idx == i)[:, None], row_k[None, :], jnp.where((idx == k)[:, None], row_i[None, :], a))
    b = jnp.where(idx == i, b_k, jnp.where(idx == k, b_i, b))
    pivot_row, pivot_b = row_k, b_k
    d = -1 / jnp.take(pivot_row, i)
    below = idx > i
    alpha = _mul(jnp.take(a, i, axis=1), d)
    update = below[:, None] & below[None, :]
    a = a + jnp.where(update, _mul(alpha[:, None], pivot_row[None, :]), 0.0)
    b = b + jnp.where(below, _mul(alpha, pivot_b), 0.0)
    a = jnp.where((idx == i)[:, None] & (idx == i)[None, :], -d, a)
    return a, b, ok

  a, b, ok = jax.lax.fori_loop(0, m, eliminate, (a, b, jnp.bool_(True)))

  def substitute(step, x):
    i = m - 1 - step
    row = jnp.take(a, i, axis=0)
    s = jnp.take(b, i)
    for k in range(m):  # k = i+1 .. m-1 in order; the others subtract an exact 0
      s = s - jnp.where(k > i, _mul(row[k], x[k]), 0.0)
    return jnp.where(idx == i, _mul(s, jnp.take(row, i)), x)

  x = jax.lax.fori_loop(0, m, substitute, jnp.zeros_like(b))
  return x, ok


def _perspective_inverse(src: jax.Array, out_w: int, out_h: int):
  """``getPerspectiveTransform(src, tensor corners)`` then the closed 3x3 inverse, float64."""
  dst = np.array([[0, out_h], [0, 0], [out_w, 0], [out_w, out_h]], np.float32)
  rows, rhs = [], []
  for i in range(4):
    sx, sy = src[i, 0], src[i, 1]
    dx, dy = _F32(dst[i, 0]), _F32(dst[i, 1])
    f = lambda x: x.astype(jnp.float64)  # noqa: E731
    z, one = jnp.float64(0), jnp.float64(1)
    # The products -x * u are float32 products (Point2f), stored in double.
    rows.append([f(sx), f(sy), one, z, z, z, f(-sx * dx), f(-sy * dx)])
    rhs.append(jnp.float64(dst[i, 0]))
  for i in range(4):
    sx, sy = src[i, 0], src[i, 1]
    dx, dy = _F32(dst[i, 0]), _F32(dst[i, 1])
    f = lambda x: x.astype(jnp.float64)  # noqa: E731
    z, one = jnp.float64(0), jnp.float64(1)
    rows.append([z, z, z, f(sx), f(sy), one, f(-sx * dy), f(-sy * dy)])
    rhs.append(jnp.float64(dst[i, 1]))
  a = jnp.stack([jnp.stack(r) for r in rows])
  x, ok = _lu_solve(a, jnp.stack(rhs))
  s = [[x[0], x[1], x[2]], [x[3], x[4], x[5]], [x[6], x[7], jnp.float64(1)]]

  def minor(r0, c0, r1, c1, r2, c2, r3, c3):
    return _mul(s[r0][c0], s[r1][c1]) - _mul(s[r2][c2], s[r3][c3])

  det = (_mul(s[0][0], minor(1, 1, 2, 2, 1, 2, 2, 1))
         - _mul(s[0][1], minor(1, 0, 2, 2, 1, 2, 2, 0))
         + _mul(s[0][2], minor(1, 0, 2, 1, 1, 1, 2, 0)))
  ok = ok & (det != 0)
  d = 1 / jnp.where(det != 0, det, 1)
  inv = [minor(1, 1, 2, 2, 1, 2, 2, 1), minor(0, 2, 2, 1, 0, 1, 2, 2),
         minor(0, 1, 1, 2, 0, 2, 1, 1), minor(1, 2, 2, 0, 1, 0, 2, 2),
         minor(0, 0, 2, 2, 0, 2, 2, 0), minor(0, 2, 1, 0, 0, 0, 1, 2),
         minor(1, 0, 2, 1, 1, 1, 2, 0), minor(0, 1, 2, 0, 0, 0, 2, 1),
         minor(0, 0, 1, 1, 0, 1, 1, 0)]
  return [_mul(e, d) for e in inv], ok


def _taps(m, out_w: int, out_h: int):
  """Where ``warpPerspective`` samples each tensor pixel, float64.

  As the letterbox samples, with OpenCV's own block sizes.
  """
  bh = min(16, out_h)  # OpenCV's blocks: 32*32 pixels, 16 rows high
  bw = min(1024 // bh, out_w)
  x = np.arange(out_w, dtype=np.float64)
  x0 = np.floor_divide(x, bw) * bw
  x1 = x - x0
  y = np.arange(out_h, dtype=np.float64)[:, None]
  xw = (_mul(m[0], x0) + _mul(m[1], y)) + m[2]
  yw = (_mul(m[3], x0) + _mul(m[4], y)) + m[5]
  ww = (_mul(m[6], x0) + _mul(m[7], y)) + m[8]
  w = ww + _mul(m[6], x1)
  w = jnp.where(w != 0, _warp.TAB / jnp.where(w != 0, w, 1), 0.0)
  limit = float(np.iinfo(np.int32).max)
  fx = jnp.clip((xw + _mul(m[0], x1)) * w, -limit - 1, limit)
  fy = jnp.clip((yw + _mul(m[3], x1)) * w, -limit - 1, limit)
  ix, iy = jnp.rint(fx).astype(jnp.int32), jnp.rint(fy).astype(jnp.int32)
  bits, mask = _warp.INTER_BITS, _warp.TAB - 1
  return iy >> bits, ix >> bits, iy & mask, ix & mask


def _crop_one(image, rect, options: ImageToTensorOptions):
  """One image ``[H, W, C]``, one rect (scalars): ``(tensor, padding, matrix)``."""
  img_h, img_w = image.shape[0], image.shape[1]
  out_h, out_w = options.output_tensor_height, options.output_tensor_width
  valid = rect.valid
  cx, cy = _mul(rect.x_center, _F32(img_w)), _mul(rect.y_center, _F32(img_h))
  w, h = rect.width * _F32(img_w), rect.height * _F32(img_h)
  valid = valid & (w > 0) & (h > 0) & jnp.isfinite(cx) & jnp.isfinite(cy) & jnp.isfinite(
      rect.rotation)
  one = jnp.ones_like(w)
  w, h = jnp.where(valid, w, one), jnp.where(valid, h, one)  # keep invalid slots finite
  cx, cy = jnp.where(valid, cx, 0.5), jnp.where(valid, cy, 0.5)
  rotation = jnp.where(valid, rect.rotation, 0.0)
  w, h, padding = _pad_roi(w, h, options)
  matrix = _sub_rect_matrix(cx, cy, w, h, rotation, img_w, img_h)
  src = _box_points(cx, cy, w, h, rotation)
  with jax.enable_x64(True):
    m, ok = _perspective_inverse(src, out_w, out_h)
    row, col, fy, fx = _taps(m, out_w, out_h)
  valid = valid & ok
  pixels = _warp.blend(image, row, col, fy, fx,
                       zero_border=options.border_mode is BorderMode.ZERO)
  tensor = _warp.to_range(pixels, options.output_tensor_float_range)
  tensor = jnp.where(valid, tensor, jnp.float32(0))
  return tensor, padding, matrix


@functools.partial(jax.jit, static_argnames=("options",))
def _crop(images, rects: Rects, options: ImageToTensorOptions):
  batch = images.shape[:-3]
  flat = images.reshape((-1,) + images.shape[-3:])
  n = rects.valid.shape[-1]
  flat_rects = Rects(*(jnp.broadcast_to(a, batch + (n,)).reshape(-1, n) for a in rects))
  per_rect = jax.vmap(_crop_one, in_axes=(None, 0, None))
  tensor, padding, matrix = jax.vmap(per_rect, in_axes=(0, 0, None))(flat, flat_rects, options)
  tensor = tensor.reshape(batch + (n,) + tensor.shape[-3:])
  return tensor, LetterboxTransform(padding.reshape(batch + (n, 4)),
                                    matrix.reshape(batch + (n, 4, 4)))


def crop(images: ArrayLike, rects: Rects, options: ImageToTensorOptions
         ) -> tuple[jax.Array, LetterboxTransform]:
  """The landmark model's input for each rect: MediaPipe ``ImageToTensorCalculator`` (CPU) with a ROI.

  Bit for bit MediaPipe's tensors, rotated crops and crops that leave the
  image included (docs/semantics.md §7.5; the border fills as
  ``options.border_mode`` says, UNSPECIFIED being REPLICATE).

  Args:
    images: ``[..., H, W, C]`` ``uint8`` (or float in 0..255), one size.
    rects: :class:`Rects` ``[..., N]`` whose leading dimensions broadcast to
      the images'.
    options: :class:`~jaxanchors.letterbox.ImageToTensorOptions`, or a
      :class:`RoiOptions` (its ``crop``) or a preset carrying them (``.roi``).

  Returns:
    ``(tensors [..., N, h, w, C] float32, LetterboxTransform)`` whose padding
    ``[..., N, 4]`` is MediaPipe's ``LETTERBOX_PADDING`` and matrix
    ``[..., N, 4, 4]`` its ``MATRIX`` (tensor-normalised to image-normalised).
    Slots whose rect is invalid (or empty) hold zeros.

  Examples:
    >>> import numpy as np, jax.numpy as jnp
    >>> image = np.arange(16 * 16 * 3, dtype=np.uint8).reshape(16, 16, 3)
    >>> r = Rects(*(jnp.array([x]) for x in (0.5, 0.5, 0.5, 0.5, 0.0)), jnp.array([True]))
    >>> o = ImageToTensorOptions(output_tensor_width=8, output_tensor_height=8,
    ...                          output_tensor_float_range=(0, 255))
    >>> tensors, t = crop(image, r, o)
    >>> bool((tensors[0] == image[4:12, 4:12]).all())  # the centre, pixel for pixel
    True
  """
  if isinstance(options, RoiOptions):
    options = options.crop
  elif not isinstance(options, ImageToTensorOptions) and isinstance(
      getattr(options, "roi", None), RoiOptions):
    options = options.roi.crop
  options = v.resolve_options(options, ImageToTensorOptions, None)
  images = jnp.asarray(images)
  v.check_image("images", images)
  if not isinstance(rects, Rects):
    raise TypeError(f"rects must be a jaxanchors.roi.Rects, got {type(rects).__name__}")
  lead = jnp.shape(rects.valid)
  if len(lead) < 1:
    raise ValueError(f"rects must have shape [..., N], got {lead}")
  for name, a in zip(Rects._fields, rects):
    if jnp.shape(a) != lead:
      raise ValueError(f"Rects.{name} has shape {jnp.shape(a)}, Rects.valid {lead}")
  v.check_broadcasts("rects", jnp.zeros(lead[:-1]), images.shape[:-3],
                     "images' batch shape (rect slots excluded)")
  rects = Rects(*(jnp.asarray(a, jnp.float32) for a in rects[:5]),
                jnp.asarray(rects.valid, bool))
  return _crop(images, rects, options)


def project_landmarks(landmarks: ArrayLike, rects: Rects) -> jax.Array:
  """Crop-normalised landmarks to image-normalised: MediaPipe ``LandmarkProjectionCalculator``.

  The NORM_RECT form the hand and face graphs use (§7.4): around the crop's
  centre, rotated by the rect's rotation, scaled by its size, moved to its
  centre; ``z`` (if present) scaled by the rect's width. Apply
  :func:`~jaxanchors.letterbox.remove_letterbox`-style padding removal first
  when the crop kept the aspect ratio.

  Args:
    landmarks: ``[..., N, L, D]`` with ``D`` 2 (x, y) or 3 (x, y, z),
      fractions of the crop.
    rects: :class:`Rects` ``[..., N]``.

  Returns:
    ``[..., N, L, D]`` float32, fractions of the image.
  """
  lm = jnp.asarray(landmarks, jnp.float32)
  v.check_shape("landmarks", lm, "[..., N, L, D]")
  if lm.shape[-1] not in (2, 3):
    raise ValueError(f"landmarks must end in 2 (x, y) or 3 (x, y, z), got shape {lm.shape}")
  if not isinstance(rects, Rects):
    raise TypeError(f"rects must be a jaxanchors.roi.Rects, got {type(rects).__name__}")
  return _project(lm, rects)


@jax.jit
def _project(lm, rects: Rects):
  expand = lambda a: jnp.asarray(a, jnp.float32)[..., None]  # noqa: E731
  angle = expand(rects.rotation)
  x, y = lm[..., 0] - _F32(0.5), lm[..., 1] - _F32(0.5)
  c, s = _geometry.libm(jnp.cos, angle), _geometry.libm(jnp.sin, angle)
  nx = _mul(c, x) - _mul(s, y)
  ny = _mul(s, x) + _mul(c, y)
  nx = _mul(nx, expand(rects.width)) + expand(rects.x_center)
  ny = _mul(ny, expand(rects.height)) + expand(rects.y_center)
  out = [nx, ny]
  if lm.shape[-1] == 3:
    out.append(lm[..., 2] * expand(rects.width))
  return jnp.stack(out, axis=-1)
