"""How many CPUs this process may use, shared by the LiteRT runner and the detector."""

from __future__ import annotations

import os


def usable_cpus() -> int:
  """CPUs this process may run on (its affinity mask where the OS has one)."""
  try:
    return len(os.sched_getaffinity(0)) or 1
  except AttributeError:  # no affinity masks (macOS, Windows)
    return os.cpu_count() or 1
