"""Benchmark model files on a board over SSH: copy, run the harness there, fetch the JSON, clean up.

    edgeseg bench model_fp32.tflite model_int8.tflite --on ssh://pi@raspberrypi.local
    edgeseg bench model_int8.tflite --on ssh://myboard --python /opt/venv/bin/python

The system's OpenSSH client does the work (``ssh``, a tar stream over it), so keys, agents,
``~/.ssh/config`` host aliases and ProxyJump work as they do for the user; it runs with
``BatchMode=yes`` (never a password prompt) and keep-alives. On the board: a temporary folder
(``mktemp -d``), the device side of edgeseg (:func:`device_sources`: numpy and a runtime are all
it needs), the model files with their cards, the evaluation images made here (so every
file is scored on exactly the images a local run scores) and a job; the board's own Python runs
``benchmarks/board.py``; the bench JSON comes back on standard output; the folder is removed,
also after a failure or Ctrl-C. Nothing is installed on the board, unless ``install``
(``--install``): then what its Python lacks is pip-installed into a venv in that folder.

Every failure is one :class:`RemoteError` line naming the board: an unknown or changed host key,
authentication, a refused or unreachable host, a connection that dropped mid-run, a board
without space, a Python without numpy or the runtime (with the pip command that fixes it).
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
import subprocess
import sys
import tarfile
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from edgeseg.device.errors import EdgesegError

# module names (any one of them will do) -> the package a board installs for them
NEEDS = {"numpy": ("numpy",), "ai-edge-litert": ("ai_edge_litert", "tflite_runtime", "tensorflow"),
         "onnxruntime": ("onnxruntime",), "pillow": ("PIL",)}
RUNTIME_OF = {".tflite": "ai-edge-litert", ".onnx": "onnxruntime"}
MIN_PYTHON = (3, 9)
# never a password prompt; give up on a silent host in 15 s, on a dead connection in about 20 s
SSH_OPTIONS = ("-o", "BatchMode=yes", "-o", "ConnectTimeout=15", "-o", "ServerAliveInterval=5",
               "-o", "ServerAliveCountMax=4")
FOLDER_PREFIX = "edgeseg-bench."

# Run on the board with the standard library only: which of NEEDS' groups are missing, and the
# digest of an installed edgeseg's device side (the same files as device_sources(), hashed as
# sources_digest() does), so an install with exactly this device code runs the harness itself
_PROBE = r"""
import hashlib, importlib.util, pathlib, platform, sys
def found(name):
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False
def installed():
    try:
        from importlib import metadata
        specs = [importlib.util.find_spec(n) for n in ("edgeseg", "benchmarks")]
        e, b = [pathlib.Path(s.origin).parent for s in specs]
        files = [("edgeseg/__init__.py", e / "__init__.py")]
        files += [("edgeseg/" + p.relative_to(e).as_posix(), p)
                  for p in sorted((e / "device").rglob("*.py"))]
        files += [("benchmarks/" + p.name, p) for p in sorted(b.glob("*.py"))]
        h = hashlib.sha256()
        for name, path in files:
            h.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
        return metadata.version("edgeseg") + " " + h.hexdigest()
    except Exception:
        return ""
print("python", platform.python_version(), sys.executable)
print("edgeseg", installed() or "-")
missing = [g.split("=")[0] for g in sys.argv[1:]
           if not any(found(m) for m in g.split("=")[1].split(","))]
print("missing", *missing)
sys.exit(3 if missing or sys.version_info < (%d, %d) else 0)
""" % MIN_PYTHON


class RemoteError(EdgesegError):
    """A board that could not be reached, or a run on it that failed: one line naming it."""

    exit_code = 1


@dataclass(frozen=True)
class Target:
    """``ssh://[user@]host[:port]``; ``host`` may be a ``~/.ssh/config`` alias."""

    host: str
    user: str | None = None
    port: int | None = None

    def __str__(self) -> str:
        user = f"{self.user}@" if self.user else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ssh://{user}{host}{f':{self.port}' if self.port else ''}"

    def destination(self) -> list[str]:
        """ssh's arguments that name the board (after ``--``: a host is never an option)."""
        port = ["-p", str(self.port)] if self.port else []
        return [*port, "--", f"{self.user}@{self.host}" if self.user else self.host]


def parse_target(text: str) -> Target:
    """``ssh://user@host:port`` -> :class:`Target`; anything else is one EdgesegError."""
    usage = "expected ssh://[user@]host[:port], e.g. ssh://pi@raspberrypi.local or ssh://myboard"
    parts = urlsplit(text.strip())
    if parts.scheme != "ssh" or not parts.netloc:
        raise EdgesegError(f"--on {text}: not an ssh:// URL ({usage})")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise EdgesegError(f"--on {text}: an ssh:// URL names a board, not a path on it ({usage}; "
                           f"--remote-dir sets where the files go)")
    if parts.password is not None:
        raise EdgesegError(f"--on {text}: no passwords in the URL; ssh logs in with your keys "
                           f"(ssh-copy-id, ~/.ssh/config)")
    try:
        port = parts.port
    except ValueError:
        raise EdgesegError(f"--on {text}: the port must be a number from 1 to 65535") from None
    host = parts.hostname or ""
    if not host or host.startswith("-") or not re.fullmatch(r"[\w.:%-]+", host):
        raise EdgesegError(f"--on {text}: no valid host name ({usage})")
    if port == 0 or parts.netloc.endswith(":"):
        raise EdgesegError(f"--on {text}: the port must be a number from 1 to 65535")
    # urlsplit lowers the host; an ~/.ssh/config alias is matched as written
    netloc_host = parts.netloc.rsplit("@", 1)[-1]
    if not netloc_host.startswith("["):
        netloc_host = netloc_host.rsplit(":", 1)[0] if port else netloc_host
        host = netloc_host
    return Target(host=host, user=parts.username or None, port=port)


# ssh's own messages (it exits 255) -> what happened, most specific first
_SSH_FAILURES = (
    ("REMOTE HOST IDENTIFICATION HAS CHANGED",
     "its host key differs from the one in your known_hosts (a reinstalled board, or another "
     "machine answering): check it, then remove the old key (ssh-keygen -R HOST)"),
    ("host key is known for",
     "its host key is unknown (not in your known_hosts): connect once with ssh to check and "
     "accept it"),
    ("Host key verification failed",
     "host key verification failed: connect once with ssh to check and accept the board's key"),
    ("Permission denied",
     "authentication failed (no key it accepts; edgeseg never asks for a password): add your key "
     "with ssh-copy-id, or name it in ~/.ssh/config"),
    ("Too many authentication failures",
     "authentication failed (too many keys offered): name the right one with IdentityFile and "
     "IdentitiesOnly in ~/.ssh/config"),
    ("Connection refused", "connection refused (no SSH server on that port?)"),
    ("Could not resolve hostname", "unknown host (not in DNS, /etc/hosts or ~/.ssh/config)"),
    ("timed out", "unreachable (the connection timed out)"),
    ("No route to host", "unreachable (no route to host)"),
    ("Network is unreachable", "unreachable (network is unreachable)"),
)
_NO_SPACE = "No space left on device"


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines()
             if line.strip() and not line.startswith("Warning: Permanently added")]
    return lines[-1] if lines else ""


def _ssh_failure(target: Target, stderr: str, stage: str) -> RemoteError:
    """The one line for ssh's exit status 255, read from its standard error."""
    for fragment, meaning in _SSH_FAILURES:
        if fragment in stderr:
            return RemoteError(f"{target}: {meaning}")
    said = _last_line(stderr)
    return RemoteError(f"{target}: the connection dropped {stage}"
                       f"{f' ({said})' if said else ''}; nothing was written")


class Board:
    """A board reached with the system's ``ssh`` (``-F ssh_config`` when given)."""

    def __init__(self, target: Target, *, ssh_config=None, python: str = "python3",
                 remote_dir: str | None = None):
        self.target, self.python, self.remote_dir = target, python, remote_dir
        self.config = ["-F", str(ssh_config)] if ssh_config else []
        self.folder: str | None = None
        self.installed: str | None = None  # "version digest" of the board's edgeseg, if any
        self.use_installed = False  # its device code is this one's: no sources are sent

    def command(self, script: str) -> list[str]:
        """The ssh command that runs a POSIX ``sh`` script on the board (whatever its login
        shell is)."""
        return ["ssh", *self.config, *SSH_OPTIONS, "-T", *self.target.destination(),
                "sh -c " + shlex.quote(script)]

    def run(self, script: str, stage: str, *, timeout: float | None = 120) \
            -> subprocess.CompletedProcess:
        try:
            done = subprocess.run(self.command(script), capture_output=True, text=True,
                                  stdin=subprocess.DEVNULL, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RemoteError(f"{self.target}: no answer {stage} in {timeout:.0f} s") from None
        except FileNotFoundError:
            raise RemoteError("--on: no ssh client here (install OpenSSH: apt-get install "
                              "openssh-client)") from None
        if done.returncode == 255:
            raise _ssh_failure(self.target, done.stderr, stage)
        return done

    # --- the steps ---------------------------------------------------------------------------
    def prepare(self, needs: list[str], folder: bool = True, install: bool = False) -> dict:
        """Check the board's Python has what ``needs`` (names of :data:`NEEDS`), then make the
        temporary folder (unless ``folder=False``); with ``install``, what is missing is
        pip-installed into a venv in that folder (:meth:`install`) instead of refused.
        Returns ``{"python": version, "missing": [...]}``."""
        base = shlex.quote(self.remote_dir) if self.remote_dir else '"${TMPDIR:-/tmp}"'
        groups = [f"{name}={','.join(NEEDS[name])}" for name in needs]
        py = shlex.quote(self.python)
        allowed = "3" if install else "0"  # the probe's "something is missing": go on
        script = (f"{py} -c {shlex.quote(_PROBE)} {' '.join(map(shlex.quote, groups))}\n"
                  f"s=$?; [ $s -eq 0 ] || [ $s -eq {allowed} ] || exit $s\n")
        if folder:
            script += (f"d=$(mktemp -d {base}/{FOLDER_PREFIX}XXXXXX) || exit 101\n"
                       f'echo "folder $d"\n')
        done = self.run(script, "while connecting")
        lines = dict(line.split(" ", 1) for line in done.stdout.splitlines() if " " in line)
        version = lines.get("python", "").split(" ")[0]
        if done.returncode == 127 or (done.returncode and not version):
            raise RemoteError(f"{self.target}: no Python at {self.python!r} on the board "
                              f"({_last_line(done.stderr) or f'exit {done.returncode}'}); give "
                              f"it with --python")
        missing = lines.get("missing", "").split()
        self.installed = None if lines.get("edgeseg", "-").strip() == "-" else \
            lines["edgeseg"].strip()
        if version and tuple(int(v) for v in version.split(".")[:2]) < MIN_PYTHON:
            if folder and "folder" in lines:
                self.folder = lines["folder"].strip()  # made before the check: removed after
            raise RemoteError(f"{self.target}: the board's Python is {version}; the harness "
                              f"needs {'.'.join(map(str, MIN_PYTHON))} or newer (--python)")
        if missing and not install:
            raise RemoteError(f"{self.target}: the board's Python ({self.python}, {version}) "
                              f"lacks {', '.join(missing)}; on the board run: {self.python} -m "
                              f"pip install {' '.join(missing)} (or give --install)")
        if done.returncode == 101:
            where = self.remote_dir or "$TMPDIR or /tmp"
            raise RemoteError(f"{self.target}: cannot make a temporary folder in {where} on the "
                              f"board ({_last_line(done.stderr)})")
        if done.returncode or (folder and "folder" not in lines):
            raise RemoteError(f"{self.target}: the board's Python failed "
                              f"({_last_line(done.stderr) or f'exit {done.returncode}'})")
        if folder:
            self.folder = lines["folder"].strip()
        return {"python": version, "missing": missing}

    def install(self, packages: list[str], relay) -> None:
        """pip-install ``packages`` into a venv in the folder (seeing the board's own packages)
        and run the harness with its Python from then on."""
        venv = shlex.quote(f"{self.folder}/venv")
        # the board's own pip where it has one (seconds faster), else the venv's ensurepip
        script = (f"{shlex.quote(self.python)} -m venv --system-site-packages --without-pip "
                  f"{venv} || exit 90\n"
                  f"{venv}/bin/python -m pip --version >/dev/null 2>&1 || "
                  f"{venv}/bin/python -m ensurepip --default-pip >/dev/null || exit 90\n"
                  f"{venv}/bin/python -m pip install --disable-pip-version-check --no-input "
                  f"{' '.join(map(shlex.quote, packages))} || exit 91\n")
        process = subprocess.Popen(self.command(script), stdin=subprocess.DEVNULL,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        output = _Collect(process.stdout, relay)
        try:
            code = process.wait()
        except BaseException:
            _stop(process)
            raise
        said = _last_line(output.text())
        fix = f"{self.python} -m pip install {' '.join(packages)}"
        if _NO_SPACE in output.text():
            raise RemoteError(f"{self.target}: --install: no space left on the board in "
                              f"{self.folder.rsplit('/', 1)[0]} for {', '.join(packages)}")
        if code == 255:
            raise _ssh_failure(self.target, output.text(), "while installing")
        if code == 90:
            raise RemoteError(f"{self.target}: --install: the board's Python cannot make a venv "
                              f"({said}); install python3-venv there, or on the board run: {fix}")
        if code:
            raise RemoteError(f"{self.target}: --install: pip could not install "
                              f"{', '.join(packages)} on the board ({said}); on the board run: "
                              f"{fix}")
        self.python = f"{self.folder}/venv/bin/python"

    def upload(self, members: list[tuple[str, bytes | Path]]) -> None:
        """Stream ``(name in the folder, bytes or a local file)`` to the folder as a tar.gz."""
        total = sum(len(m) if isinstance(m, bytes) else m.stat().st_size for _, m in members)
        script = f"cd {shlex.quote(self.folder)} && tar -xzf -"
        process = subprocess.Popen(self.command(script), stdin=subprocess.PIPE,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        errors = _Collect(process.stderr)
        try:
            with tarfile.open(fileobj=process.stdin, mode="w|gz", dereference=True) as tar:
                for name, member in members:
                    if isinstance(member, bytes):
                        info = tarfile.TarInfo(name)
                        info.size, info.mode = len(member), 0o644
                        tar.addfile(info, io.BytesIO(member))
                    else:
                        tar.add(str(member), arcname=name, recursive=False)
            process.stdin.close()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the board stopped reading: its tar or ssh says why
        except BaseException:  # Ctrl-C, SIGTERM, a file that cannot be read: ssh goes too
            _stop(process)
            raise
        code = process.wait()
        stderr = errors.text()
        if _NO_SPACE in stderr:
            raise RemoteError(f"{self.target}: no space left on the board in "
                              f"{self.folder.rsplit('/', 1)[0]} (the files take "
                              f"{total / 2**20:.1f} MB; --remote-dir chooses another place)")
        if code == 255:
            raise _ssh_failure(self.target, stderr, "while copying the files")
        if code:
            raise RemoteError(f"{self.target}: copying the files failed "
                              f"({_last_line(stderr) or f'exit {code}'})")

    def bench(self, relay) -> tuple[str, str, int]:
        """Run the harness in the folder; ``relay(line)`` gets its standard error as it comes.
        Returns (stdout, stderr, the harness's exit status)."""
        folder = shlex.quote(self.folder)
        path = "" if self.use_installed else \
            f"PYTHONPATH={folder}/src${{PYTHONPATH:+:$PYTHONPATH}} "
        script = (f"cd {folder} && {path}"
                  f"{shlex.quote(self.python)} -m benchmarks.board job.json\n"
                  f"s=$?; [ $s -gt 128 ] && echo \"edgeseg-board: killed by signal $((s - 128))\""
                  f" >&2; exit $s\n")
        # standard input stays open (and unused) while the harness runs: when the connection
        # drops or this process stops, the board sees it close and stops too
        process = subprocess.Popen(self.command(script), stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        errors = _Collect(process.stderr, relay)
        try:
            stdout = process.stdout.read().decode(errors="replace")
            code = process.wait()
        except BaseException:
            _stop(process)
            raise
        return stdout, errors.text(), code

    def fetch(self, name: str, *, timeout: float = 300) -> bytes:
        """The bytes of ``name`` in the folder (a file the board's harness wrote)."""
        try:
            done = subprocess.run(self.command(f"cat {shlex.quote(f'{self.folder}/{name}')}"),
                                  capture_output=True, stdin=subprocess.DEVNULL, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RemoteError(f"{self.target}: no answer while fetching {name}") from None
        if done.returncode == 255:
            raise _ssh_failure(self.target, done.stderr.decode(errors="replace"),
                               f"while fetching {name}")
        if done.returncode:
            raise RemoteError(f"{self.target}: {name} could not be read on the board "
                              f"({_last_line(done.stderr.decode(errors='replace'))})")
        return done.stdout

    def clean(self) -> str | None:
        """Remove the folder; None when done, else why not (the board may be gone)."""
        if not self.folder or FOLDER_PREFIX not in self.folder:
            return None
        try:
            done = self.run(f"rm -rf {shlex.quote(self.folder)}", "while cleaning up", timeout=30)
        except RemoteError as error:
            return str(error)
        if done.returncode:
            return _last_line(done.stderr) or f"exit {done.returncode}"
        self.folder = None
        return None


class _Collect:
    """Read a pipe in a thread (lines to ``relay`` as they come) and keep what it said."""

    def __init__(self, pipe, relay=None):
        self.lines: list[str] = []

        def read():
            for raw in iter(pipe.readline, b""):
                line = raw.decode(errors="replace").rstrip("\n")
                self.lines.append(line)
                if relay is not None:
                    relay(line)

        self.thread = threading.Thread(target=read, daemon=True)
        self.thread.start()

    def text(self) -> str:
        self.thread.join(timeout=5)
        return "\n".join(self.lines)


def _stop(process: subprocess.Popen) -> None:
    """End an ssh that is still running (this process is unwinding: Ctrl-C, SIGTERM)."""
    if process.poll() is None:
        process.kill()
        process.wait()


def _local_models(models, reference) -> tuple[list[Path], Path | None, Path | None]:
    """(the files for the board, the reference among them, a Keras reference that runs here)."""
    paths = [Path(p) for p in models]
    reference = Path(reference) if reference else None
    if reference is not None and reference not in paths:
        paths.append(reference)
    here = None
    for path in paths:
        if not path.exists():
            raise EdgesegError(f"{path}: no such model file")
        if path.is_dir() or path.suffix.lower() not in RUNTIME_OF:
            if path != reference:
                raise EdgesegError(f"{path}: a board runs .tflite and .onnx files (--on); "
                                   f"convert it first (edgeseg convert), or make it the "
                                   f"--reference, which runs here")
            here = path
    boards = [p for p in paths if p != here]
    if not boards:
        raise EdgesegError("--on: no .tflite or .onnx file to run on the board")
    return boards, None if here else reference, here


def _images_npz(pairs, extra: dict) -> bytes:
    import numpy as np

    buffer = io.BytesIO()
    arrays = dict(extra)
    for index, (image, mask) in enumerate(pairs):
        arrays[f"image_{index}"], arrays[f"mask_{index}"] = image, mask
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def bench_remote(models, target: str | Target, *, data="synthetic-nuclei", reference=None,
                 threads=(1,), runs: int = 50, warmup: int = 5, samples: int = 32,
                 frame=None, sustained=None,
                 image_size: int | None = None, seed: int = 0, layout: str | None = None,
                 overlap: int = 32, progress: bool = True, contract: dict | None = None,
                 load=None, python: str = "python3", install: bool = False,
                 remote_dir: str | None = None, ssh_config=None, echo=print) -> dict:
    """:func:`benchmarks.harness.bench` on a board over SSH; returns the bench JSON, each row
    with ``target`` (the URL) and ``machine`` (the board's), the top-level ``machine`` the
    board's, and ``targets`` ({URL: machine}).

    The images are made or read here (as a local run would), so a file scores the same Dice on
    the board as here; the files' ``path`` in the rows are the local ones. ``load``: how a
    reference that runs here is opened (see :func:`benchmarks.harness.bench`).

        >>> report = bench_remote(["model_int8.tflite"], "ssh://pi@raspberrypi.local",
        ...                       threads=(1, 4))  # doctest: +SKIP
    """
    from edgeseg.device import machine
    from edgeseg.device.benchjson import app_lines, text_table, validate

    target = target if isinstance(target, Target) else parse_target(str(target))
    if runs < 1 or warmup < 0 or any(t < 1 for t in threads):
        raise EdgesegError("--runs, --warmup and --threads must be positive")
    paths, reference_path, here = _local_models(models, reference)
    needs = ["numpy", *sorted({RUNTIME_OF[p.suffix.lower()] for p in paths})]
    if frame is not None:  # a frame is resized as an app would: Pillow
        needs.append("pillow")

    board = Board(target, ssh_config=ssh_config, python=python, remote_dir=remote_dir)
    echo(f"target: {target} (Python {python})")

    def relay(line: str) -> None:  # the board's output as it comes (--quiet: warnings only)
        if line.startswith("warning: ") or (
                progress and not line.startswith(("INFO: Created TensorFlow Lite", "error: "))):
            print(f"  [{target.host}] {line}", file=sys.stderr, flush=True)

    with cleaned(board):
        # first: a board that cannot be reached or used is said at once
        missing = board.prepare(needs, install=install)["missing"]
        if missing:
            echo(f"installing {', '.join(missing)} on the board (a venv in {board.folder})")
            board.install(missing, relay)
        echo(choose_code(board))
        members, names, data_name, pairs, size, opened = _bundle(
            paths, reference_path, here, data, image_size, samples, seed, layout, contract,
            load, {"threads": list(threads), "runs": runs, "warmup": warmup,
                     "overlap": overlap, "progress": progress, "frame": frame,
                     "sustained": sustained}, sources=not board.use_installed)
        board.upload(members)
        stdout, stderr, code = board.bench(relay)
        report = board_result(board, stdout, stderr, code, names)

    from benchmarks.harness import file_size

    local = {names[p]: str(p) for p in paths}
    for row in report["results"]:
        row["path"] = next((local[n] for n in local if row["path"].endswith(n)), row["path"])
        row["target"], row["machine"] = str(target), report["machine"]
        _cost_here(row, opened.get(row["path"]))
        if row["path"].lower().endswith(".onnx"):  # with its data files, which a board without
            row["size_bytes"], row["gzip_bytes"] = file_size(Path(row["path"]))
    report["targets"] = {str(target): report["machine"]}
    if here is not None:  # the Keras reference, measured here on the same images
        from benchmarks.harness import bench
        from edgeseg.device.scoring import Pairs

        mine = bench([here], data=Pairs(data_name, pairs), threads=threads, runs=runs,
                     frame=frame, sustained=sustained,
                     warmup=warmup, samples=0, image_size=size, overlap=overlap,
                     progress=progress, contract=contract, load=load,
                     echo=lambda line: None)
        for row in mine["results"]:
            row["target"], row["machine"] = "local", mine["machine"]
        report["results"] = mine["results"] + report["results"]
        report["targets"]["local"] = mine["machine"]
    validate(report, f"{target}'s report")

    echo(f"machine: {machine.line(report['machine'])}")
    echo(f"data: {data_name}, {len(pairs)} images "
         f"({', '.join(sorted({f'{m.shape[0]}x{m.shape[1]}' for _, m in pairs}))})")
    echo(text_table(report))
    for line in app_lines(report):
        echo(line)
    return report


@contextlib.contextmanager
def cleaned(board: Board):
    """Remove the board's temporary folder after the block, failed or not. When the block failed
    with a one-line error and the folder could not be removed (the board is gone), the same line
    says so; a folder left after a success is a warning."""
    try:
        yield board
    except EdgesegError as error:
        if board.clean():
            error.args = (f"{error} ({board.folder} may remain on the board)",)
        raise
    except BaseException:  # Ctrl-C, SIGTERM
        if board.clean():
            print(f"note: {board.target}: {board.folder} may remain on the board",
                  file=sys.stderr)
        raise
    left = board.clean()
    if left:
        print(f"warning: {board.target}: the temporary folder {board.folder} could not be removed "
              f"({left})", file=sys.stderr)


def check_board(target, *, python: str = "python3", remote_dir: str | None = None,
                ssh_config=None, install: bool = False) -> None:
    """Reach the board and check its Python has numpy and LiteRT, or that ``install`` will get
    them (before a long run that will benchmark there); raises the one-line
    :class:`RemoteError` when not."""
    Board(target if isinstance(target, Target) else parse_target(str(target)),
          ssh_config=ssh_config, python=python, remote_dir=remote_dir) \
        .prepare(["numpy", "ai-edge-litert"], folder=False, install=install)


def _opened(path: Path, contract: dict | None):
    """A model opened here only to read its input and classes (verified first, as every file
    edgeseg opens; LiteRT without its default delegate, which would announce itself)."""
    from edgeseg.device import runtime

    if path.suffix.lower() == ".tflite":
        model = runtime.LiteRTModel(path, 1, contract=contract, delegates=False)
        model.keep_edgeseg_cards = True
        return model
    return runtime.load(path, num_threads=1, contract=contract, foreign_only=True)


def choose_code(board: Board) -> str:
    """Decide (and say) whether the board's installed edgeseg runs the harness: only when its
    device code is exactly this one's; otherwise this one's sources go with the files."""
    if board.installed:
        version, _, digest = board.installed.partition(" ")
        if digest == sources_digest():
            board.use_installed = True
            return f"harness: the board's installed edgeseg {version} (the same device code)"
        return (f"harness: sent with the files (the board's edgeseg {version} has other device "
                f"code than this one)")
    return "harness: sent with the files (no edgeseg installed for that Python)"


def model_members(paths) -> tuple[dict, list[tuple[str, Path]]]:
    """The model files as they go to a board: ({local path: its name there}, tar members), each
    at ``models/<i>/<its folder's name>/<name>`` with what belongs with it: the card beside it,
    and an .onnx's external data files, placed relative to it as on disk."""
    from edgeseg.device.formats.onnx import external_data

    names, members = {}, []
    for index, path in enumerate(paths):
        name = f"models/{index}/{path.resolve().parent.name or 'model'}/{path.name}"
        names[path] = name
        members.append((name, path))
        if path.suffix.lower() == ".onnx":
            folder = path.resolve().parent
            members += [(f"{name.rsplit('/', 1)[0]}/{p.relative_to(folder).as_posix()}", p)
                        for p in external_data(path)]
        card = path.with_name(path.name + ".json")
        if card.is_file():
            members.append((name + ".json", card))
    return names, members


def harness_members() -> list[tuple[str, Path]]:
    """The device side as it goes to a board: ``(src/<relative path>, this installation's file)``
    (the board's harness runs with ``src`` on its path)."""
    return [(f"src/{relative.as_posix()}", _source(relative)) for relative in device_sources()]


def sources_digest() -> str:
    """sha256 of the device side as it ships (:func:`device_sources`, each name and its bytes):
    what the board's probe computes of an installed edgeseg."""
    import hashlib

    digest = hashlib.sha256()
    for name, path in harness_members():
        digest.update(name[len("src/"):].encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _bundle(paths, reference_path, here, data, image_size, samples, seed, layout, contract,
            load, settings, sources: bool = True):
    """What goes to the board: (tar members, {local path: its name there}, the data's name,
    the images, their side), the images made or read here exactly as a local run would score
    them; with ``here`` (a Keras reference), its predictions of them too."""
    from benchmarks.harness import bench_images, model_variant, task
    from edgeseg.device import runtime
    from edgeseg.device.scoring import labels_of

    opened = [_opened(p, contract) for p in paths]
    reference = None
    if here is not None:
        reference = (load or runtime.load)(here, contract=contract, foreign_only=True)
    size, channels, num_classes = task(opened + ([reference] if reference else []), image_size)
    data_name, pairs = bench_images(data, size, channels, num_classes, samples, seed, layout)
    if not pairs:
        raise EdgesegError(f"{data}: no samples to benchmark on")
    extra = {}
    if reference is not None:
        for index, (image, _) in enumerate(pairs):
            extra[f"reference_{index}"] = labels_of(reference, image, settings["overlap"])
    names, models = model_members(paths)
    members: list[tuple[str, bytes | Path]] = (harness_members() if sources else []) + models
    job = {"dataset": data_name, "models": [names[p] for p in paths],
           "reference": names[reference_path] if reference_path else None,
           "reference_name": model_variant(reference) if reference is not None else None,
           "image_size": size, "contract": contract or {}, **settings}
    members += [("data.npz", _images_npz(pairs, extra)), ("job.json", json.dumps(job).encode())]
    return members, names, data_name, pairs, size, {str(p): m for p, m in zip(paths, opened)}


def device_sources() -> list[Path]:
    """The device side's files, relative to the folder that holds the packages: the package
    ``edgeseg`` itself (its ``__init__.py``), everything in ``edgeseg/device/``, and the harness
    (the modules directly in ``benchmarks/``; its ``studies/`` are host-side). Read from the
    files of this installation, so a module added there ships with no list to update."""
    import benchmarks
    import edgeseg

    edgeseg_dir = Path(edgeseg.__file__).resolve().parent
    harness_dir = Path(benchmarks.__file__).resolve().parent
    files = [Path("edgeseg/__init__.py")]
    files += [Path("edgeseg") / p.relative_to(edgeseg_dir)
              for p in sorted((edgeseg_dir / "device").rglob("*.py"))]
    files += [Path("benchmarks") / p.name for p in sorted(harness_dir.glob("*.py"))]
    return files


def _source(relative: Path) -> Path:
    """The file of this installation behind ``edgeseg/device/card.py`` or
    ``benchmarks/harness.py``."""
    import importlib

    package, *rest = relative.parts
    return Path(importlib.import_module(package).__file__).resolve().parent.joinpath(*rest)


def _cost_here(row: dict, model) -> None:
    """MACs and params the board could not read (an .onnx where the onnx package is missing),
    read here from the same file at the size it ran at."""
    if row.get("macs") is not None or model is None:
        return
    macs, params, sparsity = model.cost(tuple(row["input_shape"][1:3]))
    if macs:
        p50 = row["latency_ms"]["p50"]
        row.update(macs=macs, params=params, cost_read_here=True,
                   gmacs_per_s=macs / (p50 / 1e3) / 1e9 if p50 > 0 else None)
    if row.get("sparsity") is None:
        row["sparsity"] = sparsity


def board_result(board: Board, stdout: str, stderr: str, code: int, names: dict) -> dict:
    """The JSON the board's harness printed (the bench JSON), or the one line that says why
    there is none."""
    from benchmarks.board import MARK

    target = board.target

    def local(text: str) -> str:  # the board's paths of the files -> the user's
        for path, name in names.items():
            text = text.replace(f"{board.folder}/{name}", str(path))
        return text.replace(f"{board.folder}/", "")

    said = local(_last_line(stderr))
    if _NO_SPACE in stderr:
        raise RemoteError(f"{target}: no space left on the board in "
                          f"{board.folder.rsplit('/', 1)[0]} ({said})")
    killed = re.search(r"edgeseg-board: killed by signal (\d+)", stderr)
    if killed:
        number = int(killed.group(1))
        hint = " (out of memory?)" if number == 9 else ""
        raise RemoteError(f"{target}: the harness on the board was killed by signal {number}"
                          f"{hint}; nothing was written")
    if code == 255:
        raise _ssh_failure(target, stderr, "during the benchmark")
    errors = [line[len("error: "):] for line in stderr.splitlines() if line.startswith("error: ")]
    if code == 2 and errors:
        raise EdgesegError(f"{target}: {local(errors[-1])}")
    if code:
        raise RemoteError(f"{target}: the harness failed on the board (exit {code}"
                          f"{f': {said}' if said else ''}); nothing was written")
    line = next((line for line in reversed(stdout.splitlines()) if line.startswith(MARK)), None)
    try:
        return json.loads(line[len(MARK):])
    except (TypeError, ValueError):
        raise RemoteError(f"{target}: the harness ended without a result; nothing was "
                          f"written") from None


__all__ = ["Board", "RemoteError", "Target", "bench_remote", "board_result", "check_board",
           "choose_code", "cleaned", "device_sources", "harness_members", "model_members",
           "parse_target", "sources_digest"]
