"""``edgeseg bench``: the on-device harness, run from the host (Keras models allowed)."""

from __future__ import annotations

import click

from benchmarks.command import options


@click.command(short_help="Benchmark models (latency, size, MACs, Dice) from the host.")
@options
def bench(**kwargs):
    """Benchmark MODEL... side by side: latency (round robin, per thread count), load time, MACs,
    params, size and gzipped size, weight sparsity, Dice/IoU against ground truth, and Dice delta
    and pixel agreement against a reference model. The same harness as `python -m benchmarks`;
    here Keras models (.keras/.h5) can join the comparison.

    \b
    edgeseg bench runs/nuclei/model.keras model_int8.tflite model_int8.onnx --threads 1,2
    edgeseg bench model_*.tflite --data data/nuclei-test --json bench.json
    """
    from benchmarks.command import run

    run(**kwargs)
