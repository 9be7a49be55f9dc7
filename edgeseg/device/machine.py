"""The machine a benchmark ran on: CPU, cores, instruction-set extensions, runtime versions.

Read from the OS (``/proc/cpuinfo`` on Linux and Android, ``sysctl`` on macOS); the runtime
versions come from the installed distributions' metadata, so nothing is imported to learn them.
"""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata

from edgeseg.device.errors import EdgesegError

# /proc/cpuinfo flag -> the name a reader knows it by
ISA_FLAGS = {
    "avx2": "AVX2", "fma": "FMA", "avx512f": "AVX-512", "avx512_vnni": "AVX512-VNNI",
    "avx_vnni": "AVX-VNNI", "avx512_bf16": "AVX512-BF16", "amx_int8": "AMX-INT8",
    "asimd": "NEON", "asimddp": "NEON-dotprod", "i8mm": "I8MM", "sve": "SVE", "fphp": "FP16",
}
# ARM's /proc/cpuinfo names no CPU: its implementer and part numbers do (Arm Ltd. is 0x41)
ARM_PARTS = {
    (0x41, 0xd03): "Cortex-A53", (0x41, 0xd04): "Cortex-A35", (0x41, 0xd05): "Cortex-A55",
    (0x41, 0xd07): "Cortex-A57", (0x41, 0xd08): "Cortex-A72", (0x41, 0xd09): "Cortex-A73",
    (0x41, 0xd0a): "Cortex-A75", (0x41, 0xd0b): "Cortex-A76", (0x41, 0xd0c): "Neoverse-N1",
    (0x41, 0xd0d): "Cortex-A77", (0x41, 0xd40): "Neoverse-V1", (0x41, 0xd41): "Cortex-A78",
    (0x41, 0xd44): "Cortex-X1", (0x41, 0xd46): "Cortex-A510", (0x41, 0xd47): "Cortex-A710",
    (0x41, 0xd48): "Cortex-X2", (0x41, 0xd49): "Neoverse-N2", (0x41, 0xd4d): "Cortex-A715",
    (0x41, 0xd4e): "Cortex-X3", (0x41, 0xd4f): "Neoverse-V2", (0x41, 0xd80): "Cortex-A520",
    (0x41, 0xd81): "Cortex-A720", (0x41, 0xd82): "Cortex-X4",
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


def arm_cpu_name(info: dict[str, str]) -> str:
    """``ARM Cortex-A72 (r0p3)`` from the first core's implementer/part/variant/revision."""
    try:
        implementer, part = int(info["CPU implementer"], 16), int(info["CPU part"], 16)
    except (KeyError, ValueError):
        return ""
    name = ARM_PARTS.get((implementer, part), f"implementer {implementer:#x} part {part:#x}")
    variant, revision = info.get("CPU variant", "").replace("0x", ""), info.get("CPU revision")
    step = f" (r{int(variant, 16)}p{revision})" if variant and revision else ""
    return f"ARM {name}{step}" if implementer == 0x41 else f"{name}{step}"


def emulated() -> str | None:
    """How this machine is emulated, when its kernel command line says so
    (``edgeseg.emulated=qemu-tcg``: the project's emulated board sets it; set it on your own
    emulated machine too): its latencies are then no timings."""
    try:
        with open("/proc/cmdline") as handle:
            words = handle.read().split()
    except OSError:
        return None
    for word in words:
        if word.startswith("edgeseg.emulated="):
            return word.split("=", 1)[1] or "yes"
    return None


def _sysctl(name: str) -> str:
    try:
        return subprocess.run(["sysctl", "-n", name], capture_output=True, text=True,
                              timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


_AMX_DENIED = False


def deny_amx() -> None:
    """Keep this process off Intel AMX: what a CPU without AMX would run, on one that has it.

    Linux lets a process use AMX tiles only after it asks (``arch_prctl(ARCH_REQ_XCOMP_PERM,
    XFEATURE_XTILEDATA)``), and XNNPACK and oneDNN fall back to their AVX-512 VNNI kernels when the
    request fails. A seccomp filter makes that request fail with EPERM, and nothing else. It holds
    for the rest of the process (and its children), so call it before any runtime loads a model.
    Measured here: an int8 1x1 convolution in LiteRT took 0.37 ms with AMX, 1.15 ms without.
    """
    global _AMX_DENIED
    import ctypes

    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        raise EdgesegError("--no-amx: AMX is an x86-64 Linux matter (this is "
                           f"{platform.system()} {platform.machine()})")
    if _AMX_DENIED:
        return

    class Instruction(ctypes.Structure):
        _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte),
                    ("k", ctypes.c_uint)]

    class Program(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(Instruction))]

    load, equal, give = 0x20, 0x15, 0x06  # BPF_LD|W|ABS, BPF_JMP|JEQ|K, BPF_RET|K
    program = [(load, 0, 0, 4), (equal, 0, 5, 0xC000003E),  # seccomp_data.arch: x86-64, else allow
               (load, 0, 0, 0), (equal, 0, 3, 158),  # nr: arch_prctl, else allow
               (load, 0, 0, 16), (equal, 0, 1, 0x1023),  # args[0]: ARCH_REQ_XCOMP_PERM, else allow
               (give, 0, 0, 0x00050000 | 1),  # SECCOMP_RET_ERRNO | EPERM
               (give, 0, 0, 0x7FFF0000)]  # SECCOMP_RET_ALLOW
    code = (Instruction * len(program))(*[Instruction(*i) for i in program])
    filter_ = Program(len(program), code)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(38, 1, 0, 0, 0) != 0 or \
            libc.prctl(22, 2, ctypes.byref(filter_), 0, 0) != 0:  # NO_NEW_PRIVS, SECCOMP FILTER
        raise EdgesegError(f"--no-amx: the kernel refused the seccomp filter "
                           f"({os.strerror(ctypes.get_errno())})")
    _AMX_DENIED = True


def describe() -> dict:
    """``{"cpu", "cores", "isa", "runtimes", "python", "os", "arch"}`` (and ``"emulated"``) for
    the bench JSON's machine block."""
    info = _cpuinfo()
    cpu = (info.get("model name") or arm_cpu_name(info) or info.get("Hardware")
           or info.get("Processor") or _sysctl("machdep.cpu.brand_string")
           or platform.processor() or platform.machine())
    flags = set((info.get("flags") or info.get("Features") or "").split())
    if platform.system() == "Darwin":
        flags |= {"asimd"} if platform.machine() == "arm64" else set()
        flags |= {"asimddp"} if _sysctl("hw.optional.arm.FEAT_DotProd") == "1" else set()
    isa = [name for flag, name in ISA_FLAGS.items() if flag in flags]
    if _AMX_DENIED:  # the CPU has it, this process may not use it
        isa = [f"{name} denied" if name.startswith("AMX") else name for name in isa]
    runtimes = {}
    for name in RUNTIMES:
        try:
            runtimes[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    described = {"cpu": cpu, "cores": cores, "isa": isa, "runtimes": runtimes,
                 "python": platform.python_version(),
                 "os": f"{platform.system()} {platform.release()}", "arch": platform.machine()}
    how = emulated()
    if how:
        described["emulated"] = how
    return described


EMULATED = "emulated: latency is not a timing"


def line(machine: dict) -> str:
    """One line for a report: ``Intel Xeon, 2 cores (AVX2, AVX-512), Linux 6.1, LiteRT 2.3``."""
    runtimes = ", ".join(f"{k} {v}" for k, v in machine["runtimes"].items() if k != "numpy")
    isa = ", ".join(machine["isa"]) or "no SIMD flags visible"
    arch = machine.get("arch", "")
    cpu = machine["cpu"] if not arch or arch in machine["cpu"] or arch in ("x86_64", "AMD64") \
        else f"{machine['cpu']} ({arch})"
    text = f"{cpu}, {machine['cores']} cores ({isa}), {machine['os']}, {runtimes}"
    if machine.get("emulated"):
        text += f"; {machine['emulated']} {EMULATED}"
    return text


__all__ = ["ARM_PARTS", "EMULATED", "arm_cpu_name", "deny_amx", "describe", "emulated", "line"]


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
    from edgeseg.device.errors import EdgesegError

    available = available_memory()
    if available is not None and needed > available:
        raise EdgesegError(f"{what} needs about {needed / 2**30:.1f} GiB of memory; this machine "
                           f"has {available / 2**30:.1f} GiB available")

