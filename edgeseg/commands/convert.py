"""``edgeseg convert``: a Keras model to .tflite or .onnx, verified against its source."""

from __future__ import annotations

import click

from edgeseg.commands._options import contract_from, contract_options, keras_options, size_option


@click.command(short_help="Convert a Keras model to .tflite or .onnx (verified).")
@click.argument("model_path", metavar="MODEL", type=click.Path())
@click.option("--to", "to", type=click.Choice(["tflite", "onnx"]),
              help="Target format [from --out's suffix].")
@click.option("--quant", default="none", show_default=True,
              type=click.Choice(["none", "fp16", "dynamic", "int8", "int16x8"]),
              help="TFLite: none|fp16|dynamic|int8|int16x8; ONNX: none|int8.")
@click.option("--calib", metavar="DATA",
              help="Calibration images for int8/int16x8 (built-in name or folder) "
                   "[the model's training data].")
@click.option("--calib-samples", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--calib-method", type=click.Choice(["minmax", "entropy", "percentile"]),
              default="minmax", show_default=True,
              help="How int8 ranges are set: min/max (TFLite's only method), or ONNX Runtime's "
                   "entropy / percentile (compare them: edgeseg calib-compare).")
@click.option("--io", type=click.Choice(["float", "int8", "uint8"]), default="float",
              show_default=True, help="TFLite input/output type (int8 models).")
@click.option("--per-tensor", is_flag=True,
              help="One weight scale per tensor, not per channel: smaller files (check parity).")
@size_option("Fixed input size to convert at, N or HxW (e.g. 144x256) [the size the model was "
             "trained at, else its own].")
@click.option("--opset", type=click.IntRange(min=11), default=17, show_default=True,
              help="ONNX opset.")
@click.option("--dynamic", is_flag=True, help="ONNX: any batch and input size.")
@click.option("--no-verify", is_flag=True, help="Skip the parity check against the source.")
@click.option("--verify-samples", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--parity-tolerance", type=click.FloatRange(min=0), metavar="X",
              help="Float modes: largest |difference| of the probabilities [1e-3; fp16 1e-2].")
@click.option("--min-agreement", type=click.FloatRange(0, 1), metavar="SHARE",
              help="Smallest share of pixels whose class must agree with the source's [0.999 "
                   "for float modes, 0.98 for quantized ones].")
@click.option("--max-dice-drop", type=click.FloatRange(min=0), metavar="X",
              help="Quantized modes: largest fall of Dice against the source on labelled "
                   "parity images [0.02].")
@click.option("--verify-data", metavar="DATA",
              help="Labelled images to check parity on [the model's validation data, else "
                   "--calib's validation split]; never the calibration images when it can help.")
@click.option("--keep-failed", is_flag=True,
              help="Write a file that fails its parity check anyway (its card says so).")
@click.option("--fallback", is_flag=True,
              help="int8 (TFLite or ONNX): keep the fewest, cheapest layers in float until "
                   "--max-dice-drop "
                   "and --min-agreement hold (chosen on labelled images apart from the parity "
                   "ones; the card says which and why).")
@click.option("--out", type=click.Path(dir_okay=False), required=True,
              help="Output file (.tflite or .onnx).")
@keras_options
@contract_options
def convert(model_path, to, quant, calib, calib_samples, calib_method, io, per_tensor, input_size,
            opset, dynamic, no_verify, verify_samples, parity_tolerance, min_agreement, max_dice_drop, verify_data,
            keep_failed, fallback, out, unsafe, **contract):
    """Convert MODEL to OUT, with its card inside and beside it (OUT.json). MODEL is a Keras
    model of any flavour (tf-keras or Keras 3 .keras/.h5, a SavedModel folder; custom layers
    with --custom-objects), or an .onnx to quantize (--to onnx --quant int8).

    After conversion the file runs in its own runtime (LiteRT or ONNX Runtime) and is compared
    with MODEL as probabilities (logits after their sigmoid/softmax), on images the calibration
    did not use: float32 must match within 1e-3 and float16 within 1e-2, with 99.9% of pixels in
    the same class; quantized files must keep 98% of pixels in the source's class and Dice within
    0.02 (where ground truth is known). Else nothing is written (--keep-failed writes it,
    marked). Calibration images that look unlike the model's data are warned about.

    \b
    edgeseg convert runs/nuclei/model.keras --quant int8 --input-size 256 --out model_int8.tflite
    edgeseg convert runs/nuclei-qat/model.h5 --quant int8 --out model_qat.tflite
    edgeseg convert runs/nuclei/model.keras --to onnx --quant int8 --out model_int8.onnx
    edgeseg convert m.keras --quant int8 --fallback --max-dice-drop 0.005 --out m_int8.tflite
    edgeseg convert my_unet.keras --input-size 144x256 --custom-objects layers.py --out m.tflite
    edgeseg convert torch_unet.onnx --to onnx --quant int8 --calib data/ --out unet_int8.onnx
    """
    from converters import convert as run

    result = run(model_path, out, to=to, quant=quant, calib=calib, calib_samples=calib_samples,
                 calib_method=calib_method,
                 io=io, per_tensor=per_tensor, input_size=input_size, opset=opset, dynamic=dynamic,
                 verify=not no_verify, verify_samples=verify_samples, unsafe=unsafe,
                 tolerance=parity_tolerance, min_agreement=min_agreement,
                 max_dice_drop=max_dice_drop, verify_data=verify_data, keep_failed=keep_failed,
                 fallback=fallback, contract=contract_from(**contract))
    card = result.card
    macs = card["macs"]
    macs = f"{macs / 1e9:.3f} GMACs" if macs >= 1e8 else f"{macs / 1e6:.1f} MMACs"
    click.echo(f"{result.path}: {card['format']} {card['variant']}, "
               f"{result.path.stat().st_size:,} bytes, {macs}")
    if result.parity:
        click.echo(result.parity.summary())
