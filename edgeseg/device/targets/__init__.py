"""Targets that cannot run here, estimated by their vendors' own tools: one module each.

Every estimator returns a bench row (the vocabulary of ``edgeseg.bench/1``) with ``target`` set:
:mod:`edgeseg.device.targets.ethos_u` (Arm Ethos-U NPUs, through Vela) and
:mod:`edgeseg.device.targets.tflm` (Cortex-M microcontrollers, through TensorFlow Lite Micro).
Importing this package imports neither tool; each is imported by the function that needs it.

    >>> rows = estimate("model_int8.tflite", ["ethos-u55-128", "cortex-m"])  # doctest: +SKIP
    >>> print(format_rows(rows))  # doctest: +SKIP

Adding a target: a module here with ``estimate(path, ...) -> row`` and its names in
:func:`target_names` / :func:`estimate`.
"""

from __future__ import annotations

from edgeseg.device.errors import EdgesegError

CORTEX_M = ("cortex-m", "tflm")  # two names of one target


def target_names() -> list[str]:
    from edgeseg.device.targets.ethos_u import NPUS

    return [*NPUS, *CORTEX_M]


def parse_targets(values) -> list[str]:
    """Target names from repeated and comma-separated options, in order, without repeats
    (``tflm`` is ``cortex-m``); an unknown one is one line listing the known ones."""
    names = []
    for value in values or ():
        for name in str(value).split(","):
            name = name.strip().lower()
            if not name:
                continue
            if name not in target_names():
                raise EdgesegError(f"--target: unknown target {name!r}; known: "
                                   f"{', '.join(target_names())}")
            name = CORTEX_M[0] if name in CORTEX_M else name
            if name not in names:
                names.append(name)
    return names


def estimate(path, targets, *, contract: dict | None = None) -> list[dict]:
    """A row per target for the .tflite at ``path`` (see each module's ``estimate``)."""
    rows = []
    for name in parse_targets(targets):
        if name == CORTEX_M[0]:
            from edgeseg.device.targets.tflm import estimate as tflm_estimate

            rows.append(tflm_estimate(path, contract=contract))
        else:
            from edgeseg.device.targets.ethos_u import estimate as vela_estimate

            rows.append(vela_estimate(path, name))
    return rows


def _kb(value) -> str:
    return f"{value / 1024:,.1f} KB" if value else "-"


def describe(row: dict) -> str:
    """One line (two for CPU fallbacks) of a target row, for a terminal."""
    if row["target"] == CORTEX_M[0]:
        if not row.get("runs"):
            why = f"TFLite Micro has no kernel for {', '.join(row['unsupported_ops'])}" \
                if row.get("unsupported_ops") else row.get("failure") or "TFLite Micro failed"
            return f"{row['target']} ({row['runtime']}): does not run: {why}"
        if row.get("arena_bytes") is None:
            arena = "tensor arena not reported"
        else:
            arena = (f"tensor arena {row['arena_bytes']:,} bytes ({_kb(row['arena_bytes'])}: "
                     f"activations {row['arena_head_bytes'] or 0:,}, TFLM's records "
                     f"{row['arena_tail_bytes'] or 0:,} on this 64-bit host)")
        text = (f"{row['target']} ({row['runtime']}): runs; {arena}, flash "
                f"{row['flash_bytes']:,} bytes (the file)")
        if row.get("dice") is not None:
            text += f"; Dice {row['dice']:.4f}"
        if row.get("agreement") is not None:
            text += f", {row['agreement']:.2%} of pixels as LiteRT"
        return text
    cpu = ", ".join(f"{op} x{n}" for op, n in row["cpu_ops"].items()) or "none"
    text = (f"{row['target']}: {row['latency_ms']['p50']:.2f} ms estimated at "
            f"{row['clock_mhz']:.0f} MHz ({row['cycles']:,} cycles; {row['system_config']}, "
            f"{row['memory_mode']}); SRAM {_kb(row['sram_bytes'])}, flash "
            f"{_kb(row['flash_bytes'])}" + (f", DRAM {_kb(row['dram_bytes'])}"
                                             if row.get("dram_bytes") else "") +
            f"; NPU runs {row['npu_ops']} ops, CPU: {cpu}")
    reasons = row.get("cpu_reasons") or {}
    if reasons:
        text += "\n  " + "; ".join(f"{op}: {why}" for op, why in reasons.items())
    if row["cpu_ops"] and set(row["cpu_ops"]) <= {"QUANTIZE", "DEQUANTIZE"}:
        text += ("\n  (the conversions of the float input and output: a file converted with "
                 "--io int8 runs wholly on the NPU)")
    return text


def format_rows(rows: list[dict]) -> str:
    return "\n".join(describe(row) for row in rows)


__all__ = ["describe", "estimate", "format_rows", "parse_targets", "target_names"]
