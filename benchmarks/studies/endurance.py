"""``python -m benchmarks.studies.endurance MODEL``: memory on big inputs and over long runs.

Two measurements, each in a fresh child process so that one does not inherit the other's heap:

* **big image**: ``edgeseg predict MODEL`` on a SIZE x SIZE image (default 8192, written here as a
  PNG of tiled synthetic-nuclei samples). The bound it must keep: the same command's peak on a
  256x256 image (Python, the CLI, the runtime, the model), plus the larger of decoding (Pillow's
  image, its mode conversion and the numpy array: ``3*H*W*C`` bytes) and writing (the 8-bit image,
  labels, RGB overlay and Pillow's copy of it, which Pillow stores in 4 bytes a pixel:
  ``H*W*(C + 1 + 3 + 4)``), plus one tile row of float64 sums (``tile * W * (K + 1) * 8``), plus
  16 MB of slack for the allocator. The child's peak RSS is reported against it.
* **long run**: 10,000 inferences through ``edgeseg.runtime`` (the harness's path) with the
  resident set sampled every 500; the growth from the first sample (after warm-up) to the last.

Prints both and writes them as JSON (``--json``). Linux (``/proc``) only.

    python -m benchmarks.studies.endurance model_int8.tflite --json endurance.json
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import click

from edgeseg.device.entry import Command

_RSS_CHILD = r"""
import json, sys, time
import numpy as np
from edgeseg import runtime
def rss():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
path, count, every = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
model = runtime.load(path, num_threads=1)
shape = [d if d is not None else 256 for d in model.input_shape]
x = np.random.default_rng(0).random(shape, dtype=np.float32)
for _ in range(50):
    model.predict(x)
samples, t0 = [(0, rss())], time.perf_counter()
for i in range(1, count + 1):
    model.predict(x)
    if i % every == 0:
        samples.append((i, rss()))
print(json.dumps({"samples": samples, "seconds": time.perf_counter() - t0}))
"""



def big_image(path: Path, size: int, channels: int) -> Path:
    """A size x size PNG of synthetic-nuclei samples (256 px, tiled), grey or RGB."""
    import numpy as np
    from PIL import Image

    from edgeseg.device.data.datasets import builtin

    data = builtin("synthetic-nuclei", 16, 256, 7, 0, channels)
    tiles = [data.images[i] for i in range(16)]
    rows = []
    per_side = -(-size // 256)
    for r in range(per_side):
        rows.append(np.concatenate([tiles[(r * per_side + c) % 16] for c in range(per_side)],
                                   axis=1))
    image = np.concatenate(rows, axis=0)[:size, :size]
    Image.fromarray(image[..., 0] if channels == 1 else image).save(path)
    return path


SLACK_MB = 16  # allocator fragmentation and the runtime's own buffers, beyond the arrays counted


def _predict_peak_mb(model: Path, image: Path, out: Path) -> tuple[float, float]:
    """(peak RSS in MB, seconds) of ``edgeseg predict MODEL IMAGE`` in a child process."""
    measure = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
               "done = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, "
               "time.perf_counter() - t, done.returncode); "
               "sys.stderr.write(done.stderr[-300:])")
    done = subprocess.run([sys.executable, "-c", measure, sys.executable, "-m", "edgeseg", "predict",
                           str(model), str(image), "--out", str(out)], capture_output=True, text=True)
    peak, seconds, code = done.stdout.split()
    if int(code) != 0:
        raise click.ClickException(f"edgeseg predict failed: {done.stderr.strip()[-300:]}")
    return float(peak), float(seconds)


def measure_predict(model: Path, size: int) -> dict:
    from edgeseg import runtime

    loaded = runtime.load(model)
    _, height, width, channels = loaded.input_shape
    tile, classes = height or 256, loaded.num_classes
    with tempfile.TemporaryDirectory(prefix="edgeseg-endurance-") as folder:
        folder = Path(folder)
        baseline, _ = _predict_peak_mb(model, big_image(folder / "small.png", 256, channels),
                                       folder / "small")
        peak, seconds = _predict_peak_mb(model, big_image(folder / f"big{size}.png", size, channels),
                                         folder / "out")
    pixels = size * size
    decoding = 3 * pixels * channels  # Pillow's image, its mode conversion, the numpy array
    writing = pixels * (channels + 1 + 3 + 4)  # image, labels, overlay, Pillow's RGBX copy of it
    sums = tile * size * (classes + 1) * 8  # one tile row of float64 sums and weights
    bound = baseline + (max(decoding, writing) + sums) / 2 ** 20 + SLACK_MB
    whole = baseline + pixels * (channels * 5 + classes * 8 * 2 + 4 + 1 + 3 * 4) / 2 ** 20
    return {"size": size, "channels": channels, "tile": tile, "classes": classes,
            "peak_rss_mb": round(peak, 1), "bound_mb": round(bound, 1),
            "process_baseline_mb": round(baseline, 1), "within_bound": peak <= bound,
            "whole_image_float_mb": round(whole, 1), "seconds": round(seconds, 1)}


def measure_rss(model: Path, inferences: int, every: int = 500) -> dict:
    done = subprocess.run([sys.executable, "-c", _RSS_CHILD, str(model), str(inferences),
                           str(every)], capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    samples = result["samples"]
    return {"inferences": inferences, "rss_first_mb": round(samples[0][1], 1),
            "rss_last_mb": round(samples[-1][1], 1),
            "growth_mb": round(samples[-1][1] - samples[0][1], 2),
            "max_mb": round(max(s[1] for s in samples), 1), "samples": samples,
            "seconds": round(result["seconds"], 1)}


@click.command("endurance", cls=Command, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.option("--size", type=click.IntRange(min=64), default=8192, show_default=True,
              help="Side of the big image for edgeseg predict.")
@click.option("--inferences", type=click.IntRange(min=1), default=10000, show_default=True)
@click.option("--json", "json_out", type=click.Path(dir_okay=False), help="Write the results here.")
def main(model, size, inferences, json_out):
    """Peak memory of edgeseg predict on a big image, and resident-memory growth over a long run."""
    from edgeseg.device import machine
    from edgeseg.device.files import atomic_write_json

    model = Path(model)
    click.echo(f"machine: {machine.line(machine.describe())}")
    big = measure_predict(model, size)
    click.echo(f"predict {size}x{size}: peak RSS {big['peak_rss_mb']:.0f} MB (bound "
               f"{big['bound_mb']:.0f} MB = {big['process_baseline_mb']:.0f} MB for a 256x256 image + "
               f"decoding or writing + a tile row; whole-image float buffers would take "
               f"{big['whole_image_float_mb']:.0f} MB) in {big['seconds']:.0f} s")
    long = measure_rss(model, inferences)
    click.echo(f"{inferences} inferences: RSS {long['rss_first_mb']:.1f} -> {long['rss_last_mb']:.1f} MB "
               f"(growth {long['growth_mb']:+.2f} MB, max {long['max_mb']:.1f}) in "
               f"{long['seconds']:.0f} s")
    report = {"machine": machine.describe(), "model": str(model), "predict": big, "long_run": long}
    if json_out:
        atomic_write_json(json_out, report)
        click.echo(f"wrote {json_out}")


if __name__ == "__main__":
    from edgeseg.device.entry import run

    run(main, "python -m benchmarks.studies.endurance")
