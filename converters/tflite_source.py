"""A float .tflite someone else made (a MediaPipe model, onnx2tf's float32 file, another
converter's) -> an int8, int16x8 or dynamic-range .tflite, quantized by ai-edge-quantizer (LiteRT's
own quantizer for converted models) and verified like every conversion.

There is no Keras model or SavedModel to give TensorFlow's converter: ai-edge-quantizer rewrites
the flatbuffer itself. It calibrates through a SignatureDef and reads weights as constants, so the
file it is given has float16 weights widened to float32 (exactly) and a signature where there is
none (:func:`converters.flatbuffer.for_quantizer`). Its int8 files take and give int8 (the
quantization of the input and output is in the file, and every runtime here feeds it so).

    >>> convert_user_tflite("selfie_segmentation.tflite", "selfie_int8.tflite",
    ...                     ConvertConfig(quant="int8", calib="data/people"))  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

from converters.config import ConvertConfig, ConvertResult, variant_of
from converters.tflite import ConversionError
from converters.write import write_checked
from edgeseg.device import card as cards
from edgeseg.device.data import roles
from edgeseg.device.errors import ConfigError
from edgeseg.device.log import progress

# --quant -> ai-edge-quantizer's recipe (ai_edge_quantizer.recipe)
RECIPES = {"int8": "static_wi8_ai8", "int16x8": "static_wi8_ai16", "dynamic": "dynamic_wi8_afp32"}
SIGNATURE = "serving_default"


def quantizer_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ai-edge-quantizer")
    except PackageNotFoundError:
        return None


def input_type(raw: bytes) -> str:
    """``float`` or the integer type (``int8``, ``int16``) a .tflite's input takes."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    name = np.dtype(Interpreter(model_content=raw).get_input_details()[0]["dtype"]).name
    return "float" if name == "float32" else name


def quantized_already(raw: bytes) -> str | None:
    """What shows a .tflite has been quantized (an integer input, integer weights), or None."""
    from converters.flatbuffer import integer_weights

    given, weights = input_type(raw), integer_weights(raw)
    if given == "float" and not weights:
        return None
    return f"{'float32' if given == 'float' else given} input, {weights} integer weight tensors"


def convert_user_tflite(model_path, out, cfg: ConvertConfig) -> ConvertResult:
    """``model_path`` (a float .tflite) quantized to ``cfg.quant`` by ai-edge-quantizer, written
    to ``out`` with its card once parity against ``model_path`` (both run in LiteRT) holds."""
    import numpy as np

    from converters.flatbuffer import for_quantizer
    from converters.onnx_source import read_user_onnx
    from edgeseg.device.formats.tflite import read_tflite

    model_path, out = Path(model_path), Path(out)
    if cfg.quant not in RECIPES:
        raise ConfigError(f"{model_path}: already a .tflite; convert quantizes one with --quant "
                          f"{', '.join(RECIPES)} (ai-edge-quantizer), not {cfg.quant!r}")
    for given, why in ((cfg.fallback, "--fallback"), (cfg.per_tensor, "--per-tensor"),
                       (cfg.calib_method != "minmax", "--calib-method"),
                       (cfg.io not in ("float", "int8"), f"--io {cfg.io}")):
        if given:
            raise ConfigError(f"{model_path}: {why} applies to Keras models; a .tflite is "
                              f"quantized by ai-edge-quantizer's recipe as it stands")
    version = quantizer_version()
    if version is None:
        raise ConfigError(f"{model_path}: quantizing a .tflite needs ai-edge-quantizer: pip "
                          f"install 'edgeseg[quantizer]'")
    read_tflite(model_path)  # a missing, foreign or corrupt file: one line naming it
    raw = model_path.read_bytes()
    if why := quantized_already(raw):
        raise ConfigError(f"{model_path}: already quantized ({why}); quantize the float model "
                          f"it was made from")
    user = read_user_onnx(model_path, cfg, calibrated=cfg.quant != "dynamic")  # any runtime file
    source, source_card, size, channels = user.source, user.card, user.size, user.channels
    if source.layout != "NHWC":
        raise ConfigError(f"{model_path}: a .tflite takes NHWC images; its card says "
                          f"{source.layout}")
    kind = source.settle_output_kind(size, cfg.seed)
    prepared, widened = for_quantizer(raw, SIGNATURE)
    calibration = None
    if cfg.quant != "dynamic":
        calibration = roles.calibration_images(user.data, size=size, channels=channels,
                                               count=cfg.calib_samples, seed=cfg.seed,
                                               normalization=user.normalization, fit=user.fit,
                                               trained_on=user.trained_on)
    progress(f"quantizing {model_path.name} with ai-edge-quantizer {version} ({cfg.quant})")
    quantized = quantize_tflite(model_path, prepared, cfg.quant, version,
                                None if calibration is None else calibration.astype(np.float32))
    io_type = input_type(quantized)
    card = cards.make_card(
        format="tflite", variant=variant_of(source_card.get("variant"), cfg.quant, False),
        input_size=list(size), channels=channels, num_classes=source.num_classes,
        class_names=source_card.get("class_names"),
        **{**cards.contract(source_card), "output_kind": kind},
        source={"model": str(model_path), "variant": source_card.get("variant"),
                "metrics": source_card.get("metrics")},
        recipe={"stage": "convert", "to": "tflite", "quant": cfg.quant,
                "io": io_type, "from": "tflite",
                "float16_weights_widened": widened,
                "tool": {"name": "ai-edge-quantizer", "ai-edge-quantizer": version,
                         "recipe": RECIPES[cfg.quant]}},
        calibration=None if calibration is None else {
            "data": user.data, "samples": len(calibration), "seed": cfg.seed, "method": "minmax",
            "per_tensor": False, "images": roles.calibration_source(user.data, user.trained_on),
            "source_images": roles.calibration_sources(user.data, user.trained_on,
                                                       len(calibration))})
    return write_checked(out, "tflite", quantized, card, source, size, cfg, user.data,
                         user.trained_on)


def quantize_tflite(model_path: Path, prepared: bytes, quant: str, version: str,
                    images) -> bytes:
    """``prepared`` (:func:`converters.flatbuffer.for_quantizer`) quantized to ``quant`` by
    ai-edge-quantizer, calibrated on ``images`` (NHWC floats, None for dynamic range); the
    quantizer's own failure is one line naming ``model_path``."""
    import ai_edge_quantizer as aq
    from ai_edge_litert.interpreter import Interpreter

    signatures = Interpreter(model_content=prepared).get_signature_list()
    key = SIGNATURE if SIGNATURE in signatures else next(iter(signatures))  # the file's own
    name = next(iter(signatures[key]["inputs"]))
    chatter = io.StringIO()  # its progress bars and size report: not this command's output
    try:
        with contextlib.redirect_stdout(chatter), contextlib.redirect_stderr(chatter):
            quantizer = aq.Quantizer(bytearray(prepared))
            quantizer.load_quantization_recipe(getattr(aq.recipe, RECIPES[quant])())
            calibrated = None
            if images is not None:
                calibrated = quantizer.calibrate(
                    {key: [{name: image[None]} for image in images]}, num_threads=1)
            result = quantizer.quantize(calibrated, enable_progress_report=False)
    except Exception as error:  # the tool's own refusal, whatever it raises: one line
        reason = str(error).strip().splitlines()[0][:240] if str(error).strip() else ""
        raise ConversionError(f"{model_path}: ai-edge-quantizer {version} could not quantize "
                              f"it: {type(error).__name__}" + (f": {reason}" if reason else "")
                              + ("; try --quant dynamic, or" if quant != "dynamic" else ";")
                              + " quantize the model it was made from") from None
    return bytes(result.quantized_model)


__all__ = ["RECIPES", "convert_user_tflite", "input_type", "quantize_tflite", "quantized_already",
           "quantizer_version"]
