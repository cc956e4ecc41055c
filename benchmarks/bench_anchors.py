"""Anchor generation: seed-style Python loops vs vectorized NumPy vs ``jaxanchors``.

Two configurations:

* ``face_short_range`` (BlazeFace front, 128x128, 896 anchors);
* a large standard-path config: 1024x1024 input, strides 8..128, aspect
  ratios 1, 2, 0.5 plus the interpolated anchor, scales 0.1..0.9
  (87,296 anchors).

Three implementations, checked to agree (``allclose`` at 1e-5) in the run:

* ``loops``: the pure-Python generator of the well-known BlazeFace-PyTorch
  ``Anchors.ipynb`` port (nested loops appending lists, ``np.array`` at the end),
  rewritten here in that style;
* ``numpy``: a vectorized NumPy generator written for this benchmark;
* ``ours``: ``jaxanchors.generate_anchors(options)`` with ``block_until_ready``.
  Steady state is a cached call; "first call" clears ``jax.clear_caches()`` and
  the NumPy table cache before each call, so it includes building the table,
  tracing and compiling.

Times are medians over repeated rounds (the implementations are interleaved in
each round, so machine noise hits them alike). Run::

  python benchmarks/bench_anchors.py
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import time

import jax
import numpy as np

import jaxanchors
from _timing import per_call
from jaxanchors import anchors as anchors_module
from jaxanchors import presets


# -- (a) seed-style pure-Python loops (BlazeFace-PyTorch Anchors.ipynb) ----------------


def _calculate_scale(min_scale, max_scale, stride_index, num_strides):
  return min_scale + (max_scale - min_scale) * stride_index / (num_strides - 1.0)


def loops_anchors(options):
  """Nested-loop generator in the style of the notebook port of MediaPipe's calculator."""
  strides_size = len(options["strides"])
  assert options["num_layers"] == strides_size
  anchors = []
  layer_id = 0
  while layer_id < strides_size:
    anchor_height = []
    anchor_width = []
    aspect_ratios = []
    scales = []

    # For same strides, we merge the anchors in the same order.
    last_same_stride_layer = layer_id
    while (last_same_stride_layer < strides_size and
           options["strides"][last_same_stride_layer] == options["strides"][layer_id]):
      scale = _calculate_scale(options["min_scale"], options["max_scale"],
                               last_same_stride_layer, strides_size)
      if last_same_stride_layer == 0 and options["reduce_boxes_in_lowest_layer"]:
        # For the first layer, it can be specified to use predefined anchors.
        aspect_ratios.append(1.0)
        aspect_ratios.append(2.0)
        aspect_ratios.append(0.5)
        scales.append(0.1)
        scales.append(scale)
        scales.append(scale)
      else:
        for aspect_ratio in options["aspect_ratios"]:
          aspect_ratios.append(aspect_ratio)
          scales.append(scale)
        if options["interpolated_scale_aspect_ratio"] > 0.0:
          scale_next = (1.0 if last_same_stride_layer == strides_size - 1 else
                        _calculate_scale(options["min_scale"], options["max_scale"],
                                         last_same_stride_layer + 1, strides_size))
          scales.append(np.sqrt(scale * scale_next))
          aspect_ratios.append(options["interpolated_scale_aspect_ratio"])
      last_same_stride_layer += 1

    for i in range(len(aspect_ratios)):
      ratio_sqrts = np.sqrt(aspect_ratios[i])
      anchor_height.append(scales[i] / ratio_sqrts)
      anchor_width.append(scales[i] * ratio_sqrts)

    stride = options["strides"][layer_id]
    feature_map_height = int(np.ceil(options["input_size_height"] / stride))
    feature_map_width = int(np.ceil(options["input_size_width"] / stride))

    for y in range(feature_map_height):
      for x in range(feature_map_width):
        for anchor_id in range(len(anchor_height)):
          x_center = (x + options["anchor_offset_x"]) / feature_map_width
          y_center = (y + options["anchor_offset_y"]) / feature_map_height
          new_anchor = [x_center, y_center, 0, 0]
          if options["fixed_anchor_size"]:
            new_anchor[2] = 1.0
            new_anchor[3] = 1.0
          else:
            new_anchor[2] = anchor_width[anchor_id]
            new_anchor[3] = anchor_height[anchor_id]
          anchors.append(new_anchor)

    layer_id = last_same_stride_layer
  return np.array(anchors, dtype=np.float32)


# -- (b) vectorized NumPy ------------------------------------------------------------


def numpy_anchors(options):
  """One broadcast per group of equal-stride layers; float32 like MediaPipe."""
  strides = options["strides"]
  n = len(strides)
  lo, hi = options["min_scale"], options["max_scale"]
  layer_scale = [lo + (hi - lo) * i / (n - 1.0) if n > 1 else (lo + hi) / 2 for i in range(n)]
  interp = options["interpolated_scale_aspect_ratio"]
  tables = []
  start = 0
  while start < n:
    stop = start
    ratios, scales = [], []
    while stop < n and strides[stop] == strides[start]:
      if stop == 0 and options["reduce_boxes_in_lowest_layer"]:
        ratios += [1.0, 2.0, 0.5]
        scales += [0.1, layer_scale[0], layer_scale[0]]
      else:
        ratios += list(options["aspect_ratios"])
        scales += [layer_scale[stop]] * len(options["aspect_ratios"])
        if interp > 0:
          nxt = 1.0 if stop == n - 1 else layer_scale[stop + 1]
          ratios.append(interp)
          scales.append(math.sqrt(layer_scale[stop] * nxt))
      stop += 1
    fh = math.ceil(options["input_size_height"] / strides[start])
    fw = math.ceil(options["input_size_width"] / strides[start])
    root = np.sqrt(np.asarray(ratios, np.float32))
    scales = np.asarray(scales, np.float32)
    k = len(ratios)
    if options["fixed_anchor_size"]:
      wh = np.ones((k, 2), np.float32)
    else:
      wh = np.stack([scales * root, scales / root], axis=-1)
    xc = (np.arange(fw, dtype=np.float32) + np.float32(options["anchor_offset_x"])) / np.float32(fw)
    yc = (np.arange(fh, dtype=np.float32) + np.float32(options["anchor_offset_y"])) / np.float32(fh)
    table = np.empty((fh, fw, k, 4), np.float32)
    table[..., 0] = xc[None, :, None]
    table[..., 1] = yc[:, None, None]
    table[..., 2:] = wh
    tables.append(table.reshape(-1, 4))
    start = stop
  return np.concatenate(tables)


# -- (c) ours ------------------------------------------------------------------------


def ours_anchors(options):
  return jaxanchors.generate_anchors(options).block_until_ready()


def ours_first_call(options):
  """One cold call: table cache and every jit cache cleared first."""
  jax.clear_caches()
  anchors_module._anchors_cached.cache_clear()
  t0 = time.perf_counter()
  ours_anchors(options)
  return time.perf_counter() - t0


# -- harness -------------------------------------------------------------------------


def large_options() -> jaxanchors.AnchorOptions:
  return jaxanchors.AnchorOptions(
      num_layers=5, input_size_width=1024, input_size_height=1024,
      strides=(8, 16, 32, 64, 128), aspect_ratios=(1.0, 2.0, 0.5),
      min_scale=0.1, max_scale=0.9, anchor_offset_x=0.5, anchor_offset_y=0.5)


def as_dict(options: jaxanchors.AnchorOptions) -> dict:
  return {f: getattr(options, f) for f in (
      "num_layers", "strides", "input_size_width", "input_size_height", "min_scale",
      "max_scale", "anchor_offset_x", "anchor_offset_y", "aspect_ratios",
      "reduce_boxes_in_lowest_layer", "interpolated_scale_aspect_ratio", "fixed_anchor_size")}


def fmt_time(s: float) -> str:
  if s >= 1:
    return f"{s:.2f} s"
  if s >= 1e-3:
    return f"{s * 1e3:.2f} ms"
  return f"{s * 1e6:.1f} us"


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--rounds", type=int, default=7, help="timed rounds (median reported)")
  parser.add_argument("--cold", type=int, default=5, help="cold first calls (median reported)")
  parser.add_argument("--min-seconds", type=float, default=0.05,
                      help="minimum duration of one timed batch")
  args = parser.parse_args()

  configs = [("face_short_range", presets.get("face_short_range").anchors, 896),
             ("large 1024px s8-128 4/cell", large_options(), 87_296)]

  print(f"# jax {jax.__version__}, numpy {np.__version__}, python {platform.python_version()}, "
        f"{jax.devices()[0].platform}")
  rows = []
  for name, options, expected in configs:
    assert jaxanchors.num_anchors(options) == expected, (name, jaxanchors.num_anchors(options))
    d = as_dict(options)
    impls = {"loops": lambda: loops_anchors(d), "numpy": lambda: numpy_anchors(d),
             "ours": lambda: ours_anchors(options)}
    # Agreement (also the warm-up).
    a, b, c = impls["loops"](), impls["numpy"](), np.asarray(impls["ours"]())
    assert a.shape == b.shape == c.shape == (expected, 4), (a.shape, b.shape, c.shape)
    agree = (np.allclose(a, c, rtol=1e-5, atol=1e-5) and np.allclose(b, c, rtol=1e-5, atol=1e-5)
             and np.allclose(a, b, rtol=1e-5, atol=1e-5))
    assert agree, f"{name}: implementations disagree (max |loops-ours| {np.abs(a - c).max()}, " \
                  f"max |numpy-ours| {np.abs(b - c).max()})"
    maxdiff = max(np.abs(a - c).max(), np.abs(b - c).max())

    # Cold first calls, then re-warm.
    cold = statistics.median(ours_first_call(options) for _ in range(args.cold))
    for fn in impls.values():
      fn()
    times = {k: [] for k in impls}
    for _ in range(args.rounds):
      for k, fn in impls.items():
        times[k].append(per_call(fn, args.min_seconds))
    med = {k: statistics.median(v) for k, v in times.items()}
    rows.append((name, expected, med, cold, maxdiff))

  header = ("| config | anchors | (a) loops | (b) numpy | (c) ours steady | ours first call "
            "| (a)/(c) | (b)/(c) | (a)/(c first) | (b)/(c first) | max abs diff |")
  print(header)
  print("|" + "---|" * (header.count("|") - 1))
  for name, n, med, cold, maxdiff in rows:
    print(f"| {name} | {n:,} | {fmt_time(med['loops'])} | {fmt_time(med['numpy'])} "
          f"| {fmt_time(med['ours'])} | {fmt_time(cold)} "
          f"| {med['loops'] / med['ours']:,.0f}x | {med['numpy'] / med['ours']:,.1f}x "
          f"| {med['loops'] / cold:,.2f}x | {med['numpy'] / cold:,.3f}x | {maxdiff:.1e} |")
  print(f"# medians of {args.rounds} rounds (steady) and {args.cold} cold calls; ratios > 1 "
        "mean ours is faster; all three agree (allclose rtol=atol=1e-5)")


if __name__ == "__main__":
  main()
