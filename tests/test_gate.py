"""The regression gate, the pytest helpers users put in their suites, predict, and the reports."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from edgeseg.cli import cli
from edgeseg.testing import assert_dice_close, assert_no_regression


@pytest.fixture(scope="module")
def bench_report(converted, tiny_run, tmp_path_factory):
    """A real bench JSON of the tiny model's Keras, fp32 and int8 files."""
    from benchmarks.harness import bench
    from edgeseg import runtime

    files = [tiny_run / "model.keras", converted[("tflite", "none")][0],
             converted[("tflite", "int8")][0], converted[("onnx", "int8")][0]]
    return bench(files, runs=3, warmup=1, samples=6, threads=(1,), progress=False,
                 load=runtime.load, echo=lambda line: None)


def _write(path, report):
    path.write_text(json.dumps(report))
    return path


def test_an_unchanged_report_passes_and_a_planted_dice_drop_fails(bench_report, runner, tmp_path):
    report = _write(tmp_path / "report.json", bench_report)
    baseline = tmp_path / "baseline.json"
    result = runner.invoke(cli, ["check", str(report), "--write-baseline", str(baseline)])
    assert result.exit_code == 0 and baseline.exists()
    result = runner.invoke(cli, ["check", str(report), "--baseline", str(baseline)])
    assert result.exit_code == 0, result.output
    assert result.output.strip().endswith("no regression")

    worse = copy.deepcopy(bench_report)
    row = next(r for r in worse["results"] if r["variant"] == "int8" and r["format"] == "tflite")
    row["dice"] -= 0.05
    row["size_bytes"] *= 2
    result = runner.invoke(cli, ["check", str(_write(tmp_path / "worse.json", worse)),
                                 "--baseline", str(baseline)])
    assert result.exit_code == 1
    lines = [l for l in result.output.splitlines() if l.startswith("REGRESSION")]
    assert len(lines) == 2 and all("int8 (litert, 1 thread(s))" in l for l in lines)
    assert any("Dice" in l and "allowed -0.01" in l for l in lines)
    assert any("size" in l and "x2.00" in l for l in lines)


def test_latency_is_compared_relative_to_the_reference_across_machines(bench_report):
    from edgeseg.gate import compare

    elsewhere = copy.deepcopy(bench_report)
    elsewhere["machine"]["cpu"] = "another CPU"
    for row in elsewhere["results"]:  # every model 3x slower: the machine, not a regression
        row["latency_ms"]["p50"] *= 3
    assert [p.rule for p in compare(elsewhere, bench_report)] == []
    same = copy.deepcopy(bench_report)
    for row in same["results"]:
        row["latency_ms"]["p50"] *= 3
        row["latency_ms"]["blocks"] = [b * 3 for b in row["latency_ms"]["blocks"]]
    assert {p.rule for p in compare(same, bench_report)} == {"latency"}


def test_a_busy_moment_is_noise_not_a_latency_regression(bench_report, tmp_path, runner):
    busy = copy.deepcopy(bench_report)
    row = busy["results"][0]
    base = bench_report["results"][0]["latency_ms"]
    # one timing block slowed by something else on the machine drags the p50 up by 1.44x; the
    # other blocks are as fast as before
    row["latency_ms"]["p50"] = base["p50"] * 1.44
    row["latency_ms"]["blocks"] = [min(base["blocks"]), min(base["blocks"]), base["p50"] * 3]
    baseline = _write(tmp_path / "base.json", bench_report)
    result = runner.invoke(cli, ["check", str(_write(tmp_path / "busy.json", busy)),
                                 "--baseline", str(baseline)])
    assert result.exit_code == 0, result.output
    assert "within noise" in result.output
    row["latency_ms"]["p50"] = base["p50"] * 1.6  # every block slower than any before: real
    row["latency_ms"]["blocks"] = [max(base["blocks"]) * 1.6] * 3
    result = runner.invoke(cli, ["check", str(_write(tmp_path / "slow.json", busy)),
                                 "--baseline", str(baseline)])
    assert result.exit_code == 1 and "even between the blocks' extremes" in result.output


def test_latency_that_cannot_be_compared_is_said(bench_report, tmp_path, runner):
    elsewhere = copy.deepcopy(bench_report)
    elsewhere["machine"]["cpu"] = "another CPU"
    for row in elsewhere["results"]:
        row["reference"] = False  # no reference row: nothing to compare relative to
    result = runner.invoke(cli, ["check", str(_write(tmp_path / "e.json", elsewhere)),
                                 "--baseline", str(_write(tmp_path / "b.json", bench_report))])
    assert result.exit_code == 0, result.output
    assert "latency not compared" in result.output.splitlines()[-1]


def test_max_dice_delta_needs_no_baseline(bench_report, tmp_path, runner):
    worse = copy.deepcopy(bench_report)
    next(r for r in worse["results"] if r["format"] == "onnx")["dice_delta"] = -0.2
    result = runner.invoke(cli, ["check", str(_write(tmp_path / "r.json", worse)),
                                 "--max-dice-delta", "0.01"])
    assert result.exit_code == 1 and "REGRESSION int8 (onnxruntime" in result.output


@pytest.mark.parametrize("content, message", [
    (None, "no such file"), ("not json", "not JSON"), ('{"a": 1}', "not an edgeseg bench report")])
def test_check_refuses_what_is_not_a_report(runner, tmp_path, content, message):
    path = tmp_path / "report.json"
    if content is not None:
        path.write_text(content)
    result = runner.invoke(cli, ["check", str(path), "--max-dice-delta", "0.01"])
    assert result.exit_code == 2 and message in result.output


def test_assert_no_regression_names_the_regressed_variant(bench_report):
    assert_no_regression(bench_report, bench_report)
    worse = copy.deepcopy(bench_report)
    next(r for r in worse["results"] if r["variant"] == "int8")["dice"] -= 0.1
    with pytest.raises(AssertionError, match=r"1 regression\(s\):\n  int8 \("):
        assert_no_regression(worse, bench_report)


def test_converted_models_keep_the_accuracy_of_their_source(tiny_run, converted):
    """The project's own accuracy-regression checks, through the helpers users get."""
    keras = tiny_run / "model.keras"
    for key, tol in ((("tflite", "none"), 1e-3), (("tflite", "int8"), 0.02),
                     (("onnx", "int8"), 0.02)):
        assert_dice_close(keras, converted[key][0], "synthetic-nuclei", tol, count=8)


def test_assert_dice_close_fails_on_a_planted_regression(tiny_run, tmp_path):
    """One layer's weights zeroed: the helper must notice."""
    from edgeseg.keras_files import load_tf_keras as load_model
    from edgeseg.models.saving import save_model

    model = load_model(tiny_run / "model.keras")
    layer = model.get_layer("dec0_b0_pw_conv")
    layer.set_weights([np.zeros_like(w) for w in layer.get_weights()])
    broken = save_model(model, tmp_path / "broken.keras")
    with pytest.raises(AssertionError, match="differ by"):
        assert_dice_close(tiny_run / "model.keras", broken, tol=0.01, count=8, size=64)


def test_predict_writes_masks_and_overlays_for_any_size(converted, runner, tmp_path):
    from PIL import Image

    from edgeseg.device.data.synthetic import nuclei_sample

    image, _ = nuclei_sample(size=150, seed=3)
    Image.fromarray((image[..., 0] * 255).astype(np.uint8)).save(tmp_path / "scan.png")
    out = tmp_path / "out"
    result = runner.invoke(cli, ["predict", str(converted[("tflite", "int8")][0]),
                                 str(tmp_path / "scan.png"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    mask = Image.open(out / "scan_mask.png")
    assert mask.mode == "P" and mask.size == (150, 150)
    assert set(np.unique(np.asarray(mask))) <= {0, 1}
    assert Image.open(out / "scan_overlay.png").mode == "RGB"
    missing = runner.invoke(cli, ["predict", str(converted[("tflite", "int8")][0]),
                                  str(tmp_path / "nope.png"), "--out", str(tmp_path / "o2")])
    assert missing.exit_code == 2 and "nope.png: no such file" in missing.output
    assert not (tmp_path / "o2").exists()


def test_reports_render_the_table_plots_and_masks(bench_report, tmp_path):
    from edgeseg.report import markdown, write_reports

    md = markdown(bench_report)
    assert "| variant | runtime | MMACs |" in md and "fp32 (reference)" in md
    paths = write_reports(bench_report, tmp_path, data="synthetic-nuclei")
    page = paths["html"].read_text()
    assert page.count("data:image/png;base64,") >= 2 + 3 * (2 + 4)  # 2 plots, 3 samples x 6
    assert "Pareto" not in page or "latency vs Dice" in page
    assert "<table>" in page and "int8" in page


def test_a_baseline_of_other_images_is_refused_in_one_line(bench_report, runner, tmp_path):
    from edgeseg.device.errors import EdgesegError
    from edgeseg.gate import compare

    other = copy.deepcopy(bench_report)
    other["dataset"]["name"] = "synthetic-shapes (test samples from index 2,000,000: never " \
                               "trained, validated or calibrated on)"
    done = runner.invoke(cli, ["check", str(_write(tmp_path / "r.json", bench_report)),
                               "--baseline", str(_write(tmp_path / "b.json", other))])
    assert done.exit_code == 2 and len(done.output.strip().splitlines()) == 1
    assert "the baseline was measured on synthetic-shapes" in done.output
    fewer = copy.deepcopy(bench_report)
    fewer["dataset"]["samples"] = 3
    with pytest.raises(EdgesegError, match="compare reports of the same images"):
        compare(bench_report, fewer)


def test_a_folder_baseline_from_another_checkout_is_the_same_data(bench_report):
    from edgeseg.gate import compare

    here, there = copy.deepcopy(bench_report), copy.deepcopy(bench_report)
    here["dataset"]["name"] = "/home/ci/checkout/data/cells (validation split: ...)"
    there["dataset"]["name"] = "data/cells (validation split: ...)"
    notes = []
    assert compare(here, there, notes=notes) == [] and notes == []
    there["results"][1]["params"] += 1
    assert compare(here, there, notes=notes) == []
    assert [note for note in notes if "another model, compared as given" in note]


def test_a_baseline_of_another_task_is_refused(bench_report):
    from edgeseg.device.errors import EdgesegError
    from edgeseg.gate import compare

    other = copy.deepcopy(bench_report)
    for row in other["results"]:
        row["dice_per_class"] = [*row["dice_per_class"], 0.5]
    with pytest.raises(EdgesegError, match="a baseline of another task"):
        compare(bench_report, other)


def test_an_emulated_board_is_never_held_to_a_latency(bench_report):
    """Rows that ran emulated (the emulated aarch64 board): Dice and size are held, the time is
    not (it is no timing), and the note says why."""
    from edgeseg.gate import compare

    base, slow = copy.deepcopy(bench_report), copy.deepcopy(bench_report)
    for report in (base, slow):
        report["machine"]["emulated"] = "qemu-tcg"
    for row in slow["results"]:
        row["latency_ms"]["p50"] *= 10
        row["latency_ms"].pop("blocks", None)
    notes = []
    assert compare(slow, base, notes=notes) == []
    assert len(notes) == len(base["results"])
    assert all("ran qemu-tcg emulated: emulated time is not a timing" in n for n in notes)
    slow["results"][0]["dice"] -= 0.2
    assert [v.rule for v in compare(slow, base)] == ["dice"]
    del slow["machine"]["emulated"], base["machine"]["emulated"]
    assert "latency" in {v.rule for v in compare(slow, base)}  # the same change, not emulated
