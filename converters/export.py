"""``convert()``: a Keras model file -> a self-describing, parity-checked .tflite or .onnx file.

    >>> from converters import convert
    >>> result = convert("runs/nuclei/model.keras", "model_int8.tflite", quant="int8",
    ...                  calib="synthetic-nuclei", input_size=256)  # doctest: +SKIP
    >>> result.parity.agreement, result.card["macs"]  # doctest: +SKIP
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from converters.calibration import calibration_images, calibration_source, labelled_samples
from converters.tflite import ConversionError
from converters.verify import Parity, check_parity, keras_probabilities
from edgeseg import card as cards
from edgeseg.errors import ConfigError
from edgeseg.files import atomic_write_bytes

FORMATS = {"tflite": (".tflite",), "onnx": (".onnx",)}
FLOAT_MODES = ("none", "fp16")


@dataclass(frozen=True)
class ConvertResult:
    path: Path
    card: dict
    parity: Parity | None


def variant_of(source_variant: str | None, quant: str, qat: bool) -> str:
    """``fp32``/``fp16``/``dynamic``/``int8``/``int16x8``, after the source's own name when it
    was optimized (``pruned50-int8``, ``pruned50-qat-int8``; a QAT model's always says ``qat``)."""
    name = "fp32" if quant == "none" else quant
    parts = [source_variant] if source_variant and source_variant != "fp32" else []
    if qat and not any("qat" in part for part in parts):
        parts.append("qat")
    return "-".join([*parts, name])


def convert(model_path, out, *, to: str | None = None, quant: str = "none",
            calib: str | None = None, calib_samples: int = 100, io: str = "float",
            input_size: int | None = None, opset: int = 17, dynamic: bool = False,
            verify: bool = True, verify_samples: int = 16, seed: int = 0,
            per_tensor: bool = False, unsafe: bool = False) -> ConvertResult:
    """Convert the Keras model at ``model_path`` to ``out`` (.tflite or .onnx) with its card.

    Args:
        to: ``tflite`` or ``onnx``; by default from ``out``'s suffix.
        quant: TFLite ``none|fp16|dynamic|int8|int16x8``; ONNX ``none|int8``.
        calib: calibration data (a built-in dataset or a folder) for int8/int16x8; by default the
            data the model was trained on, when the card names a built-in dataset or a folder.
        io: TFLite input/output type, ``float|int8|uint8`` (``int8`` models only).
        input_size: the fixed size to convert at; by default the size the model was trained at.
        dynamic: ONNX only: any batch and size instead of a fixed (1, H, W, C).
        verify: run the file in its runtime and compare it with the Keras model (parity).
        per_tensor: one weight scale per tensor instead of per channel (smaller files).

    Raises:
        EdgesegError: a bad option or file (nothing is written), or a failed float parity.
    """
    from converters import onnx as onnx_conv
    from converters import tflite as tflite_conv
    from converters.flatbuffer import rewrite
    from edgeseg.flops import file_cost
    from edgeseg.safety import trust
    from edgeseg.models.saving import is_quantization_aware, load_model

    out = Path(out)
    to = to or next((fmt for fmt, suffixes in FORMATS.items() if out.suffix in suffixes), None)
    if to not in FORMATS:
        raise ConfigError(f"{out}: give --to tflite|onnx, or an --out ending in .tflite or .onnx")
    if out.suffix not in FORMATS[to]:
        raise ConfigError(f"{out}: a {to} file must end in {FORMATS[to][0]}")
    modes = tflite_conv.QUANT_MODES if to == "tflite" else onnx_conv.QUANT_MODES
    if quant not in modes:
        raise ConfigError(f"--quant for {to} must be one of {', '.join(modes)} (got {quant!r})")
    if to == "onnx" and io != "float":
        raise ConfigError("--io applies to TFLite; ONNX models take and give float32")
    model = load_model(model_path, unsafe=unsafe)
    qat = is_quantization_aware(model)
    source_card = cards.read_card(model_path)
    size = input_size or _card_size(source_card) or model.input_shape[1]
    if size is None:
        raise ConfigError(f"{model_path} takes any input size: give --input-size")
    channels, num_classes = int(model.input_shape[-1]), int(model.output_shape[-1])
    data = calib or _trained_on(source_card)
    trained_on = _trained_config(source_card)
    norm, fit = cards.normalization_of(source_card), cards.input_fit_of(source_card)

    needs_calib = (to == "tflite" and quant in ("int8", "int16x8") and not qat) or \
        (to == "onnx" and quant == "int8")
    calibration = None
    if needs_calib:
        if data is None:
            raise ConfigError(f"--quant {quant} needs calibration data: give --calib DATA")
        calibration = calibration_images(data, size=size, channels=channels, count=calib_samples,
                                         seed=seed, normalization=norm, fit=fit,
                                         trained_on=trained_on)

    if to == "tflite":
        raw = tflite_conv.tflite_bytes(model, size, quant, calibration, io, per_tensor)
    else:
        raw = onnx_conv.onnx_bytes(model, size, opset=opset, dynamic=dynamic)
        if quant == "int8":
            raw = onnx_conv.quantize_onnx(raw, calibration, per_tensor)
        elif per_tensor:
            raise ConfigError("--per-tensor applies to --quant int8")

    card = cards.make_card(
        format=to, variant=variant_of(source_card.get("variant"), quant, qat),
        input_size=None if dynamic else [size, size], channels=channels, num_classes=num_classes,
        class_names=source_card.get("class_names"), **cards.contract(source_card),
        source={"model": str(model_path), "variant": source_card.get("variant"),
                "recipe": source_card.get("recipe"), "metrics": source_card.get("metrics")},
        recipe={"stage": "convert", "to": to, "quant": quant, "io": io, "quantization_aware": qat,
                "per_tensor": per_tensor,
                **({"opset": opset, "dynamic": dynamic} if to == "onnx" else {})},
        calibration=None if calibration is None else {
            "data": data, "samples": len(calibration), "seed": seed,
            "images": calibration_source(data, trained_on)})

    def stamped(card_: dict) -> bytes:
        if to == "tflite":
            return rewrite(raw, card_)
        return onnx_conv.with_metadata(raw, {cards.EMBEDDED_KEY: json.dumps(card_, sort_keys=True)})

    # Count and verify the very bytes that are written (only the card inside them changes after).
    trial = out.with_name(f".{out.stem}.partial{out.suffix}")
    try:
        atomic_write_bytes(trial, stamped(card))
        cost = file_cost(trial, input_size=size)
        card.update(macs=cost.macs, params=cost.params)
        parity = None
        if verify:
            parity = _parity(model, trial, data, size, channels, num_classes, quant,
                             verify_samples, seed, norm, trained_on)
            card["parity"] = parity.to_dict()
            if not parity.passed:
                raise ConversionError(f"{out}: parity check failed: {parity.summary()}")
            if parity.warning:
                print(f"warning: {out}: {parity.warning}", file=sys.stderr)
        path = atomic_write_bytes(out, stamped(card))
        cards.write_card(path, card)
        trust(path)  # this process wrote it: later loads here need no child-process probe
    finally:
        trial.unlink(missing_ok=True)
    return ConvertResult(path, card, parity)


def _parity(model, path, data, size, channels, num_classes, quant, count, seed, norm,
            trained_on) -> Parity:
    from edgeseg import runtime

    if data is None:
        import numpy as np

        images = np.random.default_rng(seed).random((count, size, size, channels), np.float32)
        masks = None
    else:
        images, masks = labelled_samples(data, size=size, channels=channels,
                                         num_classes=num_classes, count=count, seed=seed,
                                         normalization=norm, trained_on=trained_on)
    converted = runtime.load(path, trusted=True).predict(images)  # written by this process
    mode = quant if quant in FLOAT_MODES else "quantized"
    return check_parity(keras_probabilities(model, images), converted, mode=mode,
                        num_classes=num_classes, masks=masks)


def _card_size(card: dict) -> int | None:
    size = card.get("input_size")
    return int(size[0]) if isinstance(size, list) and size else None


def _trained_config(card: dict):
    """The DataConfig the model's training (or fine-tune) read, when its card records one."""
    from edgeseg.config import DataConfig

    data = (card.get("recipe") or {}).get("data")
    if not isinstance(data, dict):
        return None
    try:
        return DataConfig.from_dict(data)
    except TypeError:
        return None


def _trained_on(card: dict) -> str | None:
    """The data the model was trained on, when that can be read again (a built-in name or a folder)."""
    recipe = card.get("recipe") or {}
    data = (recipe.get("data") or {}).get("source")
    if data is None and isinstance(card.get("source"), dict):
        data = card["source"].get("data")
    from edgeseg.data.source import is_builtin

    if data and (is_builtin(data) or Path(data).is_dir()):
        return data
    return None


__all__ = ["ConvertResult", "convert", "variant_of"]
