"""Targets that cannot run here: Arm's Vela (Ethos-U) and TensorFlow Lite Micro (Cortex-M), real.

The real compiler and interpreter run on the tiny session models (``converted``: 64x64 int8 and
fp32 .tflite files); no mocks. Without the ``targets`` extra these tests skip, saying why.
"""

import json

import pytest

from edgeseg.cli import cli

vela = pytest.importorskip("ethosu.vela", reason="Vela is not installed: pip install edgeseg[targets]")
tflm = pytest.importorskip("tflite_micro",
                           reason="tflite-micro is not installed: pip install edgeseg[targets]")


def test_vela_estimates_an_int8_file_and_a_wider_npu_takes_fewer_cycles(converted):
    from edgeseg.device.targets.ethos_u import estimate

    path, _ = converted[("tflite", "int8")]
    small, large = estimate(path, "ethos-u55-128"), estimate(path, "ethos-u55-256")
    for row in (small, large):
        assert row["estimated"] and row["clock_mhz"] == 500
        assert row["latency_ms"]["p50"] > 0 and row["cycles"] > 0
        assert row["sram_bytes"] > 0 and row["flash_bytes"] > 0 and row["npu_ops"] > 0
        # the float input and output of the file are converted on the CPU: Vela says so
        assert set(row["cpu_ops"]) == {"QUANTIZE", "DEQUANTIZE"}
        assert "Float32" in row["cpu_reasons"]["QUANTIZE"]
    assert large["cycles_npu"] < small["cycles_npu"]  # 256 MACs/cycle against 128


def test_vela_refuses_a_float_file_in_one_line(runner, converted):
    path, _ = converted[("tflite", "none")]
    result = runner.invoke(cli, ["inspect", str(path), "--target", "ethos-u55-128"])
    assert result.exit_code == 2
    assert "Vela takes fully int8 (or int16x8)" in result.output
    assert "Traceback" not in result.output


def test_an_unknown_target_is_one_line_listing_the_known_ones(runner, converted):
    path, _ = converted[("tflite", "int8")]
    result = runner.invoke(cli, ["inspect", str(path), "--target", "ethos-u99"])
    assert result.exit_code == 2
    assert "unknown target 'ethos-u99'" in result.output and "cortex-m" in result.output


def test_tflm_arena_is_measured_and_grows_with_the_input_size(tiny_run, converted, tmp_path):
    from converters import convert
    from edgeseg.device.targets.tflm import estimate

    small = tmp_path / "int8_32.tflite"
    convert(tiny_run / "model.keras", small, to="tflite", quant="int8", input_size=32,
            calib_samples=4, verify=False)
    at32, at64 = estimate(small), estimate(converted[("tflite", "int8")][0])
    assert at32["runs"] and at64["runs"] and not at64["unsupported_ops"]
    assert 0 < at32["arena_bytes"] < at64["arena_bytes"]
    # activations scale with the pixels; TFLM's own records do not
    assert at64["arena_head_bytes"] > 3 * at32["arena_head_bytes"]
    assert at64["flash_bytes"] == converted[("tflite", "int8")][0].stat().st_size


def test_tflm_names_an_op_it_has_no_kernel_for(runner, tf, tmp_path):
    from edgeseg.device.targets.tflm import estimate

    f = tf.function(lambda x: tf.math.atan2(x, x + 1.0),
                    input_signature=[tf.TensorSpec([1, 8, 8, 2], tf.float32)])
    converter = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f)
    path = tmp_path / "atan2.tflite"
    path.write_bytes(converter.convert())
    row = estimate(path)
    assert row["runs"] is False and row["unsupported_ops"] == ["ATAN2"]
    result = runner.invoke(cli, ["inspect", str(path), "--target", "tflm"])
    assert result.exit_code == 0, result.output
    assert "does not run: TFLite Micro has no kernel for ATAN2" in result.output


def test_tflm_refusing_a_file_it_has_kernels_for_is_a_row_that_says_why(converted):
    from edgeseg.device.targets.tflm import estimate

    for quant, kernel in (("fp16", "dequantize kernel"), ("dynamic", "Hybrid models")):
        row = estimate(converted[("tflite", quant)][0])
        assert row["runs"] is False and not row["unsupported_ops"]
        assert kernel in row["failure"], row["failure"]


def test_run_keeps_its_targets_in_run_json():
    from edgeseg.pipeline import RunConfig

    cfg = RunConfig(targets=("ethos-u55-128", "cortex-m"))
    assert RunConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))).resolved() == cfg.resolved()
    assert RunConfig.from_dict({}).targets == ()  # a run.json from before targets


def test_bench_target_rows_carry_the_dice_of_their_file_and_the_gate_holds_budgets(
        runner, converted, tmp_path):
    from edgeseg.device.benchjson import load_report
    from edgeseg.report import markdown

    path, _ = converted[("tflite", "int8")]
    fp32, _ = converted[("tflite", "none")]
    out = tmp_path / "bench.json"
    result = runner.invoke(cli, ["bench", str(fp32), str(path), "--samples", "4", "--runs", "3",
                                 "--quiet", "--target", "ethos-u55-128,cortex-m",
                                 "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "left out: Vela takes int8" in result.output  # the fp32 file, said
    report = load_report(out)  # validates: target rows keep the bench vocabulary
    rows = {(r["path"], r.get("target")): r for r in report["results"]}
    host, npu = rows[(str(path), None)], rows[(str(path), "ethos-u55-128")]
    micro = rows[(str(path), "cortex-m")]
    assert (str(fp32), "ethos-u55-128") not in rows and (str(fp32), "cortex-m") in rows
    assert npu["dice"] == host["dice"] and npu["dice_source"].startswith("LiteRT")
    assert micro["dice_source"].startswith("TFLite Micro")
    assert micro["agreement_litert"] > 0.98 and abs(micro["dice"] - host["dice"]) < 0.02
    assert micro["max_abs_diff_litert"] < 0.2
    text = markdown(report)
    assert "## Targets" in text and "| ethos-u55-128 | model_int8.tflite" in text
    assert "host CPU" in text

    ok = runner.invoke(cli, ["check", str(out), "--max-arena", "cortex-m=1MB",
                             "--max-latency", "ethos-u55-128=1000"])
    assert ok.exit_code == 0, ok.output
    over = runner.invoke(cli, ["check", str(out), "--max-arena", "cortex-m=1KB",
                               "--max-flash", "ethos-u85-256=1MB"])
    assert over.exit_code == 1
    assert "cortex-m: arena" in over.output and "no row for target ethos-u85-256" in over.output
    from edgeseg.gate import Budget, compare

    host_only = {**report, "results": [r for r in report["results"] if not r.get("target")]}
    [problem] = compare(host_only, budgets=[Budget("arena_bytes", 1 << 20)])
    assert "no target row in the report gives its arena" in str(problem)  # fails closed
    bad = runner.invoke(cli, ["check", str(out), "--max-arena", "lots"])
    assert bad.exit_code == 2 and "--max-arena: 'lots' is not a size" in bad.output
    baseline = tmp_path / "baseline.json"
    assert runner.invoke(cli, ["check", str(out), "--write-baseline", str(baseline)]).exit_code == 0
    again = runner.invoke(cli, ["check", str(out), "--baseline", str(baseline)])
    assert again.exit_code == 0, again.output
    json.loads(baseline.read_text())


def test_fit_search_keeps_the_largest_input_whose_arena_fits_the_budget(tmp_path):
    from benchmarks.studies.ram_fit import measure, search

    small, large = measure(0.25, 32, tmp_path, echo=lambda line: None), \
        measure(0.25, 64, tmp_path, echo=lambda line: None)
    assert small["runs"] and 0 < small["arena_bytes"] < large["arena_bytes"]
    ram = (small["arena_bytes"] + large["arena_bytes"]) // 2
    found = search([ram, large["arena_bytes"]], tmp_path, alphas=(0.25,), sizes=(32, 64),
                   echo=lambda line: None)  # measured above: reused, not converted again
    assert found["budgets"][ram]["choice"]["size"] == 32
    assert found["budgets"][large["arena_bytes"]]["choice"]["size"] == 64
    assert search([small["arena_bytes"] - 1], tmp_path, alphas=(0.25,), sizes=(32, 64),
                  echo=lambda line: None)["budgets"][small["arena_bytes"] - 1]["choice"] is None


def test_a_target_that_refuses_a_file_leaves_the_others(runner, converted):
    """A float .tflite (a MediaPipe file, say): Vela refuses it, TFLite Micro still estimates;
    the refusal is a line, not the end of the command."""
    path, _ = converted[("tflite", "none")]
    result = runner.invoke(cli, ["inspect", str(path), "--target", "ethos-u55-128,cortex-m"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(line.startswith("cortex-m") for line in lines)
    refused = [line for line in lines if line.startswith("ethos-u55-128: not estimated: ")]
    assert len(refused) == 1 and "quantize the model it came from, or this file itself: " \
        "edgeseg convert" in refused[0]
