"""The public surface: every exported name documented, options frozen and keyword-only."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

import jaxanchors as ja

OPTIONS = [ja.AnchorOptions, ja.DecoderOptions, ja.NmsOptions, ja.ImageToTensorOptions,
           ja.MatcherOptions, ja.PipelineOptions]


@pytest.mark.parametrize("name", ja.__all__)
def test_exported_names_are_documented(name):
  obj = getattr(ja, name)
  assert inspect.getdoc(obj), f"jaxanchors.{name} has no docstring"


@pytest.mark.parametrize("cls", OPTIONS, ids=lambda c: c.__name__)
def test_options_are_frozen_keyword_only_dataclasses(cls):
  assert dataclasses.is_dataclass(cls)
  assert cls.__dataclass_params__.frozen
  with pytest.raises(TypeError, match="positional"):
    cls(1)  # keyword-only: positional arguments are refused


@pytest.mark.parametrize("func", [ja.generate_anchors, ja.non_max_suppression, ja.detect,
                                  ja.letterbox, ja.match, ja.assign_targets])
def test_options_after_the_arrays_are_keyword_only_where_optional(func):
  sig = inspect.signature(func)
  for p in sig.parameters.values():
    if p.default is not inspect.Parameter.empty and p.kind is not p.KEYWORD_ONLY:
      pytest.fail(f"{func.__name__}({p.name}=...) should be keyword-only")
