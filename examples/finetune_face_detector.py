"""Fine-tune MediaPipe's short-range face detector to find rotated faces, and ship it as .tflite.

The shipped ``face_short_range`` model is trained on upright faces. This
example adapts it to faces rotated by 90, 180 and 270 degrees with
:mod:`jaxanchors.finetune`, writes the new weights into a copy of the
original file (:func:`jaxanchors.models.save_tflite`) and checks that LiteRT
runs that file with the JAX network's outputs and detections.

Data, all offline (scikit-image's bundled images):

* faces: the 100 face crops of ``skimage.data.lfw_subset()`` (25x25
  grayscale, aligned, cropped to the face), split **by image** into training
  and held-out faces;
* backgrounds: random windows of scikit-image photos without faces, split by
  photo too (held-out composites use photos never seen in training);
* a composite is a 128x128 tensor built directly in the model's value range
  [-1, 1] (what :func:`jaxanchors.letterbox` gives for a 128x128 photo): one
  face, resized to 36-64 pixels, rotated by 0, 90, 180 or 270 degrees and
  pasted with a soft 2-pixel edge at a random position.
* ground truth: the box is the pasted square (exact; a square stays the same
  square under these rotations). Keypoints are pseudo-labels: the shipped
  model's six keypoints on the upright face (one detection per training face
  on a plain background, in face-crop coordinates; the mean over faces where
  it misses), rotated with the face. So the fine-tuned model's keypoints turn
  with the face, which is what MediaPipe's face-landmark graph needs to
  estimate the roll.

Training: Adam (warm-up, cosine decay) on :func:`jaxanchors.finetune.loss`
(SSD matching, 3:1 hard-negative mining, Huber on boxes and keypoints), new
random composites every step, one rotation per composite drawn uniformly from
the four (a quarter stay upright, which keeps upright recall). Only the heads
and the last ``--backbone-layers`` weighted layers (default 8: the last four
residual blocks, at stride 16) are trained (:func:`jaxanchors.finetune.top_keys`);
gradients are taken with respect to those weights only, so the backward pass
stops there and a step is cheap. The heads alone (``--backbone-layers 0``)
learn much less: 0.74 rotated recall after 120 steps, against 0.99 here.
Evaluation: recall at IoU 0.5 on the held-out composites (a face counts as
found when a detection of :func:`jaxanchors.detect` on the network's outputs
overlaps it at IoU >= 0.5), before and after, upright and rotated apart.

Full run (``python examples/finetune_face_detector.py``: 600 steps of 32
composites, the heads and the last four residual blocks trained), on
2026-11-30, 2 CPU cores shared with other jobs (load average 6.2 at the start,
5.6 at the end), 326 s inside ``main`` (``time``: real 5m30s, user 3m50s),
held-out composites of 30 unseen faces on unseen photos (90 upright, 270
rotated); the run is deterministic (two runs gave the same numbers):

=======================  =============  ==========  ==========================
held-out                 shipped model  fine-tuned  fine-tuned, written file
=======================  =============  ==========  ==========================
recall, rotated          0.604          0.993       0.993
recall, upright          0.978          1.000       1.000
false positives / frame  0.178          0.019       0.022
=======================  =============  ==========  ==========================

The written file stores the weights as float16; its column is the JAX network
on those rounded weights. LiteRT on ``face_rotated.tflite`` (64 held-out
frames): raw outputs within 1.0e-6 of scale of the JAX network on the written
weights, the same detections (counts equal, boxes within 3e-7).

Shortened run (as ``tests/test_finetune_example.py`` runs it): ``--steps 24
--train-images 8 --eval-images 4 --batch 8 --litert-frames 8``.
Needs optax and ai-edge-litert (``pip install 'jaxanchors[train,models]'``).
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import skimage.data
import skimage.transform

import jaxanchors as ja
from jaxanchors import finetune
from jaxanchors import models

PRESET = ja.presets.get("face_short_range")
SIZE = 128
FACE_MIN, FACE_MAX = 36, 64
EVAL_IOU = 0.5
MAX_DETECTIONS = 4
# Photos without faces; training and held-out composites use different ones.
TRAIN_PHOTOS = ("coffee", "hubble_deep_field", "immunohistochemistry", "moon", "horse",
                "grass", "gravel", "clock", "cell", "page", "colorwheel")
HELD_OUT_PHOTOS = ("rocket", "coins", "brick", "text")


# -- data --------------------------------------------------------------------------------


def _photo(name: str) -> np.ndarray:
  """A bundled photo as float32 RGB in [0, 1], ``[H, W, 3]``."""
  image = np.asarray(getattr(skimage.data, name)(), np.float32)
  if image.max() > 1:
    image = image / 255.0
  if image.ndim == 2:
    image = np.repeat(image[..., None], 3, axis=-1)
  image = image[..., :3]
  scale = 256 / min(image.shape[:2])  # windows of 128..256 pixels, resized to 128
  return skimage.transform.rescale(image, scale, order=1, channel_axis=-1,
                                   anti_aliasing=scale < 1).astype(np.float32)


def load_faces(held_out_fraction: float = 0.3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """LFW face crops ``[F, 25, 25]`` in [0, 1], split by image: (train, held-out)."""
  faces = np.asarray(skimage.data.lfw_subset()[:100], np.float32)  # the first 100 are faces
  order = np.random.default_rng(seed).permutation(len(faces))
  cut = int(round(len(faces) * (1 - held_out_fraction)))
  return faces[order[:cut]], faces[order[cut:]]


def rotate_points(points: np.ndarray, k: int) -> np.ndarray:
  """``(u, v)`` in a unit square ``[..., 2]`` after ``np.rot90(image, k)`` (counter-clockwise)."""
  u, v = points[..., 0], points[..., 1]
  for _ in range(k % 4):
    u, v = v, 1.0 - u
  return np.stack([u, v], axis=-1)


def composite(face: np.ndarray, face_keypoints: np.ndarray, photo: np.ndarray, k: int,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """One model-input tensor ``[128, 128, 3]`` in [-1, 1], its box ``[4]`` and keypoints ``[6, 2]``.

  The face (``[25, 25]``, keypoints ``[6, 2]`` as fractions of the crop) is
  rotated by ``k * 90`` degrees counter-clockwise, resized and pasted onto a
  random window of ``photo``; box and keypoints are normalised to the tensor.
  """
  h, w = photo.shape[:2]
  crop = int(rng.integers(SIZE, min(h, w) + 1))
  y0, x0 = int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))
  background = skimage.transform.resize(photo[y0:y0 + crop, x0:x0 + crop], (SIZE, SIZE),
                                        order=1, anti_aliasing=False)
  s = int(rng.integers(FACE_MIN, FACE_MAX + 1))
  patch = skimage.transform.resize(np.rot90(face, k), (s, s), order=1)
  # A soft 2-pixel edge so the crop's border is not a hard square outline.
  ramp = np.minimum(np.arange(s) + 0.5, s - np.arange(s) - 0.5) / 2.0
  alpha = np.clip(np.minimum(ramp[:, None], ramp[None, :]), 0.0, 1.0)[..., None]
  px, py = int(rng.integers(0, SIZE - s + 1)), int(rng.integers(0, SIZE - s + 1))
  image = background.copy()
  region = image[py:py + s, px:px + s]
  image[py:py + s, px:px + s] = alpha * patch[..., None] + (1 - alpha) * region
  box = np.array([px, py, px + s, py + s], np.float32) / SIZE
  keypoints = (np.array([px, py], np.float32)
               + rotate_points(face_keypoints, k) * s) / SIZE
  return (image * 2 - 1).astype(np.float32), box, keypoints.astype(np.float32)


def make_set(faces: np.ndarray, face_keypoints: np.ndarray, photos: list[np.ndarray],
             rotations: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
  """Composites, one per (face index, rotation) row: images ``[B, 128, 128, 3]``,
  boxes ``[B, 1, 4]``, keypoints ``[B, 1, 6, 2]``, valid ``[B, 1]``, rotation ``[B]``."""
  out = [composite(faces[i], face_keypoints[i], photos[int(rng.integers(len(photos)))], int(k),
                   rng) for i, k in rotations]
  images, boxes, kps = (np.stack(x) for x in zip(*out))
  return dict(images=images, boxes=boxes[:, None], keypoints=kps[:, None],
              valid=np.ones((len(out), 1), bool), rotation=rotations[:, 1].astype(np.int32))


# -- detection and recall ------------------------------------------------------------------


CHUNK = 64  # frames per network and detect call: every call has one shape, one compile


def _chunks(*arrays: np.ndarray):
  """Yields ``(chunk arrays zero-padded to CHUNK frames, real length)``."""
  for i in range(0, len(arrays[0]), CHUNK):
    parts = [a[i:i + CHUNK] for a in arrays]
    n = len(parts[0])
    yield [np.concatenate([p, np.zeros((CHUNK - n,) + p.shape[1:], p.dtype)])
           for p in parts], n


def raw_outputs(network: Any, params: Any, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """The network's ``(raw_boxes [B, 896, 16], raw_scores [B, 896, 1])`` on ``images``."""
  boxes, scores = [], []
  for (chunk,), n in _chunks(images):
    raw = network.apply(params, chunk)
    boxes.append(np.asarray(raw.raw_boxes)[:n])
    scores.append(np.asarray(raw.raw_scores)[:n])
  return np.concatenate(boxes), np.concatenate(scores)


def detect_raw(raw_boxes: np.ndarray, raw_scores: np.ndarray) -> ja.Detections:
  """:func:`jaxanchors.detect` with the preset's options, ``MAX_DETECTIONS`` slots per frame."""
  parts = []
  for (b, s), n in _chunks(raw_boxes, raw_scores):
    det = ja.detect(b, s, PRESET, max_detections=MAX_DETECTIONS)
    parts.append([np.asarray(x)[:n] for x in det])
  return ja.Detections(*(np.concatenate(x) for x in zip(*parts)))


def detect_batches(network: Any, params: Any, images: np.ndarray) -> ja.Detections:
  """:func:`jaxanchors.detect` on the network's outputs."""
  return detect_raw(*raw_outputs(network, params, images))


def matched(detections: ja.Detections, boxes: np.ndarray) -> np.ndarray:
  """``[B, D]`` bool: valid detections overlapping the frame's one face at IoU >= 0.5."""
  det, face = np.asarray(detections.boxes, np.float64), np.asarray(boxes, np.float64)[:, :1]
  lo, hi = np.maximum(det[..., :2], face[..., :2]), np.minimum(det[..., 2:], face[..., 2:])
  inter = np.prod(np.clip(hi - lo, 0, None), axis=-1)
  area = lambda b: np.prod(np.clip(b[..., 2:] - b[..., :2], 0, None), axis=-1)  # noqa: E731
  iou = inter / np.maximum(area(det) + area(face) - inter, 1e-12)
  return (iou >= EVAL_IOU) & np.asarray(detections.valid)


def found(detections: ja.Detections, boxes: np.ndarray) -> np.ndarray:
  """``[B]`` bool: the frame's one face is found by a detection (IoU >= 0.5)."""
  return np.any(matched(detections, boxes), axis=-1)


def recall(network: Any, params: Any, data: dict[str, np.ndarray]) -> tuple[float, float, float]:
  """Held-out recall at IoU 0.5, upright and rotated by 90/180/270, and the number of
  detections per frame that overlap no face (false positives)."""
  det = detect_batches(network, params, data["images"])
  hit = matched(det, data["boxes"])
  found_any = hit.any(axis=-1)
  upright = data["rotation"] == 0
  false_positives = (np.asarray(det.valid) & ~hit).sum() / len(hit)
  return (float(found_any[upright].mean()), float(found_any[~upright].mean()),
          float(false_positives))


def pseudo_keypoints(network: Any, faces: np.ndarray) -> np.ndarray:
  """``[F, 6, 2]``: the shipped model's keypoints on each upright face, as crop fractions.

  Each face is pasted at 64x64 in the middle of a mid-grey tensor; where the
  model does not find it (IoU < 0.5) the mean over the other faces is used.
  """
  s, at = 64, (SIZE - 64) // 2
  images = np.zeros((len(faces), SIZE, SIZE, 3), np.float32)
  for i, face in enumerate(faces):
    images[i, at:at + s, at:at + s] = skimage.transform.resize(face, (s, s), order=1)[..., None]
  images = images * 2 - 1
  box = np.array([[[at, at, at + s, at + s]]], np.float32) / SIZE
  det = detect_batches(network, network.params, images)
  hit = found(det, np.broadcast_to(box, (len(faces), 1, 4)))
  best = np.asarray(det.keypoints)[:, 0]                       # [F, 6, 2], best-scoring first
  rel = (best * SIZE - at) / s
  mean = rel[hit].mean(axis=0) if hit.any() else np.full((6, 2), 0.5, np.float32)
  return np.where(hit[:, None, None], rel, mean).astype(np.float32)


# -- main ------------------------------------------------------------------------------------


def main(*, steps: int = 600, train_images: int = 70, eval_images: int = 30, batch: int = 32,
         learning_rate: float = 2e-3, backbone_layers: int = 8, seed: int = 0,
         out: str = "face_rotated.tflite", litert_frames: int = 64,
         verbose: bool = True) -> dict[str, Any]:
  """Fine-tunes, evaluates, writes ``out`` and checks it in LiteRT; returns the numbers."""
  start = time.perf_counter()
  say = print if verbose else (lambda *a, **k: None)
  network = models.load_network(PRESET.model)
  train_faces, held_faces = load_faces()
  train_faces, held_faces = train_faces[:train_images], held_faces[:eval_images]
  train_kps = pseudo_keypoints(network, train_faces)
  held_kps = pseudo_keypoints(network, held_faces)
  train_photos = [_photo(n) for n in TRAIN_PHOTOS]
  held_photos = [_photo(n) for n in HELD_OUT_PHOTOS]
  # Held-out: every held-out face at each rotation, three placements each.
  rows = np.array([(i, k) for i in range(len(held_faces)) for k in range(4) for _ in range(3)])
  held = make_set(held_faces, held_kps, held_photos, rows, np.random.default_rng([seed, 1]))
  before = recall(network, network.params, held)
  say(f"held-out recall before: upright {before[0]:.3f}, rotated {before[1]:.3f}, "
      f"{before[2]:.3f} false positives per frame ({int((held['rotation'] == 0).sum())} "
      f"upright, {int((held['rotation'] != 0).sum())} rotated faces)")

  options = finetune.LossOptions()
  mask = finetune.update_mask(network, keys=finetune.top_keys(network,
                                                              backbone_layers=backbone_layers))
  keys = sorted(k for k, m in mask.items() if m.any())
  frozen = {k: jnp.asarray(v) for k, v in network.params.items() if k not in keys}
  trainable = {k: jnp.asarray(network.params[k]) for k in keys}
  schedule = optax.warmup_cosine_decay_schedule(0.0, learning_rate, max(1, steps // 20), steps,
                                                learning_rate / 20)
  optimizer = finetune.masked(optax.adam(schedule), {k: mask[k] for k in keys})
  state = optimizer.init(trainable)

  @jax.jit
  def step(trainable, state, images, boxes, valid, keypoints):
    def objective(t):
      out = finetune.loss({**frozen, **t}, images, boxes, valid, network=network,
                          preset=PRESET, gt_keypoints=keypoints, options=options)
      return out.total, out
    (_, parts), grads = jax.value_and_grad(objective, has_aux=True)(trainable)
    updates, state = optimizer.update(grads, state, trainable)
    return optax.apply_updates(trainable, updates), state, parts

  rng = np.random.default_rng([seed, 2])
  curve: list[tuple[int, float]] = []
  window: list[float] = []
  report = max(1, steps // 6)
  for i in range(1, steps + 1):
    rows = np.stack([rng.integers(0, len(train_faces), batch), rng.integers(0, 4, batch)], 1)
    data = make_set(train_faces, train_kps, train_photos, rows, rng)
    trainable, state, parts = step(trainable, state, data["images"], data["boxes"],
                                   data["valid"], data["keypoints"])
    window.append(parts.total)  # no sync: the next batch is made while this step runs
    if i % report == 0 or i == steps:
      curve.append((i, float(np.mean([float(x) for x in window]))))
      window = []
      say(f"step {i:4d}  train loss {curve[-1][1]:.4f}  (class {float(parts.classification):.3f}"
          f", box {float(parts.box):.3f}, keypoints {float(parts.keypoints):.3f})")
  params = {**frozen, **trainable}
  after = recall(network, params, held)
  say(f"held-out recall after:  upright {after[0]:.3f}, rotated {after[1]:.3f}, "
      f"{after[2]:.3f} false positives per frame")

  # Ship it: the new weights in a copy of the .tflite, then LiteRT on that file.
  path = models.save_tflite(network, params, out)
  rounded = models.load_network(path)  # the stored (float16-rounded) weights
  lite = models.TFLiteModel(path)
  frames = held["images"][:: max(1, len(held["images"]) // litert_frames)][:litert_frames]
  our_boxes, our_scores = raw_outputs(rounded, rounded.params, frames)
  theirs = [lite(f) for f in frames]
  lite_boxes = np.concatenate([t.raw_boxes for t in theirs])
  lite_scores = np.concatenate([t.raw_scores for t in theirs])
  box_err = float(np.max(np.abs(lite_boxes - our_boxes)) / np.max(np.abs(lite_boxes)))
  score_err = float(np.max(np.abs(lite_scores - our_scores)) / np.max(np.abs(lite_scores)))
  det_jax = detect_raw(our_boxes, our_scores)
  det_lite = detect_raw(lite_boxes, lite_scores)
  same_count = bool(np.array_equal(ja.count(det_jax), ja.count(det_lite)))
  after_rounding = recall(rounded, rounded.params, held)
  det_err = float(np.max(np.abs(np.where(np.asarray(det_jax.valid)[..., None],
                                         np.asarray(det_jax.boxes) - np.asarray(det_lite.boxes),
                                         0.0))))
  say(f"wrote {path} ({os.path.getsize(path)} bytes); LiteRT vs JAX on {len(frames)} frames: "
      f"raw error {max(box_err, score_err):.1e} of scale, same detection counts {same_count}, "
      f"max box difference {det_err:.1e}")
  seconds = time.perf_counter() - start
  say(f"held-out recall of the written file's (float16) weights: upright "
      f"{after_rounding[0]:.3f}, rotated {after_rounding[1]:.3f}, {after_rounding[2]:.3f} "
      "false positives per frame")
  say(f"{seconds:.0f} s")
  return dict(recall_before=before, recall_after=after, recall_written=after_rounding,
              loss_curve=curve,
              litert_error=max(box_err, score_err), same_count=same_count,
              detection_error=det_err, path=str(path), seconds=seconds)


if __name__ == "__main__":
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=600)
  parser.add_argument("--train-images", type=int, default=70,
                      help="training faces used (of 70)")
  parser.add_argument("--eval-images", type=int, default=30, help="held-out faces used (of 30)")
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--learning-rate", type=float, default=2e-3)
  parser.add_argument("--backbone-layers", type=int, default=8,
                      help="weighted backbone layers trained besides the heads (0: heads only)")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--out", default="face_rotated.tflite")
  parser.add_argument("--litert-frames", type=int, default=64,
                      help="held-out frames compared with LiteRT")
  a = parser.parse_args()
  result = main(steps=a.steps, train_images=a.train_images, eval_images=a.eval_images,
                batch=a.batch, learning_rate=a.learning_rate, backbone_layers=a.backbone_layers,
                seed=a.seed, out=a.out, litert_frames=a.litert_frames)
  if not (result["litert_error"] < 1e-5 and result["same_count"]
          and result["detection_error"] < 1e-4):
    raise SystemExit("LiteRT on the written file differs from the JAX network")
