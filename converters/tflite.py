"""Keras -> .tflite (LiteRT) at a fixed batch of 1 and a fixed input size.

A fixed shape keeps SHAPE/PACK/STRIDED_SLICE ops (what a dynamic batch dimension adds) out of the
graph, so every op is one a delegate can take.

    >>> from edgeseg.models import create_model
    >>> from converters.tflite import convert_tflite
    >>> convert_tflite(create_model("mobile_unet"), "model.tflite", input_size=256)  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np

from edgeseg._logging import dropping
from edgeseg.errors import ConfigError
from edgeseg.files import atomic_write_bytes

QUANT_MODES = ("none", "fp16", "dynamic", "int8", "int16x8")


def tflite_bytes(model, input_size=None, quant: str = "none",
                 representative: Iterable[np.ndarray] | None = None) -> bytes:
    """Convert a Keras model to a TFLite flatbuffer.

    Args:
        model: a tf_keras model with one NHWC image input.
        input_size: int or (height, width); required when the model takes any size.
        quant: ``none`` (float32), ``fp16`` (float16 weights), ``dynamic`` (int8 weights, float
            activations), ``int8`` (full integer) or ``int16x8`` (int16 activations, int8 weights).
        representative: float32 images (H, W, C) in [0, 1] for ``int8``/``int16x8`` calibration.
    """
    from edgeseg._keras import tf

    if quant not in QUANT_MODES:
        raise ConfigError(f"quant must be one of {', '.join(QUANT_MODES)} (got {quant!r})")
    height, width, channels = _fixed_shape(model, input_size)
    spec = tf.TensorSpec((1, height, width, channels), tf.float32, name="image")
    function = tf.function(lambda image: model(image, training=False))
    concrete = function.get_concrete_function(spec)
    # Without the model as trackable object the converter freezes the graph directly: the same
    # ops, 20x faster than its SavedModel path (TensorFlow logs that this path is deprecated).
    with dropping("absl", "trackable_obj"):
        converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete])
    if quant != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quant == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    elif quant in ("int8", "int16x8"):
        if representative is None:
            raise ConfigError(f"quant={quant} needs a representative dataset (calibration images)")
        samples = [np.asarray(s, np.float32) for s in representative]
        for i, sample in enumerate(samples):
            if sample.shape != (height, width, channels):
                raise ConfigError(f"calibration sample {i} has shape {sample.shape}, the model "
                                  f"takes {(height, width, channels)}")
        converter.representative_dataset = lambda: ([s[None]] for s in samples)
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.TFLITE_BUILTINS_INT8 if quant == "int8" else
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    return converter.convert()


def convert_tflite(model, out, input_size=None, quant: str = "none",
                   representative: Iterable[np.ndarray] | None = None) -> Path:
    """Convert and write atomically to ``out`` (nothing is left behind if conversion fails)."""
    return atomic_write_bytes(out, tflite_bytes(model, input_size, quant, representative))


def _fixed_shape(model, input_size) -> tuple[int, int, int]:
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
