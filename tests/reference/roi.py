"""NumPy reference for docs/semantics.md §7: detections to rects, association, rotated crops.

Plain loops over scalars, written from the description alone (float32 where
MediaPipe computes in float, Python floats where it computes in double, the C
library's ``math`` functions). Independent of the library under test (imports only NumPy and math).

Detections are dicts as in :mod:`tests.reference.nms` (``xmin``, ``ymin``,
``width``, ``height``, ``keypoints``); rects are dicts with ``x_center``,
``y_center``, ``width``, ``height``, ``rotation``.
"""

from __future__ import annotations

import math

import numpy as np

F = np.float32


def _normalize_radians(angle: F) -> F:
  a = float(angle)
  return F(a - 2 * math.pi * math.floor((a - (-math.pi)) / (2 * math.pi)))


def target_angle(degrees: float | None = None, radians: float | None = None) -> F:
  if radians is not None:
    return F(radians)
  return F(math.pi * float(F(degrees)) / 180.0)


def detection_to_rect(det: dict, *, conversion: str, start: int | None, end: int | None,
                      target: F | None, width: int, height: int) -> dict:
  """DetectionsToRects (``"box"``, ``"keypoints"``) or AlignmentPointsRects (``"alignment"``)."""
  kps = [(F(x), F(y)) for x, y in det["keypoints"]]
  W, H = F(width), F(height)
  if conversion == "box":
    w, h = F(det["width"]), F(det["height"])
    rect = {"x_center": F(F(det["xmin"]) + w / F(2)), "y_center": F(F(det["ymin"]) + h / F(2)),
            "width": w, "height": h}
  elif conversion == "keypoints":
    xmin = ymin = F(np.finfo(F).max)
    xmax = ymax = F(np.finfo(F).min)
    for x, y in kps:
      xmin, ymin, xmax, ymax = min(xmin, x), min(ymin, y), max(xmax, x), max(ymax, y)
    rect = {"x_center": F((xmin + xmax) / F(2)), "y_center": F((ymin + ymax) / F(2)),
            "width": F(xmax - xmin), "height": F(ymax - ymin)}
  else:
    xc, yc = F(kps[start][0] * W), F(kps[start][1] * H)
    xs, ys = F(kps[end][0] * W), F(kps[end][1] * H)
    dx, dy = F(xs - xc), F(ys - yc)
    size = F(F(np.sqrt(F(F(dx * dx) + F(dy * dy)))) * F(2))
    rect = {"x_center": F(xc / W), "y_center": F(yc / H), "width": F(size / W),
            "height": F(size / H)}
  rect["rotation"] = F(0)
  if start is not None:
    x0, y0 = F(kps[start][0] * W), F(kps[start][1] * H)
    x1, y1 = F(kps[end][0] * W), F(kps[end][1] * H)
    rect["rotation"] = _normalize_radians(F(target - F(math.atan2(float(-(y1 - y0)),
                                                                  float(x1 - x0)))))
  return rect


def transform_rect(rect: dict, *, scale_x=1.0, scale_y=1.0, shift_x=0.0, shift_y=0.0,
                   square_long=False, square_short=False, width: int, height: int) -> dict:
  """RectTransformation on a normalised rect (the rotation is kept as it was)."""
  W, H = F(width), F(height)
  sx, sy = F(shift_x), F(shift_y)
  w, h, r = rect["width"], rect["height"], rect["rotation"]
  out = dict(rect)
  if r == 0:
    out["x_center"] = F(rect["x_center"] + F(w * sx))
    out["y_center"] = F(rect["y_center"] + F(h * sy))
  else:
    c, s = F(math.cos(float(r))), F(math.sin(float(r)))
    x_shift = F(F(F(F(F(W * w) * sx) * c) - F(F(F(H * h) * sy) * s)) / W)
    y_shift = F(F(F(F(F(W * w) * sx) * s) + F(F(F(H * h) * sy) * c)) / H)
    out["x_center"] = F(rect["x_center"] + x_shift)
    out["y_center"] = F(rect["y_center"] + y_shift)
  if square_long or square_short:
    side = max(F(w * W), F(h * H)) if square_long else min(F(w * W), F(h * H))
    w, h = F(side / W), F(side / H)
  out["width"], out["height"] = F(w * F(scale_x)), F(h * F(scale_y))
  return out


def _iou(a: dict, b: dict) -> F:
  def rect(r):
    x = F(float(r["x_center"]) - float(r["width"]) / 2.0)
    y = F(float(r["y_center"]) - float(r["height"]) / 2.0)
    return x, y, F(x + r["width"]), F(y + r["height"]), r["width"] >= 0 and r["height"] >= 0
  ax, ay, aX, aY, ae = rect(a)
  bx, by, bX, bY, be = rect(b)
  if not (ae and be) or bX < ax or aX < bx or bY < ay or aY < by:
    return F(0)
  inter = F(F(min(aX, bX) - max(ax, bx)) * F(min(aY, bY) - max(ay, by)))
  norm = F(F(F(F(aX - ax) * F(aY - ay)) + F(F(bX - bx) * F(bY - by))) - inter)
  return F(inter / norm) if norm > 0 else F(0)


def associate(rects: list[dict], min_similarity: float) -> list[int]:
  """AssociationNormRect on one list: indices of the survivors, in list order."""
  kept: list[int] = []
  for i, r in enumerate(rects):
    kept = [j for j in kept if not _iou(r, rects[j]) > F(min_similarity)]
    kept.append(i)
  return kept


# -- the crop ------------------------------------------------------------------------


def _lu_solve(a: list[list[float]], b: list[float]) -> list[float]:
  m = len(a)
  for i in range(m):
    k = i
    for j in range(i + 1, m):
      if abs(a[j][i]) > abs(a[k][i]):
        k = j
    if k != i:
      a[i], a[k] = a[k], a[i]
      b[i], b[k] = b[k], b[i]
    d = -1.0 / a[i][i]
    for j in range(i + 1, m):
      alpha = a[j][i] * d
      for c in range(i + 1, m):
        a[j][c] += alpha * a[i][c]
      b[j] += alpha * b[i]
    a[i][i] = -d
  for i in range(m - 1, -1, -1):
    s = b[i]
    for k in range(i + 1, m):
      s -= a[i][k] * b[k]
    b[i] = s * a[i][i]
  return b


def _inverse3(s):
  det = (s[0][0] * (s[1][1] * s[2][2] - s[1][2] * s[2][1])
         - s[0][1] * (s[1][0] * s[2][2] - s[1][2] * s[2][0])
         + s[0][2] * (s[1][0] * s[2][1] - s[1][1] * s[2][0]))
  d = 1.0 / det
  return [(s[1][1] * s[2][2] - s[1][2] * s[2][1]) * d, (s[0][2] * s[2][1] - s[0][1] * s[2][2]) * d,
          (s[0][1] * s[1][2] - s[0][2] * s[1][1]) * d, (s[1][2] * s[2][0] - s[1][0] * s[2][2]) * d,
          (s[0][0] * s[2][2] - s[0][2] * s[2][0]) * d, (s[0][2] * s[1][0] - s[0][0] * s[1][2]) * d,
          (s[1][0] * s[2][1] - s[1][1] * s[2][0]) * d, (s[0][1] * s[2][0] - s[0][0] * s[2][1]) * d,
          (s[0][0] * s[1][1] - s[0][1] * s[1][0]) * d]


def crop(image: np.ndarray, rect: dict, *, out_w: int, out_h: int, keep_aspect: bool,
         value_range: tuple[float, float], zero_border: bool) -> tuple[np.ndarray, list]:
  """ImageToTensor (CPU) for one uint8 image and one rect: ``(tensor, padding)``."""
  img_h, img_w = image.shape[:2]
  cx, cy = F(rect["x_center"] * F(img_w)), F(rect["y_center"] * F(img_h))
  w, h = F(rect["width"] * F(img_w)), F(rect["height"] * F(img_h))
  rotation = F(rect["rotation"])
  padding = [F(0)] * 4
  if keep_aspect:
    t = F(F(out_h) / F(out_w))
    r = F(h / w)
    if t > r:
      w, h = w, F(w * t)
      padding = [F(0), F(F(F(1) - F(r / t)) / F(2))] * 2
    else:
      w, h = F(h / t), h
      padding = [F(F(F(1) - F(t / r)) / F(2)), F(0)] * 2
  # cv::RotatedRect(centre, size, degrees).points()
  degrees = F(float(F(rotation * F(180))) / math.pi)
  rad = float(degrees) * math.pi / 180.0
  b, a = F(F(math.cos(rad)) * F(0.5)), F(F(math.sin(rad)) * F(0.5))
  p0 = (F(F(cx - F(a * h)) - F(b * w)), F(F(cy + F(b * h)) - F(a * w)))
  p1 = (F(F(cx + F(a * h)) - F(b * w)), F(F(cy - F(b * h)) - F(a * w)))
  src = [p0, p1, (F(F(2) * cx - p0[0]), F(F(2) * cy - p0[1])),
         (F(F(2) * cx - p1[0]), F(F(2) * cy - p1[1]))]
  dst = [(F(0), F(out_h)), (F(0), F(0)), (F(out_w), F(0)), (F(out_w), F(out_h))]
  sys_a = [[0.0] * 8 for _ in range(8)]
  sys_b = [0.0] * 8
  for i in range(4):
    (sx, sy), (dx, dy) = src[i], dst[i]
    sys_a[i][0] = sys_a[i + 4][3] = float(sx)
    sys_a[i][1] = sys_a[i + 4][4] = float(sy)
    sys_a[i][2] = sys_a[i + 4][5] = 1.0
    sys_a[i][6], sys_a[i][7] = float(F(-sx * dx)), float(F(-sy * dx))
    sys_a[i + 4][6], sys_a[i + 4][7] = float(F(-sx * dy)), float(F(-sy * dy))
    sys_b[i], sys_b[i + 4] = float(dx), float(dy)
  x = _lu_solve(sys_a, sys_b)
  m = _inverse3([[x[0], x[1], x[2]], [x[3], x[4], x[5]], [x[6], x[7], 1.0]])
  bh = min(16, out_h)
  bw = min(1024 // bh, out_w)
  scale = F((value_range[1] - value_range[0]) / 255.0)
  out = np.zeros((out_h, out_w, image.shape[2]), F)
  for yy in range(out_h):
    for xx in range(out_w):
      x0, x1 = (xx // bw) * bw, xx % bw
      xw = m[0] * x0 + m[1] * yy + m[2]
      yw = m[3] * x0 + m[4] * yy + m[5]
      ww = m[6] * x0 + m[7] * yy + m[8]
      wd = ww + m[6] * x1
      wd = 32.0 / wd if wd else 0.0
      fx = max(-2.0**31, min(2.0**31 - 1, (xw + m[0] * x1) * wd))
      fy = max(-2.0**31, min(2.0**31 - 1, (yw + m[3] * x1) * wd))
      ix, iy = int(np.rint(fx)), int(np.rint(fy))
      col, row, ax, ay = ix >> 5, iy >> 5, ix & 31, iy & 31
      for ch in range(image.shape[2]):
        acc = 0
        for dy_, wy in ((0, 32 - ay), (1, ay)):
          for dx_, wx in ((0, 32 - ax), (1, ax)):
            r, c = row + dy_, col + dx_
            if zero_border and not (0 <= r < img_h and 0 <= c < img_w):
              continue
            r, c = min(max(r, 0), img_h - 1), min(max(c, 0), img_w - 1)
            acc += int(image[r, c, ch]) * wy * wx
        out[yy, xx, ch] = F(F((acc + 512) >> 10) * scale) + F(value_range[0])
  return out, padding


def project_landmark(x: float, y: float, rect: dict) -> tuple[F, F]:
  """LandmarkProjection with a NORM_RECT (no image size)."""
  x, y = F(F(x) - F(0.5)), F(F(y) - F(0.5))
  r = float(rect["rotation"])
  c, s = F(math.cos(r)), F(math.sin(r))
  nx, ny = F(F(c * x) - F(s * y)), F(F(s * x) + F(c * y))
  return (F(F(nx * rect["width"]) + rect["x_center"]),
          F(F(ny * rect["height"]) + rect["y_center"]))
