"""MediaPipe's networks as pure JAX functions, read from their .tflite files.

:func:`load` parses a ``.tflite`` flatbuffer (with the ``tflite`` schema
package, never by running an interpreter) into a :class:`Network`: the float32
weights as a pytree (``network.params``, a dict keyed by tensor name) and the
graph as a static list of operators that :meth:`Network.apply` runs with
``jax.numpy``/``lax``. The result is a pure function of ``(params, images)``:
it jits, vmaps, differentiates, exports and shards like any JAX code, on any
device. ``jaxanchors.models.load_network`` is the usual entry point.

The operator set is what MediaPipe's SSD detectors (face short and full range,
palm lite and full, pose) and its face, iris, hand and pose landmark models use
(``docs/networks.md`` lists which model uses what), with TFLite's float
semantics:

=====================  =========================================================
``CONV_2D``            ``SAME``/``VALID`` padding as TFLite computes it
                       (``before = total // 2``), strides, dilation, fused
                       ``RELU``/``RELU6``/``RELU_N1_TO_1``.
``DEPTHWISE_CONV_2D``  any depth multiplier; computed as a sum of ``kh * kw``
                       shifted multiply-adds (see below).
``ADD``                broadcasting, fused activation.
``PAD``                constant zero padding.
``RELU``, ``RELU6``,   elementwise; ``PRELU`` with a learned slope per
``PRELU``              channel (a parameter).
``MAX_POOL_2D``        padded cells never win.
``RESIZE_BILINEAR``    ``align_corners`` and ``half_pixel_centers`` as TFLite's
                       reference kernel: clamped neighbours, fractional weights.
``DEPTH_TO_SPACE``     TFLite's (TensorFlow's ``DCR``) channel order.
``RESHAPE``,           static shapes, with the batch dimension free.
``CONCATENATION``
``FULLY_CONNECTED``    ``[units, depth]`` weights (the default format) on each
                       frame's values, optional bias, fused activation.
``LOGISTIC``           the sigmoid.
``MEAN``               over constant axes (never the batch), ``keep_dims``.
``DEQUANTIZE``         float16 weights, widened to float32 at load time.
``DENSIFY``            sparse weights, decoded from their sparsity parameters
                       at load time.
=====================  =========================================================

Anything else (another operator, int8 quantisation, a dynamic shape, a second
subgraph) raises ``ValueError`` naming the operator and tensor.

A network with two ``[1, N, *]`` outputs of the same ``N`` (different widths)
is an SSD detector: :meth:`Network.apply` returns its :class:`NetworkOutput`
``(raw_boxes, raw_scores)``, what ``TensorsToDetectionsCalculator`` takes. Any
other network (a landmark model, say) returns the tuple of its outputs in the
file's order, each with the stored shape after the leading batch dimension.

Depthwise convolutions are written as shifted multiply-adds, not as a grouped
``lax.conv_general_dilated``: on XLA:CPU (jaxlib 0.10.2) the grouped
convolution can be miscompiled under ``jax.jit`` when it is fused with the 1x1
convolution, channel pad, add and max pool that follow it in these networks
(``docs/xla_cpu_depthwise_miscompile.md``), and the shifted form is correct
and also faster there. Convolutions run at ``Precision.HIGHEST`` so that GPUs
and TPUs compute in float32 as the ``.tflite`` does.

Example (not run as a doctest: it needs the model file)::

    from jaxanchors import models
    net = models.load_network("face_short_range")
    raw_boxes, raw_scores = net(tensor)           # tensor: float32 [..., 128, 128, 3]
    raw_boxes, raw_scores = jax.jit(net.apply)(net.params, tensor)

    hand = models.load_network("hand_landmark_full")
    landmarks, presence, handedness, world = hand(crop)   # crop: float32 [..., 224, 224, 3]
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import os
import pathlib
from typing import Any, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.typing import ArrayLike

__all__ = ["Network", "NetworkOutput", "PackedParams", "ParamSource", "densify", "load", "sparse_positions"]

# TFLite schema enums, by value (schema.fbs).
_FLOAT32, _FLOAT16, _INT32, _UINT8, _INT64, _INT8, _FLOAT64, _UINT16 = 0, 1, 2, 3, 4, 9, 10, 16
_NUMPY_TYPES = {_FLOAT32: np.float32, _FLOAT16: np.float16, _INT32: np.int32, _UINT8: np.uint8,
                _INT64: np.int64, _INT8: np.int8, _FLOAT64: np.float64, _UINT16: np.uint16}
_ACTIVATIONS = {0: None, 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6"}
_PADDINGS = {0: "SAME", 1: "VALID"}

_CONST_OPS = frozenset({"DEQUANTIZE", "DENSIFY"})
_COMPUTE_OPS = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "PAD", "RELU", "RELU6", "PRELU",
                          "MAX_POOL_2D", "RESIZE_BILINEAR", "DEPTH_TO_SPACE", "RESHAPE",
                          "CONCATENATION", "FULLY_CONNECTED", "LOGISTIC", "MEAN"})
SUPPORTED_OPS = tuple(sorted(_CONST_OPS | _COMPUTE_OPS))
"""The TFLite builtin operators :func:`load` translates."""


class ParamSource(NamedTuple):
  """Where one parameter is stored in the ``.tflite`` file.

  Attributes:
    tensor: index of the stored (constant) tensor in the subgraph.
    buffer: index of its buffer in the model.
    dtype: the stored element type, ``"float32"`` or ``"float16"``.
    sparse: whether the stored tensor is sparse (decoded by ``DENSIFY``).
    shape: the dense shape of the parameter.
    offset: byte offset of the stored values within the file.
    positions: for a sparse tensor, ``int64 [nnz, rank]``, the dense index of
      each stored value in storage order (the rest is pruned: zero); ``None``
      for a dense one.
  """

  tensor: int
  buffer: int
  dtype: str
  sparse: bool
  shape: tuple[int, ...]
  offset: int
  positions: np.ndarray | None = None


class _Op(NamedTuple):
  """One operator of the translated graph: ``kind`` applied to ``inputs``.

  ``inputs`` name activations by tensor index (``int``) and parameters by key
  (``str``); ``options`` is a hashable tuple of static values.
  """

  kind: str
  inputs: tuple[int | str, ...]
  output: int
  options: tuple[Any, ...]


class _Graph(NamedTuple):
  """The static part of a :class:`Network`: hashable, so jit caches on it."""

  ops: tuple[_Op, ...]
  input: int
  input_shape: tuple[int, int, int]       # (height, width, channels)
  boxes: int                              # output tensor of the raw boxes (-1: no detector)
  scores: int                             # output tensor of the raw scores (-1: no detector)
  param_tensors: tuple[tuple[str, int], ...] = ()   # key -> float32 tensor it stands for
  frame_values: int = 0                   # values of the largest activation of one frame
  outputs: tuple[int, ...] = ()           # every output tensor, in the file's order
  output_names: tuple[str, ...] = ()      # their names in the file


def _error(where: str, message: str) -> ValueError:
  return ValueError(f"{where}: {message}")


# --------------------------------------------------------------------------- #
# Parsing.
# --------------------------------------------------------------------------- #


def _schema() -> Any:
  try:
    import tflite  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise ImportError("reading .tflite files needs the flatbuffer schema package 'tflite': "
                      "pip install 'jaxanchors[models]'") from e
  return tflite


def _op_names(schema: Any) -> dict[int, str]:
  return {v: k for k, v in vars(schema.BuiltinOperator).items()
          if not k.startswith("_") and isinstance(v, int)}


def _index_vector(schema: Any, kind: int, table: Any) -> np.ndarray:
  """The values of a ``SparseIndexVector`` union member as an int64 array."""
  cls = {1: schema.Int32Vector, 2: schema.Uint16Vector, 3: schema.Uint8Vector}.get(kind)
  if cls is None or table is None:
    raise ValueError(f"unknown sparse index vector type {kind}")
  vec = cls()
  vec.Init(table.Bytes, table.Pos)
  if vec.ValuesLength() == 0:
    return np.zeros(0, np.int64)
  return vec.ValuesAsNumpy().astype(np.int64)


def sparse_positions(shape: Sequence[int], traversal_order: Sequence[int],
                     dims: Sequence[tuple[str, int, np.ndarray | None, np.ndarray | None]],
                     *, where: str = "tensor") -> np.ndarray:
  """Where the stored values of a TFLite sparse tensor (``SparsityParameters``) go.

  Args:
    shape: the dense shape.
    traversal_order: the order in which dimensions are traversed (its length
      is the rank: block dimensions are not supported).
    dims: per traversed dimension ``(format, dense_size, segments, indices)``,
      ``format`` being ``"DENSE"`` (uses ``dense_size``) or ``"SPARSE_CSR"``
      (uses ``segments`` and ``indices``).
    where: name used in error messages.

  Returns:
    ``int64 [nnz, rank]``: the dense index of each stored value, in storage
    order.
  """
  rank = len(shape)
  if sorted(traversal_order) != list(range(rank)) or len(dims) != rank:
    raise _error(where, f"sparse tensors with block dimensions are not supported "
                 f"(traversal order {list(traversal_order)}, shape {list(shape)})")
  # Walk the dimensions in traversal order, keeping for every reached prefix
  # its coordinates and its position (the parent index of the next level).
  coords = np.zeros((1, 0), np.int64)
  for level, (fmt, dense_size, segments, indices) in enumerate(dims):
    parents = np.arange(coords.shape[0])
    if fmt == "DENSE":
      if dense_size != shape[traversal_order[level]]:
        raise _error(where, f"dense dimension {level} has size {dense_size}, shape says "
                     f"{shape[traversal_order[level]]}")
      child = np.repeat(parents, dense_size)
      new = np.tile(np.arange(dense_size), coords.shape[0])
    else:
      assert segments is not None and indices is not None
      if segments.shape[0] != coords.shape[0] + 1 or np.any(np.diff(segments) < 0):
        raise _error(where, f"sparse dimension {level} has {segments.shape[0]} segment "
                     f"bounds for {coords.shape[0]} rows")
      counts = np.diff(segments)
      child = np.repeat(parents, counts)
      new = indices[segments[0]:segments[-1]]
      if new.shape[0] != child.shape[0] or np.any(new >= shape[traversal_order[level]]):
        raise _error(where, f"sparse dimension {level} has indices out of range")
    coords = np.concatenate([coords[child], new[:, None]], axis=1)
  natural = np.empty_like(coords)
  natural[:, list(traversal_order)] = coords
  return natural


def densify(values: np.ndarray, shape: Sequence[int], traversal_order: Sequence[int],
            dims: Sequence[tuple[str, int, np.ndarray | None, np.ndarray | None]],
            *, where: str = "tensor") -> np.ndarray:
  """Decodes a TFLite sparse tensor into a dense array (zeros where nothing is stored).

  ``values`` are the stored values in storage order; the other arguments are
  those of :func:`sparse_positions`.
  """
  positions = sparse_positions(shape, traversal_order, dims, where=where)
  if positions.shape[0] != values.shape[0]:
    raise _error(where, f"{values.shape[0]} stored values for {positions.shape[0]} positions")
  dense = np.zeros(tuple(shape), values.dtype)
  dense[tuple(positions.T)] = values
  return dense


class _Reader:
  """Reads one subgraph of a ``.tflite`` model into a :class:`_Graph` and params."""

  def __init__(self, data: bytes, path: str) -> None:
    self.schema = schema = _schema()
    self.path = path
    self.data = data
    if len(data) < 8 or data[4:8] != b"TFL3":
      raise ValueError(f"{path}: not a TFLite flatbuffer (no 'TFL3' file identifier)")
    try:
      self.model = schema.Model.GetRootAsModel(data, 0)
      subgraphs = self.model.SubgraphsLength()
    except Exception as e:  # flatbuffers raises assorted errors on garbage
      raise ValueError(f"{path}: not a TFLite flatbuffer ({type(e).__name__}: {e})") from e
    if subgraphs != 1:
      raise ValueError(f"{path}: expected one subgraph, found {subgraphs}")
    self.sg = self.model.Subgraphs(0)
    self.op_names = _op_names(schema)

  # -- tensors -------------------------------------------------------------- #

  def name(self, t: int) -> str:
    raw = self.sg.Tensors(t).Name()
    return raw.decode("utf-8", "replace") if raw else f"tensor_{t}"

  def where(self, t: int) -> str:
    return f"{self.path}: tensor {t} ({self.name(t)!r})"

  def shape(self, t: int) -> tuple[int, ...]:
    tensor = self.sg.Tensors(t)
    shape = tuple(int(d) for d in tensor.ShapeAsNumpy()) if tensor.ShapeLength() else ()
    if tensor.ShapeSignatureLength():
      signature = tuple(int(d) for d in tensor.ShapeSignatureAsNumpy())
      if any(d < 0 for d in signature[1:]):
        raise ValueError(f"{self.where(t)} has a dynamic shape {list(signature)}; only static "
                         "shapes (apart from the batch) are supported")
    return shape

  def dtype(self, t: int) -> int:
    return int(self.sg.Tensors(t).Type())

  def check_unquantized(self, t: int, op: str) -> None:
    q = self.sg.Tensors(t).Quantization()
    if q is not None and (q.ScaleLength() > 0 or q.ZeroPointLength() > 0):
      raise ValueError(f"{self.where(t)}, input of {op}, is quantised (scale/zero point): "
                       "only float models (float32, or float16/sparse stored weights) are "
                       "supported")

  def buffer_data(self, t: int) -> np.ndarray | None:
    """The raw bytes of tensor ``t``'s buffer, or None for a tensor computed at run time."""
    b = self.sg.Tensors(t).Buffer()
    buf = self.model.Buffers(b)
    if buf is None:
      return None
    if buf.Offset() > 1:  # data stored after the flatbuffer (large models)
      return np.frombuffer(self.data, np.uint8, count=buf.Size(), offset=buf.Offset())
    if buf.DataLength() == 0:
      return None
    return buf.DataAsNumpy()

  def buffer_span(self, t: int) -> tuple[int, int]:
    """``(offset, size)`` in bytes of tensor ``t``'s stored data within the file."""
    buf = self.model.Buffers(self.sg.Tensors(t).Buffer())
    if buf.Offset() > 1:
      return int(buf.Offset()), int(buf.Size())
    data = buf.DataAsNumpy()
    base = np.frombuffer(self.data, np.uint8)
    offset = data.__array_interface__["data"][0] - base.__array_interface__["data"][0]
    if not 0 <= offset <= len(self.data) - data.nbytes:
      raise ValueError(f"{self.where(t)}: cannot locate its data in the file")
    return int(offset), int(data.nbytes)

  def constant(self, t: int) -> np.ndarray | None:
    """Tensor ``t``'s stored value (dense tensors only), or None."""
    raw = self.buffer_data(t)
    if raw is None:
      return None
    dtype = _NUMPY_TYPES.get(self.dtype(t))
    if dtype is None:
      raise ValueError(f"{self.where(t)} has unsupported element type {self.dtype(t)}")
    if self.sg.Tensors(t).Sparsity() is not None:
      return np.frombuffer(raw.tobytes(), dtype)   # the stored values, in traversal order
    count = math.prod(self.shape(t))
    values = np.frombuffer(raw.tobytes(), dtype)
    if values.shape[0] != count:
      raise ValueError(f"{self.where(t)} stores {values.shape[0]} values for shape "
                       f"{list(self.shape(t))}")
    return values.reshape(self.shape(t))

  def sparse_layout(self, t: int) -> np.ndarray:
    """The dense positions of the sparse constant tensor ``t``'s stored values."""
    sparsity = self.sg.Tensors(t).Sparsity()
    if sparsity is None or self.buffer_data(t) is None:
      raise ValueError(f"{self.where(t)}, input of DENSIFY, is not a sparse constant")
    if sparsity.BlockMapLength():
      raise ValueError(f"{self.where(t)}: block-sparse tensors are not supported")
    order = [int(d) for d in sparsity.TraversalOrderAsNumpy()]
    dims = []
    for i in range(sparsity.DimMetadataLength()):
      m = sparsity.DimMetadata(i)
      if m.Format() == 0:
        dims.append(("DENSE", int(m.DenseSize()), None, None))
      else:
        dims.append(("SPARSE_CSR", 0,
                     _index_vector(self.schema, m.ArraySegmentsType(), m.ArraySegments()),
                     _index_vector(self.schema, m.ArrayIndicesType(), m.ArrayIndices())))
    return sparse_positions(self.shape(t), order, dims, where=self.where(t))

  def densified(self, t: int) -> np.ndarray:
    """Decodes the sparse constant tensor ``t``."""
    positions = self.sparse_layout(t)
    values = self.constant(t)
    assert values is not None
    if positions.shape[0] != values.shape[0]:
      raise ValueError(f"{self.where(t)}: {values.shape[0]} stored values for "
                       f"{positions.shape[0]} positions")
    dense = np.zeros(self.shape(t), values.dtype)
    dense[tuple(positions.T)] = values
    return dense

  # -- operators ------------------------------------------------------------ #

  def op_name(self, op: Any) -> str:
    code = self.model.OperatorCodes(op.OpcodeIndex())
    builtin = max(int(code.BuiltinCode()), int(code.DeprecatedBuiltinCode()))
    name = self.op_names.get(builtin, f"builtin {builtin}")
    if name == "CUSTOM":
      custom = code.CustomCode()
      name = f"CUSTOM ({custom.decode() if custom else '?'})"
    return name

  def options(self, op: Any, cls_name: str) -> Any:
    table = op.BuiltinOptions()
    if table is None:
      return None
    opts = getattr(self.schema, cls_name)()
    opts.Init(table.Bytes, table.Pos)
    return opts


def _padding(where: str, kind: str, size: int, kernel: int, stride: int,
             dilation: int) -> tuple[int, int, int]:
  """TFLite's ``(pad_before, pad_after, out_size)`` for one spatial dimension."""
  effective = (kernel - 1) * dilation + 1
  if kind == "SAME":
    out = -(-size // stride)
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2, out
  out = (size - effective) // stride + 1
  if out <= 0:
    raise ValueError(f"{where}: VALID window {effective} larger than the input {size}")
  return 0, 0, out


def _parse(data: bytes, path: str) -> tuple[_Graph, dict[str, np.ndarray], dict[str, ParamSource]]:
  r = _Reader(data, path)
  sg = r.sg
  if sg.InputsLength() != 1:
    raise ValueError(f"{path}: expected one input tensor, found {sg.InputsLength()}")
  input_t = int(sg.Inputs(0))
  in_shape = r.shape(input_t)
  r.check_unquantized(input_t, "the model")
  if len(in_shape) != 4 or in_shape[0] != 1 or r.dtype(input_t) != _FLOAT32:
    raise ValueError(f"{r.where(input_t)}: expected a float32 [1, h, w, c] input, got "
                     f"shape {list(in_shape)} type {r.dtype(input_t)}")

  consts: dict[int, np.ndarray] = {}      # constant tensors folded so far
  origin: dict[int, int] = {}             # folded tensor -> stored tensor it came from
  params: dict[str, np.ndarray] = {}
  sources: dict[str, ParamSource] = {}
  key_of: dict[int, str] = {}             # stored tensor -> parameter key
  param_tensors: dict[str, int] = {}      # parameter key -> first float32 tensor using it
  activations = {input_t}
  ops: list[_Op] = []

  def const_value(t: int) -> np.ndarray | None:
    if t not in consts:
      value = r.constant(t)
      if value is None or r.sg.Tensors(t).Sparsity() is not None:
        return None
      consts[t] = value
    return consts[t]

  def param(t: int, op: str) -> str:
    """The key of the float parameter that tensor ``t`` holds (registered once)."""
    value = const_value(t)
    if value is None:
      raise ValueError(f"{r.where(t)}, weight input of {op}, is neither a constant nor "
                       "computed from one")
    if value.dtype != np.float32:
      raise ValueError(f"{r.where(t)}, weight input of {op}, has type {value.dtype}; expected "
                       "float32 (or float16 through DEQUANTIZE)")
    stored = origin.get(t, t)
    if stored not in key_of:
      key = r.name(t)
      n = 1
      while key in params:
        key, n = f"{r.name(t)}_{n}", n + 1
      key_of[stored] = key
      params[key] = np.array(value, np.float32)
      stored_type = {_FLOAT32: "float32", _FLOAT16: "float16"}.get(r.dtype(stored))
      if stored_type is None:
        raise ValueError(f"{r.where(stored)}: weights stored as type {r.dtype(stored)} are "
                         "not supported")
      sparse = sg.Tensors(stored).Sparsity() is not None
      offset, size = r.buffer_span(stored)
      positions = r.sparse_layout(stored) if sparse else None
      count = positions.shape[0] if sparse else value.size
      if size != count * (4 if stored_type == "float32" else 2):
        raise ValueError(f"{r.where(stored)}: {size} stored bytes for {count} values")
      sources[key] = ParamSource(stored, int(sg.Tensors(stored).Buffer()), stored_type, sparse,
                                 value.shape, offset, positions)
      param_tensors[key] = t
    return key_of[stored]

  def activation(t: int, op: str) -> int:
    if t not in activations:
      kind = "a constant" if r.buffer_data(t) is not None else "never computed"
      raise ValueError(f"{r.where(t)}, data input of {op}, is {kind}; expected an activation")
    r.check_unquantized(t, op)
    if r.dtype(t) != _FLOAT32:
      raise ValueError(f"{r.where(t)}, input of {op}, has type {r.dtype(t)}; expected float32")
    return t

  def int_const(t: int, op: str) -> np.ndarray:
    value = const_value(t)
    if value is None or value.dtype.kind not in "iu":
      raise ValueError(f"{r.where(t)}, input of {op}, must be a constant integer tensor")
    return value

  for i in range(sg.OperatorsLength()):
    op = sg.Operators(i)
    name = r.op_name(op)
    ins = [int(t) for t in op.InputsAsNumpy()] if op.InputsLength() else []
    outs = [int(t) for t in op.OutputsAsNumpy()] if op.OutputsLength() else []
    where = f"{path}: operator {i} ({name})"
    if name not in _CONST_OPS and name not in _COMPUTE_OPS:
      out_name = r.name(outs[0]) if outs else "?"
      raise ValueError(f"{where}, producing tensor {out_name!r}, is not supported; supported "
                       f"operators: {', '.join(SUPPORTED_OPS)}")
    if len(outs) != 1:
      raise ValueError(f"{where} has {len(outs)} outputs; expected 1")
    out = outs[0]
    out_shape = r.shape(out)

    if name == "DEQUANTIZE":
      src = ins[0]
      value = const_value(src)
      if value is None or r.dtype(src) != _FLOAT16:
        raise ValueError(f"{where}: input {r.where(src)} is not a float16 constant; quantised "
                         "(int8/uint8) models are not supported")
      consts[out] = value.astype(np.float32)
      origin[out] = origin.get(src, src)
      continue
    if name == "DENSIFY":
      src = ins[0]
      consts[out] = r.densified(src)
      origin[out] = src
      continue

    if len(out_shape) == 0 or out_shape[0] != 1:
      raise ValueError(f"{where}: output {r.where(out)} has shape {list(out_shape)}; expected a "
                       "leading batch dimension of 1")
    act = None
    if name == "CONV_2D" or name == "DEPTHWISE_CONV_2D":
      cls = "Conv2DOptions" if name == "CONV_2D" else "DepthwiseConv2DOptions"
      o = r.options(op, cls)
      x = activation(ins[0], name)
      w = param(ins[1], name)
      b = param(ins[2], name) if len(ins) > 2 and ins[2] >= 0 else None
      padding = _PADDINGS.get(int(o.Padding()))
      act = _ACTIVATIONS.get(int(o.FusedActivationFunction()), "?")
      if padding is None or act == "?":
        raise ValueError(f"{where}: unsupported padding {o.Padding()} or fused activation "
                         f"{o.FusedActivationFunction()}")
      stride = (int(o.StrideH()), int(o.StrideW()))
      dilation = (int(o.DilationHFactor()), int(o.DilationWFactor()))
      xs, ws = r.shape(x), params[w].shape
      kh, kw = ws[1], ws[2]
      ph = _padding(where, padding, xs[1], kh, stride[0], dilation[0])
      pw = _padding(where, padding, xs[2], kw, stride[1], dilation[1])
      if name == "CONV_2D":
        if ws[3] != xs[3] or ws[0] != out_shape[3]:
          raise ValueError(f"{where}: filter shape {list(ws)} does not fit input "
                           f"{list(xs)} -> output {list(out_shape)}")
        options = (stride, dilation, (ph[:2], pw[:2]), act)
      else:
        multiplier = ws[3] // xs[3] if xs[3] else 0
        if ws[0] != 1 or multiplier * xs[3] != ws[3] or ws[3] != out_shape[3]:
          raise ValueError(f"{where}: filter shape {list(ws)} does not fit input "
                           f"{list(xs)} -> output {list(out_shape)}")
        options = (stride, dilation, (ph[:2], pw[:2]), act, multiplier)
      if (ph[2], pw[2]) != tuple(out_shape[1:3]):
        raise ValueError(f"{where}: computed output size {(ph[2], pw[2])} differs from the "
                         f"stored {list(out_shape)}")
      ops.append(_Op(name, (x, w) + ((b,) if b is not None else ()), out, options))
    elif name == "ADD" or name == "CONCATENATION":
      inputs = []
      for t in ins:
        inputs.append(activation(t, name) if t in activations else param(t, name))
      if name == "ADD":
        o = r.options(op, "AddOptions")
        act = _ACTIVATIONS.get(int(o.FusedActivationFunction()) if o else 0, "?")
        options = (act,)
      else:
        o = r.options(op, "ConcatenationOptions")
        act = _ACTIVATIONS.get(int(o.FusedActivationFunction()), "?")
        rank = len(out_shape)
        axis = int(o.Axis()) % rank
        if axis == 0:
          raise ValueError(f"{where}: concatenation along the batch axis is not supported")
        options = (axis - rank, act)     # counted from the end: batch dims are free
      if act == "?":
        raise ValueError(f"{where}: unsupported fused activation")
      ops.append(_Op(name, tuple(inputs), out, options))
    elif name == "PAD":
      x = activation(ins[0], name)
      pads = int_const(ins[1], name)
      if pads.shape != (len(r.shape(x)), 2) or np.any(pads < 0) or np.any(pads[0] != 0):
        raise ValueError(f"{where}: paddings {pads.tolist()} must be non-negative [rank, 2] "
                         "with no batch padding")
      ops.append(_Op(name, (x,), out, (tuple((int(a), int(b)) for a, b in pads[1:]),)))
    elif name in ("RELU", "RELU6"):
      ops.append(_Op(name, (activation(ins[0], name),), out, ()))
    elif name == "PRELU":
      x = activation(ins[0], name)
      alpha = param(ins[1], name)
      ops.append(_Op(name, (x, alpha), out, ()))
    elif name == "MAX_POOL_2D":
      o = r.options(op, "Pool2DOptions")
      x = activation(ins[0], name)
      padding = _PADDINGS.get(int(o.Padding()))
      act = _ACTIVATIONS.get(int(o.FusedActivationFunction()), "?")
      if padding is None or act == "?":
        raise ValueError(f"{where}: unsupported padding or fused activation")
      xs = r.shape(x)
      window = (int(o.FilterHeight()), int(o.FilterWidth()))
      stride = (int(o.StrideH()), int(o.StrideW()))
      ph = _padding(where, padding, xs[1], window[0], stride[0], 1)
      pw = _padding(where, padding, xs[2], window[1], stride[1], 1)
      ops.append(_Op(name, (x,), out, (window, stride, (ph[:2], pw[:2]), act)))
    elif name == "RESIZE_BILINEAR":
      o = r.options(op, "ResizeBilinearOptions")
      x = activation(ins[0], name)
      size = tuple(int(s) for s in int_const(ins[1], name))
      if size != tuple(out_shape[1:3]):
        raise ValueError(f"{where}: size {list(size)} differs from the output shape "
                         f"{list(out_shape)}")
      ops.append(_Op(name, (x,), out, (size, bool(o.AlignCorners()),
                                        bool(o.HalfPixelCenters()))))
    elif name == "DEPTH_TO_SPACE":
      o = r.options(op, "DepthToSpaceOptions")
      ops.append(_Op(name, (activation(ins[0], name),), out, (int(o.BlockSize()),)))
    elif name == "RESHAPE":
      x = activation(ins[0], name)
      if math.prod(r.shape(x)) != math.prod(out_shape):
        raise ValueError(f"{where}: cannot reshape {list(r.shape(x))} to {list(out_shape)}")
      ops.append(_Op(name, (x,), out, (tuple(out_shape[1:]),)))
    elif name == "FULLY_CONNECTED":
      o = r.options(op, "FullyConnectedOptions")
      x = activation(ins[0], name)
      w = param(ins[1], name)
      b = param(ins[2], name) if len(ins) > 2 and ins[2] >= 0 else None
      act = _ACTIVATIONS.get(int(o.FusedActivationFunction()), "?") if o else None
      if act == "?" or (o and int(o.WeightsFormat()) != 0):
        raise ValueError(f"{where}: unsupported fused activation or weights format (only "
                         "the default [units, depth] float weights are)")
      units, depth = params[w].shape if params[w].ndim == 2 else (0, 0)
      per_frame = math.prod(r.shape(x)[1:])
      if (not depth or per_frame % depth or out_shape[-1] != units
          or math.prod(out_shape[1:]) != per_frame // depth * units
          or (b is not None and params[b].shape != (units,))):
        raise ValueError(f"{where}: weights {list(params[w].shape)} do not fit input "
                         f"{list(r.shape(x))} -> output {list(out_shape)}")
      ops.append(_Op(name, (x, w) + ((b,) if b is not None else ()), out,
                     (tuple(out_shape[1:]), act)))
    elif name == "LOGISTIC":
      ops.append(_Op(name, (activation(ins[0], name),), out, ()))
    elif name == "MEAN":
      o = r.options(op, "ReducerOptions")
      x = activation(ins[0], name)
      rank = len(r.shape(x))
      axes = int_const(ins[1], name).reshape(-1)
      if np.any((axes < -rank) | (axes >= rank)) or np.any(axes % rank == 0):
        raise ValueError(f"{where}: axes {axes.tolist()} must be within rank {rank} and leave "
                         "the batch axis alone")
      # Counted from the end: batch dims are free.
      axes = tuple(sorted({int(a) % rank - rank for a in axes}))
      ops.append(_Op(name, (x,), out, (axes, bool(o.KeepDims()) if o else False)))
    activations.add(out)

  outputs = [int(sg.Outputs(k)) for k in range(sg.OutputsLength())]
  if not outputs:
    raise ValueError(f"{path}: the model has no outputs")
  for t in outputs:
    if t not in activations or t == input_t:
      raise ValueError(f"{r.where(t)}: a model output that no operator computes")
  shapes = [r.shape(t) for t in outputs]
  box = score = -1
  if (len(outputs) == 2 and all(len(s) == 3 and s[0] == 1 for s in shapes)
      and shapes[0][1] == shapes[1][1] and shapes[0][2] != shapes[1][2]):
    # Two [1, N, *] outputs of the same N: an SSD detector's raw boxes (the
    # wider one) and raw scores.
    box, score = outputs if shapes[0][2] > shapes[1][2] else outputs[::-1]
  largest = max(math.prod(r.shape(t)[1:]) for t in activations)
  graph = _Graph(tuple(ops), input_t, tuple(in_shape[1:]), box, score,
                 tuple(param_tensors.items()), largest, tuple(outputs),
                 tuple(r.name(t) for t in outputs))
  _check_shapes(graph, params, r)
  return graph, params, sources


def _check_shapes(graph: _Graph, params: Mapping[str, np.ndarray], r: _Reader) -> None:
  """Runs the graph abstractly and checks every output shape against the file."""
  def run(p):
    values: dict[int, jax.Array] = {graph.input: jnp.zeros((1,) + graph.input_shape)}
    for op in graph.ops:
      values[op.output] = _OPS[op.kind](*[p[i] if isinstance(i, str) else values[i]
                                          for i in op.inputs], *op.options)
    return {op.output: values[op.output] for op in graph.ops}

  shapes = jax.eval_shape(run, {k: jax.ShapeDtypeStruct(v.shape, v.dtype)
                                for k, v in params.items()})
  for t, s in shapes.items():
    if tuple(s.shape) != r.shape(t):
      raise ValueError(f"{r.where(t)}: translated shape {list(s.shape)} differs from the "
                       f"stored {list(r.shape(t))}")


# --------------------------------------------------------------------------- #
# Operators.
# --------------------------------------------------------------------------- #


def _activate(x: jax.Array, act: str | None) -> jax.Array:
  if act is None:
    return x
  if act == "RELU":
    return jnp.maximum(x, 0)
  if act == "RELU6":
    return jnp.clip(x, 0, 6)
  return jnp.clip(x, -1, 1)   # RELU_N1_TO_1


def _activate_unfused(x: jax.Array, act: str | None) -> jax.Array:
  """:func:`_activate` as one ``clamp`` (the identity clamps to +-inf).

  Ends an elementwise chain with an operation that XLA:CPU's YNNPACK fusion
  does not take (it takes only one- and two-operand elementwise operations).
  A depthwise convolution's multiply-adds then stay in one XLA loop kernel
  that reads its shifted windows directly; fused into the next layer's matrix
  product instead, every window became a copy of its own (twice the kernels,
  slower). Values are those of :func:`_activate`.
  """
  lo, hi = {None: (-np.inf, np.inf), "RELU": (0, np.inf), "RELU6": (0, 6),
            "RELU_N1_TO_1": (-1, 1)}[act]
  return lax.clamp(jnp.asarray(lo, x.dtype), x, jnp.asarray(hi, x.dtype))


def _precision(x: jax.Array) -> lax.Precision:
  wide = x.dtype in (jnp.float32, jnp.float64)
  return lax.Precision.HIGHEST if wide else lax.Precision.DEFAULT


def _out_size(size: int, kernel: int, stride: int, dilation: int) -> int:
  return (size - (kernel - 1) * dilation - 1) // stride + 1


def _windows(x, kernel, stride, dilation, pads):
  """The ``kh * kw`` shifted, strided views of ``x [B, H, W, C]`` a convolution reads.

  Yields ``(i, j, view)`` with ``view[b, y, x, c] = padded[b, y * sh + i * dh,
  x * sw + j * dw, c]``, each of the output's spatial size.
  """
  (pt, pb), (pl, pr) = pads
  if pt or pb or pl or pr:
    x = _pad(x, ((pt, pb), (pl, pr), (0, 0)))
  batch, height, width, c = x.shape
  out_h = _out_size(height, kernel[0], stride[0], dilation[0])
  out_w = _out_size(width, kernel[1], stride[1], dilation[1])
  for i in range(kernel[0]):
    for j in range(kernel[1]):
      top, left = i * dilation[0], j * dilation[1]
      yield i, j, lax.slice(x, (0, top, left, 0),
                            (batch, top + (out_h - 1) * stride[0] + 1,
                             left + (out_w - 1) * stride[1] + 1, c),
                            (1, stride[0], stride[1], 1))


def _patches(x, kernel, stride, dilation, pads):
  """``[B, oh, ow, kh * kw * C]``: each output position's window, in ``(i, j, c)`` order.

  Gathered in two steps: the ``kw`` column shifts of every (padded) row, then
  the ``kh`` row shifts of those. The rows are first regrouped by the stride
  (a free reshape), so each row shift is a slice along the leading axes, not a
  strided gather of small pieces; XLA:CPU copies this layout several times
  faster than ``kh * kw`` separate windows.
  """
  (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
  (pt, pb), (pl, pr) = pads
  batch, height, width, c = x.shape
  out_h = _out_size(height + pt + pb, kh, sh, dh)
  out_w = _out_size(width + pl + pr, kw, sw, dw)
  # Whole groups of `sh` rows, covering every row a window reads; rows below
  # the padded image are never read.
  groups = max(-(-(height + pt + pb) // sh), out_h + (kh - 1) * dh // sh)
  x = _pad(x, ((pt, groups * sh - height - pt), (pl, pr), (0, 0)))
  cols = jnp.concatenate(
      [lax.slice(x, (0, 0, j * dw, 0), (batch, groups * sh, j * dw + (out_w - 1) * sw + 1, c),
                 (1, 1, sw, 1)) for j in range(kw)], axis=-1)
  cols = cols.reshape(batch, groups, sh, out_w, kw * c)
  return jnp.concatenate([cols[:, i * dh // sh:i * dh // sh + out_h, i * dh % sh]
                          for i in range(kh)], axis=-1)


def _conv(x, w, b=None, stride=(1, 1), dilation=(1, 1), pads=((0, 0), (0, 0)), act=None):
  """``CONV_2D``: ``x [B, H, W, Ci]``, ``w [Co, kh, kw, Ci]`` (OHWI), bias ``[Co]``.

  A matrix product over the channels (for a larger kernel, over the
  ``kh * kw * Ci`` values of each window, gathered first by :func:`_patches`):
  on XLA:CPU this is several times faster than ``conv_general_dilated`` for
  these small-channel layers, and the same sums.
  """
  co, kh, kw, ci = w.shape
  if (kh, kw) != (1, 1) or stride != (1, 1) or pads != ((0, 0), (0, 0)):
    x = _patches(x, (kh, kw), stride, dilation, pads)
  y = jnp.einsum("bhwk,ok->bhwo", x, w.reshape(co, kh * kw * ci), precision=_precision(x))
  if b is not None:
    y = y + b
  return _activate(y, act)


def _depthwise(x, w, b=None, stride=(1, 1), dilation=(1, 1), pads=((0, 0), (0, 0)), act=None,
               multiplier=1):
  """``DEPTHWISE_CONV_2D`` as ``kh * kw`` shifted multiply-adds, in one loop kernel.

  ``w [1, kh, kw, C * multiplier]``; output channel ``c * multiplier + m``
  reads input channel ``c``. Not a grouped ``conv_general_dilated``: see the
  module docstring.
  """
  if multiplier > 1:
    x = jnp.repeat(x, multiplier, axis=-1)
  # Sums in float32 at least (as the matrix products accumulate), rounded once.
  acc = jnp.promote_types(x.dtype, jnp.float32)
  w = w.astype(acc)
  y = None
  for i, j, view in _windows(x, w.shape[1:3], stride, dilation, pads):
    term = view.astype(acc) * w[0, i, j]
    y = term if y is None else y + term
  if b is not None:
    y = y + b.astype(acc)
  return _activate_unfused(y, act).astype(x.dtype)


def _add(*args):
  *xs, act = args
  return _activate(functools.reduce(jnp.add, xs), act)


def _concatenation(*args):
  *xs, axis, act = args
  return _activate(jnp.concatenate(xs, axis=axis), act)


def _pad(x, pads):
  """``PAD`` with zeros; ``pads`` for every dimension but the batch."""
  return lax.pad(x, jnp.zeros((), x.dtype), ((0, 0, 0),) + tuple((lo, hi, 0) for lo, hi in pads))


def _prelu(x, alpha):
  return jnp.where(x >= 0, x, x * alpha)


def _max_pool(x, window, stride, pads, act):
  neg = np.array(-np.inf, x.dtype)   # concrete, so JAX takes its differentiable max pool
  y = lax.reduce_window(x, neg, lax.max, (1,) + window + (1,), (1,) + stride + (1,),
                        ((0, 0),) + pads + ((0, 0),))
  return _activate(y, act)


def _bilinear_taps(in_size: int, out_size: int, align_corners: bool,
                   half_pixel: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """TFLite's source rows ``(lower, upper)`` and fraction for each output row."""
  if align_corners and out_size > 1:
    scale = np.float32((in_size - 1) / (out_size - 1))
  else:
    scale = np.float32(in_size / out_size)
  o = np.arange(out_size, dtype=np.float32)
  if half_pixel:
    src = (o + np.float32(0.5)) * scale - np.float32(0.5)
  else:
    src = o * scale
  lower = np.maximum(np.floor(src), 0).astype(np.int32)
  upper = np.minimum(np.ceil(src), in_size - 1).astype(np.int32)
  frac = (src - lower.astype(np.float32)).astype(np.float32)
  return lower, upper, frac


def _resize_bilinear(x, size, align_corners, half_pixel):
  """``RESIZE_BILINEAR`` on ``[B, H, W, C]``, TFLite's reference weights."""
  y0, y1, fy = _bilinear_taps(x.shape[1], size[0], align_corners, half_pixel)
  x0, x1, fx = _bilinear_taps(x.shape[2], size[1], align_corners, half_pixel)
  fy = jnp.asarray(fy, x.dtype)[None, :, None, None]
  fx = jnp.asarray(fx, x.dtype)[None, None, :, None]
  top = jnp.take(x, y0, axis=1)
  bottom = jnp.take(x, y1, axis=1)
  tl, tr = jnp.take(top, x0, axis=2), jnp.take(top, x1, axis=2)
  bl, br = jnp.take(bottom, x0, axis=2), jnp.take(bottom, x1, axis=2)
  one = jnp.ones((), x.dtype)
  return (tl * (one - fy) * (one - fx) + bl * fy * (one - fx)
          + tr * (one - fy) * fx + br * fy * fx)


def _depth_to_space(x, block):
  b, h, w, c = x.shape
  out_c = c // (block * block)
  x = x.reshape(b, h, w, block, block, out_c)
  x = x.transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, h * block, w * block, out_c)


def _reshape(x, shape):
  return x.reshape((x.shape[0],) + shape)


def _fully_connected(x, w, b=None, shape=(), act=None):
  """``FULLY_CONNECTED``: each frame's values as rows of ``w.shape[1]`` (the
  input depth), times ``w [units, depth]``, plus the bias; ``shape`` is one
  frame's output shape."""
  y = jnp.einsum("brk,ok->bro", x.reshape(x.shape[0], -1, w.shape[1]), w,
                 precision=_precision(x))
  if b is not None:
    y = y + b
  return _activate(y.reshape((x.shape[0],) + shape), act)


def _mean(x, axes, keep_dims):
  """``MEAN`` over ``axes`` (negative: counted from the end), in float32 at least."""
  acc = jnp.promote_types(x.dtype, jnp.float32)
  return jnp.mean(x.astype(acc), axis=axes, keepdims=keep_dims).astype(x.dtype)


_OPS = {
    "CONV_2D": _conv,
    "DEPTHWISE_CONV_2D": _depthwise,
    "ADD": _add,
    "CONCATENATION": _concatenation,
    "PAD": _pad,
    "RELU": lambda x: jnp.maximum(x, 0),
    "RELU6": lambda x: jnp.clip(x, 0, 6),
    "PRELU": _prelu,
    "MAX_POOL_2D": _max_pool,
    "RESIZE_BILINEAR": _resize_bilinear,
    "DEPTH_TO_SPACE": _depth_to_space,
    "RESHAPE": _reshape,
    "FULLY_CONNECTED": _fully_connected,
    "LOGISTIC": jax.nn.sigmoid,
    "MEAN": _mean,
}


def _run(graph: _Graph, params: Mapping[str, jax.Array], x: jax.Array,
         keep: frozenset[int] = frozenset()) -> dict[int, jax.Array]:
  """Runs ``graph`` on ``x [B, H, W, C]``; returns the outputs and the ``keep`` tensors."""
  values: dict[int, jax.Array] = {graph.input: x}
  wanted = keep | set(graph.outputs)
  for op in graph.ops:
    args = [params[i] if isinstance(i, str) else values[i] for i in op.inputs]
    values[op.output] = _OPS[op.kind](*args, *op.options)
  return {t: values[t] for t in wanted}


# On CPUs, frames run a few at a time (a loop over chunks of the batch) so that
# every activation of a chunk stays in the cache: a whole batch of 64 frames
# streams tens of MB per layer through memory and took 3x longer per frame than
# one frame did (face short range). A chunk holds about this many values of the
# largest activation.
_CPU_CHUNK_VALUES = 1 << 18


def _cpu_chunk(graph: _Graph) -> int:
  return max(1, _CPU_CHUNK_VALUES // max(graph.frame_values, 1))


def _run_in_chunks(graph: _Graph, params, x: jax.Array, keep: frozenset[int],
                   chunk: int) -> dict[int, jax.Array]:
  """:func:`_run` over ``x``'s frames ``chunk`` at a time (a sequential loop)."""
  batch = x.shape[0]
  if batch <= chunk:
    return _run(graph, params, x, keep)
  steps = -(-batch // chunk)
  x = jnp.pad(x, ((0, steps * chunk - batch),) + ((0, 0),) * (x.ndim - 1))
  out = lax.map(lambda frames: _run(graph, params, frames, keep),
                x.reshape((steps, chunk) + x.shape[1:]))
  return {t: v.reshape((steps * chunk,) + v.shape[2:])[:batch] for t, v in out.items()}


def _unpack(packed: PackedParams, layout: _Layout) -> dict[str, jax.Array]:
  """The parameter dict that :meth:`Network.pack` packed with ``layout``."""
  params = dict(packed.kernels)
  for key, offset, shape in layout:
    params[key] = lax.slice(packed.flat, (offset,), (offset + math.prod(shape),)).reshape(shape)
  return params


@functools.partial(jax.jit, static_argnames=("graph", "dtype", "keep", "layout"))
def _apply(params, images, *, graph: _Graph, dtype: Any, keep: frozenset[int],
           layout: _Layout | None = None):
  """:func:`_run` on ``images [B, H, W, C]`` in ``dtype``; float32 results (float64 for
  float64). Whole batches on accelerators, cache-sized chunks of frames on CPUs.
  ``params`` is packed (:class:`PackedParams`) when ``layout`` is given."""
  if layout is not None:
    params = _unpack(params, layout)
  x = images.astype(dtype)
  p = {k: jnp.asarray(v).astype(dtype) for k, v in params.items()}
  out = lax.platform_dependent(
      p, x, cpu=lambda p, x: _run_in_chunks(graph, p, x, keep, _cpu_chunk(graph)),
      default=lambda p, x: _run(graph, p, x, keep))
  out_dtype = jnp.float64 if dtype == jnp.float64 else jnp.float32
  return {t: v.astype(out_dtype) for t, v in out.items()}


def _apply_batched(params, images, *, graph: _Graph, dtype: Any, keep: frozenset[int],
                   layout: _Layout | None = None) -> dict[int, jax.Array]:
  """:func:`_apply` on ``images [..., H, W, C]``: leading dimensions flattened outside
  the compiled function, so ``[2, 3, ...]`` and ``[6, ...]`` share one compile."""
  lead = images.shape[:-3]
  if len(lead) != 1:
    images = jnp.reshape(images, (math.prod(lead),) + tuple(images.shape[-3:]))
  out = _apply(params, images, graph=graph, dtype=dtype, keep=keep, layout=layout)
  if len(lead) == 1:
    return out
  return {t: jnp.reshape(v, lead + v.shape[1:]) for t, v in out.items()}


# --------------------------------------------------------------------------- #
# The network object.
# --------------------------------------------------------------------------- #


class PackedParams(NamedTuple):
  """A network's parameters as a few arrays (:meth:`Network.pack`).

  Every call of a jitted function handles each array argument on the host; a
  network has dozens of parameter tensors, which cost about as much per call
  as a small network's arithmetic. Packed, they are one array plus the
  matrix-product weights (read in place).

  Attributes:
    flat: float ``[P]``: every parameter but the matrix-product weights,
      raveled and concatenated in the order of :attr:`Network.params`.
    kernels: ``{key: array}``, the ``CONV_2D`` kernels and ``FULLY_CONNECTED``
      weights, as in :attr:`Network.params`.
  """

  flat: jax.Array
  kernels: dict[str, jax.Array]


# (key, offset into PackedParams.flat, shape) of each packed parameter.
_Layout = tuple[tuple[str, int, tuple[int, ...]], ...]


class NetworkOutput(NamedTuple):
  """The raw SSD tensors, as ``TensorsToDetectionsCalculator`` takes them."""

  raw_boxes: jax.Array    # float32 [..., N, num_coords]
  raw_scores: jax.Array   # float32 [..., N, num_classes]


jax.export.register_namedtuple_serialization(
    NetworkOutput, serialized_name="jaxanchors.networks.NetworkOutput")

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16,
           "float64": jnp.float64}


@dataclasses.dataclass(frozen=True, eq=False)
class Network:
  """A ``.tflite`` network (an SSD detector or another model) as a pure JAX function.

  Attributes:
    path: the ``.tflite`` file it was read from.
    params: the weights, ``{tensor name: float32 array}``; a tensor used by
      several operators appears once (so it stays tied when trained).
    sources: for each parameter, where it is stored in the file
      (:class:`ParamSource`).
    sha256: digest of the file's bytes when it was read (:meth:`to_tflite`
      writes into a copy of exactly those bytes).
    input_shape: ``(height, width, channels)`` of one input image.
    is_detector: whether the outputs are an SSD detector's raw boxes and
      scores (two ``[1, N, *]`` tensors of the same ``N``).
    output_names: the names of the outputs in the file, in its order.
    output_shapes: the shape of each output for one frame (the stored shape
      after its leading batch dimension of 1).
    num_anchors: ``N``, rows of both outputs (detectors only).
    num_coords: last dimension of ``raw_boxes`` (detectors only).
    num_classes: last dimension of ``raw_scores`` (detectors only).
  """

  path: pathlib.Path
  params: dict[str, np.ndarray]
  sources: dict[str, ParamSource]
  sha256: str
  graph: _Graph = dataclasses.field(repr=False)

  @property
  def input_shape(self) -> tuple[int, int, int]:
    return self.graph.input_shape

  @property
  def input_size(self) -> tuple[int, int]:
    """Input ``(height, width)`` in pixels."""
    return self.graph.input_shape[:2]

  @property
  def is_detector(self) -> bool:
    return self.graph.boxes >= 0

  @property
  def output_names(self) -> tuple[str, ...]:
    return self.graph.output_names

  @functools.cached_property
  def output_shapes(self) -> tuple[tuple[int, ...], ...]:
    shapes = jax.eval_shape(lambda p: _apply(p, jnp.zeros((1,) + self.graph.input_shape),
                                             graph=self.graph, dtype=jnp.float32,
                                             keep=frozenset()),
                            self.params)
    return tuple(tuple(shapes[t].shape[1:]) for t in self.graph.outputs)

  @property
  def num_anchors(self) -> int:
    return self._detector_shape(self.graph.boxes)[0]

  @property
  def num_coords(self) -> int:
    return self._detector_shape(self.graph.boxes)[1]

  @property
  def num_classes(self) -> int:
    return self._detector_shape(self.graph.scores)[1]

  def _detector_shape(self, t: int) -> tuple[int, ...]:
    self.check_detector()
    return self.output_shapes[self.graph.outputs.index(t)]

  def check_detector(self) -> None:
    """Raises ``ValueError`` unless this network is an SSD detector (:attr:`is_detector`)."""
    if not self.is_detector:
      raise ValueError(f"{self.path.name} is not an SSD detector: its outputs are "
                       + ", ".join(f"{n} {list(s)}" for n, s in zip(self.output_names,
                                                                   self.output_shapes))
                       + " (a detector has two [N, *] outputs with the same N)")

  def apply(self, params: Mapping[str, ArrayLike], images: ArrayLike, *,
            dtype: str | Any = "float32") -> NetworkOutput | tuple[jax.Array, ...]:
    """Runs the network with ``params`` on ``images``; pure and jitted.

    Args:
      params: a pytree with the structure and shapes of :attr:`params`, or
        the same values packed (:meth:`pack`, :attr:`packed_params`).
      images: float ``[..., height, width, channels]``, already letterboxed and
        scaled to the model's value range (``letterbox`` does both).
      dtype: compute dtype: ``"float32"`` (the ``.tflite``'s own),
        ``"bfloat16"``/``"float16"`` (weights and activations rounded to it),
        or ``"float64"`` (with ``jax_enable_x64``). Outputs are float32
        (float64 for ``"float64"``).

    Returns:
      For a detector (:attr:`is_detector`), :class:`NetworkOutput`
      ``(raw_boxes [..., N, num_coords], raw_scores [..., N, num_classes])``,
      float32, in the order and layout of
      :class:`jaxanchors.models.TFLiteModel`'s outputs. For another network,
      the tuple of its outputs in the file's order (:attr:`output_names`),
      each ``[..., *shape]`` with ``shape`` from :attr:`output_shapes`.

    Raises:
      ValueError: ``images`` or ``params`` of the wrong shape, or an unknown
        ``dtype``.
    """
    compute = self._dtype(dtype)
    images = self._check(params, images)
    layout = self._layout if isinstance(params, PackedParams) else None
    out = _apply_batched(params, images, graph=self.graph, dtype=compute, keep=frozenset(),
                         layout=layout)
    if self.is_detector:
      return NetworkOutput(out[self.graph.boxes], out[self.graph.scores])
    return tuple(out[t] for t in self.graph.outputs)

  def __call__(self, images: ArrayLike, *,
               dtype: str | Any = "float32") -> NetworkOutput | tuple[jax.Array, ...]:
    """:meth:`apply` with the stored :attr:`params` (already packed, on the default device)."""
    return self.apply(self.packed_params, images, dtype=dtype)

  @functools.cached_property
  def _layout(self) -> _Layout:
    kernels = {op.inputs[1] for op in self.graph.ops
               if op.kind in ("CONV_2D", "FULLY_CONNECTED")}
    layout, offset = [], 0
    for key, value in self.params.items():
      if key not in kernels:
        layout.append((key, offset, tuple(value.shape)))
        offset += value.size
    return tuple(layout)

  def pack(self, params: Mapping[str, ArrayLike]) -> PackedParams:
    """``params`` (structured as :attr:`params`) as :class:`PackedParams`; jittable.

    :meth:`apply` takes either form and computes the same values; packed, a
    call passes a few arrays instead of dozens, which matters for one frame
    at a time. Gradients flow through both (:meth:`unpack` is the inverse).
    """
    self._check_params(params)
    packed = {key for key, _, _ in self._layout}
    flat = [jnp.ravel(jnp.asarray(params[key])) for key, _, _ in self._layout]
    return PackedParams(jnp.concatenate(flat) if flat else jnp.zeros((0,), jnp.float32),
                        {k: jnp.asarray(v) for k, v in params.items() if k not in packed})

  def unpack(self, packed: PackedParams) -> dict[str, jax.Array]:
    """The parameter dict of :class:`PackedParams` made by :meth:`pack`; jittable."""
    self._check_params(packed)
    return _unpack(packed, self._layout)

  @functools.cached_property
  def packed_params(self) -> PackedParams:
    """The stored :attr:`params`, packed (:meth:`pack`), as arrays on the default device."""
    packed = {key for key, _, _ in self._layout}
    flat = [self.params[key].ravel() for key, _, _ in self._layout]
    # Concrete arrays even when first asked for inside a trace (they are cached).
    with jax.ensure_compile_time_eval():
      return PackedParams(
          jnp.asarray(np.concatenate(flat) if flat else np.zeros((0,), np.float32)),
          {k: jnp.asarray(v) for k, v in self.params.items() if k not in packed})

  def intermediates(self, params: Mapping[str, ArrayLike], images: ArrayLike,
                    tensors: Sequence[int]) -> dict[int, jax.Array]:
    """The values of the given tensors (by their index in the file); for tests and debugging."""
    images = self._check(params, images)
    layout = self._layout if isinstance(params, PackedParams) else None
    return _apply_batched(params, images, graph=self.graph, dtype=jnp.float32,
                          keep=frozenset(int(t) for t in tensors), layout=layout)

  def trainable_mask(self) -> dict[str, np.ndarray]:
    """``{key: bool array}``: True where a weight is stored in the file.

    Dense parameters are all True; a sparse (pruned) one is True at its stored
    positions only. :meth:`to_tflite` can write back only those positions, so
    training must keep the others at zero, e.g. by multiplying the updates::

        mask = network.trainable_mask()
        keep_pruned = optax.stateless(
            lambda updates, params: jax.tree.map(lambda u, m: u * m, updates, mask))
        optimizer = optax.chain(optax.adam(1e-3), keep_pruned)
    """
    out = {}
    for key, source in self.sources.items():
      mask = np.ones(source.shape, bool)
      if source.positions is not None:
        mask[:] = False
        mask[tuple(source.positions.T)] = True
      out[key] = mask
    return out

  def to_tflite(self, params: Mapping[str, ArrayLike]) -> bytes:
    """A copy of the source ``.tflite`` file with ``params`` written into its weights.

    Float16 weights are rounded to nearest even, float32 ones written as they
    are, sparse ones at their stored positions; nothing else in the file
    changes, so the stored params give back the file byte for byte, and any
    runtime that ran the original runs the copy.

    Raises:
      ValueError: missing or extra keys, a shape that differs, a non-zero value
        at a pruned (not stored) position of a sparse weight, a value that is
        not finite or overflows float16, or a source file that changed since it
        was read.
    """
    if not isinstance(params, Mapping) or set(params) != set(self.sources):
      got = set(params) if isinstance(params, Mapping) else set()
      raise ValueError(f"params must have the keys of network.params; missing "
                       f"{sorted(set(self.sources) - got)[:5]}, unexpected "
                       f"{sorted(got - set(self.sources))[:5]}")
    data = bytearray(self.path.read_bytes())
    if hashlib.sha256(data).hexdigest() != self.sha256:
      raise ValueError(f"{self.path} changed since it was read; load it again")
    for key, source in self.sources.items():
      value = np.asarray(params[key], np.float32)
      if value.shape != source.shape:
        raise ValueError(f"params[{key!r}] has shape {list(value.shape)}, expected "
                         f"{list(source.shape)}")
      if not np.isfinite(value).all():
        raise ValueError(f"params[{key!r}] has non-finite values")
      if source.positions is not None:
        at = tuple(source.positions.T)
        pruned = value.copy()
        pruned[at] = 0
        if np.any(pruned != 0):
          raise ValueError(f"params[{key!r}] is non-zero at {int(np.count_nonzero(pruned))} "
                           "pruned positions, which the file cannot store (keep them at "
                           "zero: see trainable_mask)")
        value = value[at]
      if source.dtype == "float16":
        with np.errstate(over="ignore"):
          stored = value.astype(np.float16)  # rounds to nearest even
        if not np.isfinite(stored).all():
          raise ValueError(f"params[{key!r}] overflows float16 (|value| > 65504)")
      else:
        stored = value
      raw = stored.astype(stored.dtype.newbyteorder("<")).tobytes()
      data[source.offset:source.offset + len(raw)] = raw
    return bytes(data)

  def _dtype(self, dtype: Any) -> Any:
    key = dtype if isinstance(dtype, str) else getattr(jnp.dtype(dtype), "name", None)
    if key not in _DTYPES:
      raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
    if key == "float64" and not jax.config.jax_enable_x64:
      raise ValueError("dtype='float64' needs 64-bit JAX (jax.config.update('jax_enable_x64', "
                       "True))")
    return _DTYPES[key]

  def _check_params(self, params: Mapping[str, ArrayLike] | PackedParams) -> None:
    if isinstance(params, PackedParams):
      size = sum(math.prod(shape) for _, _, shape in self._layout)
      if tuple(np.shape(params.flat)) != (size,):
        raise ValueError(f"packed params.flat has shape {list(np.shape(params.flat))}, "
                         f"expected [{size}]: pack them with this network's pack()")
      self._check_mapping(params.kernels, set(self.params) - {k for k, _, _ in self._layout})
    else:
      self._check_mapping(params, set(self.params))

  def _check_mapping(self, params: Any, keys: set[str]) -> None:
    if not isinstance(params, Mapping) or set(params) != keys:
      missing = sorted(keys - set(params)) if isinstance(params, Mapping) else []
      extra = sorted(set(params) - keys) if isinstance(params, Mapping) else []
      raise ValueError(f"params must be a mapping with the keys of network.params; missing "
                       f"{missing[:5]}, unexpected {extra[:5]}")
    for k, value in params.items():
      if tuple(np.shape(value)) != self.params[k].shape:
        raise ValueError(f"params[{k!r}] has shape {list(np.shape(value))}, expected "
                         f"{list(self.params[k].shape)}")

  def _check(self, params: Mapping[str, ArrayLike] | PackedParams,
             images: ArrayLike) -> jax.Array:
    self._check_params(params)
    if not hasattr(images, "shape") or not hasattr(images, "dtype"):
      images = np.asarray(images)
    if not jnp.issubdtype(images.dtype, jnp.floating):
      raise TypeError(f"images must be a float array in the model's value range, got dtype "
                      f"{images.dtype} (letterbox converts uint8 images)")
    if images.ndim < 3 or tuple(images.shape[-3:]) != self.graph.input_shape:
      raise ValueError(f"images must have shape [..., {', '.join(map(str, self.input_shape))}], "
                       f"got {list(images.shape)}")
    return images

  def __repr__(self) -> str:
    return (f"Network({str(self.path)!r}, input={self.input_shape}, "
            f"ops={len(self.graph.ops)}, params={len(self.params)})")


@functools.lru_cache(maxsize=16)
def _load_cached(path: str, size: int, mtime_ns: int) -> tuple[_Graph, dict, dict, str]:
  del size, mtime_ns   # part of the cache key only
  data = pathlib.Path(path).read_bytes()
  return _parse(data, path) + (hashlib.sha256(data).hexdigest(),)


def load(path: str | os.PathLike[str]) -> Network:
  """Reads the ``.tflite`` file at ``path`` into a :class:`Network`.

  Raises:
    ImportError: the ``tflite`` schema package is missing.
    FileNotFoundError: no such file.
    ValueError: not a TFLite model, or a model with an unsupported operator,
      quantisation or dynamic shape (the message names the operator and
      tensor).
  """
  p = pathlib.Path(path)
  stat = p.stat()
  graph, params, sources, digest = _load_cached(str(p), stat.st_size, stat.st_mtime_ns)
  return Network(p, {k: v.copy() for k, v in params.items()}, dict(sources), digest, graph)
