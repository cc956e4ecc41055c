"""Landmark tensors to landmarks: the second stage's post-processing (docs/semantics.md §8).

A landmark model (hand, face mesh, iris, pose; :data:`jaxanchors.models.LANDMARK_MODELS`)
returns, for each region of interest, a flat tensor of ``num_landmarks x D``
values: ``x, y`` in pixels of its input crop, then ``z`` and, for pose,
visibility and presence logits. MediaPipe turns it into landmarks in the
image with three calculators, each here as one function:

* ``TensorsToLandmarksCalculator`` (:func:`decode_landmarks`): per landmark
  ``x, y`` (flipped if asked), ``z``, visibility and presence (through a
  sigmoid if asked); normalised to fractions of the crop (``x / width``,
  ``y / height``, ``z / width / normalize_z``) for the image landmarks, left
  in the model's units for the hand's world landmarks;
* ``RefineLandmarksFromHeatmapCalculator`` (:func:`refine_from_heatmap`): the
  pose graph moves each landmark to the confidence-weighted centre of its
  heatmap around it;
* ``LandmarkLetterboxRemovalCalculator`` (:func:`remove_letterbox`): undoes
  the padding of a crop that kept its aspect ratio;
* ``LandmarkProjectionCalculator``: from the crop to the image through the
  region's rotated rectangle, :func:`jaxanchors.roi.project_landmarks`;
* ``WorldLandmarkProjectionCalculator`` (:func:`project_world_landmarks`):
  turns world landmarks by the rectangle's rotation.

Arithmetic is float32 in MediaPipe's order (every quotient correctly
rounded, under ``jit`` and ``vmap`` alike; products not fused into adds), so
values equal MediaPipe's given the same tensors; the sigmoid's ``exp`` and the
rotations' ``sin``/``cos`` are float64 results rounded, which can differ from
the C library's float versions by an ulp. A sigmoid below float32's smallest
normal number (a logit under about -87.3) is 0 on devices that flush
subnormals, XLA:CPU among them, where MediaPipe keeps the subnormal.
:data:`GRAPH_OPTIONS` holds the options of the shipped graphs.
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

__all__ = [
    "Activation",
    "GRAPH_OPTIONS",
    "HeatmapRefinementOptions",
    "LandmarkOptions",
    "Landmarks",
    "POSE_REFINEMENT",
    "decode_landmarks",
    "project_world_landmarks",
    "refine_from_heatmap",
    "remove_letterbox",
]

_F32 = np.float32


class Activation(enum.Enum):
  """``TensorsToLandmarksCalculatorOptions.Activation``."""

  NONE = 0
  SIGMOID = 1


@v.hash_once
@dataclasses.dataclass(frozen=True, kw_only=True)
class LandmarkOptions(v.OptionsMixin):
  """``TensorsToLandmarksCalculatorOptions``, with its field names and defaults.

  Attributes:
    num_landmarks: landmarks in the tensor (required, >= 1).
    input_image_width, input_image_height: the model's input size in pixels;
      needed for normalised landmarks and for flips.
    flip_vertically, flip_horizontally: ``y -> height - y``, ``x -> width - x``.
    normalize_z: normalised ``z`` is divided by the width and then by this.
    visibility_activation, presence_activation: :class:`Activation` of the
      4th and 5th value of each landmark.
  """

  num_landmarks: int
  input_image_width: int | None = None
  input_image_height: int | None = None
  flip_vertically: bool = False
  flip_horizontally: bool = False
  normalize_z: float = 1.0
  visibility_activation: Activation = Activation.NONE
  presence_activation: Activation = Activation.NONE

  def __post_init__(self) -> None:
    v.set_field(self, "num_landmarks",
                v.as_int("LandmarkOptions.num_landmarks", self.num_landmarks, minimum=1))
    for name in ("input_image_width", "input_image_height"):
      value = getattr(self, name)
      if value is not None:
        v.set_field(self, name, v.as_int(f"LandmarkOptions.{name}", value, minimum=1))
    for name in ("flip_vertically", "flip_horizontally"):
      v.set_field(self, name, v.as_bool(f"LandmarkOptions.{name}", getattr(self, name)))
    z = v.as_float("LandmarkOptions.normalize_z", self.normalize_z)
    if z == 0:
      raise ValueError("LandmarkOptions.normalize_z must not be 0")
    v.set_field(self, "normalize_z", z)
    for name in ("visibility_activation", "presence_activation"):
      v.set_field(self, name, v.as_enum(f"LandmarkOptions.{name}", Activation,
                                        getattr(self, name)))


GRAPH_OPTIONS: dict[str, LandmarkOptions] = {
    # hand_landmark_cpu: image landmarks, then world landmarks (metres, no
    # normalisation).
    "hand_landmark": LandmarkOptions(num_landmarks=21, input_image_width=224,
                                     input_image_height=224, normalize_z=0.4),
    "hand_world_landmark": LandmarkOptions(num_landmarks=21),
    # face_landmark_cpu (without attention).
    "face_landmark": LandmarkOptions(num_landmarks=468, input_image_width=192,
                                     input_image_height=192),
    # pose_landmark_by_roi_cpu: 33 landmarks, 2 auxiliary ones (the next
    # frame's region) and 4 more, with visibility and presence logits.
    "pose_landmark": LandmarkOptions(num_landmarks=39, input_image_width=256,
                                     input_image_height=256, normalize_z=1.0,
                                     visibility_activation=Activation.SIGMOID,
                                     presence_activation=Activation.SIGMOID),
    # ... and its world landmarks (the model's fifth output, metres).
    "pose_world_landmark": LandmarkOptions(num_landmarks=39),
}
"""Options of the ``TensorsToLandmarksCalculator`` nodes of MediaPipe 0.10.21's
landmark graphs (checked against the recorded graphs in the tests)."""


@v.hash_once
@dataclasses.dataclass(frozen=True, kw_only=True)
class HeatmapRefinementOptions(v.OptionsMixin):
  """``RefineLandmarksFromHeatmapCalculatorOptions``, with its field names and defaults.

  Attributes:
    kernel_size: the window around each landmark: ``2 * offset + 1`` cells
      wide with ``offset = (kernel_size - 1) / 2`` truncated toward zero as C++
      divides (an even size acts as the odd one below it, 0 as 1; below 0 the
      window is empty and nothing moves).
    min_confidence_to_refine: a landmark moves only when its window's
      largest confidence reaches this.
    refine_presence, refine_visibility: also lower presence / visibility to
      the window's largest confidence.
  """

  kernel_size: int = 9
  min_confidence_to_refine: float = 0.5
  refine_presence: bool = False
  refine_visibility: bool = False

  def __post_init__(self) -> None:
    v.set_field(self, "kernel_size", v.as_int("HeatmapRefinementOptions.kernel_size",
                                              self.kernel_size))
    v.set_field(self, "min_confidence_to_refine",
                v.as_float("HeatmapRefinementOptions.min_confidence_to_refine",
                           self.min_confidence_to_refine))
    for name in ("refine_presence", "refine_visibility"):
      v.set_field(self, name, v.as_bool(f"HeatmapRefinementOptions.{name}", getattr(self, name)))


POSE_REFINEMENT = HeatmapRefinementOptions(kernel_size=7, min_confidence_to_refine=0.5)
"""The pose landmark graph's ``RefineLandmarksFromHeatmapCalculator`` options."""


class Landmarks(NamedTuple):
  """Decoded landmarks of ``[...]`` regions (a pytree).

  Attributes:
    points: ``[..., L, 3]`` float32 ``x, y, z`` (``z`` is 0, the proto's
      unset value, for a model with fewer values per landmark; ``y`` too for
      one value).
    visibility: ``[..., L]`` float32, or ``None`` when the model gives none
      (fewer than 4 values per landmark: MediaPipe leaves it unset).
    presence: ``[..., L]`` float32, or ``None`` (fewer than 5 values).
  """

  points: jax.Array
  visibility: jax.Array | None
  presence: jax.Array | None


def _sigmoid(x: jax.Array) -> jax.Array:
  """``1 / (1 + expf(-x))``: ``expf`` as the float64 ``exp`` rounded (XLA's float32
  ``exp`` can be an ulp off the C library's)."""
  one = jnp.ones((), jnp.float32)
  return _geometry.divide(one, one + _geometry.libm(jnp.exp, -x))


def _activate(x: jax.Array, activation: Activation) -> jax.Array:
  return _sigmoid(x) if activation is Activation.SIGMOID else x


@functools.partial(jax.jit, static_argnames=("options", "normalized"))
def _decode(raw: jax.Array, options: LandmarkOptions, normalized: bool) -> Landmarks:
  lead, values = raw.shape[:-1], raw.shape[-1]
  dims = values // options.num_landmarks
  lm = raw[..., :options.num_landmarks * dims].reshape(lead + (options.num_landmarks, dims))
  zero = jnp.zeros(lm.shape[:-1], jnp.float32)
  x = lm[..., 0]
  y = lm[..., 1] if dims > 1 else zero
  z = lm[..., 2] if dims > 2 else zero
  if options.flip_horizontally:
    x = _F32(options.input_image_width) - x
  if options.flip_vertically and dims > 1:
    y = _F32(options.input_image_height) - y
  if normalized:
    width, height = _F32(options.input_image_width), _F32(options.input_image_height)
    x = _geometry.divide(x, width)
    y = _geometry.divide(y, height)
    # Two roundings, as MediaPipe divides (each quotient rounded to float32).
    z = _geometry.divide(_geometry.divide(z, width), _F32(options.normalize_z))
  visibility = _activate(lm[..., 3], options.visibility_activation) if dims > 3 else None
  presence = _activate(lm[..., 4], options.presence_activation) if dims > 4 else None
  return Landmarks(jnp.stack([x, y, z], axis=-1), visibility, presence)


def decode_landmarks(raw: ArrayLike, options: LandmarkOptions, *,
                     normalized: bool = True) -> Landmarks:
  """MediaPipe ``TensorsToLandmarksCalculator``: a landmark tensor to landmarks.

  Args:
    raw: ``[..., V]`` float32: each region's tensor flattened (a model output
      of shape ``[..., 1, 1, 1404]`` reshaped to ``[..., 1404]``), ``V`` at
      least ``num_landmarks``; each landmark reads ``D = V // num_landmarks``
      consecutive values, as MediaPipe does.
    options: :class:`LandmarkOptions` (static), e.g. ``GRAPH_OPTIONS["hand_landmark"]``.
    normalized: ``True`` for the ``NORM_LANDMARKS`` output (fractions of the
      crop), ``False`` for ``LANDMARKS`` (the model's units, flips applied).

  Returns:
    :class:`Landmarks` ``[..., L]``.

  Raises:
    ValueError: ``raw`` with fewer values than landmarks, or normalised
      landmarks or flips without the input size (MediaPipe refuses both).
    TypeError: ``raw`` not float32, or ``options`` not :class:`LandmarkOptions`.

  Examples:
    >>> import numpy as np
    >>> opts = LandmarkOptions(num_landmarks=2, input_image_width=224, input_image_height=224)
    >>> raw = np.array([[112.0, 56.0, 22.4, 0.0, 224.0, -22.4]], np.float32)
    >>> decode_landmarks(raw, opts).points.tolist()
    [[[0.5, 0.25, 0.10000000149011612], [0.0, 1.0, -0.10000000149011612]]]
  """
  if not isinstance(options, LandmarkOptions):
    raise TypeError(f"options must be LandmarkOptions, got {type(options).__name__}")
  normalized = v.as_bool("normalized", normalized)
  raw = v.as_array(raw)
  if raw.dtype != jnp.float32:
    raise TypeError(f"raw must be a float32 array, got dtype {raw.dtype}")
  v.check_shape("raw", raw, "[..., V]")
  if raw.shape[-1] < options.num_landmarks:
    raise ValueError(f"raw has {raw.shape[-1]} values per region, fewer than "
                     f"num_landmarks={options.num_landmarks}")
  sized = options.input_image_width is not None and options.input_image_height is not None
  if (normalized or options.flip_horizontally or options.flip_vertically) and not sized:
    raise ValueError("LandmarkOptions.input_image_width and input_image_height are needed for "
                     "normalized landmarks and for flips")
  return _decode(raw, options, normalized)


def _points(landmarks: Landmarks) -> jax.Array:
  """The checked ``[..., L, 3]`` float32 points of ``landmarks``."""
  if not isinstance(landmarks, Landmarks):
    raise TypeError(f"landmarks must be jaxanchors.landmarks.Landmarks, got "
                    f"{type(landmarks).__name__}")
  points = v.as_array(landmarks.points)
  if points.dtype != jnp.float32:
    raise TypeError(f"landmarks.points must be float32, got dtype {points.dtype}")
  v.check_shape("landmarks.points", points, "[..., L, 3]")
  return points


@jax.jit
def _remove_letterbox(points: jax.Array, padding: jax.Array) -> jax.Array:
  left, top = padding[..., 0], padding[..., 1]
  across = padding[..., 0] + padding[..., 2]
  down = padding[..., 1] + padding[..., 3]
  one = jnp.ones((), jnp.float32)
  x = _geometry.divide(points[..., 0] - left, one - across)
  y = _geometry.divide(points[..., 1] - top, one - down)
  z = _geometry.divide(points[..., 2], one - across)
  return jnp.stack([x, y, z], axis=-1)


def remove_letterbox(landmarks: Landmarks, padding: ArrayLike) -> Landmarks:
  """MediaPipe ``LandmarkLetterboxRemovalCalculator``: crop landmarks without the crop's padding.

  ``x' = (x - left) / (1 - (left + right))``, ``y' = (y - top) / (1 - (top +
  bottom))``, ``z' = z / (1 - (left + right))``; visibility and presence pass
  unchanged.

  Args:
    landmarks: :class:`Landmarks` ``[..., L]`` (normalised).
    padding: ``[..., 4]`` float32 ``[left, top, right, bottom]`` fractions, the
      crop's ``LETTERBOX_PADDING`` (e.g. :func:`jaxanchors.roi.crop`'s
      transforms' ``padding``), batched like the landmarks' leading dimensions.

  Returns:
    :class:`Landmarks` ``[..., L]``.
  """
  points = _points(landmarks)
  padding = jnp.asarray(padding, jnp.float32)
  v.check_shape("padding", padding, "[..., 4]")
  v.check_broadcasts("padding", padding[..., :1], points.shape[:-2] + (1,),
                     "the landmarks' leading dimensions")
  return landmarks._replace(points=_remove_letterbox(points, padding[..., None, :]))


@jax.jit
def _rotate(points: jax.Array, rotation: jax.Array) -> jax.Array:
  # cos and sin rounded from float64, as the rect code does (docs/semantics.md §7).
  cosa = _geometry.libm(jnp.cos, rotation[..., None])
  sina = _geometry.libm(jnp.sin, rotation[..., None])
  x, y = points[..., 0], points[..., 1]
  mul = _geometry.signed_product
  return jnp.stack([mul(cosa, x) - mul(sina, y), mul(sina, x) + mul(cosa, y), points[..., 2]],
                   axis=-1)


def project_world_landmarks(landmarks: Landmarks, rotation: ArrayLike) -> Landmarks:
  """MediaPipe ``WorldLandmarkProjectionCalculator``: world landmarks turned by the rect's rotation.

  ``x' = cos(r) x - sin(r) y``, ``y' = sin(r) x + cos(r) y``, ``z`` unchanged.

  Args:
    landmarks: :class:`Landmarks` ``[..., L]`` (world landmarks, not normalised).
    rotation: ``[...]`` radians, e.g. :class:`jaxanchors.roi.Rects`'s ``rotation``.

  Returns:
    :class:`Landmarks` ``[..., L]``.
  """
  points = _points(landmarks)
  rotation = jnp.asarray(rotation, jnp.float32)
  v.check_broadcasts("rotation", rotation, points.shape[:-2], "the landmarks' leading dimensions")
  return landmarks._replace(points=_rotate(points, rotation))


@functools.partial(jax.jit, static_argnames=("options",))
def _refine(landmarks: Landmarks, heatmap: jax.Array,
            options: HeatmapRefinementOptions) -> Landmarks:
  height, width, num = heatmap.shape[-3:]
  points = landmarks.points
  flat = heatmap.reshape(heatmap.shape[:-3] + (height * width, num))
  # The cell under each landmark: the float product truncated toward zero (a
  # C++ float-to-int conversion); landmarks off the heatmap stay as they are.
  cells = []
  for axis, size in ((0, width), (1, height)):
    product = points[..., axis] * _F32(size)
    cells.append((jnp.trunc(jnp.clip(product, -1, size)).astype(jnp.int32),
                  (product > -1) & (product < size)))
  (col, col_ok), (row, row_ok) = cells
  offset = math.trunc((options.kernel_size - 1) / 2)   # C++ integer division
  zero = jnp.zeros(points.shape[:-1], jnp.float32)
  total, weighted_col, weighted_row, best = zero, zero, zero, zero
  # Row by row, column by column, as MediaPipe sums: cells outside the heatmap
  # add zeros, which leave every float32 sum as it is.
  for dr in range(-offset, offset + 1):
    for dc in range(-offset, offset + 1):
      r, c = row + dr, col + dc
      inside = (r >= 0) & (r < height) & (c >= 0) & (c < width)
      index = jnp.clip(r, 0, height - 1) * width + jnp.clip(c, 0, width - 1)
      value = jnp.take_along_axis(flat, index[..., None, :], axis=-2)[..., 0, :]
      confidence = jnp.where(inside, _sigmoid(value), zero)
      total = total + confidence
      best = jnp.maximum(best, confidence)
      weighted_col = weighted_col + _geometry.product(c.astype(jnp.float32), confidence)
      weighted_row = weighted_row + _geometry.product(r.astype(jnp.float32), confidence)
  on_map = col_ok & row_ok
  seen = on_map & (total > 0)
  move = seen & (best >= _F32(options.min_confidence_to_refine))
  x = _geometry.divide(_geometry.divide(weighted_col, _F32(width)), total)
  y = _geometry.divide(_geometry.divide(weighted_row, _F32(height)), total)
  points = jnp.stack([jnp.where(move, x, points[..., 0]), jnp.where(move, y, points[..., 1]),
                      points[..., 2]], axis=-1)
  visibility, presence = landmarks.visibility, landmarks.presence
  if options.refine_visibility and visibility is not None:
    visibility = jnp.where(seen, jnp.minimum(visibility, best), visibility)
  if options.refine_presence and presence is not None:
    presence = jnp.where(seen, jnp.minimum(presence, best), presence)
  return Landmarks(points, visibility, presence)


def refine_from_heatmap(landmarks: Landmarks, heatmap: ArrayLike,
                        options: HeatmapRefinementOptions) -> Landmarks:
  """MediaPipe ``RefineLandmarksFromHeatmapCalculator``: landmarks moved to their heatmap's peak.

  For each landmark, the heatmap cell under it (``int(x * W)``, ``int(y *
  H)``, truncated toward zero; a landmark off the heatmap is kept) and the
  cells of the ``kernel_size`` window around it that lie on the heatmap give
  confidences ``sigmoid(heatmap)``; when the largest reaches
  ``min_confidence_to_refine``, ``x = sum(col * conf) / W / sum(conf)`` and
  ``y`` alike (float32 sums in MediaPipe's order). ``z`` is kept; presence and
  visibility are lowered to the largest confidence if the options say so.

  Args:
    landmarks: :class:`Landmarks` ``[..., L]``, normalised to the crop (as
      :func:`decode_landmarks` gives them; the pose graph refines all 39).
    heatmap: ``[..., H, W, L]`` float32 logits, one channel per landmark (the
      pose model's fourth output, ``[..., 64, 64, 39]``).
    options: :class:`HeatmapRefinementOptions` (static), e.g. :data:`POSE_REFINEMENT`.

  Returns:
    :class:`Landmarks` ``[..., L]``.
  """
  if not isinstance(options, HeatmapRefinementOptions):
    raise TypeError(f"options must be HeatmapRefinementOptions, got {type(options).__name__}")
  points = _points(landmarks)
  heatmap = v.as_array(heatmap)
  if heatmap.dtype != jnp.float32:
    raise TypeError(f"heatmap must be a float32 array, got dtype {heatmap.dtype}")
  v.check_shape("heatmap", heatmap, "[..., H, W, L]", L=points.shape[-2])
  if heatmap.shape[:-3] != points.shape[:-2]:
    raise ValueError(f"heatmap's leading dimensions {heatmap.shape[:-3]} differ from the "
                     f"landmarks' {points.shape[:-2]}")
  return _refine(landmarks._replace(points=points), heatmap, options)
