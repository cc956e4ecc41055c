"""Command line: export anchor tables, run a preset's real model on a photo.

Examples::

  jaxanchors anchors --list-presets
  jaxanchors anchors --preset face_short_range -o anchors.npy
  jaxanchors anchors --options my_options.json -o anchors.txt --plot anchors.png
  jaxanchors anchors --graph palm_detection_cpu.pbtxt -o anchors.npy
  jaxanchors detect photo.jpg --preset face_short_range -o faces.png --json faces.json
  jaxanchors detect photos/ 'more/*.jpg' clip.mp4 --preset pose --json poses.jsonl
  jaxanchors detect val2017/ --preset face_full_range --json faces.json --format coco

``anchors``: the output format follows the file extension: ``.npy`` (float32
``[N, 4]``), ``.csv`` (header ``x_center,y_center,w,h``), ``.json`` (options
and rows) or ``.txt`` (MediaPipe's golden-file format: ``x_center y_center w
h`` with ``%g``).

``detect``: detections in pixels as JSON Lines, one object per picture in the
schema of :meth:`jaxanchors.detector.ImageDetections.to_dict`, or COCO results
(``--format coco``); a progress bar (tqdm, the ``cli`` extra) on stderr for
more than a few pictures. Every input and output is checked before a model
runs, and the detections file appears only when the run completes.

Errors print one line to stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, NoReturn, Sequence

import numpy as np

from jaxanchors import presets
from jaxanchors.anchors import AnchorOptions, anchor_layers, anchors_numpy, num_anchors

__all__ = ["main"]

_FORMATS = (".npy", ".csv", ".json", ".txt")


class CliError(Exception):
  """A user error: reported as one line, exit status 2."""


def _summary(options: AnchorOptions, title: str) -> str:
  lines = [f"{title}: {num_anchors(options)} anchors"]
  layers = anchor_layers(options)
  if not layers:
    lines.append("  fixed anchors given explicitly")
  else:
    lines.append(f"  {'layers':<12}{'stride':>7}{'grid':>10}{'per cell':>10}{'anchors':>9}")
    for layer in layers:
      names = ",".join(map(str, layer.layers))
      grid = f"{layer.grid_height}x{layer.grid_width}"
      lines.append(f"  {names:<12}{layer.stride:>7}{grid:>10}"
                    f"{layer.anchors_per_cell:>10}{layer.num_anchors:>9}")
  return "\n".join(lines)


def _write(path: Path, options: AnchorOptions, table: np.ndarray) -> None:
  suffix = path.suffix.lower()
  if suffix == ".npy":
    with open(path, "wb") as f:
      np.save(f, table)
  elif suffix == ".csv":
    rows = "".join(f"{r[0]!r},{r[1]!r},{r[2]!r},{r[3]!r}\n" for r in table.tolist())
    path.write_text("x_center,y_center,w,h\n" + rows)
  elif suffix == ".json":
    doc = {"columns": ["x_center", "y_center", "w", "h"], "options": options.to_dict(),
           "anchors": table.tolist()}
    path.write_text(json.dumps(doc) + "\n")
  elif suffix == ".txt":
    path.write_text("".join("%g %g %g %g\n" % tuple(r) for r in table.tolist()))
  else:
    raise CliError(f"cannot tell the format of {str(path)!r}: use one of {', '.join(_FORMATS)}")


def _options(args: argparse.Namespace) -> tuple[AnchorOptions, str]:
  if args.preset is not None:
    try:
      return presets.get(args.preset).anchors, f"preset {args.preset}"
    except ValueError as e:
      raise CliError(str(e)) from None
  if args.graph is not None:
    try:
      return presets.from_graph(args.graph).anchors, f"graph {args.graph}"
    except ImportError:
      raise CliError("reading MediaPipe graphs needs protobuf: pip install 'jaxanchors[graphs]'"
                     ) from None
    except OSError as e:
      raise CliError(f"cannot read graph file {args.graph!r}: {e.strerror}") from None
    except ValueError as e:
      raise CliError(str(e)) from None
  path = Path(args.options)
  try:
    text = path.read_text()
  except OSError as e:
    raise CliError(f"cannot read options file {str(path)!r}: {e.strerror}") from None
  try:
    return AnchorOptions.from_json(text), str(path)
  except (TypeError, ValueError) as e:
    raise CliError(f"bad options in {str(path)!r}: {e}") from None


def _plot(path: str, draw: Any) -> None:
  try:
    draw()
  except ImportError as e:
    raise CliError(str(e)) from None
  except OSError as e:
    raise CliError(f"cannot write {path!r}: {e.strerror}") from None


def _anchors_command(args: argparse.Namespace) -> int:
  if args.list_presets:
    for name in presets.names():
      p = presets.get(name)
      print(f"{name:<18}{num_anchors(p.anchors):>6}  {p.description}")
    return 0
  if args.preset is None and args.options is None and args.graph is None:
    raise CliError("give --preset NAME, --options FILE.json, --graph FILE or --list-presets")
  options, title = _options(args)
  if args.output is not None:
    path = Path(args.output)
    if path.suffix.lower() not in _FORMATS:
      raise CliError(f"cannot tell the format of {str(path)!r}: use one of {', '.join(_FORMATS)}")
    try:
      _write(path, options, anchors_numpy(options))
    except OSError as e:
      raise CliError(f"cannot write {str(path)!r}: {e.strerror}") from None
  if args.plot is not None:
    from jaxanchors import plot
    _plot(args.plot, lambda: plot.draw_anchors(options, args.plot))
  if not args.quiet:
    print(_summary(options, title))
    for path in (args.output, args.plot):
      if path is not None:
        print(f"wrote {path}")
  return 0


_PICTURES = (".png", ".jpg", ".jpeg", ".pdf", ".svg", ".tif", ".tiff", ".webp")
_PROGRESS_FROM = 5  # pictures: a progress bar on anything longer


def _compilation_cache() -> None:
  """Keeps compiled programs between runs of the command (JAX's persistent cache, in
  the model cache folder), so only the first run of a preset compiles."""
  import jax
  from jaxanchors import models
  if jax.config.jax_compilation_cache_dir is None:
    jax.config.update("jax_compilation_cache_dir", str(models.cache_root() / "jax-cache"))


def _check_folder(path: Path, what: str) -> None:
  folder = path.parent
  if not folder.is_dir():
    raise CliError(f"cannot write {what} {str(path)!r}: no folder {str(folder)!r}")
  if path.is_dir():
    raise CliError(f"cannot write {what} {str(path)!r}: it is a folder")


def _detect_plan(args: argparse.Namespace) -> tuple[presets.Preset, list[Path], int, bool]:
  """Every check of a ``detect`` run, before any model is fetched or run: the preset
  and numbers, the inputs (folders first), the outputs. Returns the preset, the
  input files, the number of pictures (video frames as their containers say) and
  whether there are several."""
  from jaxanchors import images
  try:
    preset = presets.get(args.preset)
  except ValueError as e:
    raise CliError(str(e)) from None
  if preset.model is None:
    with_models = ", ".join(n for n in presets.names() if presets.get(n).model)
    raise CliError(f"preset {args.preset!r} has no shipped model; use one of {with_models}")
  anchors = preset.decoder.num_boxes
  if not 1 <= args.max_detections <= anchors:
    raise CliError(f"--max-detections must be between 1 and {anchors} (the preset's anchors), "
                   f"got {args.max_detections}")
  if args.batch_size < 1:
    raise CliError(f"--batch-size must be at least 1, got {args.batch_size}")
  if args.min_score is not None and not 0.0 <= args.min_score <= 1.0:
    raise CliError(f"--min-score must lie in 0..1, got {args.min_score}")
  if args.format == "coco" and args.json is None:
    raise CliError("--format coco writes the file given with --json: add --json FILE.json")
  try:
    files = images.find_inputs(args.inputs)
  except ValueError as e:
    raise CliError(str(e)) from None
  pictures = 0
  for path in files:
    try:
      if images.is_video(path):
        pictures += images.video_frame_count(path) or 1
      else:
        images.probe_image(path)
        pictures += 1
    except ImportError as e:
      raise CliError(str(e)) from None
    except OSError as e:
      raise CliError(f"cannot read {str(path)!r}: {e}") from None
  several = len(files) > 1 or any(images.is_video(p) for p in files)
  if args.output is not None:
    out = Path(args.output)
    if several:
      if not out.is_dir():
        raise CliError(f"-o must be an existing folder when there are several pictures "
                       f"({pictures}); {str(out)!r} is not one")
    else:
      if out.suffix.lower() not in _PICTURES:
        raise CliError(f"cannot tell the picture format of {str(out)!r}: use one of "
                       f"{', '.join(_PICTURES)}")
      _check_folder(out, "picture")
    try:
      import matplotlib  # noqa: F401
    except ImportError:
      raise CliError("drawing needs matplotlib: pip install 'jaxanchors[plot]'") from None
  if args.json is not None:
    _check_folder(Path(args.json), "detections")
  return preset, files, pictures, several


def _coco_ids(files: list[Path]) -> bool:
  """Whether COCO image ids come from the file names (every input an image named by a number)."""
  from jaxanchors import images
  return all(p.stem.isdigit() and not images.is_video(p) for p in files)


def _picture_path(out: Path, found: Any, several: bool) -> Path:
  if not several:
    return out
  stem = Path(found.source).stem
  return out / (f"{stem}.png" if found.frame is None else f"{stem}_{found.frame:06d}.png")


def _progress(total: int, quiet: bool) -> Any:
  if quiet or total < _PROGRESS_FROM:
    return None
  try:
    from tqdm import tqdm
  except ImportError:
    return None
  return tqdm(total=total, unit="picture", file=sys.stderr, leave=False)


def _detect_command(args: argparse.Namespace) -> int:
  import tempfile
  from jaxanchors.detector import Detector
  preset, files, pictures, several = _detect_plan(args)
  detector = Detector.from_preset(preset, min_score=args.min_score,
                                  max_detections=args.max_detections, runtime=args.runtime,
                                  batch_size=args.batch_size)
  try:
    if args.runtime == "jax":
      _compilation_cache()
    detector.prepare()
  except (ImportError, RuntimeError, OSError) as e:
    raise CliError(str(e)) from None
  sink = tmp = None
  if args.json is not None:
    target = Path(args.json)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    sink = os.fdopen(fd, "w")
  if args.output is not None:
    from jaxanchors import plot
  bar = _progress(pictures, args.quiet)
  by_name = _coco_ids(files)
  coco: list[dict] = []
  total = count = 0
  try:
    for found, picture in detector.detect_files(files, with_images=True):
      count += 1
      total += len(found)
      if sink is not None:
        if args.format == "coco":
          coco += found.to_coco(int(Path(found.source).stem) if by_name else count)
        else:
          sink.write(found.to_json() + "\n")
      if args.output is not None:
        path = _picture_path(Path(args.output), found, several)
        try:
          plot.draw_detections(picture, found, path, keypoint_names=args.keypoint_names)
        except OSError as e:
          raise CliError(f"cannot write {str(path)!r}: {e.strerror}") from None
      if bar is not None:
        bar.update(1)
      if not args.quiet and not several:
        for box, score, label in zip(found.boxes.tolist(), found.scores.tolist(),
                                     found.classes.tolist()):
          name = found.label(label) or preset.name
          print(f"{name} {score:.3f}  box [{', '.join(f'{x:.1f}' for x in box)}]  "
                f"{found.keypoints.shape[1]} keypoints")
    if sink is not None:
      if args.format == "coco":
        sink.write(json.dumps(coco) + "\n")
      sink.close()
      sink = None
      os.replace(tmp, args.json)
      tmp = None
  except OSError as e:
    raise CliError(str(e)) from None
  finally:
    if bar is not None:
      bar.close()
    if sink is not None:
      sink.close()
    if tmp is not None and os.path.exists(tmp):
      os.unlink(tmp)
  if not args.quiet:
    print(f"{total} detection(s) in {count} picture(s) with preset {preset.name}")
  return 0


class _Parser(argparse.ArgumentParser):
  """argparse with its usage errors as one line and exit status 2."""

  def error(self, message: str) -> NoReturn:
    print(f"jaxanchors: error: {message}", file=sys.stderr)
    sys.exit(2)


def _parser() -> argparse.ArgumentParser:
  from jaxanchors import __version__
  parser = _Parser(
      prog="jaxanchors", description="MediaPipe SSD anchors, decoding and NMS in JAX.")
  parser.add_argument("--version", action="version", version=f"jaxanchors {__version__}")
  sub = parser.add_subparsers(dest="command", required=True)
  anchors = sub.add_parser("anchors", help="export or summarise an anchor table",
                           description="Export or summarise MediaPipe SSD anchors.")
  source = anchors.add_mutually_exclusive_group()
  source.add_argument("--preset", metavar="NAME", help="a preset name (see --list-presets)")
  source.add_argument("--options", metavar="FILE.json",
                      help="SsdAnchorsCalculatorOptions as a JSON object with proto field names")
  source.add_argument("--graph", metavar="FILE",
                      help="a MediaPipe graph (.pbtxt or .binarypb) with an SSD detector; "
                           "needs protobuf (the 'graphs' extra)")
  source.add_argument("--list-presets", action="store_true", help="list presets and exit")
  anchors.add_argument("-o", "--output", metavar="FILE",
                       help=f"write the table; format by extension ({', '.join(_FORMATS)})")
  anchors.add_argument("--plot", metavar="FILE.png", help="draw the anchors (needs matplotlib)")
  anchors.add_argument("-q", "--quiet", action="store_true", help="print no summary")
  anchors.set_defaults(run=_anchors_command)

  det = sub.add_parser(
      "detect", help="run a preset's real MediaPipe model on pictures and videos",
      description="Pictures -> letterbox -> the preset's .tflite network -> detections in "
      "pixels: several files, folders, glob patterns and videos, batched by size, in one "
      "jitted JAX call per batch (or the network in LiteRT).")
  det.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="image files (any format Pillow reads), folders of them, glob "
                   "patterns (quoted) or video files (needs PyAV, the 'video' extra)")
  det.add_argument("--preset", required=True, metavar="NAME", help="preset with a shipped model")
  det.add_argument("-o", "--output", metavar="PATH",
                   help="draw the detections: a picture file for one picture, an existing "
                   "folder for several (<stem>.png; videos <stem>_<frame>.png)")
  det.add_argument("--json", metavar="FILE",
                   help="write the detections in pixels: JSON Lines, one object per picture "
                   "(the schema in the README), or COCO results with --format coco")
  det.add_argument("--format", choices=("jsonl", "coco"), default="jsonl",
                   help="what --json holds: JSON Lines (default) or a COCO results list "
                   "(image_id from numeric file names, else the picture's position from 1)")
  det.add_argument("--min-score", type=float, metavar="S",
                   help="score threshold in 0..1 (default: the preset's)")
  det.add_argument("--max-detections", type=int, default=10, metavar="N",
                   help="detections kept per picture at most (default 10)")
  det.add_argument("--batch-size", type=int, default=8, metavar="N",
                   help="pictures of one size per call (default 8)")
  det.add_argument("--runtime", choices=("jax", "litert"), default="jax",
                   help="run the network translated to JAX (default; compiled once per "
                   "preset and picture size, then cached) or in LiteRT")
  det.add_argument("--keypoint-names", action="store_true", help="write keypoint names on -o")
  det.add_argument("-q", "--quiet", action="store_true", help="no progress bar, no summary")
  det.set_defaults(run=_detect_command)
  return parser


def main(argv: Sequence[str] | None = None) -> int:
  """Entry point of the ``jaxanchors`` console script; returns the exit status."""
  args = _parser().parse_args(argv)
  try:
    return args.run(args)
  except CliError as e:
    print(f"jaxanchors: error: {e}", file=sys.stderr)
    return 2


if __name__ == "__main__":
  sys.exit(main())
