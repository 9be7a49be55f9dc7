"""Keras -> .onnx with tf2onnx, and int8 QDQ quantization with ONNX Runtime's static quantizer.

    >>> model_bytes = onnx_bytes(keras_model, input_size=256)  # doctest: +SKIP
    >>> int8_bytes = quantize_onnx(model_bytes, calibration_images)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

import numpy as np

from converters.config import CALIBRATION_METHODS
from converters.config import ONNX_MODES as QUANT_MODES
from converters.tflite import ConversionError, concrete_function, fixed_shape
from edgeseg.device.errors import ConfigError

DEFAULT_OPSET = 17


def onnx_bytes(model, input_size=None, *, opset: int = DEFAULT_OPSET, dynamic: bool = False) -> bytes:
    """A Keras model as an ONNX graph (NHWC input ``image``, output ``probs``).

    Args:
        input_size: int or (height, width) for a fixed input of batch 1; ignored if ``dynamic``.
        dynamic: any batch and any size (sides divisible by the model's stride).
    """
    import tf2onnx

    from edgeseg._keras import tf
    from edgeseg.models.saving import is_quantization_aware

    if is_quantization_aware(model):
        raise ConfigError("a quantization-aware model converts to TFLite int8; for ONNX int8 "
                          "convert the float model with --quant int8")
    channels = model.input_shape[-1]
    shape = (None, None, None, channels) if dynamic else (1, *fixed_shape(model, input_size))
    spec = (tf.TensorSpec(shape, tf.float32, name="image"),)
    function = tf.function(lambda image: {"probs": model(image, training=False)})
    concrete_function(model, function, spec[0])  # a size the model cannot take fails clearly here
    try:
        proto, _ = tf2onnx.convert.from_function(function, input_signature=spec, opset=opset)
    except Exception as error:  # tf2onnx raises many kinds; the first line names the op
        raise ConversionError(f"{model.name}: ONNX conversion (opset {opset}) failed: "
                              f"{str(error).splitlines()[0][:300]}") from None
    return proto.SerializeToString()


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over float32 images, one per batch."""

    def __init__(self, name: str, images: np.ndarray):
        self._items = iter([{name: image[None]} for image in images])

    def get_next(self):
        return next(self._items, None)

    def rewind(self):  # pragma: no cover - not used by the MinMax calibrator
        raise NotImplementedError




def quantize_onnx(float_bytes: bytes, images: np.ndarray, per_tensor: bool = False,
                  method: str = "minmax") -> bytes:
    """Static int8 QDQ quantization (per-channel weights unless ``per_tensor``, int8 activations).

    As ONNX Runtime advises, the model is pre-processed first (symbolic shape inference and
    graph optimisation), then calibrated over ``images`` float32, in the model's own input
    layout ((N, H, W, C) for edgeseg's conversions, (N, C, H, W) for a PyTorch export), with
    ORT's ``method``: ``minmax`` (the ranges seen), ``entropy`` (the range that keeps the most
    information, KL divergence) or ``percentile`` (99.999% of the values seen).
    """
    with OnnxQuantizer(float_bytes, images, per_tensor, method) as quantizer:
        return quantizer.quantize()


class OnnxQuantizer:
    """Calibrate an ONNX model once, quantize it as often as asked (ONNX Runtime's calibration
    cache), each time with other nodes left in float (``nodes_to_exclude``); see
    :func:`quantize_onnx` for the arguments. A context manager: its temporary folder goes with it.
    """

    def __init__(self, float_bytes: bytes, images: np.ndarray, per_tensor: bool = False,
                 method: str = "minmax"):
        import onnx
        from onnxruntime.quantization.shape_inference import quant_pre_process

        if images is None or len(images) == 0:
            raise ConfigError("--quant int8 needs calibration images (--calib DATA)")
        if method not in CALIBRATION_METHODS:
            raise ConfigError(f"--calib-method for ONNX must be one of "
                              f"{', '.join(CALIBRATION_METHODS)} (got {method!r})")
        self.per_tensor, self.method = per_tensor, method
        self._images = np.asarray(images, np.float32)
        self._tmp = tempfile.TemporaryDirectory(prefix="edgeseg-onnx-")
        self.folder = Path(self._tmp.name)
        self.prepared = self.folder / "prep.onnx"
        self._cache = self.folder / "calibration.json"
        self._count = 0
        # ORT's symbolic shape inference writes scratch files (sym_shape_infer_temp.onnx,
        # <uuid>.data) into the working folder on dynamic graphs: it runs in the temporary one
        with contextlib.chdir(self.folder):
            source = self.folder / "float.onnx"
            source.write_bytes(float_bytes)
            try:
                quant_pre_process(str(source), str(self.prepared), skip_symbolic_shape=False)
            except Exception:  # symbolic inference fails on some graphs; ONNX's own still works
                quant_pre_process(str(source), str(self.prepared), skip_symbolic_shape=True)
        self._input = onnx.load(str(self.prepared)).graph.input[0].name

    def quantize(self, exclude=()) -> bytes:
        """The int8 QDQ model with the nodes named in ``exclude`` left in float."""
        from onnxruntime.quantization import (
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )

        calibrate = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                     "percentile": CalibrationMethod.Percentile}[self.method]
        self._count += 1
        target = self.folder / f"int8-{self._count}.onnx"
        reader = None if self._cache.exists() else _Reader(self._input, self._images)
        try:
            with contextlib.chdir(self.folder):
                quantize_static(str(self.prepared), str(target), reader,
                                quant_format=QuantFormat.QDQ, per_channel=not self.per_tensor,
                                calibrate_method=calibrate, calibration_cache_path=self._cache,
                                nodes_to_exclude=list(exclude),
                                activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
        except Exception as error:
            raise ConversionError(f"ONNX int8 quantization failed: "
                                  f"{str(error).splitlines()[0][:300]}") from None
        data = target.read_bytes()
        target.unlink()
        return data

    def close(self) -> None:
        self._tmp.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def float16_onnx(float_bytes: bytes) -> bytes:
    """The model with its weights and arithmetic in float16, its inputs and outputs still
    float32 (a Cast at each end), by ONNX Runtime's own float16 tool; the ops it knows to be
    unsafe in float16 (Resize's scales, shape arithmetic, ...) stay float32."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    try:
        proto = convert_float_to_float16(onnx.load_from_string(float_bytes), keep_io_types=True)
    except Exception as error:  # the tool raises many kinds; its first line names the node
        raise ConversionError(f"ONNX float16 conversion failed: "
                              f"{str(error).splitlines()[0][:300]}") from None
    _sort_nodes(proto.graph)  # the tool appends its input Casts after the nodes that read them
    return proto.SerializeToString()


def _sort_nodes(graph) -> None:
    """Order ``graph``'s nodes so each comes after the nodes whose outputs it reads (as ONNX's
    checker requires), keeping the given order otherwise."""
    known = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(i in known for i in n.input)]
        if not ready:  # a cycle or an input nothing makes: left for the checker to name
            ordered.extend(pending)
            break
        for node in ready:
            known.update(node.output)
        ordered.extend(ready)
        taken = {id(n) for n in ready}
        pending = [n for n in pending if id(n) not in taken]
    copies = [type(n).FromString(n.SerializeToString()) for n in ordered]
    del graph.node[:]
    graph.node.extend(copies)


def with_metadata(model_bytes: bytes, entries: dict[str, str]) -> bytes:
    """The model with ``entries`` in its metadata_props (replacing equal keys)."""
    import onnx

    proto = onnx.load_from_string(model_bytes)
    kept = [p for p in proto.metadata_props if p.key not in entries]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    for key, value in entries.items():
        proto.metadata_props.add(key=key, value=value)
    proto.producer_name = "edgeseg"
    return proto.SerializeToString()


__all__ = ["DEFAULT_OPSET", "QUANT_MODES", "OnnxQuantizer", "float16_onnx", "onnx_bytes",
           "quantize_onnx", "with_metadata"]
