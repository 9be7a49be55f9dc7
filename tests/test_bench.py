"""The harness: the bench JSON, models side by side, tiling for other sizes, no TensorFlow."""

from __future__ import annotations

import json
import subprocess
import sys

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
    from edgeseg.data.writer import write_synthetic

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
    from edgeseg.report import text_table

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
