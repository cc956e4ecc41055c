"""Validation and canonicalisation helpers shared by the option dataclasses.

Every helper raises ``TypeError`` or ``ValueError`` with a message that names the
option (``"AnchorOptions.strides[2]"``) and the offending value, so a bad
configuration fails at construction, never deep inside XLA.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import numbers
from typing import Any, Iterable, TypeVar

import numpy as np

E = TypeVar("E", bound=enum.Enum)


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


def resolve_options(options: Any, cls: type, attr: str) -> Any:
  """``options`` if it is a ``cls``, else its ``.attr`` (a preset carrying them)."""
  if isinstance(options, cls):
    return options
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
