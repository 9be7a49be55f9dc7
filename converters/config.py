"""How to convert: :class:`ConvertConfig`, the one definition of every ``edgeseg convert`` option.

Each field that the command line sets carries its option in its metadata (:class:`Option`: the
flag, what it takes, its help); ``edgeseg convert`` builds its options from them, so a field, its
default and its choices are written once. Plain data: importing this imports no TensorFlow.

    >>> ConvertConfig(quant="int8", calib="synthetic-nuclei").verify
    True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

FORMATS = {"tflite": (".tflite",), "onnx": (".onnx",)}
TFLITE_MODES = ("none", "fp16", "dynamic", "int8", "int16x8")
ONNX_MODES = ("none", "fp16", "int8")
QUANT_MODES = {"tflite": TFLITE_MODES, "onnx": ONNX_MODES}
FLOAT_MODES = ("none", "fp16")
IO_TYPES = ("float", "int8", "uint8")
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")


@dataclass(frozen=True)
class Option:
    """A command-line option of a config field. ``takes``: ``"flag"`` (on when given),
    ``"off-flag"`` (the field is False when given), ``"size"`` (N or HxW), a tuple of choices,
    ``int`` or ``float`` (with ``minimum`` / ``maximum``), or ``str``."""

    flag: str
    help: str
    takes: object = str
    minimum: float | None = None
    maximum: float | None = None
    metavar: str | None = None


def _cli(flag: str, help: str, takes: object = str, **more) -> dict:
    return {"option": Option(flag, help, takes, **more)}


@dataclass(frozen=True)
class ConvertConfig:
    """How to convert (every option of ``edgeseg convert``; the help of each is in its field).

    ``calib`` is by default the data the model was trained on, when its card names a built-in
    dataset or a folder; ``trained_on`` (a DataConfig) stands in for a card that records none (a
    user's model in ``edgeseg run``): its training split calibrates and its validation split
    checks parity. ``contract``: I/O-contract keys over the source's card (``normalize``,
    ``output``, ``output_kind``, ...: see :func:`edgeseg.device.card.with_overrides`).
    """

    to: str | None = field(default=None, metadata=_cli(
        "--to", "Target format [from --out's suffix].", tuple(FORMATS)))
    quant: str = field(default="none", metadata=_cli(
        "--quant", "TFLite: none|fp16|dynamic|int8|int16x8; ONNX: none|fp16|int8.",
        tuple(dict.fromkeys(TFLITE_MODES + ONNX_MODES))))
    calib: str | None = field(default=None, metadata=_cli(
        "--calib", "Calibration images for int8/int16x8 (built-in name or folder) [the model's "
                   "training data].", metavar="DATA"))
    calib_samples: int = field(default=100, metadata=_cli(
        "--calib-samples", "Calibration images.", int, minimum=1))
    calib_method: str = field(default="minmax", metadata=_cli(
        "--calib-method", "How int8 ranges are set: min/max (TFLite's only method), or ONNX "
                          "Runtime's entropy / percentile (compare them: edgeseg calib-compare).",
        CALIBRATION_METHODS))
    io: str = field(default="float", metadata=_cli(
        "--io", "TFLite input/output type (int8 models).", IO_TYPES))
    per_tensor: bool = field(default=False, metadata=_cli(
        "--per-tensor", "One weight scale per tensor, not per channel: smaller files (check "
                        "parity).", "flag"))
    input_size: tuple[int, int] | None = field(default=None, metadata=_cli(
        "--input-size", "Fixed input size to convert at, N or HxW (e.g. 144x256) [the size the "
                        "model was trained at, else its own].", "size"))
    opset: int = field(default=17, metadata=_cli("--opset", "ONNX opset.", int, minimum=11))
    dynamic: bool = field(default=False, metadata=_cli(
        "--dynamic", "ONNX: any batch and input size.", "flag"))
    verify: bool = field(default=True, metadata=_cli(
        "--no-verify", "Skip the parity check against the source.", "off-flag"))
    verify_samples: int = field(default=16, metadata=_cli(
        "--verify-samples", "Parity images.", int, minimum=1))
    tolerance: float | None = field(default=None, metadata=_cli(
        "--parity-tolerance", "Float modes: largest |difference| of the probabilities (logits "
                              "after their sigmoid/softmax) [1e-3; fp16 1e-2].", float,
        minimum=0, metavar="X"))
    min_agreement: float | None = field(default=None, metadata=_cli(
        "--min-agreement", "Smallest share of pixels whose class must agree with the source's "
                           "[0.999 for float modes, 0.98 for quantized ones].", float, minimum=0,
        maximum=1, metavar="SHARE"))
    max_dice_drop: float | None = field(default=None, metadata=_cli(
        "--max-dice-drop", "Quantized modes: largest fall of Dice against the source on "
                           "labelled parity images [0.02].", float, minimum=0, metavar="X"))
    verify_data: str | None = field(default=None, metadata=_cli(
        "--verify-data", "Labelled images to check parity on [the model's validation data, "
                         "else --calib's validation split]; never the calibration images when "
                         "it can help.", metavar="DATA"))
    keep_failed: bool = field(default=False, metadata=_cli(
        "--keep-failed", "Write a file that fails its parity check anyway (its card says so).",
        "flag"))
    fallback: bool = field(default=False, metadata=_cli(
        "--fallback", "int8 (TFLite or ONNX): keep the fewest, cheapest layers in float until "
                      "--max-dice-drop and --min-agreement hold (chosen on labelled images apart "
                      "from the parity ones; the card says which and why).", "flag"))
    seed: int = 0
    unsafe: bool = False  # allow Keras models that carry code (Lambda layers)
    custom_objects: dict | None = None  # the user's Keras classes (--custom-objects)
    contract: dict | None = None
    trained_on: object | None = None


@dataclass(frozen=True)
class ConvertResult:
    path: Path
    card: dict
    parity: object | None  # a converters.verify.Parity


def variant_of(source_variant: str | None, quant: str, qat: bool) -> str:
    """``fp32``/``fp16``/``dynamic``/``int8``/``int16x8``, after the source's own name when it
    was optimized (``pruned50-int8``, ``pruned50-qat-int8``; a QAT model's always says ``qat``)."""
    name = "fp32" if quant == "none" else quant
    parts = [source_variant] if source_variant and source_variant != "fp32" else []
    if qat and not any("qat" in part for part in parts):
        parts.append("qat")
    return "-".join([*parts, name])


__all__ = ["CALIBRATION_METHODS", "FLOAT_MODES", "FORMATS", "IO_TYPES", "ONNX_MODES",
           "QUANT_MODES", "TFLITE_MODES", "ConvertConfig", "ConvertResult", "Option",
           "variant_of"]
