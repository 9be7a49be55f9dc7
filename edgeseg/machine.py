"""The machine a benchmark ran on: CPU, cores, instruction-set extensions, runtime versions.

Read from the OS (``/proc/cpuinfo`` on Linux and Android, ``sysctl`` on macOS); the runtime
versions come from the installed distributions' metadata, so nothing is imported to learn them.
"""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata

# /proc/cpuinfo flag -> the name a reader knows it by
ISA_FLAGS = {
    "avx2": "AVX2", "fma": "FMA", "avx512f": "AVX-512", "avx512_vnni": "AVX512-VNNI",
    "avx_vnni": "AVX-VNNI", "avx512_bf16": "AVX512-BF16", "amx_int8": "AMX-INT8",
    "asimd": "NEON", "asimddp": "NEON-dotprod", "i8mm": "I8MM", "sve": "SVE", "fphp": "FP16",
}
RUNTIMES = ("ai-edge-litert", "tflite-runtime", "onnxruntime", "tensorflow", "tf-keras", "numpy")


def _cpuinfo() -> dict[str, str]:
    info: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                key, sep, value = line.partition(":")
                if sep and key.strip() not in info:
                    info[key.strip()] = value.strip()
    except OSError:
        pass
    return info


def _sysctl(name: str) -> str:
    try:
        return subprocess.run(["sysctl", "-n", name], capture_output=True, text=True,
                              timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def describe() -> dict:
    """``{"cpu", "cores", "isa", "runtimes", "python", "os"}`` for the bench JSON's machine block."""
    info = _cpuinfo()
    cpu = (info.get("model name") or info.get("Hardware") or info.get("Processor")
           or _sysctl("machdep.cpu.brand_string") or platform.processor() or platform.machine())
    flags = set((info.get("flags") or info.get("Features") or "").split())
    if platform.system() == "Darwin":
        flags |= {"asimd"} if platform.machine() == "arm64" else set()
        flags |= {"asimddp"} if _sysctl("hw.optional.arm.FEAT_DotProd") == "1" else set()
    isa = [name for flag, name in ISA_FLAGS.items() if flag in flags]
    runtimes = {}
    for name in RUNTIMES:
        try:
            runtimes[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu, "cores": cores, "isa": isa, "runtimes": runtimes,
            "python": platform.python_version(), "os": f"{platform.system()} {platform.release()}",
            "arch": platform.machine()}


def line(machine: dict) -> str:
    """One line for a report: ``Intel Xeon, 2 cores (AVX2, AVX-512), Linux 6.1, LiteRT 2.3``."""
    runtimes = ", ".join(f"{k} {v}" for k, v in machine["runtimes"].items() if k != "numpy")
    isa = ", ".join(machine["isa"]) or "no SIMD flags visible"
    return f"{machine['cpu']}, {machine['cores']} cores ({isa}), {machine['os']}, {runtimes}"


__all__ = ["describe", "line"]


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux ``MemAvailable``), None if unknown."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_memory(needed: int, what: str) -> None:
    """Refuse, in one line, work that needs more memory than this machine has available."""
    from edgeseg.errors import EdgesegError

    available = available_memory()
    if available is not None and needed > available:
        raise EdgesegError(f"{what} needs about {needed / 2**30:.1f} GiB of memory; this machine "
                           f"has {available / 2**30:.1f} GiB available")

