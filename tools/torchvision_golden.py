"""Records torchvision's ``nms``, ``batched_nms``, ``box_iou`` and ``box_convert`` outputs.

Run with an interpreter that has torch and torchvision (they are not project
dependencies)::

    python tools/torchvision_golden.py [--out tests/data/torchvision/ops.npz]

The cases are seeded, so a rerun with the same torchvision gives the same file.
They include exact score ties, duplicate boxes, pairs whose IoU equals the
threshold exactly in float32 (and a float64 threshold that float32 cannot
hold), thresholds 0, 0.5 and 1, degenerate boxes (zero width, inverted,
zero-area duplicates), per-class cases, ``N == 0`` and one case larger than
1024 boxes. Ragged per-case arrays are stored concatenated with offsets.
"""

from __future__ import annotations

import argparse
import pathlib

import numpy as np
import torch
import torchvision
from torchvision import ops

F32 = np.float32
FORMATS = ("xyxy", "xywh", "cxcywh")


def _random_boxes(rng: np.random.Generator, n: int, scale: float, signed: bool) -> np.ndarray:
  xy = rng.random((n, 2)) * scale - (scale / 2 if signed else 0)
  wh = rng.random((n, 2)) * scale / 3
  return np.concatenate([xy, xy + wh], axis=1).astype(F32)


def _scores(rng: np.random.Generator, n: int, kind: str) -> np.ndarray:
  if kind == "ties":  # few distinct values: many exact ties
    return (rng.integers(0, 6, n) / 8).astype(F32)
  if kind == "signed":  # negative scores, -0.0 and 0.0 together
    s = rng.standard_normal(n).astype(F32)
    s[rng.random(n) < 0.2] = F32(0.0)
    s[rng.random(n) < 0.2] = F32(-0.0)
    return s
  return rng.random(n).astype(F32)


def _at_threshold_pairs(rng: np.random.Generator) -> tuple[np.ndarray, float]:
  """Box pairs with IoU exactly 1/2 or 1/3 in float32 and the matching threshold.

  ``[0, 0, 3a, a]`` and ``[a, 0, 4a, a]``: intersection ``2a^2``, union ``4a^2``
  (IoU 1/2); ``[0, 0, 2a, a]`` and ``[a, 0, 3a, a]``: IoU 1/3, and the float64
  threshold 1/3 lies below float32(1/3), so torchvision suppresses there. ``a``
  a power of two and integer offsets keep every product exact.
  """
  third = rng.random() < 0.5
  out = []
  for _ in range(int(rng.integers(1, 5))):
    a = float(2.0 ** rng.integers(-2, 5))
    ox, oy = (float(v) for v in rng.integers(0, 64, 2))
    w = 2 * a if third else 3 * a
    out += [[ox, oy, ox + w, oy + a], [ox + a, oy, ox + a + w, oy + a]]
  boxes = np.array(out, F32)
  return boxes, (1 / 3 if third else 0.5)


def _degenerate(rng: np.random.Generator, n: int) -> np.ndarray:
  b = _random_boxes(rng, n, 100.0, False)
  kind = rng.integers(0, 4, n)
  b[kind == 1, 2] = b[kind == 1, 0]  # zero width
  inv = kind == 2
  b[inv] = b[inv][:, [2, 3, 0, 1]]  # inverted corners
  pt = kind == 3
  b[pt, 2:] = b[pt, :2]  # a point
  if n > 2:  # identical zero-area duplicates
    b[-1] = b[-2] = np.array([5, 5, 5, 5], F32)
  return b


def make_cases(seed: int = 0) -> list[dict]:
  rng = np.random.default_rng(seed)
  cases = []

  def add(boxes, scores, idxs, thr):
    cases.append(dict(boxes=np.asarray(boxes, F32), scores=np.asarray(scores, F32),
                      idxs=np.asarray(idxs, np.int64), thr=float(thr)))

  # A few thresholds (the tests compile once per threshold under jit).
  thresholds = (0.0, 0.5, 1.0, 0.3, 0.7)
  others = (0.45, 0.6, 0.25, 0.1)
  for i in range(120):  # random, with ties and duplicates
    n = int(rng.integers(1, 80))
    b = _random_boxes(rng, n, [1.0, 640.0, 100.0][i % 3], signed=i % 7 == 0)
    if n > 3:
      dup = rng.integers(0, n, n // 4)
      b[rng.integers(0, n, n // 4)] = b[dup]
    s = _scores(rng, n, ["ties", "uniform", "signed"][i % 3])
    add(b, s, rng.integers(0, 1 + i % 5, n), thresholds[i % 5] if i % 2 else others[i % 4])
  for i in range(40):  # IoU exactly at the threshold, in random company
    pairs, thr = _at_threshold_pairs(rng)
    extra = _random_boxes(rng, int(rng.integers(0, 10)), 100.0, False)
    b = np.concatenate([pairs, extra])
    s = _scores(rng, len(b), "ties" if i % 2 else "uniform")
    add(b, s, rng.integers(0, 2, len(b)), thr)
  for i in range(30):  # degenerate boxes
    n = int(rng.integers(3, 40))
    add(_degenerate(rng, n), _scores(rng, n, "ties"), rng.integers(0, 3, n), thresholds[i % 5])
  for i in range(20):  # many classes, heavy overlap
    n = int(rng.integers(20, 200))
    b = _random_boxes(rng, n, 50.0, False)
    add(b, _scores(rng, n, "uniform"), rng.integers(0, 20, n), [0.0, 0.2, 0.5, 0.9][i % 4])
  add(np.zeros((0, 4)), np.zeros(0), np.zeros(0), 0.5)  # N == 0
  for n in (2000,):  # past the engine's loop/tile switch (nms only: see below)
    b = _random_boxes(rng, n, 400.0, False)
    add(b, _scores(rng, n, "uniform"), np.zeros(n), 0.5)
  return cases


def _ragged(arrays, dtype):
  offsets = np.cumsum([0] + [len(a) for a in arrays]).astype(np.int64)
  return np.concatenate([np.asarray(a, dtype) for a in arrays]), offsets


def record(cases: list[dict]) -> dict[str, np.ndarray]:
  keep, bkeep, ious = [], [], []
  for c in cases:
    b, s, k = (torch.from_numpy(c[x]) for x in ("boxes", "scores", "idxs"))
    keep.append(ops.nms(b, s, c["thr"]).numpy())
    # torchvision runs class by class above 1000 boxes on CPU: not recorded there.
    bkeep.append(ops.batched_nms(b, s, k, c["thr"]).numpy() if len(b) <= 1000 else np.zeros(0))
    ious.append(ops.box_iou(b, b).numpy().reshape(-1) if len(b) <= 64 else np.zeros(0))
  out = {}
  for name, arrays, dtype in (("boxes", [c["boxes"] for c in cases], F32),
                              ("scores", [c["scores"] for c in cases], F32),
                              ("idxs", [c["idxs"] for c in cases], np.int32),
                              ("nms", keep, np.int32), ("batched_nms", bkeep, np.int32),
                              ("box_iou", ious, F32)):
    out[name], out[name + "_offsets"] = _ragged(arrays, dtype)
  out["thr"] = np.array([c["thr"] for c in cases], np.float64)
  out["batched_recorded"] = np.array([len(c["boxes"]) <= 1000 for c in cases])
  # box_convert between every pair of formats, on the boxes of the first cases.
  conv = np.concatenate([c["boxes"] for c in cases[:30]])
  out["convert_in"] = conv
  for i in FORMATS:
    for o in FORMATS:
      out[f"convert_{i}_{o}"] = ops.box_convert(torch.from_numpy(conv), i, o).numpy()
  return out


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default="tests/data/torchvision/ops.npz")
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()
  data = record(make_cases(args.seed))
  data["torchvision_version"] = np.array(torchvision.__version__)
  path = pathlib.Path(args.out)
  path.parent.mkdir(parents=True, exist_ok=True)
  np.savez_compressed(path, **data)
  print(f"{path}: {len(data['thr'])} cases, {path.stat().st_size} bytes, "
        f"torchvision {torchvision.__version__}")


if __name__ == "__main__":
  main()
