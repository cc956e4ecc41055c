"""Photo to face detections: MediaPipe's legacy face-detection solution against ours.

The two sides cannot share a process (``mediapipe`` pins numpy<2, jax needs
numpy 2), so this script is both: run with MediaPipe's interpreter it times
MediaPipe, run with the project's it times ours, and ``--mpvenv PATH`` (the
default when run from the project's environment) makes it alternate the two
processes over several rounds, each process timing its side on the same photos.

Photos: the 512 x 512 astronaut from ``skimage.data`` (one face), a batch of
64 copies with a little per-photo noise. Rows:

* ``mediapipe``: ``mp.solutions.face_detection.FaceDetection(model_selection=0)``,
  ``process(photo)`` per photo (its graph: ImageToTensor, TFLite with XNNPACK,
  decoding, WEIGHTED NMS, projection), ``static_image_mode``-style use: one
  photo after the other;
* ``ours, LiteRT``: ``letterbox`` (JAX), the same ``.tflite`` in LiteRT
  (``ai-edge-litert``, one ``invoke`` per photo: the model has batch 1), then
  ``detect`` on the batch; with LiteRT's default thread count, with one
  thread per CPU (``ours, LiteRT N threads``), and for the batch also with
  ``TFLiteModel.run_batch`` (one one-thread interpreter per CPU, frames side
  by side, as ``jaxanchors.Detector`` runs LiteRT);
* ``ours, JAX``: ``detect_images``: letterbox, the network translated to JAX and
  ``detect`` in one jitted call, the batch at once.

Run from the project root (MediaPipe's venv linked as ``mpvenv``, see
``tools/mediapipe_golden.py``)::

    python benchmarks/bench_mediapipe.py                       # both sides, alternating
    python benchmarks/bench_mediapipe.py --mpvenv other/python # another MediaPipe interpreter
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BATCH = 64


def photos(batch: int):
  import numpy as np
  import skimage.data
  image = skimage.data.astronaut()
  rng = np.random.default_rng(0)
  noise = rng.integers(-3, 4, (batch,) + image.shape)
  return image, np.clip(image[None].astype(np.int16) + noise, 0, 255).astype(np.uint8)


def per_photo(fn, count: int, seconds: float) -> float:
  """Seconds per photo of ``fn`` (which handles ``count`` photos), median of 5 blocks."""
  fn()
  times = []
  for _ in range(5):
    n, t0 = 0, time.perf_counter()
    while True:
      fn()
      n += 1
      if time.perf_counter() - t0 >= seconds / 5:
        break
    times.append((time.perf_counter() - t0) / n / count)
  return statistics.median(times)


def mediapipe_side(seconds: float) -> dict:
  import mediapipe as mp
  image, batch = photos(BATCH)
  detector = mp.solutions.face_detection.FaceDetection(model_selection=0,
                                                       min_detection_confidence=0.5)
  found = detector.process(image).detections
  assert found is not None and len(found) == 1, found

  def run_batch():
    for p in batch:
      detector.process(p)
  return {"mediapipe 1 photo": per_photo(lambda: detector.process(image), 1, seconds),
          f"mediapipe {BATCH} photos": per_photo(run_batch, BATCH, seconds)}


def our_side(seconds: float) -> dict:
  import jax
  import numpy as np
  import jaxanchors as ja
  from jaxanchors import models, presets
  preset = presets.get("face_short_range")
  image, batch = photos(BATCH)
  threads = os.cpu_count() or 1
  default_model = models.TFLiteModel.from_name(preset.model)
  threaded_model = models.TFLiteModel.from_name(preset.model, num_threads=threads)
  one, many = jax.device_put(image), jax.device_put(batch)
  letterbox = jax.jit(lambda x: ja.letterbox(x, preset.preprocessing))

  def litert(images, model=default_model, side_by_side=False):
    tensors, transform = letterbox(images)
    tensors = np.asarray(tensors).reshape((-1,) + tensors.shape[-3:])
    if side_by_side:  # one-thread interpreters, one per CPU, frames side by side
      raw_boxes, raw_scores = model.run_batch(tensors)
    else:
      raw = [model(t[None]) for t in tensors]
      raw_boxes = np.concatenate([r.raw_boxes for r in raw])
      raw_scores = np.concatenate([r.raw_scores for r in raw])
    raw_boxes = raw_boxes.reshape(images.shape[:-3] + raw_boxes.shape[1:])
    raw_scores = raw_scores.reshape(images.shape[:-3] + raw_scores.shape[1:])
    return jax.block_until_ready(ja.detect(raw_boxes, raw_scores, preset, max_detections=10,
                                           transform=transform))

  def jax_path(images):
    return jax.block_until_ready(ja.detect_images(images, preset, max_detections=10))

  def litert_threaded(images):
    return litert(images, threaded_model)

  def litert_side_by_side(images):
    return litert(images, default_model, side_by_side=True)

  assert int(litert(one).valid.sum()) == 1 and int(jax_path(one).valid.sum()) == 1
  assert int(litert_threaded(one).valid.sum()) == 1
  assert np.array_equal(np.asarray(litert_side_by_side(many).boxes),
                        np.asarray(litert(many).boxes))
  return {"ours, LiteRT 1 photo": per_photo(lambda: litert(one), 1, seconds),
          f"ours, LiteRT {threads} threads 1 photo":
              per_photo(lambda: litert_threaded(one), 1, seconds),
          "ours, JAX 1 photo": per_photo(lambda: jax_path(one), 1, seconds),
          f"ours, LiteRT {BATCH} photos": per_photo(lambda: litert(many), BATCH, seconds),
          f"ours, LiteRT {threads} threads {BATCH} photos":
              per_photo(lambda: litert_threaded(many), BATCH, seconds),
          f"ours, LiteRT run_batch {BATCH} photos":
              per_photo(lambda: litert_side_by_side(many), BATCH, seconds),
          f"ours, JAX {BATCH} photos": per_photo(lambda: jax_path(many), BATCH, seconds)}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--side", choices=("mediapipe", "ours"),
                      help="time one side and print JSON (used by the alternating run)")
  parser.add_argument("--mpvenv", default=str(ROOT / "mpvenv" / "bin" / "python"),
                      help="MediaPipe's Python interpreter")
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
  args = parser.parse_args()
  if args.side:
    side = mediapipe_side if args.side == "mediapipe" else our_side
    print(json.dumps(side(args.seconds)))
    return
  results: dict[str, list[float]] = {}
  for _ in range(args.rounds):
    for python, side in ((args.mpvenv, "mediapipe"), (sys.executable, "ours")):
      out = subprocess.run([python, __file__, "--side", side, "--seconds", str(args.seconds)],
                           capture_output=True, text=True, check=True,
                           env=dict(os.environ, PYTHONPATH=os.environ.get("PYTHONPATH", "")))
      for k, v in json.loads(out.stdout.strip().splitlines()[-1]).items():
        results.setdefault(k, []).append(v)
  print(f"load {os.getloadavg()[0]:.2f}; ms per photo, median of {args.rounds} alternating rounds "
        "(range)")
  mp1 = statistics.median(results["mediapipe 1 photo"])
  mpn = statistics.median(results[f"mediapipe {BATCH} photos"])
  for k, v in results.items():
    base = mp1 if "1 photo" in k else mpn
    med = statistics.median(v)
    print(f"| {k} | {med * 1e3:.2f} | {min(v) * 1e3:.2f}-{max(v) * 1e3:.2f} | "
          f"{base / med:.2f}x MediaPipe's photos/s |")


if __name__ == "__main__":
  main()
