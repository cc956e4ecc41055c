"""Self-check of the NumPy references in ``tests/reference`` against facts that do
not come from the references themselves: MediaPipe's golden anchor files, the
hollance ``.npy`` anchors, the anchor counts of spec §5.1, the seed notebook rows,
and small cases worked out by hand (expected values computed in the comments).
"""

import json
import math

import numpy as np
import pytest

from _util import GOLDEN as GOLDEN_DIR
from reference.anchors import ssd_anchors
from reference.decoding import postprocessed_to_detections, tensors_to_detections
from reference.letterbox import (
    image_to_tensor,
    letterbox_matrix,
    pad_roi,
    project_detections,
    remove_letterbox,
)
from reference.nms import non_max_suppression, overlap

F32 = np.float32


def _golden(name):
    path = GOLDEN_DIR / name
    if not path.exists():
        pytest.skip(f"golden file {path} not available (shared/ is not checked out beside the project)")
    return path


def _golden_options(name):
    """The JSON stores the proto options under "options", keyed by field name,
    with only the fields that were set; absent fields keep their proto defaults
    (listed separately under "unset_fields_take_proto_defaults", which we do NOT
    copy in, since presence matters for some fields)."""
    with open(_golden(name + ".options.json")) as handle:
        data = json.load(handle)
    return dict(data["options"]), data.get("num_anchors")


# ---------------------------------------------------------------------------
# Anchors: golden files (spec §1.7)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,count",
    [
        ("anchor_golden_file_0.txt", 2944),
        ("anchor_golden_file_1.txt", 1917),
        ("anchor_golden_file_2.txt", 1125),
    ],
)
def test_anchors_match_mediapipe_golden_text(name, count):
    options, json_count = _golden_options(name)
    expected = np.loadtxt(_golden(name), dtype=np.float64, ndmin=2)
    got = ssd_anchors(options)
    assert got.dtype == np.float32
    assert expected.shape == (count, 4)
    assert json_count == count
    # same count and order; MediaPipe's own test tolerance
    assert got.shape == expected.shape
    np.testing.assert_allclose(got.astype(np.float64), expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", ["anchors.npy", "anchorsback.npy"])
def test_anchors_match_hollance_npy_exactly(name):
    options, count = _golden_options(name)
    expected = np.load(_golden(name))
    got = ssd_anchors(options)
    assert expected.shape == (count, 4) == (896, 4)
    assert np.array_equal(got.astype(np.float64), expected)


# ---------------------------------------------------------------------------
# Anchors: counts of every model in spec §5.1 (options from §5.2-§5.8)
# ---------------------------------------------------------------------------


def _ssd(input_size, strides, min_scale, max_scale, fixed=True, **extra):
    options = {
        "num_layers": len(strides),
        "min_scale": min_scale,
        "max_scale": max_scale,
        "input_size_height": input_size,
        "input_size_width": input_size,
        "anchor_offset_x": 0.5,
        "anchor_offset_y": 0.5,
        "strides": list(strides),
        "aspect_ratios": [1.0],
        "fixed_anchor_size": fixed,
    }
    options.update(extra)
    return options


_SSD_ASPECTS = [1.0, 2.0, 0.5, 3.0, 0.3333]

MODEL_COUNTS = [
    # face short range / BlazeFace front: 16^2*2 + 8^2*6 = 512 + 384
    ("face_short_range", _ssd(128, [8, 16, 16, 16], 0.1484375, 0.75), 896),
    # face full range: 48^2 * 1 (interp 0.0)
    ("face_full_range", _ssd(192, [4], 0.1484375, 0.75, interpolated_scale_aspect_ratio=0.0), 2304),
    # BlazeFace back: 16^2*2 + 8^2*6
    ("blazeface_back", _ssd(256, [16, 32, 32, 32], 0.15625, 0.75), 896),
    # palm 192: 24^2*2 + 12^2*6 = 1152 + 864
    ("palm_192", _ssd(192, [8, 16, 16, 16], 0.1484375, 0.75), 2016),
    # palm 128 (2020-11 to 2021-11)
    ("palm_128", _ssd(128, [8, 16, 16, 16], 0.1484375, 0.75), 896),
    # palm v1: 32^2*2 + 16^2*2 + 8^2*6 = 2048 + 512 + 384
    ("palm_v1_256", _ssd(256, [8, 16, 32, 32, 32], 0.1171875, 0.75), 2944),
    # pose 224: 28^2*2 + 14^2*2 + 7^2*6 = 1568 + 392 + 294
    ("pose_224", _ssd(224, [8, 16, 32, 32, 32], 0.1484375, 0.75), 2254),
    # SSDLite 320: 20^2*3 + 10^2*6 + 5^2*6 + 3^2*6 + 2^2*6 + 1*6 = 1200+600+150+54+24+6
    (
        "ssdlite_320",
        _ssd(
            320,
            [16, 32, 64, 128, 256, 512],
            0.2,
            0.95,
            fixed=False,
            aspect_ratios=_SSD_ASPECTS,
            reduce_boxes_in_lowest_layer=True,
        ),
        2034,
    ),
    # Objectron 300: 19^2*3 + 10^2*6 + 5^2*6 + 3^2*6 + 2^2*6 + 1*6 = 1083+600+150+54+24+6
    (
        "objectron_300",
        _ssd(
            300,
            [16, 32, 64, 128, 256, 512],
            0.2,
            0.95,
            fixed=False,
            aspect_ratios=_SSD_ASPECTS,
            reduce_boxes_in_lowest_layer=True,
        ),
        1917,
    ),
]


@pytest.mark.parametrize("name,options,count", MODEL_COUNTS, ids=[m[0] for m in MODEL_COUNTS])
def test_model_anchor_counts(name, options, count):
    assert ssd_anchors(options).shape == (count, 4)


def test_seed_notebook_rows_blazeface_not_fixed():
    # BlazeFace 128 options with fixed_anchor_size false.
    # s0 = 0.1484375, s1 = 0.1484375 + (0.75 - 0.1484375) / 3 = 0.3489583...
    # interpolated anchor: sqrt(s0 * s1) = 0.2275928...
    anchors = ssd_anchors(_ssd(128, [8, 16, 16, 16], 0.1484375, 0.75, fixed=False))
    assert anchors.shape == (896, 4)
    expected = np.array(
        [
            [0.03125, 0.03125, 0.1484375, 0.1484375],
            [0.03125, 0.03125, 0.22759284392125925, 0.22759284392125925],
            [0.09375, 0.03125, 0.1484375, 0.1484375],
        ]
    )
    np.testing.assert_allclose(anchors[:3].astype(np.float64), expected, rtol=1e-6, atol=0)


# ---------------------------------------------------------------------------
# Anchors: hand-worked small cases
# ---------------------------------------------------------------------------


def test_anchors_only_consecutive_strides_merge():
    # 32 px, interp off, one aspect ratio: one anchor per cell per layer.
    # strides [8, 16, 8]: groups 4x4, 2x2, 4x4 -> 16 + 4 + 16 = 36;
    # row 1 is the second cell of the first 4x4 grid: (1.5/4, 0.5/4).
    separate = ssd_anchors(_ssd(32, [8, 16, 8], 0.1, 0.5, interpolated_scale_aspect_ratio=0.0))
    assert separate.shape == (36, 4)
    np.testing.assert_array_equal(separate[1, :2], [0.375, 0.125])
    # strides [8, 8, 16]: first two layers merge and interleave per cell:
    # 16 * 2 + 4 = 36; rows 0 and 1 share the centre (0.125, 0.125).
    merged = ssd_anchors(_ssd(32, [8, 8, 16], 0.1, 0.5, interpolated_scale_aspect_ratio=0.0))
    assert merged.shape == (36, 4)
    np.testing.assert_array_equal(merged[1, :2], [0.125, 0.125])


def test_anchors_single_stride_scale_branch():
    # n == 1: s = (0.1484375 + 0.75) * 0.5 = 0.44921875 (exact in binary);
    # aspect 1 -> w = h = s; interpolated: sqrt(s * 1.0) = 0.670237...
    anchors = ssd_anchors(_ssd(192, [4], 0.1484375, 0.75, fixed=False))
    assert anchors.shape == (48 * 48 * 2, 4)
    assert anchors[0, 2] == F32(0.44921875) and anchors[0, 3] == F32(0.44921875)
    assert anchors[1, 2] == pytest.approx(math.sqrt(0.44921875), rel=1e-6)
    # first centre 0.5 / 48
    assert anchors[0, 0] == pytest.approx(0.5 / 48, rel=1e-6)


def test_anchors_explicit_feature_maps():
    # grid 2 wide x 3 high, one anchor per cell; centres x in (0.25, 0.75),
    # y in (1/6, 1/2, 5/6), row-major (y outer).
    options = {
        "num_layers": 1,
        "min_scale": 0.2,
        "max_scale": 0.2,
        "feature_map_width": [2],
        "feature_map_height": [3],
        "strides": [8],
        "aspect_ratios": [1.0],
        "interpolated_scale_aspect_ratio": 0.0,
        "fixed_anchor_size": True,
    }
    anchors = ssd_anchors(options)
    expected = [
        [0.25, 1 / 6, 1, 1],
        [0.75, 1 / 6, 1, 1],
        [0.25, 0.5, 1, 1],
        [0.75, 0.5, 1, 1],
        [0.25, 5 / 6, 1, 1],
        [0.75, 5 / 6, 1, 1],
    ]
    np.testing.assert_allclose(anchors, expected, rtol=1e-6)


def test_multiscale_offset_rule_example():
    # §1.6 example: 320 px at level 7 (stride 128): 320 % 128 != 0 -> no offset,
    # centres 0, 128, 256 px -> 0, 0.4, 0.8 on a ceil(320/128) = 3 grid.
    # anchor_scale 3, one scale, aspect 1: size 3 * 128 / 320 = 1.2.
    options = {
        "input_size_height": 320,
        "input_size_width": 320,
        "strides": [128],
        "aspect_ratios": [1.0],
        "multiscale_anchor_generation": True,
        "min_level": 7,
        "max_level": 7,
        "anchor_scale": 3.0,
        "scales_per_octave": 1,
    }
    anchors = ssd_anchors(options)
    assert anchors.shape == (9, 4)
    np.testing.assert_allclose(anchors[:3, 0], [0.0, 0.4, 0.8], rtol=1e-6)
    np.testing.assert_allclose(anchors[::3, 1], [0.0, 0.4, 0.8], rtol=1e-6)
    np.testing.assert_allclose(anchors[:, 2:], 1.2, rtol=1e-6)


def test_fixed_anchors_and_errors():
    fixed = [(0.5, 0.25, 1.0, 1.0), {"x_center": 0.125, "y_center": 0.75, "w": 0.5, "h": 2.0}]
    anchors = ssd_anchors({"fixed_anchors": fixed, "strides": [8, 16]})
    np.testing.assert_array_equal(anchors, [[0.5, 0.25, 1.0, 1.0], [0.125, 0.75, 0.5, 2.0]])
    # any of the five fields present (even at its default value) is an error
    with pytest.raises(ValueError):
        ssd_anchors({"fixed_anchors": fixed, "num_layers": 0})
    with pytest.raises(ValueError):
        ssd_anchors({"num_layers": 1})  # neither feature maps nor strides
    with pytest.raises(ValueError):
        ssd_anchors({"strides": [8]})  # num_layers unset: CHECK len(strides) == 0
    with pytest.raises(ValueError):
        # feature maps with too few strides: MediaPipe hangs
        ssd_anchors(
            {
                "num_layers": 2,
                "feature_map_width": [2, 1],
                "feature_map_height": [2, 1],
                "strides": [8],
                "aspect_ratios": [1.0],
            }
        )


# ---------------------------------------------------------------------------
# Decoding (spec §2.4-§2.8, §2.11): hand-worked cases
# ---------------------------------------------------------------------------

_UNIT_ANCHOR = [[0.5, 0.5, 1.0, 1.0]]


def test_decode_xywh_blazeface_row():
    # anchor (0.5, 0.5, 1, 1), scales 128, XYWH via reverse_output_order:
    # xc = 16/128 + 0.5 = 0.625, yc = -32/128 + 0.5 = 0.25, w = 64/128 = 0.5,
    # h = 32/128 = 0.25 -> xmin 0.375, ymin 0.125, width 0.5, height 0.25.
    # keypoints (8, 16) -> (0.5625, 0.625); (-64, 0) -> (0.0, 0.5).
    # logit 0 -> sigmoid 0.5 == min_score_thresh 0.5 -> kept.
    options = {
        "num_classes": 1,
        "num_boxes": 1,
        "num_coords": 8,
        "keypoint_coord_offset": 4,
        "num_keypoints": 2,
        "sigmoid_score": True,
        "score_clipping_thresh": 100.0,
        "reverse_output_order": True,
        "x_scale": 128.0,
        "y_scale": 128.0,
        "w_scale": 128.0,
        "h_scale": 128.0,
        "min_score_thresh": 0.5,
    }
    raw = np.array([[16, -32, 64, 32, 8, 16, -64, 0]], dtype=np.float32)
    detections = tensors_to_detections(raw, np.zeros((1, 1), np.float32), _UNIT_ANCHOR, options)
    assert len(detections) == 1
    d = detections[0]
    assert d["anchor_index"] == 0 and d["label_id"] == 0
    assert d["score"] == F32(0.5)
    assert (d["xmin"], d["ymin"], d["width"], d["height"]) == (0.375, 0.125, 0.5, 0.25)
    assert d["keypoints"] == [(0.5625, 0.625), (0.0, 0.5)]


def test_decode_xyxy_edge_distances():
    # raw [l, t, r, b] = [0.125, 0.25, 0.375, 0.5] as distances from the anchor
    # centre (0.5, 0.5): xmin = 0.5 - 0.125 = 0.375, ymin = 0.5 - 0.25 = 0.25,
    # xmax = 0.5 + 0.375 = 0.875, ymax = 0.5 + 0.5 = 1.0 -> width 0.5, height 0.75.
    # (tx = (0.375-0.125)/2 = 0.125, tw = 0.5; ty = 0.125, th = 0.75.)
    # keypoint stored (x, y): (0.25, -0.25) -> (0.75, 0.25).
    options = {
        "num_classes": 1,
        "num_coords": 6,
        "keypoint_coord_offset": 4,
        "num_keypoints": 1,
        "box_format": "XYXY",
        "x_scale": 1.0,
        "y_scale": 1.0,
        "w_scale": 1.0,
        "h_scale": 1.0,
    }
    raw = np.array([[0.125, 0.25, 0.375, 0.5, 0.25, -0.25]], dtype=np.float32)
    (d,) = tensors_to_detections(raw, np.ones((1, 1), np.float32), _UNIT_ANCHOR, options)
    assert (d["xmin"], d["ymin"], d["width"], d["height"]) == (0.375, 0.25, 0.5, 0.75)
    assert d["keypoints"] == [(0.75, 0.25)]


def test_decode_yxhw_keypoint_order():
    # YXHW (default): row [ty, tx, th, tw, ky, kx] = [0.25, -0.125, 0.5, 0.25, 0.125, -0.25]
    # yc = 0.75, xc = 0.375, h = 0.5, w = 0.25 -> ymin 0.5, xmin 0.25;
    # keypoint y = 0.125 + 0.5 = 0.625, x = -0.25 + 0.5 = 0.25 -> (0.25, 0.625).
    options = {
        "num_classes": 1,
        "num_coords": 6,
        "keypoint_coord_offset": 4,
        "num_keypoints": 1,
        "x_scale": 1.0,
        "y_scale": 1.0,
        "w_scale": 1.0,
        "h_scale": 1.0,
    }
    raw = np.array([[0.25, -0.125, 0.5, 0.25, 0.125, -0.25]], dtype=np.float32)
    (d,) = tensors_to_detections(raw, np.ones((1, 1), np.float32), _UNIT_ANCHOR, options)
    assert (d["xmin"], d["ymin"], d["width"], d["height"]) == (0.25, 0.5, 0.25, 0.5)
    assert d["keypoints"] == [(0.25, 0.625)]
    # An explicit UNSPECIFIED box_format behaves as YXHW even with reverse_output_order.
    options2 = dict(options, box_format="UNSPECIFIED", reverse_output_order=True)
    (d2,) = tensors_to_detections(raw, np.ones((1, 1), np.float32), _UNIT_ANCHOR, options2)
    assert (d2["xmin"], d2["ymin"]) == (0.25, 0.5)


def _plain_options(num_classes=1, **extra):
    options = {
        "num_classes": num_classes,
        "num_coords": 4,
        "box_format": "XYWH",
        "x_scale": 1.0,
        "y_scale": 1.0,
        "w_scale": 1.0,
        "h_scale": 1.0,
    }
    options.update(extra)
    return options


def test_decode_threshold_equal_kept_below_dropped():
    # raw scores (no sigmoid) compared as they are: 0.5 >= 0.5 kept,
    # the next float below 0.5 dropped (strict <).
    raw = np.zeros((2, 4), np.float32)
    scores = np.array([[0.5], [np.nextafter(F32(0.5), F32(0))]], np.float32)
    anchors = _UNIT_ANCHOR * 2
    out = tensors_to_detections(raw, scores, anchors, _plain_options(min_score_thresh=0.5))
    assert [d["anchor_index"] for d in out] == [0]
    # zero-size box is kept: xmin = ymin = 0.5, width = height = 0.
    assert (out[0]["xmin"], out[0]["width"]) == (0.5, 0.0)


def test_decode_class_rules():
    raw = np.zeros((1, 4), np.float32)
    scores = np.array([[0.5, 0.5, 0.25]], np.float32)
    # tie: lowest class index wins
    (d,) = tensors_to_detections(raw, scores, _UNIT_ANCHOR, _plain_options(3))
    assert d["label_id"] == 0 and d["score"] == F32(0.5)
    # ignoring class 0 -> class 1
    (d,) = tensors_to_detections(raw, scores, _UNIT_ANCHOR, _plain_options(3, ignore_classes=[0]))
    assert d["label_id"] == 1
    # allow only class 2 -> class 2 with 0.25
    (d,) = tensors_to_detections(raw, scores, _UNIT_ANCHOR, _plain_options(3, allow_classes=[2]))
    assert (d["label_id"], d["score"]) == (2, F32(0.25))
    # §2.11: every class ignored, no threshold -> label -1, score -FLT_MAX
    (d,) = tensors_to_detections(raw, scores, _UNIT_ANCHOR, _plain_options(3, ignore_classes=[0, 1, 2]))
    assert d["label_id"] == -1 and d["score"] == -np.finfo(np.float32).max
    # allowlist naming a non-existent class: class -1 is rejected
    assert tensors_to_detections(raw, scores, _UNIT_ANCHOR, _plain_options(3, allow_classes=[7])) == []
    with pytest.raises(ValueError):
        tensors_to_detections(raw, scores, _UNIT_ANCHOR, _plain_options(3, allow_classes=[1], ignore_classes=[0]))


def test_decode_sigmoid_clipping_and_exp():
    # logit 200 clamped to 100 -> sigmoid 1.0 in single precision.
    # exp sizes: tw = th = 0 -> w = exp(0) * 0.5 = 0.5 (anchor w = h = 0.5).
    raw = np.zeros((1, 4), np.float32)
    options = _plain_options(sigmoid_score=True, score_clipping_thresh=100.0, apply_exponential_on_box_size=True)
    (d,) = tensors_to_detections(raw, np.array([[200.0]], np.float32), [[0.5, 0.5, 0.5, 0.5]], options)
    assert d["score"] == F32(1.0)
    assert (d["xmin"], d["ymin"], d["width"], d["height"]) == (0.25, 0.25, 0.5, 0.5)
    # logit -2 -> 1 / (1 + e^2) = 0.11920292
    (d,) = tensors_to_detections(raw, np.array([[-2.0]], np.float32), [[0.5, 0.5, 0.5, 0.5]], options)
    assert d["score"] == pytest.approx(0.11920292, rel=1e-6)


def test_decode_filters_flip_and_max_results():
    # flip: box y in [0.125, 0.375] -> ymin = 1 - 0.375 = 0.625, height 0.25;
    # keypoint y 0.25 -> 0.75.  Row (XYWH): dx 0, dy -0.25, w 0.5, h 0.25, kp (0, -0.25).
    options = _plain_options(num_coords=6, num_keypoints=1, keypoint_coord_offset=4, flip_vertically=True)
    raw = np.array([[0.0, -0.25, 0.5, 0.25, 0.0, -0.25]], np.float32)
    (d,) = tensors_to_detections(raw, np.ones((1, 1), np.float32), _UNIT_ANCHOR, options)
    assert (d["xmin"], d["ymin"], d["width"], d["height"]) == (0.25, 0.625, 0.5, 0.25)
    assert d["keypoints"] == [(0.5, 0.75)]

    # negative width dropped; max_results keeps the FIRST passing anchors in index order
    raw = np.array([[0, 0, -0.5, 0.5], [0, 0, 0.5, 0.5], [0, 0, 0.5, 0.5], [0, 0, 0.5, 0.5]], np.float32)
    scores = np.array([[0.9], [0.1], [0.2], [0.99]], np.float32)
    out = tensors_to_detections(raw, scores, _UNIT_ANCHOR * 4, _plain_options(max_results=2))
    assert [d["anchor_index"] for d in out] == [1, 2]

    # all scales 0 (unset): inf/NaN boxes, all dropped (§2.11)
    options = {"num_classes": 1, "num_coords": 4}
    assert tensors_to_detections(np.ones((2, 4), np.float32), np.ones((2, 1), np.float32), _UNIT_ANCHOR * 2, options) == []


def test_decode_keypoint_offset_zero_overwrites_box():
    # §2.11: XYWH, 1 keypoint at offset 0, num_coords 6, scales 1, anchor (0.5,0.5,1,1).
    # raw [0.125, 0.25, 0.5, 0.5, 0, 0]: box -> buffer[0..3] = ymin 0.5, xmin 0.375,
    # ymax 1.0, xmax 0.875. Keypoint read from r[0], r[1] = (0.125, 0.25) ->
    # (0.625, 0.75), written to buffer[0] (x), buffer[1] (y).
    # Detection reads ymin = 0.625, xmin = 0.75, ymax = 1.0, xmax = 0.875:
    # width 0.125, height 0.375; keypoint (0.625, 0.75).
    options = _plain_options(num_coords=6, num_keypoints=1)
    raw = np.array([[0.125, 0.25, 0.5, 0.5, 0.0, 0.0]], np.float32)
    (d,) = tensors_to_detections(raw, np.ones((1, 1), np.float32), _UNIT_ANCHOR, options)
    assert (d["xmin"], d["ymin"], d["width"], d["height"]) == (0.75, 0.625, 0.125, 0.375)
    assert d["keypoints"] == [(0.625, 0.75)]


def test_postprocessed_path():
    # default indices ymin, xmin, ymax, xmax: [0.125, 0.25, 0.5, 0.75] ->
    # xmin 0.25, ymin 0.125, width 0.5, height 0.375. num_detections 2.7 -> 2.
    boxes = np.array([[0.125, 0.25, 0.5, 0.75], [0.0, 0.0, 0.5, 0.5], [0, 0, 1, 1]], np.float32)
    classes = np.array([2.0, 0.0, 1.0], np.float32)
    scores = np.array([0.75, 0.25, 0.5], np.float32)
    out = postprocessed_to_detections(boxes, classes, scores, 2.7, {"min_score_thresh": 0.5})
    assert len(out) == 1
    d = out[0]
    assert (d["anchor_index"], d["label_id"], d["score"]) == (0, 2, F32(0.75))
    assert (d["xmin"], d["ymin"], d["width"], d["height"]) == (0.25, 0.125, 0.5, 0.375)
    assert d["keypoints"] == []
    # custom order xmin, ymin, xmax, ymax
    indices = {"xmin": 0, "ymin": 1, "xmax": 2, "ymax": 3}
    out = postprocessed_to_detections(boxes, classes, scores, 1.0, {"box_boundaries_indices": indices})
    assert (out[0]["xmin"], out[0]["ymin"], out[0]["width"], out[0]["height"]) == (0.125, 0.25, 0.375, 0.5)


# ---------------------------------------------------------------------------
# Overlap measures (spec §3.3)
# ---------------------------------------------------------------------------


def test_overlap_values():
    a = (0.0, 0.0, 2.0, 2.0)
    b = (1.0, 1.0, 2.0, 2.0)
    # intersection [1,2]x[1,2] = 1; union 4 + 4 - 1 = 7; enclosing box [0,3]^2 = 9
    assert overlap(a, b, "INTERSECTION_OVER_UNION") == F32(1 / 7)
    assert overlap(a, b, "JACCARD") == F32(1 / 9)
    assert overlap(a, b, "MODIFIED_JACCARD") == F32(0.25)  # 1 / area(b) = 1/4
    # MODIFIED_JACCARD divides by the SECOND argument's area
    big = (0.0, 0.0, 2.0, 2.0)
    small = (1.0, 1.0, 1.0, 1.0)
    assert overlap(big, small, "MODIFIED_JACCARD") == F32(1.0)  # 1 / 1
    assert overlap(small, big, "MODIFIED_JACCARD") == F32(0.25)  # 1 / 4
    # nested boxes: JACCARD == IoU (enclosing box is the outer box): 4 / 16
    outer = (0.0, 0.0, 4.0, 4.0)
    inner = (1.0, 1.0, 2.0, 2.0)
    assert overlap(outer, inner, "JACCARD") == overlap(outer, inner, "INTERSECTION_OVER_UNION") == F32(0.25)
    # disjoint, touching edge, empty (negative width), zero-area denominator -> 0
    assert overlap((0, 0, 1, 1), (2, 2, 1, 1), "INTERSECTION_OVER_UNION") == 0
    assert overlap((0, 0, 1, 1), (1, 0, 1, 1), "INTERSECTION_OVER_UNION") == 0
    assert overlap((0, 0, -1, 1), (0, 0, 1, 1), "INTERSECTION_OVER_UNION") == 0
    assert overlap((0, 0, 0, 0), (0, 0, 0, 0), "JACCARD") == 0
    # self-overlap of a positive box is exactly 1
    assert overlap(a, a, "INTERSECTION_OVER_UNION") == 1


# ---------------------------------------------------------------------------
# NMS (spec §3.4, §3.5)
# ---------------------------------------------------------------------------


def _det(index, score, xmin, ymin, width, height, keypoints=(), label=0):
    return {
        "anchor_index": index,
        "score": F32(score),
        "label_id": label,
        "xmin": F32(xmin),
        "ymin": F32(ymin),
        "width": F32(width),
        "height": F32(height),
        "keypoints": [(F32(x), F32(y)) for x, y in keypoints],
    }


def _chain():
    # Unit-height strips: A = [0,3], B = [1,5], C = [3,6] in x.
    # A-B: I = 2, U = 3 + 4 - 2 = 5 -> 0.4; B-C: I = 2, U = 4 + 3 - 2 = 5 -> 0.4;
    # A-C touch at x = 3: intersection area 0 -> 0.
    a = _det(0, 0.9, 0, 0, 3, 1)
    b = _det(1, 0.8, 1, 0, 4, 1)
    c = _det(2, 0.7, 3, 0, 3, 1)
    return a, b, c


def test_default_nms_chain():
    a, b, c = _chain()
    assert overlap((0, 0, 3, 1), (1, 0, 4, 1), "INTERSECTION_OVER_UNION") == F32(0.4)
    assert overlap((1, 0, 4, 1), (3, 0, 3, 1), "INTERSECTION_OVER_UNION") == F32(0.4)
    assert overlap((0, 0, 3, 1), (3, 0, 3, 1), "INTERSECTION_OVER_UNION") == 0
    options = {"min_suppression_threshold": 0.3, "overlap_type": "INTERSECTION_OVER_UNION", "algorithm": "DEFAULT"}
    # greedy: A kept, B suppressed by A, C not suppressed (B is gone) -> A, C;
    # input order does not matter, output is in score order.
    out = non_max_suppression([c, b, a], options)
    assert [d["anchor_index"] for d in out] == [0, 2]
    # threshold 0.5: nothing exceeds it -> all kept in score order
    out = non_max_suppression([c, b, a], dict(options, min_suppression_threshold=0.5))
    assert [d["anchor_index"] for d in out] == [0, 1, 2]
    # max_num_detections 1 -> only A; min_score_threshold 0.75 -> stop at B
    assert [d["anchor_index"] for d in non_max_suppression([c, b, a], dict(options, max_num_detections=1))] == [0]
    out = non_max_suppression([c, b, a], dict(options, min_suppression_threshold=0.5, min_score_threshold=0.75))
    assert [d["anchor_index"] for d in out] == [0, 1]
    # outputs are fresh dicts equal to the inputs
    assert out[0] == a and out[0] is not a


def test_nms_stable_tie_break():
    # equal scores keep input-list order
    d0 = _det(5, 0.5, 0, 0, 1, 1)
    d1 = _det(3, 0.5, 10, 10, 1, 1)
    out = non_max_suppression([d0, d1], {"min_suppression_threshold": 0.3, "overlap_type": "INTERSECTION_OVER_UNION"})
    assert [d["anchor_index"] for d in out] == [5, 3]


def test_weighted_nms_keeps_top_score_and_blends():
    # A = (0,0,1,1) s=0.75, B = (0.25,0,1,1) s=0.25: IoU = 0.75 / 1.25 = 0.6 > 0.3.
    # S = 1.0; xmin' = 0.75*0 + 0.25*0.25 = 0.0625; xmax' = 0.75*1 + 0.25*1.25 = 1.0625
    # -> width 1.0; y unchanged (0, 1). Keypoints: A (0.5, 0.5), B (1.0, 0.0)
    # -> (0.75*0.5 + 0.25*1.0, 0.75*0.5 + 0.25*0) = (0.625, 0.375).
    # C = (3,3,1,1) s=0.5 is alone: blended with itself, 3*0.5/0.5 = 3 exactly.
    a = _det(0, 0.75, 0, 0, 1, 1, [(0.5, 0.5)], label=4)
    b = _det(1, 0.25, 0.25, 0, 1, 1, [(1.0, 0.0)], label=7)
    c = _det(2, 0.5, 3, 3, 1, 1, [(3.5, 3.5)])
    options = {"min_suppression_threshold": 0.3, "overlap_type": "INTERSECTION_OVER_UNION", "algorithm": "WEIGHTED"}
    out = non_max_suppression([b, c, a], options)
    assert len(out) == 2
    top = out[0]
    assert top["score"] == F32(0.75)  # the top's score, not the mean 0.5
    assert top["label_id"] == 4 and top["anchor_index"] == 0
    assert (top["xmin"], top["ymin"], top["width"], top["height"]) == (0.0625, 0.0, 1.0, 1.0)
    assert top["keypoints"] == [(0.625, 0.375)]
    assert top is not a and a["xmin"] == 0.0  # input untouched
    assert (out[1]["anchor_index"], out[1]["xmin"], out[1]["keypoints"]) == (2, 3.0, [(3.5, 3.5)])


def test_weighted_nms_early_stop():
    dets = [_det(0, 0.9, 0, 0, 1, 1), _det(1, 0.8, 5, 5, 1, 1), _det(2, 0.7, 9, 9, 1, 1)]
    # threshold 1.0 (also the proto default): self-overlap 1 is not > 1, the top
    # is not its own candidate -> one detection, the rest dropped.
    out = non_max_suppression(dets, {"min_suppression_threshold": 1.0, "overlap_type": "INTERSECTION_OVER_UNION", "algorithm": "WEIGHTED"})
    assert [d["anchor_index"] for d in out] == [0]
    assert len(non_max_suppression(dets, {"algorithm": "WEIGHTED"})) == 1
    # zero-area top (self-overlap 0) also stops
    dets0 = [_det(0, 0.9, 0, 0, 0, 0), _det(1, 0.8, 5, 5, 1, 1)]
    out = non_max_suppression(dets0, {"min_suppression_threshold": 0.3, "overlap_type": "INTERSECTION_OVER_UNION", "algorithm": "WEIGHTED"})
    assert [d["anchor_index"] for d in out] == [0]
    # min_score_threshold break
    out = non_max_suppression(
        dets,
        {"min_suppression_threshold": 0.3, "overlap_type": "INTERSECTION_OVER_UNION", "algorithm": "WEIGHTED", "min_score_threshold": 0.75},
    )
    assert [d["anchor_index"] for d in out] == [0, 1]
    assert non_max_suppression([], {"algorithm": "WEIGHTED"}) == []


# ---------------------------------------------------------------------------
# Letterbox (spec §4)
# ---------------------------------------------------------------------------


def test_remove_letterbox_hand_example():
    # padding l = r = 0.125, t = b = 0: x scale 1 - 0.25 = 0.75, y scale 1.
    # xmin (0.5 - 0.125)/0.75 = 0.5; width 0.375/0.75 = 0.5; ymin, height unchanged;
    # keypoints x 0.125 -> 0, x 0.875 -> 1.0 (no clamping: x 0 -> -1/6).
    det = _det(7, 0.9, 0.5, 0.25, 0.375, 0.5, [(0.125, 0.5), (0.875, 0.75), (0.0, 0.0)])
    (out,) = remove_letterbox([det], [0.125, 0.0, 0.125, 0.0])
    assert (out["xmin"], out["ymin"], out["width"], out["height"]) == (0.5, 0.25, 0.5, 0.5)
    assert out["keypoints"][:2] == [(0.0, 0.5), (1.0, 0.75)]
    assert out["keypoints"][2][0] == pytest.approx(-1 / 6, rel=1e-6)
    assert out["score"] == F32(0.9) and out["anchor_index"] == 7
    assert remove_letterbox([], [0.1, 0.0, 0.1, 0.0]) == []
    # the projection with the letterbox matrix agrees (rotation 0), up to ulps
    (projected,) = project_detections([det], letterbox_matrix([0.125, 0.0, 0.125, 0.0]))
    for key in ("xmin", "ymin", "width", "height"):
        assert projected[key] == pytest.approx(float(out[key]), abs=1e-6)
    for (px, py), (ox, oy) in zip(projected["keypoints"], out["keypoints"]):
        assert px == pytest.approx(float(ox), abs=1e-6) and py == pytest.approx(float(oy), abs=1e-6)


def test_project_detections_rotation_bbox():
    # 90-degree rotation about the origin: (x, y) -> (-y, x).
    # box [0.25, 0.5] x [0.125, 0.375] -> corners x' in [-0.375, -0.125], y' in [0.25, 0.5]
    rot = [[0, -1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]
    det = _det(0, 0.5, 0.25, 0.125, 0.25, 0.25, [(0.25, 0.125)])
    (out,) = project_detections([det], rot)
    assert (out["xmin"], out["ymin"], out["width"], out["height"]) == (-0.375, 0.25, 0.25, 0.25)
    assert out["keypoints"] == [(-0.125, 0.25)]


def test_pad_roi_portrait_landscape_square():
    # portrait 100x200 into 128x128: t = 1, r = 2 -> not t > r -> ROI width
    # 200 / 1 = 200, horizontal padding (1 - 1/2)/2 = 0.25.
    padding, roi = pad_roi(100, 200, 128, 128)
    assert padding == [0.25, 0.0, 0.25, 0.0]
    assert roi == (50.0, 100.0, 200.0, 200.0)
    # landscape 200x100: t = 1 > r = 0.5 -> ROI height 200 * 1, vertical padding 0.25.
    padding, roi = pad_roi(200, 100, 128, 128)
    assert padding == [0.0, 0.25, 0.0, 0.25]
    assert roi == (100.0, 50.0, 200.0, 200.0)
    # square: equal ratios -> else branch, padding (1 - 1)/2 = 0.
    padding, roi = pad_roi(64, 64, 128, 128)
    assert padding == [0.0, 0.0, 0.0, 0.0]
    assert roi == (32.0, 32.0, 64.0, 64.0)
    # 640x480 into a 256 wide x 128 high tensor: t = 0.5, r = 0.75 -> width
    # 480 / 0.5 = 960, horizontal padding (1 - 0.5/0.75)/2 = 1/6.
    padding, roi = pad_roi(640, 480, 256, 128)
    assert padding[0] == pytest.approx(1 / 6, rel=1e-6) and padding[1] == 0.0
    assert roi == (320.0, 240.0, 960.0, 480.0)
    # no keep-aspect: zero padding, ROI unchanged (stretched)
    assert pad_roi(100, 200, 128, 128, keep_aspect_ratio=False) == ([0.0] * 4, (50.0, 100.0, 100.0, 200.0))


def test_image_to_tensor_identity_and_letterbox_rows():
    # 2x2 image into a 2x2 tensor: no padding, step 1 -> every output pixel is
    # the source pixel; range [0, 1] -> pixel / 255.
    image = np.array([[[0], [255]], [[51], [102]]], np.uint8)
    out = image_to_tensor(image, 2, 2, True, value_range=(0.0, 1.0))
    assert out.shape == (2, 2, 1) and out.dtype == np.float32
    np.testing.assert_allclose(out[..., 0], [[0.0, 1.0], [0.2, 0.4]], rtol=1e-6)
    # 4 wide x 2 high into 4x4 with keep-aspect: ROI height 4, top = 1 - 2 = -1,
    # step 1 in both axes. Tensor rows 0 and 3 sample rows -1 and 2 (outside) -> 0
    # -> -1.0 in [-1, 1]; rows 1, 2 are the image rows: 0 -> -1, 255 -> 1, 51 -> -0.6.
    image = np.array([[0, 255, 51, 0], [255, 255, 0, 51]], np.uint8)[..., None]
    out = image_to_tensor(image, 4, 4, True)
    expected = [[-1, -1, -1, -1], [-1, 1, -0.6, -1], [1, 1, -1, -0.6], [-1, -1, -1, -1]]
    np.testing.assert_allclose(out[..., 0], expected, rtol=1e-6, atol=1e-6)


def test_image_to_tensor_bilinear_upsample_border_zero():
    # 2 wide x 1 high image [100, 200] stretched (no keep-aspect) to 4x2:
    # x_src = x * 0.5, y_src = y * 0.5 (no half-pixel centring).
    # row 0: x=0 -> 100; x=1 -> (100+200)/2 = 150; x=2 -> 200; x=3 -> 0.5*200 + 0.5*0 = 100.
    # row 1 (y_src 0.5, row 1 outside -> 0): half of row 0 -> 50, 75, 100, 50.
    image = np.array([[[100], [200]]], np.uint8)
    out = image_to_tensor(image, 4, 2, False, value_range=(0.0, 255.0))
    np.testing.assert_allclose(out[..., 0], [[100, 150, 200, 100], [50, 75, 100, 50]], rtol=1e-6)
