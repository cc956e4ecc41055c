"""Command line: export anchor tables, run a preset's real model on a photo.

Examples::

  jaxanchors anchors --list-presets
  jaxanchors anchors --preset face_short_range -o anchors.npy
  jaxanchors anchors --options my_options.json -o anchors.txt --plot anchors.png
  jaxanchors anchors --graph palm_detection_cpu.pbtxt -o anchors.npy
  jaxanchors detect photo.jpg --preset face_short_range -o faces.png --json faces.json

Output format follows the file extension: ``.npy`` (float32 ``[N, 4]``),
``.csv`` (header ``x_center,y_center,w,h``), ``.json`` (options and rows) or
``.txt`` (MediaPipe's golden-file format: ``x_center y_center w h`` with
``%g``). Errors print one line to stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

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


def _read_image(path: str) -> np.ndarray:
  try:
    from PIL import Image
  except ImportError:
    raise CliError("reading images needs Pillow: pip install 'jaxanchors[plot]'") from None
  try:
    with Image.open(path) as img:
      return np.asarray(img.convert("RGB"))
  except OSError as e:
    raise CliError(f"cannot read image {path!r}: {e}") from None


def _compilation_cache() -> None:
  """Keeps compiled programs between runs of the command (JAX's persistent cache, in
  the model cache folder), so only the first run of a preset compiles."""
  import jax
  from jaxanchors import models
  if jax.config.jax_compilation_cache_dir is None:
    jax.config.update("jax_compilation_cache_dir", str(models.cache_root() / "jax-cache"))


def _detect_command(args: argparse.Namespace) -> int:
  import jax
  from jaxanchors import models
  from jaxanchors.detections import to_pixels
  from jaxanchors.letterbox import letterbox
  from jaxanchors.pipeline import detect, detect_images
  if args.max_detections < 1:
    raise CliError(f"--max-detections must be at least 1, got {args.max_detections}")
  try:
    preset = presets.get(args.preset)
  except ValueError as e:
    raise CliError(str(e)) from None
  if preset.model is None:
    with_models = ", ".join(n for n in presets.names() if presets.get(n).model)
    raise CliError(f"preset {args.preset!r} has no shipped model; use one of {with_models}")
  image = _read_image(args.image)
  if args.runtime == "litert":
    try:
      model = models.TFLiteModel.from_name(preset.model)
    except (ImportError, RuntimeError, OSError) as e:
      raise CliError(str(e)) from None
    tensor, transform = letterbox(image, preset.preprocessing)
    raw_boxes, raw_scores = model(np.asarray(tensor)[None])
    found = detect(raw_boxes[0], raw_scores[0], preset, max_detections=args.max_detections,
                   transform=transform)
  else:
    _compilation_cache()
    try:
      models.model_path(preset.model)
      found = detect_images(image, preset, max_detections=args.max_detections)
    except (ImportError, RuntimeError, OSError) as e:
      raise CliError(str(e)) from None
  pixels = jax.tree.map(np.asarray, to_pixels(found, width=image.shape[1], height=image.shape[0]))
  records = [dict(score=float(s), class_id=int(c), box=[float(x) for x in b],
                  keypoints=[[float(x), float(y)] for x, y in k])
             for b, k, s, c, ok in zip(*pixels) if ok]
  if args.json is not None:
    doc = {"image": args.image, "preset": preset.name, "width": image.shape[1],
           "height": image.shape[0], "box_format": "xmin, ymin, xmax, ymax in pixels",
           "detections": records}
    try:
      Path(args.json).write_text(json.dumps(doc, indent=1) + "\n")
    except OSError as e:
      raise CliError(f"cannot write {args.json!r}: {e.strerror}") from None
  if args.output is not None:
    from jaxanchors import plot
    _plot(args.output, lambda: plot.draw_detections(image, found, args.output))
  for r in records:
    box = ", ".join(f"{x:.1f}" for x in r["box"])
    print(f"score {r['score']:.3f}  box [{box}]  {len(r['keypoints'])} keypoints")
  print(f"{len(records)} detection(s) with preset {preset.name}")
  return 0


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="jaxanchors", description="MediaPipe SSD anchors, decoding and NMS in JAX.")
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

  det = sub.add_parser("detect", help="run a preset's real MediaPipe model on a photo",
                       description="Photo -> letterbox -> the preset's .tflite network -> "
                       "detections, in one jitted JAX call (or the network in LiteRT).")
  det.add_argument("image", help="photo (any format Pillow reads)")
  det.add_argument("--preset", required=True, metavar="NAME", help="preset with a shipped model")
  det.add_argument("-o", "--output", metavar="FILE.png", help="draw the detections")
  det.add_argument("--json", metavar="FILE.json", help="write detections in image pixels")
  det.add_argument("--max-detections", type=int, default=10, metavar="N")
  det.add_argument("--runtime", choices=("jax", "litert"), default="jax",
                   help="run the network translated to JAX (default; compiled once per "
                   "preset and image size, then cached) or in LiteRT")
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
