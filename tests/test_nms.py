"""NMS (spec §3): the NumPy reference on random and fixed cases, eager / jit / vmap."""

from __future__ import annotations

import dataclasses
import functools
import inspect

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jaxanchors import _compaction as compaction
from jaxanchors import nms
from jaxanchors.boxes import OverlapType
from jaxanchors.detections import Detections
from jaxanchors.nms import NmsAlgorithm
from jaxanchors.nms import NmsOptions
from jaxanchors.nms import non_max_suppression
from _util import count_traces, eager_and_jit, reference_dicts, sweep
from reference.nms import non_max_suppression as ref_nms

F32 = np.float32
IOU = OverlapType.INTERSECTION_OVER_UNION
N = 10  # slots of the random (and padded hand-written) cases
MAX_DETECTIONS = 6  # < N, so the static cut is exercised too
THRESHOLDS = [0.0, 0.1, 0.3, 0.5, 0.7, 0.99, 1.0]


# -- reference plumbing -------------------------------------------------------------


def _candidates(d: Detections) -> np.ndarray:
  """Slot indices that may take part (valid, finite score, box and keypoints), in slot order."""
  ok = (np.asarray(d.valid) & np.isfinite(d.scores) & np.isfinite(d.boxes).all(-1)
        & np.isfinite(d.keypoints).all((-2, -1)))
  return np.flatnonzero(ok)


def _ref_options(o: NmsOptions) -> dict:
  return {f.name: (getattr(o, f.name).name if hasattr(getattr(o, f.name), "name")
                   else getattr(o, f.name)) for f in dataclasses.fields(o)}


def _reference(d: Detections, o: NmsOptions, max_detections: int,
               top_k: int | None = None) -> list[dict]:
  """The reference on the candidates of one frame, cut to ``max_detections`` outputs.

  With ``top_k``: the documented pre-selection (the ``top_k`` best candidates
  by score, ties to the lower slot; for DEFAULT among those not below an
  active ``min_score_threshold``), handed over in slot order.
  """
  d = Detections(*(np.asarray(a) for a in d))
  cand = _candidates(d)
  if top_k is not None:
    pool = cand
    if o.algorithm is NmsAlgorithm.DEFAULT and o.min_score_threshold > 0:
      pool = pool[d.scores[pool] >= F32(o.min_score_threshold)]
    ranked = pool[np.argsort(-d.scores[pool], kind="stable")]
    cand = np.sort(ranked[:top_k])
  return ref_nms(reference_dicts(d, cand), _ref_options(o))[:max_detections]


def _assert_matches(out: Detections, idx, ref: list[dict], d: Detections, o: NmsOptions,
                    max_detections: int):
  """Same count, order, scores and classes; boxes/keypoints within 1e-6; dtypes; zero fill."""
  out, idx = _numpy((out, idx))
  k = d.keypoints.shape[-2]
  assert out.boxes.shape == (max_detections, 4) and out.boxes.dtype == jnp.float32
  assert out.keypoints.shape == (max_detections, k, 2) and out.keypoints.dtype == jnp.float32
  assert out.scores.shape == (max_detections,) and out.scores.dtype == jnp.float32
  assert out.classes.shape == (max_detections,) and out.classes.dtype == jnp.int32
  assert out.valid.shape == (max_detections,) and out.valid.dtype == jnp.bool_
  assert idx.shape == (max_detections,) and idx.dtype == jnp.int32
  m = len(ref)
  np.testing.assert_array_equal(out.valid, np.arange(max_detections) < m)
  np.testing.assert_array_equal(idx, [r["anchor_index"] for r in ref] + [-1] * (max_detections - m))
  np.testing.assert_array_equal(out.scores[:m], np.array([r["score"] for r in ref], F32))
  np.testing.assert_array_equal(out.classes[:m], [r["label_id"] for r in ref])
  want = np.array([[r["xmin"], r["ymin"], F32(r["xmin"] + r["width"]),
                    F32(r["ymin"] + r["height"])] for r in ref], F32).reshape(m, 4)
  np.testing.assert_allclose(out.boxes[:m], want, rtol=0, atol=1e-6)
  if k:
    kp = np.array([r["keypoints"] for r in ref], F32).reshape(m, k, 2)
    np.testing.assert_allclose(out.keypoints[:m], kp, rtol=0, atol=1e-6)
  if o.algorithm is NmsAlgorithm.DEFAULT:
    # Retained detections are emitted unchanged.
    sel = np.asarray(idx[:m])
    np.testing.assert_array_equal(out.boxes[:m], np.asarray(d.boxes)[sel])
    np.testing.assert_array_equal(out.keypoints[:m], np.asarray(d.keypoints)[sel])
  # Unused slots are zero-filled: nothing (NaN included) leaks from ignored inputs.
  for a in (out.boxes, out.keypoints, out.scores, out.classes):
    assert not np.any(np.asarray(a)[m:])


@functools.lru_cache(maxsize=None)
def _jitted(o: NmsOptions, max_detections: int, top_k):
  return jax.jit(lambda d: non_max_suppression(d, o, max_detections=max_detections, top_k=top_k,
                                               return_indices=True))


def _check_three_ways(cases: list[Detections], o: NmsOptions, max_detections: int,
                      top_k: int | None = None):
  """Each case eager and under jit; all stacked under jax.vmap; every slice vs its reference."""
  refs = [_reference(c, o, max_detections, top_k) for c in cases]
  run = functools.partial(non_max_suppression, options=o, max_detections=max_detections,
                          top_k=top_k, return_indices=True)
  for c, ref in zip(cases, refs):
    for out, idx in eager_and_jit(run, c, jitted=_jitted(o, max_detections, top_k)):
      _assert_matches(out, idx, ref, c, o, max_detections)
  # Always a stack of 3 (cases repeated), so stacks of equal shapes share one program.
  stack = (cases * 3)[:max(3, len(cases))]
  stacked = Detections(*(np.stack(a) for a in zip(*stack)))
  outs, idxs = _numpy(jax.vmap(lambda d: non_max_suppression(
      d, o, max_detections=max_detections, top_k=top_k, return_indices=True))(stacked))
  for i, (c, ref) in enumerate(zip(cases, refs)):
    _assert_matches(Detections(*(a[i] for a in outs)), idxs[i], ref, c, o, max_detections)
  return refs


def _numpy(tree):
  return jax.tree.map(np.asarray, tree)


def _dets(boxes, scores, *, keypoints=None, classes=None, valid=None, k=1) -> Detections:
  """A hand-written case, padded to the shapes of the random tests (``N`` slots,
  ``k`` keypoints) with invalid NaN slots and zero keypoints, so it reuses their
  compiled programs (and checks that invalid slots are ignored)."""
  boxes = np.asarray(boxes, F32).reshape(-1, 4)
  n = boxes.shape[0]
  kp = np.zeros((n, k, 2), F32)
  if keypoints is not None:
    keypoints = np.asarray(keypoints, F32)
    kp[:, :keypoints.shape[1]] = keypoints
  d = Detections(
      boxes=boxes, keypoints=kp, scores=np.asarray(scores, F32),
      classes=np.zeros(n, np.int32) if classes is None else np.asarray(classes, np.int32),
      valid=np.ones(n, bool) if valid is None else np.asarray(valid, bool))
  pad = N - n
  if pad <= 0:
    return d
  fill = Detections(np.full((pad, 4), np.nan, F32), np.full((pad, k, 2), np.nan, F32),
                    np.full(pad, 2.0, F32), np.full(pad, 9, np.int32), np.zeros(pad, bool))
  return Detections(*(np.concatenate([a, b]) for a, b in zip(d, fill)))


# -- random detection sets ----------------------------------------------------------


LAYOUTS = ["clusters", "duplicates", "grid", "random"]
SCORE_MODES = ["distinct", "ties", "signed"]
INVALID_RATES = [0.0, 0.2, 1.0]


def _random_case(rng, k, layout=None, score_mode=None, degenerate=None, nonfinite=None,
                 invalid_rate=None) -> Detections:
  """Clusters, exact duplicates, grid-aligned boxes (exact overlap values such as
  1/2 and 1/3), score ties, signed zeros, zero-area and negative-size boxes,
  NaN/inf boxes, keypoints and scores, invalid slots (sometimes all). Unset choices are
  drawn from ``rng``."""
  def pick(value, options):
    return options[rng.integers(len(options))] if value is None else value

  layout = pick(layout, LAYOUTS)
  if layout == "random":
    xy = rng.uniform(-0.2, 1.0, (N, 2))
    wh = rng.uniform(0.02, 0.6, (N, 2))
  else:
    grid = 1 / 8
    centres = rng.integers(0, 9, (rng.integers(1, 4), 2)) * grid
    which = rng.integers(0, len(centres), N)
    wh = rng.integers(1, 5, (N, 2)) * grid
    xy = centres[which] - wh / 2
    if layout == "clusters":
      xy = xy + rng.normal(0, 0.02, (N, 2))
      wh = wh * rng.uniform(0.8, 1.25, (N, 2))
    elif layout == "duplicates":
      xy[1::2], wh[1::2] = xy[::2], wh[::2]
  boxes = np.concatenate([xy, xy + wh], axis=1).astype(F32)
  if pick(degenerate, [False, True]):  # zero area, negative width or height
    m = rng.random(N) < 0.25
    boxes[m, 2] = boxes[m, 0] - rng.choice([0.0, 0.05], m.sum())
    m = rng.random(N) < 0.1
    boxes[m, 3] = boxes[m, 1]
  score_mode = pick(score_mode, SCORE_MODES)
  if score_mode == "distinct":
    scores = rng.uniform(0, 1, N)
  elif score_mode == "ties":
    scores = rng.choice([0.25, 0.5, 0.75, 0.9], N)
  else:
    scores = rng.choice([-0.5, -0.0, 0.0, 0.3, 0.3, 0.8], N)
  scores = scores.astype(F32)
  nonfinite = pick(nonfinite, [False, True])
  if nonfinite:  # valid or not
    m = rng.random(N) < 0.2
    boxes[m, rng.integers(0, 4)] = rng.choice([np.nan, np.inf, -np.inf])
    m = rng.random(N) < 0.15
    scores[m] = rng.choice([np.nan, np.inf, -np.inf], m.sum())
  valid = rng.random(N) >= pick(invalid_rate, INVALID_RATES)
  keypoints = np.round(rng.uniform(0, 1, (N, k, 2)), 3).astype(F32)
  if nonfinite and k:
    m = rng.random(N) < 0.15
    keypoints[m, rng.integers(0, k), rng.integers(0, 2)] = rng.choice([np.nan, np.inf, -np.inf])
  classes = rng.integers(0, 4, N).astype(np.int32)
  return Detections(boxes, keypoints, scores, classes, valid)


@st.composite
def detection_sets(draw, k: int) -> Detections:
  """:func:`_random_case` with its structural choices drawn by hypothesis."""
  return _random_case(np.random.default_rng(draw(st.integers(0, 2**32 - 1))), k,
                      layout=draw(st.sampled_from(LAYOUTS)),
                      score_mode=draw(st.sampled_from(SCORE_MODES)),
                      degenerate=draw(st.booleans()), nonfinite=draw(st.booleans()),
                      invalid_rate=draw(st.sampled_from(INVALID_RATES)))


def _options_pool(algorithm: str) -> list[tuple[NmsOptions, int]]:
  """(options, K): every threshold, overlap type, min_score on/off, several limits.

  A finite pool keeps the number of programs compiled under a user's
  ``jax.jit`` (one per options object) small; eager calls and ``jax.vmap``
  take thresholds as values and never recompile for them, and
  :func:`test_random_thresholds` covers arbitrary threshold values.
  """
  pool = []
  for i, t in enumerate(THRESHOLDS + [0.45]):
    o = NmsOptions(algorithm=algorithm, min_suppression_threshold=t,
                   overlap_type=list(OverlapType)[i % 3],
                   min_score_threshold=[-1.0, 0.45, 0.0, 0.6][i % 4],
                   max_num_detections=[-1, 2, 5, 1][(i // 2) % 4])
    pool.append((o, 1 if algorithm == "DEFAULT" else 2 * (i % 2)))
  return pool


POOL = {a: _options_pool(a) for a in ("DEFAULT", "WEIGHTED")}


@given(data=st.data())
def test_default_matches_reference(data):
  o, k = data.draw(st.sampled_from(POOL["DEFAULT"]))
  cases = [data.draw(detection_sets(k=k)) for _ in range(3)]
  _check_three_ways(cases, o, MAX_DETECTIONS)


# The slowest NMS sweep; the hand-written and larger cases below cover the same
# engines and options, so CI draws 30 examples (dev: 300).
@sweep(30)
@given(data=st.data())
def test_weighted_matches_reference(data):
  o, k = data.draw(st.sampled_from(POOL["WEIGHTED"]))
  cases = [data.draw(detection_sets(k=k)) for _ in range(3)]
  _check_three_ways(cases, o, MAX_DETECTIONS)


@pytest.mark.parametrize("algorithm", ["DEFAULT", "WEIGHTED"])
def test_random_thresholds(algorithm):
  """Arbitrary float thresholds (values, so no recompilation): eager and jax.vmap."""
  rng = np.random.default_rng(11)
  k = 1 if algorithm == "DEFAULT" else 2
  for _ in range(8):
    cases = [_random_case(rng, k) for _ in range(3)]
    o = NmsOptions(algorithm=algorithm, min_suppression_threshold=float(rng.uniform(0, 1)),
                   overlap_type=int(rng.integers(1, 4)),
                   min_score_threshold=float(rng.choice([-1.0, rng.uniform(0, 1)])),
                   max_num_detections=int(rng.choice([-1, 3])))
    refs = [_reference(c, o, MAX_DETECTIONS) for c in cases]
    stacked = Detections(*(np.stack(a) for a in zip(*cases)))
    outs, idxs = _numpy(jax.vmap(lambda d: non_max_suppression(  # noqa: B023
        d, o, max_detections=MAX_DETECTIONS, return_indices=True))(stacked))
    for i, (c, ref) in enumerate(zip(cases, refs)):
      out, idx = non_max_suppression(c, o, max_detections=MAX_DETECTIONS, return_indices=True)
      _assert_matches(out, idx, ref, c, o, MAX_DETECTIONS)
      _assert_matches(Detections(*(a[i] for a in outs)), idxs[i], ref, c, o, MAX_DETECTIONS)


# -- fixed cases ----------------------------------------------------------------------
# Hand-written cases are padded to N slots and use MAX_DETECTIONS outputs with
# K = 1 (DEFAULT) or 2 (WEIGHTED) keypoints: the shapes of the random tests.

L = MAX_DETECTIONS
K_OF = {"DEFAULT": 1, "WEIGHTED": 2}


def _used(count):
  return np.arange(L) < count


def _chain(k=1):
  """A-B and B-C have IoU 0.4 (as far as float32 goes), A and C are 0.05 apart."""
  return _dets([[0, 0, 1, 1], [0.3, 0, 1.75, 1], [1.05, 0, 2.05, 1]], [0.9, 0.8, 0.7], k=k)


def test_chain_greedy_keeps_a_and_c():
  d = _chain()
  o = NmsOptions(min_suppression_threshold=0.3, overlap_type=IOU)
  refs = _check_three_ways([d], o, L)
  assert [r["anchor_index"] for r in refs[0]] == [0, 2]
  out = non_max_suppression(d, o, max_detections=L)
  np.testing.assert_array_equal(out.valid, _used(2))
  np.testing.assert_array_equal(out.boxes[:2], d.boxes[[0, 2]])


def test_weighted_keeps_top_score_and_blends_box_and_keypoints():
  boxes = [[0.1, 0.1, 0.5, 0.5], [0.15, 0.1, 0.55, 0.5], [0.7, 0.7, 0.9, 0.9]]
  kps = [[[0.2, 0.3]], [[0.4, 0.5]], [[0.8, 0.8]]]
  d = _dets(boxes, [0.9, 0.6, 0.7], keypoints=kps, classes=[3, 5, 7], k=2)
  o = NmsOptions(min_suppression_threshold=0.3, overlap_type=IOU, algorithm="WEIGHTED")
  _check_three_ways([d], o, L)
  out = non_max_suppression(d, o, max_detections=L)
  np.testing.assert_array_equal(out.valid, _used(2))
  np.testing.assert_array_equal(out.scores[:2], F32([0.9, 0.7]))  # the top's, not the mean 0.75
  np.testing.assert_array_equal(out.classes[:2], [3, 7])
  w = np.array([0.9, 0.6]) / 1.5
  np.testing.assert_allclose(out.boxes[0], w @ np.array(boxes[:2]), rtol=0, atol=1e-6)
  np.testing.assert_allclose(out.keypoints[0, 0], w @ np.array(kps[:2])[:, 0], rtol=0, atol=1e-6)
  # Alone, the box is still "blended" (§3.5): MediaPipe's rebuilt xmax = xmin +
  # f32(xmax - xmin), times s, divided by s, all in float32.
  s, (x0, y0, x1, y1) = F32(0.7), d.boxes[2]
  rebuilt = [x0, y0, F32(x0 + F32(x1 - x0)), F32(y0 + F32(y1 - y0))]
  np.testing.assert_array_equal(out.boxes[1], [F32(F32(s * v) / s) for v in rebuilt])


@pytest.mark.parametrize("case", ["threshold 1.0", "zero-area top"])
def test_weighted_early_stop_emits_one(case):
  boxes = [[0.0, 0.0, 0.5, 0.5], [0.05, 0.0, 0.55, 0.5], [0.6, 0.6, 0.9, 0.9]]
  threshold = 1.0
  if case == "zero-area top":
    boxes[0] = [0.2, 0.2, 0.2, 0.5]
    threshold = 0.3
  d = _dets(boxes, [0.9, 0.8, 0.7], keypoints=[[[0.1, 0.1]]] * 3, k=2)
  o = NmsOptions(min_suppression_threshold=threshold, overlap_type=IOU, algorithm="WEIGHTED")
  _check_three_ways([d], o, L)
  out = non_max_suppression(d, o, max_detections=L)
  np.testing.assert_array_equal(out.valid, _used(1))
  np.testing.assert_array_equal(out.boxes[0], d.boxes[0])  # emitted unchanged


def test_weighted_blends_low_scores_and_ignores_max_num_detections():
  # The 0.2 box is below min_score_threshold but is still blended into the top.
  boxes = [[0.0, 0.0, 0.4, 0.4], [0.0, 0.02, 0.4, 0.42], [0.6, 0.6, 1.0, 1.0], [0.6, 0.6, 0.9, 1]]
  d = _dets(boxes, [0.9, 0.2, 0.8, 0.7], k=2)
  o = NmsOptions(min_suppression_threshold=0.3, overlap_type=IOU, algorithm="WEIGHTED",
                 min_score_threshold=0.5, max_num_detections=1)
  refs = _check_three_ways([d], o, L)
  assert len(refs[0]) == 2  # max_num_detections=1 is ignored
  out = non_max_suppression(d, o, max_detections=L)
  assert out.boxes[0, 1] > 0  # ymin pulled up by the low-score member


def test_default_threshold_is_strict_and_ties_go_to_lower_slot():
  # IoU of box 0 with box 1 is exactly 1/2; scores tie everywhere.
  boxes = [[0, 0, 1, 1], [0, 0, 1, 0.5], [0, 0, 1, 1]]
  for threshold, expect in [(0.5, [0, 1]), (0.49, [0])]:
    o = NmsOptions(min_suppression_threshold=threshold, overlap_type=IOU)
    refs = _check_three_ways([_dets(boxes, [0.5, 0.5, 0.5])], o, L)
    assert [r["anchor_index"] for r in refs[0]] == expect
  # -0.0 and 0.0 are equal scores: the lower slot first.
  o = NmsOptions(min_suppression_threshold=0.3, overlap_type=IOU)
  far = [[0, 0, 0.1, 0.1], [0.5, 0.5, 0.6, 0.6]]
  for scores in ([0.0, -0.0], [-0.0, 0.0]):
    _, idx = non_max_suppression(_dets(far, scores), o, max_detections=L, return_indices=True)
    np.testing.assert_array_equal(idx[:2], [0, 1])


def _rounding_sensitive_pair(rng):
  """Two boxes whose textbook IoU is above MediaPipe's (rebuilt ``xmin + width``)."""
  while True:
    x = rng.uniform(100, 1000, 2).astype(F32)
    w = rng.uniform(0.5, 2, 2).astype(F32)
    a = np.array([x[0], 0, x[0] + w[0], 1], F32)
    b = np.array([x[0] + w[1] * F32(0.3), 0, x[0] + w[1] * F32(0.3) + w[1], 1], F32)
    iw = min(a[2], b[2]) - max(a[0], b[0])
    naive = F32(iw / F32(F32(a[2] - a[0]) + F32(b[2] - b[0]) - iw))
    ref = ref_nms(reference_dicts(_dets([a, b], [0.9, 0.8]), [0, 1]),
                  {"min_suppression_threshold": float(naive),
                   "overlap_type": "INTERSECTION_OVER_UNION"})
    if len(ref) == 2:  # MediaPipe's IoU is not above the textbook value: both kept
      return a, b, float(naive)


def test_suppression_decision_follows_mediapipe_rounding():
  a, b, threshold = _rounding_sensitive_pair(np.random.default_rng(0))
  o = NmsOptions(min_suppression_threshold=threshold, overlap_type=IOU)
  # Threshold = textbook IoU: MediaPipe's (smaller) IoU keeps both.
  refs = _check_three_ways([_dets([a, b], [0.9, 0.8])], o, L)
  assert len(refs[0]) == 2


@pytest.mark.parametrize("alg", ["DEFAULT", "WEIGHTED"])
def test_non_finite_and_invalid_never_leak(alg):
  boxes = [[0, 0, 0.5, 0.5], [np.nan, 0, 0.5, 0.5], [0, 0, np.inf, 0.5], [0.1, 0.1, 0.6, 0.6],
           [0.05, 0, 0.5, 0.5], [0.7, 0.7, 0.9, 0.9]]
  scores = [0.5, 0.99, 0.98, np.nan, 0.97, np.inf]
  kps = np.full((6, 1, 2), np.nan, F32)
  kps[[0, 4, 5]] = 0.25
  valid = [True, True, True, True, False, True]
  d = _dets(boxes, scores, keypoints=kps, valid=valid, k=K_OF[alg])
  o = NmsOptions(min_suppression_threshold=0.1, overlap_type=IOU, algorithm=alg)
  refs = _check_three_ways([d], o, L)
  assert [r["anchor_index"] for r in refs[0]] == [0]
  out = non_max_suppression(d, o, max_detections=L)
  for a in out[:4]:
    assert np.all(np.isfinite(np.asarray(a, np.float64)))


@pytest.mark.parametrize("alg", ["DEFAULT", "WEIGHTED"])
def test_non_finite_keypoints_are_not_candidates(alg):
  """Like a NaN box: never emitted, never suppressing (DEFAULT), never blended (WEIGHTED)."""
  boxes = [[0, 0, 0.5, 0.5], [0.02, 0, 0.52, 0.5], [0.04, 0, 0.54, 0.5], [0.6, 0.6, 0.9, 0.9],
           [0.61, 0.6, 0.91, 0.9]]
  kps = np.array([[[0.1, 0.2], [0.1, 0.2]], [[np.nan, 0.3], [0.1, 0.2]],
                  [[0.1, 0.2], [0.2, 0.2]], [[0.7, 0.8], [0.7, np.inf]],
                  [[0.7, 0.8], [0.75, 0.85]]], F32)
  d = _dets(boxes, [0.9, 0.95, 0.7, 0.99, 0.6], keypoints=kps, k=2)
  o = NmsOptions(min_suppression_threshold=0.3, overlap_type=IOU, algorithm=alg)
  refs = _check_three_ways([d], o, L)  # the reference ignores slots 1 and 3
  assert [r["anchor_index"] for r in refs[0]] == [0, 4]
  out = _numpy(non_max_suppression(d, o, max_detections=L))
  assert np.all(np.isfinite(out.keypoints)) and np.all(np.isfinite(out.boxes))
  ignored = d._replace(valid=np.asarray(d.valid) & ~np.isin(np.arange(N), [1, 3]))
  chex.assert_trees_all_equal(out, _numpy(non_max_suppression(ignored, o, max_detections=L)))
  if alg == "WEIGHTED":  # slot 2 is blended into slot 0's output, slot 1 is not
    want = (0.9 * kps[0] + 0.7 * kps[2]) / F32(0.9 + 0.7)
    np.testing.assert_allclose(out.keypoints[0], want, rtol=0, atol=1e-6)
  # Through compaction (many slots, few candidates) and the top_k pre-selection too.
  big = Detections(*(np.concatenate([a, np.repeat(b[-1:], 200, 0)]) for a, b in zip(d, d)))
  big = big._replace(valid=np.concatenate([d.valid, np.zeros(200, bool)]))
  for top_k in (None, 4):
    got = _numpy(non_max_suppression(big, o, max_detections=L, top_k=top_k))
    chex.assert_trees_all_equal(got, out)


@pytest.mark.parametrize("alg", ["DEFAULT", "WEIGHTED"])
def test_all_invalid_and_empty_inputs(alg):
  o = NmsOptions(algorithm=alg, return_empty_detections=True)
  d = _dets(np.zeros((4, 4)), np.ones(4), valid=np.zeros(4, bool), k=K_OF[alg])
  assert _check_three_ways([d], o, L) == [[]]
  empty = Detections(*(a[:0] for a in d))
  out = non_max_suppression(empty, o, max_detections=2)
  assert out.valid.shape == (2,) and not out.valid.any()
  assert out.keypoints.shape == (2, K_OF[alg], 2)
  out = non_max_suppression(Detections(*(np.zeros((0,) + a.shape, a.dtype) for a in d)), o,
                            max_detections=2)
  assert out.boxes.shape == (0, 2, 4) and out.classes.dtype == jnp.int32


@pytest.mark.parametrize("alg", ["DEFAULT", "WEIGHTED"])
def test_more_slots_than_inputs(alg):
  o = NmsOptions(min_suppression_threshold=0.5, overlap_type=IOU, algorithm=alg)
  d = Detections(*(a[:3] for a in _chain(k=K_OF[alg])))  # N = 3 < 6 slots
  assert len(_check_three_ways([d], o, L)[0]) == 3


def test_proto_defaults():
  # DEFAULT with threshold 1.0 and JACCARD suppresses nothing; WEIGHTED returns one.
  assert len(_check_three_ways([_chain()], NmsOptions(), L)[0]) == 3
  assert len(_check_three_ways([_chain(k=2)], NmsOptions(algorithm="WEIGHTED"), L)[0]) == 1


# -- larger inputs: compaction buckets, the tiled DEFAULT path, batches -------------


def _scene(rng, n, n_valid, k=0, spread=1.0):
  c = rng.uniform(0, spread, (n, 2))
  s = rng.uniform(0.02, 0.12, (n, 2))
  c[: n // 3] = c[0] + rng.normal(0, 0.02, (n // 3, 2))  # one dense cluster
  boxes = np.concatenate([c - s / 2, c + s / 2], 1).astype(F32)
  valid = np.zeros(n, bool)
  valid[rng.choice(n, n_valid, replace=False)] = True
  return Detections(boxes, rng.uniform(0, 1, (n, k, 2)).astype(F32),
                    rng.choice(np.linspace(0.1, 1, 50), n).astype(F32),
                    rng.integers(0, 3, n).astype(np.int32), valid)


@pytest.mark.parametrize("alg", ["DEFAULT", "WEIGHTED"])
def test_batch_with_leading_dims_across_buckets(alg):
  """One [2, 3, 600] batch whose frames need the 64-, 256- and 600-slot paths."""
  rng = np.random.default_rng(7)
  counts = [[5, 40, 64], [0, 30, 10]]
  o = NmsOptions(min_suppression_threshold=0.4, overlap_type=IOU, algorithm=alg)
  frames = [[_scene(rng, 600, c, k=1) for c in row] for row in counts]
  batch = Detections(*(np.stack([np.stack(f) for f in a]) for a in zip(*[zip(*r) for r in frames])))
  for grow in (None, 200, 500):  # the largest frame decides the bucket for the whole batch
    if grow is not None:
      frames[1][2] = _scene(rng, 600, grow, k=1)
      batch = Detections(*(np.stack([np.stack(f) for f in a])
                           for a in zip(*[zip(*r) for r in frames])))
    out, idx = _numpy(non_max_suppression(batch, o, max_detections=12, return_indices=True))
    assert out.boxes.shape == (2, 3, 12, 4) and idx.shape == (2, 3, 12)
    for i in range(2):
      for j in range(3):
        ref = _reference(frames[i][j], o, 12)
        _assert_matches(Detections(*(a[i, j] for a in out)), idx[i, j], ref, frames[i][j], o, 12)


@pytest.mark.parametrize("threshold", THRESHOLDS)
def test_tiled_default_is_exact_for_every_threshold(threshold):
  """2100 candidates take the tiled path (top_k tiles, kept-box check, in-tile greedy).

  Below 0.5 the dense cluster suppresses most boxes, so reaching the limit needs
  many tiles; at 0.5 and above, 300 kept boxes span several tiles too.
  """
  assert nms._plan(2100, weighted=False)[-1] == (2100, "tiled")
  d = _scene(np.random.default_rng(1), 2100, 2100, spread=0.5)
  limit = 300 if threshold >= 0.5 else 40  # bounds the reference's running time
  o = NmsOptions(min_suppression_threshold=threshold, overlap_type=IOU, max_num_detections=limit)
  out, idx = non_max_suppression(d, o, max_detections=300, return_indices=True)
  _assert_matches(out, idx, _reference(d, o, 300), d, o, 300)


@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.7])
def test_tiled_engine_many_small_tiles(threshold):
  """Tiles of 16 over 400 boxes: many rounds and kept-box chunks, still the greedy result."""
  rng = np.random.default_rng(2)
  d = _scene(rng, 400, 400, spread=0.5)
  o = NmsOptions(min_suppression_threshold=threshold, overlap_type=IOU)
  member = np.asarray(d.valid)
  out_i = jax.jit(functools.partial(nms._tiled_engine, kind=IOU, slots=120, tile=16))(
      d.boxes, d.scores, member, F32(threshold), np.int32(120))
  ref = _reference(d, o, 120)
  np.testing.assert_array_equal(out_i, [r["anchor_index"] for r in ref] + [-1] * (120 - len(ref)))


@pytest.mark.parametrize("alg", ["DEFAULT", "WEIGHTED"])
def test_top_k_preselection(alg):
  rng = np.random.default_rng(3)
  cases = [_scene(rng, N, 9, k=K_OF[alg], spread=0.4) for _ in range(3)]
  o = NmsOptions(min_suppression_threshold=0.3, overlap_type=IOU, algorithm=alg,
                 min_score_threshold=0.2)
  _check_three_ways(cases, o, L, top_k=4)
  # top_k at least the number of candidates changes nothing.
  plain = non_max_suppression(cases[0], o, max_detections=L)
  chex.assert_trees_all_equal(plain, non_max_suppression(cases[0], o, max_detections=L, top_k=9))


# -- tracing, validation, API ---------------------------------------------------------


def test_traces_once_per_options_and_shapes():
  rng = np.random.default_rng(4)
  d1, d2 = _scene(rng, 23, 10, k=3), _scene(rng, 23, 20, k=3)
  o = NmsOptions(min_suppression_threshold=0.3, overlap_type="JACCARD", algorithm="WEIGHTED")
  with count_traces("_nms_flat") as traces:
    non_max_suppression(d1, o, max_detections=5)
    non_max_suppression(d2, o, max_detections=5)
    # Thresholds are values, not part of the compiled program: no retrace either.
    non_max_suppression(d2, dataclasses.replace(o, min_suppression_threshold=0.6,
                                                min_score_threshold=0.5), max_detections=5)
    assert traces.count == 1
    non_max_suppression(d2, o, max_detections=6)  # a new static size traces again
    assert traces.count == 2

  @jax.jit
  @chex.assert_max_traces(n=1)
  def user_fn(d):
    return non_max_suppression(d, o, max_detections=5)

  user_fn(d1)
  user_fn(d2)


BAD_OPTIONS = [
    ({"max_num_detections": 0}, ValueError, "max_num_detections"),
    ({"max_num_detections": -2}, ValueError, "max_num_detections.*-2"),
    ({"max_num_detections": 1.5}, ValueError, "max_num_detections.*1.5"),
    ({"max_num_detections": True}, TypeError, "max_num_detections.*True"),
    ({"num_detection_streams": 0}, ValueError, "num_detection_streams.*0"),
    ({"min_suppression_threshold": float("nan")}, ValueError, "min_suppression_threshold.*nan"),
    ({"min_suppression_threshold": "0.3"}, TypeError, "min_suppression_threshold"),
    ({"min_suppression_threshold": -0.25}, ValueError,
     r"min_suppression_threshold must be >= 0, got -0.25 \(every pair"),
    ({"min_score_threshold": float("inf")}, ValueError, "min_score_threshold.*inf"),
    ({"overlap_type": 0}, ValueError, "overlap_type.*0"),
    ({"overlap_type": "IOU"}, ValueError, "overlap_type.*IOU"),
    ({"algorithm": 2}, ValueError, "algorithm.*2"),
    ({"algorithm": "HARD"}, ValueError, "algorithm.*HARD"),
    ({"return_empty_detections": 1}, TypeError, "return_empty_detections"),
]


@pytest.mark.parametrize("fields,error,match", BAD_OPTIONS)
def test_bad_options_are_rejected(fields, error, match):
  with pytest.raises(error, match=match):
    NmsOptions(**fields)


def test_options_canonicalisation_and_dict_round_trip():
  o = NmsOptions(overlap_type=3, algorithm="weighted", min_suppression_threshold=1)
  assert o.overlap_type is OverlapType.INTERSECTION_OVER_UNION
  assert o.algorithm is NmsAlgorithm.WEIGHTED
  assert isinstance(o.min_suppression_threshold, float)
  assert hash(o) == hash(NmsOptions(overlap_type="INTERSECTION_OVER_UNION", algorithm=1))
  d = o.to_dict()
  assert d == {"overlap_type": "INTERSECTION_OVER_UNION", "algorithm": "WEIGHTED"}
  assert NmsOptions.from_dict(d) == o
  assert NmsOptions.from_json(o.to_json()) == o
  with pytest.raises(ValueError, match="unknown field.*'min_score'"):
    NmsOptions.from_dict({"min_score": 0.5})
  with pytest.raises(TypeError):
    NmsOptions(0.3)  # keyword-only


def _good():
  return Detections(np.array([[0, 0, 1, 1], [0, 0, 1, 1]], F32), np.zeros((2, 3, 2), F32),
                    np.array([0.5, 0.4], F32), np.zeros(2, np.int32), np.ones(2, bool))


BAD_CALLS = [
    (lambda d: (d, {"max_detections": 0}), ValueError, "max_detections must be >= 1, got 0"),
    (lambda d: (d, {"max_detections": 2.5}), ValueError, "max_detections.*2.5"),
    (lambda d: (d, {"max_detections": True}), TypeError, "max_detections.*True"),
    (lambda d: (d, {"max_detections": 2, "top_k": 0}), ValueError, "top_k must be >= 1, got 0"),
    (lambda d: (d, {"max_detections": 2, "top_k": 1.5}), ValueError, "top_k.*1.5"),
    (lambda d: (d._replace(boxes=np.zeros((2, 3), F32)), {"max_detections": 2}), ValueError,
     r"boxes must have shape \[\.\.\., N, 4\], got \(2, 3\)"),
    (lambda d: (d._replace(scores=np.zeros(3, F32)), {"max_detections": 2}), ValueError,
     r"scores must have shape \[\.\.\., N\] = \(2,\) to match boxes \(2, 4\), got \(3,\)"),
    (lambda d: (d._replace(valid=np.ones((1, 2), bool)), {"max_detections": 2}), ValueError,
     r"valid must have shape .*\(2,\).*got \(1, 2\)"),
    (lambda d: (d._replace(keypoints=np.zeros((2, 3, 3), F32)), {"max_detections": 2}),
     ValueError, r"keypoints must have shape \[\.\.\., N, K, 2\].*\(2,\).*got \(2, 3, 3\)"),
    (lambda d: (d._replace(scores=np.zeros(2, np.int32)), {"max_detections": 2}), TypeError,
     "scores must have a floating dtype, got int32"),
    (lambda d: (d._replace(classes=np.zeros(2, F32)), {"max_detections": 2}), TypeError,
     "classes must have an integer dtype.*float32"),
    (lambda d: (d._replace(valid=np.ones(2, np.int32)), {"max_detections": 2}), TypeError,
     "valid must have dtype bool, got int32"),
    (lambda d: (tuple(d), {"max_detections": 2}), TypeError, "must be a jaxanchors.Detections"),
]


@pytest.mark.parametrize("make,error,match", BAD_CALLS)
def test_bad_calls_are_rejected_at_trace_time(make, error, match):
  d, kwargs = make(_good())
  o = NmsOptions()
  with pytest.raises(error, match=match):
    non_max_suppression(d, o, **kwargs)
  with pytest.raises(error, match=match):  # inside jit: while tracing, before any compute
    jax.jit(lambda x: non_max_suppression(x, o, **kwargs))(d)
  with pytest.raises(TypeError, match="NmsOptions"):
    non_max_suppression(_good(), {"algorithm": "WEIGHTED"}, max_detections=2)


def test_public_surface():
  sig = inspect.signature(non_max_suppression)
  params = list(sig.parameters.values())
  assert [p.name for p in params[:2]] == ["detections", "options"]
  assert all(p.kind is p.KEYWORD_ONLY for p in params[2:])
  assert "Examples:" in non_max_suppression.__doc__
  for obj in (NmsOptions, NmsAlgorithm, nms):
    assert obj.__doc__
  assert [a.value for a in NmsAlgorithm] == [0, 1]


@pytest.mark.parametrize("alg", ["DEFAULT", "WEIGHTED"])
def test_low_precision_scores_keep_order_ties_and_slots(alg):
  """bfloat16 scores (exact integers only up to 256) over 600 slots, many tied."""
  rng = np.random.default_rng(11)
  d = _scene(rng, 600, 520, k=1)
  o = NmsOptions(min_suppression_threshold=0.3, overlap_type=IOU, algorithm=alg)
  low = Detections(d.boxes, d.keypoints, jnp.asarray(d.scores, jnp.bfloat16), d.classes, d.valid)
  as_f32 = Detections(d.boxes, d.keypoints, np.asarray(low.scores, F32), d.classes, d.valid)
  ref = _reference(as_f32, o, 300)
  assert len(ref) > 40 and len(set(r["score"] for r in ref)) < len(ref)  # ties among outputs
  out, idx = _numpy(non_max_suppression(low, o, max_detections=300, return_indices=True))
  m = len(ref)
  assert out.scores.dtype == jnp.bfloat16
  np.testing.assert_array_equal(idx, [r["anchor_index"] for r in ref] + [-1] * (300 - m))
  np.testing.assert_array_equal(out.scores[:m].astype(F32), [r["score"] for r in ref])


@pytest.mark.parametrize("alg", ["DEFAULT", "WEIGHTED"])
def test_integer_slot_paths(alg, monkeypatch):
  """The int32 slot search used past 2**24 slots, forced on a small case."""
  monkeypatch.setattr(nms, "_FLOAT_SLOTS_MAX", 0)
  rng = np.random.default_rng(12)
  cases = [_scene(rng, 77, 60, k=2, spread=0.5) for _ in range(2)]  # a shape no other test uses
  o = NmsOptions(min_suppression_threshold=0.35, overlap_type=IOU, algorithm=alg)
  for c in cases:
    out, idx = non_max_suppression(c, o, max_detections=20, return_indices=True)
    _assert_matches(out, idx, _reference(c, o, 20), c, o, 20)


@pytest.mark.parametrize("alg", ["DEFAULT", "WEIGHTED"])
def test_long_rows_compact_to_the_largest_bucket(alg):
  """9000 slots (282 words: cumsum prefix counts) with 1100 candidates: the 4096 bucket."""
  assert 9000 // 32 > compaction.DOT_CUMSUM_MAX
  rng = np.random.default_rng(13)
  d = _scene(rng, 9000, 1100, k=0, spread=1.0)
  o = NmsOptions(min_suppression_threshold=0.5, overlap_type=IOU, algorithm=alg)
  out, idx = non_max_suppression(d, o, max_detections=400, return_indices=True)
  _assert_matches(out, idx, _reference(d, o, 400), d, o, 400)


def test_kernel_report_tool_lists_the_loop_bodies():
  """tools/xla_kernels.py (a development aid) reads the compiled NMS program."""
  import importlib.util
  import pathlib
  path = pathlib.Path(__file__).resolve().parents[1] / "tools" / "xla_kernels.py"
  spec = importlib.util.spec_from_file_location("xla_kernels", path)
  tool = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(tool)
  found = tool.kernels(tool._example("nms", "WEIGHTED"))
  assert any(name.startswith("main") for name in found)
  # At least one computation (branch, loop body) per bucket of the 896-slot plan.
  assert len(found) - 1 >= len(nms._plan(896, True))
  assert "kernels (" in tool.report(tool._example("nms", "DEFAULT"))
