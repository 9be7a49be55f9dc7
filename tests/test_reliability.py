"""Reliability, round two (issue 15): what the bad-input matrix cannot express in one command.

The gate fails closed on figures it cannot compare, EXIF orientation is applied, dim 16-bit data
is warned about, a signal leaves no temporary files, ~ is expanded, big images open, dynamic
models run at sizes their stride does not divide, and their MACs are counted at the size run.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from edgeseg.cli import cli


def _report(path: Path, **changes) -> Path:
    row = {"variant": "fp32", "runtime": "litert", "threads": 1, "latency_ms": {"p50": 2.0},
           "size_bytes": 1000, "dice": 0.9, "dice_delta": 0.0, "reference": True, **changes}
    path.write_text(json.dumps({"schema": "edgeseg.bench/1", "results": [row]}))
    return path


@pytest.mark.parametrize("changes", [{"dice": math.nan}, {"dice": None},
                                     {"latency_ms": {"p50": math.nan}}])
def test_the_gate_fails_on_what_it_cannot_measure(tmp_path, changes):
    report = _report(tmp_path / "r.json", **changes)
    baseline = _report(tmp_path / "b.json")
    for options in (["--baseline", str(baseline)], ["--max-dice-delta", "0.01"]):
        result = CliRunner().invoke(cli, ["check", str(report), *options])
        assert result.exit_code == 1, result.output
        assert "not measured" in result.output and "Traceback" not in result.output


def test_exif_orientation_is_applied_to_images(tmp_path):
    from edgeseg.device.data import folders

    folder = tmp_path / "cells"
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    stored = np.zeros((32, 48), np.uint8)  # landscape as stored, portrait as shown
    stored[:, :8] = 200
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(stored).save(folder / "images" / "a.jpg", exif=exif, quality=100)
    upright = np.zeros((48, 32), np.uint8)
    upright[:8, :] = 1  # the bright stored left edge is the top once shown
    Image.fromarray(upright).save(folder / "masks" / "a.png")
    image = folders.read_raw(folder / "images" / "a.jpg", 1)[..., 0]
    assert image.shape == (48, 32) and image[:8].mean() > 150 > image[8:].mean()
    found = folders.find_samples(folder)
    folders.check_sizes(found.samples[0])  # header sizes agree once EXIF is applied
    result = CliRunner().invoke(cli, ["data", "info", str(folder)])
    assert result.exit_code == 0, result.output


@pytest.mark.slow  # over 10 s on 2 cores: the quick suite stays well under 15 min
def test_dim_16_bit_images_are_warned_about_under_scale(tmp_path):
    folder = tmp_path / "twelve"
    for i in range(12):
        image = np.full((64, 64), 300, np.uint16)
        image[20:40, 20:40] = 4080  # 12-bit data in a 16-bit file
        mask = np.zeros((64, 64), np.uint8)
        mask[20:40, 20:40] = 1
        for sub, array in (("images", image), ("masks", mask)):
            (folder / sub).mkdir(parents=True, exist_ok=True)
            Image.fromarray(array).save(folder / sub / f"s{i}.png")
    result = CliRunner().invoke(cli, ["train", "--data", str(folder), "--input-size", "32",
                                      "--normalize", "scale", "--steps", "2", "--batch-size", "2",
                                      "-o", "alpha=0.25", "--no-check",
                                      "--out", str(tmp_path / "m")])
    assert result.exit_code == 0, result.output
    assert "4080" in result.output and "--normalize percentile" in result.output


def test_tilde_is_expanded_in_output_paths(tmp_path, monkeypatch):
    from edgeseg.device.files import check_output

    monkeypatch.setenv("HOME", str(tmp_path))
    assert check_output("~/x.tflite", model=True) == tmp_path / "x.tflite"


def test_images_past_pillows_bomb_limit_open(tmp_path):
    from edgeseg.device.data.folders import header_size

    path = tmp_path / "big.png"
    Image.new("L", (15000, 12000)).save(path)  # 180 MP: over Pillow's default limit
    assert header_size(path) == (15000, 12000)


@pytest.fixture(scope="module")
def dynamic_onnx(tiny_run, tmp_path_factory):
    """The tiny model as an .onnx that takes any batch and size, converted once."""
    dynamic = tmp_path_factory.mktemp("dynamic") / "dyn.onnx"
    result = CliRunner().invoke(cli, ["convert", str(tiny_run / "model.keras"), "--to", "onnx",
                                      "--dynamic", "--input-size", "64", "--verify-samples", "2",
                                      "--out", str(dynamic)])
    assert result.exit_code == 0, result.output
    return dynamic


def test_dynamic_models_run_at_sizes_their_stride_does_not_divide(dynamic_onnx, tiny_run,
                                                                   tmp_path):
    dynamic = dynamic_onnx
    report = tmp_path / "b.json"
    for model in (tiny_run / "model.keras", dynamic):
        result = CliRunner().invoke(cli, ["eval", str(model), "--n", "2", "--input-size", "100"])
        assert result.exit_code == 0, result.output
    result = CliRunner().invoke(cli, ["bench", str(dynamic), "--image-size", "100", "--runs", "2",
                                      "--warmup", "0", "--samples", "2", "--quiet",
                                      "--frame", "120x160", "--json", str(report)])
    assert result.exit_code == 0, result.output
    row = json.loads(report.read_text())["results"][0]
    # cold start and the app's frame go in at the size it is timed at, not the 100 it cannot take
    assert row["first_inference_ms"] > 0 and row["end_to_end_ms"]["input"] == [128, 128]
    from edgeseg.device.flops import onnx_cost

    assert row["input_shape"] == [1, 128, 128, 1]  # 100 padded to what the stride divides
    assert row["macs"] == onnx_cost(dynamic, input_size=128).macs


def test_sigterm_leaves_no_temporary_files(converted, tiny_run, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    child = subprocess.Popen([sys.executable, "-m", "edgeseg", "convert",
                              str(tiny_run / "model.keras"), "--quant", "int8", "--calib-samples",
                              "8", "--out", str(out / "m.tflite")],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(6)  # past TensorFlow's import, into the conversion
    child.send_signal(signal.SIGTERM)
    child.communicate(timeout=120)
    leftovers = [p.name for p in out.iterdir() if p.name.startswith(".")]
    assert leftovers == [], leftovers


def _foreground():
    """Ctrl-C as a terminal's foreground job gets it: a suite started in the background (``&``
    in a script) runs with SIGINT ignored, and a Python started so keeps ignoring it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_in_the_harness_says_so(converted, tmp_path):
    model = converted[("tflite", "none")][0]
    child = subprocess.Popen([sys.executable, "-m", "benchmarks", str(model), "--runs", "1000000",
                              "--json", str(tmp_path / "b.json")],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             preexec_fn=_foreground)
    said = []
    for line in child.stderr:  # interrupt the timing itself, however slow the start was
        said.append(line)
        if line.startswith("predicting: 100%"):
            break
    time.sleep(1)
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=120)
    err = "".join(said) + err
    assert child.returncode == 130, err
    assert "interrupted" in err and not (tmp_path / "b.json").exists()


def test_disk_errors_are_one_line(converted, tmp_path):
    """A real read-only place: /proc takes no new files."""
    model = converted[("tflite", "none")][0]
    result = CliRunner().invoke(cli, ["eval", str(model), "--n", "2", "--json",
                                      "/proc/edgeseg-test.json"])
    assert result.exit_code == 2 and "cannot write" in result.output, result.output
    assert not os.path.exists("/proc/edgeseg-test.json")


@pytest.fixture
def small_disk(tmp_path):
    """A real 3 MiB file system (tmpfs), for what a full disk does; skipped where mounting is
    not allowed."""
    where = tmp_path / "disk"
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    yield where
    subprocess.run(["umount", str(where)], check=False)


def test_a_full_disk_is_one_line_and_leaves_nothing(small_disk):
    result = CliRunner().invoke(cli, ["data", "synth", "--n", "400", "--size", "256",
                                      "--out", str(small_disk / "nuclei")])
    assert result.exit_code == 2, result.output
    assert "no space left" in result.output and "Traceback" not in result.output
    assert list(small_disk.iterdir()) == []  # the partial folder is gone
    (small_disk / "fill").write_bytes(b"\0" * 2_500_000)
    result = CliRunner().invoke(cli, ["data", "synth", "--n", "4", "--size", "64",
                                      "--out", str(small_disk / "small")])
    assert result.exit_code == 2 and "KiB free" in result.output, result.output


def test_space_for_a_model_is_checked_before_the_work(small_disk):
    from edgeseg.device.errors import EdgesegError
    from edgeseg.device.files import check_space

    check_space(small_disk / "run", 2**20, largest=2**19)  # 3 MiB free: room for it
    with pytest.raises(EdgesegError, match=r"disk/run: writing the outputs takes at least "
                                           r"4.0 MiB, and its disk has 3.0 MiB free"):
        check_space(small_disk / "run", 4 * 2**20)
    # a shell's file size limit (ulimit -f 100) refuses a model file over 100 KiB
    done = subprocess.run([sys.executable, "-c", (
        "import resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, (102400, 102400))\n"
        "from edgeseg.device.files import check_space\n"
        "check_space(sys.argv[1], 2**20, largest=300_000, what='the training outputs')"),
        str(small_disk)], capture_output=True, text=True)
    assert done.returncode != 0 and ("writing the training outputs takes a file of at least "
                                     "292 KiB, over this shell's file size limit of 100 KiB"
                                     ) in done.stderr


# --- issue 16: inspect/profile on every kind of file, and errors said rather than swallowed ----

@pytest.mark.parametrize("quant", ["none", "fp16", "dynamic", "int8"])
def test_inspect_profile_runs_every_tflite_and_its_bytes_add_up(converted, quant):
    from edgeseg.inspection import inspect_file
    from edgeseg.profiling import profile_file

    path = converted[("tflite", quant)][0]
    report = inspect_file(path)
    assert sum(report["bytes"].values()) == path.stat().st_size  # parts never exceed the file
    profile = profile_file(path, threads=1, runs=3)
    assert profile["whole_ms"] > 0 and len(profile["ops"]) == report["op_total"]


def test_a_corrupt_embedded_card_is_said_once(converted, tmp_path, capsys):
    import onnx

    from edgeseg import runtime
    from edgeseg.device.card import EMBEDDED_KEY

    proto = onnx.load(str(converted[("onnx", "none")][0]))
    for entry in proto.metadata_props:
        if entry.key == EMBEDDED_KEY:
            entry.value = "{not json"
    path = tmp_path / "broken.onnx"
    onnx.save(proto, str(path))
    assert runtime.load(path).card == {}
    err = capsys.readouterr().err
    assert err.count("not valid JSON") == 1 and "broken.onnx" in err
    result = CliRunner().invoke(cli, ["inspect", str(path)])
    assert result.exit_code == 2 and "not valid JSON" in result.output


def test_the_harness_runs_where_no_tflite_schema_is_installed(converted, tmp_path):
    """tflite-runtime ships no schema bindings: the harness must still time and score files
    (their sidecar cards read, MACs left out, each said once). The schema modules are hidden
    from a child process; the interpreter that runs the files is the real one."""
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(
        "import sys\n"
        "class Hide:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name in ('ai_edge_litert.schema_py_generated', 'tensorflow') or \\\n"
        "                name.startswith('tensorflow.'):\n"
        "            raise ImportError(f'hidden: {name}')\n"
        "sys.meta_path.insert(0, Hide())\n")
    model = converted[("tflite", "int8")][0]
    report = tmp_path / "b.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocker), os.environ.get(
        "PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "benchmarks", str(model), "--runs", "2",
                           "--samples", "2", "--quiet", "--json", str(report)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr.count("the TFLite schema is not installed") == 3  # once per thing lost
    row = json.loads(report.read_text())["results"][0]
    assert row["variant"] == "int8" and row["macs"] is None and row["dice"] > 0.5


def test_eval_and_predict_warn_about_dim_16_bit_images(converted, tmp_path):
    model = converted[("tflite", "none")][0]
    folder = tmp_path / "d16"
    for sub in ("images", "masks"):
        (folder / sub).mkdir(parents=True)
    for i in range(2):
        image = np.full((64, 64), 200, np.uint16)
        image[10:30, 10:30] = 4095
        Image.fromarray(image).save(folder / "images" / f"{i}.png")
        Image.fromarray((image > 1000).astype(np.uint8)).save(folder / "masks" / f"{i}.png")
    result = CliRunner().invoke(cli, ["eval", str(model), "--data", str(folder), "--normalize",
                                      "scale"])
    assert result.exit_code == 0 and "at most 4095 of their type's 65535" in result.output
    result = CliRunner().invoke(cli, ["predict", str(model), str(folder / "images" / "0.png"),
                                      "--normalize", "scale", "--out", str(tmp_path / "p")])
    assert result.exit_code == 0 and "at most 4095" in result.output
    assert "not to be trusted" in result.output  # against what the model was trained on


def test_dynamic_onnx_macs_equal_the_fixed_files(converted, dynamic_onnx):
    from edgeseg.device.flops import onnx_cost

    dynamic = dynamic_onnx
    fixed = converted[("onnx", "none")][0]  # converted at 64x64
    assert onnx_cost(dynamic, input_size=64).macs == onnx_cost(fixed).macs
    card = json.loads(dynamic.with_name(dynamic.name + ".json").read_text())
    assert card["macs"] == onnx_cost(fixed).macs


@pytest.mark.slow  # over 10 s on 2 cores: the quick suite stays well under 15 min
def test_ctrl_c_in_an_edgeseg_command_is_exit_130(tmp_path):
    out = tmp_path / "out"
    child = subprocess.Popen([sys.executable, "-m", "edgeseg", "train", "--n-train", "32",
                              "--n-val", "8", "--input-size", "32", "--steps", "1000000",
                              "-o", "alpha=0.25", "--out", str(out)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    time.sleep(12)  # into the training loop
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=120)
    assert child.returncode == 130, err[-1500:]
    assert err.strip().splitlines()[-1].startswith("interrupted") and "Traceback" not in err
    leftovers = [p.name for p in out.rglob("*") if p.name.endswith((".tmp", ".partial"))]
    assert leftovers == [] and not (out / "model.keras").exists()


def test_folders_written_atomically_get_the_usual_mode(tmp_path):
    """The atomic folder is made with mkdtemp (0700); once in place it must be readable like any
    folder the user makes (umask applied)."""
    from edgeseg.device.files import _umask, atomic_dir

    with atomic_dir(tmp_path / "made") as folder:
        (folder / "a.txt").write_text("x")
    assert (tmp_path / "made").stat().st_mode & 0o777 == 0o777 & ~_umask()


def test_onnx_int8_of_a_dynamic_graph_leaves_no_scratch_files(converted, tiny_run, tmp_path,
                                                             monkeypatch):
    """ONNX Runtime's symbolic shape inference writes scratch files into the working folder on
    dynamic graphs; edgeseg runs it in a temporary folder."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    dynamic = tmp_path / "dyn.onnx"
    for argv in (["convert", str(tiny_run / "model.keras"), "--to", "onnx", "--dynamic",
                  "--input-size", "64", "--verify-samples", "2", "--out", str(dynamic)],
                 ["convert", str(dynamic), "--to", "onnx", "--quant", "int8", "--input-size",
                  "64", "--calib", "synthetic-nuclei", "--calib-samples", "8",
                  "--verify-samples", "4", "--keep-failed", "--out", str(tmp_path / "q.onnx")]):
        result = CliRunner().invoke(cli, argv)
        assert result.exit_code == 0, result.output
    assert list(work.iterdir()) == []


@pytest.mark.slow  # over 10 s on 2 cores: the quick suite stays well under 15 min
def test_a_command_prints_edgeseg_lines_not_tensorflows_start_up(tiny_run, tmp_path):
    """TensorFlow's start-up (oneDNN, CUDA stubs, cuInit), its int8 quantizer's note and LiteRT's
    delegate note are native writes to stderr: dropped unless --verbose."""
    from edgeseg.device.log import NATIVE_CHATTER

    done = subprocess.run([sys.executable, "-m", "edgeseg", "convert",
                           str(tiny_run / "model.keras"), "--quant", "int8", "--calib-samples",
                           "8", "--verify-samples", "4", "--out", str(tmp_path / "m.tflite")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = (done.stdout + done.stderr).splitlines()
    assert [line for line in lines if any(p.match(line) for p in NATIVE_CHATTER)] == []
    assert len(lines) == 2 and lines[0].startswith(f"{tmp_path / 'm.tflite'}: tflite int8")
    done = subprocess.run([sys.executable, "-m", "edgeseg", "inspect", str(tmp_path / "m.tflite")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "XNNPACK" not in done.stderr, done.stderr[-2000:]


def test_a_progress_bar_says_how_far_and_the_time_left(capsys):
    from edgeseg.device.log import Progress

    bar = Progress(4, "sensitivity")
    bar.tty = True  # as at a terminal: one line, rewritten
    for _ in range(2):
        time.sleep(0.05)
        bar.step()
    bar.close()  # a search that stops before its total ends the line
    err = capsys.readouterr().err
    assert err.startswith("\rsensitivity [") and "] 2/4, ~0 s left" in err, repr(err)
    assert err.endswith("\n") and err.count("\n") == 1
    plain = Progress(4, "timing")  # a log or a pipe: a line a quarter
    for _ in range(4):
        time.sleep(0.01)
        plain.step()
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("timing: 25%, ~0 s left") and lines[-1] == "timing: 100%"
    assert len(lines) == 4


@pytest.mark.parametrize("suffix", [".tflite", ".onnx"])
def test_convert_never_replaces_a_users_file_or_card(tiny_run, tmp_path, suffix):
    """A model output replaces a model file and its edgeseg card (a rerun), nothing else."""
    notes = tmp_path / f"mine{suffix}"
    notes.write_text("my notes\n")
    result = CliRunner().invoke(cli, ["convert", str(tiny_run / "model.keras"), "--out",
                                      str(notes)])
    assert result.exit_code == 2 and f"exists and is not a {suffix} model file" in result.output
    assert notes.read_text() == "my notes\n"
    card = tmp_path / f"m{suffix}.json"
    card.write_text('{"my": "own settings"}\n')
    result = CliRunner().invoke(cli, ["convert", str(tiny_run / "model.keras"), "--out",
                                      str(tmp_path / f"m{suffix}")])
    assert result.exit_code == 2 and "is not a model card edgeseg wrote" in result.output
    assert card.read_text() == '{"my": "own settings"}\n' and not (tmp_path / f"m{suffix}").exists()


def test_raw_pixels_given_to_predict_are_said(converted, capsys):
    """The Python API fed 0-255 uint8 pixels for a model that takes 0-1: said once."""
    from edgeseg import runtime
    from edgeseg.device.card import normalization_of
    from edgeseg.device.preprocess import normalize

    model = runtime.load(converted[("tflite", "none")][0])
    pixels = np.random.default_rng(0).integers(0, 256, (1, *model.input_shape[1:]),
                                               dtype=np.uint8)
    model.predict(normalize(pixels, normalization_of(model.card)))
    assert "predict got" not in capsys.readouterr().err  # normalised: nothing to say
    model.predict(pixels)
    model.predict(pixels)
    err = capsys.readouterr().err
    assert err.count("predict got uint8 pixels; it takes images normalised as the model's card "
                     "says (pixel / type maximum") == 1, err


def test_inspect_says_why_a_dynamic_onnx_has_no_macs(tmp_path):
    """An .onnx made with the onnx helper API, dynamic height and width: no MACs line at all
    before; now the reason and the option, and the count with it."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((1, 1, 3, 3), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
         helper.make_node("Sigmoid", ["c"], ["y"])], "dyn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, "H", "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1, "H", "W"])], [weight])
    path = tmp_path / "dyn.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    result = CliRunner().invoke(cli, ["inspect", str(path)])
    assert result.exit_code == 0, result.output
    assert "MACs    not counted at a dynamic size: give --input-size" in result.output
    result = CliRunner().invoke(cli, ["inspect", str(path), "--input-size", "64"])
    assert result.exit_code == 0 and "MACs 36,864" in result.output, result.output
