"""``edgeseg bench --on ssh://...`` against a real OpenSSH server on 127.0.0.1 (no mock transport).

A session fixture starts ``/usr/sbin/sshd`` as the current user on a free port with a throwaway
host key and user key, its own sshd_config and an ssh config file for the client (``-F``), so the
user's own ~/.ssh is never read or written. Without sshd (``apt-get install openssh-server``) the
tests skip and say so. The "board" Python is this one run with ``-S`` and only numpy and LiteRT
visible (Pillow, click, TensorFlow and onnx blocked): a remote run proves the copied sources are
all the harness needs.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

pytestmark = pytest.mark.board  # with the other board tests, in .ci/run's second step
SSHD = "/usr/sbin/sshd"
QUICK = ["--runs", "3", "--warmup", "1", "--samples", "4", "--quiet"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return " ".join(path.with_suffix(".pub").read_text().split()[:2])


def _client_config(where: Path, known_hosts: Path, key: Path) -> Path:
    where.write_text(f"Host *\n  IdentityFile {key}\n  IdentitiesOnly yes\n"
                     f"  UserKnownHostsFile {known_hosts}\n  GlobalKnownHostsFile /dev/null\n"
                     f"  StrictHostKeyChecking yes\n")
    return where


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    """A real sshd on 127.0.0.1 for the session: url, client configs, a strict board Python."""
    for tool in (SSHD, shutil.which("ssh"), shutil.which("ssh-keygen")):
        if not tool or not Path(tool).exists():
            pytest.skip("OpenSSH server or client not installed (apt-get install openssh-server)")
    tmp = tmp_path_factory.mktemp("sshd")
    host_key = _keygen(tmp / "host_key")
    _keygen(tmp / "user_key")
    _keygen(tmp / "other_key")
    shutil.copy(tmp / "user_key.pub", tmp / "authorized_keys")
    port = _free_port()
    (tmp / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {tmp / 'host_key'}\n"
        f"PidFile {tmp / 'sshd.pid'}\nAuthorizedKeysFile {tmp / 'authorized_keys'}\n"
        f"StrictModes no\nUsePAM no\nPasswordAuthentication no\n"
        f"KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n")
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", exist_ok=True)  # privilege separation, when started as root
    log = open(tmp / "sshd.log", "w")
    server = subprocess.Popen([SSHD, "-f", str(tmp / "sshd_config"), "-D", "-e"], stdout=log,
                              stderr=subprocess.STDOUT)
    known = tmp / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {host_key}\n")
    config = _client_config(tmp / "ssh_config", known, tmp / "user_key")
    user = getpass.getuser()
    deadline = time.time() + 10
    while True:
        done = subprocess.run(["ssh", "-F", str(config), "-o", "BatchMode=yes", "-p", str(port),
                               f"{user}@127.0.0.1", "true"], capture_output=True, text=True)
        if done.returncode == 0:
            break
        if server.poll() is not None or time.time() > deadline:
            server.kill()
            pytest.skip(f"sshd did not start here: {(tmp / 'sshd.log').read_text()[-300:]}"
                        f"{done.stderr[-200:]}")
        time.sleep(0.1)

    # the board's Python: this interpreter without site (-S), numpy and LiteRT on its path, and
    # what a board would not have blocked
    blocked = tmp / "blocked"
    for name in ("PIL", "click", "tensorflow", "tf_keras", "onnx", "edgeseg_train"):
        (blocked / name).mkdir(parents=True)
        (blocked / name / "__init__.py").write_text(
            f"raise ImportError('{name} is not on this board')\n")
    import ai_edge_litert
    import numpy

    sites = sorted({str(Path(m.__file__).parent.parent) for m in (numpy, ai_edge_litert)})
    board_python = tmp / "board-python"
    board_python.write_text(f'#!/bin/sh\nPYTHONPATH="$PYTHONPATH:{blocked}:{":".join(sites)}" '
                            f'exec {sys.executable} -S "$@"\n')
    board_python.chmod(0o755)
    yield SimpleNamespace(url=f"ssh://{user}@127.0.0.1:{port}", port=port, user=user, tmp=tmp,
                          config=config, known=known, host_key=host_key,
                          python=str(board_python))
    server.terminate()
    server.wait(timeout=10)
    log.close()


def _edgeseg(*args, check_one_line: bool = False):
    """``edgeseg ARGS`` in this process (the session's TensorFlow and runtimes stay loaded):
    (exit status, standard error); ``check_one_line``: standard error is one ``Error:`` line."""
    from click.testing import CliRunner

    from edgeseg.cli import cli

    result = CliRunner().invoke(cli, [str(a) for a in args])
    if check_one_line:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return SimpleNamespace(returncode=result.exit_code, stderr=result.stderr,
                           stdout=result.stdout)


def _remote(sshd, *args, config=None, python=None, remote_dir=None):
    return ["--on", sshd.url, "--ssh-config", config or sshd.config,
            "--python", python or sshd.python, *(["--remote-dir", remote_dir] if remote_dir
                                                 else []), *args]


@pytest.fixture
def board_dir(tmp_path):
    """The board's folder for temporary folders: empty again after every run, failed or not."""
    where = tmp_path / "board-tmp"
    where.mkdir()
    yield where
    assert list(where.iterdir()) == [], "the remote temporary folder was left behind"


def test_a_board_gives_the_rows_of_a_local_run(sshd, tiny_run, converted, runner, tmp_path,
                                               board_dir):
    """The Keras reference runs here, the .tflite files on the board: every figure but the times
    is the local run's, and the gate reads the report."""
    from edgeseg.cli import cli
    from edgeseg.device.benchjson import load_report

    files = [tiny_run / "model.keras", converted[("tflite", "none")][0],
             converted[("tflite", "int8")][0]]
    local, remote = tmp_path / "local.json", tmp_path / "remote.json"
    args = ["bench", *map(str, files), "--reference", str(files[0]), *QUICK]
    done = runner.invoke(cli, [*args, "--json", str(local)])
    assert done.exit_code == 0, done.output
    done = runner.invoke(cli, [*args, "--json", str(remote), *map(str, _remote(
        sshd, remote_dir=board_dir))])
    assert done.exit_code == 0, done.output
    assert f"target: {sshd.url}" in done.output and "machine: " in done.output
    here, there = load_report(local), load_report(remote)  # the gate's validation holds
    assert there["dataset"] == here["dataset"] and there["reference"] == here["reference"]
    assert set(there["targets"]) == {sshd.url, "local"}
    assert len(there["results"]) == len(here["results"]) == 3
    for a, b in zip(here["results"], there["results"]):
        assert (b["variant"], b["runtime"], b["threads"], b["path"], b["reference"]) == \
               (a["variant"], a["runtime"], a["threads"], a["path"], a["reference"])
        for key in ("dice", "dice_per_class", "iou", "dice_delta", "agreement", "macs", "params",
                    "size_bytes", "gzip_bytes", "input_shape"):
            assert b[key] == a[key], key  # the same file on the same images
        assert b["target"] == ("local" if b["format"] == "keras" else sshd.url)
        assert b["machine"]["cores"] >= 1
        assert b["latency_ms"]["p50"] > 0 and b["latency_ms"]["runs"] == 3


def test_an_onnx_on_a_board_without_the_onnx_package(sshd, converted, runner, tmp_path,
                                                     board_dir):
    """The board has ONNX Runtime but not onnx (which reads MACs): they are read here; keys are
    added (target, machine, targets), none renamed."""
    from test_bench import _check_schema

    from edgeseg.cli import cli

    out = tmp_path / "remote.json"
    done = runner.invoke(cli, ["bench", str(converted[("onnx", "none")][0]), *QUICK, "--json",
                               str(out), *map(str, _remote(sshd, remote_dir=board_dir))])
    assert done.exit_code == 0, done.output
    report = json.loads(out.read_text())
    _check_schema(report)
    assert report["results"][0]["cost_read_here"] is True


def test_a_changed_host_key_is_one_line(sshd, converted, tmp_path, board_dir):
    known = tmp_path / "known_hosts"
    other = (sshd.tmp / "other_key.pub").read_text().split()[:2]
    known.write_text(f"[127.0.0.1]:{sshd.port} {' '.join(other)}\n")
    config = _client_config(tmp_path / "config", known, sshd.tmp / "user_key")
    out = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, "-m", "edgeseg", "bench",
                           str(converted[("tflite", "int8")][0]), *QUICK, "--json", str(out),
                           *map(str, _remote(sshd, config=config, remote_dir=board_dir))],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(f"Error: {sshd.url}: its host key differs from the one in "
                                  f"your known_hosts")
    assert not out.exists()
    known.write_text("")  # not known at all
    done = _edgeseg("bench", converted[("tflite", "int8")][0], *QUICK,
                    *_remote(sshd, config=config, remote_dir=board_dir), check_one_line=True)
    assert done.returncode == 1 and "host key is unknown" in done.stderr


def test_a_key_the_board_does_not_accept_is_one_line(sshd, converted, tmp_path, board_dir):
    config = _client_config(tmp_path / "config", sshd.known, sshd.tmp / "other_key")
    out = tmp_path / "bench.json"
    done = _edgeseg("bench", converted[("tflite", "int8")][0], *QUICK, "--json", out,
                    *_remote(sshd, config=config, remote_dir=board_dir), check_one_line=True)
    assert done.returncode == 1 and "authentication failed" in done.stderr
    assert not out.exists()


def test_a_refused_connection_is_one_line(sshd, converted, tmp_path):
    url = f"ssh://{sshd.user}@127.0.0.1:{_free_port()}"
    done = _edgeseg("bench", converted[("tflite", "int8")][0], *QUICK, "--on", url,
                    "--ssh-config", sshd.config, check_one_line=True)
    assert done.returncode == 1 and f"{url}: connection refused" in done.stderr


def test_a_connection_dropped_mid_run_is_one_line_and_the_board_is_cleaned(
        sshd, converted, tmp_path, board_dir):
    """The board's Python kills its SSH session (sshd's per-connection process) once the harness
    is running: the connection drops, the command says so, the board's folder is removed."""
    killer = tmp_path / "python-that-drops-the-connection"
    killer.write_text(
        "#!/bin/sh\n"
        'case "$*" in *benchmarks.board*)\n'
        "  p=$PPID\n"  # up to sshd's process for this connection (sshd-session since 9.8)
        '  while [ "$p" -gt 1 ]; do\n'
        '    case "$(cat /proc/$p/comm)" in sshd*) break;; esac\n'
        "    p=$(cut -d' ' -f4 /proc/$p/stat)\n"
        "  done\n"
        '  (sleep 1; kill -9 "$p") >/dev/null 2>&1 &\n'
        ";;\nesac\n"
        f'exec {sshd.python} "$@"\n')
    killer.chmod(0o755)
    out = tmp_path / "bench.json"
    started = time.time()
    done = _edgeseg("bench", converted[("tflite", "int8")][0], "--runs", "100000", "--quiet",
                    "--json", out, *_remote(sshd, python=killer, remote_dir=board_dir),
                    check_one_line=True)
    assert done.returncode == 1 and "connection dropped during the benchmark" in done.stderr
    assert not out.exists() and time.time() - started < 60


def test_a_board_without_space_is_one_line(sshd, converted, tmp_path):
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(tiny)],
                             capture_output=True, text=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a tiny tmpfs here: {mounted.stderr.strip()}")
    try:
        out = tmp_path / "bench.json"
        done = _edgeseg("bench", converted[("tflite", "int8")][0], *QUICK, "--json", out,
                        *_remote(sshd, remote_dir=tiny), check_one_line=True)
        assert done.returncode == 1 and "no space left on the board in" in done.stderr
        assert not out.exists() and list(tiny.iterdir()) == []
    finally:
        subprocess.run(["umount", str(tiny)], check=False)


def test_a_board_python_without_numpy_names_the_fix(sshd, converted, tmp_path, board_dir):
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "venv")],
                   check=True)
    bare = tmp_path / "venv" / "bin" / "python"
    done = _edgeseg("bench", converted[("tflite", "int8")][0], *QUICK,
                    *_remote(sshd, python=bare, remote_dir=board_dir), check_one_line=True)
    assert done.returncode == 1
    assert f"lacks numpy, ai-edge-litert; on the board run: {bare} -m pip install numpy " \
           f"ai-edge-litert (or give --install)" in done.stderr


def test_install_puts_what_the_board_lacks_in_a_venv_of_the_folder(sshd, converted, runner,
                                                                   tmp_path, board_dir):
    """--install: the venv made on the board sees the board's own packages (here the base
    interpreter's numpy and LiteRT, so pip finds them there, offline) and runs the harness."""
    from edgeseg.cli import cli

    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "venv")],
                   check=True)
    bare = tmp_path / "venv" / "bin" / "python"
    done = runner.invoke(cli, ["bench", str(converted[("tflite", "int8")][0]), *QUICK,
                               *map(str, _remote(sshd, python=bare, remote_dir=board_dir)),
                               "--install"])
    assert done.exit_code == 0, done.output
    assert "installing numpy, ai-edge-litert on the board (a venv in " in done.output
    assert "int8" in done.output.splitlines()[-1]


@pytest.mark.parametrize("url, message", [
    ("pi@raspberrypi", "not an ssh:// URL"),
    ("ftp://pi@board", "not an ssh:// URL"),
    ("ssh://pi@board/home/pi", "names a board, not a path on it"),
    ("ssh://pi@board:99999", "the port must be a number"),
    ("ssh://pi:secret@board", "no passwords in the URL"),
    ("ssh://-oProxyCommand=x", "no valid host name"),
])
def test_a_bad_on_is_one_line_naming_the_option(converted, runner, url, message):
    from edgeseg.cli import cli

    result = runner.invoke(cli, ["bench", str(converted[("tflite", "int8")][0]), "--on", url])
    assert result.exit_code == 2 and "Invalid value for '--on'" in result.output
    assert message in result.output


def test_board_options_need_on(converted, runner):
    from edgeseg.cli import cli

    result = runner.invoke(cli, ["bench", str(converted[("tflite", "int8")][0]),
                                 "--python", "python3"])
    assert result.exit_code == 2 and "--python applies to a board: give it with --on" in \
        result.output


def test_targets_parse_as_ssh_reads_them():
    from benchmarks.remote import Target, parse_target

    assert parse_target("ssh://pi@raspberrypi.local") == Target("raspberrypi.local", "pi")
    assert parse_target("ssh://MyBoard") == Target("MyBoard")  # a ~/.ssh/config alias, as written
    assert parse_target("ssh://root@127.0.0.1:2222") == Target("127.0.0.1", "root", 2222)
    assert str(parse_target("ssh://u@[fe80::1]:22")) == "ssh://u@[fe80::1]:22"
    assert parse_target("ssh://u@host").destination() == ["--", "u@host"]


def test_a_keras_model_cannot_go_to_a_board(tiny_run, runner):
    from edgeseg.cli import cli

    result = runner.invoke(cli, ["bench", str(tiny_run / "model.keras"), "--on", "ssh://board"])
    assert result.exit_code == 2 and "a board runs .tflite and .onnx files" in result.output


def test_parity_compares_every_probability_of_a_board_with_this_machine(sshd, converted,
                                                                        board_dir):
    """The ARM parity study's path (benchmarks/boards/parity.py), here with this machine as the
    board: the same runtime and file give the same probabilities, and the kernels are named."""
    from benchmarks.boards.parity import markdown, parity

    files = [converted[("tflite", "none")][0], converted[("tflite", "int8")][0]]
    said = []
    report = parity(files, sshd.url, ssh_config=sshd.config, python=sshd.python, samples=2,
                    remote_dir=str(board_dir), echo=said.append)
    assert said == ["harness: sent with the files (no edgeseg installed for that Python)"]
    assert [row["path"] for row in report["rows"]] == [str(f) for f in files]
    for row in report["rows"]:
        assert row["max_abs_diff"] == 0.0 and row["labels_differing"] == 0
        assert row["pixels"] == 2 * 64 * 64
        assert row["kernels_board"] == row["kernels_here"]
        assert row["kernels_board"]["delegate"] == "XNNPACK"
    assert "XNNPACK (" in markdown(report)


def test_a_board_with_this_edgeseg_installed_runs_its_own(sshd, converted, tmp_path, board_dir):
    """A board Python with this edgeseg installed (here: this interpreter) runs the harness from
    its installation, and no sources are sent; the rows are those of the sent-sources run."""
    files = [converted[("tflite", "int8")][0]]
    reports = {}
    for name, python in (("installed", sys.executable), ("sent", sshd.python)):
        done = _edgeseg("bench", *files, *QUICK, "--json", tmp_path / f"{name}.json",
                        *_remote(sshd, python=python, remote_dir=board_dir))
        assert done.returncode == 0, done.stderr
        reports[name] = json.loads((tmp_path / f"{name}.json").read_text())
        expected = ("harness: the board's installed edgeseg" if name == "installed" else
                    "harness: sent with the files (no edgeseg installed")
        assert expected in done.stdout, done.stdout
    a, b = reports["installed"]["results"][0], reports["sent"]["results"][0]
    assert (a["dice"], a["kernels"]) == (b["dice"], b["kernels"])


def test_an_onnx_with_external_data_travels_with_its_data_file(sshd, converted, tmp_path,
                                                               board_dir):
    """Issue 29, finding 1: the board gets model.onnx.data beside model.onnx, and scores the
    weights a local run scores."""
    from test_user_models import _external_data_copy

    model = _external_data_copy(converted[("onnx", "none")][0], tmp_path / "export")
    reports = {}
    for name, extra in (("here", []), ("there", _remote(sshd, remote_dir=board_dir))):
        done = _edgeseg("bench", model, *QUICK, "--json", tmp_path / f"{name}.json", *extra)
        assert done.returncode == 0, done.stderr
        reports[name] = json.loads((tmp_path / f"{name}.json").read_text())["results"][0]
    assert reports["there"]["dice"] == reports["here"]["dice"]
    assert reports["there"]["size_bytes"] == reports["here"]["size_bytes"]
