"""End-to-end BlazeFace post-processing: raw outputs [B, 896, 16] -> final detections.

Compares, in one run and on the same frames:

* ours: ``jaxanchors.detect`` (decode, score filter, WEIGHTED NMS, letterbox
  removal in one jitted call), batched;
* a NumPy pipeline: vectorized decode of the whole batch, then a per-frame
  WEIGHTED NMS loop (MediaPipe's semantics, vectorized IoU per step);
* a PyTorch pipeline in the style of the well-known BlazeFace port: per-column
  decode, then per-frame weighted NMS that averages the score (that port's
  semantics, cheaper than MediaPipe's), if torch is installed.

Frames are MediaPipe's own raw model outputs on real photos
(``tests/data/mediapipe/face_short_range_*``) with a little noise per frame, so
candidate counts and clusters are realistic.

Run from the project root: ``python benchmarks/bench_pipeline.py`` (torch
optional: ``pip install torch`` adds the torch row).
"""

from __future__ import annotations

import platform
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import jaxanchors as ja
from jaxanchors import pipeline, presets

try:
  import torch
except ImportError:  # pragma: no cover - optional peer
  torch = None

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "mediapipe"
PRESET = presets.get("face_short_range")
PADDING = np.array([0.0, 0.1, 0.0, 0.1], np.float32)


def frames(batch: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  raws = [np.load(p) for p in sorted(DATA.glob("face_short_range_*.npz"))]
  boxes = np.concatenate([r["raw_boxes"] for r in raws])
  scores = np.concatenate([r["raw_scores"] for r in raws])
  rng = np.random.default_rng(seed)
  pick = rng.integers(0, len(boxes), batch)
  noisy_boxes = boxes[pick] + rng.normal(0, 0.5, (batch,) + boxes.shape[1:]).astype(np.float32)
  noisy_scores = scores[pick] + rng.normal(0, 0.2, (batch,) + scores.shape[1:]).astype(np.float32)
  return noisy_boxes, noisy_scores


# -- NumPy pipeline (MediaPipe semantics) --------------------------------------------------


def numpy_pipeline(raw_boxes, raw_scores, anchors, max_detections=10):
  scale = np.float32(128)
  xc = raw_boxes[..., 0] / scale * anchors[:, 2] + anchors[:, 0]
  yc = raw_boxes[..., 1] / scale * anchors[:, 3] + anchors[:, 1]
  w = raw_boxes[..., 2] / scale * anchors[:, 2]
  h = raw_boxes[..., 3] / scale * anchors[:, 3]
  boxes = np.stack([xc - w / 2, yc - h / 2, xc + w / 2, yc + h / 2], -1)
  kps = raw_boxes[..., 4:].reshape(raw_boxes.shape[:-1] + (6, 2)) / scale
  kps = kps * anchors[:, None, 2:] + anchors[:, None, :2]
  with np.errstate(over="ignore"):
    scores = 1 / (1 + np.exp(-np.clip(raw_scores[..., 0], -100, 100)))
  out = []
  for b in range(len(raw_boxes)):
    keep = np.nonzero(scores[b] >= 0.5)[0]
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
      iou = inter / (area + top_area - inter)
      members = remaining[iou > 0.3]
      if len(members) == 0:
        frame.append((bx[top], kp[top], sc[top]))
        break
      wts = sc[members][:, None]
      total = wts.sum()
      frame.append(((bx[members] * wts).sum(0) / total,
                    (kp[members] * wts[:, :, None]).sum(0) / total, sc[top]))
      remaining = remaining[iou <= 0.3]
    l, t, r, btm = PADDING
    shift, size = np.array([l, t], np.float32), np.array([1 - (l + r), 1 - (t + btm)], np.float32)
    out.append([((box - np.tile(shift, 2)) / np.tile(size, 2), (k - shift) / size, s)
                for box, k, s in frame])
  return out


# -- PyTorch pipeline (the BlazeFace port's style) --------------------------------------------


def torch_pipeline(raw_boxes, raw_scores, anchors, max_detections=10):
  scale = 128.0
  boxes = torch.zeros_like(raw_boxes)
  x_center = raw_boxes[..., 0] / scale * anchors[:, 2] + anchors[:, 0]
  y_center = raw_boxes[..., 1] / scale * anchors[:, 3] + anchors[:, 1]
  w = raw_boxes[..., 2] / scale * anchors[:, 2]
  h = raw_boxes[..., 3] / scale * anchors[:, 3]
  boxes[..., 0] = y_center - h / 2.
  boxes[..., 1] = x_center - w / 2.
  boxes[..., 2] = y_center + h / 2.
  boxes[..., 3] = x_center + w / 2.
  for k in range(6):
    offset = 4 + k * 2
    boxes[..., offset] = raw_boxes[..., offset] / scale * anchors[:, 2] + anchors[:, 0]
    boxes[..., offset + 1] = raw_boxes[..., offset + 1] / scale * anchors[:, 3] + anchors[:, 1]
  scores = raw_scores.clamp(-100.0, 100.0).sigmoid().squeeze(-1)
  mask = scores >= 0.5
  out = []
  for b in range(raw_boxes.shape[0]):
    dets = torch.cat((boxes[b, mask[b]], scores[b, mask[b]].unsqueeze(-1)), dim=-1)
    frame = []
    remaining = torch.argsort(dets[:, 16], descending=True)
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
      overlapping = remaining[ious > 0.3]
      remaining = remaining[ious <= 0.3]
      weighted = det.clone()
      if len(overlapping) > 1:
        coords = dets[overlapping, :16]
        wts = dets[overlapping, 16:17]
        weighted[:16] = (coords * wts).sum(dim=0) / wts.sum()
        weighted[16] = wts.sum() / len(overlapping)  # the port averages the score
      frame.append(weighted)
    out.append(frame)
  return out


# -- timing ---------------------------------------------------------------------------------


def median_time(fn, repeats: int) -> float:
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def main() -> None:
  anchors = np.asarray(ja.anchors_numpy(PRESET.anchors))
  print(f"jax {jax.__version__}, numpy {np.__version__}, "
        f"torch {torch.__version__ if torch else 'not installed'}, {platform.processor() or platform.machine()}")

  # Compile time of the whole pipeline, caches cleared first.
  boxes, scores = frames(64)
  jax.clear_caches()
  start = time.perf_counter()
  jax.block_until_ready(pipeline.detect(boxes, scores, PRESET, max_detections=10,
                                        transform=PADDING))
  compile_s = time.perf_counter() - start

  rows = []
  for batch in (1, 64, 1024):
    boxes, scores = frames(batch, seed=batch)
    # Model outputs live on the device already; NumPy and torch get host arrays.
    dev_boxes, dev_scores = jax.device_put(boxes), jax.device_put(scores)
    run_ours = lambda: jax.block_until_ready(pipeline.detect(  # noqa: E731
        dev_boxes, dev_scores, PRESET, max_detections=10, transform=PADDING))
    first_start = time.perf_counter()
    ours = run_ours()
    first = time.perf_counter() - first_start
    repeats = {1: 50, 64: 20, 1024: 5}[batch]
    t_ours = median_time(run_ours, repeats)
    t_np = median_time(lambda: numpy_pipeline(boxes, scores, anchors), max(1, repeats // 5))
    ref = numpy_pipeline(boxes, scores, anchors)
    assert [len(f) for f in ref] == np.asarray(ja.count(ours)).tolist(), "counts differ"
    t_torch = None
    if torch is not None:
      tb, ts, ta = (torch.from_numpy(np.array(x)) for x in (boxes, scores, anchors))
      with torch.no_grad():
        t_torch = median_time(lambda: torch_pipeline(tb, ts, ta), max(1, repeats // 5))
    rows.append((batch, t_ours, first, t_np, t_torch, float(np.mean(np.asarray(ja.count(ours))))))

  print(f"\ncompile + first run of detect (B=64, caches cleared): {compile_s:.2f} s\n")
  head = (f"{'B':>5} {'dets/frame':>10} {'ours img/s':>11} {'numpy img/s':>12} "
          f"{'torch img/s':>12} {'ours/numpy':>10} {'ours/torch':>10} {'1st call s':>10}")
  print(head)
  print("-" * len(head))
  for batch, t_ours, first, t_np, t_torch, dets in rows:
    torch_ips = f"{batch / t_torch:12.0f}" if t_torch else f"{'-':>12}"
    torch_ratio = f"{t_torch / t_ours:10.1f}" if t_torch else f"{'-':>10}"
    print(f"{batch:>5} {dets:>10.2f} {batch / t_ours:>11.0f} {batch / t_np:>12.0f} {torch_ips} "
          f"{t_np / t_ours:>10.1f} {torch_ratio} {first:>10.2f}")


if __name__ == "__main__":
  main()
