"""``convert()``: a Keras model file -> a self-describing, parity-checked .tflite or .onnx file.

Any Keras the user saved with (tf-keras, Keras 3, a SavedModel folder; custom layers through
:mod:`edgeseg.keras_files`), its segmentation output chosen and its I/O contract carried into the
card of the file written.

    >>> from converters import ConvertConfig, convert
    >>> result = convert("runs/nuclei/model.keras", "model_int8.tflite",
    ...                  ConvertConfig(quant="int8", calib="synthetic-nuclei",
    ...                                input_size=(256, 256)))  # doctest: +SKIP
    >>> result.parity.agreement, result.card["macs"]  # doctest: +SKIP
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

from converters.config import (
    FORMATS,
    QUANT_MODES,
    ConvertConfig,
    ConvertResult,
    variant_of,
)
from converters.selective import select_int8
from converters.write import require_labels, unlike, write_checked
from edgeseg.device import card as cards
from edgeseg.device.data import roles
from edgeseg.device.errors import ConfigError
from edgeseg.device.log import progress


def convert(model_path, out, config: ConvertConfig | None = None, **options) -> ConvertResult:
    """Convert the model at ``model_path`` (a Keras model of any flavour or a SavedModel folder)
    to ``out`` (.tflite or .onnx) with its card; ``options`` are :class:`ConvertConfig` fields.

    Raises:
        EdgesegError: a bad option or file (nothing is written), or a failed parity check.
    """
    from converters import onnx as onnx_conv
    from converters import tflite as tflite_conv
    from edgeseg import runtime

    if options and config is not None:
        raise TypeError("give a ConvertConfig or options, not both")
    cfg = config or ConvertConfig(**options)
    if cfg.input_size is not None:
        cfg = replace(cfg, input_size=cards.parse_size(cfg.input_size))
    from edgeseg.device.files import check_output

    out = check_output(out, inputs=[model_path, cfg.calib], model=True)
    to = cfg.to or next((fmt for fmt, suffixes in FORMATS.items() if out.suffix in suffixes), None)
    if to not in FORMATS:
        raise ConfigError(f"{out}: give --to tflite|onnx, or an --out ending in .tflite or .onnx")
    if out.suffix not in FORMATS[to]:
        raise ConfigError(f"{out}: {'an' if to == 'onnx' else 'a'} {to} file must end in "
                          f"{FORMATS[to][0]}")
    modes = QUANT_MODES[to]
    if cfg.quant not in modes:
        raise ConfigError(f"--quant for {to} must be one of {', '.join(modes)} (got {cfg.quant!r})")
    if to == "onnx" and cfg.io != "float":
        raise ConfigError("--io applies to TFLite; ONNX models take and give float32")
    if to == "tflite" and cfg.dynamic:
        raise ConfigError("--dynamic applies to ONNX; a .tflite is converted at a fixed size "
                          "(--input-size)")
    _refuse_combinations(cfg, to)  # from the options alone: before TensorFlow is imported
    model_path = Path(model_path)
    if model_path.suffix.lower() in (".tflite", ".onnx"):
        if model_path.suffix.lower() == ".onnx" and to == "tflite":
            from converters.onnx_tflite import onnx_to_tflite

            return onnx_to_tflite(model_path, out, cfg)  # onnx2tf, in its own environment
        if model_path.suffix.lower() == ".onnx" and cfg.quant in ("int8", "fp16"):
            from converters.onnx_source import convert_user_onnx

            return convert_user_onnx(model_path, out, cfg)
        if model_path.suffix.lower() == ".tflite" and to == "tflite":
            from converters.tflite_source import convert_user_tflite

            return convert_user_tflite(model_path, out, cfg)  # ai-edge-quantizer
        raise ConfigError(f"{model_path}: already a {model_path.suffix[1:]} file; convert takes "
                          f"a Keras model (.keras, .h5, a SavedModel folder)"
                          + (" or an .onnx with --to onnx --quant int8|fp16"
                             if model_path.suffix.lower() == ".onnx" else
                             " or a float .tflite with --to tflite --quant int8|int16x8|dynamic"))
    loaded = runtime.load(model_path, unsafe=cfg.unsafe, contract=cfg.contract,
                          custom_objects=cfg.custom_objects)
    if failed := cards.failed_note(loaded.card):
        print(f"warning: {model_path}: {failed}; converting it anyway", file=sys.stderr)
    model = loaded.selected  # the segmentation output of the model, whatever Keras wrote it
    qat = model.is_quantization_aware()
    source_card = loaded.card
    size = cfg.input_size or cards.size_of(source_card) or \
        (tuple(model.input_shape[1:3]) if None not in model.input_shape[1:3] else None)
    if size is None:
        raise ConfigError(f"{model_path} takes any input size: give --input-size (e.g. 256 or "
                          f"144x256)")
    size = tuple(int(v) for v in size)
    channels, num_classes = int(model.input_shape[-1]), loaded.num_classes
    from edgeseg.device.files import check_space
    from edgeseg.device.machine import check_memory

    # a converted file holds the weights at most at 32 bits, as the Keras file does (written
    # under a scratch name, then again under its own): a full disk is said before converting
    # For the shell's file size limit, a size the file surely reaches: an int8 file holds a
    # quarter of the float weights, and the Keras file may hold them three times (with Adam's)
    check_space(out.parent, 2 * _bytes_of(model_path) + 2**16,
                largest=_bytes_of(model_path) // 16, what="the converted file")

    # calibration and parity images, and the model's activations (a few tens of channels per pixel)
    check_memory(size[0] * size[1] * 4 * (channels * (cfg.calib_samples + 2 * cfg.verify_samples)
                                          + 64 * 8), f"converting at {size[0]}x{size[1]}")
    data = cfg.calib or roles.trained_data(source_card)
    trained_on = roles.trained_config(source_card) or cfg.trained_on or \
        roles.own_split(cfg.calib, cfg.seed)
    norm, fit = cards.normalization_of(source_card), cards.input_fit_of(source_card)

    quant = cfg.quant
    if cfg.fallback and qat:
        raise ConfigError("--fallback keeps layers of a --quant int8 conversion in float (a "
                          "quantization-aware model has its int8 ranges already)")
    needs_calib = (to == "tflite" and quant in ("int8", "int16x8") and not qat) or \
        (to == "onnx" and quant == "int8")
    calibration = samples = None
    if needs_calib:
        if data is None:
            raise ConfigError(f"--quant {quant} needs calibration data: give --calib DATA")
        progress(f"reading {cfg.calib_samples} calibration inputs from {data}")
        calibration = roles.calibration_images(data, size=size, channels=channels,
                                         count=cfg.calib_samples, seed=cfg.seed,
                                         normalization=norm, fit=fit, trained_on=trained_on)
        if cfg.verify:  # the parity images, read once: compared here, checked against below
            # (--fallback: twice as many, half to choose the float ops, half to check the file)
            count = cfg.verify_samples * (2 if cfg.fallback else 1)
            samples = roles.parity_images(data, verify_data=cfg.verify_data,
                                          trained_on=trained_on, size=size, channels=channels,
                                          num_classes=num_classes, count=count, seed=cfg.seed,
                                          normalization=norm, fit=fit)
            if not cfg.fallback:  # (--fallback says its own need of labelled images)
                require_labels(cfg, samples[1], samples[2])  # before the conversion runs
            unlike_data = unlike(calibration, samples[0])
            if unlike_data:
                print(f"warning: --calib {data}: {unlike_data}", file=sys.stderr)

    selection = None
    progress(f"converting {model_path.name} to {variant_of(None, quant, qat)} .{to} at "
             f"{size[0]}x{size[1]}" + (" (the int8 search: many conversions)" if cfg.fallback
                                        else ""))
    if to == "tflite":
        if cfg.fallback:
            selection, samples = select_int8(cfg, to, loaded, model, size, calibration,
                                                 samples)
            raw = selection.model
        else:
            raw = tflite_conv.tflite_bytes(model, size, quant, calibration, cfg.io,
                                           cfg.per_tensor)
    else:
        raw = onnx_conv.onnx_bytes(model, size, opset=cfg.opset, dynamic=cfg.dynamic)
        if cfg.fallback:
            selection, samples = select_int8(cfg, to, loaded, raw, size, calibration,
                                                 samples)
            raw = selection.model
        elif quant == "int8":
            raw = onnx_conv.quantize_onnx(raw, calibration, cfg.per_tensor, cfg.calib_method)
        elif quant == "fp16":
            raw = onnx_conv.float16_onnx(raw)
        elif cfg.per_tensor:
            raise ConfigError("--per-tensor applies to --quant int8")
    kind = loaded.settle_output_kind(size, cfg.seed)  # after conversion checked the size

    card = cards.make_card(
        format=to, variant=variant_of(source_card.get("variant"), quant, qat),
        input_size=None if cfg.dynamic else list(size), channels=channels,
        num_classes=num_classes, class_names=source_card.get("class_names"),
        **{**cards.contract(source_card), "output_kind": kind},
        source={"model": str(model_path), "variant": source_card.get("variant"),
                "keras": loaded.source.flavour, "output": loaded.output_name,
                "recipe": source_card.get("recipe"), "metrics": source_card.get("metrics"),
                **{k: source_card[k] for k in ("status", "failure") if k in source_card}},
        recipe={"stage": "convert", "to": to, "quant": quant, "io": cfg.io,
                "quantization_aware": qat, "per_tensor": cfg.per_tensor,
                **({"float_fallback": selection.to_dict(summary=True)} if selection else {}),
                **({"opset": cfg.opset, "dynamic": cfg.dynamic} if to == "onnx" else {})},
        calibration=None if calibration is None else {
            "data": data, "samples": len(calibration), "seed": cfg.seed,
            "method": cfg.calib_method, "per_tensor": cfg.per_tensor,
            "images": roles.calibration_source(data, trained_on),
            "source_images": roles.calibration_sources(
                data, trained_on, len(calibration))})

    return write_checked(out, to, raw, card, loaded, size, cfg, data, trained_on, samples)


def _refuse_combinations(cfg: ConvertConfig, to: str) -> None:
    """Options that contradict each other, refused from the options alone (before the model is
    loaded, which imports TensorFlow)."""
    quant = cfg.quant
    if cfg.calib_method != "minmax" and (to != "onnx" or quant != "int8"):
        raise ConfigError(f"--calib-method {cfg.calib_method} is ONNX Runtime's (--to onnx --quant "
                          f"int8); TFLite's converter calibrates min/max only")
    if cfg.fallback and quant != "int8":
        raise ConfigError(f"--fallback keeps layers of a --quant int8 conversion in float (not "
                          f"--quant {quant})")
    if cfg.io != "float" and quant != "int8":
        raise ConfigError(f"--io {cfg.io} needs --quant int8 (a fully integer model)")
    if cfg.per_tensor and quant not in (("dynamic", "int8", "int16x8") if to == "tflite"
                                        else ("int8",)):
        raise ConfigError(f"--per-tensor applies to quantized weights, not --quant {quant}")
    if cfg.max_dice_drop is not None and not cfg.verify:
        raise ConfigError("--max-dice-drop is held by the parity check: drop --no-verify")
    if cfg.fallback and not cfg.verify:
        raise ConfigError("--fallback needs the parity check (it measures the Dice budget): "
                          "drop --no-verify")
    if cfg.fallback and cfg.io != "float":
        raise ConfigError("--fallback keeps float ops in the graph: it takes --io float")
    if cfg.fallback and to == "onnx" and cfg.dynamic:
        raise ConfigError("--fallback measures at a fixed size: drop --dynamic")


def _bytes_of(path: Path) -> int:
    """The size of a model file, or of a SavedModel folder's files."""
    return path.stat().st_size if path.is_file() else sum(
        p.stat().st_size for p in path.rglob("*") if p.is_file())


__all__ = ["ConvertConfig", "ConvertResult", "convert"]

