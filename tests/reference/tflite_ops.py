"""Loop reference of the TFLite float kernels used by MediaPipe's SSD detectors
and landmark models.

Written from the semantics of TFLite's reference kernels
(``tensorflow/lite/kernels/internal/reference/``: ``conv.h``,
``depthwiseconv_float.h``, ``pooling.h``, ``resize_bilinear.h``,
``DepthToSpace`` in ``reference_ops.h``, ``prelu.h``, ``pad.h``,
``fully_connected.h``, ``logistic.h``, ``reduce.h``; SAME/VALID offsets from
``kernels/padding.h``; output shapes of FULLY_CONNECTED and MEAN from
``kernels/fully_connected.cc`` and ``kernels/reduce.cc``; sparse tensors from
``kernels/internal/utils/sparsity_format_converter.cc``). Only NumPy is used.

Conventions:

* Tensors are NHWC. Conv filters are TFLite's ``[Co, kh, kw, Ci]``, depthwise
  filters ``[1, kh, kw, Ci * M]`` (output channel ``ic * M + m``),
  fully-connected weights ``[units, input_depth]`` (DEFAULT weights format).
* Inputs are taken as float32; outputs are float32.
* Sums of products (conv, depthwise, fully connected, average pool, mean,
  bilinear interpolation) are accumulated in float64 and rounded to float32
  once at the end, so the result is the correctly rounded exact value (up to
  float64 error), an oracle that any float32 kernel should match to within its
  own summation error. ``logistic`` is likewise evaluated in float64 and
  rounded once. Max, pad, reshape, concatenation and depth-to-space are exact;
  ``add`` and ``prelu`` round one float32 operation as TFLite does.
* Windowed ops loop over output positions and filter taps, fully connected
  over output units and mean over the cells of the reduced axes; only the
  channel axis (and the batch, or the kept axes of mean) is vectorised, so each
  line reads like the C++ loop it mirrors. Element-wise ops (prelu, pad, add,
  logistic) are plain NumPy expressions. Slow on purpose: keep shapes small.
"""

import numpy as np

F32 = np.float32
F64 = np.float64

ACTIVATIONS = (None, "NONE", "RELU", "RELU6", "RELU_N1_TO_1")


def _activation(y, activation):
  """Fused activation (``ActivationFunctionWithMinMax``), applied after rounding."""
  if activation is None or activation == "NONE":
    return y
  if activation == "RELU":
    return np.maximum(y, F32(0))
  if activation == "RELU6":
    return np.minimum(np.maximum(y, F32(0)), F32(6))
  if activation == "RELU_N1_TO_1":
    return np.minimum(np.maximum(y, F32(-1)), F32(1))
  raise ValueError(f"unsupported fused activation {activation!r}")


def _pair(v):
  return (int(v), int(v)) if np.isscalar(v) else (int(v[0]), int(v[1]))


def padding_and_output_size(size, filter_size, stride, dilation, padding):
  """``(pad_before, out_size)`` of one spatial axis (``ComputePaddingHeightWidth``).

  SAME: ``out = ceil(size / stride)``, total padding
  ``max((out - 1) * stride + eff - size, 0)`` with ``eff = (filter - 1) * dilation + 1``,
  of which ``total // 2`` goes before (the odd cell goes after).
  VALID: ``out = ceil((size - eff + 1) / stride)``, no padding.
  """
  eff = (filter_size - 1) * dilation + 1
  if padding == "SAME":
    out = (size + stride - 1) // stride
  elif padding == "VALID":
    out = (size - eff + stride) // stride
  else:
    raise ValueError(f"padding must be 'SAME' or 'VALID', got {padding!r}")
  total = max((out - 1) * stride + eff - size, 0)
  return total // 2, out


def _f32(x):
  return np.asarray(x, dtype=F32)


def conv2d(x, w, b=None, *, stride=(1, 1), dilation=(1, 1), padding="SAME",
           activation=None):
  """CONV_2D: ``x[B, H, W, Ci]``, ``w[Co, kh, kw, Ci]``, ``b[Co]`` or None."""
  x, w = _f32(x), _f32(w)
  batch, in_h, in_w, in_c = x.shape
  out_c, kh, kw, w_c = w.shape
  if w_c != in_c:
    raise ValueError(f"filter has {w_c} input channels, input has {in_c}")
  (sh, sw), (dh, dw) = _pair(stride), _pair(dilation)
  pad_h, out_h = padding_and_output_size(in_h, kh, sh, dh, padding)
  pad_w, out_w = padding_and_output_size(in_w, kw, sw, dw, padding)
  x64, w64 = x.astype(F64), w.astype(F64)
  bias = np.zeros(out_c, F64) if b is None else _f32(b).astype(F64)
  out = np.empty((batch, out_h, out_w, out_c), F64)
  for oy in range(out_h):
    for ox in range(out_w):
      acc = np.zeros((batch, out_c), F64)
      for ky in range(kh):
        iy = oy * sh - pad_h + ky * dh
        if not 0 <= iy < in_h:
          continue
        for kx in range(kw):
          ix = ox * sw - pad_w + kx * dw
          if not 0 <= ix < in_w:
            continue
          acc += x64[:, iy, ix, :] @ w64[:, ky, kx, :].T
      out[:, oy, ox, :] = acc + bias
  return _activation(out.astype(F32), activation)


def depthwise_conv2d(x, w, b=None, *, stride=(1, 1), dilation=(1, 1), padding="SAME",
                     depth_multiplier=1, activation=None):
  """DEPTHWISE_CONV_2D: ``x[B, H, W, Ci]``, ``w[1, kh, kw, Ci * M]``, ``b[Ci * M]``.

  Output channel ``oc = ic * M + m`` reads input channel ``ic`` with filter
  column ``oc``.
  """
  x, w = _f32(x), _f32(w)
  batch, in_h, in_w, in_c = x.shape
  one, kh, kw, out_c = w.shape
  m = int(depth_multiplier)
  if one != 1 or out_c != in_c * m:
    raise ValueError(f"filter shape {w.shape} does not fit {in_c} channels x {m}")
  (sh, sw), (dh, dw) = _pair(stride), _pair(dilation)
  pad_h, out_h = padding_and_output_size(in_h, kh, sh, dh, padding)
  pad_w, out_w = padding_and_output_size(in_w, kw, sw, dw, padding)
  # Input channel of every output channel: ic = oc // M.
  src = np.arange(out_c) // m
  x64, w64 = x[..., src].astype(F64), w[0].astype(F64)
  bias = np.zeros(out_c, F64) if b is None else _f32(b).astype(F64)
  out = np.empty((batch, out_h, out_w, out_c), F64)
  for oy in range(out_h):
    for ox in range(out_w):
      acc = np.zeros((batch, out_c), F64)
      for ky in range(kh):
        iy = oy * sh - pad_h + ky * dh
        if not 0 <= iy < in_h:
          continue
        for kx in range(kw):
          ix = ox * sw - pad_w + kx * dw
          if not 0 <= ix < in_w:
            continue
          acc += x64[:, iy, ix, :] * w64[ky, kx, :]
      out[:, oy, ox, :] = acc + bias
  return _activation(out.astype(F32), activation)


def _pool(x, filter, stride, padding, reduce):
  x = _f32(x)
  batch, in_h, in_w, chans = x.shape
  (fh, fw), (sh, sw) = _pair(filter), _pair(stride)
  pad_h, out_h = padding_and_output_size(in_h, fh, sh, 1, padding)
  pad_w, out_w = padding_and_output_size(in_w, fw, sw, 1, padding)
  out = np.empty((batch, out_h, out_w, chans), F32)
  for oy in range(out_h):
    for ox in range(out_w):
      # Only the filter cells inside the input take part (pooling.h clamps
      # filter_{y,x}_{start,end} to the input).
      y0 = oy * sh - pad_h
      x0 = ox * sw - pad_w
      ys = range(max(y0, 0), min(y0 + fh, in_h))
      xs = range(max(x0, 0), min(x0 + fw, in_w))
      cells = [x[:, iy, ix, :] for iy in ys for ix in xs]
      out[:, oy, ox, :] = reduce(cells)
  return out


def max_pool2d(x, *, filter=(2, 2), stride=(2, 2), padding="VALID", activation=None):
  """MAX_POOL_2D: maximum over the in-bounds cells of each window."""
  def reduce(cells):
    acc = cells[0]
    for c in cells[1:]:
      acc = np.maximum(acc, c)
    return acc
  return _activation(_pool(x, filter, stride, padding, reduce), activation)


def avg_pool2d(x, *, filter=(2, 2), stride=(2, 2), padding="VALID", activation=None):
  """AVERAGE_POOL_2D: mean over the in-bounds cells only (padding is not counted)."""
  def reduce(cells):
    return (np.sum([c.astype(F64) for c in cells], axis=0) / len(cells)).astype(F32)
  return _activation(_pool(x, filter, stride, padding, reduce), activation)


def _source_coordinate(out_index, scale, half_pixel_centers, in_size):
  """``ComputeInterpolationValues``: source coordinate (float32, as TFLite) and
  its two neighbours ``floor`` (clamped at 0) and ``ceil`` (clamped at size - 1)."""
  if half_pixel_centers:
    v = (F32(out_index) + F32(0.5)) * scale - F32(0.5)
  else:
    v = F32(out_index) * scale
  lo = max(int(np.floor(v)), 0)
  hi = min(int(np.ceil(v)), in_size - 1)
  return F32(v), lo, hi


def resize_bilinear(x, size, *, align_corners=False, half_pixel_centers=True):
  """RESIZE_BILINEAR to ``size = (out_h, out_w)``.

  Scale is ``in / out`` (``(in - 1) / (out - 1)`` with align_corners and
  out > 1) and source coordinates are computed in float32 as TFLite does; the
  interpolation weights ``v - lo`` are then used in float64. When the source
  coordinate is below 0 (half-pixel centres at the border) ``lo = hi = 0`` and
  the weights still sum to one.
  """
  if half_pixel_centers and align_corners:
    raise ValueError("half_pixel_centers requires align_corners=False")
  x = _f32(x)
  batch, in_h, in_w, chans = x.shape
  out_h, out_w = (int(s) for s in size)
  scale_h = F32(in_h) / F32(out_h)
  scale_w = F32(in_w) / F32(out_w)
  if align_corners and out_h > 1:
    scale_h = F32(in_h - 1) / F32(out_h - 1)
  if align_corners and out_w > 1:
    scale_w = F32(in_w - 1) / F32(out_w - 1)
  x64 = x.astype(F64)
  out = np.empty((batch, out_h, out_w, chans), F32)
  for oy in range(out_h):
    vy, y0, y1 = _source_coordinate(oy, scale_h, half_pixel_centers, in_h)
    dy = F64(vy) - y0
    for ox in range(out_w):
      vx, x0, x1 = _source_coordinate(ox, scale_w, half_pixel_centers, in_w)
      dx = F64(vx) - x0
      v = (x64[:, y0, x0, :] * (1 - dy) * (1 - dx) + x64[:, y1, x0, :] * dy * (1 - dx)
           + x64[:, y0, x1, :] * (1 - dy) * dx + x64[:, y1, x1, :] * dy * dx)
      out[:, oy, ox, :] = v.astype(F32)
  return out


def depth_to_space(x, block_size):
  """DEPTH_TO_SPACE (TFLite/TF "DCR" order):
  ``out[b, h, w, d] = in[b, h // bs, w // bs, ((h % bs) * bs + w % bs) * out_d + d]``."""
  x = np.asarray(x)
  bs = int(block_size)
  batch, in_h, in_w, in_d = x.shape
  if in_d % (bs * bs):
    raise ValueError(f"depth {in_d} is not a multiple of block_size**2 = {bs * bs}")
  out_d = in_d // (bs * bs)
  out = np.empty((batch, in_h * bs, in_w * bs, out_d), x.dtype)
  for h in range(in_h * bs):
    for w in range(in_w * bs):
      d0 = ((h % bs) * bs + w % bs) * out_d
      out[:, h, w, :] = x[:, h // bs, w // bs, d0:d0 + out_d]
  return out


def prelu(x, alpha):
  """PRELU: ``x`` where ``x >= 0``, else ``x * alpha`` (alpha broadcast against x)."""
  x, alpha = _f32(x), _f32(alpha)
  return np.where(x >= 0, x, x * alpha).astype(F32)


def pad(x, paddings, value=0):
  """PAD / PADV2: ``paddings[rank, 2]`` of (before, after) counts, filled with ``value``."""
  x = np.asarray(x)
  paddings = np.asarray(paddings, dtype=np.int64).reshape(x.ndim, 2)
  if (paddings < 0).any():
    raise ValueError("TFLite PAD takes non-negative paddings")
  shape = tuple(int(n + a + b) for n, (a, b) in zip(x.shape, paddings))
  out = np.full(shape, value, dtype=x.dtype)
  out[tuple(slice(int(a), int(a) + n) for n, (a, _) in zip(x.shape, paddings))] = x
  return out


def add(a, b, activation=None):
  """ADD with NumPy broadcasting, one float32 rounding, then the fused activation."""
  return _activation(np.add(_f32(a), _f32(b), dtype=F32), activation)


def fully_connected(x, w, b=None, *, keep_num_dims=False, activation=None):
  """FULLY_CONNECTED: ``w[units, input_depth]`` (DEFAULT format), ``b[units]`` or None.

  The input is read row-major as ``[batch, input_depth]`` with
  ``batch = x.size // input_depth`` (its element count must be a multiple of
  ``input_depth = w.shape[1]``); ``out[n, u] = sum_i x[n, i] * w[u, i] + b[u]``.
  The output is ``[batch, units]``, or with ``keep_num_dims`` the input's shape
  with its last dimension (which must then be ``input_depth``) replaced by
  ``units``.
  """
  x, w = _f32(x), _f32(w)
  if w.ndim != 2:
    raise ValueError(f"weights must be [units, input_depth], got shape {w.shape}")
  units, depth = w.shape
  if depth == 0 or x.size % depth:
    raise ValueError(f"input of {x.size} elements does not split into rows of {depth}")
  if keep_num_dims and (x.ndim == 0 or x.shape[-1] != depth):
    raise ValueError(f"keep_num_dims needs an input whose last dim is {depth}, got {x.shape}")
  batch = x.size // depth
  x64, w64 = x.reshape(batch, depth).astype(F64), w.astype(F64)
  bias = np.zeros(units, F64) if b is None else _f32(b).astype(F64)
  if bias.shape != (units,):
    raise ValueError(f"bias shape {bias.shape} does not fit {units} units")
  out = np.empty((batch, units), F64)
  for u in range(units):
    out[:, u] = x64 @ w64[u, :] + bias[u]
  shape = x.shape[:-1] + (units,) if keep_num_dims else (batch, units)
  return _activation(out.astype(F32).reshape(shape), activation)


def logistic(x):
  """LOGISTIC: ``1 / (1 + exp(-x))`` element-wise, evaluated in float64 and rounded once."""
  x64 = _f32(x).astype(F64)
  with np.errstate(over="ignore"):  # exp(-x) = inf for x < -709 gives 1 / inf = 0
    return (1 / (1 + np.exp(-x64))).astype(F32)


def mean(x, axis, keep_dims):
  """MEAN: average over the axes in ``axis`` (ints, negative counts from the end,
  repeats counted once), the reduced axes kept as size 1 when ``keep_dims``.

  An empty ``axis`` reduces nothing (the input, in float32, is returned); a
  reduced axis of size 0 gives NaN, as TFLite's sum / count does.
  """
  x = _f32(x)
  rank = x.ndim
  axes = []
  for a in np.asarray(axis, dtype=np.int64).reshape(-1):
    a = int(a)
    if not -rank <= a < rank:
      raise ValueError(f"axis {a} is out of range for rank {rank}")
    a = a + rank if a < 0 else a
    if a not in axes:
      axes.append(a)
  axes.sort()
  kept_shape = tuple(1 if d in axes else n for d, n in enumerate(x.shape))
  x64 = x.astype(F64)
  acc = np.zeros(kept_shape, F64)
  count = 0
  # One cell of the reduced axes at a time; the kept axes are a vectorised slice.
  for cell in np.ndindex(*(x.shape[a] for a in axes)):
    sl = [slice(None)] * rank
    for a, i in zip(axes, cell):
      sl[a] = slice(i, i + 1)
    acc += x64[tuple(sl)]
    count += 1
  with np.errstate(invalid="ignore"):  # a zero-size reduced axis gives 0 / 0 = NaN
    out = (acc / count).astype(F32)
  if keep_dims:
    return out
  return out.reshape(tuple(n for d, n in enumerate(x.shape) if d not in axes))


def concatenation(xs, axis, activation=None):
  """CONCATENATION along ``axis`` (negative counts from the end), then the activation."""
  xs = [_f32(x) for x in xs]
  rank = xs[0].ndim
  axis = axis + rank if axis < 0 else axis
  for x in xs:
    if x.ndim != rank or any(x.shape[d] != xs[0].shape[d] for d in range(rank) if d != axis):
      raise ValueError("concatenation inputs differ outside the axis")
  shape = list(xs[0].shape)
  shape[axis] = sum(x.shape[axis] for x in xs)
  out = np.empty(shape, F32)
  start = 0
  for x in xs:
    sl = [slice(None)] * rank
    sl[axis] = slice(start, start + x.shape[axis])
    out[tuple(sl)] = x
    start += x.shape[axis]
  return _activation(out, activation)


def reshape(x, shape):
  """RESHAPE: row-major, at most one -1."""
  return np.reshape(np.asarray(x), tuple(int(s) for s in shape))


def densify(values, shape, traversal_order, block_map, dim_metadata):
  """DENSIFY: decode a TFLite sparse tensor into a dense row-major array.

  ``shape`` is the dense shape ``(d0, ..., dn-1)``. ``traversal_order`` has
  n + k entries: a permutation of ``0..n-1`` then a permutation of
  ``n..n+k-1`` (the k block dimensions); ``block_map[j]`` is the original
  dimension that block dimension ``n + j`` subdivides (empty or None when not
  block sparse). ``dim_metadata`` has one dict per traversal level, in
  traversal order: ``{"format": "DENSE", "dense_size": s}`` or
  ``{"format": "SPARSE_CSR", "array_segments": [...], "array_indices": [...]}``.

  Values are consumed in traversal order: a DENSE level at position ``p`` of
  its parent visits children ``p * s + i`` for ``i < s``; a SPARSE_CSR level
  visits ``array_indices[k]`` for ``k`` in
  ``array_segments[p] .. array_segments[p + 1] - 1`` and the child position is
  ``k``. The size of block dimension j is the dense_size of the level that
  traverses dimension ``n + j``; original index = block index * block size +
  index within the block. Cells never visited stay zero.
  """
  shape = tuple(int(s) for s in shape)
  n = len(shape)
  order = [int(t) for t in traversal_order]
  block_map = [int(b) for b in (block_map if block_map is not None else [])]
  k = len(block_map)
  if len(order) != n + k or sorted(order[:n]) != list(range(n)) \
      or sorted(order[n:]) != list(range(n, n + k)):
    raise ValueError(f"traversal_order {order} does not fit rank {n} with {k} block dims")
  if len(dim_metadata) != n + k:
    raise ValueError("dim_metadata needs one entry per traversal level")
  level_of = {dim: level for level, dim in enumerate(order)}
  block_size = []
  for j in range(k):
    md = dim_metadata[level_of[n + j]]
    if md["format"] != "DENSE":
      raise ValueError("block dimensions must be DENSE")
    block_size.append(int(md["dense_size"]))
  values = np.asarray(values).reshape(-1)
  out = np.zeros(shape, values.dtype)
  consumed = 0
  coords = [0] * (n + k)

  def visit(level, position):
    nonlocal consumed
    if level == n + k:
      idx = [0] * n
      for lv in range(n):
        idx[order[lv]] = coords[lv]
      for lv in range(n, n + k):
        j = order[lv] - n
        d = block_map[j]
        idx[d] = idx[d] * block_size[j] + coords[lv]
      if consumed == values.size:
        raise ValueError(f"sparse metadata addresses more than {values.size} values")
      out[tuple(idx)] = values[consumed]
      consumed += 1
      return
    md = dim_metadata[level]
    if md["format"] == "DENSE":
      size = int(md["dense_size"])
      for i in range(size):
        coords[level] = i
        visit(level + 1, position * size + i)
    elif md["format"] == "SPARSE_CSR":
      segments, indices = md["array_segments"], md["array_indices"]
      for pos in range(int(segments[position]), int(segments[position + 1])):
        coords[level] = int(indices[pos])
        visit(level + 1, pos)
    else:
      raise ValueError(f"unknown dimension format {md['format']!r}")

  visit(0, 0)
  if consumed != values.size:
    raise ValueError(f"sparse metadata addresses {consumed} values, got {values.size}")
  return out
