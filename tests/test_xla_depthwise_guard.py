"""Guard for the translator's depthwise convolution under ``jax.jit``.

XLA:CPU in jaxlib 0.10.2 miscompiles a grouped (depthwise)
``lax.conv_general_dilated`` when it lands in one YNNPACK fusion with a producer
of its input, a channel-padded shortcut add and a 2x2 max pool: exactly the
BlazeFace residual block that grows its channels before a stride-2 stage (see
``docs/xla_cpu_depthwise_miscompile.md``). The translator therefore writes
``DEPTHWISE_CONV_2D`` as shifted multiply-adds. The first test runs that block
built from the translator's own operators under ``jax.jit`` against the NumPy
reference of the TFLite kernels, so it fails if the depthwise op is
re-formulated as a grouped convolution; the second checks that the same shapes
still trigger the miscompilation on jaxlib 0.10.2, i.e. that the guard can fail.
"""


import jax
import jaxlib
import numpy as np
import pytest
from jax import lax


from jaxanchors import networks
from reference import tflite_ops as ref

H, C, CO = 32, 32, 36          # smallest shapes found that still trigger the bug
TOL = 1e-5                     # of the output's max abs value: float32 rounding
BUGGY_JAXLIB = "0.10.2"


def _inputs():
  rng = np.random.default_rng(0)
  normal = lambda *shape: (0.5 * rng.standard_normal(shape)).astype(np.float32)
  x = 2 * normal(1, H, H, C)
  return x, normal(1, 3, 3, C), normal(C), normal(CO, 1, 1, C), normal(CO)


def _block(depthwise):
  """relu -> depthwise 3x3 -> 1x1 conv -> + channel-padded shortcut -> relu -> 2x2 max pool.

  Built from the translator's operators (TFLite layouts: depthwise ``w [1, kh, kw, C]``,
  conv ``w [Co, kh, kw, Ci]``), as in layers 5-12 of the face short-range detector.
  A new function object on every call, so ``jax.jit`` traces it afresh and sees
  the current operators.
  """
  ops = networks._OPS

  def f(x, w_dw, b_dw, w_pw, b_pw):
    a = ops["RELU"](x)
    y = depthwise(a, w_dw, b_dw, (1, 1), (1, 1), ((1, 1), (1, 1)), None, 1)
    y = ops["CONV_2D"](y, w_pw, b_pw, (1, 1), (1, 1), ((0, 0), (0, 0)), None)
    r = ops["PAD"](a, ((0, 0), (0, 0), (0, CO - C)))
    s = ops["ADD"](r, y, "RELU")
    return ops["MAX_POOL_2D"](s, (2, 2), (2, 2), ((0, 0), (0, 0)), None)
  return f


def _reference(x, w_dw, b_dw, w_pw, b_pw):
  a = np.maximum(x, 0)
  y = ref.depthwise_conv2d(a, w_dw, b_dw, padding="SAME")
  y = ref.conv2d(y, w_pw, b_pw, padding="VALID")
  s = ref.add(ref.pad(a, ((0, 0), (0, 0), (0, 0), (0, CO - C))), y, "RELU")
  return ref.max_pool2d(s, filter=(2, 2), stride=(2, 2), padding="VALID")


def _grouped_depthwise(x, w, b=None, stride=(1, 1), dilation=(1, 1), pads=((0, 0), (0, 0)),
                       act=None, multiplier=1):
  """``DEPTHWISE_CONV_2D`` as a grouped convolution: the formulation XLA:CPU miscompiles."""
  y = lax.conv_general_dilated(x, w.transpose(1, 2, 0, 3), stride, pads, rhs_dilation=dilation,
                               dimension_numbers=("NHWC", "HWIO", "NHWC"),
                               feature_group_count=x.shape[-1])
  if b is not None:
    y = y + b
  return networks._activate(y, act)


def _jit_error(depthwise):
  args = _inputs()
  want = _reference(*args)
  got = np.asarray(jax.jit(_block(depthwise))(*args))
  assert got.shape == want.shape == (1, H // 2, H // 2, CO)
  return float(np.abs(got - want).max()), float(np.abs(want).max())


def test_translator_depthwise_is_right_under_jit():
  err, scale = _jit_error(networks._OPS["DEPTHWISE_CONV_2D"])
  assert err <= TOL * scale, (
      f"jitted BlazeFace block off by {err:.3g} (output scale {scale:.3g}): the "
      "translator's DEPTHWISE_CONV_2D must not be a grouped conv_general_dilated, "
      "which XLA:CPU miscompiles in this fusion (docs/xla_cpu_depthwise_miscompile.md)")


def test_grouped_conv_in_that_pattern_is_miscompiled_on_this_jaxlib():
  if jaxlib.__version__ != BUGGY_JAXLIB:
    pytest.skip(f"canary pinned to jaxlib {BUGGY_JAXLIB} (this is {jaxlib.__version__}): "
                "re-check whether the grouped-conv miscompilation still occurs and "
                "update or drop this canary")
  err, scale = _jit_error(_grouped_depthwise)
  assert err > 1e-2 * scale, (
      f"grouped depthwise conv gave the right result under jit (error {err:.3g}): "
      "these shapes no longer trigger the XLA:CPU bug, so the guard above cannot fail")
