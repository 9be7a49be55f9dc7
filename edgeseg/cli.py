"""The ``edgeseg`` command line: a click group whose commands live in ``edgeseg/commands/``.

Commands are imported only when they run (or when their ``--help`` is asked for), and each command
imports TensorFlow, tfmot or the runtimes inside its body: ``edgeseg --help`` is instant and never
imports TensorFlow.

    edgeseg --help
    edgeseg models --input-size 256
"""

from __future__ import annotations

import importlib
import os

import click

from edgeseg import __version__
from edgeseg.device.entry import OneLineErrors, run

# Each command lives in edgeseg/commands/<name>.py, imported only when it is looked up.
COMMANDS = ("bench", "calib-compare", "check", "convert", "data", "eval", "inspect", "models",
            "optimize", "predict", "quant-error", "run", "tools", "train")


class LazyGroup(OneLineErrors, click.Group):
    """A group that imports a command's module only when the command is looked up."""

    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def get_command(self, ctx, name):
        if name in COMMANDS:
            attr = name.replace("-", "_")
            module = importlib.import_module(f"edgeseg.commands.{attr}")
            return getattr(module, attr, None) or getattr(module, f"{attr}_")
        return None


def _verbose(ctx, param, value):
    if value:  # before any command imports TensorFlow: it reads these once
        os.environ["EDGESEG_VERBOSE"] = "1"
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
    return value


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgeseg")
@click.option("--verbose", is_flag=True, is_eager=True, expose_value=False, callback=_verbose,
              help="Every log line of TensorFlow and the runtimes too (their start-up, their "
                   "converters' notes), not only edgeseg's.")
def cli():
    """edgeseg: segmentation models from training to the device, with the numbers.

    Train a MobileNet-style U-Net, prune and quantize it with tensorflow-model-optimization,
    convert it to TFLite and ONNX, and measure latency, MACs, size and Dice of every variant.
    """


def main() -> None:
    """Console entry point (:func:`edgeseg.device.entry.run`): bad input is one line and exit 2;
    Ctrl-C or SIGTERM one line and 128 + the signal."""
    # TensorFlow's C++ log (without a GPU, an error line that CUDA is not there): its errors
    # that matter reach the user as exceptions; --verbose shows the log
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    run(cli, "edgeseg")


if __name__ == "__main__":  # pragma: no cover
    main()
