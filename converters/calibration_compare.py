"""Which int8 calibration suits a model: every setting converted, scored and timed in one table.

The settings a runtime's quantizer offers: TFLite calibrates min/max only; ONNX Runtime also by
entropy (KL divergence) and percentile. Each is tried with each number of calibration images and
with per-channel and per-tensor weights. Every file is a real conversion (:func:`converters.convert`,
parity included), scored on the same labelled images the calibration did not use, and timed in
its runtime in one interleaved run beside the float file of its format. The chosen setting is the
one with the highest Dice (ties within 0.0005: the faster, then the smaller); `edgeseg convert` with
its options records it in the card's ``calibration``.

    >>> table = compare("runs/nuclei/model.keras", formats=("onnx",))  # doctest: +SKIP
    >>> table["chosen"]["options"]  # doctest: +SKIP
    '--to onnx --quant int8 --calib-method entropy --calib-samples 100'
"""

from __future__ import annotations

import contextlib
import io
import shlex
import tempfile
import time
from pathlib import Path

import numpy as np

from edgeseg.device.errors import ConfigError

METHODS = {"tflite": ("minmax",), "onnx": ("minmax", "entropy", "percentile")}
DICE_TIE = 0.0005


def settings(formats, counts, methods=None, weights=("per-channel", "per-tensor")) -> list[dict]:
    """Every (format, method, images, weights) to try; ``methods`` None: all the format has."""
    out = []
    for to in formats:
        if to not in METHODS:
            raise ConfigError(f"--to must be tflite or onnx (got {to!r})")
        for method in methods or METHODS[to]:
            if method not in METHODS[to]:
                continue  # said once by the caller: the format has no such method
            for count in counts:
                for weight in weights:
                    out.append({"to": to, "method": method, "images": int(count),
                                "weights": weight})
    return out


def _same_inputs(calib, input_size, verify_data, verify_samples, contract, custom_objects,
                 unsafe) -> str:
    """The convert options that give a setting's conversion the same inputs as here: the
    calibration and parity images, the size, the I/O contract and the user's Keras code (a
    printed command that left them out calibrated on other images)."""
    import shlex

    from edgeseg.device.card import parse_size

    parts = []
    if calib:
        parts += ["--calib", calib]
    if input_size:
        height, width = parse_size(input_size)
        parts += ["--input-size", f"{height}x{width}" if height != width else str(height)]
    if verify_data:
        parts += ["--verify-data", verify_data]
    parts += ["--verify-samples", str(verify_samples)]
    flags = {"input_layout": "--input-layout", "normalize": "--normalize", "output": "--output"}
    for key, value in (contract or {}).items():
        if key in flags:
            parts += [flags[key], str(value)]
        elif key == "output_kind":
            parts.append("--logits" if value == "logits" else "--probabilities")
    for spec in getattr(custom_objects, "specs", ()):
        parts += ["--custom-objects", spec]
    if unsafe:
        parts.append("--unsafe")
    return "".join(f" {shlex.quote(part)}" for part in parts)


def compare(model_path, *, formats=("tflite", "onnx"), counts=(16, 100), methods=None,
            weights=("per-channel", "per-tensor"), calib=None, verify_data=None,
            verify_samples: int = 32, input_size=None, runs: int = 20, threads: int = 1,
            seed: int = 0, unsafe: bool = False, contract=None, custom_objects=None,
            echo=print) -> dict:
    """Convert ``model_path`` to int8 with every setting, score and time each; returns
    ``{"model", "images", "rows": [...], "chosen": row}`` (each row: the setting, ``dice``,
    ``dice_delta`` against the float model, ``agreement``, ``size_bytes``, ``p50_ms``,
    ``options``: the convert options that make it)."""
    from converters.export import ConvertConfig, convert
    from edgeseg import runtime

    todo = settings(formats, counts, methods, weights)
    if not todo:
        raise ConfigError(f"no calibration setting to compare: --method "
                          f"{', '.join(methods or [])} is not one of "
                          f"{', '.join(sorted({m for f in formats for m in METHODS[f]}))}")
    rows, files = [], []
    with tempfile.TemporaryDirectory(prefix="edgeseg-calib-") as tmp:
        for to in formats:
            path = Path(tmp) / f"float.{to}"
            result = _quiet(convert, model_path, path, ConvertConfig(
                to=to, quant="none", input_size=input_size, verify_data=verify_data,
                verify_samples=verify_samples, seed=seed, unsafe=unsafe, contract=contract,
                custom_objects=custom_objects,
                calib=calib))
            rows.append({"to": to, "method": "-", "images": 0, "weights": "float32",
                         "dice": None, "agreement": 1.0, "options": f"--to {to}",
                         "size_bytes": path.stat().st_size, "warning": None})
            files.append(path)
        for number, setting in enumerate(todo):
            path = Path(tmp) / f"int8-{number}.{setting['to']}"
            echo(f"  {setting['to']} {setting['method']}, {setting['images']} images, "
                 f"{setting['weights']} weights")
            cfg = ConvertConfig(to=setting["to"], quant="int8", calib=calib,
                                calib_samples=setting["images"], calib_method=setting["method"],
                                per_tensor=setting["weights"] == "per-tensor",
                                input_size=input_size, verify_data=verify_data,
                                verify_samples=verify_samples, keep_failed=True, seed=seed,
                                unsafe=unsafe, contract=contract,
                                custom_objects=custom_objects)
            result, said = _quiet(convert, model_path, path, cfg, keep_output=True)
            parity = result.parity
            options = (f"--to {setting['to']} --quant int8 --calib-samples {setting['images']}"
                       + (f" --calib-method {setting['method']}" if setting["method"] != "minmax"
                          else "") + (" --per-tensor" if cfg.per_tensor else "")
                       + _same_inputs(calib, input_size, verify_data, verify_samples, contract,
                                      custom_objects, unsafe))
            rows.append({**setting, "dice": parity.dice_converted, "dice_source": parity.dice_source,
                         "dice_delta": parity.dice_delta, "agreement": parity.agreement,
                         "passed": parity.passed, "size_bytes": path.stat().st_size,
                         "options": options, "warning": said or None})
            files.append(path)
            images = result.card["parity"]["images"]
        sources = [r for r in rows if r["weights"] != "float32"]
        for row in rows:  # the float file's Dice: what every int8 file is compared with
            if row["weights"] == "float32":
                row["dice"] = next((r["dice_source"] for r in sources if r["to"] == row["to"]),
                                   None)
        echo(f"timing {len(files)} files, {threads} thread(s), {runs} runs, round robin")
        models = [runtime.load(path, num_threads=threads, trusted=True) for path in files]
        inputs = [np.random.default_rng(seed).random(m.input_shape, np.float32)
                  if None not in m.input_shape else None for m in models]
        times = [[] for _ in models]
        for iteration in range(runs + 3):
            for i, model in enumerate(models):
                t0 = time.perf_counter()
                model.predict(inputs[i])
                if iteration >= 3:
                    times[i].append((time.perf_counter() - t0) * 1e3)
        for row, measured in zip(rows, times):
            row["p50_ms"] = float(np.median(measured))
    candidates = [r for r in rows if r["weights"] != "float32" and r["dice"] is not None]
    chosen = None
    if candidates:
        top = max(r["dice"] for r in candidates)
        chosen = min((r for r in candidates if r["dice"] >= top - DICE_TIE),
                     key=lambda r: (r["p50_ms"], r["size_bytes"]))
        chosen["chosen"] = True
    return {"model": str(model_path), "images": images, "threads": threads, "runs": runs,
            "rows": rows, "chosen": chosen,
            "rule": f"the highest Dice; within {DICE_TIE} of it, the fastest, then the smallest"}


def _quiet(function, *args, keep_output: bool = False):
    """Run a conversion with its stderr notes kept (returned with the result) instead of printed."""
    buffer = io.StringIO()  # ORT's calibrators print their progress on stdout: kept out too
    with contextlib.redirect_stderr(buffer), contextlib.redirect_stdout(io.StringIO()):
        result = function(*args)
    said = " ".join(line.strip() for line in buffer.getvalue().splitlines()
                    if line.startswith("warning:"))
    return (result, said) if keep_output else result


def format_table(report: dict) -> str:
    lines = [f"{report['model']}: int8 calibration settings, Dice on {report['images']}; p50 at "
             f"{report['threads']} thread(s), {report['runs']} interleaved runs",
             f"{'format':<7} {'method':<11} {'images':>6} {'weights':<12} {'Dice':>7} "
             f"{'vs float':>9} {'agree':>7} {'KB':>7} {'p50 ms':>7}"]
    for row in report["rows"]:
        dice = f"{row['dice']:.4f}" if row["dice"] is not None else "-"
        delta = f"{row['dice_delta']:+.4f}" if row.get("dice_delta") is not None else ""
        lines.append(f"{row['to']:<7} {row['method']:<11} {row['images'] or '-':>6} "
                     f"{row['weights']:<12} {dice:>7} {delta:>9} {row['agreement']:>7.2%} "
                     f"{row['size_bytes'] / 1024:>7.0f} {row['p50_ms']:>7.2f}"
                     + ("  <- chosen" if row.get("chosen") else ""))
    if report["chosen"]:
        lines.append(f"chosen ({report['rule']}): edgeseg convert "
                     f"{shlex.quote(str(report['model']))} {report['chosen']['options']} "
                     f"--out OUT.{report['chosen']['to']}")
    return "\n".join(lines)


__all__ = ["METHODS", "compare", "format_table", "settings"]
