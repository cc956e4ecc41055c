"""BlazeFace decoding: ``jaxanchors.decode`` vs NumPy vs a PyTorch port, next to memory ceilings.

Inputs are BlazeFace front (``face_short_range``) raw outputs, ``raw_boxes
[B, 896, 16]`` and ``raw_scores [B, 896, 1]`` float32, for B = 1, 64, 1024,
decoded with that preset's ``DecoderOptions`` (XYWH rows, 6 keypoints, scale 128,
sigmoid on scores clipped to +-100, threshold 0.5).

Decoders (all checked against ours in the run):

* ``ours``: ``jaxanchors.decode(...)`` (the public call, argument checks
  included) with ``jax.block_until_ready``; returns ``Detections``.
* ``numpy``: a vectorized NumPy decode written here, same outputs.
* ``torch``: the per-column decode of the well-known BlazeFace PyTorch port
  (``blazeface.py`` ``_decode_boxes``: one tensor op per column, keypoints in a
  Python loop, sigmoid on clamped scores, threshold mask), with torch's default
  thread count and with 1 thread (its OpenMP pool degrades badly when other
  processes compete for the cores; the summary compares with the faster of the
  two). Skipped with "torch not installed" when torch is missing.

Ceilings, each measured in the same run on the same inputs:

* ``xla x*2+1``: ``jax.jit(lambda x: x * 2 + 1)`` on ``raw_boxes`` into a
  fresh buffer; bytes = read + write of ``raw_boxes``.
* ``xla same-bytes``: one jitted function of both inputs with exactly the
  outputs of ``decode`` (shapes and dtypes of every ``Detections`` field),
  each a trivial elementwise function (``x * 2 + 1``, a cast, a compare): the
  same bytes read and written as our decode with no arithmetic to speak of.
  This is the ceiling the target is stated against.
* ``np.copyto``: copy of both inputs into existing, already-touched buffers
  (single thread); bytes = read + write of the inputs.

Rows marked ``exp:`` measure what approaching the copy ceiling takes: buffers
that are reused instead of freshly allocated (a fresh XLA output buffer larger
than glibc's mmap threshold is page-faulted, i.e. zeroed by the kernel, on every
call). ``exp: ours, outputs donated`` is our decode under ``jax.jit`` with the
previous call's ``Detections`` donated (``donate_argnames``), so XLA writes
into them; ``exp: x*2+1 donated`` is the ceiling updated in place.
The "faults / call" column counts minor page faults per call (``getrusage``),
which shows where fresh buffers are being zeroed by the kernel.

GB/s counts bytes read plus bytes written. For the three decoders it is our
decode's count (inputs + anchors + all ``Detections`` outputs) divided by the
decoder's time, i.e. the same work for all three; for ceilings, their own bytes.
Times are medians over rounds in which all implementations are interleaved.

Run from the project root (``pip install torch`` for the torch rows)::

  python benchmarks/bench_decode.py
"""

from __future__ import annotations

import argparse
import functools
import platform
import resource
import statistics

import jax
import jax.numpy as jnp
import numpy as np

import jaxanchors
from _timing import per_call
from jaxanchors import presets

try:
  import torch
except ImportError:  # degrade gracefully: the other columns still run
  torch = None

N_ANCHORS = 896


# -- NumPy (vectorized) ----------------------------------------------------------------


def numpy_decode(raw_boxes, raw_scores, anchors, o):
  """Vectorized NumPy decode for BlazeFace-style options (XYWH or YXHW, keypoints after box)."""
  assert o.box_coord_offset == 0 and o.keypoint_coord_offset == 4
  assert not o.flip_vertically and o.max_results < 0 and not o.allow_classes
  assert not o.ignore_classes
  f32 = np.float32
  xy = o.format is jaxanchors.BoxFormat.XYWH
  centre, size = anchors[:, :2], anchors[:, 2:]                       # [N, 2] (x, y), (w, h)
  scale_xy = np.array([o.x_scale, o.y_scale], f32)
  scale_wh = np.array([o.w_scale, o.h_scale], f32)
  r = raw_boxes if xy else raw_boxes[..., [1, 0, 3, 2] + list(range(4, raw_boxes.shape[-1]))]
  c = r[..., 0:2] / scale_xy * size + centre                           # [..., N, 2]
  t = r[..., 2:4] / scale_wh
  half = (np.exp(t) if o.apply_exponential_on_box_size else t) * size / f32(2)
  boxes = np.concatenate([c - half, c + half], axis=-1)                 # xmin ymin xmax ymax
  k = o.num_keypoints
  kp = r[..., 4:4 + 2 * k].reshape(r.shape[:-1] + (k, 2))
  if not xy:
    kp = kp[..., ::-1]
  keypoints = kp / scale_xy * size[:, None] + centre[:, None]
  s = raw_scores
  if o.sigmoid_score:
    if o.score_clipping_thresh is not None:
      s = np.clip(s, -f32(o.score_clipping_thresh), f32(o.score_clipping_thresh))
    s = f32(1) / (f32(1) + np.exp(-s))
  classes = np.argmax(s, axis=-1).astype(np.int32)
  scores = np.take_along_axis(s, classes[..., None], axis=-1)[..., 0]
  wh = boxes[..., 2:] - boxes[..., :2]
  valid = (wh[..., 0] >= 0) & (wh[..., 1] >= 0)
  if o.min_score_thresh is not None:
    valid &= scores >= f32(o.min_score_thresh)
  return boxes, keypoints, scores, classes, valid


# -- PyTorch (BlazeFace port style) ----------------------------------------------------


class TorchBlazeFaceDecoder:
  """``_decode_boxes`` and the scoring part of ``_tensors_to_detections`` of the
  BlazeFace PyTorch port, for one set of options; per-column tensor ops."""

  def __init__(self, anchors: np.ndarray, o):
    self.anchors = torch.from_numpy(np.array(anchors))
    self.x_scale, self.y_scale, self.w_scale, self.h_scale = (o.x_scale, o.y_scale,
                                                              o.w_scale, o.h_scale)
    self.num_keypoints = o.num_keypoints
    self.score_clipping_thresh = o.score_clipping_thresh
    self.min_score_thresh = o.min_score_thresh

  def _decode_boxes(self, raw_boxes, anchors):
    boxes = torch.zeros_like(raw_boxes)

    x_center = raw_boxes[..., 0] / self.x_scale * anchors[:, 2] + anchors[:, 0]
    y_center = raw_boxes[..., 1] / self.y_scale * anchors[:, 3] + anchors[:, 1]

    w = raw_boxes[..., 2] / self.w_scale * anchors[:, 2]
    h = raw_boxes[..., 3] / self.h_scale * anchors[:, 3]

    boxes[..., 0] = y_center - h / 2.  # ymin
    boxes[..., 1] = x_center - w / 2.  # xmin
    boxes[..., 2] = y_center + h / 2.  # ymax
    boxes[..., 3] = x_center + w / 2.  # xmax

    for k in range(self.num_keypoints):
      offset = 4 + k * 2
      keypoint_x = raw_boxes[..., offset] / self.x_scale * anchors[:, 2] + anchors[:, 0]
      keypoint_y = raw_boxes[..., offset + 1] / self.y_scale * anchors[:, 3] + anchors[:, 1]
      boxes[..., offset] = keypoint_x
      boxes[..., offset + 1] = keypoint_y

    return boxes

  def __call__(self, raw_box_tensor, raw_score_tensor, threads=None):
    if threads and torch.get_num_threads() != threads:
      torch.set_num_threads(threads)
    detection_boxes = self._decode_boxes(raw_box_tensor, self.anchors)
    thresh = self.score_clipping_thresh
    raw_score_tensor = raw_score_tensor.clamp(-thresh, thresh)
    detection_scores = raw_score_tensor.sigmoid().squeeze(dim=-1)
    mask = detection_scores >= self.min_score_thresh
    return detection_boxes, detection_scores, mask


# -- ceilings --------------------------------------------------------------------------


@jax.jit
def xla_affine(x):
  return x * 2 + 1


@jax.jit
def xla_same_bytes(raw_boxes, raw_scores, anchors):
  """Trivial elementwise outputs with the shapes and dtypes of ``Detections``."""
  s = raw_scores[..., 0]
  boxes = raw_boxes[..., :4] * 2 + anchors            # anchors read too, as decode does
  keypoints = (raw_boxes[..., 4:] * 2 + 1).reshape(raw_boxes.shape[:-1] + (6, 2))
  return boxes, keypoints, s * 2 + 1, s.astype(jnp.int32), s > 0


@functools.partial(jax.jit, donate_argnums=0)
def xla_affine_donated(x):
  return x * 2 + 1


# -- experiments: what approaching the copy ceiling takes --------------------------------


@functools.partial(jax.jit, static_argnames="options", donate_argnames="out", keep_unused=True)
def decode_into(raw_boxes, raw_scores, anchors, out, *, options):
  """Our decode, its outputs written into the donated buffers of a previous result
  ``out`` (XLA aliases each output to the ``out`` leaf of the same shape): no fresh
  output buffer per call. What a caller's loop can do today with ``donate_argnames``."""
  del out
  return jaxanchors.decode(raw_boxes, raw_scores, anchors, options)


def donating_step(fn, initial):
  """One call of ``fn(state) -> state`` whose argument is donated: each call consumes
  the previous call's result."""
  state = [jax.tree.map(lambda x: jnp.array(x, copy=True), initial)]

  def step():
    state[0] = fn(state[0])
    jax.block_until_ready(state[0])
  return step


def copy_inputs(dst_boxes, dst_scores, raw_boxes, raw_scores):
  np.copyto(dst_boxes, raw_boxes)
  np.copyto(dst_scores, raw_scores)


# -- harness ---------------------------------------------------------------------------


def nbytes(tree) -> int:
  return sum(np.dtype(x.dtype).itemsize * int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def faults_per_call(fn, calls: int = 5) -> float:
  """Minor page faults of this process (all threads) per call of ``fn``."""
  before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  for _ in range(calls):
    fn()
  return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / calls


def fmt_time(s: float) -> str:
  return f"{s * 1e3:.2f} ms" if s >= 1e-3 else f"{s * 1e6:.1f} us"


def fusion_count(fn, *args, **kwargs) -> int:
  """Fusions (separate loops over memory) in the entry computation of compiled ``fn``."""
  hlo = fn.lower(*args, **kwargs).compile().as_text()
  entry = hlo[hlo.index("ENTRY"):]
  return entry.count(" fusion(")


def make_inputs(b: int, seed: int = 0):
  rng = np.random.default_rng(seed)
  raw_boxes = rng.normal(0.0, 8.0, (b, N_ANCHORS, 16)).astype(np.float32)
  raw_boxes[..., 2:4] = np.abs(raw_boxes[..., 2:4]) + 4.0   # sizes mostly positive
  raw_scores = rng.normal(-2.0, 4.0, (b, N_ANCHORS, 1)).astype(np.float32)
  return raw_boxes, raw_scores


def check_agree(ours, np_out, torch_out) -> None:
  ours = [np.asarray(x) for x in ours]
  for name, a, b in zip(("boxes", "keypoints", "scores", "classes", "valid"), ours, np_out):
    if a.dtype == bool or a.dtype.kind == "i":
      assert np.array_equal(a, b), f"numpy {name} disagrees"
    else:
      assert np.allclose(a, b, rtol=1e-5, atol=1e-5), f"numpy {name}: {np.abs(a - b).max()}"
  if torch_out is not None:
    tb, ts, tm = (t.numpy() for t in torch_out)
    assert np.allclose(ours[0], tb[..., [1, 0, 3, 2]], rtol=1e-5, atol=1e-5), "torch boxes"
    assert np.allclose(ours[1].reshape(tb.shape[:-1] + (-1,)), tb[..., 4:], rtol=1e-5,
                       atol=1e-5), "torch keypoints"
    assert np.allclose(ours[2], ts, rtol=1e-5, atol=1e-6), "torch scores"
    # Exactly-at-threshold scores may round differently; count disagreements.
    assert np.mean(ours[4] != tm) < 1e-4, "torch mask"


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch", type=int, nargs="+", default=[1, 64, 1024])
  parser.add_argument("--rounds", type=int, default=7)
  parser.add_argument("--min-seconds", type=float, default=0.1)
  parser.add_argument("--no-experiments", dest="experiments", action="store_false",
                      help="skip the donated-buffer rows")
  args = parser.parse_args()

  preset = presets.get("face_short_range")
  options = preset.decoder
  anchors_np = np.asarray(jaxanchors.anchors_numpy(preset.anchors))
  anchors = jax.device_put(jaxanchors.generate_anchors(preset.anchors))

  tv = torch.__version__ if torch is not None else "not installed"
  print(f"# jax {jax.__version__}, numpy {np.__version__}, torch {tv}, "
        f"python {platform.python_version()}")
  if torch is None:
    print("# torch not installed: the torch row is skipped")
    tdec = None
  else:
    torch.set_grad_enabled(False)
    torch_threads = torch.get_num_threads()
    print(f"# torch threads {torch_threads} (default) and 1")
    tdec = TorchBlazeFaceDecoder(anchors_np, options)

  rows = []
  notes = []
  for b in args.batch:
    raw_boxes, raw_scores = make_inputs(b)
    rb, rs = jax.device_put(raw_boxes), jax.device_put(raw_scores)
    tb, ts = (torch.from_numpy(raw_boxes), torch.from_numpy(raw_scores)) if tdec else (None, None)
    dst_b, dst_s = np.ones_like(raw_boxes), np.ones_like(raw_scores)

    ours = jaxanchors.decode(rb, rs, anchors, options)
    jax.block_until_ready(ours)
    check_agree(ours, numpy_decode(raw_boxes, raw_scores, anchors_np, options),
                tdec(tb, ts) if tdec else None)
    decode_bytes = nbytes((rb, rs, anchors)) + nbytes(ours)

    # Ours and its ceilings first, so that they run next to each other in every round.
    same = xla_same_bytes(rb, rs, anchors)
    assert nbytes(same) == nbytes(ours)
    impls = {
        "ours": (lambda: jax.block_until_ready(jaxanchors.decode(rb, rs, anchors, options)),
                 decode_bytes),
        "xla same-bytes": (lambda: jax.block_until_ready(xla_same_bytes(rb, rs, anchors)),
                           nbytes((rb, rs, anchors)) + nbytes(same)),
        "xla x*2+1": (lambda: xla_affine(rb).block_until_ready(), 2 * nbytes(rb)),
        "np.copyto": (lambda: copy_inputs(dst_b, dst_s, raw_boxes, raw_scores),
                      2 * nbytes((raw_boxes, raw_scores))),
    }
    if tdec:
      impls["torch"] = (lambda: tdec(tb, ts, threads=torch_threads), decode_bytes)
      impls["torch 1 thread"] = (lambda: tdec(tb, ts, threads=1), decode_bytes)
    impls["numpy"] = (lambda: numpy_decode(raw_boxes, raw_scores, anchors_np, options),
                      decode_bytes)
    if args.experiments:
      into = decode_into(rb, rs, anchors, jax.tree.map(jnp.zeros_like, ours), options=options)
      jax.tree.map(np.testing.assert_array_equal, into, ours)
      impls["exp: ours, outputs donated"] = (
          donating_step(lambda prev: decode_into(rb, rs, anchors, prev, options=options), ours),
          decode_bytes)
      impls["exp: x*2+1 donated"] = (donating_step(xla_affine_donated, rb), 2 * nbytes(rb))

    for fn, _ in impls.values():  # warm-up
      fn()
    times = {k: [] for k in impls}
    for _ in range(args.rounds):
      for k, (fn, _) in impls.items():
        times[k].append(per_call(fn, args.min_seconds))
    med = {k: statistics.median(v) for k, v in times.items()}
    # Ratios are taken within each round, then the median over rounds.
    slower = {k: statistics.median(t / o for t, o in zip(times[k], times["ours"])) for k in impls}
    faults = {k: faults_per_call(fn) for k, (fn, _) in impls.items()}
    for k, (_, nb) in impls.items():
      rows.append((b, k, med[k], nb, slower[k], faults[k]))

    if tdec:
      torch_best = min(slower["torch"], slower["torch 1 thread"])

    def share(ceiling):  # ours GB/s as a fraction of a ceiling's, per round
      r = [(decode_bytes / o) / (impls[ceiling][1] / c)
           for o, c in zip(times["ours"], times[ceiling])]
      lo, mid, hi = (100 * f(r) for f in (min, statistics.median, max))
      return f"{mid:.0f}% of {ceiling} ({lo:.0f}-{hi:.0f})"
    fusions = (fusion_count(jaxanchors.decoding._decode, rb, rs, anchors, options=options),
               fusion_count(xla_same_bytes, rb, rs, anchors))
    notes.append(
        f"# B={b}: ours GB/s = {share('xla same-bytes')}, {share('xla x*2+1')}, "
        f"{share('np.copyto')}"
        + "; ours faster than "
        + (f"torch {torch_best:.1f}x (its faster thread setting), " if tdec else "")
        + f"numpy {slower['numpy']:.1f}x; fusions: ours {fusions[0]}, same-bytes {fusions[1]}")

  print("| B | implementation | time / call | images/s | GB/s | its time / ours | faults / call |")
  print("|---|---|---|---|---|---|---|")
  for b, k, t, nb, rel, f in rows:
    print(f"| {b} | {k} | {fmt_time(t)} | {b / t:,.0f} | {nb / t / 1e9:.2f} | {rel:.2f}x "
          f"| {f:,.0f} |")
  for n in notes:
    print(n)
  print(f"# medians of {args.rounds} interleaved rounds (ratios: per round, then median; range "
        "in brackets); decoders' GB/s use our decode's bytes (inputs + anchors + all Detections "
        "outputs), ceilings their own; 'exp:' rows use donated buffers (see docstring)")


if __name__ == "__main__":
  main()
