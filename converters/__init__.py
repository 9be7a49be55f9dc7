"""Keras -> .tflite (every quantization mode) and -> .onnx, with parity checks against the source.

``convert`` is the entry point (a model file in, a self-describing, verified file out), its options
a :class:`ConvertConfig`; ``converters.tflite`` and ``converters.onnx`` hold the in-memory
conversions. Importing this package imports neither TensorFlow nor tf2onnx: they load when a
conversion runs.

    >>> from converters import convert
    >>> result = convert("model.keras", "model_int8.tflite", quant="int8")  # doctest: +SKIP
"""

from converters.config import ConvertConfig, ConvertResult
from converters.export import convert

__all__ = ["ConvertConfig", "ConvertResult", "convert"]
