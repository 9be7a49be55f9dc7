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
from edgeseg.errors import EdgesegError

# name -> (module in edgeseg.commands, one line of help shown by `edgeseg --help`)
COMMANDS = {
    "models": ("models", "List the model zoo with params and MACs at an input size."),
    "train": ("train", "Train a model from the zoo."),
    "eval": ("eval", "Dice/IoU of a model on a dataset."),
    "data": ("data", "Write a built-in dataset as PNGs; describe a dataset folder."),
    "optimize": ("optimize", "Prune / QAT / PQAT / cluster a trained model (tfmot)."),
    "convert": ("convert", "Convert a Keras model to .tflite or .onnx (verified)."),
    "inspect": ("inspect", "Ops, dtypes, float islands, delegate coverage, MACs of a model file."),
    "bench": ("bench", "Benchmark models (latency, size, MACs, Dice) from the host."),
}

# Commands of the design that are not built yet: listed, and refused with one line when run.
PLANNED = {
    "run": "The whole pipeline on a dataset: train, optimize, convert, benchmark, report.",
    "predict": "Masks and overlays for images of any size (sliding-window tiles).",
    "check": "Accuracy/latency/size regression gate against a baseline.",
}


class UserError(click.ClickException):
    """Bad input: printed as one ``Error: ...`` line, exit status 2."""

    exit_code = 2


class LazyGroup(click.Group):
    """A group that imports a command's module only when the command is looked up."""

    def list_commands(self, ctx):
        return sorted({*COMMANDS, *PLANNED})

    def get_command(self, ctx, name):
        if name in COMMANDS:
            module = importlib.import_module(f"edgeseg.commands.{COMMANDS[name][0]}")
            return getattr(module, name, None) or getattr(module, f"{name}_")
        if name in PLANNED:
            return _planned(name, PLANNED[name])
        return None

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except EdgesegError as error:
            raise UserError(str(error)) from None


def _planned(name: str, help_text: str) -> click.Command:
    def callback(**_):
        raise UserError(f"'edgeseg {name}' is not available in edgeseg {__version__} yet")

    return click.Command(name, callback=callback, help=f"{help_text} (not available yet)",
                         short_help=f"{help_text} (not available yet)",
                         context_settings={"ignore_unknown_options": True},
                         params=[click.Argument(["args"], nargs=-1, type=click.UNPROCESSED)])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgeseg")
def cli():
    """edgeseg: segmentation models from training to the device, with the numbers.

    Train a MobileNet-style U-Net, prune and quantize it with tensorflow-model-optimization,
    convert it to TFLite and ONNX, and measure latency, MACs, size and Dice of every variant.
    """


def main() -> None:
    """Console entry point."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter
    cli(prog_name="edgeseg")


if __name__ == "__main__":  # pragma: no cover
    main()
