"""Detection losses on per-anchor targets, built on optax's loss functions.

Contract:

* Every loss takes predictions and targets of shape ``[..., N, D]`` (``D``
  the box-row length or the number of classes, as :class:`~jaxanchors.matching.Targets`
  lays them out), sums the elementwise loss over ``D`` and returns one value
  per anchor, ``[..., N]``, multiplied by ``weights`` (any shape that
  broadcasts to ``[..., N]``; ``None`` for 1). Summing over anchors and
  normalising (SSD and RetinaNet divide by the number of positives) is left
  to the caller, as is hard-negative mining
  (:func:`jaxanchors.matching.mine_hard_negatives` takes these per-anchor
  values).
* The elementwise losses are optax's (``optax.huber_loss``,
  ``optax.sigmoid_binary_cross_entropy``, ``optax.sigmoid_focal_loss``);
  optax is an optional dependency, imported when a loss is first called, and
  a missing optax raises ``ImportError`` saying how to install it. Importing
  this module never imports optax.
* All functions are differentiable in the predictions and work under
  ``jax.jit`` and ``jax.vmap``; options (``delta``, ``alpha`` ...) are plain
  Python numbers.
"""

from __future__ import annotations

import importlib
from types import ModuleType

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxanchors import _validate as v

__all__ = ["huber_loss", "sigmoid_binary_cross_entropy", "sigmoid_focal_loss", "smooth_l1_loss"]


def _optax() -> ModuleType:
  try:
    return importlib.import_module("optax")
  except ImportError as e:
    raise ImportError("jaxanchors.losses needs optax, an optional dependency: "
                      "pip install optax (or pip install 'jaxanchors[train]')") from e


def _prepare(pred: ArrayLike, target: ArrayLike, weights: ArrayLike | None,
             names: tuple[str, str]) -> tuple[jax.Array, jax.Array, jax.Array | None]:
  pred, target = jnp.asarray(pred), jnp.asarray(target)
  v.check_float(names[0], pred)
  if pred.ndim < 1 or pred.shape != target.shape:
    raise ValueError(f"{names[0]} {pred.shape} and {names[1]} {target.shape} must have the "
                     "same shape [..., N, D]")
  if weights is not None:
    weights = jnp.asarray(weights)
    v.check_broadcasts("weights", weights, pred.shape[:-1], "per-anchor shape")
  return pred, target.astype(pred.dtype), weights


def _reduce(elementwise: jax.Array, weights: jax.Array | None) -> jax.Array:
  per_anchor = jnp.sum(elementwise, axis=-1)
  return per_anchor if weights is None else per_anchor * weights.astype(per_anchor.dtype)


def huber_loss(predictions: ArrayLike, targets: ArrayLike, weights: ArrayLike | None = None,
               *, delta: float = 1.0) -> jax.Array:
  """Per-anchor Huber loss (``optax.huber_loss``): TF Object Detection's box loss.

  Elementwise ``0.5 x**2`` for ``|x| <= delta``, else ``delta * (|x| - 0.5 delta)``,
  with ``x = predictions - targets``; summed over the last axis.

  Args:
    predictions: ``[..., N, D]`` float, e.g. raw box rows.
    targets: ``[..., N, D]``, e.g. :attr:`Targets.regression`.
    weights: broadcastable to ``[..., N]``, e.g. :attr:`Targets.regression_weights`.
    delta: ``> 0``.

  Returns:
    ``[..., N]`` weighted per-anchor loss.

  Examples:
    >>> import jax.numpy as jnp
    >>> huber_loss(jnp.array([[0.5, 3.0], [1.0, 1.0]]), jnp.zeros((2, 2)),
    ...            jnp.array([1.0, 0.0])).tolist()
    [2.625, 0.0]
  """
  delta = v.as_float("delta", delta, positive=True)
  pred, target, weights = _prepare(predictions, targets, weights, ("predictions", "targets"))
  return _reduce(_optax().huber_loss(pred, target, delta=delta), weights)


def smooth_l1_loss(predictions: ArrayLike, targets: ArrayLike, weights: ArrayLike | None = None,
                   *, beta: float = 1.0) -> jax.Array:
  """Per-anchor smooth-L1 loss (Fast R-CNN, SSD, torchvision's ``beta`` convention).

  Elementwise ``0.5 x**2 / beta`` for ``|x| < beta``, else ``|x| - 0.5 beta``,
  which is ``optax.huber_loss(delta=beta) / beta``; equal to :func:`huber_loss`
  at ``beta = delta = 1``. Summed over the last axis.

  Args:
    predictions, targets: ``[..., N, D]``.
    weights: broadcastable to ``[..., N]``.
    beta: ``> 0``.

  Examples:
    >>> import jax.numpy as jnp
    >>> smooth_l1_loss(jnp.array([[0.5, 3.0]]), jnp.zeros((1, 2)), beta=2.0).tolist()
    [2.0625]
  """
  beta = v.as_float("beta", beta, positive=True)
  pred, target, weights = _prepare(predictions, targets, weights, ("predictions", "targets"))
  return _reduce(_optax().huber_loss(pred, target, delta=beta) / beta, weights)


def sigmoid_binary_cross_entropy(logits: ArrayLike, labels: ArrayLike,
                                 weights: ArrayLike | None = None) -> jax.Array:
  """Per-anchor sigmoid cross-entropy (``optax.sigmoid_binary_cross_entropy``).

  Each class is an independent binary prediction (MediaPipe's
  ``sigmoid_score``); summed over the classes.

  Args:
    logits: ``[..., N, C]`` float.
    labels: ``[..., N, C]`` in ``[0, 1]``, e.g. :attr:`Targets.class_one_hot`.
    weights: broadcastable to ``[..., N]``, e.g. :attr:`Targets.class_weights`.

  Returns:
    ``[..., N]`` weighted per-anchor loss.

  Examples:
    >>> import jax.numpy as jnp
    >>> round(float(sigmoid_binary_cross_entropy(jnp.array([[0.0]]), jnp.array([[1.0]]))[0]), 6)
    0.693147
  """
  logits, labels, weights = _prepare(logits, labels, weights, ("logits", "labels"))
  return _reduce(_optax().sigmoid_binary_cross_entropy(logits, labels), weights)


def sigmoid_focal_loss(logits: ArrayLike, labels: ArrayLike, weights: ArrayLike | None = None,
                       *, alpha: float | None = 0.25, gamma: float = 2.0) -> jax.Array:
  """Per-anchor sigmoid focal loss (RetinaNet; ``optax.sigmoid_focal_loss``).

  Elementwise ``-a_t (1 - p_t)**gamma log(p_t)`` with ``p = sigmoid(logits)``,
  ``p_t = p`` where the label is 1 and ``1 - p`` where it is 0, and ``a_t =
  alpha`` / ``1 - alpha`` likewise (no ``a_t`` factor when ``alpha`` is
  ``None``); summed over the classes. The defaults are RetinaNet's.

  Args:
    logits: ``[..., N, C]`` float.
    labels: ``[..., N, C]`` in ``[0, 1]``.
    weights: broadcastable to ``[..., N]``.
    alpha: in ``[0, 1]``, or ``None``.
    gamma: ``>= 0``; 0 gives (alpha-weighted) cross-entropy.

  Examples:
    >>> import jax.numpy as jnp
    >>> round(float(sigmoid_focal_loss(jnp.array([[0.0]]), jnp.array([[1.0]]))[0]), 6)
    0.043322
  """
  if alpha is not None:
    alpha = v.as_float("alpha", alpha, minimum=0.0)
    if alpha > 1:
      raise ValueError(f"alpha must be in [0, 1] or None, got {alpha}")
  gamma = v.as_float("gamma", gamma, minimum=0.0)
  logits, labels, weights = _prepare(logits, labels, weights, ("logits", "labels"))
  return _reduce(_optax().sigmoid_focal_loss(logits, labels, alpha=alpha, gamma=gamma), weights)
