"""Losses against closed-form values computed by hand, weights, gradients, optional optax."""

from __future__ import annotations

import importlib.util
import math
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxanchors import losses

F32 = np.float32
needs_optax = pytest.mark.skipif(importlib.util.find_spec("optax") is None,
                                 reason="optax (an optional dependency of jaxanchors.losses) "
                                        "is not installed")


def sigmoid(x: float) -> float:
  return 1 / (1 + math.exp(-x))


def softplus(x: float) -> float:
  """log(1 + e^x) = -log(sigmoid(-x)), computed stably in float64."""
  return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


@needs_optax
def test_huber_by_hand():
  pred = np.array([[0.5, -2.0, 1.0], [3.0, -1.0, 0.0]], F32)
  target = np.zeros_like(pred)
  # delta 1: 0.5 x^2 inside [-1, 1], |x| - 0.5 outside; x = 1 is on the quadratic side.
  expected = [0.5 * 0.25 + (2 - 0.5) + 0.5 * 1, (3 - 0.5) + 0.5 * 1 + 0]
  np.testing.assert_array_equal(losses.huber_loss(pred, target), np.array(expected, F32))
  # delta 2: 2 * (|x| - 1) outside [-2, 2].
  expected = [0.5 * 0.25 + 0.5 * 4 + 0.5 * 1, 2 * (3 - 1) + 0.5 * 1 + 0]
  np.testing.assert_array_equal(losses.huber_loss(pred, target, delta=2.0),
                                np.array(expected, F32))
  # Only the difference matters.
  np.testing.assert_array_equal(losses.huber_loss(pred + 7, target + 7, delta=2.0),
                                np.array(expected, F32))


@needs_optax
def test_smooth_l1_by_hand():
  pred = np.array([[0.25, 1.0, -0.5]], F32)
  # beta 0.5: 0.5 x^2 / beta below beta, |x| - 0.5 beta from beta on.
  expected = 0.5 * 0.0625 / 0.5 + (1.0 - 0.25) + (0.5 - 0.25)
  np.testing.assert_allclose(losses.smooth_l1_loss(pred, np.zeros_like(pred), beta=0.5),
                             [expected], rtol=2**-23, atol=0)
  # beta 1 is Huber with delta 1.
  rng = np.random.default_rng(0)
  a, b = rng.normal(0, 2, (2, 5, 8)).astype(F32)
  np.testing.assert_array_equal(losses.smooth_l1_loss(a, b), losses.huber_loss(a, b))


@needs_optax
def test_sigmoid_cross_entropy_by_hand():
  logits = np.array([[0.0, 2.0], [-3.0, 100.0], [-100.0, 5.0]], F32)
  labels = np.array([[1, 0], [1, 0], [0, 1]], F32)
  # -log(sigmoid(x)) = softplus(-x) for label 1, -log(1 - sigmoid(x)) = softplus(x) for label 0.
  expected = [softplus(0.0) + softplus(2.0), softplus(3.0) + softplus(100.0),
              softplus(-100.0) + softplus(-5.0)]
  got = losses.sigmoid_binary_cross_entropy(logits, labels)
  np.testing.assert_allclose(got, expected, rtol=4 * 2**-23, atol=0)
  assert got.dtype == jnp.float32


@needs_optax
@pytest.mark.parametrize("alpha,gamma", [(0.25, 2.0), (None, 2.0), (0.5, 0.0), (0.9, 1.5)])
def test_sigmoid_focal_by_hand(alpha, gamma):
  logits = [0.0, 2.0, -1.5, 4.0]
  labels = [1.0, 0.0, 1.0, 1.0]
  expected = 0.0
  for x, y in zip(logits, labels):
    p_t = sigmoid(x) if y else 1 - sigmoid(x)
    a_t = 1.0 if alpha is None else (alpha if y else 1 - alpha)
    expected += a_t * (1 - p_t) ** gamma * -math.log(p_t)
  got = losses.sigmoid_focal_loss(np.array([logits], F32), np.array([labels], F32),
                                  alpha=alpha, gamma=gamma)
  np.testing.assert_allclose(got, [expected], rtol=8 * 2**-23, atol=0)


@needs_optax
def test_weights_broadcast_per_anchor():
  rng = np.random.default_rng(1)
  logits = rng.normal(0, 2, (2, 6, 3)).astype(F32)
  labels = (rng.random((2, 6, 3)) < 0.3).astype(F32)
  plain = np.asarray(losses.sigmoid_focal_loss(logits, labels))
  w = rng.random(6).astype(F32)
  np.testing.assert_array_equal(losses.sigmoid_focal_loss(logits, labels, w), plain * w)
  w2 = rng.random((2, 6)).astype(F32)
  np.testing.assert_array_equal(losses.sigmoid_focal_loss(logits, labels, w2), plain * w2)
  np.testing.assert_array_equal(losses.sigmoid_focal_loss(logits, labels, 0.5), plain * F32(0.5))
  with pytest.raises(ValueError, match=r"weights of shape \(7,\) must broadcast to the "
                                       r"per-anchor shape \(2, 6\)"):
    losses.sigmoid_focal_loss(logits, labels, np.ones(7, F32))
  with pytest.raises(ValueError, match=r"weights of shape \(2, 6, 3\)"):
    losses.sigmoid_focal_loss(logits, labels, np.ones((2, 6, 3), F32))


@needs_optax
@pytest.mark.parametrize("call,error,message", [
    (lambda: losses.huber_loss(np.zeros((2, 4), F32), np.zeros((2, 3), F32)), ValueError,
     "must have the same shape"),
    (lambda: losses.huber_loss(np.zeros((2, 4), F32), np.zeros((2, 4), F32), delta=0.0),
     ValueError, "delta must be > 0"),
    (lambda: losses.smooth_l1_loss(np.zeros((2, 4), F32), np.zeros((2, 4), F32), beta=-1.0),
     ValueError, "beta must be > 0"),
    (lambda: losses.sigmoid_focal_loss(np.zeros((2, 1), F32), np.zeros((2, 1), F32), alpha=1.5),
     ValueError, r"alpha must be in \[0, 1\]"),
    (lambda: losses.sigmoid_focal_loss(np.zeros((2, 1), F32), np.zeros((2, 1), F32), gamma=-1.0),
     ValueError, "gamma must be >= 0"),
    (lambda: losses.sigmoid_binary_cross_entropy(np.zeros((2, 1), np.int32),
                                                 np.zeros((2, 1), F32)),
     TypeError, "logits must be a float array"),
])
def test_bad_arguments(call, error, message):
  with pytest.raises(error, match=message):
    call()


@needs_optax
def test_gradients_are_the_textbook_ones():
  x = np.array([[-3.0, -0.5, 0.0, 0.7, 2.5]], F32)
  g = jax.grad(lambda p: jnp.sum(losses.huber_loss(p, jnp.zeros_like(p), delta=1.0)))(x)
  np.testing.assert_array_equal(g, np.clip(x, -1, 1))  # d/dx Huber = clip(x, -delta, delta)
  y = np.array([[1, 0, 1, 0, 1]], F32)
  g = jax.grad(lambda p: jnp.sum(losses.sigmoid_binary_cross_entropy(p, y)))(x)
  want = np.array([sigmoid(float(v)) for v in x[0]]) - y[0]  # d/dx BCE = sigmoid(x) - y
  np.testing.assert_allclose(g[0], want, rtol=0, atol=2**-24)
  extreme = np.array([[-100.0, 100.0, -100.0, 100.0]], F32)
  labels = np.array([[1, 0, 0, 1]], F32)
  for fn in (losses.sigmoid_binary_cross_entropy, losses.sigmoid_focal_loss):
    g = jax.grad(lambda p: jnp.sum(fn(p, labels)))(extreme)
    assert np.all(np.isfinite(np.asarray(g))), fn.__name__


@needs_optax
def test_jit_and_vmap_agree_with_eager():
  rng = np.random.default_rng(2)
  a, b = rng.normal(0, 2, (2, 4, 7, 8)).astype(F32)
  w = rng.random((4, 7)).astype(F32)
  eager = losses.huber_loss(a, b, w, delta=0.5)
  jitted = jax.jit(lambda a, b, w: losses.huber_loss(a, b, w, delta=0.5))(a, b, w)
  mapped = jax.vmap(lambda a, b, w: losses.huber_loss(a, b, w, delta=0.5))(a, b, w)
  np.testing.assert_array_equal(jitted, eager)
  np.testing.assert_array_equal(mapped, eager)


def test_importing_the_package_does_not_import_optax():
  code = ("import sys, jaxanchors, jaxanchors.losses, jaxanchors.matching; "
          "assert 'optax' not in sys.modules, 'optax was imported'")
  subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_optax_raises_a_helpful_error(monkeypatch):
  monkeypatch.setitem(sys.modules, "optax", None)  # makes `import optax` fail
  with pytest.raises(ImportError, match=r"needs optax, an optional dependency: pip install optax"):
    losses.huber_loss(np.zeros((1, 4), F32), np.zeros((1, 4), F32))
