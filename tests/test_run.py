"""`edgeseg run`: an interrupted run resumes; its settings are checked; bad options are refused."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from edgeseg.cli import cli


def _run_args(out, *extra):
    return [sys.executable, "-m", "edgeseg.cli", "run", "--quick", "--until", "train", "--out",
            str(out), "--threads", "1", *extra]


@pytest.mark.slow  # over 20 s on 2 cores: the quick suite stays well under 15 min
def test_a_run_killed_mid_training_resumes_on_rerun(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen(_run_args(out), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    backup = out / "train" / "backup"
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None:
        if backup.is_dir() and any(backup.rglob("*.index")):  # an epoch is backed up
            break
        time.sleep(0.2)
    if proc.poll() is not None:
        pytest.fail("the run ended before an epoch was backed up")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "train" / "model.keras").exists()

    done = subprocess.run(_run_args(out), env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "train: resuming mobile_unet" in done.stdout
    with (out / "train" / "history.csv").open() as handle:
        epochs = [int(row["epoch"]) for row in csv.DictReader(handle)]
    chunks = json.loads((out / "train" / "model.keras.json").read_text())["recipe"]["plan"]["chunks"]
    assert epochs == list(range(chunks))  # each chunk once: the rerun did not start over
    assert (out / "train" / "model.keras").exists()

    again = subprocess.run(_run_args(out), env=env, capture_output=True, text=True, timeout=300)
    assert "train: " in again.stdout and "exists (skipped; --force redoes it)" in again.stdout


def test_a_rerun_with_other_settings_is_refused(tmp_path, runner):
    out = tmp_path / "run"
    assert runner.invoke(cli, ["run", "--quick", "--until", "data", "--out", str(out)]).exit_code == 0
    result = runner.invoke(cli, ["run", "--until", "data", "--out", str(out)])
    assert result.exit_code == 2
    assert "holds a run with other settings" in result.output
    threads = runner.invoke(cli, ["run", "--quick", "--until", "data", "--threads", "1",
                                  "--out", str(out)])
    assert threads.exit_code == 2
    assert "other settings (threads [1, 2] -> [1]); rerun it with its own" in \
        " ".join(threads.output.split())


def test_run_takes_height_x_width_as_convert_does(tmp_path, runner):
    out = tmp_path / "run"
    result = runner.invoke(cli, ["run", "--quick", "--until", "data", "--input-size", "48x64",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "run.json").read_text())["input_size"] == [48, 64]
    again = runner.invoke(cli, ["run", "--quick", "--until", "data", "--input-size", "48x64",
                                "--out", str(out)])  # the same settings: the same run
    assert again.exit_code == 0, again.output


@pytest.mark.slow
def test_a_run_at_height_x_width_converts_at_that_size(tmp_path, runner):
    out = tmp_path / "run"
    result = runner.invoke(cli, ["run", "--quick", "--until", "convert", "--input-size", "48x64",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "files at 48x64" in result.output
    for card in (out / "models").glob("*.json"):
        assert json.loads(card.read_text())["input_size"] == [48, 64], card


@pytest.mark.parametrize("args, message", [
    (["--input-size", "100"], "--input-size: each side must be a multiple of 16 (got 100x100)"),
    (["--input-size", "48x100"], "--input-size: each side must be a multiple of 16 (got 48x100)"),
    (["--input-size", "48xq"], "must be N or HxW"),
    (["--threads", "0"], "thread counts must be >= 1"),
    (["--threads", "x"], "'x' is not a comma-separated list of integers"),
    (["--data", "nowhere"], "nowhere: no such folder, and not a built-in dataset"),
    (["-o", "upsample=cubic"], "upsample must be one of"),
])
def test_bad_run_options(runner, tmp_path, args, message):
    result = runner.invoke(cli, ["run", "--quick", "--until", "train", "--out",
                                 str(tmp_path / "r"), *args])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


@pytest.mark.slow
def test_a_run_on_a_folder_scores_only_images_no_stage_learned_from(tmp_path, runner):
    from edgeseg.device.data.writer import write_synthetic

    folder = write_synthetic("synthetic-nuclei", tmp_path / "cells", count=20, size=64, seed=5)
    out = tmp_path / "run"
    result = runner.invoke(cli, ["run", "--data", str(folder), "--quick", "--input-size", "64",
                                 "--threads", "1", "-o", "alpha=0.25", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "scored on its validation split" in result.output
    report = json.loads((out / "report.json").read_text())
    assert report["dataset"]["samples"] == 4  # the validation split: 20% of 20
    assert "validation split" in report["dataset"]["name"]
    assert {role: entry["images"] for role, entry in report["roles"].items()} == {
        "train": 16, "validation": 4, "calibration": 16, "parity": 4, "score": 4}
    assert "Images: train 16 (the training split of" in (out / "report.md").read_text()
    card = json.loads((out / "models" / "int8.tflite.json").read_text())
    assert card["calibration"]["images"].startswith("the training split")
    assert all(row["dice"] > 0.5 for row in report["results"])

    test_folder = write_synthetic("synthetic-nuclei", tmp_path / "test", count=6, size=64, seed=9)
    again = tmp_path / "run2"  # the same models (their stages are skipped), scored elsewhere
    shutil.copytree(out, again)
    for name in ("run.json", "report.json", "report.md", "report.html"):
        (again / name).unlink()
    result = runner.invoke(cli, ["run", "--data", str(folder), "--test-data", str(test_folder),
                                 "--quick", "--input-size", "64", "--threads", "1", "-o",
                                 "alpha=0.25", "--until", "bench", "--out", str(again)])
    assert result.exit_code == 0, result.output
    assert "train: " in result.output and "exists (skipped" in result.output
    assert json.loads((again / "report.json").read_text())["dataset"]["samples"] == 6


def test_a_run_of_a_users_tflite_quantizes_a_float_one_and_benchmarks_a_quantized_one(
        converted, tmp_path, runner):
    """A float .tflite is quantized by ai-edge-quantizer (int8, dynamic range); an int8 one has
    nothing to convert, and says so."""
    model, _ = converted[("tflite", "none")]
    done = runner.invoke(cli, ["run", "--model", str(model), "--quick", "--until", "convert",
                               "--out", str(tmp_path / "run")])
    assert done.exit_code == 0, done.output
    for name in ("int8.tflite", "dynamic.tflite"):
        card = json.loads((tmp_path / "run" / "models" / f"{name}.json").read_text())
        assert card["recipe"]["tool"]["name"] == "ai-edge-quantizer" and card["parity"]["passed"]
    quantized, _ = converted[("tflite", "int8")]
    done = runner.invoke(cli, ["run", "--model", str(quantized), "--quick", "--until", "convert",
                               "--out", str(tmp_path / "run8")])
    assert done.exit_code == 0, done.output
    from converters.flatbuffer import integer_weights

    weights = integer_weights(quantized.read_bytes())
    assert weights > 0 and f"convert: nothing to convert: the user's .tflite is quantized " \
        f"already (float32 input, {weights} integer weight tensors): benchmarked as it is" in \
        done.output
    assert "all 0 files" not in done.output


def test_a_rerun_with_a_model_whose_bytes_changed_is_refused(tiny_run, tmp_path, runner):
    """run --model skips the stages it finds done: with the same name but other weights they
    are another model's, so the rerun is refused (it printed the old table, exit 0)."""
    model = tmp_path / "mine.keras"
    shutil.copy(tiny_run / "model.keras", model)
    argv = ["run", "--model", str(model), "--quick", "--until", "train", "--out",
            str(tmp_path / "run")]
    result = runner.invoke(cli, argv)
    assert result.exit_code == 0, result.output
    assert runner.invoke(cli, argv).exit_code == 0  # the same bytes: carries on
    with open(model, "ab") as handle:  # another file under the same name
        handle.write(b"\0")
    result = runner.invoke(cli, argv)
    assert result.exit_code == 2 and "as it was before it changed" in result.output, \
        result.output


def test_a_rerun_from_another_folder_with_another_d0_is_another_run(tmp_path, runner,
                                                                     monkeypatch):
    """`run --data d0` recorded d0 as given: run again from another folder, with another d0,
    it compared equal and reused what the first d0 trained. Now the paths are whole."""
    from edgeseg.device.data.writer import write_synthetic

    out = tmp_path / "run"
    for place, seed in (("a", 1), ("b", 2)):
        write_synthetic("synthetic-nuclei", tmp_path / place / "d0", count=6, size=32, seed=seed)
    argv = ["run", "--data", "d0", "--quick", "--until", "data", "--out", str(out)]
    monkeypatch.chdir(tmp_path / "a")
    assert runner.invoke(cli, argv).exit_code == 0
    assert json.loads((out / "run.json").read_text())["data"] == str(tmp_path / "a" / "d0")
    assert runner.invoke(cli, argv).exit_code == 0  # the same folder: carries on
    monkeypatch.chdir(tmp_path / "b")
    result = runner.invoke(cli, argv)
    assert result.exit_code == 2 and f"data {str(tmp_path / 'a' / 'd0')!r} -> " \
        f"{str(tmp_path / 'b' / 'd0')!r}" in result.output, result.output
