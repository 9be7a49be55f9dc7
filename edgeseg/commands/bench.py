"""``edgeseg bench``: the on-device harness, run from the host (Keras models allowed), or on a
board over SSH (``--on``)."""

from __future__ import annotations

import click

from benchmarks.command import options
from edgeseg.commands.options import board_options, keras_options


@click.command(short_help="Benchmark models (latency, size, MACs, Dice) here or on a board.")
@options
@keras_options
@board_options
def bench(on, board_python, remote_dir, ssh_config, install, unsafe, custom_objects, **kwargs):
    """Benchmark MODEL... side by side: latency (round robin, per thread count), load time, MACs,
    params, size and gzipped size, weight sparsity, Dice/IoU against ground truth, and Dice delta
    and pixel agreement against a reference model. The same harness as `python -m benchmarks`;
    here Keras models (.keras/.h5) can join the comparison.

    With --on, the .tflite/.onnx files, their cards and the evaluation images are copied to a
    temporary folder on the board, the harness runs there with the board's own Python and runtime
    (nothing is installed unless --install), the bench JSON comes back (each row says its target and machine) and
    the folder is removed. A Keras --reference runs here, on the same images.

    \b
    edgeseg bench runs/nuclei/model.keras model_int8.tflite model_int8.onnx --threads 1,2
    edgeseg bench model_*.tflite --data data/nuclei-test --json bench.json
    edgeseg bench model_fp32.tflite model_int8.tflite --on ssh://pi@raspberrypi.local
    """
    from functools import partial

    from benchmarks.command import run
    from edgeseg import runtime
    from edgeseg.commands.options import board_from

    run(**kwargs, load=partial(runtime.load, unsafe=unsafe, custom_objects=custom_objects),
        remote=board_from(on, board_python, remote_dir, ssh_config, install))
