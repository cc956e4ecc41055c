"""End-to-end SSD post-processing: raw outputs ``[B, N, C]`` -> final detections, at every batch size.

Compares, in one process and interleaved round by round (so background load
hits every method alike), on the same frames:

* ``detect``: ``jaxanchors.detect`` (decode, score filter, WEIGHTED NMS,
  letterbox removal in one jitted call) on device arrays;
* ``quick start``: the README's quick-start function, the user's own
  ``jax.jit`` around ``detect`` (raw tensors to NMS output, no transform);
* ``decode+nms``: the step-by-step composition ``decode`` then
  ``non_max_suppression`` in the user's ``jax.jit`` (every anchor decoded; the
  same results, shown for reference);
* ``no-op``: a jitted function returning one element of each input, on the same
  arrays: the floor of a jitted call here;
* ``numpy``: a vectorized NumPy decode of the whole batch, then a per-frame
  WEIGHTED NMS loop with MediaPipe's semantics (vectorized IoU per step);
* ``torch``: a PyTorch pipeline in the style of the well-known BlazeFace port
  (per-column decode, per-frame weighted NMS that averages the score), if
  torch is installed; one thread (its default pool of two collapses when other
  jobs share the cores, see RESULTS.md).

Frame sets:

* ``a``: MediaPipe's own raw model outputs on the recorded photos
  (``tests/data/mediapipe/face_short_range_*``) with a little noise per frame:
  about 1 face and 7 candidates per frame (face_short_range, 896 anchors).
* ``b``: synthetic dense BlazeFace frames: 1-8 faces per frame, each lighting
  up its 10-60 nearest anchors with confident logits and box offsets around the
  face (so they cluster in NMS), counts varying across the batch
  (face_short_range).
* ``c``: synthetic crowds on the full-range model (2304 anchors): 10-40 faces
  per frame, 100-400 candidates per frame (face_full_range).

Every run checks ours against the NumPy pipeline (same detection counts per
frame). Times are medians over rounds of the per-call time; ratios are taken
within a round, then the median is reported. Run from the project root::

    python benchmarks/bench_pipeline.py                 # all sets, B = 1, 8, 64, 1024
    python benchmarks/bench_pipeline.py --sets a --batches 1 64 --rounds 3
    python benchmarks/bench_pipeline.py --sets a b --batches 1 --sync-dispatch

``--sync-dispatch`` turns off JAX's asynchronous CPU dispatch for the run
(``jax_cpu_enable_async_dispatch``), so a call runs on the calling thread
instead of being handed to a worker thread: the setting for one frame per call.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import jaxanchors as ja
from jaxanchors import presets

try:
  import torch
except ImportError:  # pragma: no cover - optional peer
  torch = None

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "mediapipe"
PADDING = np.array([0.0, 0.1, 0.0, 0.1], np.float32)
MAX_DETECTIONS = 10
SETS = {"a": "face_short_range", "b": "face_short_range", "c": "face_full_range"}


# -- frames ----------------------------------------------------------------------------


def recorded_frames(batch: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """Set (a): recorded raw outputs with noise."""
  raws = [np.load(p) for p in sorted(DATA.glob("face_short_range_*.npz"))]
  boxes = np.concatenate([r["raw_boxes"] for r in raws])
  scores = np.concatenate([r["raw_scores"] for r in raws])
  rng = np.random.default_rng(seed)
  pick = rng.integers(0, len(boxes), batch)
  noisy_boxes = boxes[pick] + rng.normal(0, 0.5, (batch,) + boxes.shape[1:]).astype(np.float32)
  noisy_scores = scores[pick] + rng.normal(0, 0.2, (batch,) + scores.shape[1:]).astype(np.float32)
  return noisy_boxes, noisy_scores


def synthetic_frames(preset_name: str, batch: int, seed: int, faces: tuple[int, int],
                     per_face: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
  """Sets (b) and (c): faces drawn at random, each lighting up its nearest anchors.

  Each face (centre, size 0.08-0.3) turns on ``per_face`` of the anchors nearest
  its centre: confident logits (sigmoid 0.62-0.98) and raw box offsets that
  encode the face box with a little noise, so they form one NMS cluster.
  Background anchors get logits around -6 (a few pass by chance).
  """
  preset = presets.get(preset_name)
  d = preset.decoder
  anchors = np.asarray(ja.anchors_numpy(preset.anchors))
  n, scale = len(anchors), d.x_scale
  rng = np.random.default_rng(seed)
  boxes = rng.normal(0, 2, (batch, n, d.num_coords)).astype(np.float32)
  scores = rng.normal(-6, 1.5, (batch, n, 1)).astype(np.float32)
  for b in range(batch):
    for _ in range(rng.integers(faces[0], faces[1] + 1)):
      centre = rng.uniform(0.1, 0.9, 2)
      size = rng.uniform(0.08, 0.3)
      k = rng.integers(per_face[0], per_face[1] + 1)
      near = np.argsort(np.sum((anchors[:, :2] - centre) ** 2, axis=1))[:k]
      a = anchors[near]
      jitter = rng.normal(0, 0.01, (k, 2))
      boxes[b, near, 0:2] = (centre + jitter - a[:, :2]) / a[:, 2:] * scale
      boxes[b, near, 2:4] = size * (1 + rng.normal(0, 0.05, (k, 2))) / a[:, 2:] * scale
      kp = centre + rng.normal(0, 0.05, (k, d.num_keypoints, 2))
      boxes[b, near, 4:] = ((kp - a[:, None, :2]) / a[:, None, 2:] * scale).reshape(k, -1)
      scores[b, near, 0] = rng.uniform(0.5, 4.0, k)
  return boxes, scores


def frames(name: str, batch: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
  if name == "a":
    return recorded_frames(batch, seed)
  if name == "b":
    return synthetic_frames("face_short_range", batch, seed, (1, 8), (10, 60))
  return synthetic_frames("face_full_range", batch, seed, (10, 40), (8, 12))


# -- NumPy pipeline (MediaPipe semantics) --------------------------------------------------


def numpy_pipeline(raw_boxes, raw_scores, anchors, decoder, iou, max_detections=MAX_DETECTIONS):
  scale = np.float32(decoder.x_scale)
  thr = np.float32(decoder.min_score_thresh)
  xc = raw_boxes[..., 0] / scale * anchors[:, 2] + anchors[:, 0]
  yc = raw_boxes[..., 1] / scale * anchors[:, 3] + anchors[:, 1]
  w = raw_boxes[..., 2] / scale * anchors[:, 2]
  h = raw_boxes[..., 3] / scale * anchors[:, 3]
  boxes = np.stack([xc - w / 2, yc - h / 2, xc + w / 2, yc + h / 2], -1)
  k = decoder.num_keypoints
  kps = raw_boxes[..., 4:].reshape(raw_boxes.shape[:-1] + (k, 2)) / scale
  kps = kps * anchors[:, None, 2:] + anchors[:, None, :2]
  with np.errstate(over="ignore"):
    scores = 1 / (1 + np.exp(-np.clip(raw_scores[..., 0], -100, 100)))
  out = []
  for b in range(len(raw_boxes)):
    keep = np.nonzero((scores[b] >= thr) & (w[b] >= 0) & (h[b] >= 0))[0]
    order = keep[np.argsort(-scores[b, keep], kind="stable")]
    bx, kp, sc = boxes[b, order], kps[b, order], scores[b, order]
    frame = []
    remaining = np.arange(len(order))
    while len(remaining) and len(frame) < max_detections:
      top = remaining[0]
      r = bx[remaining]
      ix = np.clip(np.minimum(r[:, 2], bx[top, 2]) - np.maximum(r[:, 0], bx[top, 0]), 0, None)
      iy = np.clip(np.minimum(r[:, 3], bx[top, 3]) - np.maximum(r[:, 1], bx[top, 1]), 0, None)
      inter = ix * iy
      area = (r[:, 2] - r[:, 0]) * (r[:, 3] - r[:, 1])
      top_area = (bx[top, 2] - bx[top, 0]) * (bx[top, 3] - bx[top, 1])
      overlap = inter / (area + top_area - inter)
      members = remaining[overlap > iou]
      if len(members) == 0:
        frame.append((bx[top], kp[top], sc[top]))
        break
      wts = sc[members][:, None]
      total = wts.sum()
      frame.append(((bx[members] * wts).sum(0) / total,
                    (kp[members] * wts[:, :, None]).sum(0) / total, sc[top]))
      remaining = remaining[overlap <= iou]
    l, t, r, btm = PADDING
    shift, size = np.array([l, t], np.float32), np.array([1 - (l + r), 1 - (t + btm)], np.float32)
    out.append([((box - np.tile(shift, 2)) / np.tile(size, 2), (p - shift) / size, s)
                for box, p, s in frame])
  return out


# -- PyTorch pipeline (the BlazeFace port's style) --------------------------------------------


def torch_pipeline(raw_boxes, raw_scores, anchors, decoder, iou, max_detections=MAX_DETECTIONS):
  scale = float(decoder.x_scale)
  thr = float(decoder.min_score_thresh)
  boxes = torch.zeros_like(raw_boxes)
  x_center = raw_boxes[..., 0] / scale * anchors[:, 2] + anchors[:, 0]
  y_center = raw_boxes[..., 1] / scale * anchors[:, 3] + anchors[:, 1]
  w = raw_boxes[..., 2] / scale * anchors[:, 2]
  h = raw_boxes[..., 3] / scale * anchors[:, 3]
  boxes[..., 0] = y_center - h / 2.
  boxes[..., 1] = x_center - w / 2.
  boxes[..., 2] = y_center + h / 2.
  boxes[..., 3] = x_center + w / 2.
  for k in range(decoder.num_keypoints):
    offset = 4 + k * 2
    boxes[..., offset] = raw_boxes[..., offset] / scale * anchors[:, 2] + anchors[:, 0]
    boxes[..., offset + 1] = raw_boxes[..., offset + 1] / scale * anchors[:, 3] + anchors[:, 1]
  scores = raw_scores.clamp(-100.0, 100.0).sigmoid().squeeze(-1)
  mask = (scores >= thr) & (w >= 0) & (h >= 0)
  c = raw_boxes.shape[-1]
  out = []
  for b in range(raw_boxes.shape[0]):
    dets = torch.cat((boxes[b, mask[b]], scores[b, mask[b]].unsqueeze(-1)), dim=-1)
    frame = []
    remaining = torch.argsort(dets[:, c], descending=True)
    while len(remaining) > 0 and len(frame) < max_detections:
      det = dets[remaining[0]]
      first = det[:4]
      other = dets[remaining, :4]
      a_lo, a_hi = first[:2], first[2:]
      lo = torch.max(other[:, :2], a_lo)
      hi = torch.min(other[:, 2:], a_hi)
      inter = (hi - lo).clamp(min=0).prod(-1)
      area_a = (a_hi - a_lo).prod()
      area_b = (other[:, 2:] - other[:, :2]).prod(-1)
      ious = inter / (area_a + area_b - inter)
      overlapping = remaining[ious > iou]
      remaining = remaining[ious <= iou]
      weighted = det.clone()
      if len(overlapping) > 1:
        coords = dets[overlapping, :c]
        wts = dets[overlapping, c:c + 1]
        weighted[:c] = (coords * wts).sum(dim=0) / wts.sum()
        weighted[c] = wts.sum() / len(overlapping)  # the port averages the score
      frame.append(weighted)
    out.append(frame)
  return out


# -- the methods -----------------------------------------------------------------------------


def methods(set_name: str, batch: int, seed: int):
  """``({name: zero-argument callable}, checks)`` for one frame set and batch size."""
  preset = presets.get(SETS[set_name])
  boxes, scores = frames(set_name, batch, seed)
  anchors = np.asarray(ja.anchors_numpy(preset.anchors))
  iou = preset.nms.min_suppression_threshold
  dev_boxes, dev_scores = jax.device_put(boxes), jax.device_put(scores)
  padding = jax.device_put(PADDING)

  @jax.jit
  def quick_start(raw_boxes, raw_scores):  # the README's quick start
    return ja.detect(raw_boxes, raw_scores, preset, max_detections=MAX_DETECTIONS)

  @jax.jit
  def composed(raw_boxes, raw_scores):
    candidates = ja.decode(raw_boxes, raw_scores, ja.generate_anchors(preset.anchors),
                           preset.decoder)
    return ja.non_max_suppression(candidates, preset.nms, max_detections=MAX_DETECTIONS)

  @jax.jit
  def noop(raw_boxes, raw_scores):
    return raw_boxes[..., 0, 0], raw_scores[..., 0, 0]

  run = {
      "detect": lambda: jax.block_until_ready(ja.detect(
          dev_boxes, dev_scores, preset, max_detections=MAX_DETECTIONS, transform=padding)),
      "quick start": lambda: jax.block_until_ready(quick_start(dev_boxes, dev_scores)),
      "decode+nms": lambda: jax.block_until_ready(composed(dev_boxes, dev_scores)),
      "no-op": lambda: jax.block_until_ready(noop(dev_boxes, dev_scores)),
      "numpy": lambda: numpy_pipeline(boxes, scores, anchors, preset.decoder, iou),
  }
  if torch is not None:
    torch.set_num_threads(1)  # its 2-thread pool collapses when other jobs share the cores
    tb, ts, ta = (torch.from_numpy(np.array(x)) for x in (boxes, scores, anchors))

    def torch_run():
      with torch.no_grad():
        return torch_pipeline(tb, ts, ta, preset.decoder, iou)
    run["torch"] = torch_run
  # Checks: ours against the NumPy pipeline; the quick start against decode+nms.
  ours = run["detect"]()
  ref = run["numpy"]()
  counts = np.asarray(ja.count(ours))
  assert [len(f) for f in ref] == counts.tolist(), "detection counts differ from numpy"
  qs, dn = run["quick start"](), run["decode+nms"]()
  for x, y in zip(qs, dn):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=0, atol=1e-6)
  candidates = (scores[..., 0] >= np.log(preset.decoder.min_score_thresh)
                - np.log1p(-preset.decoder.min_score_thresh)).sum(-1)
  info = dict(dets=float(counts.mean()), cand_mean=float(candidates.mean()),
              cand_min=int(candidates.min()), cand_max=int(candidates.max()))
  return run, info


def per_call(fn, budget: float) -> float:
  """Seconds per call, the median of blocks of calls lasting about ``budget`` in all."""
  t0 = time.perf_counter()
  fn()
  one = time.perf_counter() - t0
  calls = max(1, min(200, int(budget / 5 / max(one, 1e-6))))
  times = []
  for _ in range(5):
    t0 = time.perf_counter()
    for _ in range(calls):
      fn()
    times.append((time.perf_counter() - t0) / calls)
  return statistics.median(times)


def compile_time(preset_name: str, batch: int) -> float:
  """Trace + compile + first run of ``detect`` (caches cleared), minus a steady call."""
  preset = presets.get(preset_name)
  d = preset.decoder
  boxes = np.zeros((batch, d.num_boxes, d.num_coords), np.float32)
  scores = np.full((batch, d.num_boxes, 1), -5.0, np.float32)
  jax.clear_caches()
  t0 = time.perf_counter()
  jax.block_until_ready(ja.detect(boxes, scores, preset, max_detections=MAX_DETECTIONS,
                                  transform=PADDING))
  first = time.perf_counter() - t0
  t0 = time.perf_counter()
  jax.block_until_ready(ja.detect(boxes, scores, preset, max_detections=MAX_DETECTIONS,
                                  transform=PADDING))
  return first - (time.perf_counter() - t0)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--sets", nargs="+", default=["a", "b", "c"], choices=sorted(SETS))
  parser.add_argument("--batches", nargs="+", type=int, default=[1, 8, 64, 1024])
  parser.add_argument("--rounds", type=int, default=5)
  parser.add_argument("--budget", type=float, default=0.3,
                      help="seconds per method and round (at least one block of calls)")
  parser.add_argument("--sync-dispatch", action="store_true",
                      help="run every jitted call on the calling thread "
                           "(jax_cpu_enable_async_dispatch=False; see RESULTS.md)")
  args = parser.parse_args()
  if args.sync_dispatch:
    jax.config.update("jax_cpu_enable_async_dispatch", False)
  print(f"jax {jax.__version__}, numpy {np.__version__}, "
        f"torch {torch.__version__ if torch else 'not installed'}, "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
        f"load {os.getloadavg()[0]:.2f}, "
        f"{'synchronous' if args.sync_dispatch else 'asynchronous'} CPU dispatch")
  for name in ("face_short_range", "face_full_range"):
    print(f"compile of detect ({name}, B=64, caches cleared, trace + compile): "
          f"{compile_time(name, 64):.2f} s")
  head = (f"| set | B | cand/frame (min-max) | dets/frame | detect us/frame | quick start | "
          f"decode+nms | no-op | numpy | torch | detect/numpy | quick/numpy | detect/torch | "
          f"quick start/detect |")
  print("\n" + head)
  print("|" + "---|" * (head.count("|") - 1))
  for set_name in args.sets:
    for batch in args.batches:
      run, info = methods(set_name, batch, seed=batch)
      times = {k: [] for k in run}
      for _ in range(args.rounds):
        for k, fn in run.items():
          budget = args.budget if k not in ("numpy", "torch") or batch < 64 else 0.0
          times[k].append(per_call(fn, budget))
      med = {k: statistics.median(v) for k, v in times.items()}
      ratio = lambda a, b: statistics.median(  # noqa: E731
          [x / y for x, y in zip(times[a], times[b])]) if a in times and b in times else None
      fmt = lambda t: f"{t / batch * 1e6:.1f}"  # noqa: E731
      r_np, r_q = ratio("numpy", "detect"), ratio("numpy", "quick start")
      r_t = ratio("torch", "detect")
      r_qd = ratio("quick start", "detect")
      print(f"| {set_name} | {batch} | {info['cand_mean']:.0f} ({info['cand_min']}-"
            f"{info['cand_max']}) | {info['dets']:.2f} | {fmt(med['detect'])} | "
            f"{fmt(med['quick start'])} | {fmt(med['decode+nms'])} | {fmt(med['no-op'])} | "
            f"{fmt(med['numpy'])} | {fmt(med['torch']) if 'torch' in med else '-'} | "
            f"{r_np:.1f}x | {r_q:.1f}x | {f'{r_t:.1f}x' if r_t else '-'} | {r_qd:.2f} |",
            flush=True)
  print(f"\nload at the end {os.getloadavg()[0]:.2f}; times in us per frame (median of "
        f"{args.rounds} rounds); ratios: the median over rounds of the per-round ratio.")


if __name__ == "__main__":
  main()
