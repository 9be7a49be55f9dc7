"""An emulated aarch64 board (``benchmarks/boards/qemu.py``) reached over SSH, as a user reaches a Pi.

The board is a Debian arm64 machine in QEMU (TCG, a real core model), with this checkout's wheel
installed in a venv from the board's own aarch64 wheels (numpy, Pillow, click, LiteRT, ONNX
Runtime): the base install a user's ``pip install edgeseg`` gives a board. ``.ci/run`` starts it
and runs these tests with ``EDGESEG_BOARD`` (its ``ssh://`` address) and ``EDGESEG_BOARD_STATE``
(its state folder: ssh config, pid); without them they skip, saying why. Emulated time is no
timing: these tests check figures, files and messages, never a latency.

The last test kills the board's QEMU mid-run: it runs last (file order) and needs no board after.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

pytestmark = pytest.mark.board
QUICK = ["--runs", "2", "--warmup", "1", "--samples", "4", "--quiet"]


@pytest.fixture(scope="session")
def board():
    """The running board, with this checkout's wheel installed on it (installed here once)."""
    from benchmarks.boards import qemu

    address, state = os.environ.get("EDGESEG_BOARD"), os.environ.get("EDGESEG_BOARD_STATE")
    if not address or not state:
        pytest.skip(os.environ.get("EDGESEG_BOARD_UNAVAILABLE") or
                    "no board: start one with python -m benchmarks.boards.qemu start --state DIR, "
                    "then set EDGESEG_BOARD=$(cat DIR/address) EDGESEG_BOARD_STATE=DIR")
    state = Path(state)
    from benchmarks.remote import Board, RemoteError, parse_target, sources_digest

    probe = Board(parse_target(address), ssh_config=state / "ssh_config",
                  python=f"{qemu.VENV}/bin/python")
    try:
        probe.prepare(["numpy"], folder=False)
        installed = (probe.installed or "").partition(" ")[2]
    except RemoteError as error:
        if "no Python at" not in str(error):
            pytest.fail(f"the board at {address} does not answer: {error}")
        installed = None
    if installed != sources_digest():  # none yet, or another checkout's: the real install path
        qemu.install(state)
    cpu = json.loads((state / "board.json").read_text())["cpu"]
    return SimpleNamespace(url=address, state=state, config=state / "ssh_config", cpu=cpu,
                           python=f"{qemu.VENV}/bin/python")


def _on(board, *, python=None, remote_dir=None):
    return ["--on", board.url, "--ssh-config", str(board.config), "--python",
            python or board.python, *(["--remote-dir", remote_dir] if remote_dir else [])]


def _edgeseg(*args, timeout=1200):
    """The CLI in a child process (as a user runs it): (exit status, stdout, stderr)."""
    done = subprocess.run([sys.executable, "-m", "edgeseg.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)
    return done


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def files(tiny_run, converted, tmp_path_factory):
    """fp32, fp16 and int8 .tflite files of the tiny model, and a pruned model's int8 one."""
    out = tmp_path_factory.mktemp("board-files")
    pruned = out / "pruned"
    done = _edgeseg("optimize", tiny_run / "model.keras", "--prune", "0.5", "--steps", "40",
                    "--data", "synthetic-nuclei", "--input-size", "64", "--out", pruned)
    assert done.returncode == 0, done.stderr
    pruned_int8 = out / "model_pruned_int8.tflite"
    done = _edgeseg("convert", pruned / "model.keras", "--quant", "int8", "--calib-samples", "8",
                    "--verify-samples", "4", "--out", pruned_int8)
    assert done.returncode == 0, done.stderr
    return [converted[("tflite", q)][0] for q in ("none", "fp16", "int8")] + [pruned_int8]


def _bench(files, json_path, *extra):
    done = _edgeseg("bench", *files, "--reference", files[0], *QUICK, "--json", json_path,
                    *extra)
    assert done.returncode == 0, done.stderr[-2000:]
    return done, json.loads(Path(json_path).read_text())


def test_the_board_scores_every_file_as_this_machine_does(board, files, tmp_path):
    """fp32, fp16, int8 and pruned int8 on the board's ARM kernels (XNNPACK, as the runtime says):
    the same Dice, the same agreement with fp32 as here; its machine line says aarch64, the core
    and that its latency is not a timing; the board's installed edgeseg ran the harness."""
    _, here = _bench(files, tmp_path / "here.json")
    done, there = _bench(files, tmp_path / "there.json", *_on(board))
    assert "harness: the board's installed edgeseg" in done.stdout, done.stdout
    assert "emulated: latency is not a timing" in done.stdout
    machine = there["machine"]
    assert machine["arch"] == "aarch64" and machine["emulated"] == "qemu-tcg"
    core = {"cortex-a72": "Cortex-A72", "cortex-a76": "Cortex-A76", "cortex-a53": "Cortex-A53",
            "cortex-a57": "Cortex-A57", "neoverse-n1": "Neoverse-N1"}[board.cpu]
    assert core in machine["cpu"], machine
    assert len(there["results"]) == len(here["results"]) == len(files)
    for a, b in zip(here["results"], there["results"]):
        assert (a["variant"], a["path"]) == (b["variant"], b["path"])
        assert b["target"] == board.url and b["kernels"]["delegate"] == "XNNPACK", b["kernels"]
        print(f"{Path(a['path']).name}: Dice x86 {a['dice']:.6f}, {board.cpu} {b['dice']:.6f}; "
              f"agreement with fp32 x86 {a['agreement']:.6%}, {board.cpu} {b['agreement']:.6%}")
        # int8 and pruned int8: the same label maps (agreement with the same fp32 labels and the
        # same Dice); floats: within a pixel's flip of the threshold
        tolerance = 0.0 if "int8" in a["variant"] else 1e-4
        assert abs(a["dice"] - b["dice"]) <= tolerance, (a["variant"], a["dice"], b["dice"])
        assert abs(a["agreement"] - b["agreement"]) <= max(tolerance, 1e-9), a["variant"]


def test_a_different_file_on_the_board_is_caught(board, files, tmp_path):
    """The comparison above can fail: the board fed the fp32 file scores the int8 row's images
    with other labels than this machine's int8 run."""
    _, here = _bench(files[2:3], tmp_path / "here.json")
    _, there = _bench(files[0:1], tmp_path / "there.json", *_on(board))
    assert here["results"][0]["dice"] != there["results"][0]["dice"]


def test_an_edgeseg_with_other_device_code_on_the_board_gets_the_sources(board, files, tmp_path):
    """A board whose installed edgeseg is another version's: this one's sources go with the files
    (and the figures are this version's)."""
    from benchmarks.boards import qemu

    wrapper = "/home/edgeseg/other-python"  # its edgeseg: an older one, after the sent sources
    script = (f"mkdir -p ~/other/edgeseg && echo '__version__ = \"0.0.1\"' > "
              f"~/other/edgeseg/__init__.py && cat > {wrapper} && chmod +x {wrapper}")
    text = (f'#!/bin/sh\nPYTHONPATH="${{PYTHONPATH:+$PYTHONPATH:}}$HOME/other" '
            f'exec {qemu.VENV}/bin/python "$@"\n')
    assert qemu.ssh(board.state, script, stdin=text.encode()).returncode == 0
    done, there = _bench(files[2:3], tmp_path / "there.json", *_on(board, python=wrapper))
    assert "harness: sent with the files (the board's edgeseg" in done.stdout, done.stdout
    assert there["results"][0]["kernels"]["delegate"] == "XNNPACK"


def test_predict_on_the_board_tiles_as_here(board, files, tmp_path):
    """``edgeseg predict`` of the base install on the board: an image larger than the model's
    input, tiled, gives this machine's mask pixel for pixel."""
    from PIL import Image

    from benchmarks.boards import qemu

    synth = tmp_path / "data"
    done = _edgeseg("data", "synth", "--kind", "nuclei", "--out", synth, "--n", "1",
                    "--size", "150")
    assert done.returncode == 0, done.stderr
    image = sorted((synth / "images").iterdir())[0]
    model = files[2]
    done = _edgeseg("predict", model, image, "--out", tmp_path / "here")
    assert done.returncode == 0, done.stderr
    mask_name = f"{image.stem}_mask.png"
    here = np.asarray(Image.open(tmp_path / "here" / mask_name))

    folder = qemu.ssh(board.state, "mktemp -d").stdout.decode().strip()
    try:
        for local in (model, image):
            sent = qemu.ssh(board.state, f"cat > {folder}/{local.name}",
                            stdin=local.read_bytes())
            assert sent.returncode == 0, sent.stderr
        run = qemu.ssh(board.state, f"cd {folder} && {qemu.VENV}/bin/edgeseg predict "
                                    f"{shlex.quote(model.name)} {shlex.quote(image.name)} "
                                    f"--out out >&2 && cat out/{shlex.quote(mask_name)}",
                       timeout=900)
    finally:
        qemu.ssh(board.state, f"rm -rf {folder}")
    assert run.returncode == 0, run.stderr.decode(errors="replace")[-1500:]
    (tmp_path / "there.png").write_bytes(run.stdout)
    there = np.asarray(Image.open(tmp_path / "there.png"))
    assert here.shape == there.shape == (150, 150)
    differing = int((here != there).sum())
    print(f"predict, {model.name}, 150x150 tiled at 64: {differing} pixels differ")
    assert differing == 0


def test_a_board_python_without_the_runtime_is_one_line(board, files, tmp_path):
    """The board's system Python (no numpy, no LiteRT): one line with the fix, nothing written."""
    done = _edgeseg("bench", files[2], *QUICK, "--json", tmp_path / "x.json",
                    *_on(board, python="python3"))
    lines = _error_lines(done.stderr)
    assert done.returncode != 0 and len(lines) == 1, done.stderr
    assert "lacks numpy, ai-edge-litert" in lines[0] and board.url in lines[0]
    assert not (tmp_path / "x.json").exists()


def test_a_full_disk_on_the_board_is_one_line(board, files, tmp_path):
    """``/mnt/full`` on the board (a 256 KiB file system), filled up first: the copy fails there,
    one line, and the filler is all that is left in it."""
    from benchmarks.boards import qemu

    qemu.ssh(board.state, "dd if=/dev/zero of=/mnt/full/filler bs=4k 2>/dev/null; true")
    try:
        done = _edgeseg("bench", files[0], *QUICK, "--json", tmp_path / "x.json",
                        *_on(board, remote_dir="/mnt/full"))
        left = qemu.ssh(board.state, "ls /mnt/full").stdout.decode().split()
    finally:
        qemu.ssh(board.state, "rm -f /mnt/full/filler")
    lines = _error_lines(done.stderr)
    assert done.returncode != 0 and len(lines) == 1, done.stderr
    assert "no space left on the board in /mnt/full" in lines[0], lines[0]
    assert not (tmp_path / "x.json").exists()
    assert left == ["filler"]


def test_the_board_killed_mid_run_is_one_line(board, files, tmp_path):
    """QEMU killed while the harness runs (a board losing power): one line, nothing written.
    Runs last: the board is gone after it."""
    from benchmarks.boards import qemu

    process = subprocess.Popen(
        [sys.executable, "-m", "edgeseg.cli", "bench", str(files[0]), "--runs", "100000",
         "--warmup", "1", "--samples", "2", "--quiet", "--json", str(tmp_path / "x.json"), *_on(board)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:  # until the harness is timing on the board
        running = qemu.ssh(board.state, "pgrep -f 'benchmarks.board job.json'", timeout=60)
        if running.returncode == 0:
            break
        assert process.poll() is None, process.communicate()
        time.sleep(3)
    time.sleep(5)
    pid = qemu._pid(board.state)  # noqa: SLF001 - the board's own pid check
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    _, stderr = process.communicate(timeout=120)
    lines = _error_lines(stderr)
    assert process.returncode != 0 and len(lines) == 1, stderr
    assert board.url in lines[0] and "nothing was written" in lines[0], lines[0]
    assert not (tmp_path / "x.json").exists()
