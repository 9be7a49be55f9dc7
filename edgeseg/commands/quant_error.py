"""``edgeseg quant-error``: which layers of a model lose accuracy in int8, ranked."""

from __future__ import annotations

import click

from edgeseg.commands.options import keras_options, size_option
from edgeseg.device.cli_options import contract_from, contract_options


@click.command("quant-error", short_help="Per-layer int8 error of a Keras model, ranked.")
@click.argument("model_path", metavar="MODEL", type=click.Path())
@click.option("--calib", metavar="DATA",
              help="Calibration images (built-in name or folder) [the model's training data].")
@click.option("--calib-samples", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--verify-data", metavar="DATA",
              help="Labelled images to measure on [the model's validation data].")
@click.option("--samples", "verify_samples", type=click.IntRange(min=1), default=16,
              show_default=True, help="Images to measure on.")
@size_option("Size to quantize at, N or HxW [the model's own].")
@click.option("--top", type=click.IntRange(min=1), default=15, show_default=True,
              help="Layers to print.")
@click.option("--to", "to", type=click.Choice(["tflite", "onnx"]), default="tflite",
              show_default=True, help="Whose int8: TFLite's (its QuantizationDebugger) or ONNX "
                                      "Runtime's (its qdq_loss_debug).")
@click.option("--sensitivity", is_flag=True,
              help="Also each layer's Dice gain when it alone stays in float (one int8 "
                   "quantization per layer, on the same images).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False),
              help="Also write every layer's figures to this JSON file.")
@keras_options
@contract_options
def quant_error(model_path, calib, calib_samples, verify_data, verify_samples, input_size, top,
                to, sensitivity, json_out, unsafe, custom_objects, **contract):
    """Quantize MODEL (.keras/.h5/SavedModel) to int8 as `convert --quant int8` does and measure
    the error of every quantized layer's output against the float model on images the
    calibration did not use (TFLite's QuantizationDebugger; with --to onnx, ONNX Runtime's
    qdq_loss_debug). Layers are ranked by their RMSE in
    quantization steps (0.29 is rounding alone), with each one's share of the MACs: what it
    would cost to keep it in float.

    \b
    edgeseg quant-error runs/nuclei/model.keras
    edgeseg quant-error my_unet.keras --calib data/cells --json errors.json
    edgeseg quant-error runs/nuclei/model.keras --sensitivity
    """
    from converters.quant_error import format_errors, quant_errors
    from edgeseg.device.files import atomic_write_json, check_output

    if json_out:
        json_out = check_output(json_out, inputs=[model_path, calib, verify_data], option="--json",
                                kind=("a quant-error report",
                                      lambda obj: isinstance(obj, dict) and "layers" in obj))
    report = quant_errors(model_path, calib=calib, verify_data=verify_data, input_size=input_size,
                          calib_samples=calib_samples, verify_samples=verify_samples,
                          unsafe=unsafe, custom_objects=custom_objects,
                          contract=contract_from(**contract),
                          sensitivity=sensitivity, to=to)
    click.echo(format_errors(report, top))
    if json_out:
        atomic_write_json(json_out, report)
        click.echo(f"wrote {json_out}")
