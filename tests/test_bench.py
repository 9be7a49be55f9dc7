"""The harness: the bench JSON, models side by side, tiling for other sizes, no TensorFlow."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from edgeseg.cli import cli

# The bench JSON's documented keys (../shared/DESIGN.md): they may grow, never be renamed.
TOP_KEYS = {"schema", "machine", "dataset", "reference", "results"}
MACHINE_KEYS = {"cpu", "cores", "isa", "runtimes"}
RESULT_KEYS = {"variant", "runtime", "path", "format", "threads", "input_shape", "latency_ms",
               "load_ms", "macs", "params", "size_bytes", "gzip_bytes", "sparsity", "dice",
               "dice_per_class", "iou", "dice_delta", "agreement", "gmacs_per_s"}
LATENCY_KEYS = {"p50", "p90", "mean", "std", "runs"}


def _check_schema(report: dict) -> None:
    assert TOP_KEYS <= set(report) and report["schema"] == "edgeseg.bench/1"
    assert MACHINE_KEYS <= set(report["machine"])
    assert {"name", "samples"} <= set(report["dataset"])
    assert report["results"]
    for row in report["results"]:
        assert RESULT_KEYS <= set(row), RESULT_KEYS - set(row)
        assert LATENCY_KEYS <= set(row["latency_ms"])
        assert isinstance(row["variant"], str) and row["format"] in ("tflite", "onnx", "keras")
        assert row["latency_ms"]["runs"] >= 1 and row["size_bytes"] > 0 and row["gzip_bytes"] > 0
        assert 0.0 <= row["dice"] <= 1.0 and 0.0 <= row["agreement"] <= 1.0
        assert len(row["input_shape"]) == 4 and row["macs"] > 0


def test_harness_on_a_tflite_writes_the_json_without_tensorflow(converted, tmp_path):
    path, _ = converted[("tflite", "int8")]
    out = tmp_path / "bench.json"
    code = ("import sys\n"
            "from benchmarks.command import main\n"
            f"main.main([{str(path)!r}, '--runs', '3', '--warmup', '1', '--samples', '4',"
            f" '--threads', '1,2', '--quiet', '--json', {str(out)!r}], standalone_mode=False)\n"
            "print('TF', 'tensorflow' in sys.modules, 'tf_keras' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "TF False False"
    report = json.loads(out.read_text())
    _check_schema(report)
    assert [(r["variant"], r["threads"]) for r in report["results"]] == [("int8", 1), ("int8", 2)]


def test_python_m_benchmarks_runs_as_a_command(converted, tmp_path):
    path, _ = converted[("tflite", "none")]
    done = subprocess.run([sys.executable, "-m", "benchmarks", str(path), "--runs", "2",
                           "--samples", "2", "--quiet"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "machine:" in done.stdout and "fp32" in done.stdout.splitlines()[-1]
    missing = subprocess.run([sys.executable, "-m", "benchmarks", str(tmp_path / "none.tflite")],
                             capture_output=True, text=True)
    assert missing.returncode == 2
    assert missing.stderr.strip() == f"Error: {tmp_path / 'none.tflite'}: no such model file"


def test_keras_tflite_and_onnx_side_by_side_against_the_reference(converted, tiny_run, runner,
                                                                  tmp_path):
    keras = tiny_run / "model.keras"
    out = tmp_path / "bench.json"
    result = runner.invoke(cli, ["bench", str(keras), str(converted[("tflite", "none")][0]),
                                 str(converted[("tflite", "int8")][0]),
                                 str(converted[("onnx", "int8")][0]), "--reference", str(keras),
                                 "--runs", "3", "--samples", "6", "--quiet", "--json", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    _check_schema(report)
    rows = {(r["format"], r["variant"]): r for r in report["results"]}
    assert set(rows) == {("keras", "fp32"), ("tflite", "fp32"), ("tflite", "int8"),
                         ("onnx", "int8")}
    reference = rows[("keras", "fp32")]
    assert reference["reference"] and reference["dice_delta"] == 0 and reference["agreement"] == 1
    assert rows[("tflite", "fp32")]["agreement"] > 0.999
    assert abs(rows[("tflite", "fp32")]["dice_delta"]) < 1e-3
    assert rows[("tflite", "int8")]["size_bytes"] < rows[("tflite", "fp32")]["size_bytes"]
    # MACs read from each file agree with the Keras count
    assert len({r["macs"] for r in report["results"]}) == 1
    assert "variant" in result.output and "Dice" in result.output  # the printed table


def test_images_of_another_size_are_tiled(converted, tmp_path, runner):
    from edgeseg.device.data.writer import write_synthetic

    folder = write_synthetic("synthetic-nuclei", tmp_path / "big", count=2, size=100, seed=9)
    out = tmp_path / "bench.json"
    result = runner.invoke(cli, ["bench", str(converted[("tflite", "none")][0]), "--data",
                                 str(folder), "--runs", "2", "--quiet", "--json", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["dataset"]["image_sizes"] == ["100x100"] and report["dataset"]["samples"] == 2
    assert report["results"][0]["dice"] > 0.5  # a 64x64 model scored on whole 100x100 images


@pytest.mark.parametrize("args, message", [
    (["--threads", "0"], "thread counts must be >= 1"),
    (["--threads", "a,b"], "is not a comma-separated list"),
    (["--runs", "0"], "Invalid value for '--runs'"),
])
def test_bad_bench_options(converted, runner, args, message):
    result = runner.invoke(cli, ["bench", str(converted[("tflite", "int8")][0]), *args])
    assert result.exit_code == 2 and message in result.output


def test_bench_refuses_a_corrupt_model_with_one_line(converted, runner, tmp_path):
    path, _ = converted[("tflite", "int8")]
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(path.read_bytes()[:1000])
    result = runner.invoke(cli, ["bench", str(broken), "--runs", "1"])
    assert result.exit_code == 2
    assert [l for l in result.output.splitlines() if l.strip()] == [
        l for l in result.output.splitlines() if l.startswith("Error:")]
    assert str(broken) in result.output


def test_files_with_one_variant_name_stay_separate_rows(converted, tmp_path):
    """Two models' int8 files both say variant "int8": the rows and the table keep them apart."""
    import shutil

    from benchmarks.harness import bench
    from edgeseg.device.benchjson import text_table

    source, _ = converted[("tflite", "int8")]
    paths = []
    for folder in ("model_a", "model_b"):
        (tmp_path / folder).mkdir()
        paths.append(shutil.copy(source, tmp_path / folder / "int8.tflite"))
    report = bench(paths, runs=2, warmup=0, samples=1, progress=False, echo=lambda line: None)
    variants = {row["variant"] for row in report["results"]}
    assert variants == {"int8 (model_a/int8.tflite)", "int8 (model_b/int8.tflite)"}
    table = text_table(report)
    assert "model_a/int8.tflite" in table and "model_b/int8.tflite" in table


def test_plot_labels_never_overlap_even_when_the_points_pile_up():
    """Issue 17: ten variants on one spot (the default's files differ by 0.01 ms) used to print
    ten labels on top of each other."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edgeseg.report import label_points

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    points = [(3.8 + 0.01 * i, 0.9736 + 0.0001 * i) for i in range(10)] + [(40, 0.97), (20, 0.95)]
    for point in points:
        ax.scatter(*point, s=36)
    ax.margins(0.15)
    fig.tight_layout()
    boxes = label_points(ax, points, [f"mobile_unet variant {i} (litert)" for i in range(12)])
    plt.close(fig)
    assert len(boxes) == 12
    assert not [(i, j) for i in range(12) for j in range(i) if boxes[i].overlaps(boxes[j])]


def test_disagreement_overlay_marks_where_a_variant_differs_and_what_both_miss():
    import numpy as np

    from edgeseg.device.visualize import DIFFERS, WRONG, disagreement

    image = np.full((4, 4, 1), 0.5, np.float32)
    reference = np.zeros((4, 4), np.uint8)
    reference[0, :2] = 1
    labels = reference.copy()
    labels[3, 3] = 1  # the variant's own change
    truth = reference.copy()
    truth[1, 1] = 1  # missed by both
    truth[2, 2] = 255  # unlabeled: never counted
    picture, counts = disagreement(image, labels, reference, truth)
    assert counts == {"differs": 1, "wrong": 1, "pixels": 15}
    assert tuple(picture[3, 3]) == DIFFERS and tuple(picture[1, 1]) == WRONG
    assert tuple(picture[0, 0]) == tuple(picture[2, 2]) == (76, 76, 76)  # grey, dimmed


def test_the_html_report_shows_each_variants_disagreement(converted, tiny_run, tmp_path):
    from benchmarks.harness import bench
    from edgeseg.report import write_reports

    files = [converted[("tflite", "none")][0], converted[("tflite", "int8")][0]]
    report = bench(files, runs=2, warmup=0, samples=2, image_size=64, progress=False,
                   echo=lambda line: None)
    write_reports(report, tmp_path, data="synthetic-nuclei")
    page = (tmp_path / "report.html").read_text()
    assert "Where each variant disagrees" in page and "px differ from the reference" in page


def test_an_int8_file_slower_than_the_float_one_is_said_beside_the_table(converted):
    """On some CPUs and models int8 runs slower than fp32: the table says so, so nobody picks
    the int8 file by its name. (The latencies are set here: which is faster is the machine's.)"""
    from benchmarks.harness import bench
    from edgeseg.device.benchjson import slower_notes, text_table
    from edgeseg.report import markdown

    report = bench([converted[("tflite", "none")][0], converted[("tflite", "int8")][0]], runs=2,
                   warmup=0, samples=1, image_size=64, progress=False, echo=lambda line: None)
    fp32, int8 = sorted(report["results"], key=lambda r: "int8" in r["variant"])
    assert fp32["variant"].endswith("fp32") and int8["variant"].endswith("int8")
    fp32["latency_ms"]["p50"], int8["latency_ms"]["p50"] = 4.0, 10.0
    notes = slower_notes(report)
    assert len(notes) == 1 and "2.5x slower than" in notes[0] and "10.00 vs 4.00" in notes[0]
    assert f"note: {notes[0]}" in text_table(report) and notes[0] in markdown(report)
    int8["latency_ms"]["p50"] = 3.0
    assert slower_notes(report) == [] and "slower" not in text_table(report)
    # a float source named by its file, a quantized file named by its recipe
    fp32["variant"], int8["variant"], int8["latency_ms"]["p50"] = "unet", "pruned50-int8", 10.0
    assert len(slower_notes(report)) == 1 and "slower than unet" in slower_notes(report)[0]


def test_rows_measured_on_a_board_stay_in_the_main_table_and_join_the_targets_table(converted):
    """A remote bench's rows carry ``target`` (ssh://...) like the tools' estimates do, but they
    were measured: they are results, and a line of the targets table."""
    import copy

    from benchmarks.harness import bench
    from edgeseg.device.benchjson import estimate
    from edgeseg.device.benchjson import targets_table as target_rows
    from edgeseg.report import markdown

    report = bench([converted[("tflite", "int8")][0]], runs=2, warmup=0, samples=2,
                   image_size=64, progress=False, echo=lambda line: None)
    board = copy.deepcopy(report["results"][0])
    board.update(target="ssh://pi@board", machine={"cpu": "Cortex-A76"}, variant="int8 (board)")
    vela = copy.deepcopy(report["results"][0])
    vela.update(target="ethos-u55-128", estimator="vela 5", estimated=True, runtime="ethos-u55-128",
                clock_mhz=500.0, cycles=10, sram_bytes=1024)
    report["results"] += [board, vela]
    assert not estimate(board) and estimate(vela)
    assert "int8 (board)" in markdown(report)
    lines = [row[0] for row in target_rows(report)]
    assert lines[1] == "ssh://pi@board (Cortex-A76, 1 thr)" and lines[2] == "ethos-u55-128"


@pytest.mark.skipif(sys.platform != "linux" or __import__("platform").machine() != "x86_64",
                    reason="AMX permission is an x86-64 Linux matter")
def test_no_amx_refuses_the_kernels_amx_permission_and_says_so(converted, tmp_path):
    """Issue 19: the no-AMX figures measured on an AMX machine. After deny_amx(), the request
    every AMX user must make (arch_prctl ARCH_REQ_XCOMP_PERM) fails with EPERM."""
    code = ("import ctypes, errno\n"
            "from edgeseg.device.machine import deny_amx\n"
            "libc = ctypes.CDLL(None, use_errno=True)\n"
            "deny_amx()\n"
            "result = libc.syscall(158, 0x1023, 18)\n"
            "print(result, ctypes.get_errno() == errno.EPERM)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["-1", "True"]
    out = tmp_path / "bench.json"
    subprocess.run([sys.executable, "-m", "benchmarks", str(converted[("tflite", "int8")][0]),
                    "--runs", "2", "--samples", "2", "--quiet", "--no-amx", "--json", str(out)],
                   capture_output=True, text=True, check=True)
    isa = json.loads(out.read_text())["machine"]["isa"]
    assert "AMX-INT8" not in isa  # on an AMX machine it reads "AMX-INT8 denied"


def test_predict_says_an_nchw_array_is_one_and_takes_an_empty_batch(converted):
    import numpy as np

    from edgeseg.device import runtime

    model = runtime.load(converted[("tflite", "none")][0])
    assert model.predict(np.zeros((0, 64, 64, 1), np.float32)).shape == (0, 64, 64, 1)
    with pytest.raises(ValueError, match=r"an \(N, C, H, W\) array\? predict takes \(N, H, W, C\)"):
        model.predict(np.zeros((2, 1, 64, 64), np.float32))


def test_images_without_any_object_have_no_dice_everywhere(converted, tiny_run, tmp_path,
                                                            runner):
    """No foreground in the masks and none predicted: no Dice (– in tables, null in JSON), in
    eval, the bench JSON and the gate alike (it had scored 1.0000)."""
    import numpy as np
    from PIL import Image

    from edgeseg.cli import cli

    folder = tmp_path / "empty"
    for i in range(3):
        (folder / "images").mkdir(parents=True, exist_ok=True)
        (folder / "masks").mkdir(exist_ok=True)
        Image.fromarray(np.zeros((64, 64), np.uint8)).save(folder / "images" / f"{i}.png")
        Image.fromarray(np.zeros((64, 64), np.uint8)).save(folder / "masks" / f"{i}.png")
    done = runner.invoke(cli, ["eval", str(tiny_run / "model.keras"), "--data", str(folder),
                               "--json", str(tmp_path / "e.json")])
    assert done.exit_code == 0, done.output
    mean = next(line for line in done.output.splitlines() if line.startswith("mean"))
    assert mean.split()[-2:] == ["–", "–"]
    scored = json.loads((tmp_path / "e.json").read_text())
    assert scored["dice"] is None and scored["dice_per_class"][1] is None
    report = tmp_path / "b.json"
    done = runner.invoke(cli, ["bench", str(converted[("tflite", "none")][0]), "--data",
                               str(folder), "--runs", "1", "--quiet", "--json", str(report)])
    assert done.exit_code == 0, done.output
    row = json.loads(report.read_text())["results"][0]
    assert row["dice"] is None and row["dice_delta"] is None
    gate = runner.invoke(cli, ["check", str(report), "--max-dice-delta", "0.01"])
    assert gate.exit_code == 1 and "Dice not measured" in gate.output


def test_a_file_that_tiles_where_the_reference_runs_whole_is_said(tiny_run, converted, tmp_path,
                                                                 runner):
    """A 64x64 .tflite tiles 128x128 images that its Keras source runs whole: the Dice change
    of a lossless fp32 file is then tiling, and the table must not pass it off as conversion."""
    tflite = converted[("tflite", "none")][0]
    result = runner.invoke(cli, ["bench", str(tiny_run / "model.keras"), str(tflite),
                                 "--image-size", "128", "--runs", "1", "--warmup", "0",
                                 "--samples", "2", "--quiet", "--json", str(tmp_path / "b.json")])
    assert result.exit_code == 0, result.output
    assert (f"note: {tflite.name} takes 64x64 and runs 128x128 images (height x width) tiled, "
            f"the reference model.keras whole") in result.output, result.output
    result = runner.invoke(cli, ["bench", str(tiny_run / "model.keras"), str(tflite),
                                 "--image-size", "64", "--runs", "1", "--warmup", "0",
                                 "--samples", "2", "--quiet", "--json", str(tmp_path / "b.json")])
    assert result.exit_code == 0 and "note:" not in result.output, result.output


def test_a_folders_class_file_decides_its_classes_not_the_model(tiny_run, tmp_path, runner):
    """A 4-class model on a binary folder with a classes.txt was scored on padded names
    (class2, class3) with exit 0; the folder's names against the model's are said."""
    from edgeseg._keras import keras
    from edgeseg.device.data.writer import write_synthetic
    from edgeseg.models import create_model

    folder = tmp_path / "cells"
    write_synthetic("synthetic-nuclei", folder, count=4, size=64, seed=5)
    four = tmp_path / "four.keras"
    create_model("mobile_unet", input_size=64, num_classes=4, alpha=0.25).save(str(four))
    keras.backend.clear_session()
    for argv in (["eval", str(four), "--data", str(folder)],
                 ["bench", str(four), "--data", str(folder), "--runs", "1", "--warmup", "0",
                  "--quiet", "--json", str(tmp_path / "b.json")]):
        result = runner.invoke(cli, argv)
        assert result.exit_code == 2 and "predicts 4 classes" in result.output and \
            "has 2 classes (background, nucleus)" in result.output, result.output
    (folder / "classes.txt").write_text("background\ncell\n")
    result = runner.invoke(cli, ["eval", str(tiny_run / "model.keras"), "--data", str(folder)])
    assert result.exit_code == 0, result.output
    assert "its class file names background, cell; model.keras was trained on background, " \
           "nucleus" in result.output, result.output


def test_a_model_whose_training_failed_is_said_everywhere_and_its_files_say_it_too(
        tiny_run, tmp_path, runner):
    """A card that says training failed (train --no-check keeps such a model) is warned about
    by eval, bench and predict, and the file converted from it carries that (it did not)."""
    model = tmp_path / "failed.keras"
    shutil.copy(tiny_run / "model.keras", model)
    card = json.loads((tiny_run / "model.keras.json").read_text())
    card.update(status="failed", failure="validation Dice 0.01 is no better than chance")
    (tmp_path / "failed.keras.json").write_text(json.dumps(card))
    tflite = tmp_path / "failed.tflite"
    result = runner.invoke(cli, ["convert", str(model), "--verify-samples", "2", "--out",
                                 str(tflite)])
    assert result.exit_code == 0 and "converting it anyway" in result.output, result.output
    assert json.loads((tmp_path / "failed.tflite.json").read_text())["source"]["status"] == \
        "failed"
    said = "its card says training failed (validation Dice 0.01 is no better than chance)"
    for argv in (["eval", str(tflite), "--n", "2"],
                 ["bench", str(tflite), "--runs", "1", "--warmup", "0", "--samples", "2",
                  "--quiet", "--json", str(tmp_path / "b.json")],
                 ["predict", str(model), str(_an_image(tmp_path)), "--out",
                  str(tmp_path / "masks")]):
        result = runner.invoke(cli, argv)
        assert result.exit_code == 0 and said in result.output, (argv[0], result.output)


def _an_image(folder):
    import numpy as np
    from PIL import Image

    path = folder / "frame.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(path)
    return path


def test_an_arm_cpu_is_named_and_an_emulated_machine_says_its_latency_is_no_timing():
    """ARM's /proc/cpuinfo has no model name: implementer and part name the core. A machine
    whose kernel command line says edgeseg.emulated=... is marked in the line and the table."""
    from edgeseg.device.benchjson import text_table
    from edgeseg.device.machine import EMULATED, arm_cpu_name, line

    info = {"CPU implementer": "0x41", "CPU part": "0xd0b", "CPU variant": "0x4",
            "CPU revision": "1"}
    assert arm_cpu_name(info) == "ARM Cortex-A76 (r4p1)"
    assert arm_cpu_name({"CPU implementer": "0x51", "CPU part": "0x801"}) == \
        "implementer 0x51 part 0x801"
    assert arm_cpu_name({}) == ""
    board = {"cpu": "ARM Cortex-A72 (r0p3)", "cores": 2, "isa": ["NEON"], "os": "Linux 6.1",
             "runtimes": {"ai-edge-litert": "2.3.0"}, "arch": "aarch64", "emulated": "qemu-tcg"}
    text = line(board)
    assert text.startswith("ARM Cortex-A72 (r0p3) (aarch64), 2 cores (NEON)")
    assert text.endswith(f"qemu-tcg {EMULATED}")
    assert EMULATED not in line({**board, "emulated": None})
    row = {"variant": "int8", "runtime": "litert", "threads": 1, "path": "m.tflite",
           "format": "tflite", "latency_ms": {"p50": 900.0, "p90": 950.0}, "size_bytes": 10,
           "gzip_bytes": 9,
           "dice": 0.5, "agreement": 1.0,
           "dice_delta": 0.0, "reference": True}
    assert EMULATED in text_table({"machine": board, "results": [row]})
    assert EMULATED not in text_table({"machine": {**board, "emulated": None}, "results": [row]})


def test_end_to_end_sustained_and_cold_start_are_measured_beside_the_model_time(converted,
                                                                                tmp_path):
    """A camera frame timed through preprocess, invoke and postprocess takes at least the model's
    own time; a sustained run honours both of its limits; cold start includes the load."""
    from benchmarks.app_latency import EndToEnd, camera_frame
    from benchmarks.harness import bench
    from edgeseg.device import runtime

    path, _ = converted[("tflite", "none")]
    report = bench([path], data="synthetic-nuclei", samples=2, runs=6, warmup=1,
                   frame="96x128", sustained=(40, 0.5), progress=False, echo=lambda line: None)
    _check_schema(report)
    row = report["results"][0]
    e2e = row["end_to_end_ms"]
    assert e2e["frame"] == [96, 128] and e2e["input"] == [64, 64] and e2e["runs"] == 6
    assert e2e["p50"] >= row["latency_ms"]["p50"] * 0.9  # the model's run is one of its stages
    assert e2e["p50"] >= e2e["invoke_p50"] and e2e["preprocess_p50"] > 0
    assert e2e["postprocess_p50"] > 0
    sustained = row["sustained"]
    assert sustained["queries"] >= 40 and sustained["seconds"] >= 0.5  # both limits, not either
    assert sustained["p50"] <= sustained["p90"] <= sustained["p99"]
    assert sustained["drift"] == pytest.approx(
        sustained["last_tenth_p50"] / sustained["first_tenth_p50"] - 1)
    assert row["cold_start_ms"] == pytest.approx(row["load_ms"] + row["first_inference_ms"])
    assert row["first_inference_ms"] > 0
    from edgeseg.report import markdown

    text = markdown(report)
    assert "end to end fp32 (litert, 1 thr): 96x128 frame -> 64x64 -> mask" in text
    assert "sustained fp32 (litert, 1 thr)" in text and "cold start (load + first" in text

    # the mask an app gets is the frame's size and the model's labels, resized back
    model = runtime.load(path)
    frame = camera_frame(np.full((64, 64, 1), 0.5, np.float32), 96, 128)
    assert frame.dtype == np.uint8 and frame.shape == (96, 128, 1) and frame.max() == 128
    mask = EndToEnd(model, frame, (64, 64)).run(timed=False)
    assert mask.shape == (96, 128) and mask.dtype == np.uint8


@pytest.mark.parametrize("args, message", [
    (["--frame", "640by480"], "--frame 640by480: give the app's frame as HxW"),
    (["--frame", "4x4"], "each at least 8"),
    (["--sustained-queries", "0"], "--sustained-queries"),
])
def test_bad_app_latency_options_are_one_line(converted, runner, args, message):
    path, _ = converted[("tflite", "none")]
    result = runner.invoke(cli, ["bench", str(path), "--runs", "1", "--samples", "1", *args])
    assert result.exit_code == 2 and message in result.output
    assert "Traceback" not in result.output
