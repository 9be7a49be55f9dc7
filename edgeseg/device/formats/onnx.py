"""An .onnx file's weights, read with the ``onnx`` package (host side; devices need only ORT)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

WEIGHT_OPS = {"Conv": 1, "ConvTranspose": 1, "Gemm": 1, "MatMul": 1}


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


__all__ = ["weight_sparsity"]
