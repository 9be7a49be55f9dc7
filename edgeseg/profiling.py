"""Where the time goes: per-op latency of a .tflite (LiteRT) or .onnx (ONNX Runtime) model.

ONNX Runtime has a profiler: the session records every node's kernel time, and
:func:`profile_onnx` reads its trace (the nodes ORT really runs, after its fusions).

LiteRT's Python interpreter exposes no op profiler, so :func:`profile_tflite` times graph prefixes:
it cuts the flatbuffer after each op k into a model of ops 0..k (every tensor that op k's
successors would read made an output, so no work is dead and none is skipped), times all of them
with the same interpreter, thread count and default XNNPACK delegate, round robin, and takes op k's
time as the difference between prefixes k and k-1 within each iteration (median over the runs).
Each op so runs in its real context: inputs hot from the op that produced them, the delegate's
partitioning and the thread pool as in the whole model. (Timing each op cut out alone was tried
first: the fp32 sum came to 1.66x the whole model, CONCATENATION worst, since an isolated op reads
cold inputs.) The differences of one run telescope to the whole model; the report prints the sum of
the medians against the median whole, and small ops read near the noise (a few microseconds).
Everything here needs numpy and the runtime only.

    >>> profile = profile_file("model_fp32.tflite", threads=1)  # doctest: +SKIP
    >>> print(format_profile(profile))  # doctest: +SKIP
"""

from __future__ import annotations

import collections
import copy
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from edgeseg.device.errors import EdgesegError


def profile_file(path, threads: int = 1, runs: int = 30, warmup: int = 3) -> dict:
    """Per-op latency of a .tflite or .onnx file (see the module's notes on method)."""
    path = Path(path)
    if not path.is_file():
        raise EdgesegError(f"{path}: no such model file")
    if runs < 1 or warmup < 0:
        raise EdgesegError(f"--runs must be >= 1 and the warm-up >= 0 (got {runs}, {warmup})")
    from edgeseg.device.untrusted import check_untrusted

    check_untrusted(path)  # native runtimes below: refuse a file that would crash them
    if path.suffix == ".tflite":
        return profile_tflite(path, threads, runs, warmup)
    if path.suffix == ".onnx":
        return profile_onnx(path, threads, runs, warmup)
    raise EdgesegError(f"{path}: --profile times .tflite and .onnx files")


# --- LiteRT: graph prefixes -------------------------------------------------------------------------

def _is_constant(model, tensor) -> bool:
    if not tensor.buffer:
        return False
    data = model.buffers[tensor.buffer].data
    return data is not None and len(data) > 0


def _weight_ops(model, parsed) -> set[int]:
    """Ops that only unpack a constant (DEQUANTIZE of fp16 weights): XNNPACK folds them into the
    weights when it sets the graph up, and cannot run one whose result is a graph output."""
    return {op.index for op in parsed.ops if op.name == "DEQUANTIZE"
            and all(parsed.tensors[t].constant for t in op.inputs if t >= 0)}


def _prefix_ops(parsed, stop: int, weight_ops: set[int]) -> list[int]:
    """Ops 0..``stop``, less the weight-unpacking ones no kept op reads yet."""
    kept = [i for i in range(stop + 1) if i not in weight_ops]
    read = {t for i in kept for t in parsed.ops[i].inputs}
    return sorted([*kept, *(i for i in weight_ops if i <= stop
                            and set(parsed.ops[i].outputs) & read)])


def _prefix_model(model, fb, stop) -> bytes:
    """Ops 0..``stop`` (or the op indices ``stop`` lists) of subgraph 0 as a model: its inputs,
    its constants, and as outputs every tensor it produces that none of its own ops reads (plus
    the original outputs it produces)."""
    import flatbuffers

    graph = model.subgraphs[0]
    ops = graph.operators[: stop + 1] if isinstance(stop, int) else \
        [graph.operators[i] for i in stop]
    consumed, used = set(), []
    for op in ops:
        consumed.update(i for i in op.inputs.tolist() if i >= 0)
        used += [i for i in [*op.inputs.tolist(), *op.outputs.tolist()] if i >= 0]
    used = list(dict.fromkeys([*graph.inputs.tolist(), *used]))
    remap = {old: new for new, old in enumerate(used)}
    one = fb.ModelT()
    one.version, one.operatorCodes = model.version, model.operatorCodes
    one.buffers = [fb.BufferT()]
    tensors = []
    for old in used:
        tensor = copy.copy(graph.tensors[old])
        if _is_constant(model, tensor):
            one.buffers.append(model.buffers[tensor.buffer])
            tensor.buffer = len(one.buffers) - 1
        else:
            tensor.buffer = 0
        tensors.append(tensor)
    operators = []
    for op in ops:
        op = copy.copy(op)
        op.inputs = np.array([remap[i] if i >= 0 else -1 for i in op.inputs], np.int32)
        op.outputs = np.array([remap[i] for i in op.outputs], np.int32)
        operators.append(op)
    outputs = [i for i in dict.fromkeys(t for op in ops for t in op.outputs.tolist())
               if i not in consumed or i in graph.outputs.tolist()]
    sub = fb.SubGraphT()
    sub.tensors, sub.operators, sub.name = tensors, operators, b"prefix"
    sub.inputs = np.array([remap[i] for i in graph.inputs.tolist()], np.int32)
    sub.outputs = np.array([remap[i] for i in outputs], np.int32)
    one.subgraphs = [sub]
    builder = flatbuffers.Builder(1024)
    builder.Finish(one.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _feed(interpreter, rng) -> None:
    for detail in interpreter.get_input_details():
        dtype, shape = np.dtype(detail["dtype"]), detail["shape"]
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            value = rng.integers(max(info.min, -128), min(info.max, 127) + 1, shape).astype(dtype)
        else:
            value = rng.random(shape).astype(dtype)
        interpreter.set_tensor(detail["index"], value)


def profile_tflite(path, threads: int = 1, runs: int = 50, warmup: int = 3) -> dict:
    """Per-op latency of a .tflite file by differences of graph prefixes timed round robin (LiteRT,
    default XNNPACK delegate, ``threads`` threads); see the module's notes."""
    from edgeseg.device.flops import tflite_cost
    from edgeseg.device.formats.tflite import read_tflite, schema
    from edgeseg.device.runtime import tflite_interpreter_class

    path = Path(path)
    parsed = read_tflite(path)  # verifies the file: a clear error instead of a crash
    fb = schema()
    model = fb.ModelT.InitFromPackedBuf(bytearray(path.read_bytes()), 0)
    if len(model.subgraphs) != 1:
        raise EdgesegError(f"{path}: profiling reads single-subgraph models "
                           f"({len(model.subgraphs)} subgraphs)")
    interpreter_class, runtime = tflite_interpreter_class()
    rng = np.random.default_rng(0)
    weight_ops = _weight_ops(model, parsed)
    prefixes = []
    for op in parsed.ops:
        kept = _prefix_ops(parsed, op.index, weight_ops)
        if not kept:  # only weights unpacked so far: nothing runs yet
            prefixes.append(None)
            continue
        try:
            interpreter = interpreter_class(model_content=_prefix_model(model, fb, kept),
                                            num_threads=threads)
            interpreter.allocate_tensors()
            _feed(interpreter, rng)
            interpreter.invoke()
        except (ValueError, RuntimeError) as error:
            raise EdgesegError(f"{path}: the graph cut after op {op.index} ({op.name}) does not "
                               f"run ({str(error).splitlines()[0]})") from None
        prefixes.append(interpreter)
    times = np.zeros((runs, len(prefixes)))
    for iteration in range(warmup + runs):
        for column, interpreter in enumerate(prefixes):
            if interpreter is None:
                continue
            t0 = time.perf_counter()
            interpreter.invoke()
            if iteration >= warmup:
                times[iteration - warmup, column] = time.perf_counter() - t0
    median, measured = prefix_op_times(times)
    cost = tflite_cost(parsed)
    rows = [{"index": op.index, "op": op.name, "name": layer.name, "shape": list(layer.output_shape),
             "macs": layer.macs, "ms": float(ms), "ms_measured": float(raw)}
            for op, layer, ms, raw in zip(parsed.ops, cost.layers, median, measured)]
    summary = _summary(path, runtime, threads, runs, float(np.median(times[:, -1]) * 1e3), rows,
                       "differences of graph prefixes (ops 0..k vs 0..k-1) timed round robin in "
                       "the same interpreter, threads and XNNPACK delegate; medians")
    below = [r for r in rows if r["ms_measured"] < 0]
    summary["below_zero"] = {"ops": len(below),
                             "ms": float(-sum(r["ms_measured"] for r in below))}
    return summary


def prefix_op_times(times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-op milliseconds from prefix timings (``times[run, k]``: seconds of ops 0..k): the
    median over runs of prefix k minus prefix k-1, clipped at zero, and the unclipped medians.

    A prefix can run faster than the one before it: cutting the graph after a cheap op changes
    which tensors are outputs, and so what the delegate fuses or copies out. That difference is
    no time the op takes, so it is reported as 0 (and counted; see ``below_zero``)."""
    steps = np.diff(times, axis=1, prepend=0.0)
    measured = np.median(steps, axis=0) * 1e3
    return np.maximum(measured, 0.0), measured


# --- ONNX Runtime: its own profiler -------------------------------------------------------------

def profile_onnx(path, threads: int = 1, runs: int = 30, warmup: int = 3) -> dict:
    """Per-node latency of an .onnx file from ONNX Runtime's profiler (the nodes after fusion)."""
    from edgeseg.device.runtime import onnx_session, onnx_session_options

    path = Path(path)
    with tempfile.TemporaryDirectory(prefix="edgeseg-profile-") as folder:
        options = onnx_session_options(threads)
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(folder) / "ort")
        session = onnx_session(path, options)
        feed = {}
        rng = np.random.default_rng(0)
        for arg in session.get_inputs():
            shape = [d if isinstance(d, int) else 1 for d in arg.shape]
            feed[arg.name] = rng.random(shape).astype(np.float32)
        for _ in range(warmup + runs):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    per_node: dict[str, list[float]] = collections.defaultdict(list)
    op_of, order, whole = {}, [], []
    for event in events:
        if event.get("cat") == "Session" and event.get("name") == "model_run":
            whole.append(event["dur"] / 1e3)
        if event.get("cat") != "Node" or not event.get("name", "").endswith("_kernel_time"):
            continue
        node = event["name"][: -len("_kernel_time")]
        if node not in op_of:
            op_of[node] = event.get("args", {}).get("op_name", "?")
            order.append(node)
        per_node[node].append(event["dur"] / 1e3)
    rows = [{"index": i, "op": op_of[node], "name": node, "shape": None, "macs": None,
             "ms": float(np.median(per_node[node][warmup:] or per_node[node]))}
            for i, node in enumerate(order)]
    return _summary(path, "onnxruntime", threads, runs, float(np.median(whole[warmup:] or whole)),
                    rows, "ONNX Runtime's profiler (enable_profiling): kernel time of each node "
                          "ORT runs, after its graph fusions; medians over the runs")


# --- summary and text ---------------------------------------------------------------------------

def _summary(path, runtime, threads, runs, whole_ms, rows, method) -> dict:
    total = sum(r["ms"] for r in rows)
    groups: dict[str, dict] = {}
    for row in rows:
        group = groups.setdefault(row["op"], {"op": row["op"], "count": 0, "ms": 0.0, "macs": 0})
        group["count"] += 1
        group["ms"] += row["ms"]
        group["macs"] += row["macs"] or 0
    by_type = sorted(groups.values(), key=lambda g: -g["ms"])
    for group in by_type:
        group["share"] = group["ms"] / total if total else 0.0
        group["gmacs_per_s"] = group["macs"] / group["ms"] / 1e6 if group["macs"] and group["ms"] \
            else None
        group["macs"] = group["macs"] or None
    return {"file": str(path), "runtime": runtime, "threads": threads, "runs": runs,
            "method": method, "whole_ms": whole_ms, "sum_ms": total,
            "sum_over_whole": total / whole_ms if whole_ms else None,
            "by_type": by_type, "ops": rows}


def format_profile(profile: dict, top: int = 10) -> str:
    """The per-op-type table and the ``top`` slowest ops, as text."""
    lines = [f"{profile['file']}: {profile['runtime']}, {profile['threads']} thread(s), "
             f"median of {profile['runs']} runs",
             f"  whole model {profile['whole_ms']:.3f} ms; sum of the ops {profile['sum_ms']:.3f} ms "
             f"({profile['sum_over_whole']:.2f}x the whole)",
             f"  method: {profile['method']}"]
    below = profile.get("below_zero") or {}
    if below.get("ops"):
        lines.append(f"  {below['ops']} op(s) timed below zero (prefix k faster than k-1 by "
                     f"{below['ms']:.3f} ms in all: the cut changed what the delegate fuses), "
                     f"shown as 0")
    lines += ["",
             f"  {'op type':<26}{'count':>6}{'ms':>9}{'share':>8}{'GMACs':>9}{'GMAC/s':>9}"]
    for g in profile["by_type"]:
        macs = f"{g['macs'] / 1e9:.3f}" if g["macs"] else "-"
        rate = f"{g['gmacs_per_s']:.1f}" if g["gmacs_per_s"] else "-"
        lines.append(f"  {g['op']:<26}{g['count']:>6}{g['ms']:>9.3f}{g['share']:>8.1%}"
                     f"{macs:>9}{rate:>9}")
    slowest = sorted(profile["ops"], key=lambda r: -r["ms"])[:top]
    lines += ["", f"  slowest {len(slowest)} ops:"]
    for r in slowest:
        shape = "x".join(map(str, r["shape"])) if r["shape"] else ""
        lines.append(f"  {r['ms']:>8.3f} ms  {r['op']:<22} {shape:<16} {r['name'][:60]}")
    return "\n".join(lines)


__all__ = ["format_profile", "profile_file", "profile_onnx", "profile_tflite"]
