"""What a converted model holds: ops, types, quantization, float islands, MACs, where the bytes go.

Reads the file itself (no Keras, no TensorFlow); for a .tflite it also asks LiteRT which ops its
XNNPACK delegate takes. ``edgeseg inspect`` prints :func:`format_report` of :func:`inspect_file`.

    >>> report = inspect_file("model_int8.tflite")  # doctest: +SKIP
    >>> report["float_islands"], report["xnnpack"]["not_delegated"]  # doctest: +SKIP
"""

from __future__ import annotations

import collections
from pathlib import Path

from edgeseg.device.errors import EdgesegError

DYNAMIC_SHAPE_OPS = {"SHAPE", "PACK", "STRIDED_SLICE", "SLICE", "GATHER", "RESHAPE_DYNAMIC"}
_BOUNDARY_OPS = {"QUANTIZE", "DEQUANTIZE"}
_ONNX_QDQ = {"QuantizeLinear", "DequantizeLinear"}
_ONNX_DATA_MOVES = {"Transpose", "Reshape", "Shape", "Gather", "Unsqueeze", "Squeeze", "Concat",
                    "Identity", "Cast", "Slice", "Constant", "Flatten"}


def inspect_file(path, input_size=None) -> dict:
    """A JSON-ready report of a .tflite or .onnx file."""
    path = Path(path)
    if not path.exists():
        raise EdgesegError(f"{path}: no such file")
    if path.suffix == ".tflite":
        return _inspect_tflite(path)
    if path.suffix == ".onnx":
        return _inspect_onnx(path, input_size)
    raise EdgesegError(f"{path}: inspect reads .tflite and .onnx files")


def _io(tensor) -> dict:
    return {"name": tensor.name, "shape": list(tensor.shape_signature), "dtype": tensor.dtype,
            "scale": tensor.scales[0] if len(tensor.scales) == 1 else None,
            "zero_point": tensor.zero_points[0] if len(tensor.zero_points) == 1 else None}


def _inspect_tflite(path: Path) -> dict:
    from edgeseg.device.flops import tflite_cost
    from edgeseg.device.formats.tflite import read_card, read_tflite

    f = read_tflite(path)
    tensors = f.tensors
    integer = any(t.dtype in ("int8", "uint8", "int16") and not t.constant for t in tensors)
    islands = []
    if integer:  # ops that compute in float inside an integer graph
        for op in f.ops:
            if op.name in _BOUNDARY_OPS:
                continue
            floats = [tensors[i].name for i in op.outputs if tensors[i].dtype == "float32"]
            if floats:
                islands.append({"op": op.name, "index": op.index, "outputs": floats})
    dynamic = [op.name for op in f.ops if op.name in DYNAMIC_SHAPE_OPS]
    dynamic += [f"tensor {t.name} {list(t.shape_signature)}" for t in tensors
                if -1 in t.shape_signature]
    weights = [t for t in tensors if t.constant and t.quantized]
    per_channel = sum(1 for t in weights if len(t.scales) > 1)
    cost = tflite_cost(f)
    return {
        "file": str(path), "format": "tflite", "size_bytes": f.size_bytes,
        "ops": f.op_counts(), "op_total": len(f.ops),
        "inputs": [_io(t) for t in f.inputs], "outputs": [_io(t) for t in f.outputs],
        "activation_types": dict(collections.Counter(
            t.dtype for t in tensors if not t.constant and t.index not in f.input_indices)),
        "weight_types": dict(collections.Counter(t.dtype for t in tensors if t.constant)),
        "quantized_weights": {"tensors": len(weights), "per_channel": per_channel,
                              "per_tensor": len(weights) - per_channel},
        "float_islands": islands, "dynamic_shape": dynamic,
        "macs": cost.macs, "params": cost.params, "bytes": f.bytes_by_kind(),
        "xnnpack": _xnnpack_coverage(path, f), "card": read_card(f),
    }


def _xnnpack_coverage(path: Path, f) -> dict:
    """Which ops LiteRT's default XNNPACK delegate takes: the ops inside its partitions."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # pragma: no cover - tflite_runtime boards
        return {"available": False}
    from edgeseg.device.runtime import delegated_ops
    from edgeseg.device.untrusted import check_untrusted

    check_untrusted(path)  # the structure was read above; now make sure LiteRT survives it
    from edgeseg.device.log import native_chatter_dropped

    try:
        with native_chatter_dropped():  # LiteRT's delegate note
            interpreter = Interpreter(model_path=str(path))
            interpreter.allocate_tensors()
        coverage = delegated_ops(interpreter, f)
    except (ValueError, RuntimeError) as error:
        return {"available": False, "error": str(error).splitlines()[0]}
    delegated = coverage["delegated"]
    rest = collections.Counter(op.name for op in f.ops if op.index not in delegated)
    return {"available": True, "partitions": coverage["partitions"],
            "delegated_ops": len(delegated), "not_delegated": dict(rest)}


def _inspect_onnx(path: Path, input_size) -> dict:
    import onnx

    from edgeseg.device.card import (
        EMBEDDED_KEY,
        input_layout_of,
        parse_embedded,
        read_card,
        size_of,
    )
    from edgeseg.device.flops import onnx_cost

    try:
        proto = onnx.load(str(path))
        onnx.checker.check_model(proto)
    except Exception as error:  # onnx raises DecodeError, ValidationError, ...
        raise EdgesegError(f"{path}: not a valid ONNX model ({str(error).splitlines()[0][:200]})") \
            from None
    graph = proto.graph
    meta = {p.key: p.value for p in proto.metadata_props}
    card = parse_embedded(meta.get(EMBEDDED_KEY), path) or read_card(path)
    size = input_size or size_of(card)
    producer = {out: node for node in graph.node for out in node.output}
    initializers = {init.name for init in graph.initializer}
    quantized = any(node.op_type in _ONNX_QDQ for node in graph.node)
    islands = []
    if quantized:  # compute ops whose activation input is not dequantized int8
        for node in graph.node:
            if node.op_type in _ONNX_QDQ or node.op_type in _ONNX_DATA_MOVES:
                continue
            activation = next((i for i in node.input if i and i not in initializers), None)
            source = producer.get(activation)
            if source is None or source.op_type != "DequantizeLinear":
                islands.append({"op": node.op_type, "name": node.name})
    types = {1: "float32", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 10: "float16"}

    def io(value):
        shape = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                 for d in value.type.tensor_type.shape.dim]
        return {"name": value.name, "shape": shape,
                "dtype": types.get(value.type.tensor_type.elem_type, "other")}

    inputs = [io(v) for v in graph.input if v.name not in initializers]
    dynamic = [f"input {v['name']} {v['shape']}" for v in inputs
               if any(not isinstance(d, int) or d <= 0 for d in v["shape"])]
    macs_note = None
    try:
        cost = onnx_cost(proto, size, layout=input_layout_of(card))
        macs, params = cost.macs, cost.params
    except ValueError as error:
        macs = params = None
        macs_note = ("not counted at a dynamic size: give --input-size (e.g. 256 or 144x256)"
                     if size is None and any(not isinstance(d, int) or d <= 0
                                             for v in inputs for d in v["shape"][1:]) else
                     f"not counted ({str(error).splitlines()[0][:160]})")
    from edgeseg.device.formats.onnx import file_parts

    weight_bytes = sum(len(init.raw_data) or 0 for init in graph.initializer)
    parts = file_parts(path)  # the .onnx and its external data files, if any
    size_bytes = sum(p.stat().st_size for p in parts)
    return {
        "file": str(path), "format": "onnx", "size_bytes": size_bytes,
        "external_data": {p.name: p.stat().st_size for p in parts[1:]},
        "opset": max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")),
                     default=None),
        "ops": dict(collections.Counter(n.op_type for n in graph.node).most_common()),
        "op_total": len(graph.node), "inputs": inputs, "outputs": [io(v) for v in graph.output],
        "float_islands": islands, "dynamic_shape": dynamic, "macs": macs, "params": params,
        "macs_note": macs_note,
        "bytes": {"weights": weight_bytes, "graph": max(0, size_bytes - weight_bytes)},
        "card": card,
    }


def format_report(report: dict) -> str:
    """The report as text for a terminal."""
    lines = [f"{report['file']}: {report['format']}, {report['size_bytes']:,} bytes"]
    if report.get("external_data"):
        lines[0] += " with its weights in " + ", ".join(
            f"{name} ({size:,} bytes)" for name, size in report["external_data"].items())
    if report.get("macs") is not None:
        lines.append(f"MACs {report['macs']:,} ({report['macs'] / 1e9:.3f} G), params "
                     f"{report['params']:,}")
    elif report.get("macs_note"):
        lines.append(f"MACs    {report['macs_note']}")
    for kind in ("inputs", "outputs"):
        for t in report[kind]:
            quant = f", scale {t['scale']:.6g} zero point {t['zero_point']}" \
                if t.get("scale") is not None else ""
            lines.append(f"{kind[:-1]:<7} {t['name']} {t['shape']} {t['dtype']}{quant}")
    lines.append("ops     " + ", ".join(f"{name} x{n}" for name, n in report["ops"].items()))
    if "activation_types" in report:
        lines.append("types   activations " + ", ".join(
            f"{k} x{v}" for k, v in report["activation_types"].items()) + "; weights " +
            ", ".join(f"{k} x{v}" for k, v in report["weight_types"].items()))
        q = report["quantized_weights"]
        if q["tensors"]:
            lines.append(f"quant   {q['tensors']} quantized weight tensors: {q['per_channel']} "
                         f"per-channel, {q['per_tensor']} per-tensor")
    islands = report["float_islands"]
    lines.append("float islands: none" if not islands else
                 f"float islands: {len(islands)}: " + ", ".join(
                     f"{i['op']} ({', '.join(i.get('outputs', [i.get('name', '')]))})"
                     for i in islands[:10]))
    lines.append("dynamic shapes: none" if not report["dynamic_shape"] else
                 "dynamic shapes: " + ", ".join(report["dynamic_shape"][:10]))
    lines.append("bytes   " + ", ".join(f"{k} {v:,}" for k, v in report["bytes"].items()))
    x = report.get("xnnpack")
    if x and x.get("available"):
        rest = ", ".join(f"{k} x{v}" for k, v in x["not_delegated"].items()) or "none"
        lines.append(f"XNNPACK {x['delegated_ops']} of {report['op_total']} ops in "
                     f"{x['partitions']} partition(s); not delegated: {rest}")
    card = report.get("card") or {}
    if card:
        parity = card.get("parity") or {}
        lines.append(f"card    variant {card.get('variant')}, input {card.get('input_size')}, "
                     f"classes {card.get('class_names')}"
                     + (f", parity agreement {parity['agreement']:.2%}" if parity else ""))
    return "\n".join(lines)


__all__ = ["format_report", "inspect_file"]
