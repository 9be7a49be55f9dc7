"""Issue 8's tools: the per-op profiler, the GEMM roofline, the sweep's rule and the peers' goals.

No latency is asserted here: the speed goals are checked by running the benchmarks.
"""

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from edgeseg.cli import cli


@pytest.mark.parametrize("quant", ["none", "int8"])
def test_tflite_profile_has_a_row_per_op_and_adds_up_to_the_whole(converted, quant):
    from edgeseg.device.formats.tflite import read_tflite
    from edgeseg.profiling import profile_tflite

    path, _ = converted[("tflite", quant)]
    profile = profile_tflite(path, threads=1, runs=20)
    ops = read_tflite(path).ops
    assert [row["op"] for row in profile["ops"]] == [op.name for op in ops]
    assert sum(group["count"] for group in profile["by_type"]) == len(ops)
    assert profile["whole_ms"] > 0
    assert all(row["ms"] >= 0 for row in profile["ops"])
    assert profile["below_zero"]["ops"] == sum(row["ms_measured"] < 0 for row in profile["ops"])
    # the prefix differences telescope: their medians add up to about the whole model
    assert 0.5 < profile["sum_over_whole"] < 2.0
    conv = next(group for group in profile["by_type"] if group["op"] == "CONV_2D")
    assert conv["macs"] > 0 and conv["gmacs_per_s"] > 0


def test_an_op_whose_prefix_runs_faster_than_the_one_before_is_shown_as_zero_and_counted():
    from edgeseg.profiling import format_profile, prefix_op_times

    # three prefixes timed twice (seconds): the second cut runs faster than the first
    times = np.array([[0.004, 0.003, 0.006], [0.004, 0.003, 0.007]])
    shown, measured = prefix_op_times(times)
    assert measured[1] == pytest.approx(-1.0)
    np.testing.assert_allclose(shown, [4.0, 0.0, 3.5])
    assert (shown >= 0).all()
    profile = {"file": "m.tflite", "runtime": "litert", "threads": 1, "runs": 2, "method": "m",
               "whole_ms": 6.5, "sum_ms": 7.5, "sum_over_whole": 7.5 / 6.5, "by_type": [],
               "ops": [], "below_zero": {"ops": 1, "ms": 1.0}}
    assert "1 op(s) timed below zero" in format_profile(profile)


@pytest.mark.parametrize("quant", ["none", "int8"])
def test_a_graph_cut_after_the_last_op_is_the_whole_model(converted, quant):
    from ai_edge_litert.interpreter import Interpreter

    from edgeseg.device.formats.tflite import schema
    from edgeseg.profiling import _prefix_model

    path, _ = converted[("tflite", quant)]
    fb = schema()
    model = fb.ModelT.InitFromPackedBuf(bytearray(path.read_bytes()), 0)
    last = len(model.subgraphs[0].operators) - 1
    image = np.random.default_rng(1).random((1, 64, 64, 1), np.float32)
    outputs = []
    for source in ({"model_path": str(path)}, {"model_content": _prefix_model(model, fb, last)}):
        interpreter = Interpreter(**source)
        interpreter.allocate_tensors()
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], image)
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(interpreter.get_output_details()[0]["index"]))
    np.testing.assert_array_equal(outputs[0], outputs[1])

    # a cut in the middle outputs every tensor its own ops produce and do not read
    middle = _prefix_model(model, fb, 3)
    cut = fb.ModelT.InitFromPackedBuf(bytearray(middle), 0).subgraphs[0]
    assert len(cut.operators) == 4
    assert cut.operators[-1].outputs[0] in cut.outputs.tolist()


@pytest.mark.parametrize("quant", ["none", "int8"])
def test_onnx_profile_reads_ort_node_times(converted, quant):
    from edgeseg.profiling import profile_onnx

    path, _ = converted[("onnx", quant)]
    profile = profile_onnx(path, threads=1, runs=5)
    kinds = {group["op"] for group in profile["by_type"]}
    assert kinds & {"Conv", "FusedConv", "QLinearConv"}
    # ORT's node times account for the run (not a tenth of it, not three times it), and the
    # convolutions (all their kinds: a QDQ file keeps some in float), which do nearly all the MACs,
    # take more time than any other kind of op (in this tiny int8 model the 32 DequantizeLinear
    # nodes come close to its QLinearConv ones alone)
    assert 0.3 < profile["sum_ms"] / profile["whole_ms"] < 3, profile
    convolutions = {"Conv", "FusedConv", "QLinearConv", "ConvInteger"}
    conv_ms = sum(group["ms"] for group in profile["by_type"] if group["op"] in convolutions)
    assert conv_ms > max(group["ms"] for group in profile["by_type"]
                         if group["op"] not in convolutions), profile["by_type"]


def test_inspect_profile_prints_the_breakdown(converted):
    path, _ = converted[("tflite", "int8")]
    result = CliRunner().invoke(cli, ["inspect", str(path), "--profile", "--runs", "3"])
    assert result.exit_code == 0, result.output
    assert "op type" in result.output and "slowest" in result.output
    result = CliRunner().invoke(cli, ["inspect", str(path), "--profile", "--runs", "3", "--json"])
    report = json.loads(result.output)
    assert report["profile"]["runtime"] == "litert" and report["profile"]["ops"]


def test_inspect_profile_refuses_a_bad_run_count(converted):
    path, _ = converted[("tflite", "int8")]
    result = CliRunner().invoke(cli, ["inspect", str(path), "--profile", "--runs", "0"])
    assert result.exit_code == 2 and "--runs" in result.output


def test_rooflines_time_one_convolution_per_runtime_dtype_and_threads(converted):
    from benchmarks.studies.roofline import (
        CHANNELS,
        PIXELS,
        conv_rooflines,
        key,
        row_share,
    )

    ceilings = conv_rooflines(threads=(1,), runs=3, warmup=1)
    assert sorted(ceilings) == sorted(key(rt, dt, 1) for rt in ("litert", "onnxruntime")
                                      for dt in ("fp32", "int8"))
    for name, ceiling in ceilings.items():
        macs = PIXELS * PIXELS * CHANNELS * CHANNELS
        assert ceiling["macs"] == macs and ceiling["best_ms"] <= ceiling["p50_ms"]
        assert ceiling["gmacs_per_s"] == pytest.approx(macs / ceiling["best_ms"] / 1e6, rel=1e-3)
        assert ceiling["dtype"] in ceiling["method"] and "1x1 convolution" in ceiling["method"]
    # a file's share: its convolution MACs (no resizing) over the roofline of its own dtype
    path, _ = converted[("tflite", "int8")]
    from edgeseg.device.flops import file_cost

    cost = file_cost(path)
    resize = sum(layer.macs for layer in cost.layers if layer.kind == "RESIZE_BILINEAR")
    row = {"path": str(path), "runtime": "litert", "threads": 1, "input_shape": list(cost.input_shape),
           "latency_ms": {"p50": 2.0}}
    fake = {key("litert", "int8", 1): {"gmacs_per_s": 10.0}}
    macs, share = row_share(row, fake, "int8")
    assert resize > 0 and macs == cost.macs - resize
    assert share == pytest.approx(macs / 2e-3 / 1e9 / 10.0)
    assert row_share(row, fake, "fp32")[1] is None  # no fp32 roofline given: no share
    assert row_share(row, fake, "fp16")[1] is None


def test_the_sweep_rule_takes_the_fastest_within_the_dice_tolerance():
    from benchmarks.studies.sweep import choose, pareto

    points = {"big": {"p50": 10.0, "dice": 0.975}, "mid": {"p50": 6.0, "dice": 0.971},
              "small": {"p50": 4.0, "dice": 0.960}, "slow_bad": {"p50": 12.0, "dice": 0.950}}
    assert choose(points) == "mid"  # 0.971 >= 0.975 - 0.005; small loses 0.015
    assert pareto(points) == ["small", "mid", "big"]
    points["mid"]["dice"] = 0.969
    assert choose(points) == "big"
    # --min-dice: the peers' promise on top of the sweep's own tolerance
    points["mid"]["dice"] = 0.972
    assert choose(points, min_dice=0.9714) == "mid"
    assert choose(points, min_dice=0.973) == "big"
    assert choose(points, min_dice=0.99) is None  # nothing passes: said, not a fallback pick


def _row(model, file, runtime, threads, p50, dice, macs=10 ** 9):
    return {"model": model, "file": file, "runtime": runtime, "threads": threads,
            "latency_ms": {"p50": p50}, "dice": dice, "macs": macs, "conv_macs": macs,
            "roofline_fraction": macs / (p50 / 1e3) / 1e9 / 50 if threads == 1 else None}


def test_the_peers_goals_compare_best_deployable_variants():
    from benchmarks.studies.peers import best_deployable, goals

    rows = [
        _row("mobile_unet", "fp32.tflite", "litert", 1, 8.0, 0.970, 2 * 10 ** 8),
        _row("mobile_unet", "int8.tflite", "litert", 1, 6.0, 0.969, 2 * 10 ** 8),
        _row("mobile_unet", "int8.tflite", "litert", 2, 3.5, 0.969, 2 * 10 ** 8),
        _row("tutorial_unet", "fp32.tflite", "litert", 1, 70.0, 0.972),
        _row("tutorial_unet", "int8.tflite", "litert", 1, 30.0, 0.940),  # loses > 0.01: not deployable
        _row("unet16", "fp32.tflite", "litert", 1, 40.0, 0.975),
        _row("unet64", "fp32.tflite", "litert", 1, 400.0, None, 48 * 10 ** 9),
    ]
    report = {"results": rows, "roofline": {"litert fp32 1 thread": {"gmacs_per_s": 50.0,
                                                                      "method": "a conv"}}}
    assert best_deployable(report, "tutorial_unet", "litert")["file"] == "fp32.tflite"
    assert best_deployable(report, "mobile_unet", "litert")["file"] == "int8.tflite"
    result = {g["goal"]: g for g in goals(report)}
    speed = result["speedup vs tutorial_unet (litert, 1 thread)"]
    assert speed["value"] == pytest.approx(70 / 6, abs=0.01) and speed["passed"]
    macs = result["fewer MACs than unet base 64"]
    assert macs["value"] == 240.0 and macs["passed"]  # Dice 0.970 vs 0.975: within 0.01
    share = result["fp32 TFLite share of LiteRT's 1x1-convolution rate (1 thread)"]
    assert share["value"] == 0.5 and share["passed"] is True  # 25 GMAC/s of 50
    assert result["int8 / fp32 latency (litert, 1 thread)"]["value"] == 0.75
    assert result["2-thread speedup of the default's best variant"]["value"] == pytest.approx(1.71,
                                                                                            abs=0.01)
    rows.append(_row("mobile_unet-previous", "fp32.tflite", "litert", 1, 5.0, 0.965))
    other = {g["goal"]: g for g in goals(report)}[  # another mobile_unet peer: its own goal
        "mobile_unet-previous: speedup vs tutorial_unet (litert, 1 thread)"]
    assert other["value"] == 14.0 and not other["passed"]  # 0.007 below the tutorial
    rows.pop()
    rows[0]["dice"] = rows[1]["dice"] = 0.960  # now 0.015 below unet16 and 0.012 below tutorial
    result = {g["goal"]: g for g in goals(report)}
    assert not result["fewer MACs than unet base 64"]["passed"]
    assert not result["speedup vs tutorial_unet (litert, 1 thread)"]["passed"]


def test_the_field_goal_is_judged_against_the_fastest_field_models_best_deployable_file():
    from benchmarks.studies.peers import goals

    rows = [
        _row("mobile_unet", "fp32.tflite", "litert", 1, 3.0, 0.970),
        _row("mobile_unet", "int8.tflite", "litert", 1, 2.0, 0.968),
        _row("lraspp_small", "fp32.tflite", "litert", 1, 4.0, 0.966),
        _row("lraspp_small", "int8.tflite", "litert", 1, 3.5, 0.950),  # not deployable
        _row("fast_scnn", "fp32.tflite", "litert", 1, 5.0, 0.972),
        _row("deeplabv3plus", "fp32.tflite", "litert", 1, 40.0, 0.975),
    ]
    report = {"results": rows, "roofline": {}}
    field = {g["goal"]: g for g in goals(report)}[
        "speedup vs the fastest field model (litert, 1 thread)"]
    # the fastest field file is lraspp_small's fp32 (its int8 loses 0.016): 4.0 / 2.0
    assert field["value"] == 2.0 and field["passed"]
    assert "lraspp_small fp32.tflite" in field["detail"]
    assert "more accurate than mobile_unet: fast_scnn 0.9720, deeplabv3plus 0.9750" in \
        field["detail"]
    rows[2]["dice"] = 0.975  # the fastest field model is now 0.007 more accurate
    assert not {g["goal"]: g for g in goals(report)}[
        "speedup vs the fastest field model (litert, 1 thread)"]["passed"]
    rows[2]["latency_ms"]["p50"] = 2.5  # and 1.25x: slower than the goal
    field = {g["goal"]: g for g in goals(report)}[
        "speedup vs the fastest field model (litert, 1 thread)"]
    assert field["value"] == 1.25 and not field["passed"]
    rows.append(_row("mobile_unet-stride4", "fp32.tflite", "litert", 1, 1.25, 0.969))
    shallow = {g["goal"]: g for g in goals(report)}[  # another mobile_unet: judged on its own
        "mobile_unet-stride4: speedup vs the fastest field model (litert, 1 thread)"]
    assert shallow["value"] == 2.0 and not shallow["passed"]  # 0.001 short of 0.975 - 0.005
    assert "more accurate than mobile_unet-stride4: lraspp_small 0.9750" in shallow["detail"]
    rows[-1]["dice"] = 0.971
    assert {g["goal"]: g for g in goals(report)}[
        "mobile_unet-stride4: speedup vs the fastest field model (litert, 1 thread)"]["passed"]
    missing = {g["goal"]: g for g in goals({"results": rows[:2], "roofline": {}})}[
        "speedup vs the fastest field model (litert, 1 thread)"]
    assert missing["value"] is None and missing["detail"].startswith("not measured")


def test_a_latency_goal_must_hold_in_the_worst_timing_round():
    from benchmarks.studies.peers import goals

    ours = _row("mobile_unet", "fp32.tflite", "litert", 1, 6.0, 0.970, 2 * 10 ** 8)
    theirs = _row("tutorial_unet", "fp32.tflite", "litert", 1, 70.0, 0.972)
    ours["latency_ms"]["rounds"] = [6.0, 5.9, 12.0]  # one round on a busy machine
    theirs["latency_ms"]["rounds"] = [70.0, 71.0, 69.0]
    speed = {g["goal"]: g for g in goals({"results": [ours, theirs], "roofline": {}})}[
        "speedup vs tutorial_unet (litert, 1 thread)"]
    assert speed["value"] == pytest.approx(69 / 12, abs=0.01) and speed["passed"] is False
    assert "worst round" in speed["detail"]
    ours["latency_ms"]["rounds"] = [6.0, 5.9, 6.1]
    speed = {g["goal"]: g for g in goals({"results": [ours, theirs], "roofline": {}})}[
        "speedup vs tutorial_unet (litert, 1 thread)"]
    assert speed["value"] == pytest.approx(69 / 6.1, abs=0.01) and speed["passed"] is True


def test_goals_fail_closed_when_their_figures_are_missing():
    from benchmarks.studies.peers import best_deployable, goals

    result = goals({"results": [], "roofline": {}})
    assert len(result) == 9  # every goal is listed, none silently dropped
    assert all(g["value"] is None and g["passed"] is False and "not measured" in g["detail"]
               for g in result)
    rows = [_row("mobile_unet", "fp32.tflite", "litert", 1, 8.0, None),
            _row("mobile_unet", "int8.tflite", "litert", 1, 6.0, 0.95)]
    assert best_deployable({"results": rows}, "mobile_unet", "litert") is None  # nothing to judge by
    rows[0]["dice"] = 0.96
    rows.append(_row("mobile_unet", "dynamic.tflite", "litert", 1, 1.0, None))  # no Dice: never
    assert best_deployable({"results": rows}, "mobile_unet", "litert")["file"] == "int8.tflite"


def test_goals_against_peers_a_run_left_out_are_not_listed():
    from benchmarks.studies.peers import goals

    rows = [_row("mobile_unet", "fp32.tflite", "litert", 1, 3.0, 0.970),
            _row("fast_scnn", "fp32.tflite", "litert", 1, 4.5, 0.940)]
    report = {"results": rows, "roofline": {}, "peers": {"mobile_unet": {}, "fast_scnn": {}}}
    names = [g["goal"] for g in goals(report)]  # --peers fast_scnn: no tutorial, no unet64/16
    assert not [n for n in names if "tutorial_unet" in n or "unet base 64" in n]
    assert "speedup vs the fastest field model (litert, 1 thread)" in names
    report["peers"]["tutorial_unet"] = {}  # chosen but without a deployable file: still judged
    tutorial = {g["goal"]: g for g in goals(report)}["speedup vs tutorial_unet (litert, 1 thread)"]
    assert tutorial["value"] is None and tutorial["passed"] is False
    report["peers"] = {"mobile_unet": {}, "tutorial_unet": {}}  # no field model chosen
    assert not [g for g in goals(report) if "field model" in g["goal"]]


@pytest.mark.slow
def test_the_sweep_command_trains_converts_benchmarks_and_chooses(tmp_path):
    out = tmp_path / "sweep"
    done = subprocess.run([sys.executable, "-m", "benchmarks.studies.sweep", "--only", "concat,add",
                           "--steps", "2", "--runs", "2", "--samples", "2", "--input-size", "32",
                           "--seeds", "3", "--rounds", "1", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((out / "sweep.json").read_text())
    assert report["schema"] == "edgeseg.bench/1"
    assert set(report["sweep"]["configs"]) == {"concat", "add"}
    assert report["seeds"] == [3] and (out / "seed3" / "add" / "int8.tflite").exists()
    # the rule, recomputed from the rows: each configuration's fastest file within 0.01 Dice of its
    # fp32 file, then the fastest configuration within 0.005 of the best
    best = {}
    for label in ("concat", "add"):
        rows = [r for r in report["results"] if r["config"] == label]
        fp32 = next(r for r in rows if r["file"] == "fp32.tflite")
        ok = [r for r in rows if r["dice"] >= fp32["dice"] - 0.01]
        best[label] = min(ok, key=lambda r: r["latency_ms"]["p50"])
    top = max(r["dice"] for r in best.values())
    want = min((label for label, r in best.items() if r["dice"] >= top - 0.005),
               key=lambda label: best[label]["latency_ms"]["p50"])
    assert report["sweep"]["choice"] == want
    assert len(report["results"]) == 4  # fp32 and int8 .tflite of each, one thread
    assert "chosen" in (out / "sweep.md").read_text() and (out / "sweep.png").stat().st_size > 0


def test_seeds_are_scored_apart_and_the_first_seeds_files_timed_each_round(converted, tmp_path):
    import shutil

    from benchmarks.studies.budget import measure

    files = {}
    for seed in (0, 1):  # each "seed" a folder of its own model's files, as the budget writes them
        folder = tmp_path / f"seed{seed}" / "tiny"
        folder.mkdir(parents=True)
        for quant in ("none", "int8"):
            source, _ = converted[("tflite", quant)]
            shutil.copy(source, folder / source.name)
            shutil.copy(source.with_name(source.name + ".json"), folder / (source.name + ".json"))
        files[seed] = sorted(folder.glob("*.tflite"))
    report = measure(files, threads=(1,), runs=2, samples=2, rounds=2, input_size=64,
                     reference=files[0][0], echo=lambda line: None)
    assert report["seeds"] == [0, 1] and report["rounds"] == 2
    for row in report["results"]:
        assert row["path"].startswith(str(tmp_path / "seed0"))
        rounds = row["latency_ms"]["rounds"]
        assert len(rounds) == 2 and row["latency_ms"]["p50"] == pytest.approx(sum(rounds) / 2)
        assert sorted(row["dice_seeds"]) == ["0", "1"]
        assert row["dice"] == pytest.approx(sum(row["dice_seeds"].values()) / 2)
        assert row["dice_sd"] == pytest.approx(0.0, abs=1e-12)  # the same files: no spread


def test_the_sweep_refuses_an_unknown_configuration():
    done = subprocess.run([sys.executable, "-m", "benchmarks.studies.sweep", "--only", "huge"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "--only" in done.stderr and "huge" in done.stderr


def test_the_peers_estimate_each_int8_file_on_the_npus_and_microcontrollers(converted, tmp_path):
    """Vela and TFLite Micro really run on each model's int8.tflite; a file Vela refuses is a
    row with its one line and the table says so, the others still estimated."""
    import shutil
    from pathlib import Path

    from benchmarks.studies.peers import TARGETS, target_estimates, target_table

    paths = []
    for model, quant in (("mobile_unet", "int8"), ("fast_scnn", "none")):  # fp32: Vela refuses
        (tmp_path / model).mkdir()
        paths.append(shutil.copy(converted[("tflite", quant)][0], tmp_path / model / "int8.tflite"))
    lines = []
    rows = target_estimates([Path(p) for p in paths] + [tmp_path / "absent" / "int8.tflite"],
                            echo=lines.append)
    assert [(r["model"], r["target"]) for r in rows] == [
        (m, t) for m in ("mobile_unet", "fast_scnn") for t in TARGETS]
    ours = {r["target"]: r for r in rows if r["model"] == "mobile_unet"}
    assert ours["ethos-u55-128"]["latency_ms"]["p50"] > 0 and ours["ethos-u55-128"]["estimated"]
    assert ours["cortex-m"]["runs"] and ours["cortex-m"]["arena_bytes"] > 0
    refused = next(r for r in rows if r["model"] == "fast_scnn" and r["target"] == "ethos-u55-128")
    assert "int8" in refused["failure"] and "latency_ms" not in refused
    table = "\n".join(target_table({"targets": rows}))
    assert "| fast_scnn | refused | refused |" in table
    assert f"| mobile_unet | {ours['ethos-u55-128']['latency_ms']['p50']:.2f}" in table
