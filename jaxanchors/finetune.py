"""Fine-tuning a preset's ``.tflite`` network: the SSD loss and the trainable-weight masks.

Contract:

* Ground truth is per frame, padded to a static ``M``: ``gt_boxes [..., M, 4]``
  normalised ``[xmin, ymin, xmax, ymax]`` in the frame of the *model input*
  (the letterboxed ``[h, w]`` tensor, not the photo: map photo boxes through
  the letterbox first), ``gt_valid [..., M]`` bool (``False`` marks padding),
  and optionally ``gt_keypoints [..., M, K, 2]`` normalised ``(x, y)`` in the
  same frame, ``K`` the preset's ``decoder.num_keypoints``, in the model's
  keypoint order (face: right eye, left eye, nose tip, mouth centre, right
  ear tragion, left ear tragion, as seen from the subject). Without keypoints
  the keypoint columns get no loss (and no gradient).
* The loss composes the library's training pieces: the preset's anchors
  (:func:`jaxanchors.generate_anchors`; BlazeFace's unit-size anchors are
  matched on the same table with ``fixed_anchor_size=False``, whose centres
  and order are the same), :func:`jaxanchors.match` (TF ``ArgMaxMatcher``),
  :func:`jaxanchors.assign_targets` (rows through :func:`jaxanchors.encode`,
  the exact inverse of decoding), then per frame

  - regression: Huber on the positive anchors' box columns and (with
    keypoints) keypoint columns. Residuals ``raw - target`` are divided by
    the decoder's scale of each column (``x_scale`` ...) and multiplied by
    ``regression_scale``: for BlazeFace's unit anchors and pixel scales that
    is ``regression_scale`` times the offset as a fraction of the input, so
    the default 10 weighs a box as SSD's usual ``x_scale=10`` does;
  - classification: sigmoid cross-entropy (or focal loss) on the score
    columns against :attr:`~jaxanchors.Targets.class_one_hot`, over the
    positives and the hard negatives of
    :func:`jaxanchors.mine_hard_negatives` (or all non-ignored anchors with
    ``negative_positive_ratio=None``);
  - each part summed over anchors and divided by ``max(1, positives)`` of
    the frame (SSD's normalisation, per frame).

  A batch's loss is the **mean over its frames** of these per-frame losses,
  so a batch of ``B`` frames gives the average of ``B`` one-frame losses.
* Training only part of the network: :func:`head_keys` names the parameters
  of the last convolutions feeding the output reshapes (the SSD heads),
  :func:`top_keys` adds the last few backbone layers; :func:`update_mask`
  combines "heads only" (``freeze_backbone=True``) or any set of keys with
  :meth:`Network.trainable_mask <jaxanchors.networks.Network.trainable_mask>`
  (the stored positions of sparse weights, which
  :func:`jaxanchors.models.save_tflite` can write); :func:`masked` zeroes
  any optax optimizer's updates where such a mask is 0, so those entries keep
  their values exactly.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
from typing import Any, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxanchors import _validate as v
from jaxanchors import losses
from jaxanchors import presets as presets_module
from jaxanchors.anchors import anchors_numpy
from jaxanchors.matching import MatcherOptions, assign_targets, match, mine_hard_negatives

__all__ = ["Loss", "LossOptions", "head_keys", "loss", "loss_from_outputs", "masked",
           "top_keys", "update_mask"]

_CLASSIFICATION = ("sigmoid_cross_entropy", "sigmoid_focal")


@dataclasses.dataclass(frozen=True, kw_only=True)
class LossOptions:
  """How the fine-tuning loss weighs and selects anchors (static, hashable).

  Attributes:
    matcher: :class:`~jaxanchors.MatcherOptions`; default positives at IoU
      ``>= 0.5``, negatives below 0.4, every ground truth force-matched to its
      best anchor.
    classification: ``"sigmoid_cross_entropy"`` (default) or
      ``"sigmoid_focal"`` (RetinaNet, with ``focal_alpha``, ``focal_gamma``).
    focal_alpha: ``alpha`` of the focal loss, in ``[0, 1]`` or ``None``.
    focal_gamma: ``gamma`` of the focal loss, ``>= 0``.
    negative_positive_ratio: hard negatives kept per positive (SSD: 3);
      ``None`` keeps every negative (usual with focal loss).
    min_negatives: hard negatives kept even in a frame without positives.
    regression_scale: multiplies the residuals after division by the
      decoder's scales (module docstring).
    huber_delta: the Huber loss's ``delta``, in those units.
    box_weight, keypoint_weight, classification_weight: weights of the parts
      in the total.
  """

  matcher: MatcherOptions = MatcherOptions(matched_threshold=0.5, unmatched_threshold=0.4,
                                           force_match_for_each_row=True)
  classification: str = "sigmoid_cross_entropy"
  focal_alpha: float | None = 0.25
  focal_gamma: float = 2.0
  negative_positive_ratio: float | None = 3.0
  min_negatives: int = 3
  regression_scale: float = 10.0
  huber_delta: float = 1.0
  box_weight: float = 1.0
  keypoint_weight: float = 1.0
  classification_weight: float = 1.0

  def __post_init__(self) -> None:
    w = lambda name: f"LossOptions.{name}"  # noqa: E731
    if not isinstance(self.matcher, MatcherOptions):
      raise TypeError(f"{w('matcher')} must be MatcherOptions, got "
                      f"{type(self.matcher).__name__}")
    if self.classification not in _CLASSIFICATION:
      raise ValueError(f"{w('classification')} must be one of {_CLASSIFICATION}, got "
                       f"{self.classification!r}")
    if self.focal_alpha is not None:
      alpha = v.as_float(w("focal_alpha"), self.focal_alpha, minimum=0.0)
      if alpha > 1:
        raise ValueError(f"{w('focal_alpha')} must be in [0, 1] or None, got {alpha}")
      v.set_field(self, "focal_alpha", alpha)
    if self.negative_positive_ratio is not None:
      v.set_field(self, "negative_positive_ratio",
                  v.as_float(w("negative_positive_ratio"), self.negative_positive_ratio,
                             minimum=0.0))
    v.set_field(self, "min_negatives", v.as_int(w("min_negatives"), self.min_negatives,
                                                minimum=0))
    for name in ("focal_gamma", "box_weight", "keypoint_weight", "classification_weight"):
      v.set_field(self, name, v.as_float(w(name), getattr(self, name), minimum=0.0))
    for name in ("regression_scale", "huber_delta"):
      value = v.as_float(w(name), getattr(self, name), minimum=0.0)
      if value == 0:
        raise ValueError(f"{w(name)} must be > 0, got {value}")
      v.set_field(self, name, value)


class Loss(NamedTuple):
  """The fine-tuning loss and its parts (a pytree).

  From :func:`loss_from_outputs` each field is per frame, ``[...]``; from
  :func:`loss` each is the mean over the batch's frames (a scalar).

  Attributes:
    total: ``classification_weight * classification + box_weight * box +
      keypoint_weight * keypoints``.
    classification: mined sigmoid cross-entropy (or focal) / positives.
    box: Huber on the positives' box columns / positives.
    keypoints: Huber on the positives' keypoint columns / positives (0 without
      keypoints).
    num_positives: positive anchors (float32).
  """

  total: jax.Array
  classification: jax.Array
  box: jax.Array
  keypoints: jax.Array
  num_positives: jax.Array


def _resolve_preset(preset: Any) -> presets_module.Preset:
  preset = presets_module.get(preset) if isinstance(preset, str) else preset
  if not isinstance(preset, presets_module.Preset):
    raise TypeError(f"preset must be a preset name or a Preset, got {type(preset).__name__}")
  return preset


def _check_options(options: Any) -> LossOptions:
  if not isinstance(options, LossOptions):
    raise TypeError(f"options must be LossOptions, got {type(options).__name__}")
  return options


@functools.lru_cache(maxsize=None)
def _columns(preset: presets_module.Preset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Per box-row column: 1 / decoder scale, box mask, keypoint mask (float32 ``[C]``)."""
  d = preset.decoder
  inv = np.zeros(d.num_coords, np.float32)
  box = np.zeros(d.num_coords, np.float32)
  kps = np.zeros(d.num_coords, np.float32)
  # decode reads [x, y, w, h] for XYWH (reverse_output_order) and [y, x, h, w] otherwise;
  # keypoints are (x, y) pairs except for YXHW.
  yx = d.format.name == "YXHW"
  scales = ((d.y_scale, d.x_scale, d.h_scale, d.w_scale) if yx
            else (d.x_scale, d.y_scale, d.w_scale, d.h_scale))
  o, q = d.box_coord_offset, d.keypoint_coord_offset
  for i, s in enumerate(scales):
    inv[o + i], box[o + i] = 1.0 / s, 1.0
  pair = (d.y_scale, d.x_scale) if yx else (d.x_scale, d.y_scale)
  for k in range(d.num_keypoints):
    for j in range(2):
      c = q + k * d.num_values_per_keypoint + j
      inv[c], kps[c] = 1.0 / pair[j], 1.0
  return inv, box, kps


@functools.lru_cache(maxsize=None)
def _anchor_tables(preset: presets_module.Preset) -> tuple[np.ndarray, np.ndarray]:
  """(matching table with sizes, decoding table), both ``[N, 4]`` float32."""
  sized = dataclasses.replace(preset.anchors, fixed_anchor_size=False)
  return anchors_numpy(sized), anchors_numpy(preset.anchors)


@functools.partial(jax.jit, static_argnames=("preset", "options"))
def _frame_losses(raw_boxes, raw_scores, gt_boxes, gt_valid, gt_keypoints, *,
                  preset: presets_module.Preset, options: LossOptions) -> Loss:
  match_table, decode_table = _anchor_tables(preset)
  d = preset.decoder
  with_keypoints = gt_keypoints is not None
  if not with_keypoints and d.num_keypoints:
    gt_keypoints = jnp.zeros(gt_boxes.shape[:-1] + (d.num_keypoints, 2), gt_boxes.dtype)
  matches = match(match_table, gt_boxes, gt_valid, options.matcher)
  targets = assign_targets(matches, gt_boxes, decode_table, d,
                           gt_keypoints=gt_keypoints if d.num_keypoints else None)
  inv, box_cols, kp_cols = (jnp.asarray(a) for a in _columns(preset))
  scale = inv * options.regression_scale
  pred = raw_boxes * scale
  target = jax.lax.stop_gradient(targets.regression) * scale
  weights = targets.regression_weights
  box = losses.huber_loss(pred * box_cols, target * box_cols, weights, delta=options.huber_delta)
  if with_keypoints:
    kps = losses.huber_loss(pred * kp_cols, target * kp_cols, weights,
                            delta=options.huber_delta)
  else:
    kps = jnp.zeros_like(box)
  labels = targets.class_one_hot
  if options.classification == "sigmoid_focal":
    cls = losses.sigmoid_focal_loss(raw_scores, labels, alpha=options.focal_alpha,
                                    gamma=options.focal_gamma)
  else:
    cls = losses.sigmoid_binary_cross_entropy(raw_scores, labels)
  if options.negative_positive_ratio is None:
    keep = targets.class_weights > 0
  else:
    hard = mine_hard_negatives(jax.lax.stop_gradient(cls), matches,
                               negative_positive_ratio=options.negative_positive_ratio,
                               min_negatives=options.min_negatives)
    keep = matches.positive | hard
  num_pos = matches.num_positives.astype(jnp.float32)
  norm = jnp.maximum(num_pos, 1.0)
  cls_loss = jnp.sum(jnp.where(keep, cls, 0.0), axis=-1) / norm
  box_loss = jnp.sum(box, axis=-1) / norm
  kp_loss = jnp.sum(kps, axis=-1) / norm
  total = (options.classification_weight * cls_loss + options.box_weight * box_loss
           + options.keypoint_weight * kp_loss)
  return Loss(total, cls_loss, box_loss, kp_loss, num_pos)


def _check_ground_truth(gt_boxes, gt_valid, gt_keypoints, preset, lead):
  gt_boxes = jnp.asarray(gt_boxes)
  if not jnp.issubdtype(gt_boxes.dtype, jnp.floating):
    raise TypeError(f"gt_boxes must be a float array, got dtype {gt_boxes.dtype}")
  if gt_boxes.ndim < 2 or gt_boxes.shape[-1] != 4 or gt_boxes.shape[:-2] != lead:
    raise ValueError(f"gt_boxes must have shape {lead + ('M', 4)} ([..., M, 4] "
                     f"[xmin, ymin, xmax, ymax]), got {gt_boxes.shape}")
  gt_valid = jnp.asarray(gt_valid)
  if gt_valid.dtype != jnp.bool_ or gt_valid.shape != gt_boxes.shape[:-1]:
    raise ValueError(f"gt_valid must be a bool array of shape {gt_boxes.shape[:-1]}, got "
                     f"{gt_valid.dtype} {gt_valid.shape}")
  if gt_keypoints is not None:
    k = preset.decoder.num_keypoints
    if not k:
      raise ValueError(f"preset {preset.name!r} has no keypoints; pass gt_keypoints=None")
    gt_keypoints = jnp.asarray(gt_keypoints, gt_boxes.dtype)
    if gt_keypoints.shape != gt_boxes.shape[:-1] + (k, 2):
      raise ValueError(f"gt_keypoints must have shape {gt_boxes.shape[:-1] + (k, 2)} "
                       f"([..., M, num_keypoints, 2]), got {gt_keypoints.shape}")
  return gt_boxes, gt_valid, gt_keypoints


def loss_from_outputs(raw_boxes: ArrayLike, raw_scores: ArrayLike, gt_boxes: ArrayLike,
                      gt_valid: ArrayLike, *, preset: Any,
                      gt_keypoints: ArrayLike | None = None,
                      options: LossOptions = LossOptions()) -> Loss:
  """Per-frame fine-tuning loss of raw network outputs against padded ground truth.

  The loss of the module docstring, before averaging over frames: useful to
  check targets (raw rows from :func:`jaxanchors.encode` give zero regression
  loss) or to train a network that is not a :class:`~jaxanchors.networks.Network`.

  Args:
    raw_boxes: ``[..., N, num_coords]`` float, the network's box output.
    raw_scores: ``[..., N, num_classes]`` float logits.
    gt_boxes: ``[..., M, 4]`` normalised ``[xmin, ymin, xmax, ymax]`` in the
      model-input frame, padded to a static ``M``.
    gt_valid: ``[..., M]`` bool.
    preset: a preset name or :class:`~jaxanchors.presets.Preset` (static):
      anchors and decoder options.
    gt_keypoints: ``[..., M, num_keypoints, 2]`` normalised ``(x, y)``, or
      ``None`` for no keypoint loss.
    options: static :class:`LossOptions`.

  Returns:
    :class:`Loss` of ``[...]`` float32 arrays.

  Examples:
    >>> import jax.numpy as jnp
    >>> raw_boxes = jnp.zeros((896, 16))
    >>> raw_scores = jnp.full((896, 1), -10.0)
    >>> gt = jnp.array([[0.3, 0.3, 0.6, 0.6], [0.0, 0.0, 0.0, 0.0]])
    >>> out = loss_from_outputs(raw_boxes, raw_scores, gt, jnp.array([True, False]),
    ...                         preset="face_short_range")
    >>> out.total.shape, bool(out.box > 0), bool(out.keypoints == 0)
    ((), True, True)
  """
  preset = _resolve_preset(preset)
  options = _check_options(options)
  d = preset.decoder
  raw_boxes, raw_scores = jnp.asarray(raw_boxes), jnp.asarray(raw_scores)
  n = _anchor_tables(preset)[1].shape[0]
  if raw_boxes.ndim < 2 or raw_boxes.shape[-2:] != (n, d.num_coords):
    raise ValueError(f"raw_boxes must have shape [..., {n}, {d.num_coords}] for preset "
                     f"{preset.name!r}, got {raw_boxes.shape}")
  lead = raw_boxes.shape[:-2]
  if raw_scores.shape != lead + (n, d.num_classes):
    raise ValueError(f"raw_scores must have shape {lead + (n, d.num_classes)}, got "
                     f"{raw_scores.shape}")
  gt_boxes, gt_valid, gt_keypoints = _check_ground_truth(gt_boxes, gt_valid, gt_keypoints,
                                                         preset, lead)
  return _frame_losses(raw_boxes, raw_scores, gt_boxes, gt_valid, gt_keypoints,
                       preset=preset, options=options)


@functools.partial(jax.jit, static_argnames=("network", "preset", "options"))
def _loss(params, images, gt_boxes, gt_valid, gt_keypoints, *, network, preset, options):
  raw_boxes, raw_scores = network.apply(params, images)
  per_frame = _frame_losses(raw_boxes, raw_scores, gt_boxes, gt_valid, gt_keypoints,
                            preset=preset, options=options)
  return Loss(*(jnp.mean(x) for x in per_frame))


def loss(params: Mapping[str, ArrayLike], images: ArrayLike, gt_boxes: ArrayLike,
         gt_valid: ArrayLike, *, network: Any, preset: Any,
         gt_keypoints: ArrayLike | None = None,
         options: LossOptions = LossOptions()) -> Loss:
  """The fine-tuning loss of ``network`` with ``params`` on a batch: jitted, differentiable.

  Runs ``network.apply(params, images)`` and :func:`loss_from_outputs`, then
  averages every part over the frames. Differentiate ``loss(...).total``
  with respect to ``params`` (``jax.grad``); pass a dict with only some keys
  replaced by traced values to train a subset.

  Args:
    params: the network's parameter dict (structure of ``network.params``).
    images: ``[B, h, w, 3]`` model-input tensors in the preset's value range
      (e.g. from :func:`jaxanchors.letterbox`).
    gt_boxes: ``[B, M, 4]`` (module docstring).
    gt_valid: ``[B, M]`` bool.
    network: a :class:`~jaxanchors.networks.Network` (static: keep one instance).
    preset: its preset, a name or :class:`~jaxanchors.presets.Preset` (static).
    gt_keypoints: ``[B, M, num_keypoints, 2]`` or ``None``.
    options: static :class:`LossOptions`.

  Returns:
    :class:`Loss` of float32 scalars, each the mean of the per-frame values.

  Raises:
    ValueError: a network that is not an SSD detector, shapes that disagree
      with each other, the network or the preset.
  """
  preset = _resolve_preset(preset)
  options = _check_options(options)
  network.check_detector()
  if tuple(network.input_size) != preset.input_size:
    raise ValueError(f"network input size {network.input_size} differs from preset "
                     f"{preset.name!r}'s {preset.input_size}")
  images = jnp.asarray(images)
  if images.ndim != 4:
    raise ValueError(f"images must have shape [B, h, w, 3], got {images.shape}")
  gt_boxes, gt_valid, gt_keypoints = _check_ground_truth(gt_boxes, gt_valid, gt_keypoints,
                                                         preset, images.shape[:1])
  return _loss(params, images, gt_boxes, gt_valid, gt_keypoints, network=network,
               preset=preset, options=options)


# -- what to train ---------------------------------------------------------------------


_LAYOUT = ("RESHAPE", "CONCATENATION", "DEPTH_TO_SPACE", "PAD")


def head_keys(network: Any) -> frozenset[str]:
  """The parameters of the network's SSD heads: the last convolutions before the outputs.

  Walks back from both outputs through layout operators (``RESHAPE``,
  ``CONCATENATION``, ``DEPTH_TO_SPACE``, ``PAD``) and depthwise convolutions
  to the first ``CONV_2D`` on each path, and returns the weights and biases
  of those convolutions and of the depthwise ones passed on the way (face
  full range ends each head in a depthwise convolution and a depth-to-space).

  Args:
    network: a :class:`~jaxanchors.networks.Network`.

  Returns:
    frozenset of keys of ``network.params``.

  Raises:
    ValueError: a network that is not an SSD detector, or an output path that
      meets another operator before a ``CONV_2D``.

  Examples:
    >>> from jaxanchors import models
    >>> sorted(head_keys(models.load_network("face_short_range")))[:2]
    ['classificator_16/Bias_dequantize', 'classificator_16/Kernel_dequantize']
  """
  network.check_detector()
  graph = network.graph
  producer = {op.output: op for op in graph.ops}
  keys: set[str] = set()
  stack = [graph.boxes, graph.scores]
  seen: set[int] = set()
  while stack:
    tensor = stack.pop()
    if tensor in seen:
      continue
    seen.add(tensor)
    op = producer.get(tensor)
    if op is None:
      raise ValueError("a network output path reaches the input without a CONV_2D head")
    if op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
      keys.update(i for i in op.inputs if isinstance(i, str))
    elif op.kind not in _LAYOUT:
      raise ValueError(f"a network output comes from {op.kind} before any CONV_2D head "
                       f"(expected {' / '.join(_LAYOUT)} after the head convolutions)")
    if op.kind != "CONV_2D":
      stack.extend(i for i in op.inputs if isinstance(i, int))
  return frozenset(keys)


def top_keys(network: Any, *, backbone_layers: int) -> frozenset[str]:
  """The heads' parameters and those of the last ``backbone_layers`` weighted operators before.

  "Unfreeze the top of the network": the operators that read parameters,
  other than the heads, are taken in the file's execution order and the last
  ``backbone_layers`` of them are added to :func:`head_keys`. For
  ``face_short_range`` 8 is its last four residual blocks (depthwise and
  pointwise convolution each) at stride 16. A network that is not a detector
  (a landmark model) has no heads here: its last ``backbone_layers`` weighted
  operators are the top.

  Args:
    network: a :class:`~jaxanchors.networks.Network`.
    backbone_layers: ``>= 0``; 0 gives :func:`head_keys` (nothing for a
      network that is not a detector).

  Returns:
    frozenset of keys of ``network.params``.
  """
  backbone_layers = v.as_int("backbone_layers", backbone_layers, minimum=0)
  heads = head_keys(network) if network.is_detector else frozenset()
  weighted = [[i for i in op.inputs if isinstance(i, str)] for op in network.graph.ops]
  weighted = [keys for keys in weighted if keys and not set(keys) <= heads]
  chosen = weighted[len(weighted) - backbone_layers:] if backbone_layers else []
  return heads | frozenset(k for keys in chosen for k in keys)


def update_mask(network: Any, *, freeze_backbone: bool = False,
                keys: Any = None) -> dict[str, np.ndarray]:
  """``{key: float32 array}``: 1 where training may change a weight, else 0.

  The sparse models' pruned positions are 0 (:meth:`Network.trainable_mask
  <jaxanchors.networks.Network.trainable_mask>`: the file cannot store them);
  with ``freeze_backbone`` every parameter outside :func:`head_keys` is 0
  too, and with ``keys`` every parameter outside ``keys``.

  Args:
    network: a :class:`~jaxanchors.networks.Network`.
    freeze_backbone: train the heads only.
    keys: a collection of parameter keys to train (e.g. from
      :func:`top_keys`), or ``None`` for all (not with ``freeze_backbone``).

  Returns:
    A dict with the keys and shapes of ``network.params``.

  Raises:
    ValueError: both ``freeze_backbone`` and ``keys``, or an unknown key.
  """
  if freeze_backbone and keys is not None:
    raise ValueError("give freeze_backbone=True or keys, not both")
  if freeze_backbone:
    keys = head_keys(network)
  if keys is not None:
    keys = frozenset(keys)
    unknown = sorted(keys - set(network.params))
    if unknown:
      raise ValueError(f"keys not in network.params: {unknown[:5]}")
  out = {}
  for key, mask in network.trainable_mask().items():
    m = np.asarray(mask, np.float32)
    out[key] = m if keys is None or key in keys else np.zeros_like(m)
  return out


def masked(optimizer: Any, mask: Mapping[str, ArrayLike]) -> Any:
  """``optimizer`` followed by zeroing its updates where ``mask`` is 0 (an optax transformation).

  Where the mask is 0 the update is exactly 0, so those weights keep their
  values bit for bit (pruned weights stay zero, a frozen backbone stays as
  loaded), whatever the optimizer (momentum, weight decay ...) computes.

  Args:
    optimizer: an ``optax.GradientTransformation``.
    mask: ``{key: array}`` with the structure of the params, e.g. from
      :func:`update_mask`.

  Returns:
    An ``optax.GradientTransformation``.
  """
  try:
    optax = importlib.import_module("optax")
  except ImportError as e:
    raise ImportError("jaxanchors.finetune.masked needs optax, an optional dependency: "
                      "pip install optax (or pip install 'jaxanchors[train]')") from e
  mask = {k: jnp.asarray(m) != 0 for k, m in mask.items()}

  def keep(updates, params=None):
    del params
    return {k: jnp.where(mask[k], u, jnp.zeros_like(u)) for k, u in updates.items()}

  return optax.chain(optimizer, optax.stateless(keep))
