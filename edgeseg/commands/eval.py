"""``edgeseg eval``: Dice and IoU per class of a trained model on a dataset."""

from __future__ import annotations

import click

from edgeseg.commands.options import data_options, keras_options, size_option
from edgeseg.device.cli_options import (
    contract_from,
    contract_options,
    refuse_builtin_only,
)


@click.command("eval", short_help="Dice/IoU of a model on a dataset.")
@click.argument("model_path", metavar="MODEL", type=click.Path(dir_okay=True))
@data_options
@size_option("Built-in images' size, and the tile of a model that takes any size, N or HxW "
             "[the model card's].")
@click.option("--n", "count", type=click.IntRange(min=1), default=64, show_default=True,
              help="Built-in datasets: held-out samples to score.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Built-in datasets: the seed they are drawn from.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False),
              help="Also write the scores to this JSON file.")
@keras_options
@contract_options
def eval_(model_path, source, layout, channels, num_classes, input_size, count, seed,
          json_out, unsafe, custom_objects, **contract):
    """Score MODEL (.keras/.h5, .tflite or .onnx) on --data: Dice and IoU per class, and their
    mean over the foreground classes.

    Built-in datasets are scored on samples no training run has seen; a folder on all its images,
    whole, each fed as the model's card says (normalised; tiled at its own resolution, or resized
    for a model trained on resized images). Pixels labelled 255 take no part; a class absent from
    both prediction and ground truth has no Dice (–, null in --json) and stays out of the mean.

    \b
    edgeseg eval runs/nuclei/model.keras --data synthetic-nuclei
    edgeseg eval runs/nuclei/model.keras --data data/nuclei-test --json scores.json
    edgeseg eval model_int8.tflite --data synthetic-nuclei --n 200
    """
    from edgeseg import runtime
    from edgeseg.device.card import contract_note, input_fit_of, normalization_of
    from edgeseg.device.data.datasets import is_builtin
    from edgeseg.device.files import atomic_write_json, check_output, eval_report
    from edgeseg.device.metrics import text
    from edgeseg.device.scoring import score_on

    refuse_builtin_only(source, "count", "seed")
    if json_out:
        json_out = check_output(json_out, inputs=[model_path, source], option="--json",
                                kind=("an eval report", eval_report))
    model = runtime.load(model_path, unsafe=unsafe, custom_objects=custom_objects,
                         contract=contract_from(**contract))
    card = model.card
    if contract_note(card):
        click.echo(f"warning: {model_path}: {contract_note(card)}", err=True)
    _, height, width, model_channels = model.input_shape
    fixed = (height, width) if height is not None else None
    if channels and int(channels) != model_channels:
        raise click.BadParameter(f"the model takes {model_channels} channel(s), not {channels}",
                                 param_hint="'--channels'")
    if fixed is not None and input_size not in (None, fixed):
        raise click.BadParameter(f"{model_path} takes {height}x{width} inputs (height x width), "
                                 f"not {input_size[0]}x{input_size[1]}", param_hint="'--input-size'")
    if fixed is None and input_size is not None and not is_builtin(source) and \
            any(side % 16 for side in input_size):  # a folder: the tile, as predict --tile
        raise click.BadParameter(f"{input_size[0]}x{input_size[1]}: the tile a model that takes "
                                 f"any size runs a folder's large images in must be a multiple "
                                 f"of 16", param_hint="'--input-size'")
    data, size, result = score_on(model, source, size=input_size, layout=layout, count=count,
                                  seed=seed, num_classes=num_classes)
    names = card.get("class_names") or list(data.class_names)

    sizes = result["image_sizes"]
    low, high = result["dice_interval"]
    what = f"{data.name} test samples" if is_builtin(source) else data.name
    click.echo(f"{model_path} on {what}: {result['samples']} images "
               f"({', '.join(sizes[:3])}{', ...' if len(sizes) > 3 else ''}), "
               f"{normalization_of(card).describe()}, {input_fit_of(card)}, "
               f"{model.layout}, output {model.output_name} "
               f"({model.output_kind or 'probabilities'})")
    click.echo(f"{'class':<20} {'Dice':>8} {'IoU':>8} {'pixels':>12}")
    for i, (d, j, n) in enumerate(zip(result["dice_per_class"], result["iou_per_class"],
                                      result["pixels_per_class"])):
        name = names[i] if i < len(names) else f"class{i}"
        click.echo(f"{name:<20} {text(d):>8} {text(j):>8} {n:>12,}")
    click.echo(f"{'mean (foreground)':<20} {text(result['dice']):>8} {text(result['iou']):>8}")
    absent = result.get("absent_classes") or []
    if absent:
        click.echo(f"no Dice (–) for {len(absent)} class(es) neither in the masks nor predicted; "
                   f"the mean is over the classes that occur")
    click.echo(f"Dice 95% interval over the images (bootstrap): {text(low)} - {text(high)}")
    if json_out:
        atomic_write_json(json_out, {"model": str(model_path), "data": data.name,
                                     "input_size": list(size), "class_names": names,
                                     "contract": model.contract(), **result})
