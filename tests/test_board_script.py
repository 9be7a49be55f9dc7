"""The board script's refusals and its pid check, without booting a board (quick; the board itself
is tests/test_board.py)."""

from __future__ import annotations

import os
import subprocess
import sys


def _script(*args, env=None):
    return subprocess.run([sys.executable, "-m", "benchmarks.boards.qemu", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=120)


def test_cpu_max_is_refused_in_one_line(tmp_path):
    done = _script("start", "--state", tmp_path / "board", "--cpu", "max")
    assert done.returncode == 3 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "choose a real core model" in lines[0] and "SME" in lines[0]
    assert not (tmp_path / "board").exists()


def test_a_state_folder_with_something_in_it_is_refused(tmp_path):
    (tmp_path / "mine.txt").write_text("the user's")
    done = _script("start", "--state", tmp_path)
    assert done.returncode == 3 and "not an empty folder" in done.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["mine.txt"]


def test_no_qemu_is_one_line_naming_the_package(tmp_path):
    bare = tmp_path / "bin"
    bare.mkdir()
    for tool in ("ssh", "ssh-keygen"):  # what start needs before QEMU, and nothing else
        found = subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True,
                               text=True).stdout.strip()
        if found:
            os.symlink(found, bare / tool)
    done = _script("start", "--state", tmp_path / "board",
                   env={**os.environ, "PATH": str(bare)})
    assert done.returncode == 3
    assert done.stderr.strip() == "board: no qemu-system-aarch64 here (apt-get install " \
                                  "qemu-system-arm)"


def test_stop_ends_only_the_qemu_it_started(tmp_path):
    """A pid file that names another process (reused pid, a hand-edited file) kills nothing; the
    files start wrote are removed, anything else in the folder stays."""
    from benchmarks.boards import qemu

    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / "qemu.pid").write_text(f"{other.pid}\n")
        (tmp_path / "address").write_text("ssh://edgeseg@127.0.0.1:1\n")
        (tmp_path / "mine.txt").write_text("the user's")
        assert qemu.stop(tmp_path) is False
        assert other.poll() is None
        assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt"]
    finally:
        other.kill()
        other.wait()


def test_the_image_is_named_by_its_recipe(monkeypatch):
    from benchmarks.boards import qemu

    first = qemu.image_dir()
    monkeypatch.setattr(qemu, "PACKAGES", qemu.PACKAGES + ("vim",))
    assert qemu.image_dir() != first
    monkeypatch.setenv("EDGESEG_CACHE", "/elsewhere")
    assert str(qemu.image_dir()).startswith("/elsewhere/boards/aarch64-bookworm-")
