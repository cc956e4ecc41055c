"""Pictures in: image files, folders, glob patterns and videos to RGB arrays.

Contract, stated once:

* What a detector takes is ``[H, W, 3]`` RGB, ``uint8``, or ``float32`` with
  values in 0..255 (the package's convention, :mod:`jaxanchors.letterbox`).
  :func:`as_rgb` brings other arrays there: gray ``[H, W]`` or ``[H, W, 1]``
  is repeated into three channels, an alpha channel (``[H, W, 2]`` gray+alpha
  or ``[H, W, 4]`` RGBA) is dropped, ``uint16`` is rounded to 8 bits
  (``round(x * 255 / 65535)``, so a 16-bit image ``x * 257`` gives back ``x``
  exactly), other integers must already lie in 0..255, floats are kept as
  float32 (0..255, finite).
* :func:`read_image` decodes a file with Pillow (the ``plot`` or ``cli``
  extra), applies its EXIF orientation, converts palette, 1-bit, CMYK and
  16-bit gray images to RGB as :func:`as_rgb` does, and returns ``uint8``
  ``[H, W, 3]``. Pillow reads 16-bit-per-channel RGB files with the high byte
  of each value.
* :func:`iter_video` decodes a video's frames with PyAV (the ``video`` extra).
* :func:`find_inputs` turns files, folders (their images and videos, sorted
  by name, not recursive) and glob patterns into a list of files, refusing
  what cannot be read before anything is decoded.
"""

from __future__ import annotations

import glob
import os
import pathlib
from typing import Any, Iterable, Iterator

import numpy as np

__all__ = ["IMAGE_SUFFIXES", "VIDEO_SUFFIXES", "as_rgb", "find_inputs", "is_video",
           "iter_video", "probe_image", "read_image", "video_frame_count"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm",
                  ".pgm", ".pbm", ".pnm")
"""File extensions read as images (any case)."""

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv")
"""File extensions read as videos (any case)."""

_PILLOW = "reading images needs Pillow: pip install 'jaxanchors[cli]'"
_PYAV = "reading videos needs PyAV: pip install 'jaxanchors[video]'"


def as_rgb(image: Any) -> np.ndarray:
  """One picture as ``[H, W, 3]`` RGB ``uint8`` or ``float32`` (see the module docstring).

  Raises:
    ValueError: not ``[H, W]`` or ``[H, W, C]`` with ``C`` in 1..4, an empty
      image, integers outside 0..255 (other than ``uint16``) or non-finite floats.
    TypeError: a boolean, complex or non-numeric array.

  Examples:
    >>> import numpy as np
    >>> as_rgb(np.array([[0, 65535]], np.uint16)).tolist()
    [[[0, 0, 0], [255, 255, 255]]]
    >>> as_rgb(np.zeros((2, 3, 4), np.uint8)).shape
    (2, 3, 3)
  """
  x = np.asarray(image)
  if x.ndim == 2:
    x = x[..., None]
  if x.ndim != 3 or not 1 <= x.shape[-1] <= 4:
    raise ValueError(f"image must be [H, W] or [H, W, C] with C in 1..4, got shape {x.shape}")
  if x.shape[0] == 0 or x.shape[1] == 0:
    raise ValueError(f"image is empty: shape {x.shape}")
  if x.dtype == np.bool_ or not (np.issubdtype(x.dtype, np.integer)
                                 or np.issubdtype(x.dtype, np.floating)):
    raise TypeError(f"image must hold integers or floats, got dtype {x.dtype}")
  x = x[..., :3] if x.shape[-1] >= 3 else np.repeat(x[..., :1], 3, axis=-1)
  if x.dtype == np.uint8:
    return np.ascontiguousarray(x)
  if x.dtype == np.uint16:
    wide = x.astype(np.uint32)
    return ((wide * 255 + 32767) // 65535).astype(np.uint8)
  if np.issubdtype(x.dtype, np.integer):
    lo, hi = int(x.min()), int(x.max())
    if lo < 0 or hi > 255:
      raise ValueError(f"an image of dtype {x.dtype} must hold values in 0..255, got "
                       f"{lo}..{hi} (uint16 images are scaled)")
    return x.astype(np.uint8)
  x = x.astype(np.float32)
  if not np.isfinite(x).all():
    raise ValueError("a float image must hold finite values (0..255)")
  return x


def _pillow() -> Any:
  try:
    from PIL import Image, ImageOps  # pylint: disable=import-outside-toplevel
  except ImportError:
    raise ImportError(_PILLOW) from None
  return Image, ImageOps


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
  """An image file as ``[H, W, 3]`` RGB ``uint8``, EXIF orientation applied.

  Raises:
    ImportError: Pillow is not installed.
    OSError: the file cannot be read or decoded.
    ValueError: a pixel format that is not a picture (Pillow's float mode ``F``).
  """
  image_module, image_ops = _pillow()
  with image_module.open(path) as img:
    img = image_ops.exif_transpose(img)
    mode = img.mode
    if mode.startswith("I;16") or mode == "I":  # 16-bit gray (and Pillow's 32-bit int mode)
      return as_rgb(np.clip(np.asarray(img, np.int64), 0, 65535).astype(np.uint16))
    if mode == "F":
      raise ValueError(f"{os.fspath(path)!r} holds float pixels (Pillow mode F), "
                       "not a picture with a known range")
    return np.asarray(img.convert("RGB"))


def probe_image(path: str | os.PathLike[str]) -> tuple[int, int]:
  """``(height, width)`` of an image file as stored (before EXIF orientation), from
  its header alone: a cheap check that Pillow can open it.

  Raises:
    ImportError: Pillow is not installed.
    OSError: not an image Pillow can open.
  """
  image_module, _ = _pillow()
  with image_module.open(path) as img:
    w, h = img.size
  return h, w


def is_video(path: str | os.PathLike[str]) -> bool:
  """Whether ``path`` has a video extension (:data:`VIDEO_SUFFIXES`)."""
  return pathlib.Path(path).suffix.lower() in VIDEO_SUFFIXES


def _av() -> Any:
  try:
    import av  # pylint: disable=import-outside-toplevel
  except ImportError:
    raise ImportError(_PYAV) from None
  return av


def video_frame_count(path: str | os.PathLike[str]) -> int | None:
  """The number of frames the video's container declares (``None`` if it does not say).

  Raises:
    ImportError: PyAV is not installed.
    OSError: not a video PyAV can open, or one without a video stream.
  """
  av = _av()
  try:
    with av.open(os.fspath(path)) as container:
      if not container.streams.video:
        raise OSError(f"{os.fspath(path)!r} has no video stream")
      return int(container.streams.video[0].frames) or None
  except av.error.FFmpegError as e:
    raise OSError(f"cannot open video {os.fspath(path)!r}: {e}") from None


def iter_video(path: str | os.PathLike[str]) -> Iterator[np.ndarray]:
  """The frames of a video file, in order, each ``[H, W, 3]`` RGB ``uint8``.

  Raises:
    ImportError: PyAV is not installed.
    OSError: the file cannot be opened or decoded.
  """
  av = _av()
  try:
    with av.open(os.fspath(path)) as container:
      if not container.streams.video:
        raise OSError(f"{os.fspath(path)!r} has no video stream")
      for frame in container.decode(video=0):
        yield frame.to_ndarray(format="rgb24")
  except av.error.FFmpegError as e:
    raise OSError(f"cannot decode video {os.fspath(path)!r}: {e}") from None


def _known(path: pathlib.Path) -> bool:
  return path.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES


def find_inputs(sources: Iterable[str | os.PathLike[str]]) -> list[pathlib.Path]:
  """Files, folders and glob patterns to the list of image and video files they name.

  A file must have an image or video extension; a folder gives its images and
  videos sorted by name (not recursive; other files are skipped); a pattern
  with ``*``, ``?`` or ``[`` gives its matches with those extensions, sorted.
  Folders are checked first, then patterns, then files, all before anything
  is decoded.

  Raises:
    ValueError: a missing path, a folder or pattern without images or videos,
      a file with another extension, or no source at all. The message names it.
  """
  sources = [os.fspath(s) for s in sources]
  if not sources:
    raise ValueError("no input given: name image or video files, folders or glob patterns")
  kinds = []
  for s in sources:
    p = pathlib.Path(s)
    kinds.append("folder" if p.is_dir() else "pattern" if not p.exists() and glob.has_magic(s)
                 else "file")
  found: dict[int, list[pathlib.Path]] = {}
  for kind in ("folder", "pattern", "file"):
    for i, (s, k) in enumerate(zip(sources, kinds)):
      if k != kind:
        continue
      if kind == "folder":
        files = sorted(f for f in pathlib.Path(s).iterdir() if f.is_file() and _known(f))
        if not files:
          raise ValueError(f"folder {s!r} holds no images or videos ({', '.join(IMAGE_SUFFIXES)}"
                           f"; {', '.join(VIDEO_SUFFIXES)})")
      elif kind == "pattern":
        files = sorted(pathlib.Path(f) for f in glob.glob(s)
                       if os.path.isfile(f) and _known(pathlib.Path(f)))
        if not files:
          raise ValueError(f"pattern {s!r} matches no image or video files")
      else:
        p = pathlib.Path(s)
        if not p.exists():
          raise ValueError(f"no such file or folder: {s!r}")
        if not p.is_file():
          raise ValueError(f"not a file or folder: {s!r}")
        if not _known(p):
          raise ValueError(f"cannot tell what {s!r} is from its extension: images are "
                           f"{', '.join(IMAGE_SUFFIXES)}; videos {', '.join(VIDEO_SUFFIXES)}")
        files = [p]
      found[i] = files
  return [f for i in range(len(sources)) for f in found[i]]
