"""The public surface: every module's ``__all__`` documented, options frozen,
keyword-only and round-tripping through dicts and JSON, no positional flags."""

from __future__ import annotations

import dataclasses
import enum
import importlib
import inspect
import json
import pickle
import pkgutil

import pytest

import jaxanchors as ja
from jaxanchors import presets

OPTIONS = [ja.AnchorOptions, ja.DecoderOptions, ja.NmsOptions, ja.ImageToTensorOptions,
           ja.MatcherOptions, ja.PipelineOptions]

# Every public module: the package's own, found by walking it (private ``_modules``
# and ``__main__`` excepted), so a new module is checked without being listed here.
MODULES = ["jaxanchors"] + sorted(
    f"jaxanchors.{m.name}" for m in pkgutil.iter_modules(ja.__path__)
    if not m.name.startswith("_"))


def _public(module_name):
  try:
    module = importlib.import_module(module_name)
  except ImportError as e:  # an optional dependency (e.g. matplotlib for plot)
    pytest.skip(f"{module_name}: {e}")
  return module


def _surface():
  """(qualified name, object) for every name in every public module's ``__all__``."""
  out = []
  for module_name in MODULES:
    try:
      module = importlib.import_module(module_name)
    except ImportError:
      continue
    for name in getattr(module, "__all__", ()):
      out.append((f"{module_name}.{name}", getattr(module, name)))
  return out


SURFACE = _surface()
FUNCTIONS = [(n, f) for n, f in SURFACE if inspect.isfunction(f)]


def _name(value):
  """Test ids from names only (no object addresses: every worker must collect the same ids)."""
  return value if isinstance(value, str) else "-"


@pytest.mark.parametrize("module_name", MODULES)
def test_every_module_is_documented_and_declares_all(module_name):
  module = _public(module_name)
  assert inspect.getdoc(module), f"{module_name} has no docstring"
  assert hasattr(module, "__all__"), f"{module_name} has no __all__"
  for name in module.__all__:
    assert hasattr(module, name), f"{module_name}.__all__ lists {name!r}, which is missing"


@pytest.mark.parametrize("name,obj", [s for s in SURFACE if callable(s[1]) or
                                      inspect.ismodule(s[1])], ids=_name)
def test_exported_names_are_documented(name, obj):
  doc = obj.__doc__ if inspect.isclass(obj) or inspect.ismodule(obj) else inspect.getdoc(obj)
  assert doc and doc.strip(), f"{name} has no docstring"


@pytest.mark.parametrize("name", ja.__all__)
def test_package_names_are_documented(name):
  obj = getattr(ja, name)
  assert inspect.getdoc(obj), f"jaxanchors.{name} has no docstring"


def _is_flag(default):
  return isinstance(default, (bool, int, float, str, enum.Enum))


@pytest.mark.parametrize("name,func", FUNCTIONS, ids=_name)
def test_no_positional_flags_and_options_after_the_data(name, func):
  """Data arguments come first. A parameter with a default is keyword-only
  unless it is an optional array (default ``None``, e.g. loss ``weights``);
  options (``options``/``config``) are required or keyword-only."""
  params = list(inspect.signature(func).parameters.values())
  positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
  for p in positional:
    if p.default is not inspect.Parameter.empty:
      assert p.default is None and not p.name.startswith(("return_", "use_", "with_")), (
          f"{name}({p.name}={p.default!r}) should be keyword-only")
  names = [p.name for p in positional]
  for opt in ("options", "config"):
    if opt in names:
      i = names.index(opt)
      assert positional[i].default is inspect.Parameter.empty, f"{name}: {opt} is required"


@pytest.mark.parametrize("cls", OPTIONS, ids=lambda c: c.__name__)
def test_options_are_frozen_keyword_only_dataclasses(cls):
  assert dataclasses.is_dataclass(cls)
  assert cls.__dataclass_params__.frozen
  with pytest.raises(TypeError, match="positional"):
    cls(1)  # keyword-only: positional arguments are refused


@pytest.mark.parametrize("cls", OPTIONS, ids=lambda c: c.__name__)
def test_options_document_every_field(cls):
  doc = inspect.getdoc(cls)
  assert "Attributes:" in doc, f"{cls.__name__} has no Attributes: section"
  section = doc.split("Attributes:", 1)[1]
  for f in dataclasses.fields(cls):
    assert f.name in section, f"{cls.__name__}.{f.name} is not documented under Attributes:"


def _examples():
  """A non-default instance of every options class, from every preset and more."""
  out = []
  for name in presets.names():
    p = presets.get(name)
    out += [p.anchors, p.decoder, p.nms, p.preprocessing,
            ja.PipelineOptions(anchors=p.anchors, decoder=p.decoder, nms=p.nms,
                               mapping=p.mapping)]
  out += [ja.MatcherOptions(), ja.MatcherOptions(matched_threshold=0.7, unmatched_threshold=0.3,
                                                 force_match_for_each_row=True,
                                                 overlap_type="JACCARD"),
          ja.MatcherOptions(matched_threshold=None),
          ja.AnchorOptions(fixed_anchors=[(0.5, 0.5, 1.0, 1.0), (0.25, 0.75, 0.5, 0.5)]),
          ja.DecoderOptions(num_classes=3, num_coords=4, box_format="XYXY", allow_classes=(1, 2),
                            box_boundaries_indices=(1, 0, 3, 2))]
  return out


@pytest.mark.parametrize("cls", OPTIONS, ids=lambda c: c.__name__)
def test_every_options_class_round_trips_through_dict_and_json(cls):
  examples = [o for o in _examples() if isinstance(o, cls)]
  assert examples
  for o in examples:
    d = o.to_dict()
    json.dumps(d)  # plain JSON types only
    assert cls.from_dict(d) == o
    text = o.to_json(sort_keys=True)
    back = cls.from_json(text)
    assert back == o and hash(back) == hash(o)
    assert back.to_json(sort_keys=True) == text
  with pytest.raises(ValueError, match="unknown field"):
    cls.from_dict({"no_such_field": 1})
  with pytest.raises(ValueError, match="JSON"):
    cls.from_json("[1, 2]")


def test_static_options_hash_once_and_pickles_carry_no_hash():
  """The options a jitted call hashes keep their hash; copies and pickles recompute it."""
  p = presets.get("face_full_range")
  o = ja.PipelineOptions(anchors=p.anchors, decoder=p.decoder, nms=p.nms, mapping=p.mapping)
  for x in (p, o, o.anchors, o.decoder, o.nms, p.preprocessing, ja.MatcherOptions()):
    fields = tuple(getattr(x, f.name) for f in dataclasses.fields(x))
    assert hash(x) == hash(fields) == hash(x)   # the fields' hash, stored after the first call
    assert "_hash" in vars(x)
    back = pickle.loads(pickle.dumps(x))
    assert "_hash" not in vars(back)             # another process hashes strings differently
    assert back == x and hash(back) == hash(x)
    changed = dataclasses.replace(x)
    assert "_hash" not in vars(changed) and changed == x
  assert hash(dataclasses.replace(o.nms, min_suppression_threshold=0.4)) != hash(o.nms)


def test_mapping_is_an_enum_checked_at_construction():
  p = presets.get("palm")
  assert p.mapping is ja.DetectionMapping.LETTERBOX_REMOVAL
  assert p.mapping == "letterbox_removal"  # members compare equal to their values
  o = ja.PipelineOptions(anchors=p.anchors, decoder=p.decoder, nms=p.nms, mapping="projection")
  assert o.mapping is ja.DetectionMapping.PROJECTION
  with pytest.raises(ValueError, match="mapping"):
    ja.PipelineOptions(anchors=p.anchors, decoder=p.decoder, nms=p.nms, mapping="matrix")


@pytest.mark.parametrize("func,options_of", [
    (ja.generate_anchors, "anchors"), (ja.num_anchors, "anchors"),
    (ja.anchors_numpy, "anchors"), (ja.anchor_layers, "anchors")])
def test_anchor_functions_accept_a_preset(func, options_of):
  p = presets.get("face_short_range")
  a, b = func(p), func(getattr(p, options_of))
  assert (a == b) if not hasattr(a, "shape") else (a.tolist() == b.tolist())


def test_functions_taking_decoder_nms_or_preprocessing_options_accept_a_preset():
  import numpy as np
  p = presets.get("face_short_range")
  anchors = ja.anchors_numpy(p)
  rng = np.random.default_rng(0)
  raw_boxes = rng.normal(0, 4, (896, 16)).astype(np.float32)
  raw_scores = rng.normal(-2, 3, (896, 1)).astype(np.float32)
  same = lambda a, b: all(np.array_equal(x, y) for x, y in zip(a, b))  # noqa: E731
  d = ja.decode(raw_boxes, raw_scores, anchors, p)
  assert same(d, ja.decode(raw_boxes, raw_scores, anchors, p.decoder))
  assert same(ja.non_max_suppression(d, p, max_detections=4),
              ja.non_max_suppression(d, p.nms, max_detections=4))
  boxes = np.asarray(d.boxes)
  kps = np.asarray(d.keypoints)
  assert np.array_equal(ja.encode(boxes, kps, anchors, p), ja.encode(boxes, kps, anchors, p.decoder))
  image = np.zeros((2, 24, 32, 3), np.uint8)
  assert same(ja.letterbox(image, p)[0:1], ja.letterbox(image, p.preprocessing)[0:1])
  gt = np.array([[0.2, 0.2, 0.4, 0.4]], np.float32)
  m = ja.match(anchors, gt, None, ja.MatcherOptions())
  t1 = ja.assign_targets(m, gt, anchors, p, gt_keypoints=np.zeros((1, 6, 2), np.float32))
  t2 = ja.assign_targets(m, gt, anchors, p.decoder, gt_keypoints=np.zeros((1, 6, 2), np.float32))
  assert same(t1[:5], t2[:5])
  with pytest.raises(TypeError, match="options must be MatcherOptions"):
    ja.match(anchors, gt, None, p)  # no preset carries matcher options
