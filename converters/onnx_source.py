"""A user's .onnx (a PyTorch export, NCHW or not) -> int8 QDQ .onnx, verified like every conversion.

PyTorch users arrive with an .onnx, not a Keras model. ONNX Runtime's static quantizer takes it as
it is: the calibration images are fed in the model's own layout, its chosen output and output kind
carry into the card, and parity runs both files through :class:`edgeseg.runtime.EdgeModel`.

    >>> quantize_user_onnx("unet.onnx", "unet_int8.onnx",
    ...                    ConvertConfig(quant="int8", calib="data/cells"))  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

from converters.config import ConvertConfig, ConvertResult
from converters.write import write_checked
from edgeseg.device import card as cards
from edgeseg.device.data import roles
from edgeseg.device.errors import ConfigError


def quantize_user_onnx(model_path, out, cfg: ConvertConfig) -> ConvertResult:
    from converters.onnx import quantize_onnx
    from edgeseg import runtime
    from edgeseg.device.formats.onnx import whole_bytes

    model_path, out = Path(model_path), Path(out)
    if cfg.io != "float" or cfg.dynamic:
        raise ConfigError("--io and --dynamic do not apply to quantizing an .onnx")
    if cfg.fallback:
        raise ConfigError(f"{model_path}: --fallback searches the conversions of Keras models; "
                          f"quantize an .onnx without it (--to onnx --quant int8)")
    source = runtime.load(model_path, contract=cfg.contract)  # an .onnx: no Keras options
    source_card = source.card
    _, height, width, channels = source.input_shape
    size = cfg.input_size or cards.size_of(source_card) or \
        ((height, width) if height is not None else None)
    if size is None:
        raise ConfigError(f"{model_path} takes any input size: give --input-size (the size to "
                          f"calibrate and verify at, e.g. 256 or 144x256)")
    data = cfg.calib or roles.trained_data(source_card)  # an edgeseg .onnx knows its data
    if data is None:
        raise ConfigError("--quant int8 needs calibration data: give --calib DATA")
    trained_on = roles.trained_config(source_card) or cfg.trained_on or \
        roles.own_split(data, cfg.seed)
    norm, fit = cards.normalization_of(source_card), cards.input_fit_of(source_card)
    images = roles.calibration_images(data, size=size, channels=channels, count=cfg.calib_samples,
                                seed=cfg.seed, normalization=norm, fit=fit,
                                trained_on=trained_on)
    if source.layout == "NCHW":
        images = images.transpose(0, 3, 1, 2)
    raw = quantize_onnx(whole_bytes(model_path), images, cfg.per_tensor, cfg.calib_method)
    kind = source.settle_output_kind(tuple(size), cfg.seed)
    contract = source.contract()
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
                "per_tensor": cfg.per_tensor, "from": "onnx"},
        calibration={"data": data, "samples": len(images), "seed": cfg.seed,
                     "method": cfg.calib_method, "per_tensor": cfg.per_tensor,
                     "images": roles.calibration_source(data, trained_on),
                     "source_images": roles.calibration_sources(
                         data, trained_on, len(images))})
    return write_checked(out, "onnx", raw, card, source, tuple(size), cfg, data, trained_on)


__all__ = ["quantize_user_onnx"]
