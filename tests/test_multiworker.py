"""MultiWorkerMirroredStrategy: two worker processes on localhost train one model together."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow  # over 20 s on 2 cores: the quick suite stays well under 15 min
def test_two_workers_on_localhost_train_a_tiny_model(tmp_path):
    workers = [f"localhost:{port}" for port in _free_ports(2)]
    out = tmp_path / "run"
    args = [sys.executable, "-m", "edgeseg.cli", "train", "--data", "synthetic-nuclei",
            "--n-train", "16", "--n-val", "4", "--input-size", "32", "--epochs", "2",
            "--no-check", "--batch-size", "4", "-o", "alpha=0.25", "--out", str(out)]
    procs = []
    for index in range(2):
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_CONFIG": json.dumps(
            {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})}
        procs.append(subprocess.Popen(args, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    outputs = []
    for proc in procs:
        try:
            outputs.append(proc.communicate(timeout=240)[0])
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            pytest.fail("the two workers did not finish in 240 s")
    for proc, output in zip(procs, outputs):
        assert proc.returncode == 0, output[-3000:]
    assert "validation Dice" in outputs[0]  # the chief evaluates and saves
    card = json.loads((out / "model.keras.json").read_text())
    assert card["recipe"]["strategy"] == "multi_worker" and card["recipe"]["replicas"] == 2
    assert (out / "model.keras").exists()
    assert not (out / ".worker-1").exists()  # the other worker cleans up its scratch space
    history = (out / "history.csv").read_text().splitlines()
    assert len(history) == 3  # header + 2 epochs
