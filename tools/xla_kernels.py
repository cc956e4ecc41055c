"""Kernels per XLA:CPU computation of a compiled function, and which ones XLA splits over threads.

On small CPU machines the cost of a jitted call is often hand-overs between
threads, not arithmetic (see the NMS notes in ``benchmarks/RESULTS.md``).
XLA:CPU causes them in two ways:

* it splits a kernel it deems large over the thread pool (the kernel carries
  ``outer_dimension_partitions`` in the compiled HLO);
* it runs a computation (entry, loop body, branch) of more than 8 kernels as
  a concurrent graph, handing ready kernels to other threads.

This lists, for every computation of the compiled module, how many kernels it
runs and which of them are split, so a change can be checked before it is
timed::

    python tools/xla_kernels.py nms WEIGHTED     # the 64 x 896 BlazeFace NMS batch
    python tools/xla_kernels.py detect           # the BlazeFace pipeline, B=64
    python tools/xla_kernels.py detect - 1       # the same, one frame

From Python: ``report(jax.jit(f).lower(*args).compile().as_text())``.
"""

from __future__ import annotations

import re
import sys

# Instructions that run no kernel of their own.
_FREE = {"parameter", "get-tuple-element", "tuple", "constant", "bitcast"}
_INSTRUCTION = re.compile(r"\s*(?:ROOT )?%(\S+) = \S+?(?:\{[^}]*\})? ([a-z][a-z\-]*)\(")


def kernels(hlo_text: str) -> dict[str, list[tuple[str, bool]]]:
  """``{computation: [(kernel, split), ...]}`` for every computation that runs kernels.

  Fused computations (the bodies of kernels) and the small reducer regions are
  left out; loop bodies, loop conditions and conditional branches are kept.
  """
  out = {}
  for block in hlo_text.split("\n\n"):
    lines = block.strip().splitlines()
    if not lines:
      continue
    head = lines[0]
    name = (head.split(" ")[1] if head.startswith("ENTRY") else head.split(" ")[0]).lstrip("%")
    if "fused" in name or name.startswith("wrapped_"):
      continue
    found = []
    kinds = set()
    for line in lines[1:]:
      m = _INSTRUCTION.match(line)
      if m and m.group(2) not in _FREE:
        found.append((m.group(1), 'outer_dimension_partitions":["' in line))
        kinds.add(m.group(2))
    # Reducer regions hold scalar arithmetic only; computations that run
    # kernels hold fusions, copies, loops, branches or library calls.
    if kinds & {"fusion", "copy", "while", "conditional", "custom-call", "call", "sort", "dot",
                "scatter", "gather"}:
      out[name] = found
  return out


def report(hlo_text: str) -> str:
  """One line per computation: kernel count, sequential or concurrent, split kernels."""
  rows = []
  for name, found in kernels(hlo_text).items():
    split = [k for k, s in found if s]
    mode = "one thread" if len(found) <= 8 else "concurrent"
    rows.append(f"{name[:48]:48s} {len(found):3d} kernels ({mode})"
                + (f", split: {', '.join(split)}" if split else ""))
  return "\n".join(rows)


def _example(what: str, algorithm: str, batch: int = 64) -> str:
  import numpy as np
  import jax.numpy as jnp

  from jaxanchors import nms, pipeline, presets
  from jaxanchors.detections import Detections
  rng = np.random.default_rng(0)
  if what == "detect":
    preset = presets.get("face_short_range")
    boxes = rng.normal(0, 6, (batch, 896, 16)).astype(np.float32)
    scores = rng.normal(-3, 3, (batch, 896, 1)).astype(np.float32)
    return pipeline._detect.lower(boxes, scores, None, None, np.float32(0.5),
                                  options=pipeline._resolve(preset),
                                  max_detections=10, top_k=None,
                                  mapping=None).compile().as_text()
  n = 896
  c = rng.uniform(0, 1, (64, n, 2)).astype(np.float32)
  d = Detections(jnp.asarray(np.concatenate([c - 0.05, c + 0.05], -1)),
                 jnp.zeros((64, n, 6, 2)), jnp.asarray(rng.random((64, n), np.float32)),
                 jnp.zeros((64, n), jnp.int32), jnp.asarray(rng.random((64, n)) < 0.05))
  return nms._nms_flat.lower(
      *d, np.float32(0.3), np.float32(-1), np.int32(-1),
      kind=nms.OverlapType.INTERSECTION_OVER_UNION, weighted=algorithm == "WEIGHTED", slots=32,
      top_k=None).compile().as_text()


if __name__ == "__main__":
  what = sys.argv[1] if len(sys.argv) > 1 else "nms"
  print(report(_example(what, sys.argv[2] if len(sys.argv) > 2 else "WEIGHTED",
                        int(sys.argv[3]) if len(sys.argv) > 3 else 64)))
