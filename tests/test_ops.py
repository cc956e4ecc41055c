"""``jaxanchors.ops`` against torchvision: recorded outputs, under jit and vmap, and live.

The recordings come from ``tools/torchvision_golden.py`` (torchvision's CPU
kernels). To compile few programs, every recorded case is padded to ``PAD``
boxes with NaN scores, which the ops document as never kept and suppressing
nothing (tested on its own below).
"""

from __future__ import annotations

import collections
import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxanchors as ja
from jaxanchors import ops

DATA = Path(__file__).parent / "data" / "torchvision" / "ops.npz"
PAD = 256  # boxes per padded case
F32 = np.float32


class Case(collections.namedtuple("Case", "i boxes scores idxs thr nms batched iou")):
  pass


@functools.cache
def _cases() -> tuple[Case, ...]:
  d = np.load(DATA)

  def get(name, i):
    o = d[name + "_offsets"]
    return d[name][o[i]:o[i + 1]]

  out = []
  for i, thr in enumerate(d["thr"].tolist()):
    batched = get("batched_nms", i) if d["batched_recorded"][i] else None
    out.append(Case(i, get("boxes", i), get("scores", i), get("idxs", i), thr, get("nms", i),
                    batched, get("box_iou", i)))
  return tuple(out)


def _padded(case: Case):
  n = len(case.boxes)
  boxes = np.zeros((PAD, 4), F32)
  boxes[:n] = case.boxes
  boxes[n:] = [0, 0, 1, 1]  # real boxes: only their NaN scores keep them out
  scores = np.full(PAD, np.nan, F32)
  scores[:n] = case.scores
  idxs = np.zeros(PAD, np.int32)
  idxs[:n] = case.idxs
  return boxes, scores, idxs


def _small():
  return [c for c in _cases() if len(c.boxes) <= PAD]


def _kept(result, row=()):
  idx, count = np.asarray(result.indices[row]), int(result.count[row])
  assert (idx[:count] >= 0).all() and (idx[count:] == -1).all()
  return idx[:count]


def test_recordings_cover_the_promised_cases():
  cases = _cases()
  assert len(cases) >= 200
  assert len({c.thr for c in cases}) <= 12  # few thresholds: few compilations
  assert {0.0, 0.5, 1.0} <= {c.thr for c in cases}
  assert any(len(c.boxes) == 0 for c in cases)
  assert any(len(c.boxes) > 1024 for c in cases)
  assert any(len(np.unique(c.scores)) < len(c.scores) for c in cases)  # score ties
  assert sum(c.batched is not None and len(np.unique(c.idxs)) > 1 for c in cases) >= 100
  assert any(((c.boxes[:, 2] <= c.boxes[:, 0]) | (c.boxes[:, 3] <= c.boxes[:, 1])).any()
             for c in cases if len(c.boxes))


def _groups(cases):
  """Cases by threshold, each group padded to one batch size with all-NaN frames."""
  groups = collections.defaultdict(list)
  for c in cases:
    groups[c.thr].append(c)
  size = max(len(g) for g in groups.values())
  out = {}
  for thr, group in groups.items():
    arrays = [np.stack(a) for a in zip(*map(_padded, group))]
    fill = size - len(group)
    arrays[1] = np.concatenate([arrays[1], np.full((fill, PAD), np.nan, F32)])
    arrays[0] = np.concatenate([arrays[0], np.zeros((fill, PAD, 4), F32)])
    arrays[2] = np.concatenate([arrays[2], np.zeros((fill, PAD), np.int32)])
    out[thr] = group, arrays
  return out


# Under jit and vmap the threshold is a compile-time constant: two thresholds
# there (every threshold runs through the leading-batch call).
TRANSFORMED = (0.0, 0.5)


def _run(op, mode, thr, *arrays):
  if mode == "batch":  # leading batch dimension; the threshold is no compile-time constant
    return op(*arrays, thr)
  if mode == "jit":
    return jax.jit(op, static_argnames="iou_threshold")(*arrays, iou_threshold=thr)
  return jax.vmap(lambda *a: op(*a, thr))(*arrays)


def _check_groups(op, mode, cases, expected):
  checked = 0
  for thr, (group, arrays) in _groups(cases).items():
    if mode != "batch" and thr not in TRANSFORMED:
      continue
    out = _run(op, mode, thr, *arrays)
    assert out.indices.dtype == jnp.int32 and out.count.dtype == jnp.int32
    assert out.indices.shape == arrays[1].shape and out.count.shape == arrays[1].shape[:1]
    for row, c in enumerate(group):
      np.testing.assert_array_equal(_kept(out, row), expected(c), err_msg=f"case {c.i}, thr {thr}")
      checked += 1
    assert (np.asarray(out.count[len(group):]) == 0).all()  # all-NaN frames keep nothing
  return checked


@pytest.mark.parametrize("mode", ["batch", "jit", "vmap"])
def test_nms_equals_torchvision_recordings(mode):
  def op(boxes, scores, idxs, iou_threshold):  # idxs unused: class-agnostic
    return ops.nms(boxes, scores, iou_threshold)
  checked = _check_groups(op, mode, _small(), lambda c: c.nms)
  assert checked >= (200 if mode == "batch" else 60)


@pytest.mark.parametrize("mode", ["batch", "jit", "vmap"])
def test_batched_nms_equals_torchvision_recordings(mode):
  cases = [c for c in _small() if c.batched is not None]
  checked = _check_groups(ops.batched_nms, mode, cases, lambda c: c.batched)
  assert checked >= (200 if mode == "batch" else 60)


def test_nms_equals_torchvision_on_more_than_1024_boxes():
  big = [c for c in _cases() if len(c.boxes) > PAD]
  assert big
  for c in big:
    np.testing.assert_array_equal(_kept(ops.nms(c.boxes, c.scores, c.thr)), c.nms)


def test_max_output_gives_torchvision_first_kept():
  c = max(_small(), key=lambda c: len(c.nms))
  out = ops.nms(c.boxes, c.scores, c.thr, max_output=5)
  assert out.indices.shape == (5,) and int(out.count) == 5
  np.testing.assert_array_equal(np.asarray(out.indices), c.nms[:5])


def test_box_iou_against_torchvision_recordings():
  cases = [c for c in _cases() if len(c.iou)]
  m = max(len(c.boxes) for c in cases)
  padded = np.zeros((len(cases), m, 4), F32)
  for row, c in enumerate(cases):
    padded[row, :len(c.boxes)] = c.boxes
  all_iou = np.asarray(jax.jit(ops.box_iou)(padded, padded))  # one batched call
  exact = 0
  for row, c in enumerate(cases):
    n = len(c.boxes)
    got, ref = all_iou[row, :n, :n].reshape(-1), c.iou
    nan = np.isnan(ref)
    # torchvision's 0/0 (two zero-area boxes) is 0 here, its -0.0 is 0.0.
    np.testing.assert_array_equal(got[nan], 0)
    want = np.maximum(ref[~nan], 0)
    # MediaPipe's rebuilt x2 moves an IoU by about an ulp of the coordinates.
    np.testing.assert_allclose(got[~nan], want, rtol=0, atol=1e-6, err_msg=f"case {c.i}")
    # Between boxes with dyadic coordinates (the at-threshold pairs) every step is exact.
    dy = np.all(c.boxes == np.round(c.boxes * 4) / 4, axis=1)
    pair = (dy[:, None] & dy[None, :]).reshape(-1) & ~nan
    np.testing.assert_array_equal(got[pair], np.maximum(ref[pair], 0), err_msg=f"case {c.i}")
    exact += pair.sum() > 1
  assert len(cases) > 150 and exact >= 40


@pytest.mark.parametrize("in_fmt", ops.BOX_FORMATS)
@pytest.mark.parametrize("out_fmt", ops.BOX_FORMATS)
def test_box_convert_equals_torchvision_recordings(in_fmt, out_fmt):
  d = np.load(DATA)
  x = d["convert_in"]
  want = d[f"convert_{in_fmt}_{out_fmt}"]
  np.testing.assert_array_equal(np.asarray(ops.box_convert(x, in_fmt, out_fmt)), want)
  got = jax.jit(ops.box_convert, static_argnums=(1, 2))(x, in_fmt, out_fmt)
  np.testing.assert_array_equal(np.asarray(got), want)
  got = jax.vmap(lambda b: ops.box_convert(b, in_fmt, out_fmt))(x)
  np.testing.assert_array_equal(np.asarray(got), want)


# -- documented behaviour, hand-made ----------------------------------------------

def test_equal_scores_keep_input_order():
  boxes = np.array([[0, 0, 1, 1], [5, 5, 6, 6], [0, 0, 1, 1], [9, 9, 10, 10]], F32)
  out = ops.nms(boxes, np.array([0.5, 0.5, 0.5, 0.7], F32), 0.5)
  assert _kept(out).tolist() == [3, 0, 1]  # box 2 duplicates box 0, which ranks first


def test_threshold_compared_in_float64():
  # IoU of these boxes is float32(1/3) = 0.3333333432..., above the float64 1/3.
  boxes = np.array([[0, 0, 2, 1], [1, 0, 3, 1]], F32)
  assert _kept(ops.nms(boxes, np.array([0.9, 0.8], F32), 1 / 3)).tolist() == [0]
  assert _kept(ops.nms(boxes, np.array([0.9, 0.8], F32), 0.3333334)).tolist() == [0, 1]
  # IoU exactly 1/2 at threshold 0.5: kept (strictly greater suppresses).
  boxes = np.array([[0, 0, 3, 1], [1, 0, 4, 1]], F32)
  assert _kept(ops.nms(boxes, np.array([0.9, 0.8], F32), 0.5)).tolist() == [0, 1]
  assert _kept(ops.nms(boxes, np.array([0.9, 0.8], F32), 0.4999)).tolist() == [0]


def test_non_finite_scores_and_boxes_are_never_kept_and_suppress_nothing():
  boxes = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [0, 0, np.nan, 1], [0, 0, 1, 1]], F32)
  scores = np.array([np.nan, 0.5, 0.9, np.inf], F32)
  out = ops.nms(boxes, scores, 0.5)
  assert _kept(out).tolist() == [1]
  out = ops.batched_nms(boxes, scores, np.array([0, 1, 2, 3]), 0.5)
  assert _kept(out).tolist() == [1]


def test_degenerate_boxes_are_kept_and_suppress_nothing():
  boxes = np.array([[0, 0, 1, 1], [0.5, 0.5, 0.5, 0.5], [0.5, 0.5, 0.5, 0.5], [1, 1, 0, 0],
                    [0, 0, 0, 1]], F32)
  out = ops.nms(boxes, np.array([0.1, 0.9, 0.8, 0.7, 0.6], F32), 0.0)
  assert _kept(out).tolist() == [1, 2, 3, 4, 0]


def test_classes_do_not_suppress_each_other():
  boxes = np.array([[0, 0, 1, 1]] * 4, F32)
  scores = np.array([0.1, 0.2, 0.3, 0.4], F32)
  assert _kept(ops.nms(boxes, scores, 0.5)).tolist() == [3]  # class-agnostic
  out = ops.batched_nms(boxes, scores, np.array([7, 0, 7, 0]), 0.5)
  assert _kept(out).tolist() == [3, 2]


def test_empty_inputs():
  out = ops.nms(np.zeros((0, 4), F32), np.zeros(0, F32), 0.5)
  assert out.indices.shape == (0,) and int(out.count) == 0
  out = ops.batched_nms(np.zeros((0, 4), F32), np.zeros(0, F32), np.zeros(0, np.int32), 0.5,
                        max_output=3)
  assert out.indices.tolist() == [-1, -1, -1] and int(out.count) == 0
  out = ops.nms(np.zeros((2, 0, 4), F32), np.zeros((2, 0), F32), 0.5, max_output=2)
  assert out.indices.shape == (2, 2) and out.count.tolist() == [0, 0]
  assert ops.box_iou(np.zeros((0, 4)), np.zeros((3, 4))).shape == (0, 3)


def test_integer_boxes_and_scores():
  boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], np.int32)
  out = ops.nms(boxes, np.array([3, 2, 1], np.int32), 0.5)
  assert _kept(out).tolist() == [0, 2]
  assert ops.box_iou(boxes, boxes).dtype == jnp.float32
  assert ops.box_convert(boxes, "xyxy", "cxcywh").dtype == jnp.float32


def test_ops_is_exported():
  assert ja.ops is ops and "ops" in ja.__all__


@pytest.mark.parametrize("call,exc,match", [
    (lambda: ops.nms(np.zeros((3, 5)), np.zeros(3), 0.5), ValueError, r"boxes must have shape"),
    (lambda: ops.nms(np.zeros(4), np.zeros(1), 0.5), ValueError, r"boxes must have shape"),
    (lambda: ops.nms(np.zeros((3, 4)), np.zeros(2), 0.5), ValueError, r"scores must have shape"),
    (lambda: ops.nms(np.zeros((3, 4)), np.zeros(3, bool), 0.5), TypeError, r"scores must hold"),
    (lambda: ops.nms(np.zeros((3, 4), bool), np.zeros(3), 0.5), TypeError, r"boxes must hold"),
    (lambda: ops.nms(np.zeros((3, 4)), np.zeros(3), -0.1), ValueError, r"iou_threshold must be >= 0"),
    (lambda: ops.nms(np.zeros((3, 4)), np.zeros(3), float("nan")), ValueError, r"iou_threshold"),
    (lambda: ops.nms(np.zeros((3, 4)), np.zeros(3), "0.5"), TypeError, r"iou_threshold"),
    (lambda: ops.nms(np.zeros((3, 4)), np.zeros(3), 0.5, max_output=0), ValueError, r"max_output"),
    (lambda: ops.batched_nms(np.zeros((3, 4)), np.zeros(3), np.zeros(3), 0.5), TypeError,
     r"idxs must have an integer dtype"),
    (lambda: ops.batched_nms(np.zeros((3, 4)), np.zeros(3), np.zeros(4, int), 0.5), ValueError,
     r"idxs must have shape"),
    (lambda: ops.box_iou(np.zeros((3, 4)), np.zeros((3, 3))), ValueError, r"boxes2 must have shape"),
    (lambda: ops.box_convert(np.zeros(4), "xyxy", "xywhr"), ValueError, r"out_fmt must be one of"),
    (lambda: ops.box_convert(np.zeros(4), None, "xyxy"), TypeError, r"in_fmt must be a string"),
    (lambda: ops.box_convert(np.zeros(3), "xyxy", "xywh"), ValueError, r"boxes must have shape"),
])
def test_errors_name_the_argument(call, exc, match):
  with pytest.raises(exc, match=match):
    call()


def test_traced_threshold_is_a_clear_type_error():
  with pytest.raises(TypeError, match="iou_threshold must be a concrete Python number"):
    jax.jit(ops.nms)(np.zeros((3, 4), F32), np.zeros(3, F32), 0.5)


# -- live against torchvision, when it is installed -----------------------------

def test_live_against_torchvision():
  try:
    import torch
    import torchvision.ops as tvo
  except Exception as e:  # noqa: BLE001 - any import failure means: not available
    pytest.skip(f"torchvision is not importable here ({type(e).__name__}); "
                "the recorded cases above cover the comparison")
  rng = np.random.default_rng(12345)
  for _ in range(30):
    n = int(rng.integers(1, PAD))
    xy = rng.random((n, 2)) * 200
    boxes = np.concatenate([xy, xy + rng.random((n, 2)) * 80], 1).astype(F32)
    scores = (rng.integers(0, 10, n) / 10).astype(F32)
    idxs = rng.integers(0, 4, n)
    thr = float(rng.choice([0.0, 0.3, 0.5, 1.0]))
    tb, ts = torch.from_numpy(boxes), torch.from_numpy(scores)
    pb, ps, pk = _padded(Case(0, boxes, scores, idxs, thr, None, None, None))  # one compilation
    np.testing.assert_array_equal(_kept(ops.nms(pb, ps, thr)), tvo.nms(tb, ts, thr).numpy())
    want = tvo.batched_nms(tb, ts, torch.from_numpy(idxs), thr).numpy()
    np.testing.assert_array_equal(_kept(ops.batched_nms(pb, ps, pk, thr)), want)


def test_readme_example(capsys):
  text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
  section = text.split("### torchvision-style ops", 1)[1]
  code = section.split("```py\n", 1)[1].split("```", 1)[0]
  exec(code, {})  # noqa: S102 - our own README
  printed = capsys.readouterr().out.strip()
  comment = code.strip().splitlines()[-1].split("#")[1].strip()
  assert printed == comment == "[ 0  1  2 -1] 3"
