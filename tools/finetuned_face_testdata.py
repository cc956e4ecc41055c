"""Write the fine-tuned face detector and the held-out frames that MediaPipe is run on.

Runs in the project's environment (jax, optax, scikit-image, ai-edge-litert)
and writes, into ``tests/data/finetuned/``:

* ``face_rotated_small.tflite``: ``face_short_range`` fine-tuned to rotated
  faces by ``examples/finetune_face_detector.py`` in its shortened mode, the
  one ``tests/test_finetune_example.py`` runs (24 Adam steps of 8 composites
  of 8 training faces, seed 0; the heads and the last four residual blocks
  trained), written back with :func:`jaxanchors.models.save_tflite`. The run
  is deterministic: two runs give byte-identical files.
* ``heldout_composites.npz`` and ``.json``: a few of the example's held-out
  composites (faces and background photos never seen in training), as the
  uint8 RGB images a MediaPipe user would pass, with their ground-truth
  face boxes; the JSON says where each frame comes from and why it was
  chosen.

Then ``mpvenv/bin/python tools/mediapipe_golden.py --finetuned
tests/data/finetuned/face_rotated_small.tflite`` records what MediaPipe
0.10.21 computes with that file on those frames (see that script).

The frames are stored, not rebuilt at test time: MediaPipe's venv (numpy<2)
cannot import the example (it needs jax, optax and jaxanchors), and the
composites go through scikit-image's float resizing, whose last bits may
change between versions; stored frames keep the recording reproducible.
``tests/test_mediapipe_finetuned.py`` checks that the example's functions
still rebuild them.

The example builds a composite as a float tensor in [-1, 1]. A frame here is
that tensor as uint8 (``round((t + 1) * 127.5)``): for a 128x128 frame,
MediaPipe's letterbox is the identity up to the uint8 -> [-1, 1] conversion.
Frames chosen (by the JAX pipeline on the uint8 frames, which only decides
which frames are interesting; MediaPipe's verdict is recorded separately):

* for 90, 180 and 270 degrees: a face the fine-tuned model finds (IoU >=
  0.5) where the shipped model's detections overlap the face least;
* the first upright face both models find;
* the first rotated face the fine-tuned model still misses;
* ``two_faces``: 64-pixel columns around the 90 and 270 degree faces side by
  side (two faces at their own scale, for NMS);
* ``wide``: the 180 degree face in a 96-row crop scaled by 1.5 (a 192x144
  photo: letterbox padding, a resampling warp, the projection back).

Run from the project root: ``python tools/finetuned_face_testdata.py``.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import pathlib
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "finetune_face_detector.py"
OUT = ROOT / "tests" / "data" / "finetuned"
MODEL_NAME = "face_rotated_small.tflite"
FRAMES_NAME = "heldout_composites"
# The example's shortened mode (tests/test_finetune_example.py).
TRAIN_ARGS = dict(steps=24, train_images=8, eval_images=4, batch=8, litert_frames=8, seed=0)
HELD_OUT_FACES = 30   # the example's default held-out set: 30 faces x 4 rotations x 3


def skimage_version() -> str:
  import skimage  # pylint: disable=import-outside-toplevel
  return skimage.__version__


def load_example():
  """The example module (it is a script, not a package)."""
  spec = importlib.util.spec_from_file_location("finetune_face_detector", EXAMPLE)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def held_out_set(example, *, faces: int = HELD_OUT_FACES, seed: int = 0,
                 first: int | None = None) -> dict[str, np.ndarray]:
  """The example's held-out composites, made as its ``main`` makes them.

  ``first``: only the first composites (they are drawn one after the other
  from one generator, so the first ones do not depend on the rest). Keypoints
  are not drawn from the generator, so zeros stand in for the pseudo-labels
  without changing any image.
  """
  _, held_faces = example.load_faces()
  held_faces = held_faces[:faces]
  photos = [example._photo(n) for n in example.HELD_OUT_PHOTOS]  # pylint: disable=protected-access
  rows = np.array([(i, k) for i in range(len(held_faces)) for k in range(4) for _ in range(3)])
  rows = rows[:first]
  kps = np.zeros((len(held_faces), 6, 2), np.float32)
  return example.make_set(held_faces, kps, photos, rows, np.random.default_rng([seed, 1]))


def to_uint8(tensors: np.ndarray) -> np.ndarray:
  """Model-range tensors in [-1, 1] as uint8 RGB images."""
  return np.clip(np.round((tensors + 1.0) * 127.5), 0, 255).astype(np.uint8)


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """IoU of ``[..., 4]`` xyxy boxes, broadcast."""
  lo, hi = np.maximum(a[..., :2], b[..., :2]), np.minimum(a[..., 2:], b[..., 2:])
  inter = np.prod(np.clip(hi - lo, 0, None), axis=-1)
  area = lambda x: np.prod(np.clip(x[..., 2:] - x[..., :2], 0, None), axis=-1)  # noqa: E731
  return inter / np.maximum(area(a) + area(b) - inter, 1e-12)


def _best_iou(det, boxes: np.ndarray) -> np.ndarray:
  """``[B]``: the largest IoU of a valid detection with the frame's face (0 when none)."""
  iou = _iou(np.asarray(det.boxes, np.float64), np.asarray(boxes, np.float64)[:, :1])
  return np.max(np.where(np.asarray(det.valid), iou, 0.0), axis=-1)


def choose(images: np.ndarray, boxes: np.ndarray, rotation: np.ndarray, shipped, tuned,
           ja) -> list[dict]:
  """The recipes (see :func:`make_frame`) of the frames to record, with the reason."""
  def best(network):
    det = ja.detect_images(images, "face_short_range", max_detections=4, network=network)
    return _best_iou(det, boxes)
  ship, tune = best(shipped), best(tuned)
  picks = []
  for k in (1, 2, 3):
    # The fine-tuned model finds the face; the shipped model's detections overlap it least.
    idx = np.nonzero((rotation == k) & (tune >= 0.5))[0]
    i = int(idx[np.argmin(ship[idx])])
    picks.append({"name": f"rot{90 * k}", "kind": "frame", "held_out_index": [i],
                  "reason": f"rotated {90 * k} degrees: the fine-tuned model finds the face "
                            f"(IoU {tune[i]:.2f}); the shipped model's best IoU with it is "
                            f"{ship[i]:.2f}"})
  i = int(np.nonzero((rotation == 0) & (tune >= 0.5) & (ship >= 0.5))[0][0])
  picks.append({"name": "upright", "kind": "frame", "held_out_index": [i],
                "reason": f"upright: both models find the face (IoU {ship[i]:.2f} shipped, "
                          f"{tune[i]:.2f} fine-tuned)"})
  idx = np.nonzero((rotation != 0) & (tune < 0.5))[0]
  if len(idx):
    i = int(idx[0])
    picks.append({"name": f"missed_rot{90 * int(rotation[i])}", "kind": "frame",
                  "held_out_index": [i],
                  "reason": f"rotated {90 * int(rotation[i])} degrees: the fine-tuned model "
                            f"still misses the face (best IoU {tune[i]:.2f}; shipped "
                            f"{ship[i]:.2f})"})
  # Two faces at their own scale in one 128x128 frame: a 64-pixel column around the face
  # of two rotated frames (faces are at most 64 pixels).
  (i,), (j,) = picks[0]["held_out_index"], picks[2]["held_out_index"]
  picks.append({"name": "two_faces", "kind": "columns", "held_out_index": [i, j],
                "x0": [_window(boxes[i, 0, 0], boxes[i, 0, 2]),
                       _window(boxes[j, 0, 0], boxes[j, 0, 2])],
                "reason": f"the faces of {picks[0]['name']} and {picks[2]['name']} side by "
                          "side (64-pixel columns around each): two faces for NMS"})
  # A wide photo that is not the model input: 96 rows around a face, scaled by 1.5
  # (192x144): letterbox padding, a resampling warp, the projection back.
  (i,) = picks[1]["held_out_index"]
  picks.append({"name": "wide", "kind": "crop_rescale", "held_out_index": [i],
                "y0": _window(boxes[i, 0, 1], boxes[i, 0, 3], size=WIDE_ROWS),
                "rows": WIDE_ROWS, "scale": WIDE_SCALE,
                "reason": f"{picks[1]['name']}'s face in a {WIDE_ROWS}-row crop scaled by "
                          f"{WIDE_SCALE} (bilinear): a 192x144 photo, letterbox padding and a "
                          "warp that resamples"})
  return picks


WIDE_ROWS, WIDE_SCALE = 96, 1.5


def _window(lo: float, hi: float, size: int = 64) -> int:
  """First pixel of a ``size``-pixel window of the 128-pixel frame centred on [lo, hi]."""
  centre = (lo + hi) / 2 * 128
  return int(np.clip(round(centre - size / 2), 0, 128 - size))


def make_frame(recipe: dict, images: np.ndarray, boxes: np.ndarray,
               rotation: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """``(uint8 image, face boxes [F, 4] xyxy normalised to it, rotations [F])`` of a recipe.

  ``images`` are the held-out frames as uint8 ``[B, 128, 128, 3]``, ``boxes``
  ``[B, 1, 4]``. Kinds: ``frame`` (one held-out frame), ``columns`` (64-pixel
  columns starting at ``x0`` of two frames, side by side), ``crop_rescale``
  (``rows`` rows from ``y0``, scaled by ``scale`` with bilinear interpolation).
  """
  idx = recipe["held_out_index"]
  rot = rotation[idx].astype(np.int32)
  if recipe["kind"] == "frame":
    return images[idx[0]], boxes[idx[0]].astype(np.float32), rot
  if recipe["kind"] == "columns":
    parts, out = [], []
    for n, (i, x0) in enumerate(zip(idx, recipe["x0"])):
      parts.append(images[i][:, x0:x0 + 64])
      b = boxes[i, 0] * 128 - np.array([x0, 0, x0, 0]) + np.array([64 * n, 0, 64 * n, 0])
      out.append(b / 128)
    return np.concatenate(parts, axis=1), np.asarray(out, np.float32), rot
  if recipe["kind"] == "crop_rescale":
    import skimage.transform  # pylint: disable=import-outside-toplevel
    y0, rows = recipe["y0"], recipe["rows"]
    crop = images[idx[0]][y0:y0 + rows].astype(np.float64)
    big = skimage.transform.rescale(crop, recipe["scale"], order=1, channel_axis=-1,
                                    preserve_range=True, anti_aliasing=False)
    b = (boxes[idx[0], 0] * 128 - np.array([0, y0, 0, y0])) / np.array([128, rows, 128, rows])
    return (np.clip(np.round(big), 0, 255).astype(np.uint8), b[None].astype(np.float32), rot)
  raise ValueError(f"unknown frame kind {recipe['kind']!r}")


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--out", type=pathlib.Path, default=OUT)
  args = parser.parse_args(argv)
  import jaxanchors as ja  # pylint: disable=import-outside-toplevel
  from jaxanchors import models  # pylint: disable=import-outside-toplevel

  example = load_example()
  args.out.mkdir(parents=True, exist_ok=True)
  model_path = args.out / MODEL_NAME
  result = example.main(out=str(model_path), verbose=False, **TRAIN_ARGS)
  print(f"wrote {model_path}: loss {result['loss_curve'][0][1]:.3f} -> "
        f"{result['loss_curve'][-1][1]:.3f}; example's held-out recall (rotated) "
        f"{result['recall_before'][1]:.3f} -> {result['recall_written'][1]:.3f}", flush=True)

  held = held_out_set(example)
  images = to_uint8(held["images"])
  boxes, rotation = held["boxes"][:, :1], held["rotation"]
  tuned = models.load_network(model_path)
  shipped = models.load_network("face_short_range")
  picks = choose(images, boxes, rotation, shipped, tuned, ja)

  arrays: dict[str, np.ndarray] = {}
  frames = []
  for recipe in picks:
    img, face_boxes, rot = make_frame(recipe, images, boxes, rotation)
    name = recipe["name"]
    arrays[name], arrays[f"{name}_boxes"], arrays[f"{name}_rotations"] = img, face_boxes, rot
    frames.append({**recipe, "height": int(img.shape[0]), "width": int(img.shape[1]),
                   "rotation_degrees": [90 * int(r) for r in rot],
                   "face_boxes_xyxy": [[float(v) for v in b] for b in face_boxes],
                   "sha256_of_uint8_rgb_pixels": hashlib.sha256(img.tobytes()).hexdigest()})

  np.savez_compressed(args.out / f"{FRAMES_NAME}.npz", **arrays)
  doc = {
      "made_by": "python tools/finetuned_face_testdata.py",
      "model": {"file": MODEL_NAME,
                "sha256": hashlib.sha256(model_path.read_bytes()).hexdigest(),
                "source_model": "face_short_range (mediapipe 0.10.21 wheel)",
                "example_arguments": TRAIN_ARGS},
      "frames_from": {"held_out_faces": HELD_OUT_FACES, "seed": 0,
                      "tensor_to_uint8": "round((t + 1) * 127.5)",
                      "face_boxes": "xmin, ymin, xmax, ymax, normalised to the frame",
                      "scikit-image": skimage_version()},
      "frames": frames,
  }
  (args.out / f"{FRAMES_NAME}.json").write_text(json.dumps(doc, indent=1) + "\n")
  for f in frames:
    print(f"{f['name']}: held-out {f['held_out_index']}, {f['width']}x{f['height']}: "
          f"{f['reason']}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
