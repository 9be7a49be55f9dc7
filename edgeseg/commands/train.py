"""``edgeseg train``: train a zoo model on a built-in dataset or a folder."""

from __future__ import annotations

import sys

import click

from edgeseg.commands._options import data_options, model_option, parse_model_options


@click.command(short_help="Train a model from the zoo.")
@data_options
@click.option("--val-data", metavar="DIR", help="A folder for validation (default: a seeded split).")
@click.option("--val-fraction", type=float, default=0.2, show_default=True,
              help="Share of a folder held out for validation.")
@click.option("--mode", type=click.Choice(["resize", "crop"]), default="resize", show_default=True,
              help="Folders: resize whole images to --input-size, or train on random crops.")
@click.option("--n-train", type=click.IntRange(min=1), default=None,
              help="Built-in datasets: training samples [400; shapes 512].")
@click.option("--n-val", type=click.IntRange(min=1), default=64, show_default=True,
              help="Built-in datasets: validation samples.")
@click.option("--model", "model_name", default="mobile_unet", show_default=True, metavar="NAME",
              help="A zoo model (see `edgeseg models`).")
@model_option
@click.option("--input-size", type=click.IntRange(min=1), default=128, show_default=True,
              help="Training input (crop) size; the model runs at any size afterwards.")
@click.option("--epochs", type=click.IntRange(min=1), help="Epochs [nuclei 12, shapes 36, else 20].")
@click.option("--steps", type=click.IntRange(min=1), help="Steps per epoch [one pass over the data].")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--lr", type=float, default=None, help="Peak learning rate (Adam, cosine decay) [3e-3; shapes 5e-3].")
@click.option("--loss", type=click.Choice(["dice+ce", "dice", "ce"]), default="dice+ce",
              show_default=True)
@click.option("--no-augment", is_flag=True, help="No flips or rotations.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--mixed-precision/--no-mixed-precision", default=None,
              help="float16 compute on GPUs (bfloat16 on CPUs) [on when a GPU is visible].")
@click.option("--xla", is_flag=True, help="Compile the training step with XLA.")
@click.option("--deterministic", is_flag=True, help="Deterministic ops: a repeatable CPU run.")
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Output folder.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run in --out.")
@click.option("--force", is_flag=True, help="Start over, replacing what --out holds.")
def train(source, layout, channels, num_classes, val_data, val_fraction, mode, n_train, n_val,
          model_name, options, input_size, epochs, steps, batch_size, lr, loss, no_augment, seed,
          mixed_precision, xla, deterministic, out, resume, force):
    """Train a zoo model and write OUT/model.keras, its card, config.json and history.csv.

    \b
    edgeseg train --data synthetic-nuclei --out runs/nuclei
    edgeseg train --data path/to/carvana --model mobile_unet -o alpha=0.5 --epochs 30 --out runs/car
    edgeseg train --out runs/nuclei --resume        # after an interrupt
    """
    from edgeseg.config import DataConfig, ModelConfig, TrainConfig, train_defaults
    from edgeseg.train import fit

    defaults = train_defaults(source)
    data = DataConfig(source=source, input_size=input_size, layout=layout,
                      channels=int(channels) if channels else None, num_classes=num_classes,
                      mode=mode, val_source=val_data, val_fraction=val_fraction,
                      n_train=n_train or defaults["n_train"], n_val=n_val, seed=seed)
    model_options = parse_model_options(options)
    if num_classes is not None:
        model_options.setdefault("num_classes", num_classes)
    cfg = TrainConfig(data=data, model=ModelConfig(model_name, model_options),
                      epochs=epochs or defaults["epochs"], steps_per_epoch=steps,
                      batch_size=batch_size, lr=lr or defaults["lr"], loss=loss,
                      augment=not no_augment, seed=seed, mixed_precision=mixed_precision, xla=xla,
                      deterministic=deterministic)
    result = fit(cfg, out, resume=resume, force=force, verbose=1 if sys.stdout.isatty() else 2)
    per_class = ", ".join(f"{d:.4f}" for d in result.dice_per_class)
    click.echo(f"validation Dice {result.dice:.4f} (per class: {per_class}), IoU {result.iou:.4f}; "
               f"{result.epochs} epochs in {result.seconds:.1f} s, "
               f"{result.images_per_second:.0f} training images/s -> {result.model_path}")
