"""One jitted call from raw model outputs to detections in image coordinates.

:func:`detect` chains the three MediaPipe calculators of an SSD graph and the
mapping back to the image:

1. anchors (``SsdAnchorsCalculator``, a compile-time constant),
2. decoding and score filtering (``TensorsToDetectionsCalculator``),
3. optional ``top_k`` pre-selection, then NMS (``NonMaxSuppressionCalculator``),
4. mapping back through the letterbox transform: ``DetectionProjection`` or
   ``DetectionLetterboxRemoval``, whichever the graph uses.

Everything is static except the tensors, so a batch of any leading shape
compiles once per shape; the batch may be sharded over devices (data
parallel), each frame being independent.

Steps 2 and 3 are fused when the decoder's options let candidacy be decided
from the logits alone (float32 or float64 logits and sigmoid scores: every
shipped preset, multi-class SSD ones included; not under ``top_k``):
anchors whose logit is below a conservative bound computed from the score
threshold (a traced value) are dropped before decoding, the others are
compacted per frame and only those are decoded and passed to NMS. The results
are those of decoding every anchor (the decoder's own filters still decide),
at a fraction of the work. A batch of more than 16 frames is sorted by
candidate count and run 16 frames at a time, so each group sizes its
compaction bucket and NMS steps for its own frames: a batch costs about its
number of frames times the cost of one, whatever the spread of counts.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.typing import ArrayLike

from jaxanchors import _compaction as compaction
from jaxanchors import _validate as v
from jaxanchors import presets as presets_module
from jaxanchors.anchors import AnchorOptions, generate_anchors
from jaxanchors.decoding import DecoderOptions, decode_rows
from jaxanchors.detections import Detections
from jaxanchors.letterbox import DetectionMapping, LetterboxTransform
from jaxanchors.letterbox import letterbox, project_detections, remove_letterbox
from jaxanchors.nms import NmsOptions, non_max_suppression, suppress_compacted

__all__ = ["PipelineOptions", "detect", "detect_images"]


@v.hash_once
@dataclasses.dataclass(frozen=True, kw_only=True)
class PipelineOptions(v.OptionsMixin):
  """The post-processing of one SSD graph: anchors, decoder and NMS options.

  Attributes:
    anchors: :class:`~jaxanchors.anchors.AnchorOptions`.
    decoder: :class:`~jaxanchors.decoding.DecoderOptions`.
    nms: :class:`~jaxanchors.nms.NmsOptions`.
    mapping: how a :class:`~jaxanchors.letterbox.LetterboxTransform` maps
      detections back, a :class:`~jaxanchors.letterbox.DetectionMapping` (or
      its name): ``PROJECTION`` (through its matrix, as the face graphs) or
      ``LETTERBOX_REMOVAL`` (through its padding, as the palm and pose
      graphs). Both agree to float32 rounding for unrotated letterboxes.
  """

  anchors: AnchorOptions
  decoder: DecoderOptions
  nms: NmsOptions
  mapping: DetectionMapping = DetectionMapping.PROJECTION

  def __post_init__(self) -> None:
    for name, cls in (("anchors", AnchorOptions), ("decoder", DecoderOptions),
                      ("nms", NmsOptions)):
      if not isinstance(getattr(self, name), cls):
        raise TypeError(f"PipelineOptions.{name} must be {cls.__name__}, got "
                        f"{type(getattr(self, name)).__name__}")
    v.set_field(self, "mapping",
                v.as_enum("PipelineOptions.mapping", DetectionMapping, self.mapping))

  @classmethod
  def dict_in(cls, data: dict[str, Any]) -> dict[str, Any]:
    """The nested options may be given as dicts."""
    for name, options_cls in (("anchors", AnchorOptions), ("decoder", DecoderOptions),
                              ("nms", NmsOptions)):
      if isinstance(data.get(name), Mapping):
        data[name] = options_cls.from_dict(data[name])
    return data


@functools.lru_cache(maxsize=64)
def _resolve_cached(config: Any) -> PipelineOptions:
  return _resolve(config)


def _resolve(config: Any) -> PipelineOptions:
  if isinstance(config, PipelineOptions):
    return config
  if isinstance(config, str):
    config = presets_module.get(config)
  if isinstance(config, presets_module.Preset):
    return PipelineOptions(anchors=config.anchors, decoder=config.decoder, nms=config.nms,
                           mapping=config.mapping)
  raise TypeError("expected a preset name, a Preset or PipelineOptions, got "
                  f"{type(config).__name__}")


# Candidate-count buckets of the pre-filtered path (NMS has its own, finer
# ones). Each bucket compiles decode and NMS once more (about 0.4 s); the NMS
# loop costs about slots x steps, but below a few hundred slots a step costs
# its kernel launches, not its width: a 96-slot bucket between 32 and 320 made
# no measurable difference to dense batches and cost a fifth of the compile
# time (benchmarks/RESULTS.md). 32 slots: one frame's usual handful, whose NMS
# loop body runs on one XLA:CPU thread.
_BUCKETS = (32, 320, 1024, 4096)
# How far below logit(min_score_thresh) the pre-filter starts: far more than
# the float32 sigmoid's rounding moves it (a few ulps, well under 1e-3 in logit
# space for thresholds in [_THRESH_LOW, 1 - _THRESH_LOW]).
_LOGIT_MARGIN = 0.05
# Thresholds below this pre-filter nothing (every anchor is decoded); above
# 1 - _THRESH_LOW the bound of 1 - _THRESH_LOW is used (conservative).
_THRESH_LOW = 1e-4
_FLT_MAX = float(np.finfo(np.float32).max)
# Frames per group of a batch (see _detect_prefiltered): few enough that one
# dense frame sets the bucket and NMS steps of few others, enough that the
# per-group cost (a few dozen kernels) is shared.
_GROUP = 16


def _prefilter_applies(options: DecoderOptions) -> bool:
  """Whether candidacy can be decided from the logits alone, whatever the
  threshold: sigmoid scores (any number of classes, class lists and
  ``max_results``: the compacted rows keep every anchor that may pass, in
  anchor order, so the decoder's own filters decide the same)."""
  return options.sigmoid_score


def _prefilter_member(logits: jax.Array, thr: jax.Array, options: DecoderOptions) -> jax.Array:
  """``[B, N]``: anchors whose (clipped) logits may pass the sigmoid threshold ``thr`` (traced).

  A superset of the anchors the decoder keeps: some allowed class's logit is
  at least ``logit(thr) - _LOGIT_MARGIN`` (NaN logits never count, as in the
  decoder), with ``thr`` clamped to ``1 - _THRESH_LOW`` from above (a lower,
  safe bound) and no bound below ``_THRESH_LOW``; every anchor when
  ``thr <= -FLT_MAX`` (a score of ``-FLT_MAX``, that of an anchor without a
  usable class, then passes).
  """
  if options.num_classes > 1 or options.allow_classes or options.ignore_classes:
    allowed = [c for c in range(options.num_classes)
               if (c in options.allow_classes if options.allow_classes
                   else c not in options.ignore_classes)]
    logits = logits[..., np.array(allowed, np.int32)] if allowed else logits[..., :0]
    logits = jnp.max(jnp.where(jnp.isnan(logits), -jnp.inf, logits), axis=-1,
                     initial=-jnp.inf)
  else:
    logits = logits[..., 0]
  thr = thr.astype(jnp.promote_types(thr.dtype, jnp.float32))
  t = jnp.clip(thr, _THRESH_LOW, 1 - _THRESH_LOW)
  bound = jnp.log(t / (1 - t)) - _LOGIT_MARGIN  # logit(t), within a few ulps
  bound = jnp.where(thr < _THRESH_LOW, -jnp.inf, bound).astype(logits.dtype)
  return (logits >= bound) | (thr <= -_FLT_MAX)


def _group_plan(b: int) -> int:
  """Frames per group: a batch of more than ``_GROUP`` frames runs as groups of
  ``_GROUP`` frames of similar candidate counts, one after the other, each
  with its own bucket and NMS steps."""
  return _GROUP if b > _GROUP else b


def _detect_prefiltered(raw_boxes, raw_scores, anchors, thr, options: PipelineOptions,
                        max_detections: int, finish) -> Detections:
  """Decode and NMS with candidates found from the logits first.

  An anchor whose (clipped) logits are below the bound of
  :func:`_prefilter_member` cannot pass the score threshold, so the others are
  compacted per frame, in anchor order, to the smallest bucket of slots that
  holds the largest frame's count, and only those are decoded (with the same
  code as :func:`decode`, so their values are the same) and given to NMS. The
  decoder's own filters then decide candidacy exactly.

  Batches of more than ``_GROUP`` (16) frames are sorted by candidate count and
  processed ``_GROUP`` frames at a time (``lax.map``): each group picks its own
  bucket and runs only as many NMS steps as its own frames need, so a few dense
  frames do not set the cost of the whole batch, and each group's working set
  stays in cache.

  ``finish(detections, frames)`` maps each branch's output back to the image
  (``frames``: the batch indices of its rows, ``None`` for all in order), so
  the mapping fuses into the kernels that write the outputs.
  """
  batch, n = raw_scores.shape[:-2], raw_scores.shape[-2]
  b = math.prod(batch)
  raw_boxes = raw_boxes.reshape((b,) + raw_boxes.shape[-2:])
  raw_scores = raw_scores.reshape((b,) + raw_scores.shape[-2:])
  dec = options.decoder
  logits = raw_scores
  if dec.score_clipping_thresh is not None:
    t = jnp.asarray(dec.score_clipping_thresh, logits.dtype)
    logits = jnp.clip(logits, -t, t)
  words, counts = compaction.bit_words(_prefilter_member(logits, thr, dec))
  sizes = compaction.bucket_sizes(n, _BUCKETS)

  def bucket(size):
    def run(frames, words, counts):
      src = compaction.compact(words, counts, n, size)
      at = jnp.minimum(src, n - 1)
      if frames is None:
        rows, scores = compaction.take(raw_boxes, at), compaction.take(raw_scores, at)
      else:
        rows, scores = raw_boxes[frames[:, None], at], raw_scores[frames[:, None], at]
      d = decode_rows(rows, scores, anchors[at], dec, candidate=compaction.filled(counts, size),
                       min_score_thresh=thr)
      return finish(suppress_compacted(d, options.nms, slots=max_detections)[0], frames)
    return run

  branches = [bucket(size) for size in sizes]
  group = _group_plan(b)
  if group == b:
    out = compaction.switch(sizes, branches, counts, None, words, counts)
  else:
    # Frames sorted by candidate count, in groups; the first group is topped up
    # with copies of the emptiest frame, whose results are dropped.
    groups = -(-b // group)
    pad = groups * group - b
    order = jnp.argsort(counts[:, -1]).astype(jnp.int32)
    order = jnp.concatenate([jnp.broadcast_to(order[:1], (pad,)), order])

    def one_group(frames):
      w, c = words[frames], counts[frames]
      return compaction.switch(sizes, branches, c, frames, w, c)
    out = lax.map(one_group, order.reshape(groups, group))
    # Back to batch order: the inverse permutation of the sorted frames.
    inverse = jnp.zeros((b,), jnp.int32).at[order[pad:]].set(lax.iota(jnp.int32, b))
    out = jax.tree.map(lambda a: a.reshape((groups * group,) + a.shape[2:])[pad:][inverse], out)
  return Detections(*(a.reshape(batch + a.shape[1:]) for a in out))


@functools.partial(jax.jit, static_argnames=("options", "max_detections", "top_k", "mapping"))
def _detect(raw_boxes, raw_scores, padding, matrix, thr, *, options: PipelineOptions,
            max_detections: int, top_k: int | None,
            mapping: DetectionMapping | None) -> Detections:
  anchors = generate_anchors(options.anchors, dtype=raw_boxes.dtype)
  raw_boxes, raw_scores, anchors = v.check_decoder_inputs(raw_boxes, raw_scores, anchors,
                                                         options.decoder)
  # The bound's margin covers float32 (and float64) sigmoid rounding only: a
  # bfloat16 sigmoid rounds by up to 2**-8 near 1.
  wide = raw_scores.dtype in (jnp.float32, jnp.float64)
  batch = raw_scores.shape[:-2]
  if _prefilter_applies(options.decoder) and top_k is None and wide:
    # The mapping runs inside the branches, on each branch's frames: a
    # transform that is not shared is flattened to one row per frame.
    b = math.prod(batch)

    def per_frame(value, tail):
      if value is None or value.ndim == len(tail):
        return value
      return jnp.broadcast_to(value, batch + tail).reshape((b,) + tail)
    padding, matrix = per_frame(padding, (4,)), per_frame(matrix, (4, 4))

    def finish(d, frames):
      def at(value, tail):
        return value if value is None or value.ndim == len(tail) or frames is None \
            else value[frames]
      return _map_back(d, mapping, at(padding, (4,)), at(matrix, (4, 4)))
    return _detect_prefiltered(raw_boxes, raw_scores, anchors, thr, options, max_detections,
                               finish)
  detections = decode_rows(raw_boxes, raw_scores, anchors, options.decoder,
                           min_score_thresh=thr)
  detections = non_max_suppression(detections, options.nms, max_detections=max_detections,
                                   top_k=top_k)
  return _map_back(detections, mapping, padding, matrix)


def _map_back(detections: Detections, mapping: DetectionMapping | None, padding,
              matrix) -> Detections:
  if mapping is DetectionMapping.PROJECTION:
    return project_detections(detections, matrix)
  if mapping is DetectionMapping.LETTERBOX_REMOVAL:
    return remove_letterbox(detections, padding)
  return detections


def _threshold(min_score_thresh: Any, decoder: DecoderOptions, dtype: Any) -> Any:
  """The score threshold for the jitted callee: ``decoder.min_score_thresh``
  for ``None`` (``-inf`` if unset), else the checked per-call value; a tracer
  stays traced. A Python float for float32 scores (JAX rounds it to float32
  as the scores' dtype would, and passes it fastest), else a scalar of the
  scores' dtype."""
  if min_score_thresh is None:
    thr = decoder.min_score_thresh
    thr = -math.inf if thr is None else thr
  elif isinstance(min_score_thresh, jax.core.Tracer):
    if min_score_thresh.shape != () or not jnp.issubdtype(min_score_thresh.dtype, jnp.floating):
      raise ValueError("min_score_thresh must be a float scalar, got "
                       f"{min_score_thresh.dtype}{list(min_score_thresh.shape)}")
    return min_score_thresh.astype(dtype)
  else:
    if isinstance(min_score_thresh, (np.ndarray, jax.Array)) and min_score_thresh.shape == ():
      min_score_thresh = min_score_thresh.item()
    thr = v.as_float("min_score_thresh", min_score_thresh)
    if decoder.sigmoid_score and thr > 1:
      raise ValueError(f"min_score_thresh={thr} is above 1, which no sigmoid score reaches")
  return thr if dtype == jnp.float32 else np.asarray(thr, dtype)


def detect(raw_boxes: ArrayLike, raw_scores: ArrayLike, config: Any, *, max_detections: int,
           transform: LetterboxTransform | ArrayLike | None = None,
           top_k: int | None = None, min_score_thresh: float | None = None) -> Detections:
  """Raw SSD outputs to final detections: decode, NMS and map back, in one jitted call.

  Args:
    raw_boxes: ``[..., N, num_coords]`` model regression output.
    raw_scores: ``[..., N, num_classes]`` model score output.
    config: a preset name, a :class:`~jaxanchors.presets.Preset` or
      :class:`PipelineOptions` (static).
    max_detections: static number of output slots per frame.
    transform: ``None`` for detections relative to the model input; a
      :class:`~jaxanchors.letterbox.LetterboxTransform` (from
      :func:`~jaxanchors.letterbox.letterbox`, batched like the tensors or
      shared) to map them back to the image as the graph does; or a padding
      array ``[..., 4]`` ``[left, top, right, bottom]`` for letterbox removal.
    top_k: optional static pre-selection of the best candidates before NMS
      (a speed knob; see :func:`~jaxanchors.nms.non_max_suppression`).
    min_score_thresh: the decoder's score threshold for this call (MediaPipe
      Tasks' ``min_detection_confidence``); ``None`` keeps the config's
      ``decoder.min_score_thresh``. A finite number (or a float scalar
      array, also a traced one), compared in the scores' dtype; with a
      sigmoid decoder it must be <= 1 (no score is above 1), while values
      <= 0 keep every scored anchor. It is passed to the compiled function as
      a value: a new threshold does not recompile.

  Returns:
    :class:`~jaxanchors.detections.Detections` with ``max_detections`` slots
    per frame, in emission order (descending score), in normalised image
    coordinates when a transform is given (use
    :func:`~jaxanchors.detections.to_pixels` for pixels).

  Raises:
    ValueError: ``min_score_thresh`` not finite, or above 1 with a sigmoid
      decoder; shapes that disagree with the config.

  What compiles: one program per config (preset), ``max_detections``,
  ``top_k``, kind of ``transform`` (none, a padding, a
  :class:`~jaxanchors.letterbox.LetterboxTransform`) and input shapes and
  dtypes. The tensors, the transform's values and ``min_score_thresh`` are
  values of that program.

  Examples:
    >>> import numpy as np
    >>> raw_boxes = np.zeros((2, 896, 16), np.float32)
    >>> raw_scores = np.full((2, 896, 1), -10.0, np.float32)
    >>> raw_scores[1, 100] = 5.0                              # one confident anchor
    >>> d = detect(raw_boxes, raw_scores, "face_short_range", max_detections=4)
    >>> d.boxes.shape, d.valid.sum(axis=-1).tolist()
    ((2, 4, 4), [0, 1])
  """
  # The call's own cost matters at one frame per call: the config is resolved
  # once per config, arrays pass through unchanged.
  try:
    options = _resolve_cached(config)
  except TypeError:  # unhashable: resolving raises the right error
    options = _resolve(config)
  max_detections = v.as_int("max_detections", max_detections, minimum=1)
  raw_boxes, raw_scores = v.as_array(raw_boxes), v.as_array(raw_scores)
  batch = raw_boxes.shape[:-2]
  padding = matrix = None
  mapping = None
  if isinstance(transform, LetterboxTransform):
    padding, matrix = v.as_array(transform.padding), v.as_array(transform.matrix)
    mapping = options.mapping
  elif transform is not None:
    padding = v.as_array(transform)
    mapping = DetectionMapping.LETTERBOX_REMOVAL
  for name, value, tail in (("padding", padding, (4,)), ("matrix", matrix, (4, 4))):
    if value is not None:
      v.check_fits_batch(f"transform {name}", value, tail, batch)
  thr = _threshold(min_score_thresh, options.decoder, raw_scores.dtype)
  if math.prod(batch):
    return _detect(raw_boxes, raw_scores, padding, matrix, thr, options=options,
                   max_detections=max_detections, top_k=top_k, mapping=mapping)
  # No frame: the checks, then the shapes of one frame's program; no program runs.
  v.check_decoder_inputs(raw_boxes, raw_scores, generate_anchors(options.anchors),
                         options.decoder)
  run = functools.partial(_detect, options=options, max_detections=max_detections, top_k=top_k,
                          mapping=mapping)
  one = [None if a is None else jax.ShapeDtypeStruct(a.shape[a.ndim - len(tail):], a.dtype)
         for a, tail in ((raw_boxes, (0, 0)), (raw_scores, (0, 0)), (padding, (4,)),
                         (matrix, (4, 4)))]
  shapes = jax.eval_shape(run, *one, thr)
  return Detections(*(jnp.zeros(batch + a.shape, a.dtype) for a in shapes))


# -- photos to detections ----------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _shipped_network(model: str) -> Any:
  """The JAX network of a shipped model, one instance per name (so jit caches hit)."""
  from jaxanchors import models  # pylint: disable=import-outside-toplevel
  return models.load_network(model)


@functools.partial(jax.jit, static_argnames=("preset", "network", "max_detections", "dtype",
                                             "top_k"))
def _detect_images(images, params, thr, *, preset, network, max_detections, dtype, top_k):
  tensor, transform = letterbox(images, preset.preprocessing)
  raw_boxes, raw_scores = network.apply(params, tensor, dtype=dtype)
  return detect(raw_boxes, raw_scores, preset, max_detections=max_detections,
                transform=transform, top_k=top_k, min_score_thresh=thr)


def detect_images(images: ArrayLike, config: Any, *, max_detections: int,
                  network: Any = None, params: Any = None, dtype: str = "float32",
                  top_k: int | None = None,
                  min_score_thresh: float | None = None) -> Detections:
  """Photos to detections in one jitted call: letterbox, the network, :func:`detect`.

  The whole graph runs in JAX on the device the images are on: MediaPipe's
  ``ImageToTensorCalculator`` (:func:`~jaxanchors.letterbox.letterbox`), the
  preset's ``.tflite`` network translated to JAX
  (:func:`jaxanchors.models.load_network`), then decoding, NMS and the mapping
  back to the image.

  Args:
    images: ``[..., H, W, 3]`` photos of one size, ``uint8`` (or float in 0..255).
    config: a preset name or :class:`~jaxanchors.presets.Preset` with a shipped
      model (or pass ``network``).
    max_detections: static number of output slots per image.
    network: a :class:`jaxanchors.networks.Network` to use instead of the
      preset's model (e.g. a fine-tuned copy); static, so keep one instance.
    params: weights for ``network`` (default: its stored ``params``), e.g.
      while training, as a dict or packed (:meth:`Network.pack
      <jaxanchors.networks.Network.pack>`); a traced argument, so new values
      do not recompile.
    dtype: the network's compute dtype (see :meth:`Network.apply
      <jaxanchors.networks.Network.apply>`).
    top_k: as in :func:`detect`.
    min_score_thresh: as in :func:`detect` (``None`` keeps the preset's); a
      value of the compiled function, so a new one does not recompile.

  Returns:
    :class:`~jaxanchors.detections.Detections` in normalised image
    coordinates, ``max_detections`` slots per image
    (:func:`~jaxanchors.detections.to_pixels` converts).

  Raises:
    ValueError: a preset without a model and no ``network``, a network that
      is not an SSD detector, images whose
      shape is not ``[..., H, W, 3]``, or a bad ``min_score_thresh`` (see
      :func:`detect`).
  """
  preset = presets_module.get(config) if isinstance(config, str) else config
  if not isinstance(preset, presets_module.Preset):
    raise TypeError(f"config must be a preset name or a Preset, got {type(config).__name__}")
  max_detections = v.as_int("max_detections", max_detections, minimum=1)
  if network is None:
    if preset.model is None:
      raise ValueError(f"preset {preset.name!r} has no shipped model; pass network=")
    network = _shipped_network(preset.model)
  network.check_detector()
  if tuple(network.input_size) != preset.input_size:
    raise ValueError(f"network input size {network.input_size} differs from preset "
                     f"{preset.name!r}'s {preset.input_size}")
  if params is None:
    params = network.packed_params     # a few arrays per call instead of dozens
  images = jnp.asarray(images)
  if images.ndim < 3 or images.shape[-1] != 3:
    raise ValueError(f"images must have shape [..., H, W, 3], got {images.shape}")
  # Checked here, then traced: as float32 (or float64 under x64), the scores' dtype.
  thr = _threshold(min_score_thresh, preset.decoder, jnp.result_type(float))
  return _detect_images(images, params, thr, preset=preset, network=network,
                        max_detections=max_detections, dtype=dtype, top_k=top_k)
