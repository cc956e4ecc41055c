"""Detector: the values of detect / detect_images in pixels, batching, inputs, JSON, COCO."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

import jaxanchors as ja
from jaxanchors import presets
from jaxanchors.detector import Detector, ImageDetections
from jaxanchors.letterbox import letterbox
import mediapipe_data

pytest.importorskip("ai_edge_litert", reason="the detector tests run the real models "
                    "(the 'models' extra)")
pytest.importorskip("tflite", reason="the JAX networks need the 'models' extra")

PRESET_OF_MODEL = {"face_short_range": "face_short_range", "face_full_range": "face_full_range",
                   "palm_lite": "palm", "palm_full": "palm", "pose": "pose"}
# The Tasks API variants run the same models with another NMS threshold.
TASKS = {"face_short_range": "face_short_range_tasks", "pose": "pose_tasks"}


def pixels(found: ja.Detections, width: int, height: int) -> ja.Detections:
  """One frame's valid detections in pixels, as the pipeline's own to_pixels gives them."""
  p = jax.tree.map(np.asarray, ja.to_pixels(found, width=width, height=height))
  return ja.Detections(*(x[p.valid] for x in p))


def assert_same(got: ImageDetections, want: ja.Detections) -> None:
  """Same detections, same values (bit for bit)."""
  np.testing.assert_array_equal(got.boxes, want.boxes)
  np.testing.assert_array_equal(got.keypoints, want.keypoints)
  np.testing.assert_array_equal(got.scores, want.scores)
  np.testing.assert_array_equal(got.classes, want.classes)
  assert got.boxes.dtype == np.float32 and got.classes.dtype == np.int32


def assert_near_mediapipe(got: ImageDetections, case: mediapipe_data.Case, atol: float) -> None:
  a = case.arrays
  w, h = got.width, got.height
  assert len(got) == len(a["final_scores"])
  np.testing.assert_allclose(got.boxes / [w, h, w, h], ja.from_xywh(a["final_boxes"]), rtol=0,
                             atol=atol)
  np.testing.assert_allclose(got.keypoints / [w, h], a["final_keypoints"], rtol=0, atol=atol)
  np.testing.assert_allclose(got.scores, a["final_scores"], rtol=0, atol=atol)


@pytest.fixture(scope="module")
def litert_models():
  from jaxanchors import models
  return {}, models


def _litert_model(cache, name):
  store, models = cache
  if name not in store:
    store[name] = models.TFLiteModel.from_name(name)
  return store[name]


@pytest.mark.parametrize("name", mediapipe_data.CASES)
def test_litert_detector_equals_detect_on_mediapipe_photos(litert_models, name):
  """Detector(runtime="litert") gives the values of letterbox + LiteRT + detect (the
  path that reproduces MediaPipe) for every recorded photo, and for the Tasks variants."""
  case = mediapipe_data.load(name)
  image = mediapipe_data.photo(case)
  h, w = image.shape[:2]
  model = _litert_model(litert_models, case.model)
  # a batch of one, as the detector runs it (the same compiled programs)
  tensor, transform = letterbox(image[None], presets.get(PRESET_OF_MODEL[case.model]))
  raw = model(np.asarray(tensor))
  for preset in {PRESET_OF_MODEL[case.model], TASKS.get(case.model)} - {None}:
    want = jax.tree.map(lambda x: x[0], ja.detect(raw.raw_boxes, raw.raw_scores, preset,
                                                  max_detections=8, transform=transform))
    detector = Detector.from_preset(preset, runtime="litert", model=case.model,
                                    max_detections=8)
    got = detector.detect(image)
    assert_same(got, pixels(want, w, h))
    assert (got.width, got.height, got.preset) == (w, h, preset)
    assert got.keypoint_names == presets.get(preset).keypoint_names
    if preset == PRESET_OF_MODEL[case.model]:
      assert_near_mediapipe(got, case, atol=1e-6)


# The Detector's JAX runtime is detect_images (tested on every model and photo in
# test_networks); here its wiring, on one photo of each way of mapping back (each network
# compiles for seconds per picture size): projection (faces), letterbox removal (palms).
JAX_CASES = ["face_short_range_astronaut", "palm_full_camera_hands"]


@pytest.mark.parametrize("name", JAX_CASES)
def test_jax_detector_equals_detect_images_on_mediapipe_photos(name):
  case = mediapipe_data.load(name)
  image = mediapipe_data.photo(case)
  preset = PRESET_OF_MODEL[case.model]
  h, w = image.shape[:2]
  want = ja.detect_images(image[None], preset, max_detections=8)
  got = Detector.from_preset(preset, max_detections=8).detect(image)
  assert_same(got, pixels(jax.tree.map(lambda x: x[0], want), w, h))
  assert_near_mediapipe(got, case, atol=1e-4)  # the JAX networks' documented tolerance


@pytest.fixture(scope="module")
def astronaut():
  data = pytest.importorskip("skimage.data", reason="scikit-image provides the photo")
  return data.astronaut()[60:188, 160:288]  # the face, 128 x 128


@pytest.fixture(scope="module")
def faces():
  return Detector.from_preset("face_short_range", runtime="litert", max_detections=4,
                              batch_size=2)


def test_pictures_of_every_type_give_the_uint8_detections(faces, astronaut):
  want = faces.detect(astronaut)
  assert len(want) == 1 and want.keypoint_names[0] == "right_eye"
  gray = astronaut.mean(axis=-1).round().astype(np.uint8)
  want_gray = faces.detect(np.repeat(gray[..., None], 3, axis=-1))
  same = [
      (faces.detect(astronaut.astype(np.uint16) * 257), want),                    # 16-bit
      (faces.detect(np.dstack([astronaut, np.zeros_like(gray)])), want),           # RGBA
      (faces.detect(astronaut.astype(np.int64)), want),                            # other ints
      (faces.detect(gray), want_gray), (faces.detect(gray[..., None]), want_gray),  # gray
      (faces.detect(np.dstack([gray, gray])), want_gray),                          # gray+alpha
  ]
  for got, expected in same:
    assert_same(got, ja.Detections(expected.boxes, expected.keypoints, expected.scores,
                                   expected.classes, None))
  # float pixels (0..255) go through the letterbox's float path: close, not bit-equal
  as_float = faces.detect(astronaut.astype(np.float32))
  np.testing.assert_allclose(as_float.boxes, want.boxes, rtol=0, atol=0.5)


def test_detect_batch_groups_sizes_and_keeps_order(faces, astronaut):
  small = astronaut[::2, ::2]
  pictures = [astronaut, small, astronaut[:, ::-1], small, astronaut, astronaut]
  got = faces.detect_batch(pictures)
  assert [(r.width, r.height) for r in got] == [(p.shape[1], p.shape[0]) for p in pictures]
  for r, p in zip(got, pictures):
    one = faces.detect(p)
    assert_same(r, ja.Detections(one.boxes, one.keypoints, one.scores, one.classes, None))
  stacked = faces.detect_batch(np.stack([astronaut, astronaut]))
  assert len(stacked) == 2 and np.array_equal(stacked[0].boxes, stacked[1].boxes)


def test_partial_batches_are_padded_to_a_power_of_two():
  """Sizes 3 and 4 share one program; 4 + 1 adds the program of 1."""
  from _util import count_traces
  pictures = np.zeros((4, 40, 56, 3), np.uint8)
  detector = Detector.from_preset("face_short_range", runtime="litert", batch_size=4,
                                  max_detections=4)
  with count_traces("_letterbox") as traces:
    assert len(detector.detect_batch(pictures[:3])) == 3
    detector.detect_batch(pictures)
    assert traces.count == 1
    assert len(detector.detect_batch(list(pictures) + [pictures[0]])) == 5
  assert traces.count == 2


def test_min_score_is_a_threshold_per_detector(faces, astronaut):
  want = faces.detect(astronaut)
  score = float(want.scores[0])
  above = Detector.from_preset("face_short_range", runtime="litert", min_score=score + 1e-3)
  below = Detector.from_preset("face_short_range", runtime="litert", min_score=score - 1e-3)
  assert len(above.detect(astronaut)) == 0 and len(below.detect(astronaut)) == 1


def test_json_round_trip_and_schema(faces, astronaut):
  found = faces.detect(astronaut)
  doc = json.loads(found.to_json())
  assert set(doc) == {"image", "frame", "width", "height", "preset", "detections"}
  (face,) = doc["detections"]
  assert set(face) == {"score", "class_id", "label", "box", "keypoints"}
  assert [p["name"] for p in face["keypoints"]] == list(presets.get("face_short_range")
                                                          .keypoint_names)
  assert face["box"] == found.boxes[0].tolist() and face["label"] is None
  back = ImageDetections.from_dict(doc)
  assert_same(back, ja.Detections(found.boxes, found.keypoints, found.scores, found.classes,
                                  None))
  assert back.keypoint_names == found.keypoint_names


def test_coco_results_load_in_pycocotools(faces, astronaut):
  coco_module = pytest.importorskip("pycocotools.coco", reason="pycocotools (test extra)")
  results = faces.detect_batch([astronaut, astronaut[::2, ::2]])
  anns = [a for i, r in enumerate(results) for a in r.to_coco(i + 1)]
  gt = coco_module.COCO()
  gt.dataset = {"images": [{"id": 1, "width": 128, "height": 128},
                           {"id": 2, "width": 64, "height": 64}],
                "annotations": [], "categories": [{"id": 0, "name": "face"}]}
  gt.createIndex()
  res = gt.loadRes(anns)
  assert sorted(res.getImgIds()) == [1, 2] and len(res.getAnnIds()) == 2
  ann = res.loadAnns(res.getAnnIds(imgIds=[1]))[0]
  x0, y0, x1, y1 = results[0].boxes[0].tolist()
  assert ann["bbox"] == [x0, y0, x1 - x0, y1 - y0] and ann["score"] == results[0].scores[0]


def test_detect_files_reads_folders_globs_and_videos(faces, astronaut, tmp_path):
  av = pytest.importorskip("av", reason="videos need PyAV (the 'video' extra)")
  from PIL import Image
  folder = tmp_path / "photos"
  folder.mkdir()
  Image.fromarray(astronaut).save(folder / "b.png")
  Image.fromarray(astronaut[:, ::-1]).save(folder / "a.png")
  (folder / "notes.txt").write_text("skipped")
  video = tmp_path / "clip.mp4"
  with av.open(str(video), "w") as container:
    stream = container.add_stream("mpeg4", rate=5)
    stream.width, stream.height, stream.pix_fmt = 128, 128, "yuv420p"
    for k in range(5):
      frame = av.VideoFrame.from_ndarray(np.roll(astronaut, 3 * k, axis=1), format="rgb24")
      for packet in stream.encode(frame):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)
  got = list(faces.detect_files([folder, str(video)], with_images=True))
  assert [(r.source.rsplit("/", 1)[-1], r.frame) for r, _ in got] == (
      [("a.png", None), ("b.png", None)] + [("clip.mp4", k) for k in range(5)])
  from jaxanchors import images
  frames = list(images.iter_video(video))
  for (r, picture), want in zip(got, [astronaut[:, ::-1], astronaut] + frames):
    np.testing.assert_array_equal(picture, want)
    one = faces.detect(want)
    assert_same(r, ja.Detections(one.boxes, one.keypoints, one.scores, one.classes, None))
  assert sum(len(r) for r, _ in got) == 7  # the face in every picture
  assert [r.source for r in faces.detect_files(str(folder / "*.png"))] == [
      str(folder / "a.png"), str(folder / "b.png")]


def test_bad_arguments_name_themselves():
  with pytest.raises(ValueError, match="no shipped model"):
    Detector.from_preset("ssdlite_coco")
  with pytest.raises(ValueError, match="unknown preset"):
    Detector.from_preset("faces")
  with pytest.raises(ValueError, match="runtime"):
    Detector.from_preset("pose", runtime="tflite")
  with pytest.raises(ValueError, match="max_detections"):
    Detector.from_preset("pose", max_detections=0)
  with pytest.raises(ValueError, match="min_score"):
    Detector.from_preset("pose", min_score=1.5)
  with pytest.raises(ValueError, match="unknown model"):
    Detector.from_preset("palm", model="palm_heavy")
  detector = Detector.from_preset("pose", runtime="litert")
  with pytest.raises(ValueError, match="shape"):
    detector.detect(np.zeros((4, 4, 4, 3), np.uint8))
  with pytest.raises(TypeError, match="dtype bool"):
    detector.detect(np.zeros((4, 4), bool))
