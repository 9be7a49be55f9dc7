"""The machine's limit for a convolution network, measured in the runtime that runs it.

A model's achieved rate is read against the best rate the same runtime reaches, at the same thread
count and the same data type, on the op a segmentation network spends its time in: one large 1x1
convolution (a GEMM of 4,096 pixels by 256 by 256, the shape of a MobileNet pointwise layer, where
the kernels tile best). It is written as a .tflite (fp32; int8 with int8 input and output, so only
the convolution runs) and as an .onnx (fp32; int8 QDQ as :func:`converters.onnx.quantize_onnx`
writes edgeseg's own files, whose input quantize and output dequantize stay in), run in LiteRT and
ONNX Runtime as the harness runs them, and timed: the roofline is its MACs over its fastest run.

The share of a model is ``conv_macs / p50`` over that rate, where ``conv_macs`` counts convolutions
and dense layers only (bilinear resizing, 4 MACs per value in edgeseg's MAC count, is memory-bound
work no GEMM rate describes). fp16, dynamic-range and int16x8 files get no share: no roofline of
theirs is measured.

    >>> ceilings = conv_rooflines(threads=(1,))  # doctest: +SKIP
    >>> ceilings[key("litert", "fp32", 1)]["gmacs_per_s"]  # doctest: +SKIP
    61.2
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

PIXELS, CHANNELS = 64, 256  # the convolution: (1, 64, 64, 256) -> (1, 64, 64, 256), 1x1
DTYPES = ("fp32", "int8")
RUNTIMES = ("litert", "onnxruntime")


def key(runtime: str, dtype: str, threads: int) -> str:
    """The name of one roofline in :func:`conv_rooflines`'s answer."""
    return f"{runtime} {dtype} {threads} thread{'s' if threads > 1 else ''}"


def conv_macs(cost) -> int:
    """MACs of the convolutions and dense layers of a :class:`edgeseg.device.flops.ModelCost`."""
    return sum(layer.macs for layer in cost.layers if "resiz" not in layer.kind.lower()
               and "upsampl" not in layer.kind.lower())


def _tflite(folder: Path, dtype: str, rng) -> Path:
    from converters.tflite import tflite_bytes
    from edgeseg._keras import keras, layers

    inputs = keras.Input((PIXELS, PIXELS, CHANNELS), batch_size=1)
    model = keras.Model(inputs, layers.Conv2D(CHANNELS, 1)(inputs))
    samples = [rng.standard_normal((PIXELS, PIXELS, CHANNELS)).astype(np.float32)
               for _ in range(4)]
    data = tflite_bytes(model, quant="none" if dtype == "fp32" else "int8",
                        representative=samples if dtype == "int8" else None,
                        io="float" if dtype == "fp32" else "int8")
    path = folder / f"conv-{dtype}.tflite"
    path.write_bytes(data)
    return path


def _onnx(folder: Path, dtype: str, rng) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from converters.onnx import quantize_onnx

    weights = (rng.standard_normal((CHANNELS, CHANNELS, 1, 1)) / 16).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["y"])], "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, CHANNELS, PIXELS, PIXELS])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, CHANNELS, PIXELS, PIXELS])],
        [numpy_helper.from_array(weights, "w"),
         numpy_helper.from_array(np.zeros(CHANNELS, np.float32), "b")])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    data = proto.SerializeToString()
    if dtype == "int8":
        images = rng.standard_normal((4, CHANNELS, PIXELS, PIXELS)).astype(np.float32)
        data = quantize_onnx(data, images)
    onnx.checker.check_model(onnx.load_from_string(data))
    path = folder / f"conv-{dtype}.onnx"
    path.write_bytes(data)
    return path


def _runner(path: Path, threads: int):
    """A function that runs the file once, in the runtime and thread count the harness uses."""
    from edgeseg.device.runtime import (
        onnx_session,
        onnx_session_options,
        tflite_interpreter_class,
    )

    if path.suffix == ".tflite":
        interpreter_class, _ = tflite_interpreter_class()
        interpreter = interpreter_class(model_path=str(path), num_threads=threads)
        interpreter.allocate_tensors()
        detail = interpreter.get_input_details()[0]
        x = np.zeros(detail["shape"], detail["dtype"])
        index = detail["index"]

        def run():
            interpreter.set_tensor(index, x)
            interpreter.invoke()
        return run
    session = onnx_session(path, onnx_session_options(threads))
    name = session.get_inputs()[0].name
    x = {name: np.zeros((1, CHANNELS, PIXELS, PIXELS), np.float32)}
    return lambda: session.run(None, x)


def conv_rooflines(runtimes=RUNTIMES, dtypes=DTYPES, threads=(1,), runs: int = 30,
                   warmup: int = 5) -> dict[str, dict]:
    """The best rate of one 1x1 convolution per (runtime, dtype, threads), keyed by :func:`key`.

    Each entry: ``gmacs_per_s`` (MACs over the fastest of ``runs`` runs), ``macs``, ``best_ms``,
    ``p50_ms`` and ``method`` (what was run, in words). The runs of all files are interleaved, as
    the harness interleaves models, so a busy moment touches every roofline alike.
    """
    rng = np.random.default_rng(0)
    macs = PIXELS * PIXELS * CHANNELS * CHANNELS
    with tempfile.TemporaryDirectory(prefix="edgeseg-roofline-") as tmp:
        builders = {"litert": _tflite, "onnxruntime": _onnx}
        files = {(rt, dt): builders[rt](Path(tmp), dt, rng) for rt in runtimes for dt in dtypes}
        runners = {(rt, dt, n): _runner(files[rt, dt], n)
                   for rt in runtimes for dt in dtypes for n in threads}
        times = {k: [] for k in runners}
        for iteration in range(warmup + runs):
            for k, run in runners.items():
                t0 = time.perf_counter()
                run()
                if iteration >= warmup:
                    times[k].append((time.perf_counter() - t0) * 1e3)
    out = {}
    for (rt, dt, n), measured in times.items():
        best = min(measured)
        what = {"litert": "a .tflite in LiteRT (XNNPACK)", "onnxruntime": "an .onnx in ONNX "
                "Runtime (CPU)"}[rt]
        io = {"fp32": "", "int8": (", int8 input and output" if rt == "litert"
                                   else ", QDQ with float input and output")}[dt]
        out[key(rt, dt, n)] = {
            "runtime": rt, "dtype": dt, "threads": n, "macs": macs,
            "gmacs_per_s": round(macs / (best / 1e3) / 1e9, 2), "best_ms": round(best, 4),
            "p50_ms": round(float(np.median(measured)), 4),
            "method": f"one 1x1 convolution {PIXELS}x{PIXELS}x{CHANNELS} -> {CHANNELS} ({dt}{io}) "
                      f"as {what}, {n} thread{'s' if n > 1 else ''}, fastest of {runs}"}
    return out


def share(conv_macs_: int | None, p50_ms: float | None, roofline: dict | None) -> float | None:
    """A model's convolution MAC rate (``conv_macs_`` / ``p50_ms``) as a share of ``roofline``."""
    if not conv_macs_ or not p50_ms or not roofline:
        return None
    return conv_macs_ / (p50_ms / 1e3) / 1e9 / roofline["gmacs_per_s"]


def row_share(row: dict, rooflines: dict[str, dict], dtype: str) -> tuple[int, float | None]:
    """(convolution MACs, share of its roofline) of a bench row whose file computes in ``dtype``
    (``fp32``, ``int8``; any other has no roofline: share None)."""
    from edgeseg.device.flops import file_cost

    macs = conv_macs(file_cost(row["path"], tuple(row["input_shape"][1:3])))
    ceiling = rooflines.get(key(row["runtime"], dtype, row["threads"]))
    return macs, share(macs, row["latency_ms"]["p50"], ceiling)


__all__ = ["DTYPES", "RUNTIMES", "conv_macs", "conv_rooflines", "key", "row_share", "share"]
