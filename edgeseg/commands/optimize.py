"""``edgeseg optimize``: prune, cluster and/or quantization-aware fine-tune a trained model (tfmot)."""

from __future__ import annotations

import click

from edgeseg.commands.options import data_options, keras_options


@click.command(short_help="Prune / QAT / PQAT / cluster a trained model (tfmot).")
@click.argument("model_path", metavar="MODEL", type=click.Path())
@data_options
@click.option("--input-size", type=click.IntRange(min=1),
              help="Fine-tune crop size [the model's training size].")
@click.option("--prune", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="Magnitude pruning to this sparsity of the pruned kernels, e.g. 0.5.")
@click.option("--schedule", type=click.Choice(["poly", "constant"]), default="poly",
              show_default=True, help="PolynomialDecay from 0, or ConstantSparsity.")
@click.option("--structured", metavar="M:N",
              help="m-by-n structured sparsity, e.g. 2:4 (two zeros in every four weights).")
@click.option("--cluster", type=click.IntRange(min=2), help="Weight clusters per kernel, e.g. 16.")
@click.option("--qat", is_flag=True,
              help="Quantization-aware fine-tune (prune-/cluster-preserving after those).")
@click.option("--steps", type=click.IntRange(min=1), default=300, show_default=True,
              help="Fine-tune steps per stage.")
@click.option("--lr", type=click.FloatRange(0, min_open=True), default=5e-4, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Output folder.")
@click.option("--force", is_flag=True,
              help="Replace the optimized model an earlier optimize wrote into --out.")
@click.option("--layers", "show_layers", is_flag=True, help="Print the per-layer sparsity table.")
@keras_options
def optimize(model_path, source, layout, channels, num_classes, input_size, prune, schedule,
             structured, cluster, qat, steps, lr, batch_size, seed, out, force, show_layers,
             unsafe, custom_objects):
    """Optimize MODEL with tensorflow-model-optimization and write OUT/model.keras with its card.

    Stages chain in the order prune -> cluster -> QAT, each a fine-tune of --steps on --data;
    QAT after pruning is prune-preserving (PQAT), after clustering cluster-preserving. The Dice on
    the validation set is measured before and after. Without --data, the data the model was
    trained on (its card records it), else the built-in default, as the data line says.

    \b
    edgeseg optimize runs/nuclei/model.keras --prune 0.5 --out runs/nuclei-pruned50
    edgeseg optimize runs/nuclei/model.keras --prune 0.75 --qat --out runs/nuclei-pqat
    edgeseg optimize runs/nuclei/model.keras --structured 2:4 --out runs/nuclei-2of4
    edgeseg optimize runs/nuclei/model.keras --cluster 16 --qat --out runs/nuclei-cqat
    """
    import sys

    from edgeseg.config import OptimizeConfig
    from edgeseg.device.card import read_card
    from edgeseg.device.files import check_output

    out = check_output(out, inputs=[model_path, source], folder=True)
    from click.core import ParameterSource

    from edgeseg.device.data.roles import trained_config
    from edgeseg.optimize import optimize as run
    from edgeseg.optimize.report import format_sparsity

    given = click.get_current_context().get_parameter_source("source") != ParameterSource.DEFAULT
    card = read_card(model_path)
    data = _data_config(card, source if given else None, layout, channels, num_classes,
                        input_size)
    said = None
    if not given:
        trained = trained_config(card)
        why = "the data the model was trained on, as its card records" if trained is not None \
            and data.source == trained.source else "--data not given, and the model's card " \
            "records no training data that can be read again"
        said = f"data: {data.source} ({why})"
    cfg = OptimizeConfig(data=data, prune=prune, schedule=schedule, structured=structured,
                         cluster=cluster, qat=qat, steps=steps, lr=lr, batch_size=batch_size,
                         seed=seed)
    result = run(model_path, cfg, out, force=force, verbose=1 if sys.stdout.isatty() else 2,
                 unsafe=unsafe, custom_objects=custom_objects,
                 announce=(lambda: click.echo(said)) if said else None)
    for stage in result.stages:
        details = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                            for k, v in stage.items() if k not in ("stage", "layers"))
        click.echo(f"{stage['stage']}: {details}")
    if result.sparsity and show_layers:
        click.echo(format_sparsity(result.sparsity))
    from edgeseg.device.metrics import text

    summary = f"{result.variant}: validation Dice {text(result.dice_before)} -> " \
        f"{text(result.dice_after)}"
    if result.dice_before is not None and result.dice_after is not None:
        summary += f" ({result.dice_after - result.dice_before:+.4f})"
    if result.sparsity:
        summary += f", pruned kernels {result.sparsity['selected']['sparsity']:.1%} zero"
    if result.clusters:
        per = "output channel" if qat else "kernel"
        most = result.clusters["max_unique_per_channel" if qat else "max_unique"]
        summary += f", at most {most} values per {per} of the clustered kernels"
    click.echo(f"{summary} -> {result.model_path}")


def _data_config(card, source, layout, channels, num_classes, input_size):
    """The model's own training split when --data names the data it was trained on or is not
    given (``source=None``; its card records it: :func:`edgeseg.device.data.roles.
    trained_config`), else the data given (the built-in default when none is)."""
    from dataclasses import replace

    from edgeseg.config import DataConfig
    from edgeseg.device.card import input_fit_of, size_of
    from edgeseg.device.data.roles import same_folder, trained_config, trained_data

    trained = trained_config(card)
    if source is None:  # not given: the data the model was trained on, where it can be read
        source = trained.source if trained is not None and trained_data(card) else \
            DataConfig().source
    if trained is not None and (trained.source == source or same_folder(source, trained.source)):
        return replace(trained, input_size=input_size) if input_size else trained
    size = input_size or (size_of(card) or (256, 256))[0]
    return DataConfig(source=source, input_size=size, layout=layout,
                      channels=int(channels) if channels else card.get("channels"),
                      num_classes=num_classes,
                      mode="resize" if input_fit_of(card) == "resize" else "crop")
