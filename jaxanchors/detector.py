"""A detector object: pictures in, detections in pixels out, in the spirit of MediaPipe Tasks.

:class:`Detector` wraps one preset's real model the way MediaPipe Tasks'
``FaceDetector`` wraps a graph: build it once
(``Detector.from_preset("face_short_range")``), then call
:meth:`~Detector.detect` on a picture, :meth:`~Detector.detect_batch` on many,
or :meth:`~Detector.detect_files` on files, folders, glob patterns and videos.

* Pictures are anything :func:`jaxanchors.images.as_rgb` takes: any size,
  ``uint8``, ``uint16`` or float (0..255), gray, RGB or RGBA. Files are read
  with :func:`jaxanchors.images.read_image` (EXIF orientation applied).
* The computation is :func:`jaxanchors.pipeline.detect_images` (the network in
  JAX) or LiteRT followed by :func:`jaxanchors.pipeline.detect` (``runtime=
  "litert"``), so the detections are those functions' values, scaled to pixels.
* Pictures of one size are stacked into one call of at most ``batch_size``
  frames; a partial batch is padded (with copies of its last frame) to the
  next power of two, so each picture size compiles at most
  ``log2(batch_size) + 1`` programs. Pictures of different sizes go in
  separate calls; results come back in input order.
* Results are :class:`ImageDetections`: NumPy arrays in pixels, the preset's
  keypoint names and class labels, and :meth:`ImageDetections.to_dict`, the
  one JSON form of detections that the command line and the examples write::

    {"image": "photo.jpg", "frame": null, "width": 512, "height": 512,
     "preset": "face_short_range",
     "detections": [{"score": 0.92, "class_id": 0, "label": null,
                     "box": [xmin, ymin, xmax, ymax],
                     "keypoints": [{"name": "right_eye", "x": 211.4, "y": 119.2}, ...]}]}

  Coordinates are pixels of the picture as read (``x`` right, ``y`` down;
  nothing clipped), detections in descending score order.

One picture per call (a live stream) on a CPU: JAX hands each call to a
worker thread by default; ``jax.config.update("jax_cpu_enable_async_dispatch",
False)`` runs calls on the calling thread instead, which saves that hand-over
(tens of microseconds per call on small machines; see the README's Speed
section). It is a global JAX setting, so the detector leaves it to you.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import sys
import tempfile
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from jaxanchors import _validate as v
from jaxanchors._cpus import usable_cpus
from jaxanchors import images as images_module
from jaxanchors import presets as presets_module

__all__ = ["Detector", "ImageDetections"]

_RUNTIMES = ("jax", "litert")


@dataclasses.dataclass(frozen=True, eq=False)
class ImageDetections:
  """The detections of one picture, in pixels.

  Attributes:
    boxes: ``[N, 4]`` float32 ``[xmin, ymin, xmax, ymax]`` in pixels.
    keypoints: ``[N, K, 2]`` float32 ``(x, y)`` in pixels.
    scores: ``[N]`` float32, descending.
    classes: ``[N]`` int32 class ids (MediaPipe's ``label_id``).
    width, height: the picture's size in pixels.
    preset: the preset's name.
    keypoint_names: ``K`` names (the preset's; ``()`` when unnamed).
    labels: the preset's class names by class id (``()`` when it has none).
    source: the file the picture came from, if any.
    frame: the frame index within a video, if any.
  """

  boxes: np.ndarray
  keypoints: np.ndarray
  scores: np.ndarray
  classes: np.ndarray
  width: int
  height: int
  preset: str
  keypoint_names: tuple[str, ...] = ()
  labels: tuple[str, ...] = ()
  source: str | None = None
  frame: int | None = None

  def __len__(self) -> int:
    return int(self.scores.shape[0])

  def label(self, class_id: int) -> str | None:
    """The class name of ``class_id``, ``None`` when the preset names no classes."""
    return self.labels[class_id] if 0 <= class_id < len(self.labels) else None

  def to_dict(self) -> dict[str, Any]:
    """The one JSON form (see the module docstring): plain Python types only."""
    names = self.keypoint_names or tuple(str(i) for i in range(self.keypoints.shape[1]))
    found = []
    for box, kps, score, cls in zip(self.boxes.tolist(), self.keypoints.tolist(),
                                    self.scores.tolist(), self.classes.tolist()):
      found.append({"score": score, "class_id": cls, "label": self.label(cls), "box": box,
                    "keypoints": [{"name": n, "x": x, "y": y} for n, (x, y) in zip(names, kps)]})
    return {"image": self.source, "frame": self.frame, "width": self.width,
            "height": self.height, "preset": self.preset, "detections": found}

  def to_json(self, **kwargs: Any) -> str:
    """:meth:`to_dict` as JSON text (keyword arguments go to :func:`json.dumps`)."""
    return json.dumps(self.to_dict(), **kwargs)

  @classmethod
  def from_dict(cls, data: dict[str, Any]) -> ImageDetections:
    """Reads back what :meth:`to_dict` wrote (``labels`` are not stored, so none)."""
    found = data["detections"]
    k = len(found[0]["keypoints"]) if found else 0
    names = tuple(p["name"] for p in found[0]["keypoints"]) if found else ()
    return cls(
        boxes=np.array([d["box"] for d in found], np.float32).reshape(-1, 4),
        keypoints=np.array([[(p["x"], p["y"]) for p in d["keypoints"]] for d in found],
                           np.float32).reshape(-1, k, 2),
        scores=np.array([d["score"] for d in found], np.float32),
        classes=np.array([d["class_id"] for d in found], np.int32),
        width=int(data["width"]), height=int(data["height"]), preset=data["preset"],
        keypoint_names=names, source=data.get("image"), frame=data.get("frame"))

  def to_coco(self, image_id: int) -> list[dict[str, Any]]:
    """COCO detection results (what ``pycocotools.COCO.loadRes`` reads): one
    ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}`` per
    detection, ``category_id`` the class id (COCO's own ids for ``ssdlite_coco``)."""
    out = []
    for (x0, y0, x1, y1), score, cls in zip(self.boxes.tolist(), self.scores.tolist(),
                                            self.classes.tolist()):
      out.append({"image_id": int(image_id), "category_id": cls,
                  "bbox": [x0, y0, x1 - x0, y1 - y0], "score": score})
    return out


@contextlib.contextmanager
def _without_stderr_lines(dropped: str) -> Iterator[None]:
  """Runs the body with the process's stderr (file descriptor 2) captured, then
  writes back every captured line except those containing ``dropped``: native
  libraries print there directly."""
  sys.stderr.flush()
  try:
    saved = os.dup(2)
  except OSError:  # no file descriptor 2 (embedded interpreters)
    yield
    return
  with tempfile.TemporaryFile() as capture:
    os.dup2(capture.fileno(), 2)
    try:
      yield
    finally:
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)
      capture.seek(0)
      kept = [line for line in capture.read().decode(errors="replace").splitlines(True)
              if dropped not in line]
      if kept:
        sys.stderr.write("".join(kept))
        sys.stderr.flush()


@functools.lru_cache(maxsize=None)
def _network(name: str) -> Any:
  """The JAX network of a shipped model other than a preset's own, one instance per
  name (so compiled programs are shared by detectors)."""
  from jaxanchors import models  # pylint: disable=import-outside-toplevel
  return models.load_network(name)


def _bucket(n: int, batch_size: int) -> int:
  """The padded size of a call holding ``n`` frames: the next power of two, at most
  ``batch_size``."""
  size = 1
  while size < n:
    size *= 2
  return min(size, batch_size)


class Detector:
  """One preset's model, ready for pictures; see the module docstring.

  Args:
    preset: a preset name or :class:`~jaxanchors.presets.Preset` with a shipped
      model (or pass ``network``).
    min_score: the score threshold for this detector (the decoder's
      ``min_score_thresh``); ``None`` keeps the preset's. A traced value: a
      new threshold does not recompile.
    max_detections: detections kept per picture at most (static; MediaPipe's
      NMS keeps every one that survives, so choose it above the expected count).
    runtime: ``"jax"`` (the network translated to JAX, everything in one
      jitted call per batch) or ``"litert"`` (the ``.tflite`` in LiteRT, a
      batch's frames side by side on one one-thread interpreter per CPU,
      :meth:`~jaxanchors.models.TFLiteModel.run_batch`, then one jitted call
      for the post-processing).
    model: another shipped detector to run with the preset's options, a name
      of :data:`jaxanchors.models.DETECTOR_MODELS` (e.g. ``"palm_lite"`` with
      ``"palm"``).
    network: a :class:`jaxanchors.networks.Network` to run instead
      (``runtime="jax"`` only), e.g. a fine-tuned copy.
    batch_size: frames per call at most.

  Raises:
    ValueError: an unknown preset, runtime or detector model, a network that
      is not an SSD detector, a preset without a model and no
      ``network``, ``max_detections`` or ``batch_size`` below 1, ``min_score``
      outside 0..1.

  Example (not run as a doctest: it needs the model once)::

    detector = Detector.from_preset("face_short_range", max_detections=5)
    faces = detector.detect(jaxanchors.read_image("photo.jpg"))
    faces.boxes, faces.keypoint_names, faces.to_json()
  """

  def __init__(self, preset: Any, *, min_score: float | None = None, max_detections: int = 10,
               runtime: str = "jax", model: str | None = None, network: Any = None,
               batch_size: int = 8) -> None:
    preset = presets_module.get(preset)
    if not isinstance(preset, presets_module.Preset):
      raise TypeError(f"preset must be a preset name or a Preset, got {type(preset).__name__}")
    if runtime not in _RUNTIMES:
      raise ValueError(f"runtime must be one of {', '.join(_RUNTIMES)}, got {runtime!r}")
    if network is not None and (runtime != "jax" or model is not None):
      raise ValueError("network= runs in JAX: use runtime='jax' and no model=")
    if network is not None:
      network.check_detector()
    if model is not None:
      from jaxanchors import models  # pylint: disable=import-outside-toplevel
      if model not in models.DETECTOR_MODELS:
        raise ValueError(f"unknown model {model!r}; expected a detector, one of "
                         f"{sorted(models.DETECTOR_MODELS)}")
    model = model or preset.model
    if network is None and model is None:
      with_models = ", ".join(n for n in presets_module.names() if presets_module.get(n).model)
      raise ValueError(f"preset {preset.name!r} has no shipped model; use one of {with_models} "
                       "or pass network=")
    self._preset = preset
    self._max_detections = v.as_int("max_detections", max_detections, minimum=1)
    self._batch_size = v.as_int("batch_size", batch_size, minimum=1)
    if min_score is not None:
      min_score = v.as_float("min_score", min_score)
      if not 0.0 <= min_score <= 1.0:
        raise ValueError(f"min_score must lie in 0..1, got {min_score!r}")
    self._min_score = min_score
    self._runtime = runtime
    self._model_name = model
    self._network = network
    self._litert = None

  @classmethod
  def from_preset(cls, preset: Any, *, min_score: float | None = None, max_detections: int = 10,
                  runtime: str = "jax", model: str | None = None, network: Any = None,
                  batch_size: int = 8) -> Detector:
    """The detector of a preset (by name, as MediaPipe Tasks' ``create_from_options``);
    the arguments are the constructor's."""
    return cls(preset, min_score=min_score, max_detections=max_detections, runtime=runtime,
               model=model, network=network, batch_size=batch_size)

  @property
  def preset(self) -> presets_module.Preset:
    """The :class:`~jaxanchors.presets.Preset`."""
    return self._preset

  @property
  def runtime(self) -> str:
    """``"jax"`` or ``"litert"``."""
    return self._runtime

  @property
  def max_detections(self) -> int:
    """Detections kept per picture at most."""
    return self._max_detections

  @property
  def min_score(self) -> float | None:
    """The score threshold, ``None`` for the preset's."""
    return self._min_score

  def __repr__(self) -> str:
    return (f"Detector({self._preset.name!r}, runtime={self._runtime!r}, "
            f"max_detections={self._max_detections}, min_score={self._min_score!r})")

  # -- running ---------------------------------------------------------------------------

  def _threshold(self) -> dict[str, Any]:
    return {} if self._min_score is None else {"min_score_thresh": self._min_score}

  def _model(self) -> Any:
    """The LiteRT interpreter, built once (its XNNPACK banner left out of stderr)."""
    if self._litert is None:
      from jaxanchors import models  # pylint: disable=import-outside-toplevel
      with _without_stderr_lines("Created TensorFlow Lite XNNPACK delegate"):
        # One frame uses up to 4 CPUs (1.3x faster than LiteRT's default on two
        # cores; these small models gain little from more); a batch runs its
        # frames side by side instead (run_batch).
        cpus = usable_cpus()
        self._litert = models.TFLiteModel.from_name(self._model_name, num_threads=min(cpus, 4))
        self._litert(np.zeros(self._litert.input_shape, np.float32))  # delegate set up here
        # The one-thread interpreters that run a batch's frames side by side.
        self._litert.run_batch(np.zeros((cpus,) + self._litert.input_shape[1:], np.float32))
    return self._litert

  def prepare(self) -> Detector:
    """Fetches the model file (downloading it once; for LiteRT, builds the
    interpreter too); returns ``self``. Calls do this themselves; call it to
    fail early."""
    if self._runtime == "litert":
      self._model()
    elif self._network is None:
      from jaxanchors import models  # pylint: disable=import-outside-toplevel
      models.model_path(self._model_name)
    return self

  def _run(self, stack: np.ndarray) -> Any:
    """``[B, H, W, 3]`` frames of one size -> batched Detections (normalised), NumPy."""
    import jax  # pylint: disable=import-outside-toplevel
    from jaxanchors import pipeline  # pylint: disable=import-outside-toplevel
    from jaxanchors.letterbox import letterbox  # pylint: disable=import-outside-toplevel
    if self._runtime == "jax":
      network = self._network
      if network is None and self._model_name != self._preset.model:
        network = _network(self._model_name)
      found = pipeline.detect_images(stack, self._preset, max_detections=self._max_detections,
                                     network=network, **self._threshold())
    else:
      model = self._model()
      tensors, transform = letterbox(stack, self._preset.preprocessing)
      raw_boxes, raw_scores = model.run_batch(np.asarray(tensors))  # frames side by side
      found = pipeline.detect(raw_boxes, raw_scores, self._preset,
                              max_detections=self._max_detections, transform=transform,
                              **self._threshold())
    return jax.tree.map(np.asarray, found)

  def _result(self, found: Any, i: int, height: int, width: int, source: str | None,
              frame: int | None) -> ImageDetections:
    ok = found.valid[i]
    scale = np.array([width, height], np.float32)
    return ImageDetections(
        boxes=found.boxes[i][ok] * np.tile(scale, 2), keypoints=found.keypoints[i][ok] * scale,
        scores=found.scores[i][ok], classes=found.classes[i][ok].astype(np.int32),
        width=width, height=height, preset=self._preset.name,
        keypoint_names=self._preset.keypoint_names, labels=self._preset.labels,
        source=source, frame=frame)

  def _chunks(self, pictures: Sequence[np.ndarray], tags: Sequence[tuple[str | None, int | None]]
              ) -> list[ImageDetections]:
    """Pictures already through ``as_rgb``: grouped by size and dtype, run, in input order."""
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, p in enumerate(pictures):
      groups.setdefault((p.shape, p.dtype.str), []).append(i)
    out: list[ImageDetections | None] = [None] * len(pictures)
    for members in groups.values():
      for start in range(0, len(members), self._batch_size):
        part = members[start:start + self._batch_size]
        stack = [pictures[i] for i in part]
        stack += [stack[-1]] * (_bucket(len(part), self._batch_size) - len(part))
        found = self._run(np.stack(stack))
        for j, i in enumerate(part):
          h, w = pictures[i].shape[:2]
          out[i] = self._result(found, j, h, w, *tags[i])
    return out  # type: ignore[return-value]

  def detect(self, image: Any) -> ImageDetections:
    """Detections on one picture (see the module docstring for what it may be)."""
    return self._chunks([images_module.as_rgb(image)], [(None, None)])[0]

  def detect_batch(self, images: Iterable[Any]) -> list[ImageDetections]:
    """Detections on many pictures, batched by size; one result per picture, in order.

    ``images`` may be a sequence of pictures or one ``[B, H, W, C]`` array.
    """
    pictures = [images_module.as_rgb(x) for x in images]
    return self._chunks(pictures, [(None, None)] * len(pictures))

  def detect_files(self, sources: Iterable[str | os.PathLike[str]] | str | os.PathLike[str], *,
                   with_images: bool = False) -> Iterator[Any]:
    """Detections on image files, folders, glob patterns and videos, as they come.

    ``sources`` go through :func:`jaxanchors.images.find_inputs` first (so a
    missing file fails before anything runs); images are read with
    :func:`~jaxanchors.images.read_image`, videos frame by frame with
    :func:`~jaxanchors.images.iter_video`. Up to ``batch_size`` pictures are
    read, run batched by size, and yielded in order with ``source`` (and
    ``frame`` for videos) set; with ``with_images``, as ``(detections,
    picture)`` pairs (e.g. to draw them).
    """
    if isinstance(sources, (str, os.PathLike)):
      sources = [sources]
    files = images_module.find_inputs(sources)

    def frames() -> Iterator[tuple[np.ndarray, str, int | None]]:
      for path in files:
        if images_module.is_video(path):
          for k, frame in enumerate(images_module.iter_video(path)):
            yield frame, str(path), k
        else:
          try:
            picture = images_module.read_image(path)
          except OSError as e:
            raise OSError(f"cannot read {str(path)!r}: {e}") from e
          yield picture, str(path), None

    def flush(pending: list[tuple[np.ndarray, str, int | None]]) -> Iterator[Any]:
      pictures = [images_module.as_rgb(p[0]) for p in pending]
      found = self._chunks(pictures, [p[1:] for p in pending])
      yield from zip(found, pictures) if with_images else found

    pending: list[tuple[np.ndarray, str, int | None]] = []
    for item in frames():
      pending.append(item)
      if len(pending) == self._batch_size:
        yield from flush(pending)
        pending = []
    if pending:
      yield from flush(pending)
