"""Model files of unknown origin: verify them, and open them in a child process before this one.

LiteRT and ONNX Runtime are native code: a malformed flatbuffer or protobuf can crash them
(a segmentation fault takes the whole Python process down, with no exception to catch). So before
edgeseg opens a .tflite or .onnx in its own process it

1. verifies the structure in Python: for .tflite, :func:`edgeseg.device.formats.tflite.read_tflite`
   walks every table and vector and checks each offset against the file's size (LiteRT's own
   flatbuffer verifier runs again when the interpreter opens it); for .onnx, the protobuf must
   parse and pass ``onnx.checker`` when the ``onnx`` package is installed;
2. then, since no verifier can promise that a kernel will not crash on odd parameters, loads the
   file in a child process, allocates it and runs one inference on zeros. A child that dies by a
   signal or hangs marks the file as unsafe, and this process never opens it.

A file that passed is remembered by its SHA-256 for the rest of the process, so the probe costs one
child start (~0.3-1 s) per distinct file.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from edgeseg.device.errors import EdgesegError
from edgeseg.device.files import sha256_of

PROBE_TIMEOUT = 120  # seconds for the child to load and run the model once
_verified: set[str] = set()


def verify_structure(path: Path) -> None:
    """Raise an EdgesegError naming the file when its structure is not a valid model."""
    if path.stat().st_size == 0:
        raise EdgesegError(f"{path}: empty file (0 bytes), not a model")
    if path.suffix.lower() == ".tflite":
        from edgeseg.device.formats.tflite import SchemaUnavailable, read_tflite

        try:
            read_tflite(path)  # raises a clear EdgesegError on anything malformed
        except SchemaUnavailable:  # tflite-runtime only: the child probe still guards
            from edgeseg.device.formats.tflite import SCHEMA_MISSING
            from edgeseg.device.log import warn_once

            warn_once(f"{SCHEMA_MISSING}: .tflite files are checked by the child-process probe "
                      f"only")
    elif path.suffix.lower() == ".onnx":
        _verify_onnx(path)


def _verify_onnx(path: Path) -> None:
    try:
        import onnx
    except ImportError:
        return  # ONNX Runtime parses it in the child; the probe still protects this process
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # noqa: BLE001 - protobuf's DecodeError and friends
        raise EdgesegError(f"{path}: not an ONNX model (the protobuf does not parse: "
                           f"{str(error).splitlines()[0][:120] or type(error).__name__})") from None
    if not model.graph.node:
        raise EdgesegError(f"{path}: not an ONNX model (no graph nodes)")
    from edgeseg.device.formats.onnx import external_data_of

    external = external_data_of(model, path)  # missing or escaping data files: one line
    try:  # by path when the weights are external: the checker resolves them beside the model
        onnx.checker.check_model(str(path) if external else model)
    except Exception as error:  # noqa: BLE001 - onnx.checker.ValidationError and C++ errors
        raise EdgesegError(f"{path}: invalid ONNX model ({str(error).splitlines()[0][:160]})") \
            from None


def probe_in_child(path: Path) -> None:
    """Load ``path`` and run it once in a child process; raise if the child crashes or hangs."""
    command = [sys.executable, "-m", "edgeseg.device.probe", str(path)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=PROBE_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise EdgesegError(f"{path}: the runtime did not finish opening and running this model "
                           f"in {PROBE_TIMEOUT} s; refusing it") from None
    if done.returncode < 0:
        name = signal.Signals(-done.returncode).name
        raise EdgesegError(f"{path}: the runtime crashed ({name}) opening this model in a child "
                           f"process; the file is malformed and is refused")
    if done.returncode == 3:  # the child's clean refusal: its one line says why
        raise EdgesegError(done.stdout.strip().splitlines()[-1] if done.stdout.strip()
                           else f"{path}: the runtime cannot open this model")
    if done.returncode != 0:
        raise EdgesegError(f"{path}: the runtime failed opening this model in a child process "
                           f"(exit {done.returncode})")


def check_untrusted(path) -> None:
    """Verify ``path`` and probe it in a child process once per distinct content (see module)."""
    path = Path(path)
    digest = _digest(path)
    if digest in _verified:
        return
    verify_structure(path)
    probe_in_child(path)
    _verified.add(digest)


def _digest(path: Path) -> str:
    """The file's SHA-256, and its external data files' for an .onnx (the weights are the model)."""
    if path.suffix.lower() != ".onnx":
        return sha256_of(path)
    from edgeseg.device.formats.onnx import file_parts

    try:
        parts = file_parts(path)
    except EdgesegError:
        raise  # a data file missing or outside the model's folder: its one line
    except Exception:  # noqa: BLE001 - not a parseable ONNX: verify_structure says so, in a line
        parts = [path]
    return ":".join(sha256_of(part) for part in parts)


def trust(path) -> None:
    """Mark a file this process wrote itself (a conversion's output) as safe to open directly."""
    _verified.add(_digest(Path(path)))


__all__ = ["check_untrusted", "probe_in_child", "trust", "verify_structure"]
