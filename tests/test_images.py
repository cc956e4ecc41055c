"""images: array conversion, files (16-bit, palette, EXIF), inputs, videos."""

from __future__ import annotations

import numpy as np
import pytest

from jaxanchors import images

Image = pytest.importorskip("PIL.Image", reason="reading images needs Pillow")


def _photo() -> np.ndarray:
  rng = np.random.default_rng(0)
  return rng.integers(0, 256, (30, 50, 3), dtype=np.uint8)


def test_as_rgb_conversions():
  x = _photo()
  np.testing.assert_array_equal(images.as_rgb(x), x)
  np.testing.assert_array_equal(images.as_rgb(x.astype(np.uint16) * 257), x)
  np.testing.assert_array_equal(images.as_rgb(np.dstack([x, x[..., :1]])), x)     # RGBA
  np.testing.assert_array_equal(images.as_rgb(x[..., 0]), np.repeat(x[..., :1], 3, -1))
  np.testing.assert_array_equal(images.as_rgb(x[..., :2]), np.repeat(x[..., :1], 3, -1))
  np.testing.assert_array_equal(images.as_rgb(x.astype(np.int32)), x)
  f = images.as_rgb(x.astype(np.float64) + 0.25)
  assert f.dtype == np.float32 and np.allclose(f, x + 0.25)
  # uint16 rounds to the nearest 8-bit level: 128 / 257 = 0.498 -> 0, 129 / 257 -> 1
  np.testing.assert_array_equal(images.as_rgb(np.array([[128, 129, 65535]], np.uint16))[0, :, 0],
                                [0, 1, 255])


@pytest.mark.parametrize("bad,error,match", [
    (np.zeros((2, 3, 5), np.uint8), ValueError, "C in 1..4"),
    (np.zeros((2, 2, 2, 3), np.uint8), ValueError, "shape"),
    (np.zeros((0, 3, 3), np.uint8), ValueError, "empty"),
    (np.full((2, 2), 300, np.int32), ValueError, "0..255"),
    (np.full((2, 2), -1, np.int8), ValueError, "0..255"),
    (np.full((2, 2), np.nan, np.float32), ValueError, "finite"),
    (np.zeros((2, 2), bool), TypeError, "dtype bool"),
    (np.array([["a"]]), TypeError, "dtype"),
])
def test_as_rgb_refuses_what_is_not_a_picture(bad, error, match):
  with pytest.raises(error, match=match):
    images.as_rgb(bad)


def test_16_bit_gray_file_keeps_its_levels(tmp_path):
  gray = _photo()[..., 0]
  Image.fromarray(gray.astype(np.uint16) * 257).save(tmp_path / "g16.png")
  assert Image.open(tmp_path / "g16.png").mode.startswith("I;16")
  np.testing.assert_array_equal(images.read_image(tmp_path / "g16.png"),
                                np.repeat(gray[..., None], 3, -1))


def test_palette_and_one_bit_files(tmp_path):
  x = _photo()
  palette = Image.fromarray(x).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
  palette.save(tmp_path / "p.png")
  got = images.read_image(tmp_path / "p.png")
  colours = np.array(palette.getpalette()).reshape(-1, 3)
  np.testing.assert_array_equal(got, colours[np.asarray(palette)])
  assert len(np.unique(got.reshape(-1, 3), axis=0)) <= 16
  Image.fromarray(x[..., 0] > 127).save(tmp_path / "bw.png")
  np.testing.assert_array_equal(images.read_image(tmp_path / "bw.png"),
                                np.repeat(np.where(x[..., :1] > 127, 255, 0), 3, -1))


@pytest.mark.parametrize("orientation,undo", [
    (3, lambda a: np.rot90(a, 2)), (6, lambda a: np.rot90(a, 1)), (8, lambda a: np.rot90(a, -1))])
def test_exif_orientation_is_applied(tmp_path, orientation, undo):
  """A picture stored rotated with the EXIF tag that says so reads upright."""
  upright = _photo()
  exif = Image.Exif()
  exif[0x0112] = orientation
  Image.fromarray(np.ascontiguousarray(undo(upright))).save(tmp_path / "r.png", exif=exif)
  np.testing.assert_array_equal(images.read_image(tmp_path / "r.png"), upright)
  assert images.probe_image(tmp_path / "r.png") == undo(upright).shape[:2]  # as stored


def test_find_inputs(tmp_path):
  (tmp_path / "d").mkdir()
  for name in ("b.png", "a.JPG", "c.txt"):
    (tmp_path / "d" / name).write_bytes(b"x")
  (tmp_path / "one.png").write_bytes(b"x")
  (tmp_path / "clip.mp4").write_bytes(b"x")
  got = images.find_inputs([tmp_path / "one.png", tmp_path / "d", str(tmp_path / "*.mp4")])
  assert [p.name for p in got] == ["one.png", "a.JPG", "b.png", "clip.mp4"]
  (tmp_path / "empty").mkdir()
  for sources, match in [([], "no input"), ([tmp_path / "absent.png"], "no such file"),
                         ([tmp_path / "empty"], "holds no images"),
                         ([str(tmp_path / "*.gif")], "matches no image"),
                         ([tmp_path / "d" / "c.txt"], "cannot tell what")]:
    with pytest.raises(ValueError, match=match):
      images.find_inputs(sources)
  # folders are checked before files
  with pytest.raises(ValueError, match="holds no images"):
    images.find_inputs([tmp_path / "absent.png", tmp_path / "empty"])


def test_video_frames(tmp_path):
  av = pytest.importorskip("av", reason="videos need PyAV (the 'video' extra)")
  path = tmp_path / "v.mp4"
  with av.open(str(path), "w") as container:
    stream = container.add_stream("mpeg4", rate=5)
    stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
    for k in range(3):
      frame = np.full((48, 64, 3), 60 * k + 20, np.uint8)
      for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)
  frames = list(images.iter_video(path))
  assert images.video_frame_count(path) == 3 and len(frames) == 3
  assert all(f.shape == (48, 64, 3) and f.dtype == np.uint8 for f in frames)
  np.testing.assert_allclose([f.mean() for f in frames], [20, 80, 140], atol=3)
  (tmp_path / "bad.mp4").write_bytes(b"not a video")
  with pytest.raises(OSError, match="bad.mp4"):
    images.video_frame_count(tmp_path / "bad.mp4")
