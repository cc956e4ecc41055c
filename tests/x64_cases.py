"""The main paths of decode, NMS, ops and detect on float32 inputs, for
``test_pipeline.test_x64_mode_gives_the_same_bits``: run here in the test's process and, through
:func:`main`, in a fresh one with ``jax_enable_x64`` set."""

from __future__ import annotations

import jax
import numpy as np

import jaxanchors as ja
from jaxanchors import ops, pipeline, presets


def cases() -> dict[str, list[np.ndarray]]:
  """Named results, each as its list of arrays."""
  rng = np.random.default_rng(3)
  out = {}
  face = presets.get("face_short_range")
  boxes = rng.normal(0, 6, (4, 896, 16)).astype(np.float32)
  scores = rng.normal(-3, 3, (4, 896, 1)).astype(np.float32)
  scores[1, :300, 0] = 2.0  # a frame with many candidates: a larger bucket
  anchors = ja.generate_anchors(face.anchors)
  out["decode"] = ja.decode(boxes, scores, anchors, face.decoder)
  # WEIGHTED here; DEFAULT through ops.nms and the ssdlite_coco preset below.
  nms = ja.NmsOptions(min_suppression_threshold=0.3, overlap_type="INTERSECTION_OVER_UNION")
  out["nms WEIGHTED"] = ja.non_max_suppression(out["decode"], nms, max_detections=12,
                                                return_indices=True)
  c = rng.uniform(0, 1, (2048, 2)).astype(np.float32)
  many = ja.Detections(np.concatenate([c - 0.01, c + 0.01], -1), np.zeros((2048, 0, 2), np.float32),
                       rng.random(2048, np.float32), np.zeros(2048, np.int32), rng.random(2048) < 0.8)
  # 2048 rows: the tiled DEFAULT engine (256-row tiles for 200 outputs).
  out["ops.nms"] = tuple(ops.nms(many.boxes, many.scores, 0.5, max_output=200))
  padding = np.array([0.0, 0.1, 0.0, 0.1], np.float32)
  out["detect"] = pipeline.detect(boxes, scores, face, max_detections=12, transform=padding)
  # The same program as "detect" (the threshold is a value of it).
  out["detect thr"] = pipeline.detect(boxes, scores, face, max_detections=12, transform=padding,
                                      min_score_thresh=0.3)
  out["detect empty"] = pipeline.detect(boxes[:0], scores[:0], face, max_detections=12)
  # Multi-class sigmoid scores, DEFAULT NMS and the projection through a letterbox's matrix.
  sb = rng.normal(0, 1, (2, 2034, 4)).astype(np.float32)
  ss = rng.normal(-4, 2, (2, 2034, 91)).astype(np.float32)
  t = ja.letterbox(np.zeros((2, 60, 80, 3), np.uint8), face.preprocessing)[1]  # padded
  out["detect ssdlite_coco"] = pipeline.detect(sb, ss, "ssdlite_coco", max_detections=8,
                                               transform=t)
  return {k: [np.asarray(a) for a in jax.tree.leaves(v)] for k, v in out.items()}


def main(path: str) -> None:
  """Enables x64 (before any array exists), then writes :func:`cases` to ``path``."""
  jax.config.update("jax_enable_x64", True)
  results = cases()
  # float64 inputs work too under x64.
  face = presets.get("face_short_range")
  d = pipeline.detect(np.zeros((2, 896, 16)), np.full((2, 896, 1), 3.0), face, max_detections=4)
  assert d.boxes.dtype == np.float64 and int(d.valid.sum()) == 2, d
  np.savez(path, **{f"{k}|{i}": a for k, v in results.items() for i, a in enumerate(v)})
