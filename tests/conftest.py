"""Shared test set-up: hypothesis profile, golden-data location."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import hypothesis
import jax
import pytest

from _util import GOLDEN

# A fixed, derandomised profile so every run (CI included) sees the same cases.
hypothesis.settings.register_profile(
    "ci", max_examples=60, derandomize=True, deadline=None, print_blob=True,
    suppress_health_check=[hypothesis.HealthCheck.too_slow])
hypothesis.settings.register_profile("dev", max_examples=300, deadline=None)
hypothesis.settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


_CACHE_KEY = pytest.StashKey[str]()  # the run's cache folder, when this process made it


def pytest_configure(config: pytest.Config) -> None:
  """One XLA compilation cache for the whole run, shared by the xdist workers
  and the subprocesses tests start: most of the suite's time is compiling, and
  many programs (detect on a preset, say) are compiled by tests in several
  processes. A fresh folder per run, so each run compiles what it needs once;
  set ``JAX_COMPILATION_CACHE_DIR`` to keep one across runs."""
  if not hasattr(config, "workerinput") and "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    folder = tempfile.mkdtemp(prefix="jaxanchors-tests-xla-cache-")
    config.stash[_CACHE_KEY] = folder
    os.environ["JAX_COMPILATION_CACHE_DIR"] = folder  # workers and subprocesses inherit it
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
  # This process imported jax already.
  jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
  jax.config.update("jax_persistent_cache_min_compile_time_secs",
                    float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))


def pytest_unconfigure(config: pytest.Config) -> None:
  folder = config.stash.get(_CACHE_KEY, None)
  if folder is not None:
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def golden_dir() -> Path:
  """``../shared/golden`` beside the project; skips when it is not there."""
  if not GOLDEN.is_dir():
    pytest.skip(f"golden data folder {GOLDEN} is absent (it ships beside the project, "
                "not inside it)")
  return GOLDEN
