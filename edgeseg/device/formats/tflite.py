"""A .tflite flatbuffer as plain Python data: tensors, ops, quantization, metadata (no TensorFlow).

The schema bindings come from ai-edge-litert (``schema_py_generated``), the base runtime; the
``flatbuffers`` package does the reading. Nothing here runs the model.

    >>> f = read_tflite("model_int8.tflite")  # doctest: +SKIP
    >>> f.op_counts()["CONV_2D"], f.inputs[0].dtype, f.metadata.keys()  # doctest: +SKIP
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeseg.device.card import (
    EMBEDDED_KEY as CARD_KEY,  # the metadata entry holding the card
)
from edgeseg.device.errors import EdgesegError


class SchemaUnavailable(EdgesegError):
    """No TFLite schema bindings here (a board with tflite-runtime only): the file can still run,
    but edgeseg cannot read its structure, card or MACs in Python."""


def schema():
    """The TFLite schema bindings: a .py of generated code that ships with ai-edge-litert, and with
    TensorFlow; tflite-runtime has none (:class:`SchemaUnavailable`)."""
    import importlib.util

    try:
        from ai_edge_litert import schema_py_generated
        return schema_py_generated
    except ImportError:
        pass
    try:
        if importlib.util.find_spec("tensorflow") is not None:
            from tensorflow.lite.python import schema_py_generated
            return schema_py_generated
    except ImportError:
        pass
    raise SchemaUnavailable(SCHEMA_MISSING)


SCHEMA_MISSING = ("the TFLite schema is not installed (it ships with ai-edge-litert and "
                  "TensorFlow, not with tflite-runtime)")


@dataclass(frozen=True)
class Tensor:
    index: int
    name: str
    shape: tuple[int, ...]
    shape_signature: tuple[int, ...]  # -1 where the size is dynamic
    dtype: str  # "float32", "int8", ...
    constant: bool  # holds data in the file (weights, biases)
    data_bytes: int
    scales: tuple[float, ...] = ()
    zero_points: tuple[int, ...] = ()
    quantized_dimension: int = 0
    buffer: int = 0  # the buffer that holds its data (several tensors may share one)

    @property
    def quantized(self) -> bool:
        return bool(self.scales)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1


@dataclass(frozen=True)
class Op:
    index: int
    name: str  # builtin operator name (CONV_2D, ...) or the custom code
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


@dataclass(frozen=True)
class TFLiteFile:
    """The main subgraph of a .tflite file."""

    size_bytes: int
    tensors: tuple[Tensor, ...]
    ops: tuple[Op, ...]
    input_indices: tuple[int, ...]
    output_indices: tuple[int, ...]
    metadata: dict[str, bytes] = field(default_factory=dict)
    subgraphs: int = 1

    @property
    def inputs(self) -> list[Tensor]:
        return [self.tensors[i] for i in self.input_indices]

    @property
    def outputs(self) -> list[Tensor]:
        return [self.tensors[i] for i in self.output_indices]

    def op_counts(self) -> dict[str, int]:
        return dict(collections.Counter(op.name for op in self.ops).most_common())

    def producer(self) -> dict[int, Op]:
        """Tensor index -> the op that writes it."""
        return {t: op for op in self.ops for t in op.outputs}

    def bytes_by_kind(self) -> dict[str, int]:
        """Where the file's bytes go: constant data, quantization parameters, names, the rest."""
        data = sum({t.buffer: t.data_bytes for t in self.tensors if t.data_bytes}.values())
        # a vector stored once and shared by several tensors (see converters.flatbuffer) counts once
        quant = sum(4 * len(s) for s in {t.scales for t in self.tensors}) + \
            sum(8 * len(z) for z in {t.zero_points for t in self.tensors})
        names = sum(len(t.name.encode()) for t in self.tensors)
        meta = sum(len(v) for v in self.metadata.values())
        return {"weights": data, "quantization": quant, "names": names, "metadata": meta,
                "graph": max(0, self.size_bytes - data - quant - names - meta)}


def _names(enum_class) -> dict[int, str]:
    return {value: name for name, value in vars(enum_class).items() if not name.startswith("_")}


def read_tflite(source) -> TFLiteFile:
    """Parse a .tflite file (a path or its bytes); a file that is not one raises EdgesegError."""
    if isinstance(source, (bytes, bytearray)):
        data, label = bytes(source), "model"
    else:
        path = Path(source)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise EdgesegError(f"{path}: no such file") from None
        except IsADirectoryError:
            raise EdgesegError(f"{path}: is a folder, not a .tflite file") from None
        label = str(path)
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise EdgesegError(f"{label}: not a TFLite flatbuffer (no TFL3 identifier)")
    try:
        return _parse(data)
    except EdgesegError as error:
        raise type(error)(f"{label}: {error}") from None  # SchemaUnavailable stays itself
    except Exception:  # a truncated or corrupt flatbuffer fails anywhere inside
        raise EdgesegError(f"{label}: corrupt or truncated .tflite file (its tables point past "
                           f"the end of the {len(data):,} bytes or hold impossible values)") \
            from None


def _parse(data: bytes) -> TFLiteFile:
    fb = schema()
    model = fb.Model.GetRootAsModel(data, 0)
    if model.SubgraphsLength() < 1:
        raise EdgesegError("not a model (the .tflite file has no subgraph)")
    op_names, type_names = _names(fb.BuiltinOperator), _names(fb.TensorType)
    codes = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        custom = code.CustomCode()
        codes.append(custom.decode() if builtin == fb.BuiltinOperator.CUSTOM and custom
                     else op_names.get(builtin, f"OP_{builtin}"))
    buffer_sizes = []
    for i in range(model.BuffersLength()):
        buffer = model.Buffers(i)
        buffer_sizes.append(buffer.DataLength() or (buffer.Size() if buffer.Offset() > 1 else 0))
    metadata = {}
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        buffer = model.Buffers(entry.Buffer())
        metadata[entry.Name().decode()] = buffer.DataAsNumpy().tobytes() \
            if buffer.DataLength() else b""

    graph = model.Subgraphs(0)
    tensors = []
    for i in range(graph.TensorsLength()):
        t = graph.Tensors(i)
        q = t.Quantization()
        scales = tuple(float(s) for s in q.ScaleAsNumpy()) if q and q.ScaleLength() else ()
        zeros = tuple(int(z) for z in q.ZeroPointAsNumpy()) if q and q.ZeroPointLength() else ()
        shape = tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else ()
        signature = tuple(int(d) for d in t.ShapeSignatureAsNumpy()) \
            if t.ShapeSignatureLength() else shape
        nbytes = buffer_sizes[t.Buffer()] if t.Buffer() < len(buffer_sizes) else 0
        tensors.append(Tensor(i, (t.Name() or b"").decode(errors="replace"), shape, signature,
                              type_names.get(t.Type(), str(t.Type())).lower(), nbytes > 0, nbytes,
                              scales, zeros, q.QuantizedDimension() if q else 0, t.Buffer()))
    ops = []
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        ins = tuple(int(x) for x in op.InputsAsNumpy()) if op.InputsLength() else ()
        outs = tuple(int(x) for x in op.OutputsAsNumpy()) if op.OutputsLength() else ()
        ops.append(Op(i, codes[op.OpcodeIndex()], ins, outs))
    inputs = tuple(int(x) for x in graph.InputsAsNumpy()) if graph.InputsLength() else ()
    outputs = tuple(int(x) for x in graph.OutputsAsNumpy()) if graph.OutputsLength() else ()
    return TFLiteFile(len(data), tuple(tensors), tuple(ops), inputs, outputs, metadata,
                      model.SubgraphsLength())


def read_card(source) -> dict:
    """The model card in a .tflite file's metadata (a path, bytes or a parsed file), or {}."""
    from edgeseg.device.card import parse_embedded

    f = source if isinstance(source, TFLiteFile) else read_tflite(source)
    label = source if isinstance(source, (str, Path)) else "the .tflite file"
    return parse_embedded(f.metadata.get(CARD_KEY), label)


_NUMPY = {"float32": np.float32, "float16": np.float16, "int8": np.int8, "uint8": np.uint8,
          "int16": np.int16, "int32": np.int32, "int64": np.int64}
WEIGHT_OPS = {"CONV_2D": 1, "DEPTHWISE_CONV_2D": 1, "FULLY_CONNECTED": 1, "TRANSPOSE_CONV": 1}


def weight_sparsity(path) -> float:
    """Share of zero weights in the convolution and dense kernels of a .tflite file.

    A quantized weight counts as zero when it equals its zero point; weights that a DEQUANTIZE op
    expands (fp16 models) are read at the DEQUANTIZE's input.
    """
    data = Path(path).read_bytes()
    f = read_tflite(data)
    model = schema().Model.GetRootAsModel(data, 0)
    graph = model.Subgraphs(0)
    producer = f.producer()
    zeros = total = 0
    for op in f.ops:
        if op.name not in WEIGHT_OPS:
            continue
        index = op.inputs[WEIGHT_OPS[op.name]]
        if producer.get(index) is not None and producer[index].name == "DEQUANTIZE":
            index = producer[index].inputs[0]
        tensor = f.tensors[index]
        buffer = model.Buffers(graph.Tensors(index).Buffer())
        if not buffer.DataLength() or tensor.dtype not in _NUMPY:
            continue
        values = np.frombuffer(buffer.DataAsNumpy().tobytes(), _NUMPY[tensor.dtype])
        zero = np.asarray(tensor.zero_points or (0,))
        if zero.size > 1:  # per-channel zero points along the quantized dimension
            shape = [1] * len(tensor.shape)
            shape[tensor.quantized_dimension] = zero.size
            values = values.reshape(tensor.shape) - zero.reshape(shape)
            zero = np.asarray(0)
        zeros += int((values == zero).sum())
        total += values.size
    return zeros / total if total else 0.0


__all__ = ["CARD_KEY", "Op", "SchemaUnavailable", "TFLiteFile", "Tensor", "read_card",
           "read_tflite", "weight_sparsity"]
