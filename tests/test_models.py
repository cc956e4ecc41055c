"""models: the one-line note on the first download, silence once cached."""

from __future__ import annotations

import pytest

from jaxanchors import models


def test_first_download_says_so_in_one_line(tmp_path, monkeypatch, capsys):
  def offline(dest):
    raise RuntimeError("no package index here")
  monkeypatch.setattr(models, "_download_wheel", offline)
  with pytest.raises(RuntimeError, match="no package index"):
    models.model_path("pose", cache_dir=tmp_path)
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and err.startswith("jaxanchors: downloading the mediapipe==0.10.21")
  assert str(tmp_path) in err


def test_a_cached_model_is_silent(tmp_path, monkeypatch, capsys):
  folder = tmp_path / f"mediapipe-{models.MEDIAPIPE_VERSION}"
  folder.mkdir()
  (folder / "pose_detection.tflite").write_bytes(b"cached")
  monkeypatch.setattr(models, "_download_wheel", lambda dest: pytest.fail("downloaded"))
  assert models.model_path("pose", cache_dir=tmp_path) == folder / "pose_detection.tflite"
  assert capsys.readouterr().err == ""
