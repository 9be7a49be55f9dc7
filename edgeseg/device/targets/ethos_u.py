"""Arm Ethos-U NPUs: what Arm's own compiler, Vela, says of an int8 .tflite (no hardware needed).

Vela (``pip install ethos-u-vela``, the ``targets`` extra) compiles the file for one NPU
configuration and estimates, from its model of the NPU and the system's memories, the cycles and
the time of one inference at the configuration's clock, the SRAM and flash (or DRAM) it uses, and
which ops it leaves to the Cortex-M beside the NPU. Each named target below is an NPU size with
one of the system configurations and memory modes that ship with Vela (``Arm/vela.ini``): the
pairings of Arm's own reference designs, so the figures are Arm's, not edgeseg's.

Vela runs as a child process (``python -m ethosu.vela``) into a temporary folder, and edgeseg reads
its summary CSV and the compiled .tflite (the ops left outside the NPU's custom op are the CPU's).
Why not in-process: Vela's Python ``api`` module is the register-level command-stream API, not the
model compiler; its compiler entry point (``vela.main``) prints to stdout, sets the process's
recursion limit, and its C++ core (regor) would take the process down with it if it crashed on a
model. A child process keeps all of that out of edgeseg, and its documented CSV is a stable
interface.

    >>> row = estimate("model_int8.tflite", "ethos-u55-128")  # doctest: +SKIP
    >>> row["latency_ms"]["p50"], row["sram_bytes"], row["cpu_ops"]  # doctest: +SKIP
"""

from __future__ import annotations

import collections
import csv
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from edgeseg.device.errors import EdgesegError

INSTALL = "pip install ethos-u-vela (or edgeseg[targets])"


@dataclass(frozen=True)
class NPU:
    """One Ethos-U configuration: Vela's accelerator name, system configuration and memory mode."""

    accelerator: str
    system_config: str
    memory_mode: str
    note: str


# Arm's reference pairings (Vela's Arm/vela.ini): the U55 beside a Cortex-M55 on a microcontroller
# (weights in flash, the tensor arena in SRAM shared with the CPU: Corstone-300), the U65 and U85
# on application-class systems (a dedicated 384 KB SRAM as the NPU's cache, weights and arena in
# DRAM: Corstone-1000 / Corstone-320).
NPUS = {
    "ethos-u55-128": NPU("ethos-u55-128", "Ethos_U55_High_End_Embedded", "Shared_Sram",
                         "SRAM 4 GB/s shared with the CPU, weights in flash 0.5 GB/s"),
    "ethos-u55-256": NPU("ethos-u55-256", "Ethos_U55_High_End_Embedded", "Shared_Sram",
                         "SRAM 4 GB/s shared with the CPU, weights in flash 0.5 GB/s"),
    "ethos-u65-256": NPU("ethos-u65-256", "Ethos_U65_High_End", "Dedicated_Sram_384KB",
                         "384 KB dedicated SRAM as cache, arena and weights in DRAM"),
    "ethos-u65-512": NPU("ethos-u65-512", "Ethos_U65_High_End", "Dedicated_Sram_384KB",
                         "384 KB dedicated SRAM as cache, arena and weights in DRAM"),
    "ethos-u85-256": NPU("ethos-u85-256", "Ethos_U85_SYS_DRAM_Mid", "Dedicated_Sram_384KB",
                         "384 KB dedicated SRAM as cache, arena and weights in DRAM"),
}
NPU_OP = "ethos-u"  # the custom op Vela puts the NPU's part of the graph in
TIMEOUT_S = 900


def vela_version() -> str:
    """The installed Vela's version; EdgesegError with the pip line when it is missing."""
    try:
        from ethosu.vela._version import __version__
    except ImportError:
        raise EdgesegError(f"the Ethos-U targets need Arm's Vela compiler: {INSTALL}") from None
    return __version__


def check_integer(path: Path, f) -> None:
    """Vela compiles fully int8 (or int16x8) files: a float one is one line naming it."""
    activations = {t.dtype for t in f.tensors if not t.constant}
    if not activations & {"int8", "uint8", "int16"}:
        kinds = ", ".join(sorted(activations)) or "no activations"
        raise EdgesegError(f"{path}: Vela takes fully int8 (or int16x8) .tflite files; this one "
                           f"computes in {kinds} (quantize the model it came from, or this file "
                           f"itself: edgeseg convert {path.name} --quant int8 --calib DATA)")


def _reasons(log: str) -> dict[str, str]:
    """{op type: Vela's first reason for leaving it to the CPU}, read from its warnings."""
    reasons: dict[str, str] = {}
    for match in re.finditer(r"Warning \(supported operators\) operator: (\S+?),.*?\n"
                             r"Reason: ([^\n]+)", log):
        reasons.setdefault(match.group(1), match.group(2).strip())
    return reasons


def compile_summary(path, npu: NPU, out: Path) -> tuple[dict, str]:
    """Run Vela on ``path`` for ``npu`` into ``out``; (its summary CSV row, its output)."""
    command = [sys.executable, "-m", "ethosu.vela", str(path), "--accelerator-config",
               npu.accelerator, "--config", "Arm/vela.ini", "--system-config", npu.system_config,
               "--memory-mode", npu.memory_mode, "--output-dir", str(out)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S,
                              cwd=out)
    except subprocess.TimeoutExpired:
        raise EdgesegError(f"{path}: Vela took more than {TIMEOUT_S} s for {npu.accelerator}; "
                           f"stopped") from None
    log = done.stdout + done.stderr
    summaries = list(out.glob("*_summary_*.csv"))
    if done.returncode != 0 or not summaries:
        lines = [line for line in log.strip().splitlines() if line.strip()]
        why = lines[-1][:240] if lines else f"exit status {done.returncode}"
        raise EdgesegError(f"{path}: Vela could not compile it for {npu.accelerator} ({why})")
    with summaries[0].open(newline="") as handle:
        return next(csv.DictReader(handle)), log


def estimate(path, target: str = "ethos-u55-128") -> dict:
    """Vela's estimate for ``path`` on ``target`` (a key of :data:`NPUS`), as a bench row.

    The row has ``target``, ``variant`` (the card's), ``runtime`` (the target: rows of several
    NPUs stay apart), ``path``, ``format``, ``threads`` None, ``latency_ms.p50`` (Vela's
    estimate), ``estimated`` True, ``clock_mhz``, ``cycles`` (total) and ``cycles_npu``,
    ``sram_bytes``, ``flash_bytes``, ``dram_bytes``, ``size_bytes`` (the file given) and
    ``compiled_bytes`` (Vela's output), ``macs`` (as Vela counts them), ``npu_ops`` (the file's
    ops the NPU runs), ``npu_partitions`` (Vela's NPU custom ops) and ``cpu_ops`` ({op: count}
    left to the CPU) with ``cpu_reasons``; ``dice`` is None here
    (the bench fills it from LiteRT's run of the same file).
    """
    from edgeseg.device.formats.tflite import read_card, read_tflite

    path = Path(path)
    if target not in NPUS:
        raise EdgesegError(f"unknown Ethos-U target {target!r}; known: {', '.join(NPUS)}")
    if path.suffix.lower() != ".tflite":
        raise EdgesegError(f"{path}: Vela compiles .tflite files (int8 or int16x8)")
    f = read_tflite(path)
    check_integer(path, f)
    version = vela_version()
    npu = NPUS[target]
    with tempfile.TemporaryDirectory(prefix="edgeseg-vela-") as folder:
        out = Path(folder)
        summary, log = compile_summary(path.resolve(), npu, out)
        compiled = next(out.glob("*_vela.tflite"), None)
        placed = read_tflite(compiled) if compiled else None
        compiled_bytes = compiled.stat().st_size if compiled else None
    ops = collections.Counter(op.name for op in placed.ops) if placed else collections.Counter()
    partitions = ops.pop(NPU_OP, 0)
    cpu = dict(ops.most_common())
    reasons = _reasons(log)
    kib = 1024

    def number(key, scale=1.0):
        value = summary.get(key)
        return float(value) * scale if value not in (None, "") else None

    seconds = number("inference_time")
    card = read_card(f) or {}
    return {
        "target": target, "variant": card.get("variant") or path.stem, "runtime": target,
        "path": str(path), "format": "tflite", "threads": None,
        "input_shape": list(f.inputs[0].shape) if f.inputs else None,
        "latency_ms": {"p50": seconds * 1e3 if seconds else float("nan")},
        "estimated": True, "estimator": f"vela {version}",
        "clock_mhz": number("core_clock", 1e-6),
        "system_config": npu.system_config, "memory_mode": npu.memory_mode,
        "cycles": int(number("cycles_total") or 0), "cycles_npu": int(number("cycles_npu") or 0),
        "sram_bytes": int(number("sram_memory_used", kib) or 0),
        "flash_bytes": int((number("off_chip_flash_memory_used", kib) or 0) +
                           (number("on_chip_flash_memory_used", kib) or 0)),
        "dram_bytes": int(number("dram_memory_used", kib) or 0),
        "arena_bytes": None, "size_bytes": f.size_bytes, "compiled_bytes": compiled_bytes,
        "macs": int(number("nn_macs") or 0),
        "npu_ops": len(f.ops) - sum(cpu.values()), "npu_partitions": partitions, "cpu_ops": cpu,
        "cpu_reasons": {op: reasons[op] for op in cpu if op in reasons},
        "dice": None, "dice_delta": None,
    }


__all__ = ["NPUS", "NPU", "check_integer", "estimate", "vela_version"]
