"""The fine-tuning loss and masks on the short-range face model.

Every network call here uses one batch shape (``B`` frames, ``M`` ground-truth
slots) so the face model is compiled for the loss, its gradient and one
training step only once each.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pytest

pytest.importorskip("optax")
pytest.importorskip("tflite")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

import jaxanchors as ja  # noqa: E402
from jaxanchors import finetune  # noqa: E402
from jaxanchors import models  # noqa: E402

PRESET = ja.presets.get("face_short_range")
B, M = 4, 3


@pytest.fixture(scope="module")
def network():
  try:
    return models.load_network("face_short_range")
  except (OSError, RuntimeError) as e:  # no cached model and no network
    pytest.skip(f"face_short_range model unavailable: {e}")


def _ground_truth(seed: int = 0):
  """Boxes ``[B, M, 4]`` (square faces 0.2-0.45 of the input), keypoints, valid mask."""
  rng = np.random.default_rng(seed)
  size = rng.uniform(0.2, 0.45, (B, M, 1))
  corner = rng.uniform(0.0, 1.0, (B, M, 2)) * (1 - size)
  boxes = np.concatenate([corner, corner + size], -1).astype(np.float32)
  keypoints = (corner[:, :, None] + rng.uniform(0.2, 0.8, (B, M, 6, 2)) * size[..., None]
               ).astype(np.float32)
  valid = np.array([[True, True, False], [True, False, False], [False, False, False],
                    [True, True, True]])
  return boxes, keypoints, valid


@functools.lru_cache(maxsize=None)
def _value_and_grad(network):
  """Jitted ``(loss.total, d loss.total / d some params)``, compiled once for the module's shapes.

  ``some`` are the heads and the last residual block (a backward pass through
  the whole network compiles for most of a minute; the network's own tests
  check its gradients everywhere), the rest stays at the loaded values.
  """
  keys = finetune.top_keys(network, backbone_layers=2)

  def total(some, images, boxes, valid, keypoints):
    params = {**{k: v for k, v in network.params.items() if k not in keys}, **some}
    return finetune.loss(params, images, boxes, valid, network=network, preset=PRESET,
                         gt_keypoints=keypoints).total
  grad = jax.jit(jax.value_and_grad(total))
  return lambda params, *args: grad({k: params[k] for k in keys}, *args)


def _images(seed: int = 0):
  return np.random.default_rng(seed).uniform(-1, 1, (B, 128, 128, 3)).astype(np.float32)


# -- the loss on raw outputs ------------------------------------------------------------


def _encoded_outputs(boxes, keypoints, valid, logit=20.0):
  """Raw rows that decode to the matched ground truth, scores +logit on positives."""
  anchors = ja.generate_anchors(PRESET.anchors)
  sized = ja.generate_anchors(dataclasses.replace(PRESET.anchors, fixed_anchor_size=False))
  matches = ja.match(sized, boxes, valid, finetune.LossOptions().matcher)
  rows = np.asarray(matches.indices)
  safe = np.clip(rows, 0, M - 1)

  def take(x):  # the matched ground-truth row of every anchor
    return np.take_along_axis(x, safe.reshape(safe.shape + (1,) * (x.ndim - 2)), 1)

  raw = np.asarray(ja.encode(take(boxes), take(keypoints), anchors, PRESET.decoder))
  raw = np.where(rows[..., None] >= 0, raw, 0.0).astype(np.float32)
  scores = np.where(rows[..., None] >= 0, logit, -logit).astype(np.float32)
  return raw, scores, rows


def test_loss_is_near_zero_for_outputs_that_encode_the_ground_truth():
  boxes, keypoints, valid = _ground_truth()
  raw, scores, rows = _encoded_outputs(boxes, keypoints, valid)
  out = finetune.loss_from_outputs(raw, scores, boxes, valid, preset=PRESET,
                                   gt_keypoints=keypoints)
  assert out.total.shape == (B,)
  np.testing.assert_allclose(out.num_positives, (rows >= 0).sum(-1))
  assert np.all(np.asarray(out.num_positives)[valid.any(-1)] >= valid.sum(-1)[valid.any(-1)])
  np.testing.assert_allclose(out.box, 0.0, atol=1e-5)
  np.testing.assert_allclose(out.keypoints, 0.0, atol=1e-5)
  # BCE at |logit| 20 is log(1 + e^-20) ~ 2e-9 per anchor.
  np.testing.assert_allclose(out.classification, 0.0, atol=1e-6)
  # Any perturbation of the rows or the scores raises the loss.
  for raw2, scores2 in ((raw + 0.5, scores), (raw, -scores), (raw * 1.1, scores)):
    worse = finetune.loss_from_outputs(raw2, scores2, boxes, valid, preset=PRESET,
                                       gt_keypoints=keypoints)
    has_pos = valid.any(-1)
    assert np.all(np.asarray(worse.total)[has_pos] > np.asarray(out.total)[has_pos] + 1e-3)


def test_regression_parts_follow_the_documented_units():
  """One positive, keypoints off by 0.01 of the input in x: Huber of 0.1 per keypoint."""
  boxes, keypoints, valid = _ground_truth()
  raw, scores, rows = _encoded_outputs(boxes, keypoints, valid)
  moved = raw.copy()
  moved[..., 4::2] += 0.01 * PRESET.decoder.x_scale        # 0.01 of the width, every keypoint x
  out = finetune.loss_from_outputs(moved, scores, boxes, valid, preset=PRESET,
                                   gt_keypoints=keypoints)
  # residual 0.01 * regression_scale 10 = 0.1 -> 0.5 * 0.1**2 per column, 6 columns per anchor,
  # summed over positives and divided by their number.
  expected = np.where(valid.any(-1), 6 * 0.5 * 0.1 ** 2, 0.0)
  np.testing.assert_allclose(out.keypoints, expected, rtol=1e-4, atol=1e-7)
  np.testing.assert_allclose(out.box, 0.0, atol=1e-5)


def test_without_keypoints_the_keypoint_columns_are_free():
  boxes, keypoints, valid = _ground_truth()
  raw, scores, _ = _encoded_outputs(boxes, keypoints, valid)
  raw[..., 4:] = 123.0
  out = finetune.loss_from_outputs(raw, scores, boxes, valid, preset=PRESET)
  np.testing.assert_allclose(out.keypoints, 0.0)
  np.testing.assert_allclose(out.box, 0.0, atol=1e-5)


def test_frames_without_ground_truth_train_only_mined_negatives():
  boxes, keypoints, valid = _ground_truth()
  scores = np.zeros((B, 896, 1), np.float32)  # BCE log 2 everywhere
  out = finetune.loss_from_outputs(np.zeros((B, 896, 16), np.float32), scores, boxes, valid,
                                   preset=PRESET, gt_keypoints=keypoints)
  # Frame 2 has no valid box: min_negatives (3) negatives at log 2, divided by max(1, 0).
  assert float(out.num_positives[2]) == 0
  np.testing.assert_allclose(out.classification[2], 3 * np.log(2), rtol=1e-5)
  np.testing.assert_allclose([out.box[2], out.keypoints[2]], 0.0)


def test_focal_and_unmined_options():
  boxes, keypoints, valid = _ground_truth()
  raw, scores, _ = _encoded_outputs(boxes, keypoints, valid, logit=0.0)
  bce = finetune.loss_from_outputs(raw, scores, boxes, valid, preset=PRESET)
  every = finetune.loss_from_outputs(raw, scores, boxes, valid, preset=PRESET,
                                     options=finetune.LossOptions(negative_positive_ratio=None))
  focal = finetune.loss_from_outputs(raw, scores, boxes, valid, preset=PRESET,
                                     options=finetune.LossOptions(classification="sigmoid_focal"))
  # All logits 0: BCE log 2 per kept anchor; focal 0.25 or 0.75 * 0.25 * log 2 (p_t = 1/2).
  pos = np.asarray(bce.num_positives)
  kept_mined = pos + np.minimum(np.maximum(3 * pos, 3), 896 - pos)
  np.testing.assert_allclose(bce.classification, kept_mined * np.log(2) / np.maximum(pos, 1),
                             rtol=1e-5)
  assert np.all(np.asarray(every.classification) > np.asarray(bce.classification))
  np.testing.assert_array_less(focal.classification, bce.classification)


def test_options_and_shapes_are_validated():
  with pytest.raises(ValueError, match="classification"):
    finetune.LossOptions(classification="softmax")
  with pytest.raises(ValueError, match="huber_delta"):
    finetune.LossOptions(huber_delta=0)
  boxes, keypoints, valid = _ground_truth()
  with pytest.raises(ValueError, match="raw_boxes"):
    finetune.loss_from_outputs(np.zeros((B, 895, 16)), np.zeros((B, 895, 1)), boxes, valid,
                               preset=PRESET)
  with pytest.raises(ValueError, match="gt_keypoints"):
    finetune.loss_from_outputs(np.zeros((B, 896, 16)), np.zeros((B, 896, 1)), boxes, valid,
                               preset=PRESET, gt_keypoints=keypoints[..., :5, :])
  with pytest.raises(ValueError, match="gt_valid"):
    finetune.loss_from_outputs(np.zeros((B, 896, 16)), np.zeros((B, 896, 1)), boxes,
                               valid.astype(np.int32), preset=PRESET)


# -- the loss through the network ---------------------------------------------------------


def test_loss_is_finite_batched_and_jittable_with_a_finite_gradient(network):
  boxes, keypoints, valid = _ground_truth()
  images = _images()

  value, grads = _value_and_grad(network)(network.params, images, boxes, valid, keypoints)
  assert np.isfinite(float(value)) and float(value) > 0
  assert all(np.all(np.isfinite(g)) for g in grads.values())
  assert len(grads) == 12 and all(float(jnp.max(jnp.abs(g))) > 0 for g in grads.values())
  # The batch loss is the mean of the per-frame losses (same shapes: no new compile).
  raw_boxes, raw_scores = network.apply(network.params, images)
  frames = [finetune.loss_from_outputs(raw_boxes[i], raw_scores[i], boxes[i], valid[i],
                                       preset=PRESET, gt_keypoints=keypoints[i]).total
            for i in range(B)]
  np.testing.assert_allclose(value, np.mean(frames), rtol=1e-5)
  eager = finetune.loss(network.params, images, boxes, valid, network=network, preset=PRESET,
                        gt_keypoints=keypoints)
  np.testing.assert_allclose(eager.total, value, rtol=1e-6)


def test_head_and_top_keys(network):
  heads = finetune.head_keys(network)
  assert heads == {f"{kind}_{stride}/{p}_dequantize" for kind in ("classificator", "regressor")
                   for stride in (8, 16) for p in ("Kernel", "Bias")}
  assert finetune.top_keys(network, backbone_layers=0) == heads
  top = finetune.top_keys(network, backbone_layers=2) - heads
  assert top == {"depthwise_conv2d_15/Kernel_dequantize", "depthwise_conv2d_15/Bias_dequantize",
                 "conv2d_16/Kernel_dequantize", "conv2d_16/Bias_dequantize"}
  assert len(finetune.top_keys(network, backbone_layers=10_000)) == len(network.params)
  mask = finetune.update_mask(network, freeze_backbone=True)
  assert {k for k, m in mask.items() if m.all()} == heads
  assert all(not m.any() for k, m in mask.items() if k not in heads)
  with pytest.raises(ValueError, match="not both"):
    finetune.update_mask(network, freeze_backbone=True, keys=heads)
  with pytest.raises(ValueError, match="not in network.params"):
    finetune.update_mask(network, keys={"nope"})


def test_training_lowers_the_loss_and_a_frozen_backbone_stays_bit_identical(network):
  boxes, keypoints, valid = _ground_truth(1)
  images = _images(1)
  mask = finetune.update_mask(network, freeze_backbone=True)
  params = {k: jnp.asarray(v) for k, v in network.params.items()}
  some = {k: params[k] for k in finetune.top_keys(network, backbone_layers=2)}
  # Gradients reach the last backbone block too; the mask must keep it frozen.
  optimizer = finetune.masked(optax.adam(1e-2), {k: mask[k] for k in some})
  state = optimizer.init(some)
  update = jax.jit(optimizer.update)
  values = []
  for _ in range(8):
    value, grads = _value_and_grad(network)(params, images, boxes, valid, keypoints)
    updates, state = update(grads, state, some)
    some = optax.apply_updates(some, updates)
    params = {**params, **some}
    values.append(float(value))
  assert all(b < a for a, b in zip(values, values[1:])), values
  assert values[-1] < 0.95 * values[0], values
  heads = finetune.head_keys(network)
  for key, value in params.items():
    if key in heads:
      assert not np.array_equal(value, network.params[key]), key
    else:
      np.testing.assert_array_equal(value, network.params[key], err_msg=key)


def test_update_mask_keeps_the_pruned_positions_of_a_sparse_model():
  try:
    sparse = models.load_network("face_full_range")
  except (OSError, RuntimeError) as e:
    pytest.skip(f"face_full_range model unavailable: {e}")
  stored = sparse.trainable_mask()
  pruned = [k for k, m in stored.items() if not m.all()]
  assert pruned  # the full-range model stores pruned weights
  everything = finetune.update_mask(sparse)
  heads = finetune.head_keys(sparse)
  # Each head: a 1x1 convolution, then a depthwise convolution and DEPTH_TO_SPACE.
  convs = {k for k in heads if k.endswith("Conv2D_dequantize")}
  assert len(heads) == 8 and len(convs) == 2
  assert {k.split("/")[2] for k in convs} == {"classifier_face_4_NO_PRUNING",
                                              "regressor_face_4_NO_PRUNING"}
  only_heads = finetune.update_mask(sparse, freeze_backbone=True)
  for key, m in stored.items():
    np.testing.assert_array_equal(everything[key], m.astype(np.float32), err_msg=key)
    np.testing.assert_array_equal(only_heads[key], m if key in heads else np.zeros_like(m),
                                  err_msg=key)


def test_masked_keeps_masked_entries_exactly():
  params = {"a": jnp.ones((3, 2)), "b": jnp.arange(4.0)}
  mask = {"a": np.array([[1, 0], [0, 1], [1, 1]], np.float32), "b": np.zeros(4, np.float32)}
  opt = finetune.masked(optax.adamw(0.1, weight_decay=0.5), mask)
  state = opt.init(params)
  grads = {"a": jnp.full((3, 2), jnp.inf), "b": jnp.ones(4)}  # even non-finite gradients
  for _ in range(3):
    updates, state = opt.update(grads, state, params)
    params = optax.apply_updates(params, updates)
  a = np.asarray(params["a"])
  np.testing.assert_array_equal(a[mask["a"] == 0], 1.0)
  np.testing.assert_array_equal(params["b"], np.arange(4.0))
