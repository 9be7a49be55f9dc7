"""``edgeseg models``: the zoo with params and MACs at an input size."""

from __future__ import annotations

import json

import click

from edgeseg.commands.options import (
    input_size_option,
    model_option,
    parse_model_options,
)


@click.command(short_help="List the model zoo with params and MACs at an input size.")
@input_size_option
@click.option("--channels", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--num-classes", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--model", "names", multiple=True, metavar="NAME",
              help="Only these models (repeatable); default: the whole zoo.")
@model_option
@click.option("--layers", "show_layers", is_flag=True,
              help="Also print each model's per-layer MAC table.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def models(input_size, channels, num_classes, names, options, show_layers, as_json):
    """List the model zoo with params and MACs at --input-size (batch 1).

    MACs are multiply-accumulates of convolutions and bilinear resizing; BatchNorm, activations
    and adds are left out (converters fold or fuse them). Options given with -o apply to every
    model listed, so use them with --model.

    \b
    edgeseg models --input-size 256
    edgeseg models --model mobile_unet -o alpha=0.5 -o block=ir --layers
    """
    from edgeseg.device.flops import keras_cost
    from edgeseg.models import create_model, list_models

    extra = parse_model_options(options)
    rows = []
    for name in names or list_models():
        model = create_model(name, input_size=input_size, channels=channels,
                             num_classes=num_classes, **extra)
        cost = keras_cost(model)
        rows.append({"model": name, "params": cost.params, "macs": cost.macs, "cost": cost})
    reference = next((row["macs"] for row in rows if row["model"] == "mobile_unet"), None)
    if as_json:
        click.echo(json.dumps({"input_shape": [1, input_size, input_size, channels],
                               "models": [{k: v for k, v in row.items() if k != "cost"}
                                          for row in rows]}, indent=2))
        return
    click.echo(f"input 1x{input_size}x{input_size}x{channels}, {num_classes} class(es)")
    width = max(16, *(len(row["model"]) for row in rows))
    click.echo(f"{'model':<{width}} {'params':>12} {'GMACs':>9} {'x mobile_unet':>14}")
    for row in rows:
        ratio = f"{row['macs'] / reference:>14.1f}" if reference else f"{'-':>14}"
        click.echo(f"{row['model']:<{width}} {row['params']:>12,} {row['macs'] / 1e9:>9.3f} "
                   f"{ratio}")
    if show_layers:
        for row in rows:
            click.echo(f"\n{row['model']}\n{row['cost'].table()}")
