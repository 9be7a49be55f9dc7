"""A user's .onnx (a PyTorch export, NCHW or not) -> int8 QDQ or float16 .onnx, verified like every
conversion.

PyTorch users arrive with an .onnx, not a Keras model. ONNX Runtime's tools take it as it is: its
static quantizer (the calibration images fed in the model's own layout; ``--fallback``: the
selective search with ``nodes_to_exclude``) and its float16 converter. The model's chosen output
and output kind carry into the card, and parity runs both files through
:class:`edgeseg.runtime.EdgeModel`.

    >>> convert_user_onnx("unet.onnx", "unet_int8.onnx",
    ...                   ConvertConfig(quant="int8", calib="data/cells"))  # doctest: +SKIP
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from converters.config import ConvertConfig, ConvertResult
from converters.write import require_labels, write_checked
from edgeseg.device import card as cards
from edgeseg.device.data import roles
from edgeseg.device.errors import ConfigError


@dataclass(frozen=True)
class UserOnnx:
    """A user's .onnx, read once for a conversion: its EdgeModel and card, the size and channels
    to convert at, and the data, split and input preparation its calibration and parity use."""

    source: object
    card: dict
    size: tuple
    channels: int
    data: object
    trained_on: object
    normalization: object
    fit: object


def read_user_onnx(model_path: Path, cfg: ConvertConfig, calibrated: bool) -> UserOnnx:
    """The .onnx at ``model_path`` loaded by its contract, its size settled (``--input-size``,
    its card's, or its own fixed one) and its calibration data found (``calibrated``: required);
    a size or data it cannot have is one line."""
    from edgeseg import runtime

    source = runtime.load(model_path, contract=cfg.contract)  # an .onnx: no Keras options
    card = source.card
    _, height, width, channels = source.input_shape
    size = cfg.input_size or cards.size_of(card) or \
        ((height, width) if height is not None else None)
    if size is None:
        raise ConfigError(f"{model_path} takes any input size: give --input-size (the size to "
                          f"convert, calibrate and verify at, e.g. 256 or 144x256)")
    size = tuple(int(v) for v in size)
    if height is not None and (height, width) != size:
        raise ConfigError(f"{model_path} was exported for {height}x{width}, not "
                          f"{size[0]}x{size[1]}")
    data = cfg.calib or roles.trained_data(card)  # an edgeseg .onnx knows its data
    if calibrated and data is None:
        raise ConfigError(f"--quant {cfg.quant} needs calibration data: give --calib DATA")
    trained_on = roles.trained_config(card) or cfg.trained_on or roles.own_split(data, cfg.seed)
    return UserOnnx(source, card, size, channels, data, trained_on, cards.normalization_of(card),
                    cards.input_fit_of(card))


def convert_user_onnx(model_path, out, cfg: ConvertConfig) -> ConvertResult:
    """``model_path`` (.onnx) quantized to int8 (``--fallback``: some nodes kept in float) or
    converted to float16, written to ``out`` with its card once parity holds."""
    from converters.onnx import float16_onnx, quantize_onnx
    from converters.selective import select_int8
    from edgeseg.device.formats.onnx import whole_bytes

    model_path, out = Path(model_path), Path(out)
    if cfg.io != "float" or cfg.dynamic:
        raise ConfigError("--io and --dynamic do not apply to converting an .onnx")
    if cfg.quant not in ("int8", "fp16"):
        raise ConfigError(f"{model_path}: already an .onnx; --to onnx takes --quant int8 or fp16 "
                          f"for it (got {cfg.quant!r})")
    if cfg.per_tensor and cfg.quant != "int8":
        raise ConfigError("--per-tensor applies to --quant int8")
    user = read_user_onnx(model_path, cfg, calibrated=cfg.quant == "int8")
    source, source_card, size, channels = user.source, user.card, user.size, user.channels
    data, trained_on, norm, fit = user.data, user.trained_on, user.normalization, user.fit
    float_bytes = whole_bytes(model_path)  # external data (model.onnx.data) read in
    kind = source.settle_output_kind(size, cfg.seed)
    contract = source.contract()
    calibration = samples = selection = None
    if cfg.quant == "fp16":
        raw = float16_onnx(float_bytes)
    else:
        calibration = roles.calibration_images(data, size=size, channels=channels,
                                               count=cfg.calib_samples, seed=cfg.seed,
                                               normalization=norm, fit=fit, trained_on=trained_on)
        fed = calibration.transpose(0, 3, 1, 2) if source.layout == "NCHW" else calibration
        if cfg.fallback:
            samples = roles.parity_images(data, verify_data=cfg.verify_data,
                                          trained_on=trained_on, size=size, channels=channels,
                                          num_classes=source.num_classes,
                                          count=2 * cfg.verify_samples, seed=cfg.seed,
                                          normalization=norm, fit=fit)
            print(f"converting {model_path.name} to int8 .onnx at {size[0]}x{size[1]} (the int8 "
                  f"search: many quantizations)", file=sys.stderr)
            selection, samples = select_int8(
                cfg, "onnx", source, float_bytes, size, fed, samples,
                contract={"input_layout": source.layout, "output": contract["output"],
                          "output_kind": kind})
            raw = selection.model
        else:
            raw = quantize_onnx(float_bytes, fed, cfg.per_tensor, cfg.calib_method)
    if samples is not None:
        require_labels(cfg, samples.masks, samples.where)
    card = cards.make_card(
        format="onnx", variant=cfg.quant if not source_card.get("variant") else
        f"{source_card['variant']}-{cfg.quant}",
        input_size=list(size), channels=channels, num_classes=source.num_classes,
        class_names=source_card.get("class_names"),
        **{**cards.contract(source_card), "input_layout": source.layout,
           "output": contract["output"], "output_kind": kind},
        source={"model": str(model_path), "variant": source_card.get("variant"),
                "metrics": source_card.get("metrics"),
                **{k: source_card[k] for k in ("status", "failure") if k in source_card}},
        recipe={"stage": "convert", "to": "onnx", "quant": cfg.quant,
                "per_tensor": cfg.per_tensor, "from": "onnx",
                **({"float_fallback": selection.to_dict(summary=True)} if selection else {})},
        calibration=None if calibration is None else {
            "data": data, "samples": len(calibration), "seed": cfg.seed,
            "method": cfg.calib_method, "per_tensor": cfg.per_tensor,
            "images": roles.calibration_source(data, trained_on),
            "source_images": roles.calibration_sources(data, trained_on, len(calibration))})
    return write_checked(out, "onnx", raw, card, source, size, cfg, data, trained_on, samples)


__all__ = ["UserOnnx", "convert_user_onnx", "read_user_onnx"]
