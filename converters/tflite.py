"""Keras -> .tflite (LiteRT) in every quantization mode, at a fixed batch of 1 and a fixed size.

A fixed shape keeps SHAPE/PACK/STRIDED_SLICE ops (what a dynamic batch dimension adds) out of the
graph, so every op is one a delegate can take. Modes:

- ``none``: float32. ``fp16``: float16 weights (dequantized at load on CPUs).
- ``dynamic``: int8 weights, float activations (no calibration data).
- ``int8``: full integer, activations calibrated on representative images; a quantization-aware
  model (``edgeseg optimize --qat``) carries its own ranges and needs none.
- ``int16x8``: int16 activations, int8 weights (calibrated), for accuracy-sensitive models.

    >>> from edgeseg.models import create_model
    >>> tflite = tflite_bytes(create_model("mobile_unet"), input_size=256)  # doctest: +SKIP
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Iterable

import numpy as np

from converters.config import IO_TYPES
from converters.config import TFLITE_MODES as QUANT_MODES
from edgeseg.device.errors import ConfigError
from edgeseg.device.files import atomic_write_bytes
from edgeseg.device.log import dropping, native_chatter_dropped


class ConversionError(ConfigError):
    """The converter or the parity check refused the model; the message says where."""


def tflite_bytes(model, input_size=None, quant: str = "none",
                 representative: Iterable[np.ndarray] | None = None, io: str = "float",
                 per_tensor: bool = False) -> bytes:
    """Convert a Keras model to a TFLite flatbuffer.

    Args:
        model: a model with one NHWC image input and one output: a tf_keras model (plain or
            quantization-aware) or a :class:`edgeseg.keras_files.KerasSource` (any Keras, a
            SavedModel, with its segmentation output chosen).
        input_size: int or (height, width); required when the model takes any size.
        quant: one of ``QUANT_MODES``.
        representative: float32 images (H, W, C) in [0, 1] to calibrate ``int8``/``int16x8``.
        io: ``float`` (the default), or ``int8``/``uint8`` inputs and outputs (``int8`` only).
        per_tensor: one scale per weight tensor instead of one per output channel: each
            per-channel tensor otherwise stores a float32 scale and an int64 zero point per
            channel (and so does its bias), which outweighs a 3x3 depthwise kernel's 9 bytes.
            Smaller files; the parity check tells whether the model keeps its accuracy.
    """

    converter = make_converter(model, input_size, quant, representative, io, per_tensor)
    try:
        with warnings.catch_warnings(), native_chatter_dropped():  # TensorFlow's notes on
            warnings.filterwarnings("ignore", message="Statistics for quantized inputs")  # int8
            return converter.convert()
    except Exception as error:  # the converter's own errors name the op that failed
        lines = [line for line in str(error).splitlines() if "error" in line.lower()] or \
            str(error).splitlines() or [type(error).__name__]
        raise ConversionError(f"{model.name}: TFLite conversion ({quant}) failed: "
                              f"{lines[0].strip()[:300]}") from None


def make_converter(model, input_size=None, quant: str = "none",
                   representative: Iterable[np.ndarray] | None = None, io: str = "float",
                   per_tensor: bool = False):
    """The TFLiteConverter :func:`tflite_bytes` runs, configured (arguments as there): also what
    TFLite's QuantizationDebugger takes (:mod:`converters.quant_error`)."""
    from edgeseg._keras import tf
    from edgeseg.models.saving import is_quantization_aware

    if quant not in QUANT_MODES:
        raise ConfigError(f"--quant must be one of {', '.join(QUANT_MODES)} (got {quant!r})")
    if io not in IO_TYPES:
        raise ConfigError(f"--io must be one of {', '.join(IO_TYPES)} (got {io!r})")
    qat = is_quantization_aware(model)
    if qat and quant != "int8":
        raise ConfigError(f"a quantization-aware model converts to int8 only (got --quant {quant})")
    if io != "float" and quant != "int8":
        raise ConfigError(f"--io {io} needs --quant int8 (a fully integer model)")
    height, width, channels = fixed_shape(model, input_size)
    spec = tf.TensorSpec((1, height, width, channels), tf.float32, name="image")
    function = tf.function(lambda image: model(image, training=False))
    concrete = concrete_function(model, function, spec)
    # Without the model as trackable object the converter freezes the graph directly: the same
    # ops, 20x faster than its SavedModel path (TensorFlow logs that this path is deprecated).
    with dropping("absl", "trackable_obj"):
        converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete])
    if quant != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quant == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    elif quant in ("int8", "int16x8") and not qat:
        samples = _representative(representative, (height, width, channels), quant)
        converter.representative_dataset = lambda: ([s[None]] for s in samples)
        # int16x8 keeps in float the few ops that have no 16x8 kernel (DEPTH_TO_SPACE, the
        # pixel-shuffle head's, among them), as TensorFlow's guide does; inspect shows them
        # as float islands. int8 has kernels for all of edgeseg's ops and must stay integer.
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8] \
            if quant == "int8" else \
            [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8,
             tf.lite.OpsSet.TFLITE_BUILTINS]
    if per_tensor:
        if quant not in ("dynamic", "int8", "int16x8"):
            raise ConfigError(f"--per-tensor applies to quantized weights, not --quant {quant}")
        converter._experimental_disable_per_channel = True  # noqa: SLF001 - the converter's switch
    if io != "float":
        converter.inference_input_type = converter.inference_output_type = getattr(tf, io)
    return converter


def concrete_function(model, function, spec):
    """Trace ``function`` at ``spec``; a size the model cannot take is one clear error."""
    try:
        return function.get_concrete_function(spec)
    except ValueError:  # the decoder's concatenations do not line up
        height, width = spec.shape[1:3]
        raise ConfigError(f"{model.name} cannot run at {height}x{width}: its sides must divide "
                          f"by the model's total downsampling (16 for a depth-4 mobile_unet)") \
            from None


def _representative(samples, shape, quant) -> list[np.ndarray]:
    if samples is None:
        raise ConfigError(f"--quant {quant} needs calibration images (--calib DATA)")
    samples = [np.asarray(s, np.float32) for s in samples]
    if not samples:
        raise ConfigError(f"--quant {quant} needs at least one calibration image")
    for i, sample in enumerate(samples):
        if sample.shape != shape:
            raise ConfigError(f"calibration image {i} has shape {sample.shape}, the model takes "
                              f"{shape}")
        if not np.isfinite(sample).all():
            raise ConfigError(f"calibration image {i} holds NaN or inf values")
    return samples


def convert_tflite(model, out, input_size=None, quant: str = "none",
                   representative: Iterable[np.ndarray] | None = None, io: str = "float",
                   per_tensor: bool = False) -> Path:
    """Convert and write atomically to ``out`` (nothing is left behind if conversion fails).

    The file is compacted (shared quantization vectors, short tensor names; see
    :mod:`converters.flatbuffer`). ``converters.convert`` adds the card and the parity check.
    """
    from converters.flatbuffer import rewrite

    return atomic_write_bytes(out, rewrite(tflite_bytes(model, input_size, quant, representative,
                                                        io, per_tensor)))


def fixed_shape(model, input_size) -> tuple[int, int, int]:
    """(height, width, channels) to convert at: ``input_size``, else the model's own fixed size."""
    _, height, width, channels = model.input_shape
    if input_size is not None:
        size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
        if height is not None and (height, width) != size:
            raise ConfigError(f"{model.name} was built for {height}x{width}, not "
                              f"{size[0]}x{size[1]}")
        height, width = size
    if height is None or width is None:
        raise ConfigError(f"{model.name} takes any input size: give --input-size to convert it")
    return int(height), int(width), int(channels)


def layer_name(tensor: str) -> str:
    """The Keras layer a converted tensor comes from (``model/enc1_pw_relu6/Relu6;...`` ->
    ``enc1_pw_relu6``): the name a user knows."""
    first = tensor.split(";")[0]
    parts = first.split("/")
    return parts[1] if len(parts) > 2 else first


__all__ = ["ConversionError", "IO_TYPES", "QUANT_MODES", "concrete_function", "convert_tflite",
           "layer_name",
           "fixed_shape", "make_converter", "tflite_bytes"]
