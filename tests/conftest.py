"""Shared test set-up: hypothesis profile, golden-data location."""

from __future__ import annotations

import os
from pathlib import Path

import hypothesis
import pytest

from _util import GOLDEN

# A fixed, derandomised profile so every run (CI included) sees the same cases.
hypothesis.settings.register_profile(
    "ci", max_examples=60, derandomize=True, deadline=None, print_blob=True,
    suppress_health_check=[hypothesis.HealthCheck.too_slow])
hypothesis.settings.register_profile("dev", max_examples=300, deadline=None)
hypothesis.settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def golden_dir() -> Path:
  """``../shared/golden`` beside the project; skips when it is not there."""
  if not GOLDEN.is_dir():
    pytest.skip(f"golden data folder {GOLDEN} is absent (it ships beside the project, "
                "not inside it)")
  return GOLDEN
