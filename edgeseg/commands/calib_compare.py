"""``edgeseg calib-compare``: every int8 calibration setting of a model, in one table."""

from __future__ import annotations

import click

from edgeseg.commands.options import keras_options, size_option
from edgeseg.device.cli_options import contract_from, contract_options


def _ints(ctx, param, value):
    try:
        counts = tuple(int(part) for part in value.split(",") if part.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of whole numbers") \
            from None
    if not counts or min(counts) < 1:
        raise click.BadParameter(f"{value!r}: give image counts >= 1, e.g. 16,100")
    return counts


@click.command("calib-compare", short_help="Compare int8 calibration settings: Dice, size, "
                                           "latency.")
@click.argument("model_path", metavar="MODEL", type=click.Path())
@click.option("--to", "formats", type=click.Choice(["tflite", "onnx"]), multiple=True,
              help="Formats to compare (repeat) [both].")
@click.option("--counts", default="16,100", show_default=True, callback=_ints,
              help="Numbers of calibration images, comma-separated.")
@click.option("--method", "methods", type=click.Choice(["minmax", "entropy", "percentile"]),
              multiple=True, help="Calibration methods (repeat) [all the format's quantizer has: "
                                  "TFLite minmax; ONNX Runtime minmax, entropy, percentile].")
@click.option("--weights", type=click.Choice(["both", "per-channel", "per-tensor"]),
              default="both", show_default=True, help="Weight scales to compare.")
@click.option("--calib", metavar="DATA",
              help="Calibration images (built-in name or folder) [the model's training data].")
@click.option("--verify-data", metavar="DATA",
              help="Labelled images to score on [the model's validation data].")
@click.option("--samples", "verify_samples", type=click.IntRange(min=1), default=32,
              show_default=True, help="Images to score on.")
@size_option("Size to convert at, N or HxW [the model's own].")
@click.option("--runs", type=click.IntRange(min=1), default=20, show_default=True,
              help="Timed runs per file.")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--json", "json_out", type=click.Path(dir_okay=False),
              help="Also write every row to this JSON file.")
@keras_options
@contract_options
def calib_compare(model_path, formats, counts, methods, weights, calib, verify_data,
                  verify_samples, input_size, runs, threads, json_out, unsafe, custom_objects,
                  **contract):
    """Convert MODEL (.keras/.h5/SavedModel) to int8 with every calibration setting its
    runtimes offer (method, number of images, per-channel or per-tensor weights), score each
    file's Dice on labelled images the calibration did not use, time it beside the float file,
    and print one table with the setting to choose (the highest Dice; on a tie the faster, then
    the smaller) and the convert command that makes it, which records it in the card.

    \b
    edgeseg calib-compare runs/nuclei/model.keras
    edgeseg calib-compare my_unet.keras --to onnx --counts 8,32,128 --calib data/cells
    """
    from converters.calibration_compare import compare, format_table
    from edgeseg.device.files import atomic_write_json, check_output

    if json_out:
        json_out = check_output(json_out, inputs=[model_path, calib, verify_data], option="--json",
                                kind=("a calib-compare report",
                                      lambda obj: isinstance(obj, dict) and "rows" in obj))
    formats = formats or ("tflite", "onnx")
    if methods and "onnx" not in formats and set(methods) - {"minmax"}:
        raise click.BadParameter("TFLite's converter calibrates min/max only; entropy and "
                                 "percentile are ONNX Runtime's (--to onnx)", param_hint="--method")
    report = compare(model_path, formats=formats, counts=counts, methods=methods or None,
                     weights=("per-channel", "per-tensor") if weights == "both" else (weights,),
                     calib=calib, verify_data=verify_data, verify_samples=verify_samples,
                     input_size=input_size, runs=runs, threads=threads, unsafe=unsafe,
                     custom_objects=custom_objects,
                     contract=contract_from(**contract), echo=click.echo)
    click.echo(format_table(report))
    if json_out:
        atomic_write_json(json_out, report)
        click.echo(f"wrote {json_out}")
