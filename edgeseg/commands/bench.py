"""``edgeseg bench``: the on-device harness, run from the host (Keras models allowed), or on a
board over SSH (``--on``)."""

from __future__ import annotations

import click

from benchmarks.command import options


def _target(ctx, param, value):
    if value is None:
        return None
    from benchmarks.remote import parse_target
    from edgeseg.errors import EdgesegError

    try:
        return parse_target(value)
    except EdgesegError as error:
        raise click.BadParameter(str(error).removeprefix("--on ")) from None


@click.command(short_help="Benchmark models (latency, size, MACs, Dice) here or on a board.")
@options
@click.option("--on", "on", metavar="ssh://[USER@]HOST[:PORT]", callback=_target,
              help="Run the harness on this board over SSH (your ssh keys and ~/.ssh/config); "
                   "it needs Python with numpy and the runtime, nothing else.")
@click.option("--python", "board_python", metavar="PATH",
              help="With --on: the board's Python [python3].")
@click.option("--remote-dir", metavar="DIR",
              help="With --on: where the temporary folder goes on the board [$TMPDIR or /tmp].")
@click.option("--ssh-config", type=click.Path(exists=True, dir_okay=False), metavar="FILE",
              help="With --on: an ssh config file instead of ~/.ssh/config (ssh -F).")
def bench(on, board_python, remote_dir, ssh_config, **kwargs):
    """Benchmark MODEL... side by side: latency (round robin, per thread count), load time, MACs,
    params, size and gzipped size, weight sparsity, Dice/IoU against ground truth, and Dice delta
    and pixel agreement against a reference model. The same harness as `python -m benchmarks`;
    here Keras models (.keras/.h5) can join the comparison.

    With --on, the .tflite/.onnx files, their cards and the evaluation images are copied to a
    temporary folder on the board, the harness runs there with the board's own Python and runtime
    (nothing is installed), the bench JSON comes back (each row says its target and machine) and
    the folder is removed.

    \b
    edgeseg bench runs/nuclei/model.keras model_int8.tflite model_int8.onnx --threads 1,2
    edgeseg bench model_*.tflite --data data/nuclei-test --json bench.json
    edgeseg bench model_fp32.tflite model_int8.tflite --on ssh://pi@raspberrypi.local
    """
    from benchmarks.command import run

    if on is None:
        for name, value in (("--python", board_python), ("--remote-dir", remote_dir),
                            ("--ssh-config", ssh_config)):
            if value is not None:
                raise click.UsageError(f"{name} applies to a board: give it with --on")
        remote = None
    else:
        remote = {"target": on, "python": board_python or "python3", "remote_dir": remote_dir,
                  "ssh_config": ssh_config}
    run(**kwargs, remote=remote)
