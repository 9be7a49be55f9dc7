"""``edgeseg train``: train a zoo model on a built-in dataset or a folder."""

from __future__ import annotations

import sys
from dataclasses import replace

import click

from edgeseg.commands.options import data_options, model_option, parse_model_options
from edgeseg.device.cli_options import refuse_builtin_only
from edgeseg.guard import SMALL_VALIDATION


@click.command(short_help="Train a model from the zoo.")
@data_options
@click.option("--val-data", metavar="DIR", help="A folder for validation (default: a seeded split).")
@click.option("--val-fraction", type=float, default=0.2, show_default=True,
              help="Share of a folder held out for validation.")
@click.option("--mode", type=click.Choice(["auto", "crop", "resize"]), default="auto",
              show_default=True,
              help="Folders: random crops at the images' resolution (tiled at inference), or whole "
                   "images resized to --input-size (and at inference); auto: crop unless the "
                   "objects are larger than a crop.")
@click.option("--normalize", default="auto", show_default=True, metavar="KIND",
              help="scale (pixel/255, 16-bit /65535), percentile[:1,99.8] (per image), "
                   "meanstd[:M,../S,..] (values, or the training images'); auto: percentile for "
                   "16-bit/float images, else scale. Recorded in the card; every command obeys it.")
@click.option("--n-train", type=click.IntRange(min=1), default=None,
              help="Built-in datasets: training samples [400; shapes 512].")
@click.option("--n-val", type=click.IntRange(min=1), default=64, show_default=True,
              help="Built-in datasets: validation samples.")
@click.option("--model", "model_name", default="mobile_unet", show_default=True, metavar="NAME",
              help="A zoo model (see `edgeseg models`).")
@model_option
@click.option("--input-size", type=click.IntRange(min=1, max=16384), default=128, show_default=True,
              help="Training input (crop) size; the model runs at any size afterwards.")
@click.option("--steps", type=click.IntRange(min=1),
              help="Optimizer steps [chosen from the data: see the plan line].")
@click.option("--epochs", type=click.IntRange(min=1),
              help="Passes over the training set, instead of --steps.")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--lr", type=float, default=None, help="Peak learning rate (Adam, cosine decay) [3e-3; shapes 5e-3].")
@click.option("--loss", type=click.Choice(["dice+ce", "dice", "ce"]), default="dice+ce",
              show_default=True)
@click.option("--augment", "augment_options", multiple=True, metavar="KEY=VALUE",
              help="An augmentation setting: flip, rotate (true/false), scale, brightness, "
                   "contrast, gamma, noise (0 turns one off), e.g. --augment gamma=0.")
@click.option("--no-augment", is_flag=True, help="No augmentation at all.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--mixed-precision/--no-mixed-precision", default=None,
              help="float16 compute on GPUs (bfloat16 on CPUs) [on when a GPU is visible].")
@click.option("--xla", is_flag=True, help="Compile the training step with XLA.")
@click.option("--deterministic", is_flag=True, help="Deterministic ops: a repeatable CPU run.")
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Output folder.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run in --out.")
@click.option("--no-check", is_flag=True,
              help="Exit 0 even when the model learned nothing (its card still says failed).")
@click.option("--force", is_flag=True,
              help="Start over: what an earlier run wrote into --out is removed (nothing else).")
def train(source, layout, channels, num_classes, val_data, val_fraction, mode, normalize, n_train,
          n_val, model_name, options, input_size, steps, epochs, batch_size, lr, loss,
          augment_options, no_augment, seed, mixed_precision, xla, deterministic, out, resume,
          no_check, force):
    """Train a zoo model and write OUT/model.keras, its card, config.json and history.csv.

    \b
    The number of optimizer steps is chosen from the data (printed before training, with the
    time a short warm-up predicts); the final model's BatchNorm statistics are recomputed, and a
    model that learned nothing ends the command with one line and exit status 1.

    \b
    edgeseg train --data synthetic-nuclei --out runs/nuclei
    edgeseg train --data path/to/carvana --model mobile_unet -o alpha=0.5 --out runs/car
    edgeseg train --data cells/ --normalize percentile --augment noise=0.03 --out runs/cells
    edgeseg train --out runs/nuclei --resume        # after an interrupt
    """
    from edgeseg.config import (
        Augment,
        DataConfig,
        ModelConfig,
        TrainConfig,
        train_defaults,
    )
    from edgeseg.device.files import check_output

    refuse_builtin_only(source, "n_train", "n_val")
    out = check_output(out, inputs=[source, val_data], folder=True)
    from edgeseg.train import fit

    defaults = train_defaults(source)
    data = DataConfig(source=source, input_size=input_size, layout=layout,
                      channels=int(channels) if channels else None, num_classes=num_classes,
                      mode=mode, val_source=val_data, val_fraction=val_fraction,
                      n_train=n_train or defaults["n_train"], n_val=n_val, seed=seed)
    model_options = parse_model_options(options)
    if num_classes is not None:
        model_options.setdefault("num_classes", num_classes)
    if steps and epochs:
        raise click.UsageError("give --steps or --epochs, not both")
    augment = Augment.off() if no_augment else _augment(augment_options)
    from edgeseg.device.machine import check_memory

    # a batch of crops and the activations of a U-Net over them (tens of channels a pixel, kept
    # for the backward pass)
    check_memory(batch_size * input_size ** 2 * 4 * 64 * 3,
                 f"training on batches of {batch_size} crops of {input_size}x{input_size}")
    cfg = TrainConfig(data=data, model=ModelConfig(model_name, model_options), steps=steps,
                      epochs=epochs, batch_size=batch_size, lr=lr or defaults["lr"], loss=loss,
                      augment=augment, normalize=normalize, seed=seed,
                      mixed_precision=mixed_precision, xla=xla, deterministic=deterministic)
    if resume:
        _refuse_changed_options(click.get_current_context(), cfg, out)
    result = fit(cfg, out, resume=resume, force=force, verbose=1 if sys.stdout.isatty() else 2,
                 echo=click.echo, check=not no_check)
    from edgeseg.device.metrics import text

    per_class = ", ".join(text(d) for d in result.dice_per_class)
    low, high = result.dice_interval
    small = f"; only {result.val_images} validation images: 95% interval {text(low)}-" \
        f"{text(high)}" if result.val_images < SMALL_VALIDATION else ""
    click.echo(f"validation Dice {text(result.dice)} (per class: {per_class}), IoU "
               f"{text(result.iou)}{small}; training images {text(result.train_dice)}; "
               f"{result.steps} steps in "
               f"{result.seconds:.1f} s, {result.images_per_second:.0f} training images/s -> "
               f"{result.model_path}")
    if result.failure:
        click.echo(f"warning: the model learned nothing useful: {result.failure} (its card says "
                   f"failed)", err=True)


# option -> the settings it sets (paths into TrainConfig's dict), for a resume's check
_SETS = {"source": ("data.source",), "layout": ("data.layout",), "channels": ("data.channels",),
         "num_classes": ("data.num_classes",), "val_data": ("data.val_source",),
         "val_fraction": ("data.val_fraction",), "mode": ("data.mode",),
         "normalize": ("normalize",), "n_train": ("data.n_train",), "n_val": ("data.n_val",),
         "model_name": ("model.name",), "input_size": ("data.input_size",), "steps": ("steps",),
         "epochs": ("epochs",), "batch_size": ("batch_size",), "lr": ("lr",), "loss": ("loss",),
         "augment_options": ("augment",), "no_augment": ("augment",), "seed": ("seed",),
         "mixed_precision": ("mixed_precision",), "xla": ("xla",),
         "deterministic": ("deterministic",)}


def _refuse_changed_options(ctx, cfg, out) -> None:
    """A resume continues the run as it was started: options given again must say what the
    saved run says, else one line names each that differs (saved -> given)."""
    from click.core import ParameterSource

    from edgeseg.config import TrainConfig, load_config

    saved_path = out / "config.json"
    if not saved_path.is_file():
        return  # nothing to resume: fit says so
    saved = load_config(TrainConfig, saved_path)
    # folders compared as paths (a run records them whole)
    saved = replace(saved, data=saved.data.absolute()).to_dict()
    given = replace(cfg, data=cfg.data.absolute()).to_dict()

    def value(config: dict, path: str):
        for part in path.split("."):
            config = config.get(part) if isinstance(config, dict) else None
        return config

    changed = []
    for name, paths in _SETS.items():
        if ctx.get_parameter_source(name) != ParameterSource.COMMANDLINE:
            continue
        for path in paths:
            if value(saved, path) != value(given, path):
                changed.append(f"{path.split('.')[-1]} {value(saved, path)!r} -> "
                               f"{value(given, path)!r}")
    if ctx.get_parameter_source("options") == ParameterSource.COMMANDLINE:
        for key, new in given["model"]["options"].items():
            old = saved["model"]["options"].get(key)
            if old != new:
                changed.append(f"{key} {old!r} -> {new!r}")
    if changed:
        raise click.UsageError(f"--resume continues {out} as it was started; these options differ "
                               f"from its config.json: {', '.join(dict.fromkeys(changed))} (leave "
                               f"them out to resume, or --force to start over with them)")


def _augment(pairs):
    """``("gamma=0", "flip=false")`` -> an Augment with those settings changed."""
    import dataclasses

    from edgeseg.commands.options import parse_model_options
    from edgeseg.config import Augment

    changes = parse_model_options(pairs, "--augment")
    fields = {f.name: f.type for f in dataclasses.fields(Augment)}
    for key, value in changes.items():
        if key not in fields:
            raise click.BadParameter(f"unknown setting {key!r} (one of {', '.join(fields)})",
                                     param_hint="'--augment'")
        wanted = bool if key in ("flip", "rotate") else float
        if wanted is bool and not isinstance(value, bool) or wanted is float and (
                isinstance(value, bool) or not isinstance(value, (int, float))):
            kind = "true or false" if wanted is bool else "a number"
            raise click.BadParameter(f"{key} must be {kind} (got {value!r})",
                                     param_hint="'--augment'")
        changes[key] = wanted(value)
    return Augment(**changes)  # checks the ranges
