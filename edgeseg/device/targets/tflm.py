"""Cortex-M microcontrollers: the file in TensorFlow Lite Micro's own kernels, on this host.

The ``tflite-micro`` package (the ``targets`` extra) is TFLM's C++ interpreter with its reference
kernels, built for the host: the code a microcontroller runs (CMSIS-NN swaps in faster kernels
for the same ops, bit-exact with these). It answers three questions without a board:

- **Does it run?** TFLM has no kernel for some ops LiteRT runs; the interpreter names each one
  it cannot find (``Didn't find op for builtin opcode 'X'``) and edgeseg reports them.
- **How much RAM?** TFLM's recording allocator reports the tensor arena the model used after
  one inference: the activations' plan (the "head", the same on any device) and the persistent
  structures (the "tail": TFLM's tensor and node records, which hold pointers, so a 32-bit
  Cortex-M needs somewhat less than this 64-bit host measures; the figure is an upper bound).
- **Does it compute the same?** :class:`TFLMModel` is an :class:`edgeseg.device.runtime.EdgeModel`,
  so the harness scores it like any runtime and compares its masks with LiteRT's on the same file.

Flash is the file itself (TFLM reads the flatbuffer in place); RAM is the arena (the model can
stay in flash). TFLM's messages go to the process's native stderr; edgeseg reads them there.

    >>> row = estimate("model_int8.tflite")  # doctest: +SKIP
    >>> row["runs"], row["arena_bytes"], row["unsupported_ops"]  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from pathlib import Path

import numpy as np

from edgeseg.device.errors import EdgesegError
from edgeseg.device.runtime import LiteRTModel

INSTALL = 'pip install "tflite-micro>=0.dev0" (or edgeseg[targets])'
TARGET = "cortex-m"
RUNTIME = "tflm"
# The arena handed to TFLM on the host: generous (it is only host memory); the model's real need
# is what the recording allocator reports, not this.
HOST_ARENA = 64 << 20
MAX_HOST_ARENA = 1 << 30


def tflm_version() -> str:
    try:
        import tflite_micro
    except ImportError:
        raise EdgesegError(f"the Cortex-M target needs TensorFlow Lite Micro: {INSTALL}") from None
    return tflite_micro.__version__


@contextlib.contextmanager
def native_stderr():
    """Collect what native code writes to file descriptor 2 (TFLM's MicroPrintf) into a list
    of one string, filled when the block ends."""
    sys.stderr.flush()
    saved = os.dup(2)
    captured: list[str] = []
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured.append(sink.read().decode(errors="replace"))


def missing_ops(log: str) -> list[str]:
    """The ops TFLM said it has no kernel for, in the order it said so."""
    return list(dict.fromkeys(re.findall(r"Didn't find op for builtin opcode '([^']+)'", log)))


class UnsupportedOps(EdgesegError):
    """TFLM has no kernel for some of the file's ops (``.ops``: their names)."""

    def __init__(self, path, ops: list[str]):
        super().__init__(f"{path}: TFLite Micro has no kernel for {', '.join(ops)}: it does not "
                         f"run on a microcontroller as it is")
        self.ops = ops


def _failure(log: str) -> str:
    """TFLM's first message, its source path shortened to the kernel's name."""
    lines = [line.strip() for line in log.splitlines() if line.strip()
             and not line.startswith("[RecordingMicroAllocator]")]
    if not lines:
        return "no message"
    return re.sub(r"^\S*?micro/kernels/(\w+?)(?:_common)?\.cc(?::\d+)?\s*", r"\1 kernel: ",
                  lines[0])[:200]


class TFLMModel(LiteRTModel):
    """A .tflite file in TensorFlow Lite Micro (one image at a time, as on a microcontroller).

    Raises EdgesegError naming the ops TFLM lacks, or its own first message, when it cannot
    allocate the model. ``arena`` holds the recording allocator's figures after a run."""

    runtime = RUNTIME

    def __init__(self, path, num_threads=None, *, contract=None, trusted: bool = False,
                 arena_size: int = HOST_ARENA):
        from edgeseg.device.runtime import EdgeModel
        from edgeseg.device.untrusted import check_untrusted

        EdgeModel.__init__(self, path, None, contract)
        tflm_version()  # installed, or one line with the pip command
        from tflite_micro import runtime as tflm
        if not trusted:
            check_untrusted(self.path)
        data = self.path.read_bytes()
        while True:
            with native_stderr() as log:
                try:
                    self.interpreter = tflm.Interpreter.from_bytes(data, arena_size=arena_size)
                    error = None
                except Exception as caught:  # noqa: BLE001 - TFLM raises RuntimeError, ...
                    error = caught
            if error is None or "Failed to resize buffer" not in log[0] or \
                    arena_size >= MAX_HOST_ARENA:
                break
            arena_size *= 4  # a model larger than the host arena: a larger one, then measure
        self.missing_ops = missing_ops(log[0])
        if error is not None:
            if self.missing_ops:
                raise UnsupportedOps(self.path, self.missing_ops)
            raise EdgesegError(f"{self.path}: TFLite Micro cannot load it ({_failure(log[0])})")
        self._input = self._detail(self.interpreter.get_input_details(0), self._file.inputs[0])
        self._outputs = [self._detail(self.interpreter.get_output_details(i), tensor)
                         for i, tensor in enumerate(self._file.outputs)]
        self.arena: dict = {}

    @staticmethod
    def _detail(detail: dict, tensor) -> dict:
        """TFLM's tensor details in LiteRT's form (what the base class's helpers read)."""
        quant = detail["quantization_parameters"]
        scales, zeros = quant["scales"], quant["zero_points"]
        return {"name": tensor.name, "shape": np.asarray(detail["shape"]),
                "dtype": detail["dtype"],
                "quantization": (float(scales[0]), int(zeros[0])) if len(scales) == 1 else (0.0, 0)}

    def _run(self, images, output):
        from edgeseg.device.runtime import dequantize, quantize

        outputs = []
        for image in images:  # TFLM runs the batch of one the file was made for
            self.interpreter.set_input(quantize(image[None], self._input), 0)
            with native_stderr() as log:
                try:
                    self.interpreter.invoke()
                    failed = None
                except Exception as caught:  # noqa: BLE001
                    failed = caught
            if failed is not None:
                raise EdgesegError(f"{self.path}: TFLite Micro failed to run it "
                                   f"({_failure(log[0])})")
            outputs.append(dequantize(np.asarray(self.interpreter.get_output(output)),
                                       self._outputs[output]))
        if not self.arena:
            self.arena = self._allocations()
        return np.concatenate(outputs)

    def _allocations(self) -> dict:
        """The recording allocator's figures: total, head (activations), tail (persistent)."""
        with native_stderr() as log:
            self.interpreter.print_allocations()
        figures = dict(re.findall(r"Arena allocation (total|head|tail) (\d+) bytes", log[0]))
        return {key: int(value) for key, value in figures.items()}


def estimate(path, *, contract: dict | None = None) -> dict:
    """Whether ``path`` runs in TFLM and the arena it needs, as a bench row (Dice None: the
    harness fills it from TFLM's own predictions; see :func:`benchmarks.harness.bench`).

    ``runs`` is False with ``unsupported_ops`` named when TFLM lacks kernels (``failure``: its
    message when a kernel it has refuses the file, e.g. float16 weights); ``arena_bytes`` is
    the arena TFLM used for one inference (``arena_head_bytes``: activations, the same on any
    device; ``arena_tail_bytes``: persistent records, smaller on a 32-bit MCU), ``flash_bytes``
    the file's size. TFLM's latency on this host says nothing of a Cortex-M's: ``latency_ms.p50``
    is NaN (not estimated).
    """
    from edgeseg.device.formats.tflite import read_card, read_tflite

    path = Path(path)
    if path.suffix.lower() != ".tflite":
        raise EdgesegError(f"{path}: TFLite Micro runs .tflite files")
    f = read_tflite(path)
    card = read_card(f) or {}
    row = {"target": TARGET, "variant": card.get("variant") or path.stem, "runtime": RUNTIME,
           "path": str(path), "format": "tflite", "threads": None,
           "input_shape": list(f.inputs[0].shape) if f.inputs else None,
           "latency_ms": {"p50": float("nan")}, "estimated": False,
           "estimator": f"tflite-micro {tflm_version()}", "runs": False,
           "unsupported_ops": [], "failure": None, "arena_bytes": None, "arena_head_bytes": None,
           "arena_tail_bytes": None, "flash_bytes": f.size_bytes, "size_bytes": f.size_bytes,
           "cpu_ops": {}, "dice": None, "dice_delta": None}
    try:
        model = TFLMModel(path, contract=contract)
    except UnsupportedOps as error:
        row["unsupported_ops"] = error.ops
        return row
    except EdgesegError as error:  # a kernel that refuses the file's types, ...: said, a row
        if not str(error).startswith(f"{path}: TFLite Micro"):
            raise  # not TFLM's answer (a file edgeseg cannot read): the caller's error
        row["failure"] = str(error).split(": ", 1)[1]
        return row
    _, height, width, channels = model.input_shape
    model.predict(np.zeros((1, height or 64, width or 64, channels or 1), np.float32))
    row.update(runs=True, arena_bytes=model.arena.get("total"),
               arena_head_bytes=model.arena.get("head"), arena_tail_bytes=model.arena.get("tail"))
    return row


__all__ = ["TFLMModel", "UnsupportedOps", "estimate", "missing_ops", "native_stderr", "tflm_version"]
