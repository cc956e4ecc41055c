"""SSD anchor generation: MediaPipe's ``SsdAnchorsCalculator``.

Contract (docs/semantics.md §1):

* An anchor table is a float array ``[N, 4]`` whose rows are
  ``[x_center, y_center, w, h]``, normalised to the model input (centres in
  0..1 for the standard path), in MediaPipe's exact order: layer group, row,
  column, then the anchors of one cell (layer by layer inside a merged group;
  aspect ratios in list order, the interpolated anchor last).
* Values reproduce the C++ single-precision rounding step by step (§1.4
  precision summary, §1.6), so MediaPipe's golden files match within their
  1e-5 tolerance and the BlazeFace tables match exactly.
* Anchors depend only on the (static, hashable) options. They are computed once
  per options with NumPy and enter jitted code as constants: calling
  :func:`generate_anchors` inside a user's ``jax.jit`` costs nothing at run time.

Where MediaPipe aborts, returns an error or loops forever, :class:`AnchorOptions`
raises ``ValueError`` at construction instead.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxanchors import _validate as v

__all__ = [
    "AnchorLayer",
    "AnchorOptions",
    "anchor_layers",
    "anchors_numpy",
    "generate_anchors",
    "num_anchors",
]

_F32 = np.float32
# Refuse tables that would not fit comfortably in memory (64 Mi anchors = 1 GiB).
_MAX_ANCHORS = 1 << 26
_MAX_LEVEL = 30  # 2**level must stay a valid int32 stride.

# Fields that must be absent (here: left at their defaults) with fixed_anchors.
_FIXED_EXCLUSIVE = ("input_size_height", "input_size_width", "min_scale", "max_scale", "num_layers")


@v.hash_once
@dataclasses.dataclass(frozen=True, kw_only=True)
class AnchorOptions(v.OptionsMixin):
  """Options of MediaPipe's ``SsdAnchorsCalculator`` (docs/semantics.md §1.2).

  Same field names and defaults as the proto.

  Sequences are stored as tuples, so options are hashable and can be static
  arguments of jitted functions. Construction validates the whole
  configuration (docs/semantics.md §1.3, §1.5) and raises ``ValueError``/``TypeError``
  naming the field where MediaPipe would abort, fail or hang.

  Deliberate differences from MediaPipe, all rejections of configurations it
  accepts but that cannot be meant:

  * ``strides`` must have exactly ``num_layers`` entries on the standard path,
    also with explicit feature maps (MediaPipe hangs with fewer and silently
    merges extra layers with more).
  * ``feature_map_width`` without ``feature_map_height`` is rejected
    (MediaPipe ignores the widths).
  * ``fixed_anchor_size`` with ``multiscale_anchor_generation`` is rejected
    (MediaPipe ignores it on that path).
  * Standard-path sizes would all be 0 when ``min_scale`` and ``max_scale``
    are both 0 and ``fixed_anchor_size`` is false: rejected.
  * A configuration that yields no anchors, or more than 2**26, is rejected.
  * With ``fixed_anchors``, MediaPipe rejects the *presence* of input sizes,
    scales and ``num_layers``. A dataclass cannot tell "explicitly 0" from
    "unset", so here non-default values are rejected; :meth:`from_dict`, which
    sees which keys are present, rejects their presence exactly as MediaPipe.

  Attributes:
    input_size_width, input_size_height: model input size in pixels; grid
      sizes derive from them and the strides (and, multiscale, the centre
      offset and normalisation).
    min_scale, max_scale: anchor scale of the first and the last layer
      (standard path); the layers in between are interpolated.
    anchor_offset_x, anchor_offset_y: anchor centre inside its cell, in cell
      units (standard path).
    num_layers: number of layers of the standard path.
    feature_map_width, feature_map_height: explicit grid sizes per layer,
      instead of the sizes derived from the strides.
    strides: stride per layer; also groups consecutive layers of equal
      stride into one grid and drives the scales.
    aspect_ratios: width/height ratios of the anchors of every cell.
    reduce_boxes_in_lowest_layer: layer 0 gets MediaPipe's fixed set of three
      anchors instead of ``aspect_ratios``.
    interpolated_scale_aspect_ratio: if > 0 (the default 1.0 is on), one more
      anchor per layer with this ratio and the geometric mean of the layer's
      and the next layer's scales.
    fixed_anchor_size: every anchor gets ``w = h = 1`` (BlazeFace).
    multiscale_anchor_generation: RetinaNet-style pyramid instead of the
      standard path (docs/semantics.md §1.6).
    min_level, max_level: multiscale pyramid levels (stride ``2**level``).
    anchor_scale: multiscale base size in units of the level's stride.
    scales_per_octave: multiscale scales per level.
    normalize_coordinates: multiscale: divide pixel values by the input size.
    fixed_anchors: anchors given explicitly, rows ``(x_center, y_center, w,
      h)`` (mappings with those keys are accepted too); nothing is generated.
  """

  input_size_width: int = 0
  input_size_height: int = 0
  min_scale: float = 0.0
  max_scale: float = 0.0
  anchor_offset_x: float = 0.5
  anchor_offset_y: float = 0.5
  num_layers: int = 0
  feature_map_width: tuple[int, ...] = ()
  feature_map_height: tuple[int, ...] = ()
  strides: tuple[int, ...] = ()
  aspect_ratios: tuple[float, ...] = ()
  reduce_boxes_in_lowest_layer: bool = False
  interpolated_scale_aspect_ratio: float = 1.0
  fixed_anchor_size: bool = False
  multiscale_anchor_generation: bool = False
  min_level: int = 3
  max_level: int = 7
  anchor_scale: float = 4.0
  scales_per_octave: int = 2
  normalize_coordinates: bool = True
  fixed_anchors: tuple[tuple[float, float, float, float], ...] = ()

  def __post_init__(self) -> None:
    self._canonicalise()
    self._check()

  # -- construction helpers -------------------------------------------------

  def _canonicalise(self) -> None:
    w = lambda name: f"AnchorOptions.{name}"  # noqa: E731
    for name in ("input_size_width", "input_size_height", "num_layers", "min_level",
                 "max_level", "scales_per_octave"):
      v.set_field(self, name, v.as_int(w(name), getattr(self, name)))
    for name in ("min_scale", "max_scale", "anchor_offset_x", "anchor_offset_y",
                 "interpolated_scale_aspect_ratio", "anchor_scale"):
      v.set_field(self, name, v.as_float(w(name), getattr(self, name)))
    for name in ("reduce_boxes_in_lowest_layer", "fixed_anchor_size",
                 "multiscale_anchor_generation", "normalize_coordinates"):
      v.set_field(self, name, v.as_bool(w(name), getattr(self, name)))
    for name in ("feature_map_width", "feature_map_height", "strides"):
      items = v.as_tuple(w(name), getattr(self, name))
      v.set_field(self, name, tuple(
          v.as_int(f"{w(name)}[{i}]", x, minimum=1) for i, x in enumerate(items)))
    ratios = v.as_tuple(w("aspect_ratios"), self.aspect_ratios)
    v.set_field(self, "aspect_ratios", tuple(
        v.as_float(f"{w('aspect_ratios')}[{i}]", r, positive=True) for i, r in enumerate(ratios)))
    rows = []
    for i, row in enumerate(v.as_tuple(w("fixed_anchors"), self.fixed_anchors)):
      where = f"{w('fixed_anchors')}[{i}]"
      if isinstance(row, Mapping):
        missing = {"x_center", "y_center", "w", "h"} - set(row)
        if missing:
          raise ValueError(f"{where} lacks {', '.join(sorted(missing))}: {row!r}")
        row = (row["x_center"], row["y_center"], row["w"], row["h"])
      row = v.as_tuple(where, row)
      if len(row) != 4:
        raise ValueError(f"{where} must be (x_center, y_center, w, h), got {row!r}")
      rows.append(tuple(v.as_float(f"{where}[{j}]", x) for j, x in enumerate(row)))
    v.set_field(self, "fixed_anchors", tuple(rows))

  def _check(self) -> None:
    if self.fixed_anchors:
      # docs/semantics.md §1.3 step 1.
      defaults = {f.name: f.default for f in dataclasses.fields(self)}
      for name in _FIXED_EXCLUSIVE:
        if getattr(self, name) != defaults[name]:
          raise ValueError(f"AnchorOptions.{name}={getattr(self, name)!r} cannot be combined "
                           "with fixed_anchors (MediaPipe rejects it)")
      if self.multiscale_anchor_generation:
        raise ValueError("AnchorOptions.multiscale_anchor_generation=True cannot be combined "
                         "with fixed_anchors (MediaPipe rejects it)")
      return

    # docs/semantics.md §1.3 steps 2-3.
    if not self.feature_map_height and not self.strides:
      raise ValueError("AnchorOptions: both feature_map_height and strides are empty; "
                       "give strides (and optionally explicit feature maps)")
    if self.feature_map_width and not self.feature_map_height:
      raise ValueError(f"AnchorOptions.feature_map_width={self.feature_map_width!r} is given "
                       "without feature_map_height; MediaPipe would ignore it")
    if self.multiscale_anchor_generation:
      self._check_multiscale()
    else:
      self._check_standard()
    n = num_anchors(self)
    if n == 0:
      raise ValueError("AnchorOptions: this configuration yields no anchors "
                       f"(aspect_ratios={self.aspect_ratios!r}, "
                       f"interpolated_scale_aspect_ratio={self.interpolated_scale_aspect_ratio!r})")
    if n > _MAX_ANCHORS:
      raise ValueError(f"AnchorOptions: this configuration yields {n} anchors, more than "
                       f"the supported {_MAX_ANCHORS}")

  def _check_grid_lists(self, num: int, what: str) -> None:
    if self.feature_map_height:
      if len(self.feature_map_height) != num:
        raise ValueError(f"AnchorOptions.feature_map_height has {len(self.feature_map_height)} "
                         f"entries, expected {what} = {num}")
      if len(self.feature_map_width) != len(self.feature_map_height):
        raise ValueError(f"AnchorOptions.feature_map_width has {len(self.feature_map_width)} "
                         f"entries, feature_map_height has {len(self.feature_map_height)}")
    else:
      if len(self.strides) != num:
        raise ValueError(f"AnchorOptions.strides has {len(self.strides)} entries, expected "
                         f"{what} = {num}")
      for name in ("input_size_width", "input_size_height"):
        if getattr(self, name) < 1:
          raise ValueError(f"AnchorOptions.{name} must be >= 1 to derive grid sizes from "
                           f"strides, got {getattr(self, name)}")

  def _check_standard(self) -> None:
    if self.num_layers < 1:
      raise ValueError(f"AnchorOptions.num_layers must be >= 1, got {self.num_layers}")
    self._check_grid_lists(self.num_layers, "num_layers")
    if len(self.strides) != self.num_layers:
      # With explicit feature maps MediaPipe still groups layers by stride: fewer
      # strides than layers hang, more silently merge extra layers.
      raise ValueError(f"AnchorOptions.strides has {len(self.strides)} entries, expected "
                       f"num_layers = {self.num_layers} (strides drive layer grouping and "
                       "scales even with explicit feature maps)")
    for name in ("min_scale", "max_scale"):
      if getattr(self, name) < 0:
        raise ValueError(f"AnchorOptions.{name} must be >= 0, got {getattr(self, name)}")
    if not self.fixed_anchor_size and self.min_scale == 0 and self.max_scale == 0:
      raise ValueError("AnchorOptions.min_scale and max_scale are both 0 with "
                       "fixed_anchor_size=False: every anchor would have size 0")

  def _check_multiscale(self) -> None:
    if not 0 <= self.min_level <= _MAX_LEVEL:
      raise ValueError(f"AnchorOptions.min_level must be in [0, {_MAX_LEVEL}], got {self.min_level}")
    if not self.min_level <= self.max_level <= _MAX_LEVEL:
      raise ValueError(f"AnchorOptions.max_level must be in [min_level={self.min_level}, "
                       f"{_MAX_LEVEL}], got {self.max_level}")
    levels = self.max_level - self.min_level + 1
    self._check_grid_lists(levels, "max_level - min_level + 1")
    for name in ("input_size_width", "input_size_height"):
      if getattr(self, name) < 1:
        raise ValueError(f"AnchorOptions.{name} must be >= 1 for multiscale anchors, "
                         f"got {getattr(self, name)}")
    if not self.anchor_scale > 0:
      raise ValueError(f"AnchorOptions.anchor_scale must be > 0, got {self.anchor_scale}")
    if self.scales_per_octave < 1:
      raise ValueError(f"AnchorOptions.scales_per_octave must be >= 1, got {self.scales_per_octave}")
    if not self.aspect_ratios:
      raise ValueError("AnchorOptions.aspect_ratios must not be empty for multiscale anchors")
    if self.fixed_anchor_size:
      raise ValueError("AnchorOptions.fixed_anchor_size=True is not honoured by "
                       "multiscale_anchor_generation; leave it False")

  # -- dict / JSON ------------------------------------------------------------

  @classmethod
  def dict_in(cls, data: dict[str, Any]) -> dict[str, Any]:
    """A key that is present counts as set, as a proto has-bit: with
    ``fixed_anchors``, presence of any of the input sizes, scales or
    ``num_layers`` is an error, whatever its value (docs/semantics.md §1.3 step 1).
    """
    if data.get("fixed_anchors"):
      present = [k for k in _FIXED_EXCLUSIVE if k in data]
      if present:
        raise ValueError(f"AnchorOptions: {', '.join(present)} cannot be set together with "
                         "fixed_anchors (MediaPipe rejects it)")
    return data

  def dict_out(self, data: dict[str, Any]) -> dict[str, Any]:
    """``fixed_anchors`` rows are written as proto ``Anchor`` mappings."""
    if self.fixed_anchors:
      data["fixed_anchors"] = [dict(x_center=r[0], y_center=r[1], w=r[2], h=r[3])
                               for r in self.fixed_anchors]
    return data


class AnchorLayer(NamedTuple):
  """One group of consecutive layers sharing a grid (a pyramid level when multiscale).

  ``aspect_ratios`` and ``scales`` list the anchors of one cell, in output
  order; for multiscale, ``scales`` are multiples of the level's base size.
  """

  layers: tuple[int, ...]
  stride: int
  grid_height: int
  grid_width: int
  aspect_ratios: tuple[float, ...]
  scales: tuple[float, ...]

  @property
  def anchors_per_cell(self) -> int:
    return len(self.aspect_ratios)

  @property
  def num_anchors(self) -> int:
    return self.grid_height * self.grid_width * self.anchors_per_cell


def _resolve(options: Any) -> AnchorOptions:
  return v.resolve_options(options, AnchorOptions, "anchors")


def _grid(options: AnchorOptions, index: int) -> tuple[int, int]:
  """Grid (height, width) of layer ``index`` (docs/semantics.md §1.4 "Grid size")."""
  if options.feature_map_height:
    return options.feature_map_height[index], options.feature_map_width[index]
  stride = _F32(options.strides[index])
  return (int(math.ceil(_F32(options.input_size_height) / stride)),
          int(math.ceil(_F32(options.input_size_width) / stride)))


def _layer_scale(options: AnchorOptions, index: int) -> np.float32:
  """``CalculateScale`` with the C++ mix of single and double precision (§1.4)."""
  n = len(options.strides)
  lo, hi = _F32(options.min_scale), _F32(options.max_scale)
  if n == 1:
    return _F32((lo + hi) * _F32(0.5))
  diff = np.float64(hi - lo)  # single-precision subtraction, then widened
  return _F32(np.float64(lo) + diff * index / np.float64(_F32(n - 1)))


def _standard_cells(options: AnchorOptions) -> list[tuple[tuple[int, ...], list[tuple[Any, Any]]]]:
  """Layer groups with the (ratio, scale) list of one cell, as float32 (§1.4)."""
  n = len(options.strides)
  scales = [_layer_scale(options, i) for i in range(n)]
  interp = options.interpolated_scale_aspect_ratio
  groups = []
  layer = 0
  while layer < options.num_layers:
    cell: list[tuple[Any, Any]] = []
    j = layer
    while j < n and options.strides[j] == options.strides[layer]:
      if j == 0 and options.reduce_boxes_in_lowest_layer:
        cell += [(_F32(1.0), _F32(0.1)), (_F32(2.0), scales[0]), (_F32(0.5), scales[0])]
      else:
        cell += [(_F32(r), scales[j]) for r in options.aspect_ratios]
        if interp > 0:
          s_next = _F32(1.0) if j == n - 1 else scales[j + 1]
          cell.append((_F32(interp), np.sqrt(_F32(scales[j] * s_next))))
      j += 1
    groups.append((tuple(range(layer, j)), cell))
    layer = j
  return groups


def anchor_layers(options: AnchorOptions) -> tuple[AnchorLayer, ...]:
  """Per-group breakdown (grid, anchors per cell, scales) without building anchors.

  Returns an empty tuple for ``fixed_anchors``.

  Examples:
    >>> from jaxanchors import presets
    >>> [(l.grid_height, l.anchors_per_cell) for l in anchor_layers(presets.get("face_short_range").anchors)]
    [(16, 2), (8, 6)]
  """
  options = _resolve(options)
  if options.fixed_anchors:
    return ()
  if options.multiscale_anchor_generation:
    per_cell = [(a, 2.0 ** (k / options.scales_per_octave))
                for a in options.aspect_ratios for k in range(options.scales_per_octave)]
    out = []
    for i, level in enumerate(range(options.min_level, options.max_level + 1)):
      fh, fw = _grid(options, i)
      out.append(AnchorLayer((i,), 2**level, fh, fw, tuple(a for a, _ in per_cell),
                             tuple(float(_F32(s)) for _, s in per_cell)))
    return tuple(out)
  out = []
  for layers, cell in _standard_cells(options):
    fh, fw = _grid(options, layers[0])
    out.append(AnchorLayer(layers, options.strides[layers[0]], fh, fw,
                           tuple(float(r) for r, _ in cell), tuple(float(s) for _, s in cell)))
  return tuple(out)


def num_anchors(options: AnchorOptions) -> int:
  """Number of anchors the options produce, computed without building them.

  Examples:
    >>> num_anchors(AnchorOptions(num_layers=1, strides=(4,), input_size_width=192,
    ...                           input_size_height=192, aspect_ratios=(1.0,),
    ...                           interpolated_scale_aspect_ratio=0.0, fixed_anchor_size=True))
    2304
  """
  options = _resolve(options)
  if options.fixed_anchors:
    return len(options.fixed_anchors)
  return sum(layer.num_anchors for layer in anchor_layers(options))


def _cell_table(xc: np.ndarray, yc: np.ndarray, w: np.ndarray, h: np.ndarray) -> np.ndarray:
  """Rows ``[xc, yc, w, h]`` for every (row, column, anchor of the cell), in that order."""
  table = np.empty((len(yc), len(xc), len(w), 4), _F32)
  table[..., 0] = xc[None, :, None]
  table[..., 1] = yc[:, None, None]
  table[..., 2] = w
  table[..., 3] = h
  return table.reshape(-1, 4)


def _standard_numpy(options: AnchorOptions) -> np.ndarray:
  tables = []
  for layers, cell in _standard_cells(options):
    fh, fw = _grid(options, layers[0])
    ratio = np.array([r for r, _ in cell], _F32)
    scale = np.array([s for _, s in cell], _F32)
    root = np.sqrt(ratio)
    if options.fixed_anchor_size:
      w = h = np.ones(len(cell), _F32)
    else:
      w, h = scale * root, scale / root
    # f32(x + offset) then a single-precision division by the grid size.
    xc = (np.arange(fw, dtype=_F32) + _F32(options.anchor_offset_x)) / _F32(fw)
    yc = (np.arange(fh, dtype=_F32) + _F32(options.anchor_offset_y)) / _F32(fh)
    tables.append(_cell_table(xc, yc, w, h))
  return np.concatenate(tables)


def _multiscale_numpy(options: AnchorOptions) -> np.ndarray:
  tables = []
  ratios = np.array(options.aspect_ratios, _F32)
  octave = np.array([2.0 ** (k / options.scales_per_octave)
                     for k in range(options.scales_per_octave)], np.float64).astype(_F32)
  in_h, in_w = options.input_size_height, options.input_size_width
  for i, level in enumerate(range(options.min_level, options.max_level + 1)):
    stride = _F32(2.0**level)
    base = _F32(stride * _F32(options.anchor_scale))
    half = _F32(stride / _F32(2.0))
    off_y = half if (in_h % 2**level == 0 or in_h == 1) else _F32(0.0)
    off_x = half if (in_w % 2**level == 0 or in_w == 1) else _F32(0.0)
    fh, fw = _grid(options, i)
    root = np.sqrt(ratios)[:, None]
    # Aspect ratio outer, scale inner: [A, S] flattened row-major.
    h = ((octave[None, :] * base) / root).reshape(-1)
    w = ((octave[None, :] * root) * base).reshape(-1)
    yc = np.arange(fh, dtype=_F32) * stride + off_y
    xc = np.arange(fw, dtype=_F32) * stride + off_x
    if options.normalize_coordinates:
      h, yc = h / _F32(in_h), yc / _F32(in_h)
      w, xc = w / _F32(in_w), xc / _F32(in_w)
    tables.append(_cell_table(xc, yc, w, h))
  return np.concatenate(tables)


@functools.lru_cache(maxsize=64)
def _anchors_cached(options: AnchorOptions) -> np.ndarray:
  if options.fixed_anchors:
    out = np.array(options.fixed_anchors, _F32).reshape(-1, 4)
  elif options.multiscale_anchor_generation:
    out = _multiscale_numpy(options)
  else:
    out = _standard_numpy(options)
  out.setflags(write=False)
  return out


def anchors_numpy(options: AnchorOptions) -> np.ndarray:
  """The anchor table as a read-only float32 NumPy array ``[N, 4]``.

  Same values as :func:`generate_anchors`; cached per options.
  """
  return _anchors_cached(_resolve(options))


@functools.partial(jax.jit, static_argnames=("options", "dtype"))
def _generate(options: AnchorOptions, dtype: Any) -> jax.Array:
  return jnp.asarray(_anchors_cached(options), dtype=dtype)


def generate_anchors(options: AnchorOptions, *, dtype: Any = jnp.float32) -> jax.Array:
  """MediaPipe ``SsdAnchorsCalculator`` anchors as a ``[N, 4]`` array.

  Rows are ``[x_center, y_center, w, h]`` in MediaPipe's order (module
  docstring). ``options`` is static: the table is built once per options and
  becomes a constant of any jitted function that calls this.

  Args:
    options: :class:`AnchorOptions`, or a preset carrying them as ``.anchors``.
    dtype: output dtype; values are computed in float32 as MediaPipe does and
      then cast.

  Returns:
    ``jax.Array`` of shape ``[num_anchors(options), 4]``.

  Examples:
    >>> from jaxanchors import presets
    >>> a = generate_anchors(presets.get("face_short_range"))
    >>> a.shape, a[1].tolist()
    ((896, 4), [0.03125, 0.03125, 1.0, 1.0])
  """
  options = _resolve(options)
  return _generate(options, jnp.dtype(dtype))
