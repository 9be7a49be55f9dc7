"""``edgeseg convert``: a Keras model to .tflite or .onnx, verified against its source."""

from __future__ import annotations

import click


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
@click.option("--io", type=click.Choice(["float", "int8", "uint8"]), default="float",
              show_default=True, help="TFLite input/output type (int8 models).")
@click.option("--per-tensor", is_flag=True,
              help="One weight scale per tensor, not per channel: smaller files (check parity).")
@click.option("--input-size", type=click.IntRange(min=1),
              help="Fixed input size to convert at [the size the model was trained at].")
@click.option("--opset", type=click.IntRange(min=11), default=17, show_default=True,
              help="ONNX opset.")
@click.option("--dynamic", is_flag=True, help="ONNX: any batch and input size.")
@click.option("--no-verify", is_flag=True, help="Skip the parity check against the source.")
@click.option("--verify-samples", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), required=True,
              help="Output file (.tflite or .onnx).")
@click.option("--unsafe", is_flag=True, help="Allow Keras models that carry code (Lambda layers).")
def convert(model_path, to, quant, calib, calib_samples, io, per_tensor, input_size, opset, dynamic,
            no_verify, verify_samples, out, unsafe):
    """Convert MODEL (.keras/.h5) to OUT, with its card inside and beside it (OUT.json).

    After conversion the file runs in its own runtime (LiteRT or ONNX Runtime) and is compared
    with MODEL: float32 must match within 1e-4 and float16 within 1e-2 (else nothing is written);
    quantized models report pixel agreement and the Dice change, with a warning past 1%.

    \b
    edgeseg convert runs/nuclei/model.keras --quant int8 --input-size 256 --out model_int8.tflite
    edgeseg convert runs/nuclei-qat/model.h5 --quant int8 --out model_qat.tflite
    edgeseg convert runs/nuclei/model.keras --to onnx --quant int8 --out model_int8.onnx
    """
    from converters import convert as run

    result = run(model_path, out, to=to, quant=quant, calib=calib, calib_samples=calib_samples,
                 io=io, per_tensor=per_tensor, input_size=input_size, opset=opset, dynamic=dynamic,
                 verify=not no_verify, verify_samples=verify_samples, unsafe=unsafe)
    card = result.card
    macs = card["macs"]
    macs = f"{macs / 1e9:.3f} GMACs" if macs >= 1e8 else f"{macs / 1e6:.1f} MMACs"
    click.echo(f"{result.path}: {card['format']} {card['variant']}, "
               f"{result.path.stat().st_size:,} bytes, {macs}")
    if result.parity:
        click.echo(result.parity.summary())
