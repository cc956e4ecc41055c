"""XLA:CPU (jaxlib 0.10.2) miscompiles a grouped (depthwise) convolution inside a
YNNPACK fusion that ends in a 2x2 max pool.

The smallest failing function found:

  a = relu(x)                                   # any fusible producer of the conv input
  y = depthwise_3x3_same(a)                     # conv_general_dilated, feature_group_count=C
  out = max_pool_2x2(pad_channels(y, 1) + pad_channels(a, 1))

with x [1, 32, 32, 32]. ``jax.jit(f)`` returns wrong values (output channel 0
only) while eager ``f`` is right. The script checks three functions:

  minimal      the function above;
  block        the BlazeFace residual block of MediaPipe's face short-range
               detector (layers 5-12 of that graph): relu, depthwise 3x3 + bias,
               1x1 conv + bias, channel-padded shortcut, add, relu, 2x2 max pool,
               at the model's shape [1, 64, 64, 24] -> 28 channels;
  block_param  the same block without the leading relu, so the depthwise conv
               reads a function argument: this one is compiled correctly.

Each is run with the depthwise conv as a grouped ``conv_general_dilated`` and as
a sum of kh*kw shifted multiply-adds, under ``jax.jit`` and eagerly, and
compared with a float64 NumPy computation. Exits 1 when a jitted result is wrong
(max abs error above 1e-4 of the output's scale), 0 otherwise.

  python docs/xla_cpu_depthwise_miscompile.py           # default XLA flags
  python docs/xla_cpu_depthwise_miscompile.py --flag    # then re-runs itself with
      XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=-reduce

Only jax and numpy are needed.
"""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

FLAG = "--xla_cpu_experimental_ynn_fusion_type=-reduce"
DN = ("NHWC", "HWIO", "NHWC")
TOL = 1e-4   # of the output's max abs value


def maxpool(x):
  return lax.reduce_window(x, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")


def pad_channels(x, n):
  return jnp.pad(x, ((0, 0), (0, 0), (0, 0), (0, n)))


def depthwise_grouped(x, w):
  """Depthwise 3x3 'SAME' stride-1 conv, w [kh, kw, 1, C], as a grouped convolution."""
  return lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=DN,
                                  feature_group_count=x.shape[-1])


def depthwise_shifted(x, w):
  """The same conv as kh*kw shifted slices of the padded input times per-channel weights."""
  kh, kw = w.shape[:2]
  h, wd = x.shape[1:3]
  xp = jnp.pad(x, ((0, 0), ((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2), (0, 0)))
  out = 0
  for i in range(kh):
    for j in range(kw):
      out = out + xp[:, i:i + h, j:j + wd, :] * w[i, j, 0]
  return out


def minimal(depthwise):
  def f(x, w):
    a = jax.nn.relu(x)
    return maxpool(pad_channels(depthwise(a, w), 1) + pad_channels(a, 1))
  return f


def block(depthwise, relu_input=True):
  def f(x, w_dw, b_dw, w_pw, b_pw):
    a = jax.nn.relu(x) if relu_input else x
    y = depthwise(a, w_dw) + b_dw
    y = lax.conv_general_dilated(y, w_pw, (1, 1), "VALID", dimension_numbers=DN) + b_pw
    y = jax.nn.relu(y + pad_channels(a, w_pw.shape[-1] - a.shape[-1]))
    return maxpool(y)
  return f


# float64 NumPy computations of the same functions.

def np_maxpool(a):
  b, h, w, c = a.shape
  return a.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def np_depthwise(x, w):
  kh, kw = w.shape[:2]
  h, wd = x.shape[1:3]
  xp = np.pad(x, ((0, 0), ((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2), (0, 0)))
  return sum(xp[:, i:i + h, j:j + wd, :] * w[i, j, 0] for i in range(kh) for j in range(kw))


def np_pad_channels(x, n):
  return np.pad(x, ((0, 0), (0, 0), (0, 0), (0, n)))


def np_minimal(x, w):
  a = np.maximum(x.astype(np.float64), 0)
  return np_maxpool(np_pad_channels(np_depthwise(a, w.astype(np.float64)), 1)
                    + np_pad_channels(a, 1))


def np_block(x, w_dw, b_dw, w_pw, b_pw, relu_input=True):
  x, w_dw, b_dw, w_pw, b_pw = (v.astype(np.float64) for v in (x, w_dw, b_dw, w_pw, b_pw))
  a = np.maximum(x, 0) if relu_input else x
  y = (np_depthwise(a, w_dw) + b_dw) @ w_pw[0, 0] + b_pw
  y = np.maximum(y + np_pad_channels(a, w_pw.shape[-1] - a.shape[-1]), 0)
  return np_maxpool(y)


def cases():
  rng = np.random.default_rng(0)
  normal = lambda *shape, s=1.0: (s * rng.standard_normal(shape)).astype(np.float32)
  x, w = normal(1, 32, 32, 32), normal(3, 3, 1, 32, s=0.5)
  yield "minimal", minimal, np_minimal, (x, w)
  c, co = 24, 28
  args = (normal(1, 64, 64, c), normal(3, 3, 1, c, s=0.5), normal(c, s=0.5),
          normal(1, 1, c, co, s=0.5), normal(co, s=0.5))
  yield "block", block, np_block, args
  yield ("block_param", lambda dw: block(dw, relu_input=False),
         lambda *a: np_block(*a, relu_input=False), args)


def main():
  print(f"jax {jax.__version__}, jaxlib {jax.lib.__version__}, "
        f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
  wrong = []
  for name, build, reference, args in cases():
    want = reference(*args)
    scale = float(np.abs(want).max())
    shapes = " ".join("x".join(map(str, a.shape)) for a in args)
    print(f"{name} ({shapes}), output scale {scale:.3g}, max abs error vs float64 NumPy:")
    for form, depthwise in (("grouped", depthwise_grouped), ("shifted", depthwise_shifted)):
      f = build(depthwise)
      for mode, run in (("jit", jax.jit(f)), ("eager", f)):
        err = float(np.abs(np.asarray(run(*args), np.float64) - want).max())
        bad = err > TOL * scale
        if bad and mode == "jit":
          wrong.append(f"{name}/{form}")
        print(f"  {form:8s} {mode:6s} {err:9.3g}{'  WRONG' if bad else ''}")
  print("wrong under jit: " + (", ".join(wrong) if wrong else "none"))
  status = 1 if wrong else 0
  if "--flag" in sys.argv and FLAG not in os.environ.get("XLA_FLAGS", ""):
    env = dict(os.environ, XLA_FLAGS=(os.environ.get("XLA_FLAGS", "") + " " + FLAG).strip())
    print(f"\nre-running with XLA_FLAGS={env['XLA_FLAGS']}")
    flagged = subprocess.run([sys.executable, __file__], env=env).returncode
    print(f"with the flag: exit {flagged}")
  return status


if __name__ == "__main__":
  sys.exit(main())
