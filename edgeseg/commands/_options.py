"""Options shared by several commands."""

from __future__ import annotations

import json

import click

from edgeseg.data.folders import LAYOUTS


def parse_model_options(pairs: tuple[str, ...], option: str = "-o/--option") -> dict[str, object]:
    """``("alpha=0.5", "upsample=transpose", "dilation=[2,4]")`` -> {"alpha": 0.5, ...}.

    Values are read as JSON where they parse (numbers, true/false, lists), as strings otherwise.
    """
    options: dict[str, object] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint=f"'{option}'")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        if isinstance(value, list):
            value = tuple(value)
        options[key.strip().replace("-", "_")] = value
    return options


def compose(*decorators):
    """Apply several click decorators as one."""
    def apply(function):
        for decorator in reversed(decorators):
            function = decorator(function)
        return function
    return apply


model_option = click.option(
    "-o", "--option", "options", multiple=True, metavar="KEY=VALUE",
    help="A model option, e.g. -o alpha=0.5 -o upsample=transpose (repeatable).")

input_size_option = click.option(
    "--input-size", type=click.IntRange(min=1), default=256, show_default=True,
    help="Square input size in pixels.")

data_options = compose(
    click.option("--data", "source", default="synthetic-nuclei", show_default=True,
                 metavar="NAME|DIR",
                 help="synthetic-nuclei, synthetic-shapes, or a dataset folder."),
    click.option("--layout", type=click.Choice(LAYOUTS),
                 help="Folder layout (default: detected)."),
    click.option("--channels", type=click.Choice(["1", "3"]),
                 help="1 (grey) or 3 (RGB); default: the dataset's own."),
    click.option("--num-classes", type=click.IntRange(min=1),
                 help="Classes in the masks (default: from the dataset)."),
)
