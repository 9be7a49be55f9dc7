"""Keras -> .tflite (every quantization mode) and -> .onnx, with parity checks against the source.

``convert`` is the entry point (a model file in, a self-describing, verified file out);
``converters.tflite`` and ``converters.onnx`` hold the in-memory conversions. Importing this
package imports neither TensorFlow nor tf2onnx: they load when a conversion runs.
"""

from __future__ import annotations


def convert(*args, **kwargs):
    """See :func:`converters.export.convert`."""
    from converters.export import convert as _convert

    return _convert(*args, **kwargs)


def __getattr__(name):
    if name == "ConvertConfig":  # a dataclass of plain fields: importing it imports no TensorFlow
        from converters.export import ConvertConfig

        return ConvertConfig
    raise AttributeError(name)


__all__ = ["ConvertConfig", "convert"]
