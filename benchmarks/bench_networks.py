"""MediaPipe's networks (detectors and landmark models): the JAX translation against
LiteRT, same frames, same run.

For each model and batch size B, the time per frame of

* ours: ``jax.jit(network.apply)`` on a ``[B, h, w, 3]`` batch
  (``jaxanchors.models.load_network``), weights and frames already on the device,
  the weights packed (``network.packed_params``, what ``network(frames)`` and
  ``detect_images`` pass) and, in a second column, as the plain dict
  ``network.params`` (dozens of arrays per call);
* LiteRT: the ``.tflite`` in ``ai_edge_litert``'s interpreter with its default
  XNNPACK delegate, one frame per ``invoke`` (the models have a fixed batch of
  1), with LiteRT's default thread count and with 2 threads;

and the compile time of ours for that shape (trace, lower and compile). Calls
are interleaved and repeated; the table shows the median of the repeats.

Run: ``python benchmarks/bench_networks.py`` (needs ``pip install -e '.[models]'``);
``--models all`` for all ten (``--models hand_landmark_full,face_landmark``
for some), ``--batches 1,8,64``, ``--kernels`` to list the
XLA:CPU kernels of the B=1 program (see ``tools/xla_kernels.py``).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

from _timing import per_call  # noqa: E402
from jaxanchors import models  # noqa: E402


def litert_runner(name: str, threads: int | None):
  """Frame by frame through LiteRT's interpreter, outputs copied out (any model)."""
  from ai_edge_litert.interpreter import Interpreter  # pylint: disable=import-outside-toplevel
  it = Interpreter(model_path=str(models.model_path(name)), num_threads=threads)
  it.allocate_tensors()
  index = it.get_input_details()[0]["index"]
  outputs = [d["index"] for d in it.get_output_details()]

  def run(frames: np.ndarray) -> None:
    for i in range(frames.shape[0]):
      it.set_tensor(index, frames[i:i + 1])
      it.invoke()
      for o in outputs:
        it.get_tensor(o)
  return run


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--models", default="face_short_range,palm_full",
                      help="comma-separated model names, or 'all'")
  parser.add_argument("--batches", default="1,8,64")
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--seconds", type=float, default=0.3, help="minimum time per measurement")
  parser.add_argument("--kernels", action="store_true", help="print the B=1 kernel report")
  args = parser.parse_args()
  names = sorted(models.MODELS) if args.models == "all" else args.models.split(",")
  batches = [int(b) for b in args.batches.split(",")]

  print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} CPUs, "
        f"{platform.processor() or platform.machine()}")
  print("| model | B | ours ms/frame | ours, dict params | LiteRT default ms/frame "
        "| LiteRT 2 threads ms/frame | ours / best LiteRT | compile s |")
  print("|---|---|---|---|---|---|---|---|")
  for name in names:
    net = models.load_network(name)
    params = jax.device_put(net.params)
    packed = net.packed_params
    fn = jax.jit(net.apply)
    lite = {"default": litert_runner(name, None), "2 threads": litert_runner(name, 2)}
    for batch in batches:
      frames = np.random.default_rng(batch).uniform(
          -1, 1, (batch,) + net.input_shape).astype(np.float32)
      on_device = jax.device_put(frames)
      t0 = time.perf_counter()
      compiled = fn.lower(packed, on_device).compile()
      compile_s = time.perf_counter() - t0
      by_dict = fn.lower(params, on_device).compile()
      if args.kernels and batch == 1:
        import xla_kernels  # pylint: disable=import-outside-toplevel
        print(xla_kernels.report(compiled.as_text()))
      jax.block_until_ready(compiled(packed, on_device))
      jax.block_until_ready(by_dict(params, on_device))
      ours, dicts, runs = [], [], {k: [] for k in lite}
      for _ in range(args.repeats):
        ours.append(per_call(lambda: jax.block_until_ready(compiled(packed, on_device)),
                             args.seconds) / batch)
        dicts.append(per_call(lambda: jax.block_until_ready(by_dict(params, on_device)),
                              args.seconds) / batch)
        for k, run in lite.items():
          runs[k].append(per_call(lambda run=run: run(frames), args.seconds) / batch)
      o = statistics.median(ours) * 1e3
      od = statistics.median(dicts) * 1e3
      lt = {k: statistics.median(v) * 1e3 for k, v in runs.items()}
      best = min(lt.values())
      print(f"| {name} | {batch} | {o:.2f} | {od:.2f} | {lt['default']:.2f} "
            f"| {lt['2 threads']:.2f} | {o / best:.2f} | {compile_s:.1f} |", flush=True)


if __name__ == "__main__":
  main()
