"""Click options shared by the harness's command line (``python -m benchmarks``) and the
``edgeseg`` commands: how to feed a model and read its output, thread counts."""

from __future__ import annotations

import click


def parse_threads(ctx, param, value: str) -> tuple[int, ...]:
    """``"1,2"`` -> (1, 2): a click callback for a comma-separated list of thread counts."""
    try:
        counts = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of integers") from None
    if not counts or any(c < 1 for c in counts):
        raise click.BadParameter(f"{value!r}: thread counts must be >= 1")
    return counts


def contract_options(function):
    """How to feed a model and read its output, over (or instead of) its card: for files
    without one (a user's .onnx or .tflite), or to correct it."""
    decorators = (
        click.option("--input-layout", type=click.Choice(["NHWC", "NCHW"], case_sensitive=False),
                     help="The model's input layout [its card's, else detected: NCHW when the "
                          "second dimension is 1, 3 or 4 channels]."),
        click.option("--normalize", "normalize", metavar="SPEC",
                     help="How the model expects pixels: scale (x/255), percentile[:LOW,HIGH], "
                          "meanstd:M1,M2,M3/S1,S2,S3, none (raw values, for a model that "
                          "normalises inside) [its card's, else scale]."),
        click.option("--output", "output", metavar="NAME|INDEX",
                     help="Which output holds the segmentation [its card's, else the only one "
                          "the input's size]."),
        click.option("--logits/--probabilities", "logits", default=None,
                     help="Whether the output is scores before the sigmoid/softmax or "
                          "probabilities [its card's, else read from the graph]."),
    )
    for decorator in reversed(decorators):
        function = decorator(function)
    return function


def contract_from(input_layout=None, normalize=None, output=None, logits=None) -> dict:
    """The ``contract`` argument of :func:`edgeseg.runtime.load` from :func:`contract_options`."""
    kind = None if logits is None else ("logits" if logits else "probabilities")
    contract = {"input_layout": input_layout and input_layout.upper(), "normalize": normalize,
                "output": output, "output_kind": kind}
    return {k: v for k, v in contract.items() if v is not None}


def refuse_builtin_only(source, *names: str) -> None:
    """Options that shape built-in datasets only (``eval --n/--seed``, ``train --n-train``), given
    with a folder: one line (they were ignored: a folder's images are used as they are)."""
    from click.core import ParameterSource

    from edgeseg.device.data.datasets import is_builtin

    ctx = click.get_current_context(silent=True)
    if ctx is None or source is None or is_builtin(source):
        return
    given = [param.opts[0] for param in ctx.command.params if param.name in names
             and ctx.get_parameter_source(param.name) not in (ParameterSource.DEFAULT,
                                                              ParameterSource.DEFAULT_MAP)]
    if given:
        raise click.UsageError(f"{', '.join(given)} shape{'s' if len(given) == 1 else ''} the "
                               f"built-in datasets; --data {source} is a folder, whose images are "
                               f"used as they are: leave "
                               f"{'it' if len(given) == 1 else 'them'} out")


__all__ = ["contract_from", "contract_options", "parse_threads", "refuse_builtin_only"]
