"""Timing helper shared by the benchmark scripts (run them as ``python benchmarks/<name>.py``)."""

from __future__ import annotations

import time
from typing import Callable


def per_call(fn: Callable[[], object], min_seconds: float) -> float:
  """Seconds per call of ``fn``, averaged over enough calls to last ``min_seconds``."""
  n = 1
  while True:
    t0 = time.perf_counter()
    for _ in range(n):
      fn()
    t = time.perf_counter() - t0
    if t >= min_seconds:
      return t / n
    n = max(n * 2, int(n * min_seconds / max(t, 1e-9)) + 1)
