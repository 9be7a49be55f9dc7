"""MACs and parameters, counted analytically per layer.

Conventions (the same for every model, so ratios between models are exact):

- **MACs** are multiply-accumulates: convolutions of every kind (a transposed convolution scatters a
  ``kh x kw x C_out`` patch for each input pixel), dense layers, and bilinear resizing (4 per output
  value). TensorFlow's profiler reports these as FLOPs = 2 x MACs.
- **ops** are the other arithmetic, kept apart because deployment removes or hides most of it:
  BatchNorm (a multiply and an add per value, folded into the preceding convolution by every
  converter), bias adds, activations, residual adds, pooling comparisons, max-unpooling selects.
  Concatenation, padding and nearest resizing move data and count 0.

This module imports nothing heavy: it reads a model's layers by class name. A model built for any
input size is counted at the ``input_size`` you give (it is rebuilt at that size, weights not needed).

    >>> from edgeseg.models import create_model
    >>> cost = keras_cost(create_model("mobile_unet"), input_size=256)
    >>> print(f"{cost.macs / 1e9:.2f} GMACs, {cost.params / 1e6:.2f} M params")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import math
import tempfile
from dataclasses import dataclass


@dataclass(frozen=True)
class LayerCost:
    """One layer's cost at a fixed input size (batch 1)."""

    name: str
    kind: str
    output_shape: tuple[int, ...]
    params: int
    macs: int
    ops: int


@dataclass(frozen=True)
class ModelCost:
    """Per-layer costs of a model at one input size."""

    input_shape: tuple[int, ...]
    layers: tuple[LayerCost, ...]

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    @property
    def params(self) -> int:
        return sum(layer.params for layer in self.layers)

    @property
    def ops(self) -> int:
        return sum(layer.ops for layer in self.layers)

    def by_kind(self) -> dict[str, int]:
        """MACs per layer type, largest first."""
        totals: dict[str, int] = {}
        for layer in self.layers:
            totals[layer.kind] = totals.get(layer.kind, 0) + layer.macs
        return dict(sorted(totals.items(), key=lambda item: -item[1]))

    def table(self, top: int | None = None) -> str:
        """A fixed-width per-layer table (all layers, or the ``top`` by MACs) with a total line."""
        rows = [layer for layer in self.layers if layer.macs or layer.params or layer.ops]
        if top is not None:
            rows = sorted(rows, key=lambda layer: -layer.macs)[:top]
        total = self.macs or 1
        lines = [f"{'layer':<32} {'type':<18} {'output':<16} {'params':>10} {'MACs':>13} {'%':>6}"]
        for layer in rows:
            shape = "x".join(str(d) for d in layer.output_shape[1:])
            lines.append(f"{layer.name:<32} {layer.kind:<18} {shape:<16} {layer.params:>10,} "
                         f"{layer.macs:>13,} {100 * layer.macs / total:>6.2f}")
        lines.append(f"{'total':<32} {'':<18} {'':<16} {self.params:>10,} {self.macs:>13,} "
                     f"{100.0:>6.2f}")
        return "\n".join(lines)


def keras_cost(model, input_size=None) -> ModelCost:
    """Count a Keras model's MACs, ops and params per layer at batch 1.

    Args:
        model: a functional tf_keras model (any zoo model).
        input_size: int or (height, width); needed when the model takes any size, optional otherwise.

    Raises:
        ValueError: the model takes any size and no ``input_size`` was given.
    """
    model = _at_fixed_size(model, input_size)
    costs = tuple(_layer_cost(layer) for layer in model.layers)
    return ModelCost(input_shape=(1, *model.input_shape[1:]), layers=costs)


def _at_fixed_size(model, input_size):
    shape = model.input_shape
    size = (input_size, input_size) if isinstance(input_size, int) else input_size
    if size is None:
        if None in shape[1:3]:
            raise ValueError(f"{model.name} takes any input size: give input_size to count its MACs")
        return model
    if tuple(shape[1:3]) == tuple(size):
        return model
    config = model.get_config()
    for layer in config["layers"]:
        if layer["class_name"] == "InputLayer":
            layer["config"]["batch_input_shape"] = (1, *size, shape[-1])
    return model.__class__.from_config(config)


def _shape(value) -> tuple[int, ...]:
    if isinstance(value, list):  # an InputLayer reports [shape]
        value = value[0]
    return tuple(1 if d is None else int(d) for d in value)


def _layer_cost(layer) -> LayerCost:
    kind = type(layer).__name__
    out = _shape(layer.output_shape)
    inputs = layer.input_shape if isinstance(layer.input_shape, list) else [layer.input_shape]
    inp = _shape(inputs[0])
    n_out = math.prod(out[1:])
    macs = ops = 0
    config = layer.get_config()
    kh, kw = config.get("kernel_size", (1, 1)) if "kernel_size" in config else (1, 1)
    bias = n_out if config.get("use_bias") else 0

    if kind == "Conv2D":
        macs = n_out * kh * kw * inp[-1] // config.get("groups", 1)
        ops = bias
    elif kind == "DepthwiseConv2D":
        macs = n_out * kh * kw
        ops = bias
    elif kind == "SeparableConv2D":
        depthwise_out = math.prod(out[1:-1]) * inp[-1] * config["depth_multiplier"]
        macs = depthwise_out * kh * kw + depthwise_out * out[-1]
        ops = bias
    elif kind == "Conv2DTranspose":
        macs = math.prod(inp[1:]) * kh * kw * out[-1]
        ops = bias
    elif kind == "Dense":
        macs = n_out * inp[-1]
        ops = bias
    elif kind == "UpSampling2D":
        macs = 4 * n_out if config.get("interpolation") == "bilinear" else 0
    elif kind == "BatchNormalization":
        ops = 2 * n_out
    elif kind in ("Activation", "ReLU", "Softmax", "LeakyReLU", "PReLU", "HardSigmoid",
                  "HardSwish"):
        ops = n_out
    elif kind in ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"):
        ops = n_out * (len(inputs) - 1)
    elif kind in ("MaxPooling2D", "AveragePooling2D"):
        ph, pw = config["pool_size"]
        ops = n_out * ph * pw
    elif kind in ("GlobalAveragePooling2D", "GlobalMaxPooling2D"):
        ops = math.prod(inp[1:])
    elif kind == "MaxUnpool2D":
        ops = 2 * n_out  # a comparison and a select per output value
    return LayerCost(name=layer.name, kind=kind, output_shape=out, params=int(layer.count_params()),
                     macs=int(macs), ops=int(ops))




# --- counting from converted files (no Keras, no TensorFlow) -------------------------------------

def _file_cost(rows, input_shape) -> ModelCost:
    return ModelCost(input_shape=tuple(input_shape), layers=tuple(rows))


def tflite_cost(source) -> ModelCost:
    """MACs and params of a .tflite file, per op, by the same conventions as :func:`keras_cost`.

    Params are the elements of the weight and bias tensors of the convolution and dense ops (BatchNorm
    is folded into them by the converter, so a Keras model's count is a little larger). Weights that
    a DEQUANTIZE op expands (fp16 models) are counted at their shape.
    """
    from edgeseg.device.formats.tflite import read_tflite

    f = source if hasattr(source, "ops") else read_tflite(source)
    t = f.tensors
    rows = []
    for op in f.ops:
        out = t[op.outputs[0]].shape if op.outputs else ()
        n_out = math.prod(out) if out else 0
        macs = params = 0
        if op.name in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            weights = t[op.inputs[1]].shape
            bias = t[op.inputs[2]].size if len(op.inputs) > 2 and op.inputs[2] >= 0 else 0
            params = math.prod(weights) + bias
            if op.name == "CONV_2D":  # weights (out, kh, kw, in / groups)
                macs = n_out * math.prod(weights[1:])
            elif op.name == "DEPTHWISE_CONV_2D":  # weights (1, kh, kw, out)
                macs = n_out * weights[1] * weights[2]
            else:  # weights (out, in)
                macs = n_out * weights[-1]
        elif op.name == "TRANSPOSE_CONV":  # inputs: output shape, weights (out, kh, kw, in), input
            weights, source_shape = t[op.inputs[1]].shape, t[op.inputs[2]].shape
            bias = t[op.inputs[3]].size if len(op.inputs) > 3 and op.inputs[3] >= 0 else 0
            params = math.prod(weights) + bias
            macs = math.prod(source_shape) * weights[0] * weights[1] * weights[2]
        elif op.name == "RESIZE_BILINEAR":
            macs = 4 * n_out
        rows.append(LayerCost(name=t[op.outputs[0]].name if op.outputs else op.name, kind=op.name,
                              output_shape=tuple(out), params=int(params), macs=int(macs), ops=0))
    return _file_cost(rows, f.inputs[0].shape if f.inputs else ())


def onnx_cost(source, input_size=None, layout: str | None = None) -> ModelCost:
    """MACs and params of an .onnx file, per node, by the same conventions as :func:`keras_cost`.

    Shapes come from ONNX shape inference; a model with a dynamic input is counted at
    ``input_size`` (int or (height, width)) with batch 1, in its ``layout`` (NHWC or NCHW;
    by default detected as :func:`edgeseg.device.card.detect_layout` does). QDQ weights are counted
    at their shape.
    """
    import onnx
    from onnx import shape_inference

    from edgeseg.device.card import detect_layout

    proto = source if hasattr(source, "graph") else onnx.load(str(source))
    proto = onnx.ModelProto.FromString(proto.SerializeToString())  # a copy to fix the input in
    graph_input = proto.graph.input[0]
    dims = graph_input.type.tensor_type.shape.dim
    given = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    if None in given:  # a dynamic batch is counted at 1; dynamic sides at input_size
        nchw = (layout or detect_layout(given)) == "NCHW"
        channels = (given[1] if nchw else given[-1]) or 3
        if input_size is not None:
            height, width = (input_size, input_size) if isinstance(input_size, int) else \
                input_size
        else:
            height, width = given[2:4] if nchw else given[1:3]
            if height is None or width is None:
                raise ValueError("the ONNX model takes any input size: give input_size to count "
                                 "MACs")
        fixed = (1, channels, height, width) if nchw else (1, height, width, channels)
        for dim, value in zip(dims, fixed):
            dim.Clear()
            dim.dim_value = value
    inferred, how = _infer_shapes(proto, shape_inference)
    shapes = {}
    for value in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        shapes[value.name] = tuple(d.dim_value for d in value.type.tensor_type.shape.dim)
    initializers = {init.name: tuple(init.dims) for init in inferred.graph.initializer}
    shapes.update(initializers)
    producer = {out: node for node in inferred.graph.node for out in node.output}

    def weight_shape(name):  # through DequantizeLinear (QDQ) to the initializer
        node = producer.get(name)
        if node is not None and node.op_type == "DequantizeLinear":
            return initializers.get(node.input[0], shapes.get(name, ()))
        return initializers.get(name, shapes.get(name, ()))

    rows = []
    for node in inferred.graph.node:
        out = shapes.get(node.output[0], ()) if node.output else ()
        n_out = math.prod(out) if out else 0
        macs = params = 0
        if node.op_type in ("Conv", "ConvTranspose", "Gemm", "MatMul"):
            if not out or 0 in out:  # a size shape inference could not follow: never a guess
                raise ValueError(f"the output shape of {node.op_type} {node.name or node.output[0]} "
                                 f"cannot be inferred ({how}): MACs unknown")
            w = weight_shape(node.input[1])
            bias = math.prod(weight_shape(node.input[2])) if len(node.input) > 2 and \
                node.input[2] else 0
            params = (math.prod(w) if w else 0) + bias
            if node.op_type == "Conv":  # W (out, in / groups, kh, kw)
                macs = n_out * math.prod(w[1:])
            elif node.op_type == "ConvTranspose":  # W (in, out / groups, kh, kw)
                macs = math.prod(shapes.get(node.input[0], ())) * math.prod(w[1:])
            elif w:
                macs = n_out * w[0]
        elif node.op_type == "Resize" and any(
                a.name == "mode" and a.s == b"linear" for a in node.attribute):
            macs = 4 * n_out
        rows.append(LayerCost(name=node.name or node.output[0], kind=node.op_type,
                              output_shape=tuple(out), params=int(params), macs=int(macs), ops=0))
    return _file_cost(rows, shapes.get(graph_input.name, ()))


def _infer_shapes(proto, shape_inference):
    """(the graph with shapes, how they were inferred, in words): ONNX Runtime's symbolic
    inference where it can run (it follows the computed sizes of Resize and Reshape that tf2onnx
    and PyTorch's exporter write), else ONNX's own."""
    try:
        from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference
    except ImportError as error:  # onnxruntime without sympy, or no onnxruntime
        return shape_inference.infer_shapes(proto), (
            f"ONNX's shape inference; ONNX Runtime's symbolic one, which follows computed sizes, "
            f"needs {error.name or 'onnxruntime'}: pip install {error.name or 'onnxruntime'}")
    try:
        # it writes scratch files (sym_shape_infer_temp.onnx) into the working folder on some
        # graphs: it runs in a temporary one, never the user's
        with tempfile.TemporaryDirectory(prefix="edgeseg-shapes-") as scratch, \
                contextlib.chdir(scratch):
            return SymbolicShapeInference.infer_shapes(proto, auto_merge=True), \
                "ONNX Runtime's symbolic shape inference"
    except Exception as error:  # noqa: BLE001 - a graph it does not follow
        reason = str(error).splitlines()[0][:120] if str(error) else type(error).__name__
        return shape_inference.infer_shapes(proto), (
            f"ONNX's shape inference; ONNX Runtime's symbolic one failed: {reason}")


def file_cost(path, input_size=None) -> ModelCost:
    """:func:`tflite_cost` or :func:`onnx_cost` by the file's suffix."""
    suffix = str(path).lower().rsplit(".", 1)[-1]
    if suffix == "tflite":
        return tflite_cost(path)
    if suffix == "onnx":
        return onnx_cost(path, input_size)
    raise ValueError(f"{path}: MACs are read from .tflite and .onnx files")


__all__ = ["LayerCost", "ModelCost", "file_cost", "keras_cost", "onnx_cost", "tflite_cost"]
