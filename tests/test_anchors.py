"""Anchors: golden files, presets, the NumPy reference, validation, tracing."""

from __future__ import annotations

import dataclasses
import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import jaxanchors as ja
from jaxanchors import presets
from _util import count_traces
from reference.anchors import ssd_anchors


def _golden_options(golden_dir, name):
  return json.loads((golden_dir / f"{name}.options.json").read_text())["options"]


# -- MediaPipe's golden data ----------------------------------------------------


@pytest.mark.parametrize("index,count", [(0, 2944), (1, 1917), (2, 1125)])
def test_mediapipe_golden_text_files(golden_dir, index, count):
  name = f"anchor_golden_file_{index}.txt"
  options = ja.AnchorOptions.from_dict(_golden_options(golden_dir, name))
  golden = np.array([[float(x) for x in line.split()]
                     for line in (golden_dir / name).read_text().splitlines()])
  ours = np.asarray(ja.generate_anchors(options))
  assert golden.shape == (count, 4)
  assert ours.shape == golden.shape and ours.dtype == np.float32
  # MediaPipe's own test: every field within 1e-5, same count and order.
  np.testing.assert_allclose(ours, golden, rtol=0, atol=1e-5)


def test_golden_file_0_is_exact(golden_dir):
  name = "anchor_golden_file_0.txt"
  options = ja.AnchorOptions.from_dict(_golden_options(golden_dir, name))
  golden = np.loadtxt(golden_dir / name, dtype=np.float64)
  np.testing.assert_array_equal(np.asarray(ja.generate_anchors(options), np.float64), golden)


@pytest.mark.parametrize("name", ["anchors.npy", "anchorsback.npy"])
def test_seed_notebook_npy_files_are_exact(golden_dir, name):
  options = ja.AnchorOptions.from_dict(_golden_options(golden_dir, name))
  golden = np.load(golden_dir / name)
  assert golden.shape == (896, 4)
  np.testing.assert_array_equal(np.asarray(ja.generate_anchors(options), np.float64), golden)


def test_seed_notebook_rows_with_anchor_sizes():
  options = dataclasses.replace(presets.get("face_short_range").anchors, fixed_anchor_size=False)
  anchors = np.asarray(ja.generate_anchors(options))
  assert anchors.shape == (896, 4)
  expected = np.array([[0.03125, 0.03125, 0.1484375, 0.1484375],
                       [0.03125, 0.03125, 0.22759284392125925, 0.22759284392125925],
                       [0.09375, 0.03125, 0.1484375, 0.1484375]])
  np.testing.assert_allclose(anchors[:3], expected, rtol=1e-7, atol=0)


# Spec §5.1: each graph's num_boxes.
PRESET_COUNTS = {
    "face_short_range": 896, "face_full_range": 2304, "blazeface_back": 896, "palm": 2016,
    "palm_128": 896, "palm_v1": 2944, "pose": 2254, "ssdlite_coco": 2034,
    "objectron_oidv4": 1917,
    # MediaPipe Tasks API variants of the face and pose detectors.
    "face_short_range_tasks": 896, "pose_tasks": 2254,
}


def test_every_spec_model_has_a_preset():
  assert set(presets.names()) == set(PRESET_COUNTS)


@pytest.mark.parametrize("name,count", sorted(PRESET_COUNTS.items()))
def test_preset_counts(name, count):
  preset = presets.get(name)
  assert ja.num_anchors(preset.anchors) == count
  assert sum(layer.num_anchors for layer in ja.anchor_layers(preset.anchors)) == count
  assert ja.generate_anchors(preset).shape == (count, 4)


def test_preset_anchors_equal_reference():
  for name in presets.names():
    options = presets.get(name).anchors
    np.testing.assert_array_equal(np.asarray(ja.generate_anchors(options)),
                                  ssd_anchors(options.to_dict()), err_msg=name)


def test_objectron_preset_is_golden_file_1(golden_dir):
  options = ja.AnchorOptions.from_dict(_golden_options(golden_dir, "anchor_golden_file_1.txt"))
  assert options == presets.get("objectron_oidv4").anchors


def test_layer_breakdown_of_ssd():
  layers = ja.anchor_layers(presets.get("ssdlite_coco").anchors)
  assert [(l.grid_height, l.grid_width, l.anchors_per_cell) for l in layers] == [
      (20, 20, 3), (10, 10, 6), (5, 5, 6), (3, 3, 6), (2, 2, 6), (1, 1, 6)]
  # Reduced lowest layer: literal scale 0.1 first, then s_0 = min_scale twice.
  assert layers[0].aspect_ratios == (1.0, 2.0, 0.5)
  np.testing.assert_allclose(layers[0].scales, [0.1, 0.2, 0.2], rtol=1e-7)


# -- property test against the NumPy reference -----------------------------------

_ratios = st.floats(0.25, 5.0, width=32)


@st.composite
def standard_options(draw):
  num_layers = draw(st.integers(1, 5))
  strides = draw(st.lists(st.sampled_from([4, 8, 16, 32, 64]), min_size=num_layers,
                          max_size=num_layers))
  if draw(st.booleans()):
    strides.sort()  # sorted strides make merged groups likely
  kwargs = dict(
      num_layers=num_layers, strides=tuple(strides),
      min_scale=draw(st.floats(0.015625, 0.5, width=32)),
      max_scale=draw(st.floats(0.375, 1.25, width=32)),
      anchor_offset_x=draw(st.floats(0.0, 1.0, width=32)),
      anchor_offset_y=draw(st.floats(0.0, 1.0, width=32)),
      aspect_ratios=tuple(draw(st.lists(_ratios, max_size=3))),
      reduce_boxes_in_lowest_layer=draw(st.booleans()),
      interpolated_scale_aspect_ratio=draw(st.sampled_from([0.0, 1.0, -1.0, 0.5, 2.0])),
      fixed_anchor_size=draw(st.booleans()),
  )
  if not kwargs["aspect_ratios"] and kwargs["interpolated_scale_aspect_ratio"] <= 0:
    kwargs["interpolated_scale_aspect_ratio"] = 1.0
  if draw(st.booleans()):
    kwargs["feature_map_height"] = tuple(draw(st.lists(st.integers(1, 24), min_size=num_layers,
                                                       max_size=num_layers)))
    kwargs["feature_map_width"] = tuple(draw(st.lists(st.integers(1, 24), min_size=num_layers,
                                                      max_size=num_layers)))
  else:
    kwargs["input_size_height"] = draw(st.integers(8, 320))
    kwargs["input_size_width"] = draw(st.integers(8, 320))
  return ja.AnchorOptions(**kwargs)


@st.composite
def multiscale_options(draw):
  min_level = draw(st.integers(1, 6))
  max_level = draw(st.integers(min_level, min_level + 2))
  levels = max_level - min_level + 1
  kwargs = dict(
      multiscale_anchor_generation=True, min_level=min_level, max_level=max_level,
      input_size_height=draw(st.integers(1, 400)), input_size_width=draw(st.integers(1, 400)),
      anchor_scale=draw(st.floats(0.5, 6.0, width=32)),
      scales_per_octave=draw(st.integers(1, 4)),
      aspect_ratios=tuple(draw(st.lists(_ratios, min_size=1, max_size=3))),
      normalize_coordinates=draw(st.booleans()),
  )
  if draw(st.booleans()):
    kwargs["feature_map_height"] = tuple(draw(st.lists(st.integers(1, 12), min_size=levels,
                                                       max_size=levels)))
    kwargs["feature_map_width"] = tuple(draw(st.lists(st.integers(1, 12), min_size=levels,
                                                      max_size=levels)))
  else:
    kwargs["strides"] = tuple(2**l for l in range(min_level, max_level + 1))
  return ja.AnchorOptions(**kwargs)


@given(st.one_of(standard_options(), multiscale_options()))
def test_matches_reference_on_random_configs(options):
  expected = ssd_anchors(options.to_dict())
  ours = np.asarray(ja.generate_anchors(options))
  assert ours.shape == (ja.num_anchors(options), 4) == expected.shape
  np.testing.assert_array_equal(ours, expected)


def test_fixed_anchors_are_returned_as_given():
  rows = ((0.5, 0.25, 1.0, 2.0), (0.1, 0.2, 0.3, 0.4))
  options = ja.AnchorOptions(fixed_anchors=rows)
  np.testing.assert_array_equal(np.asarray(ja.generate_anchors(options)),
                                np.array(rows, np.float32))
  assert ja.num_anchors(options) == 2 and ja.anchor_layers(options) == ()
  mapping = ja.AnchorOptions(fixed_anchors=[dict(x_center=0.5, y_center=0.25, w=1.0, h=2.0),
                                            dict(x_center=0.1, y_center=0.2, w=0.3, h=0.4)])
  assert mapping == options


# -- jit / vmap / tracing ----------------------------------------------------------


def test_anchors_inside_jit_and_vmap_trace_once():
  options_a = presets.get("pose").anchors
  options_b = ja.AnchorOptions.from_dict(options_a.to_dict())  # equal, not identical
  assert options_a == options_b and hash(options_a) == hash(options_b)
  eager = np.asarray(ja.generate_anchors(options_a))

  @jax.jit
  @chex.assert_max_traces(n=1)
  def shift(x, options=options_a):
    return ja.generate_anchors(options) + x

  np.testing.assert_array_equal(np.asarray(shift(jnp.float32(0))), eager)
  np.testing.assert_array_equal(np.asarray(shift(jnp.float32(1))), eager + 1)

  batched = jax.vmap(lambda x: ja.generate_anchors(options_b)[:, :2] * x)(jnp.arange(3.0))
  np.testing.assert_array_equal(np.asarray(batched[2]), eager[:, :2] * 2)


def test_equal_options_compile_once():
  options = presets.get("palm_v1").anchors
  ja.generate_anchors(options)
  with count_traces("_generate") as traces:
    ja.generate_anchors(ja.AnchorOptions.from_dict(options.to_dict()))
    ja.generate_anchors(presets.get("palm_v1"))
  assert traces.count == 0


def test_dtype_is_honoured():
  assert ja.generate_anchors(presets.get("palm"), dtype=jnp.bfloat16).dtype == jnp.bfloat16


# -- options: dict / JSON ------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PRESET_COUNTS))
def test_options_round_trip_dict_and_json(name):
  options = presets.get(name).anchors
  assert ja.AnchorOptions.from_dict(options.to_dict()) == options
  assert ja.AnchorOptions.from_json(options.to_json()) == options


def test_lists_become_tuples_and_options_hash():
  options = ja.AnchorOptions(num_layers=2, strides=[8, 16], input_size_width=64,
                             input_size_height=64, aspect_ratios=np.array([1.0, 2.0]),
                             min_scale=0.1, max_scale=0.5)
  assert options.strides == (8, 16) and options.aspect_ratios == (1.0, 2.0)
  assert isinstance(options.strides[0], int)
  hash(options)
  with pytest.raises(dataclasses.FrozenInstanceError):
    options.num_layers = 3  # type: ignore[misc]


def test_from_dict_rejects_present_fields_with_fixed_anchors():
  # MediaPipe rejects the presence of these fields, even at value 0.
  with pytest.raises(ValueError, match="num_layers"):
    ja.AnchorOptions.from_dict({"fixed_anchors": [[0.5, 0.5, 1, 1]], "num_layers": 0})
  with pytest.raises(ValueError, match="unknown field"):
    ja.AnchorOptions.from_dict({"strides": [8], "num_layer": 1})
  with pytest.raises(ValueError, match="JSON"):
    ja.AnchorOptions.from_json("{not json")


# -- validation ----------------------------------------------------------------------

_OK = dict(num_layers=2, strides=(8, 16), input_size_width=64, input_size_height=64,
           min_scale=0.1, max_scale=0.75, aspect_ratios=(1.0,))

INVALID = [
    # (overrides, error type, field named in the message)
    (dict(strides=()), ValueError, "strides"),
    (dict(strides=(8,)), ValueError, "strides"),
    (dict(strides=(8, 16, 32)), ValueError, "strides"),
    (dict(strides=(8, 0)), ValueError, "strides[1]"),
    (dict(strides=(8, -16)), ValueError, "strides[1]"),
    (dict(strides=(8, 16.5)), ValueError, "strides[1]"),
    (dict(strides=(8, "16")), TypeError, "strides[1]"),
    (dict(strides=8), TypeError, "strides"),
    (dict(num_layers=0), ValueError, "num_layers"),
    (dict(num_layers=True), TypeError, "num_layers"),
    (dict(input_size_width=0), ValueError, "input_size_width"),
    (dict(input_size_height=-128), ValueError, "input_size_height"),
    (dict(min_scale=-0.1), ValueError, "min_scale"),
    (dict(max_scale=float("nan")), ValueError, "max_scale"),
    (dict(min_scale=0.0, max_scale=0.0), ValueError, "min_scale"),
    (dict(aspect_ratios=(1.0, 0.0)), ValueError, "aspect_ratios[1]"),
    (dict(aspect_ratios=(-2.0,)), ValueError, "aspect_ratios[0]"),
    (dict(aspect_ratios=(float("inf"),)), ValueError, "aspect_ratios[0]"),
    (dict(aspect_ratios=(), interpolated_scale_aspect_ratio=0.0), ValueError, "aspect_ratios"),
    (dict(anchor_offset_x=float("inf")), ValueError, "anchor_offset_x"),
    (dict(interpolated_scale_aspect_ratio=float("nan")), ValueError,
     "interpolated_scale_aspect_ratio"),
    (dict(feature_map_height=(8,), feature_map_width=(8,)), ValueError, "feature_map_height"),
    (dict(feature_map_height=(8, 4), feature_map_width=(8,)), ValueError, "feature_map_width"),
    (dict(feature_map_width=(8, 4)), ValueError, "feature_map_width"),
    (dict(feature_map_height=(8, 0), feature_map_width=(8, 4)), ValueError,
     "feature_map_height[1]"),
    (dict(fixed_anchor_size="yes"), TypeError, "fixed_anchor_size"),
    (dict(multiscale_anchor_generation=True, min_level=5, max_level=4), ValueError, "max_level"),
    (dict(multiscale_anchor_generation=True, min_level=-1, max_level=0), ValueError, "min_level"),
    (dict(multiscale_anchor_generation=True, min_level=3, max_level=4, anchor_scale=0.0),
     ValueError, "anchor_scale"),
    (dict(multiscale_anchor_generation=True, min_level=3, max_level=4, scales_per_octave=0),
     ValueError, "scales_per_octave"),
    (dict(multiscale_anchor_generation=True, min_level=3, max_level=5), ValueError, "strides"),
    (dict(multiscale_anchor_generation=True, min_level=3, max_level=4, fixed_anchor_size=True),
     ValueError, "fixed_anchor_size"),
    (dict(multiscale_anchor_generation=True, min_level=3, max_level=4, aspect_ratios=()),
     ValueError, "aspect_ratios"),
    (dict(input_size_width=10**6, input_size_height=10**6, strides=(1, 1)), ValueError,
     "anchors"),
]


@pytest.mark.parametrize("overrides,error,field", INVALID)
def test_invalid_configurations_are_rejected(overrides, error, field):
  with pytest.raises(error) as info:
    ja.AnchorOptions(**{**_OK, **overrides})
  assert field in str(info.value)


def test_fixed_anchors_exclusive_fields():
  for field, value in [("num_layers", 2), ("input_size_width", 128), ("min_scale", 0.1),
                       ("multiscale_anchor_generation", True)]:
    with pytest.raises(ValueError, match=field):
      ja.AnchorOptions(fixed_anchors=((0.5, 0.5, 1.0, 1.0),), **{field: value})
  with pytest.raises(ValueError, match=r"fixed_anchors\[0\]"):
    ja.AnchorOptions(fixed_anchors=((0.5, 0.5, 1.0),))
  with pytest.raises(ValueError, match=r"fixed_anchors\[0\]\[2\]"):
    ja.AnchorOptions(fixed_anchors=((0.5, 0.5, float("nan"), 1.0),))


def test_generate_anchors_rejects_non_options():
  with pytest.raises(TypeError, match="AnchorOptions"):
    ja.generate_anchors({"num_layers": 1})  # type: ignore[arg-type]
