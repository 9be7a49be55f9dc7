"""``convert()``: a Keras model file -> a self-describing, parity-checked .tflite or .onnx file.

Any Keras the user saved with (tf-keras, Keras 3, a SavedModel folder; custom layers through
:mod:`edgeseg.keras_models`), its segmentation output chosen and its I/O contract carried into the
card of the file written.

    >>> from converters import ConvertConfig, convert
    >>> result = convert("runs/nuclei/model.keras", "model_int8.tflite",
    ...                  ConvertConfig(quant="int8", calib="synthetic-nuclei",
    ...                                input_size=(256, 256)))  # doctest: +SKIP
    >>> result.parity.agreement, result.card["macs"]  # doctest: +SKIP
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from converters.calibration import calibration_images, calibration_source, labelled_samples
from converters.tflite import ConversionError
from converters.verify import Parity, check_parity
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


@dataclass(frozen=True)
class ConvertConfig:
    """How to convert (every option of ``edgeseg convert``).

    Attributes:
        to: ``tflite`` or ``onnx``; by default from the output's suffix.
        quant: TFLite ``none|fp16|dynamic|int8|int16x8``; ONNX ``none|int8``.
        calib: calibration data (a built-in dataset or a folder) for int8/int16x8; by default the
            data the model was trained on, when the card names a built-in dataset or a folder.
        calib_samples: calibration images.
        calib_method: how calibration sets the int8 ranges: ``minmax`` (TFLite's only method,
            ONNX Runtime's default), ``entropy`` or ``percentile`` (ONNX Runtime).
        io: TFLite input/output type, ``float|int8|uint8`` (``int8`` models only).
        input_size: (height, width) to convert at; by default the size the model was trained
            at, or its own fixed size.
        opset, dynamic: ONNX opset; any batch and size instead of a fixed (1, H, W, C).
        verify, verify_samples: run the file in its runtime and compare it with the source.
        tolerance: float parity: largest |difference| of the probabilities allowed (logits are
            compared after their sigmoid/softmax, so the limit is on the outputs' own scale)
            [1e-3 float32, 1e-2 fp16].
        min_agreement: smallest share of pixels whose class must agree with the source's
            [0.999 for float modes, 0.98 for quantized ones].
        max_dice_drop: quantized modes, where the parity images have ground truth: largest fall
            of Dice against the source [0.02].
        verify_data: labelled data to check parity on [the validation data the model's card
            records, else --calib's validation split, else --calib's images, said].
        keep_failed: write a file that failed its parity check anyway (its card says so).
        fallback: int8: keep the fewest, cheapest ops in float until ``max_dice_drop``
            (and ``min_agreement``) hold (:mod:`converters.selective`), chosen on labelled images
            apart from the ones parity then checks; the card records which ops and why.
        per_tensor: one weight scale per tensor instead of per channel (smaller files).
        unsafe: allow Keras models that carry code (Lambda layers).
        contract: I/O-contract keys over the source's card (``normalize``, ``output``,
            ``output_kind``, ...: see :func:`edgeseg.card.with_overrides`).
    """

    to: str | None = None
    quant: str = "none"
    calib: str | None = None
    calib_samples: int = 100
    calib_method: str = "minmax"
    io: str = "float"
    input_size: tuple[int, int] | None = None
    opset: int = 17
    dynamic: bool = False
    verify: bool = True
    verify_samples: int = 16
    tolerance: float | None = None
    min_agreement: float | None = None
    max_dice_drop: float | None = None
    verify_data: str | None = None
    keep_failed: bool = False
    fallback: bool = False
    seed: int = 0
    per_tensor: bool = False
    unsafe: bool = False
    contract: dict | None = None
    trained_on: object | None = None  # a DataConfig: its training split calibrates, its
    # validation split checks parity, when the model's card does not record one (a user's model)


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
    from edgeseg.files import check_output

    out = check_output(out, inputs=[model_path, cfg.calib], model=True)
    to = cfg.to or next((fmt for fmt, suffixes in FORMATS.items() if out.suffix in suffixes), None)
    if to not in FORMATS:
        raise ConfigError(f"{out}: give --to tflite|onnx, or an --out ending in .tflite or .onnx")
    if out.suffix not in FORMATS[to]:
        raise ConfigError(f"{out}: {'an' if to == 'onnx' else 'a'} {to} file must end in "
                          f"{FORMATS[to][0]}")
    modes = tflite_conv.QUANT_MODES if to == "tflite" else onnx_conv.QUANT_MODES
    if cfg.quant not in modes:
        raise ConfigError(f"--quant for {to} must be one of {', '.join(modes)} (got {cfg.quant!r})")
    if to == "onnx" and cfg.io != "float":
        raise ConfigError("--io applies to TFLite; ONNX models take and give float32")
    if to == "tflite" and cfg.dynamic:
        raise ConfigError("--dynamic applies to ONNX; a .tflite is converted at a fixed size "
                          "(--input-size)")
    model_path = Path(model_path)
    if model_path.suffix.lower() in (".tflite", ".onnx"):
        if model_path.suffix.lower() == ".onnx" and to == "tflite":
            raise ConfigError(f"{model_path}: edgeseg converts Keras models to .tflite; for an "
                              f"ONNX model use onnx2tf (pip install onnx2tf; onnx2tf -i "
                              f"{model_path.name}), then bench the .tflite it writes")
        if model_path.suffix.lower() == ".onnx" and cfg.quant == "int8":
            from converters.onnx_source import quantize_user_onnx

            return quantize_user_onnx(model_path, out, cfg)
        raise ConfigError(f"{model_path}: already a {model_path.suffix[1:]} file; convert takes "
                          f"a Keras model (.keras, .h5, a SavedModel folder)"
                          + (" or an .onnx with --to onnx --quant int8"
                             if model_path.suffix.lower() == ".onnx" else ""))
    loaded = runtime.load(model_path, unsafe=cfg.unsafe, contract=cfg.contract)
    if loaded.card.get("status") == "failed":
        print(f"warning: {model_path}: its card says training failed ({loaded.card.get('failure')}"
              f"); converting it anyway", file=sys.stderr)
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
    from edgeseg.machine import check_memory

    # calibration and parity images, and the model's activations (a few tens of channels per pixel)
    check_memory(size[0] * size[1] * 4 * (channels * (cfg.calib_samples + 2 * cfg.verify_samples)
                                          + 64 * 8), f"converting at {size[0]}x{size[1]}")
    data = cfg.calib or _trained_on(source_card)
    trained_on = _trained_config(source_card) or cfg.trained_on or _split_of(cfg.calib, cfg.seed)
    norm, fit = cards.normalization_of(source_card), cards.input_fit_of(source_card)

    quant = cfg.quant
    if cfg.calib_method != "minmax" and (to != "onnx" or quant != "int8"):
        raise ConfigError(f"--calib-method {cfg.calib_method} is ONNX Runtime's (--to onnx --quant "
                          f"int8); TFLite's converter calibrates min/max only")
    if cfg.fallback and (quant != "int8" or qat):
        raise ConfigError("--fallback keeps layers of a --quant int8 conversion in float "
                          + ("(a quantization-aware model has its int8 ranges already)" if qat
                             else f"(not --quant {quant})"))
    if cfg.fallback and not cfg.verify:
        raise ConfigError("--fallback needs the parity check (it measures the Dice budget): "
                          "drop --no-verify")
    needs_calib = (to == "tflite" and quant in ("int8", "int16x8") and not qat) or \
        (to == "onnx" and quant == "int8")
    calibration = samples = None
    if needs_calib:
        if data is None:
            raise ConfigError(f"--quant {quant} needs calibration data: give --calib DATA")
        calibration = calibration_images(data, size=size, channels=channels,
                                         count=cfg.calib_samples, seed=cfg.seed,
                                         normalization=norm, fit=fit, trained_on=trained_on)
        if cfg.verify:  # the parity images, read once: compared here, checked against below
            # (--fallback: twice as many, half to choose the float ops, half to check the file)
            count = cfg.verify_samples * (2 if cfg.fallback else 1)
            samples = _parity_samples(replace(cfg, verify_samples=count), data, trained_on, size,
                                      channels, num_classes, norm)
            unlike = _unlike(calibration, samples[0])
            if unlike:
                print(f"warning: --calib {data}: {unlike}", file=sys.stderr)

    selection = None
    if to == "tflite":
        if cfg.fallback:
            selection, samples = _select(cfg, to, loaded, model, size, calibration, samples)
            raw = selection.model
        else:
            raw = tflite_conv.tflite_bytes(model, size, quant, calibration, cfg.io,
                                           cfg.per_tensor)
    else:
        raw = onnx_conv.onnx_bytes(model, size, opset=cfg.opset, dynamic=cfg.dynamic)
        if cfg.fallback:
            selection, samples = _select(cfg, to, loaded, raw, size, calibration, samples)
            raw = selection.model
        elif quant == "int8":
            raw = onnx_conv.quantize_onnx(raw, calibration, cfg.per_tensor, cfg.calib_method)
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
                "recipe": source_card.get("recipe"), "metrics": source_card.get("metrics")},
        recipe={"stage": "convert", "to": to, "quant": quant, "io": cfg.io,
                "quantization_aware": qat, "per_tensor": cfg.per_tensor,
                **({"float_fallback": selection.to_dict(summary=True)} if selection else {}),
                **({"opset": cfg.opset, "dynamic": cfg.dynamic} if to == "onnx" else {})},
        calibration=None if calibration is None else {
            "data": data, "samples": len(calibration), "seed": cfg.seed,
            "method": cfg.calib_method, "per_tensor": cfg.per_tensor,
            "images": calibration_source(data, trained_on)})

    return finish(out, to, raw, card, loaded, size, cfg, data, trained_on, samples)


def finish(out: Path, to: str, raw: bytes, card: dict, source, size, cfg: ConvertConfig, data,
           trained_on, samples=None) -> ConvertResult:
    """Stamp ``card`` into ``raw``, count its MACs, check its parity against ``source`` (an
    EdgeModel), and write the file and its card; nothing is written when parity fails."""
    from converters import onnx as onnx_conv
    from converters.flatbuffer import rewrite
    from edgeseg.flops import file_cost
    from edgeseg.safety import trust

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
        if cfg.verify:
            parity, where = _parity(source, trial, samples or _parity_samples(
                cfg, data, trained_on, size, card["channels"], card["num_classes"],
                cards.normalization_of(card)), cfg)
            card["parity"] = {**parity.to_dict(), "images": where}
            if not parity.passed:
                message = (f"{out}: parity check failed on {where}: {parity.summary()} (limits: "
                           f"--parity-tolerance, --min-agreement, --max-dice-drop)")
                if not cfg.keep_failed:
                    raise ConversionError(message)
                print(f"warning: {message}; written anyway (--keep-failed), its card says so",
                      file=sys.stderr)
            if parity.warning:
                print(f"warning: {out}: {parity.warning}", file=sys.stderr)
        path = atomic_write_bytes(out, stamped(card))
        cards.write_card(path, card)
        trust(path)  # this process wrote it: later loads here need no child-process probe
    finally:
        trial.unlink(missing_ok=True)
    return ConvertResult(path, card, parity)


def _select(cfg, to, loaded, model, size, calibration, samples):
    """(Selection, parity samples): the selective int8 search on one half of twice the parity
    images, the other half left for the parity check, so the images that chose the float ops
    never score the file."""
    import numpy as np

    from converters.selective import search
    from converters.verify import QUANT_DICE_DROP

    if cfg.io != "float":
        raise ConfigError("--fallback keeps float ops in the graph: it takes --io float")
    if to == "onnx" and cfg.calib_method != "minmax":
        raise ConfigError("--fallback calibrates min/max: drop --calib-method")
    if to == "onnx" and cfg.dynamic:
        raise ConfigError("--fallback measures at a fixed size: drop --dynamic")
    images, masks, where = samples  # twice --verify-samples of them (read in convert)
    num_classes = loaded.num_classes
    if masks is None or len(images) < 4:
        raise ConfigError(f"--fallback measures a Dice budget: it needs labelled images apart "
                          f"from the calibration ones (found {where}): give --verify-data DIR")
    half = len(images) // 2
    budget = QUANT_DICE_DROP if cfg.max_dice_drop is None else cfg.max_dice_drop
    print(f"selective int8: the fewest, cheapest ops in float for a Dice drop <= {budget:g}, "
          f"chosen on {half} of {where}, checked on the other {len(images) - half}",
          file=sys.stderr)
    source_probs = np.concatenate([loaded.predict(images[i:min(i + 8, half)])
                                   for i in range(0, half, 8)])
    selection = search(model, size, calibration, images[:half], masks[:half], source_probs,
                       max_dice_drop=budget, min_agreement=cfg.min_agreement,
                       per_tensor=cfg.per_tensor, num_classes=num_classes, to=to,
                       echo=lambda line: print(line, file=sys.stderr))
    share = selection.float_macs / (selection.macs or 1)
    print(f"  {len(selection.float_ops)} op(s) in float ({share:.1%} of the MACs): "
          f"{', '.join(selection.float_layers) or 'none'}; Dice {selection.dice:.4f} "
          f"(full int8 {selection.dice_int8:.4f}, float {selection.dice_source:.4f}) after "
          f"{selection.trials} trials" + ("" if selection.met else
                                          "; the budget is NOT met even so"), file=sys.stderr)
    return selection, (images[half:], masks[half:],
                       f"{len(images) - half} of {where} (the other {half} chose the float ops)")


def _parity_samples(cfg, data, trained_on, size, channels, num_classes, norm):
    """(images, masks or None, where): the images parity is checked on, never the calibration
    images when anything else is known: --verify-data, else the validation data of what the
    model was trained on (its card), else --calib's own validation split, else --calib's images
    (then ``where`` says so). Random images when there is no data at all."""
    import numpy as np

    from edgeseg.data.source import is_builtin

    source = cfg.verify_data or (trained_on.source if trained_on is not None else None) or data
    if source is None:
        images = np.random.default_rng(cfg.seed).random((cfg.verify_samples, *size, channels),
                                                       np.float32)
        return images, None, "random images (no data: give --verify-data DIR)"
    images, masks = labelled_samples(source, size=size, channels=channels,
                                     num_classes=num_classes, count=cfg.verify_samples,
                                     seed=cfg.seed, normalization=norm, trained_on=trained_on)
    if masks is None and source == data:
        where = (f"the calibration images of {data} themselves (there are no labelled images "
                 f"apart from them: give --verify-data DIR)")
    elif is_builtin(source):
        where = f"{len(images)} held-out {source} images"
    elif trained_on is not None and Path(source).resolve() == Path(trained_on.source).resolve():
        where = f"{len(images)} images of {source}'s validation split"
    else:
        where = f"{len(images)} images of {source}"
    return images, masks, where


def _unlike(calibration, reference) -> str | None:
    """Why calibration images do not look like the data the model is checked on (their pixel
    statistics after normalisation), or None. Uniform or washed-out images calibrate ranges
    that real images overflow."""
    import numpy as np

    if calibration is None or reference is None or not len(reference):
        return None
    c_mean, c_std = float(np.mean(calibration)), float(np.std(calibration))
    r_mean, r_std = float(np.mean(reference)), float(np.std(reference))
    if r_std > 0 and (c_std < 0.25 * r_std or abs(c_mean - r_mean) > 2 * r_std):
        return (f"the calibration images look unlike the model's data (pixel mean {c_mean:.3f}, "
                f"spread {c_std:.3f}; the model's data: {r_mean:.3f}, {r_std:.3f}): their int8 "
                f"ranges may not fit real images")
    return None


def _parity(source, path, samples, cfg):
    """(Parity, where): the converted file against its source, both through EdgeModel.predict
    (probabilities, whatever the outputs are), on ``samples`` from :func:`_parity_samples`."""
    import numpy as np

    from edgeseg import runtime

    images, masks, where = samples
    num_classes = source.num_classes
    converted = runtime.load(path, trusted=True)  # written by this process
    mode = cfg.quant if cfg.quant in FLOAT_MODES else "quantized"
    source_out = np.concatenate([source.predict(images[i:i + 8]) for i in range(0, len(images), 8)])
    parity = check_parity(source_out, converted.predict(images), mode=mode,
                          num_classes=num_classes, masks=masks, tolerance=cfg.tolerance,
                          min_agreement=cfg.min_agreement, max_dice_drop=cfg.max_dice_drop)
    return parity, where


def _split_of(data: str | None, seed: int):
    """A labelled folder given as --calib for a model whose card records no training data: its
    own train/validation split, so calibration (training split) and parity (validation split)
    never use the same images. None for built-in data and image-only folders."""
    from edgeseg.config import DataConfig
    from edgeseg.data import folders
    from edgeseg.data.source import is_builtin

    if data is None or is_builtin(data) or not Path(data).is_dir():
        return None
    try:
        folders.find_samples(data)
    except folders.DataError:
        return None
    return DataConfig(source=data, seed=seed)


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
