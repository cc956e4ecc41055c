"""What ``dtype="bfloat16"`` does to the detections, on every recorded photo.

For each recorded MediaPipe case (``tests/data/mediapipe``) this runs
``jaxanchors.detect_images`` on the photo with the case's preset, once in
float32 and once with the network in bfloat16, matches every float32
detection to the bfloat16 detection it overlaps most, and prints one row per
model family: detections kept (IoU >= 0.5), the smallest IoU of a kept one,
and the largest score and keypoint change (normalised image units)::

    python tools/bfloat16_effect.py

Needs ``pip install -e '.[models,test]'`` (scikit-image rebuilds the photos).
"""

from __future__ import annotations

import collections
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import jaxanchors as ja  # noqa: E402
from jaxanchors import models, presets  # noqa: E402
import mediapipe_data  # noqa: E402

FAMILY = {"face_short_range": "face short range", "face_full_range": "face full range",
          "palm_lite": "palm lite/full", "palm_full": "palm lite/full", "pose": "pose"}
PRESET = {"face_short_range": "face_short_range", "face_full_range": "face_full_range",
          "palm_lite": "palm", "palm_full": "palm", "pose": "pose"}


def main() -> None:
  rows = collections.defaultdict(lambda: {"photos": 0, "kept": 0, "total": 0, "iou": 1.0,
                                          "score": 0.0, "keypoint": 0.0})
  for name in mediapipe_data.CASES:
    case = mediapipe_data.load(name)
    model = case.model
    preset = presets.get(PRESET[model])     # palm_lite runs with the palm preset
    image = mediapipe_data.photo(case)[None]
    net = models.load_network(model)
    a = ja.detect_images(image, preset, max_detections=16, network=net)
    b = ja.detect_images(image, preset, max_detections=16, network=net, dtype="bfloat16")
    a, b = [ja.Detections(*(np.asarray(x)[0] for x in d)) for d in (a, b)]
    row = rows[FAMILY[model]]
    row["photos"] += 1
    va, vb = np.flatnonzero(a.valid), np.flatnonzero(b.valid)
    row["total"] += len(va)
    if not len(va):
      continue
    iou = np.asarray(ja.overlap(a.boxes[va][:, None], b.boxes[vb][None],
                                overlap_type="INTERSECTION_OVER_UNION"))
    for k, i in enumerate(va):
      if not len(vb) or iou[k].max() < 0.5:
        continue
      j = vb[int(iou[k].argmax())]
      row["kept"] += 1
      row["iou"] = min(row["iou"], float(iou[k].max()))
      row["score"] = max(row["score"], float(abs(a.scores[i] - b.scores[j])))
      row["keypoint"] = max(row["keypoint"], float(np.abs(a.keypoints[i] - b.keypoints[j]).max()))
  print("| model | photos | detections kept | min IoU with float32 | max score change "
        "| max keypoint change |")
  print("| --- | --- | --- | --- | --- | --- |")
  for family, r in rows.items():
    print(f"| {family} | {r['photos']} | {r['kept']} of {r['total']} | {r['iou']:.3f} "
          f"| {r['score']:.4f} | {r['keypoint']:.4f} |")


if __name__ == "__main__":
  main()
