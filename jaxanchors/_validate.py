"""Validation and canonicalisation: the one home of every check in the package.

* Option fields: :func:`as_int`, :func:`as_float`, :func:`as_bool`,
  :func:`as_tuple`, :func:`as_enum` canonicalise a value or raise with a
  message that names the field (``"AnchorOptions.strides[2]"``) and the
  offending value, so a bad configuration fails at construction.
* Options: :func:`resolve_options` (options or a preset carrying them) and
  :class:`OptionsMixin` (the dict and JSON round trips every options class
  shares).
* Arrays: :func:`check_float` (and ``int``/``bool``), :func:`check_shape`
  (patterns read like the docstrings, ``"[..., N, 4]"``),
  :func:`keypoints_or_empty`, :func:`check_detections` and the decoder's
  :func:`check_decoder_inputs`. They run at trace time, so a bad call fails
  before anything is computed, also under ``jax.jit``.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import numbers
from typing import Any, Iterable, Mapping, TypeVar

import jax
import jax.numpy as jnp
import numpy as np

E = TypeVar("E", bound=enum.Enum)
O = TypeVar("O")


def as_int(where: str, value: Any, *, minimum: int | None = None) -> int:
  """Returns ``value`` as a Python int; rejects bools, non-integral floats."""
  if isinstance(value, bool) or not isinstance(value, numbers.Number):
    raise TypeError(f"{where} must be an integer, got {value!r}")
  if isinstance(value, numbers.Integral):
    out = int(value)
  elif isinstance(value, numbers.Real) and math.isfinite(value) and float(value).is_integer():
    out = int(value)
  else:
    raise ValueError(f"{where} must be an integer, got {value!r}")
  if minimum is not None and out < minimum:
    raise ValueError(f"{where} must be >= {minimum}, got {out}")
  return out


def as_float(
    where: str,
    value: Any,
    *,
    minimum: float | None = None,
    positive: bool = False,
) -> float:
  """Returns ``value`` as a finite Python float, optionally bounded."""
  if isinstance(value, bool) or not isinstance(value, numbers.Real):
    raise TypeError(f"{where} must be a real number, got {value!r}")
  out = float(value)
  if not math.isfinite(out):
    raise ValueError(f"{where} must be finite, got {out!r}")
  if positive and not out > 0:
    raise ValueError(f"{where} must be > 0, got {out!r}")
  if minimum is not None and out < minimum:
    raise ValueError(f"{where} must be >= {minimum}, got {out!r}")
  return out


def as_bool(where: str, value: Any) -> bool:
  if not isinstance(value, (bool, np.bool_)):
    raise TypeError(f"{where} must be a bool, got {value!r}")
  return bool(value)


def as_tuple(where: str, value: Any) -> tuple[Any, ...]:
  """Lists, tuples and 1-D arrays become tuples; a bare scalar or str is rejected."""
  if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
    raise TypeError(f"{where} must be a sequence, got {value!r}")
  return tuple(value.tolist() if hasattr(value, "tolist") else value)


def as_enum(where: str, enum_type: type[E], value: Any) -> E:
  """Accepts an enum member, its name (any case) or its proto number."""
  if isinstance(value, enum_type):
    return value
  if isinstance(value, str):
    try:
      return enum_type[value.upper()]
    except KeyError:
      pass
  elif isinstance(value, numbers.Integral) and not isinstance(value, bool):
    try:
      return enum_type(int(value))
    except ValueError:
      pass
  names = ", ".join(m.name for m in enum_type)
  raise ValueError(f"{where} must be one of {names}, got {value!r}")


def resolve_options(options: Any, cls: type[O], attr: str | None) -> O:
  """``options`` if it is a ``cls``, else its ``.attr`` (a preset carrying them).

  ``attr=None`` for options that no preset carries.
  """
  if isinstance(options, cls):
    return options
  if attr is None:
    raise TypeError(f"options must be {cls.__name__}, got {type(options).__name__}")
  inner = getattr(options, attr, None)
  if isinstance(inner, cls):
    return inner
  raise TypeError(f"options must be {cls.__name__} (or a preset carrying them as .{attr}), "
                  f"got {type(options).__name__}")


def set_field(obj: Any, name: str, value: Any) -> None:
  """Assigns a canonicalised value inside a frozen dataclass's __post_init__."""
  object.__setattr__(obj, name, value)


def to_dict(obj: Any, *, skip_defaults: bool = False) -> dict[str, Any]:
  """Dataclass options to a plain JSON-able dict with the proto field names."""
  out: dict[str, Any] = {}
  for f in dataclasses.fields(obj):
    value = getattr(obj, f.name)
    if skip_defaults and f.default is not dataclasses.MISSING and value == f.default:
      continue
    out[f.name] = _plain(value)
  return out


def _plain(value: Any) -> Any:
  if isinstance(value, enum.Enum):
    return value.name
  if isinstance(value, tuple):
    return [_plain(v) for v in value]
  if isinstance(value, OptionsMixin):
    return value.to_dict()
  return value


def from_dict(cls: type, data: Any, *, where: str) -> Any:
  """Builds options from a dict keyed by proto field names; unknown keys fail."""
  if not isinstance(data, dict):
    raise TypeError(f"{where} must be a dict of option fields, got {type(data).__name__}")
  names = {f.name for f in dataclasses.fields(cls)}
  unknown = sorted(set(data) - names)
  if unknown:
    raise ValueError(f"{where}: unknown field(s) {', '.join(map(repr, unknown))}; "
                     f"known fields: {', '.join(sorted(names))}")
  return cls(**data)


def parse_json_object(text: str, *, where: str) -> dict[str, Any]:
  """Parses JSON text that must hold one object."""
  try:
    data = json.loads(text)
  except json.JSONDecodeError as e:
    raise ValueError(f"{where}: not valid JSON ({e})") from None
  if not isinstance(data, dict):
    raise ValueError(f"{where}: JSON must hold an object of option fields, got {type(data).__name__}")
  return data


def hash_once(cls: type) -> type:
  """Class decorator for a frozen dataclass: its hash is computed once per instance.

  Options are static arguments of jitted functions, hashed at every call; a
  preset's nested options took microseconds to hash, a noticeable part of a
  one-frame call. Equality is unchanged, and the stored hash is left out of
  pickles and copies (string hashes differ between processes).
  """
  of_fields = cls.__hash__

  def __hash__(self: Any) -> int:
    try:
      return self.__dict__["_hash"]
    except KeyError:
      h = of_fields(self)
      object.__setattr__(self, "_hash", h)
      return h

  def __getstate__(self: Any) -> dict[str, Any]:
    return {k: x for k, x in self.__dict__.items() if k != "_hash"}

  cls.__hash__ = __hash__  # type: ignore[method-assign]
  cls.__getstate__ = __getstate__  # type: ignore[attr-defined]
  return cls


class OptionsMixin:
  """Dict and JSON round trips shared by every options dataclass.

  ``to_dict`` writes the field names (MediaPipe's proto names where there is a
  proto), enums as their names, tuples as lists, nested options as dicts, and
  leaves out fields equal to their defaults, so the dict reads like a graph's
  options. ``from_dict`` is its inverse and rejects unknown keys. A class
  adapts the dict form by overriding ``dict_in``/``dict_out``.
  """

  __slots__ = ()

  @classmethod
  def dict_in(cls, data: dict[str, Any]) -> dict[str, Any]:
    """Hook: adapts a dict read by :meth:`from_dict` before construction."""
    return data

  def dict_out(self, data: dict[str, Any]) -> dict[str, Any]:
    """Hook: adapts the dict :meth:`to_dict` returns."""
    return data

  @classmethod
  def from_dict(cls, data: Any) -> Any:
    """Options from a dict keyed by field names (enums as names or numbers)."""
    if isinstance(data, Mapping):
      data = cls.dict_in(dict(data))
    return from_dict(cls, data, where=cls.__name__)

  def to_dict(self) -> dict[str, Any]:
    """A plain JSON-able dict, defaults left out; inverse of :meth:`from_dict`."""
    return self.dict_out(to_dict(self, skip_defaults=True))

  @classmethod
  def from_json(cls, text: str) -> Any:
    """Options from a JSON object with the field names."""
    return cls.from_dict(parse_json_object(text, where=cls.__name__))

  def to_json(self, **kwargs: Any) -> str:
    """JSON text of :meth:`to_dict`; ``kwargs`` go to :func:`json.dumps`."""
    return json.dumps(self.to_dict(), **kwargs)


# -- arrays ------------------------------------------------------------------------


def as_array(x: Any) -> jax.Array:
  """``x`` as a ``jax.Array``; arrays (tracers included) pass unchanged.

  ``jnp.asarray`` returns a ``jax.Array`` unchanged too, but costs a few
  microseconds per call: skipped on the hot path.
  """
  return x if isinstance(x, jax.Array) else jnp.asarray(x)


def check_float(where: str, x: Any) -> None:
  """``TypeError`` unless ``x`` has a floating dtype."""
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise TypeError(f"{where} must be a float array, got dtype {x.dtype}")


def check_int(where: str, x: Any) -> None:
  """``TypeError`` unless ``x`` has an integer dtype."""
  if not jnp.issubdtype(x.dtype, jnp.integer):
    raise TypeError(f"{where} must be an int array, got dtype {x.dtype}")


def check_bool(where: str, x: Any) -> None:
  """``TypeError`` unless ``x`` has dtype bool."""
  if x.dtype != jnp.bool_:
    raise TypeError(f"{where} must be a bool array, got dtype {x.dtype}")


def check_shape(where: str, x: Any, pattern: str, *, note: str = "",
                **dims: int) -> dict[str, int]:
  """Checks ``x.shape`` against a docstring pattern such as ``"[..., N, 4]"``.

  ``...`` (first only) stands for any leading dimensions, a number for itself,
  a name for any size, the same wherever it appears; a name given in ``dims``
  must have that size and is written ``name=size`` in the message. Returns the
  sizes of the names. ``ValueError`` with ``where``, the pattern, ``note`` and
  the shape otherwise.
  """
  tokens = [t.strip() for t in pattern.strip("[]").split(",")]
  lead = tokens[:1] == ["..."]
  if lead:
    tokens = tokens[1:]
  shape = tuple(x.shape)
  found = dict(dims)
  ok = len(shape) >= len(tokens) if lead else len(shape) == len(tokens)
  if ok:
    for token, size in zip(tokens, shape[len(shape) - len(tokens):]):
      want = int(token) if token.isdigit() else found.setdefault(token, size)
      if size != want:
        ok = False
        break
  if not ok:
    shown = [t if t.isdigit() or t not in dims else f"{t}={dims[t]}" for t in tokens]
    shown = "[" + ", ".join((["..."] if lead else []) + shown) + "]"
    raise ValueError(f"{where} must have shape {shown}{note}, got {shape}")
  return found


def check_image(where: str, image: Any) -> None:
  """An image ``[..., H, W, C]``, not empty, ``uint8`` or float."""
  check_shape(where, image, "[..., H, W, C]")
  if image.dtype != jnp.uint8 and not jnp.issubdtype(image.dtype, jnp.floating):
    raise TypeError(f"{where} must be uint8 or float (0..255), got dtype {image.dtype}")
  if min(image.shape[-3:]) < 1:
    raise ValueError(f"{where} must not be empty, got shape {image.shape}")


def mask_or_all(where: str, mask: Any, shape: tuple[int, ...]) -> jax.Array:
  """A bool mask of ``shape``: all ``True`` for ``None``, else ``mask`` checked."""
  if mask is None:
    return jnp.ones(shape, bool)
  mask = jnp.asarray(mask)
  check_bool(where, mask)
  if mask.shape != shape:
    raise ValueError(f"{where} must have shape {shape}, got {mask.shape}")
  return mask


def keypoints_or_empty(where: str, keypoints: Any, lead: tuple[int, ...], k: int, dtype: Any,
                       *, pattern: str, require_float: bool) -> jax.Array:
  """Keypoints ``lead + (k, 2)``; ``None`` is an empty ``lead + (0, 2)`` array
  when ``k`` is 0 and an error otherwise. ``pattern`` names the shape."""
  if keypoints is None:
    if k:
      raise ValueError(f"{where} are required: options have num_keypoints={k}")
    return jnp.zeros(lead + (0, 2), dtype)
  keypoints = jnp.asarray(keypoints)
  if require_float:
    check_float(where, keypoints)
  if keypoints.shape != lead + (k, 2):
    raise ValueError(f"{where} must have shape {lead + (k, 2)} ({pattern}), "
                     f"got {keypoints.shape}")
  return keypoints


def check_nonzero_scales(options: Any, hint: str) -> None:
  """``ValueError`` for a zero ``x/y/w/h_scale`` of decoder options."""
  for name in ("x_scale", "y_scale", "w_scale", "h_scale"):
    if getattr(options, name) == 0:
      raise ValueError(f"DecoderOptions.{name} is 0{hint}")


def check_decoder_inputs(raw_boxes: Any, raw_scores: Any, anchors: Any,
                         options: Any) -> tuple[jax.Array, jax.Array, jax.Array]:
  """The raw model outputs and anchors of a decoder, as arrays, checked
  against each other and the :class:`~jaxanchors.decoding.DecoderOptions`."""
  raw_boxes, raw_scores, anchors = map(as_array, (raw_boxes, raw_scores, anchors))
  for where, x in (("raw_boxes", raw_boxes), ("raw_scores", raw_scores), ("anchors", anchors)):
    check_float(where, x)
  check_shape("raw_boxes", raw_boxes, "[..., N, num_coords]", num_coords=options.num_coords)
  check_shape("raw_scores", raw_scores, "[..., N, num_classes]",
              num_classes=options.num_classes)
  if raw_boxes.shape[:-1] != raw_scores.shape[:-1]:
    raise ValueError(f"raw_boxes {raw_boxes.shape} and raw_scores {raw_scores.shape} disagree "
                     "on the leading [..., N] dimensions")
  n = raw_boxes.shape[-2]
  check_shape("anchors", anchors, "[N, 4]", N=n)
  if options.num_boxes and options.num_boxes != n:
    raise ValueError(f"DecoderOptions.num_boxes={options.num_boxes} but the tensors hold "
                     f"N={n} boxes")
  check_nonzero_scales(options, ": MediaPipe divides by it and detects nothing; set the "
                       "model's scale (e.g. the input size)")
  return raw_boxes, raw_scores, anchors


def shape_dtype(x: Any) -> tuple[tuple[int, ...], np.dtype]:
  """Shape and dtype of an array or of anything NumPy makes an array of."""
  if not (hasattr(x, "shape") and hasattr(x, "dtype")):
    x = np.asarray(x)
  return tuple(x.shape), np.dtype(x.dtype)


def check_detections(detections: Any, detections_type: type) -> tuple[tuple[int, ...], int, int]:
  """Validates a ``Detections`` (shapes, dtypes); returns (batch shape, N, K)."""
  if not isinstance(detections, detections_type):
    raise TypeError(f"detections must be a jaxanchors.Detections, got {type(detections).__name__}")
  (bs, bd), (ks, kd), (ss, sd), (cs, cd), (vs, vd) = (
      shape_dtype(a) for a in detections)
  if len(bs) < 2 or bs[-1] != 4:
    raise ValueError(f"Detections.boxes must have shape [..., N, 4], got {bs}")
  batch, n = bs[:-2], bs[-2]
  lead = batch + (n,)
  for name, got in (("scores", ss), ("classes", cs), ("valid", vs)):
    if got != lead:
      raise ValueError(f"Detections.{name} must have shape [..., N] = {lead} to match "
                       f"boxes {bs}, got {got}")
  if len(ks) != len(bs) + 1 or ks[:-2] != lead or ks[-1] != 2:
    raise ValueError(f"Detections.keypoints must have shape [..., N, K, 2] with [..., N] = "
                     f"{lead} to match boxes {bs}, got {ks}")
  for name, dt in (("boxes", bd), ("keypoints", kd), ("scores", sd)):
    if not jnp.issubdtype(dt, jnp.floating):
      raise TypeError(f"Detections.{name} must have a floating dtype, got {dt}")
  if not jnp.issubdtype(cd, jnp.integer):
    raise TypeError(f"Detections.classes must have an integer dtype (int32), got {cd}")
  if vd != np.bool_:
    raise TypeError(f"Detections.valid must have dtype bool, got {vd}")
  return batch, n, ks[-2]


def check_fits_batch(where: str, value: Any, tail: tuple[int, ...],
                     batch: tuple[int, ...]) -> None:
  """``ValueError`` unless ``value`` is ``tail``-shaped per frame and its
  leading dimensions broadcast to ``batch``."""
  lead = value.shape[:-len(tail)]
  fits = value.shape[-len(tail):] == tail and len(lead) <= len(batch) and all(
      a in (1, b) for a, b in zip(lead[::-1], batch[::-1]))
  if not fits:
    raise ValueError(f"{where} of shape {value.shape} does not fit tensors with "
                     f"batch shape {batch}: expected {tail} or {batch + tail}")


def check_broadcasts(where: str, x: Any, shape: tuple[int, ...], what: str) -> None:
  """``ValueError`` unless ``x`` broadcasts to exactly ``shape``."""
  try:
    ok = jnp.broadcast_shapes(x.shape, shape) == shape
  except ValueError:
    ok = False
  if not ok:
    raise ValueError(f"{where} of shape {x.shape} must broadcast to the {what} {shape}")
