"""An .onnx file's weights and the files they are in, read with the ``onnx`` package where it is
installed (a device may have ONNX Runtime only: it reads external data itself)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeseg.device.errors import EdgesegError

# protobuf's limit: a model larger than this cannot be one file (its weights must stay external)
SINGLE_FILE_LIMIT = 2**31 - 1

WEIGHT_OPS = {"Conv": 1, "ConvTranspose": 1, "Gemm": 1, "MatMul": 1}


def _tensors(graph):
    """Every tensor a graph holds: initializers and constants, in subgraphs too."""
    yield from graph.initializer
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            for sub in ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs):
                yield from _tensors(sub)


def external_data_of(model, path) -> list[Path]:
    """The files ``model`` (read from ``path`` without its external data) keeps tensors in, as
    ONNX resolves them: relative to the model's folder (torch's exporter writes ``model.onnx`` and
    ``model.onnx.data``). One EdgesegError when one is missing, or lies outside that folder."""
    import onnx

    folder = Path(path).resolve().parent
    found: list[Path] = []
    for tensor in _tensors(model.graph):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        where = (folder / location).resolve()
        if not location or Path(location).is_absolute() or not where.is_relative_to(folder):
            raise EdgesegError(f"{path}: its weights are said to be in {location!r}, outside the "
                               f"model's folder; refusing it")
        if not where.is_file():
            raise EdgesegError(f"{path}: its weights are in {location}, which is not beside it "
                               f"({where} is missing): keep the data file with the model")
        if where not in found:
            found.append(where)
    return found


def external_data(path) -> list[Path]:
    """:func:`external_data_of` for the file at ``path``; [] without the ``onnx`` package (ONNX
    Runtime reads the data files itself)."""
    try:
        import onnx
    except ImportError:
        return []
    return external_data_of(onnx.load(str(path), load_external_data=False), path)


def file_parts(path) -> list[Path]:
    """The files that make up the model: the .onnx and its external data files."""
    return [Path(path), *external_data(path)]


def whole_bytes(path) -> bytes:
    """The model as one serialised protobuf, its external data put inside (what the quantizer and
    the converters take); one EdgesegError when that would pass protobuf's 2 GB limit."""
    path = Path(path)
    if not external_data(path):
        return path.read_bytes()
    import onnx

    model = onnx.load(str(path))  # the external data, from the model's folder
    if model.ByteSize() > SINGLE_FILE_LIMIT:
        raise EdgesegError(f"{path}: {model.ByteSize() / 2**30:.1f} GB with its weights: over "
                           f"protobuf's 2 GB, so it cannot be processed as one file here")
    return model.SerializeToString()


def weight_sparsity(path) -> float | None:
    """Share of zero weights in the convolution and dense kernels (None without ``onnx``).

    Quantized (QDQ) weights count as zero when they equal their zero point.
    """
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        return None
    graph = onnx.load(str(Path(path))).graph
    initializers = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    zeros = total = 0
    for node in graph.node:
        if node.op_type not in WEIGHT_OPS or len(node.input) <= WEIGHT_OPS[node.op_type]:
            continue
        name = node.input[WEIGHT_OPS[node.op_type]]
        zero = np.asarray(0)
        source = producer.get(name)
        if source is not None and source.op_type == "DequantizeLinear":
            name = source.input[0]
            if len(source.input) > 2 and source.input[2] in initializers:
                zero = initializers[source.input[2]]
                axis = next((a.i for a in source.attribute if a.name == "axis"), 1)
                if zero.size > 1:
                    shape = [1] * initializers[name].ndim
                    shape[axis] = zero.size
                    zero = zero.reshape(shape)
        if name not in initializers:
            continue
        values = initializers[name]
        zeros += int((values == zero).sum())
        total += values.size
    return zeros / total if total else 0.0


__all__ = ["SINGLE_FILE_LIMIT", "external_data", "external_data_of", "file_parts",
           "weight_sparsity", "whole_bytes"]
