"""``edgeseg run``: the whole pipeline on a built-in dataset or a folder, with reports."""

from __future__ import annotations

import click

from edgeseg.commands.options import (
    board_options,
    keras_options,
    model_option,
    parse_model_options,
    size_option,
)
from edgeseg.device.cli_options import contract_from, contract_options, parse_threads

MODEL_SUFFIXES = (".keras", ".h5", ".onnx", ".tflite")


@click.command(short_help="The whole pipeline: train, optimize, convert, benchmark, report.")
@click.option("--data", default="synthetic-nuclei", show_default=True, metavar="NAME|DIR",
              help="synthetic-nuclei, synthetic-shapes, or a dataset folder.")
@click.option("--layout", help="Folder layout (default: detected).")
@click.option("--test-data", metavar="DIR",
              help="A labelled folder to score every variant on [a folder --data: its "
                   "validation split, which no stage trains, selects or calibrates on].")
@click.option("--model", "model_name", default="mobile_unet", show_default=True,
              metavar="NAME|FILE",
              help="A zoo model to train, or your trained model (.keras/.h5 of any Keras, a "
                   "SavedModel folder, .onnx, .tflite): no training, then the same stages.")
@model_option
@size_option("Deployed input size, a side or height x width (e.g. 144x256): what is "
             "converted and benchmarked.", default="256")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Run folder [runs/<data>, runs/<data>-quick with --quick].")
@click.option("--quick", is_flag=True,
              help="Every stage, small: a tiny training and few fine-tune and timing steps.")
@click.option("--threads", default="1,2", show_default=True, callback=parse_threads,
              help="Thread counts to benchmark.")
@click.option("--target", "targets", multiple=True, metavar="NAME[,NAME...]",
              help="Also rows for targets that cannot run here, per .tflite (repeatable): "
                   "ethos-u55-128, ..., cortex-m (see `edgeseg inspect --help`); a targets "
                   "table in the reports. Needs edgeseg[targets].")
@click.option("--force", is_flag=True,
              help="Redo every stage: what earlier runs wrote into --out is removed (nothing else).")
@click.option("--until", type=click.Choice(["data", "train", "optimize", "convert", "bench",
                                            "report"]), default="report", show_default=True,
              help="Stop after this stage (a rerun continues from there).")
@keras_options
@contract_options
@board_options
def run(data, layout, test_data, model_name, options, input_size, out, quick, threads, targets,
        force, until, unsafe, custom_objects, on, board_python, remote_dir, ssh_config, install,
        **contract):
    """Run the pipeline and write OUT/report.{json,md,html} with every artifact:

    \b
    data      the built-in dataset, or a folder (read and checked)
    train     the full-precision model (resumes an interrupted run)
    optimize  50% pruning, QAT, and prune-preserving QAT (tfmot)
    convert   TFLite fp32, fp16, dynamic, int8, QAT-int8, pruned-int8, pruned-QAT-int8;
              ONNX fp32 and int8; each verified against its source
    bench     every file against the Keras model at each thread count
    report    the table, latency/size-vs-Dice plots, masks of sample images

    A rerun with the same --out skips the stages whose outputs exist. A model that learned
    nothing stops the run after training (exit status 1), before anything is converted.

    With --model FILE (your trained model) there is no training: a tf-keras model is optimized
    on --data's training split; any Keras model is converted (calibrated on that split);
    an .onnx is quantized to int8; every file is benchmarked and scored on the validation split
    (or --test-data) against yours.

    With --on ssh://[USER@]HOST[:PORT] the bench stage runs the .tflite/.onnx files on that
    board (see edgeseg bench --help); the Keras reference runs here, on the same images.

    \b
    edgeseg run
    edgeseg run --quick
    edgeseg run --data synthetic-shapes -o alpha=0.75 --out runs/shapes
    edgeseg run --model my_unet.keras --data data/cells --out runs/mine
    edgeseg run --target ethos-u55-128,cortex-m
    """
    from pathlib import Path

    from edgeseg.commands.options import board_from
    from edgeseg.config import ModelConfig, RunConfig
    from edgeseg.device.targets import parse_targets
    from edgeseg.pipeline import run as pipeline

    targets = tuple(parse_targets(targets))  # an unknown name fails before any work
    if targets and on:
        raise click.UsageError("--target estimates run here and --on runs files on a board: "
                               "give --target to a separate edgeseg bench of the run's files")
    board = board_from(on, board_python, remote_dir, ssh_config, install)
    name = Path(data.rstrip("/")).name + ("-quick" if quick else "")
    model_file = None
    if Path(model_name).suffix.lower() in MODEL_SUFFIXES or Path(model_name).exists():
        if not Path(model_name).exists():
            raise click.BadParameter(f"{model_name}: no such model file", param_hint="'--model'")
        if options:
            raise click.BadParameter("-o/--option sets zoo models' options; --model is a file",
                                     param_hint="'-o'")
        model_file, model_name = str(model_name), "mobile_unet"
        name = f"{Path(model_file.rstrip('/')).stem}-{name}"
    elif contract_from(**contract) or unsafe or custom_objects:
        raise click.UsageError("--input-layout, --normalize, --output, --logits, --unsafe and "
                               "--custom-objects apply to --model FILE")
    from edgeseg.device.files import check_output

    out = check_output(out or Path("runs") / name, inputs=[data, test_data, model_file],
                       folder=True)
    cfg = RunConfig(data=data, layout=layout, test_data=test_data,
                    model=ModelConfig(model_name, parse_model_options(options)),
                    input_size=input_size[0] if input_size[0] == input_size[1] else
                    tuple(input_size), quick=quick, threads=threads, model_file=model_file,
                    contract=contract_from(**contract), unsafe=unsafe, targets=targets)
    pipeline(cfg, out, force=force, until=until, echo=click.echo, board=board,
             custom_objects=custom_objects)
