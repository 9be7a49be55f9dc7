"""``edgeseg convert``: a Keras model to .tflite or .onnx, verified against its source."""

from __future__ import annotations

import click

from converters.config import ConvertConfig
from edgeseg.commands.options import config_options, keras_options
from edgeseg.device.cli_options import contract_from, contract_options


@click.command(short_help="Convert a Keras model to .tflite or .onnx (verified).")
@click.argument("model_path", metavar="MODEL", type=click.Path())
@config_options(ConvertConfig)
@click.option("--out", type=click.Path(dir_okay=False), required=True,
              help="Output file (.tflite or .onnx).")
@keras_options
@contract_options
def convert(model_path, out, unsafe, custom_objects, input_layout, normalize, output, logits,
            **options):
    """Convert MODEL to OUT, with its card inside and beside it (OUT.json). MODEL is a Keras
    model of any flavour (tf-keras or Keras 3 .keras/.h5, a SavedModel folder; custom layers
    with --custom-objects), an .onnx to quantize (--to onnx --quant int8|fp16) or to take to
    .tflite (onnx2tf: edgeseg tools install onnx2tf), or a float .tflite made elsewhere to
    quantize (--quant int8|int16x8|dynamic, by ai-edge-quantizer).

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
    edgeseg convert selfie.tflite --quant int8 --calib data/ --normalize scale --out s_int8.tflite
    """
    from converters import convert as run

    contract = contract_from(input_layout, normalize, output, logits)
    result = run(model_path, out, ConvertConfig(**options, unsafe=unsafe, contract=contract,
                                                custom_objects=custom_objects))
    card = result.card
    macs = card["macs"]
    macs = f"{macs / 1e9:.3f} GMACs" if macs >= 1e8 else f"{macs / 1e6:.1f} MMACs"
    click.echo(f"{result.path}: {card['format']} {card['variant']}, "
               f"{result.path.stat().st_size:,} bytes, {macs}")
    if result.parity:
        click.echo(result.parity.summary())
