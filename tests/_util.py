"""Plumbing shared by the tests: three-way runs, compile counting, converters.

* :func:`three_ways` runs one function eagerly, under ``jax.jit`` and under
  ``jax.vmap`` over a stacked batch (the house's "one test body, three ways").
* :class:`count_traces` counts how often a jitted function is traced, from
  JAX's own compile events (``jax.monitoring``, the events behind
  ``jax.log_compiles``): the package carries no counters of its own.
* :func:`sweep` gives a slow randomised sweep fewer examples in CI than under
  ``HYPOTHESIS_PROFILE=dev``.
* :func:`run_python` and :func:`run_on_host_devices` run a script in a fresh
  process (x64 mode, forced device counts).
* :func:`reference_dicts` turns :class:`~jaxanchors.Detections` slots into the
  dicts the NumPy references in ``tests/reference`` read and write.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Sequence

import hypothesis
import jax
import jax.monitoring
import numpy as np

F32 = np.float32

# ``../shared/golden`` beside the project: MediaPipe's golden anchor files.
GOLDEN = Path(__file__).resolve().parents[1].parent / "shared" / "golden"


# -- hypothesis ---------------------------------------------------------------------


def sweep(ci_examples: int) -> hypothesis.settings:
  """Settings of a slow randomised sweep whose code paths other CI tests cover
  too: ``ci_examples`` examples under the CI profile (the default), the
  profile's own number otherwise (``HYPOTHESIS_PROFILE=dev``: 300)."""
  if os.environ.get("HYPOTHESIS_PROFILE", "ci") == "ci":
    return hypothesis.settings(max_examples=ci_examples)
  return hypothesis.settings()


# -- three ways ---------------------------------------------------------------------


def eager_and_jit(fn: Callable[..., Any], *args: Any,
                  jitted: Callable[..., Any] | None = None) -> tuple[Any, Any]:
  """``fn(*args)`` eagerly and through ``jitted`` (default ``jax.jit(fn)``)."""
  return fn(*args), (jitted or jax.jit(fn))(*args)


def three_ways(fn: Callable[..., Any], args: Sequence[Any], batch: Sequence[Any], *,
               in_axes: Any = 0, jitted: Callable[..., Any] | None = None) -> tuple[Any, Any, Any]:
  """``(eager, jitted, batched)``: ``fn(*args)`` eagerly and under ``jax.jit``,
  and ``jax.vmap(fn, in_axes)(*batch)``, whose output keeps its batch axis.

  ``batch`` holds ``args`` stacked with other cases along axis 0 wherever
  ``in_axes`` maps an argument (and the argument itself where it is ``None``).
  """
  eager, jit_out = eager_and_jit(fn, *args, jitted=jitted)
  return eager, jit_out, jax.vmap(fn, in_axes=in_axes)(*batch)


# -- compile counting ---------------------------------------------------------------

_TRACE_EVENT = "/jax/core/compile/jaxpr_trace_duration"
_active: list["count_traces"] = []
_lock = threading.Lock()
_registered = False


def _listener(event: str, duration: float, **kwargs: Any) -> None:
  del duration
  if event != _TRACE_EVENT:
    return
  name = kwargs.get("fun_name")
  with _lock:
    for counter in _active:
      if counter.fun_name == name:
        counter.count += 1


class count_traces:  # noqa: N801 - used as a context manager, like a function
  """Counts the traces of jitted functions named ``fun_name`` inside a ``with``.

  Built on the trace events JAX records for every ``jax.jit`` trace (those
  ``jax.log_compiles`` logs), so it counts what JAX does, not what the package
  reports::

    with count_traces("_nms_flat") as traces:
      ...
    assert traces.count == 1
  """

  def __init__(self, fun_name: str):
    global _registered
    self.fun_name = fun_name
    self.count = 0
    with _lock:
      if not _registered:
        jax.monitoring.register_event_duration_secs_listener(_listener)
        _registered = True

  def __enter__(self) -> "count_traces":
    with _lock:
      _active.append(self)
    return self

  def __exit__(self, *exc: Any) -> None:
    with _lock:
      _active.remove(self)


# -- converters ---------------------------------------------------------------------


def reference_dicts(det: Any, slots: Sequence[int] | None = None) -> list[dict]:
  """Slots of one frame's ``Detections`` (default: the valid ones, in slot
  order) as the references' dicts, in MediaPipe's form: ``xmin``, ``ymin``,
  ``width = f32(xmax - xmin)``, ``height``, float32 keypoint pairs, ``score``,
  ``label_id`` and the slot as ``anchor_index``."""
  det = jax.tree.map(np.asarray, det)
  if slots is None:
    slots = np.nonzero(det.valid)[0]
  out = []
  for i in slots:
    xmin, ymin, xmax, ymax = np.asarray(det.boxes[i], F32)
    out.append(dict(anchor_index=int(i), score=det.scores[i], label_id=int(det.classes[i]),
                    xmin=xmin, ymin=ymin, width=F32(xmax - xmin), height=F32(ymax - ymin),
                    keypoints=[tuple(p) for p in np.asarray(det.keypoints[i], F32)]))
  return out


def run_python(script: str, *, env: dict[str, str] | None = None, timeout: float = 600) -> str:
  """Runs ``python -c script`` in a fresh process (with ``env`` added); returns its stdout.

  For settings JAX reads once per process (device count, ``JAX_ENABLE_X64``).
  """
  result = subprocess.run([sys.executable, "-c", script], env=dict(os.environ, **(env or {})),
                          capture_output=True, text=True, timeout=timeout, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  return result.stdout


def run_on_host_devices(script: str, *, devices: int = 8, timeout: float = 600) -> str:
  """Runs ``python -c script`` with ``devices`` forced CPU devices; returns its stdout.

  Sharding tests run in a subprocess because XLA reads the device count once per process.
  """
  return run_python(script, timeout=timeout, env={
      "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}", "JAX_PLATFORMS": "cpu"})
