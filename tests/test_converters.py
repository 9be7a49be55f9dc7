"""Converters: every TFLite mode and ONNX, parity in the real runtimes, cards inside the files."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from tests_support import MODES

from edgeseg.cli import cli


def _lines(output):
    return [line for line in output.splitlines() if line.strip()]


@pytest.mark.parametrize("to, quant", MODES)
def test_every_mode_converts_runs_and_passes_parity(converted, to, quant):
    from edgeseg import runtime

    path, output = converted[(to, quant)]
    assert "parity on 4 samples" in output
    model = runtime.load(path)
    card = model.card  # read from the file itself
    assert card["format"] == to and card["variant"] == ("fp32" if quant == "none" else quant)
    assert card["input_size"] == [64, 64] and card["channels"] == 1
    assert card["class_names"] == ["background", "nucleus"]
    assert card["parity"]["passed"] and card["parity"]["agreement"] > 0.95
    if quant in ("none", "fp16"):
        assert card["parity"]["max_abs_diff"] <= {"none": 1e-4, "fp16": 1e-2}[quant]
    assert card["macs"] > 0 and card["source"]["variant"] == "fp32"
    assert json.loads(path.with_name(path.name + ".json").read_text()) == card
    probs = model.predict(np.random.rand(3, 64, 64, 1).astype("float32"))
    assert probs.shape == (3, 64, 64, 1) and probs.dtype == np.float32
    assert not list(path.parent.glob(".*partial*"))  # the trial file is gone


def test_the_card_inside_a_file_survives_without_the_json_beside_it(converted, tmp_path):
    from edgeseg import runtime

    for key in (("tflite", "int8"), ("onnx", "int8")):
        source, _ = converted[key]
        alone = tmp_path / source.name
        alone.write_bytes(source.read_bytes())
        assert runtime.load(alone).card["variant"] == "int8"


def test_int8_weights_take_a_quarter_of_the_float_bytes(converted):
    """Whole-file ratios are measured on the default model (see the README); a tiny model's file is
    mostly graph, so here the weights are compared: int8 kernels, int32 biases."""
    from edgeseg.device.formats.tflite import read_tflite

    fp32 = read_tflite(converted[("tflite", "none")][0]).bytes_by_kind()["weights"]
    int8 = read_tflite(converted[("tflite", "int8")][0]).bytes_by_kind()["weights"]
    assert int8 / fp32 < 0.3


def test_macs_read_from_every_file_equal_the_keras_count(converted, tiny_run):
    from edgeseg.device.flops import file_cost, keras_cost
    from edgeseg.keras_files import load_tf_keras as load_model

    want = keras_cost(load_model(tiny_run / "model.keras"), input_size=64).macs
    for path, _ in converted.values():
        assert file_cost(path).macs == want, path.name


@pytest.mark.parametrize("upsample, qat", [
    (upsample, qat) for upsample in ("bilinear", "nearest", "transpose", "maxunpool")
    for qat in (False, True) if not (qat and upsample == "nearest")],  # QAT: one UpSampling2D
    ids=lambda v: {False: "ptq", True: "qat"}.get(v, v) if isinstance(v, bool) else v)
def test_int8_mobile_unet_has_no_float_islands(tmp_path, upsample, qat):
    from converters.tflite import convert_tflite
    from edgeseg.device.data.roles import calibration_images
    from edgeseg.inspection import inspect_file
    from edgeseg.models import create_model
    from edgeseg.optimize.quantize import quantize_for_training

    model = create_model("mobile_unet", input_size=32, channels=1, alpha=0.25, upsample=upsample)
    if qat:
        model = quantize_for_training(model)
    images = calibration_images("synthetic-nuclei", size=32, channels=1, count=4)
    path = convert_tflite(model, tmp_path / "m.tflite", quant="int8",
                          representative=None if qat else images)
    report = inspect_file(path)
    assert report["float_islands"] == []
    assert report["activation_types"].get("int8", 0) > 10
    assert report["dynamic_shape"] == []
    if upsample in ("bilinear", "transpose"):
        assert report["xnnpack"]["not_delegated"] == {}
        assert report["xnnpack"]["partitions"] == 1


def test_inspect_finds_the_ops_xnnpack_leaves_to_the_builtin_kernels(tmp_path):
    """XNNPACK has no int8 nearest-neighbour resize: the graph splits around those ops."""
    from converters.tflite import convert_tflite
    from edgeseg.device.data.roles import calibration_images
    from edgeseg.inspection import inspect_file
    from edgeseg.models import create_model

    model = create_model("mobile_unet", input_size=32, channels=1, alpha=0.25, upsample="nearest")
    images = calibration_images("synthetic-nuclei", size=32, channels=1, count=2)
    report = inspect_file(convert_tflite(model, tmp_path / "m.tflite", quant="int8",
                                         representative=images))
    assert report["xnnpack"]["not_delegated"] == {"RESIZE_NEAREST_NEIGHBOR": 4}
    assert report["xnnpack"]["partitions"] == 5
    assert report["xnnpack"]["delegated_ops"] == report["op_total"] - 4


@pytest.mark.parametrize("io", ["int8", "uint8"])
def test_integer_io_is_quantized_inside_the_runtime(tiny_run, tmp_path, io):
    from edgeseg import runtime

    path = tmp_path / f"m_{io}.tflite"
    from converters import convert

    result = convert(tiny_run / "model.keras", path, quant="int8", io=io, calib_samples=8,
                     verify_samples=4)
    model = runtime.load(path)
    assert model.input_dtype == io and model.output_dtype == io
    assert result.parity.agreement > 0.95


def test_onnx_with_a_dynamic_input_takes_any_size(tiny_run, tmp_path):
    from converters import convert
    from edgeseg import runtime
    from edgeseg.device.flops import onnx_cost

    path = tmp_path / "dyn.onnx"
    result = convert(tiny_run / "model.keras", path, dynamic=True, verify_samples=2)
    assert result.card["input_size"] is None
    model = runtime.load(path)
    assert model.input_shape == (None, None, None, 1)
    for size in (32, 96):
        assert model.predict(np.zeros((2, size, size, 1), np.float32)).shape == (2, size, size, 1)
    assert onnx_cost(path, input_size=128).macs == 4 * onnx_cost(path, input_size=64).macs


def test_compaction_shares_vectors_and_changes_no_output(tiny_run):
    from converters.flatbuffer import rewrite
    from converters.tflite import tflite_bytes
    from edgeseg.device.data.roles import calibration_images
    from edgeseg.device.formats.tflite import read_tflite
    from edgeseg.keras_files import load_tf_keras as load_model

    images = calibration_images("synthetic-nuclei", size=64, channels=1, count=4)
    raw = tflite_bytes(load_model(tiny_run / "model.keras"), 64, "int8", images)
    plain, tight = rewrite(raw, {"variant": "x"}, compact=False), rewrite(raw, {"variant": "x"})
    zero_point_bytes = sum(8 * len(t.zero_points) for t in read_tflite(plain).tensors)
    assert len(plain) - len(tight) > 0.8 * zero_point_bytes  # one copy of each vector is left
    names = [t.name for t in read_tflite(tight).tensors]
    assert max(map(len, names)) < 80 and not any(";" in n for n in names)
    assert len(set(names)) == len(names)
    x = np.random.default_rng(0).random((1, 64, 64, 1), np.float32)
    np.testing.assert_array_equal(_litert_output(raw, x), _litert_output(tight, x))


def _litert_output(model: bytes, x: np.ndarray) -> np.ndarray:
    """The first output LiteRT gives for ``x`` from the flatbuffer ``model``."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


@pytest.mark.slow  # over 20 s on 2 cores: the quick suite stays well under 15 min
def test_int16x8_keeps_only_the_ops_without_16x8_kernels_in_float(tiny_train_args, runner,
                                                                  tmp_path):
    """The pixel-shuffle head has no 16x8 kernel: it stays float (TensorFlow's fallback), the rest
    computes in int16; before the fallback the conversion failed outright. Trained, since a
    random-weight model's int16 depthwise convolutions overflow LiteRT's prepare."""
    from edgeseg.inspection import inspect_file

    trained = runner.invoke(cli, ["train", *tiny_train_args, "-o", "head=shuffle",
                                  "--out", str(tmp_path / "run")])
    assert trained.exit_code == 0, trained.output
    path = tmp_path / "m_int16x8.tflite"
    result = runner.invoke(cli, ["convert", str(tmp_path / "run" / "model.keras"),
                                 "--quant", "int16x8", "--out", str(path)])
    assert result.exit_code == 0, result.output
    report = inspect_file(path)
    assert [island["op"] for island in report["float_islands"]] == ["DEPTH_TO_SPACE"]
    assert report["activation_types"].get("int16", 0) > 10 and "agreement" in result.output


def test_inspect_prints_ops_types_islands_and_bytes(converted, runner):
    path, _ = converted[("tflite", "int8")]
    result = runner.invoke(cli, ["inspect", str(path)])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "CONV_2D x" in out and "DEPTHWISE_CONV_2D x" in out and "float islands: none" in out
    assert "per-channel" in out and "bytes   weights" in out and "XNNPACK" in out
    report = json.loads(runner.invoke(cli, ["inspect", str(path), "--json"]).output)
    assert report["inputs"][0]["dtype"] == "float32" and report["card"]["variant"] == "int8"
    onnx_path, _ = converted[("onnx", "int8")]
    result = runner.invoke(cli, ["inspect", str(onnx_path)])
    assert result.exit_code == 0 and "DequantizeLinear x" in result.output


def test_device_side_runs_a_tflite_without_tensorflow(converted):
    path, _ = converted[("tflite", "int8")]
    code = ("import sys, numpy as np\n"
            "from edgeseg import runtime\n"
            "from edgeseg.inspection import inspect_file\n"
            f"m = runtime.load({str(path)!r})\n"
            "m.predict(np.zeros((1, 64, 64, 1), np.float32))\n"
            f"inspect_file({str(path)!r})\n"
            "print(m.card['variant'], 'tensorflow' in sys.modules, 'tf_keras' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["int8", "False", "False"]


# --- bad input ------------------------------------------------------------------------------------

def test_bad_model_files_give_one_line(converted, runner, tmp_path):
    tflite, _ = converted[("tflite", "int8")]
    onnx_file, _ = converted[("onnx", "none")]
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(tflite.read_bytes()[: tflite.stat().st_size // 2])
    misnamed = tmp_path / "model.tflite"
    misnamed.write_bytes(onnx_file.read_bytes())
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    for path, message in [(truncated, "corrupt or truncated .tflite file"),
                          (misnamed, "not a TFLite flatbuffer"),
                          (tmp_path / "missing.tflite", "no such file"),
                          (empty, "not a valid ONNX model")]:
        result = runner.invoke(cli, ["inspect", str(path)])
        assert result.exit_code == 2, (path, result.output)
        assert _lines(result.output) == [_lines(result.output)[0]]
        assert str(path) in result.output and message in result.output, result.output


@pytest.mark.parametrize("args, message", [
    (["{missing}", "--out", "{tmp}/m.tflite"], "{missing}: no such model file"),
    (["{model}", "--quant", "int8", "--calib", "{empty}", "--out", "{tmp}/m.tflite"],
     "{empty}: no images for calibration"),
    (["{model}", "--quant", "int8", "--calib", "{tmp}/nope/", "--out", "{tmp}/m.tflite"],
     "{tmp}/nope: no such folder"),
    (["{model}", "--io", "int8", "--out", "{tmp}/m.tflite"], "--io int8 needs --quant int8"),
    (["{model}", "--to", "onnx", "--quant", "dynamic", "--out", "{tmp}/m.onnx"],
     "--quant for onnx must be one of none, fp16, int8"),
    (["{model}", "--to", "onnx", "--out", "{tmp}/m.tflite"], "an onnx file must end in .onnx"),
    (["{model}", "--out", "{tmp}/m.bin"], "give --to tflite|onnx"),
    (["{model}", "--input-size", "50", "--out", "{tmp}/m.tflite"],
     "cannot run at 50x50: its sides must divide by the model's total downsampling"),
])
def test_bad_conversions_give_one_line_and_write_nothing(tiny_run, runner, tmp_path, args, message):
    (tmp_path / "empty").mkdir()
    fill = {"model": str(tiny_run / "model.keras"), "missing": str(tmp_path / "missing.keras"),
            "empty": str(tmp_path / "empty"), "tmp": str(tmp_path)}
    result = runner.invoke(cli, ["convert", *[a.format(**fill) for a in args]])
    assert result.exit_code == 2, result.output
    assert len(_lines(result.output)) == 1 and "Traceback" not in result.output
    assert message.format(**fill) in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


def test_a_qat_model_converts_to_int8_only(tmp_path, runner):
    from edgeseg.models import create_model
    from edgeseg.models.saving import save_model
    from edgeseg.optimize.quantize import quantize_for_training

    path = save_model(quantize_for_training(create_model("mobile_unet", input_size=32,
                                                          alpha=0.25)), tmp_path / "qat.h5")
    result = runner.invoke(cli, ["convert", str(path), "--quant", "fp16", "--input-size", "32",
                                 "--out", str(tmp_path / "q.tflite")])
    assert result.exit_code == 2 and "converts to int8 only" in result.output
    result = runner.invoke(cli, ["convert", str(path), "--quant", "int8", "--input-size", "32",
                                 "--out", str(tmp_path / "q.tflite")])
    assert result.exit_code == 0, result.output
    assert "qat-int8" in result.output


def test_per_tensor_weights_store_one_scale_per_tensor(tiny_run, tmp_path):
    from converters import convert
    from edgeseg.inspection import inspect_file

    per_channel = convert(tiny_run / "model.keras", tmp_path / "c.tflite", quant="int8",
                          calib_samples=8, verify=False).path
    per_tensor = convert(tiny_run / "model.keras", tmp_path / "t.tflite", quant="int8",
                         calib_samples=8, verify_samples=4, per_tensor=True)
    report = inspect_file(per_tensor.path)
    assert report["quantized_weights"]["per_channel"] == 0
    assert inspect_file(per_channel)["quantized_weights"]["per_channel"] > 0
    assert report["bytes"]["quantization"] < inspect_file(per_channel)["bytes"]["quantization"] / 5
    assert per_tensor.card["recipe"]["per_tensor"] is True


def test_eval_scores_converted_files_in_their_runtimes(converted, runner, tmp_path):
    scores = {}
    for key in (("tflite", "none"), ("tflite", "int8"), ("onnx", "int8")):
        path, _ = converted[key]
        out = tmp_path / f"{key[0]}-{key[1]}.json"
        result = runner.invoke(cli, ["eval", str(path), "--n", "8", "--json", str(out)])
        assert result.exit_code == 0, result.output
        assert ": 8 images (64x64)" in result.output
        scores[key] = json.loads(out.read_text())["dice"]
    assert abs(scores[("tflite", "int8")] - scores[("tflite", "none")]) < 0.05
    path, _ = converted[("tflite", "int8")]
    result = runner.invoke(cli, ["eval", str(path), "--input-size", "128"])
    assert result.exit_code == 2 and "takes 64x64 inputs" in result.output


def test_quantized_parity_can_fail_and_never_uses_the_calibration_images(tiny_run, tmp_path,
                                                                        runner):
    """Issue 17: a file calibrated on blank images scores nothing on real ones; parity, checked
    on held-out images, refuses it (--keep-failed writes it, marked)."""
    from PIL import Image

    blank = tmp_path / "blank"
    blank.mkdir()
    for i in range(16):
        Image.fromarray(np.zeros((64, 64), np.uint8)).save(blank / f"{i}.png")  # black frames
    model = tiny_run / "model.keras"
    out = tmp_path / "blank.tflite"
    result = runner.invoke(cli, ["convert", str(model), "--quant", "int8", "--calib", str(blank),
                                 "--calib-samples", "8", "--verify-samples", "8", "--out",
                                 str(out)])
    assert result.exit_code == 2, result.output
    assert "parity check failed on 8 held-out synthetic-nuclei images" in result.output
    assert "look unlike the model's data" in result.output and not out.exists()
    result = runner.invoke(cli, ["convert", str(model), "--quant", "int8", "--calib", str(blank),
                                 "--calib-samples", "8", "--verify-samples", "8", "--keep-failed",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    parity = json.loads(out.with_name(out.name + ".json").read_text())["parity"]
    assert not parity["passed"] and parity["min_agreement"] == 0.98
    assert "held-out" in parity["images"]
    # the same conversion calibrated on real images passes the same limits
    good = tmp_path / "good.tflite"
    result = runner.invoke(cli, ["convert", str(model), "--quant", "int8", "--calib-samples", "8",
                                 "--verify-samples", "8", "--out", str(good)])
    assert result.exit_code == 0, result.output
    parity = json.loads(good.with_name(good.name + ".json").read_text())["parity"]
    assert parity["passed"] and parity["max_dice_drop"] == 0.02


def test_parity_says_when_only_the_calibration_images_were_there(tiny_run, tmp_path, runner):
    from PIL import Image

    model = tmp_path / "bare.keras"  # a model without a card: its training data unknown
    model.write_bytes((tiny_run / "model.keras").read_bytes())
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        Image.fromarray(rng.integers(0, 255, (64, 64), np.uint8)).save(photos / f"{i}.png")
    out = tmp_path / "m.tflite"
    result = runner.invoke(cli, ["convert", str(model), "--quant", "int8", "--calib", str(photos),
                                 "--input-size", "64", "--calib-samples", "8",
                                 "--verify-samples", "4", "--keep-failed", "--out", str(out)])
    assert result.exit_code == 0, result.output
    parity = json.loads(out.with_name(out.name + ".json").read_text())["parity"]
    assert "calibration images" in parity["images"] and "--verify-data" in parity["images"]
    limited = tmp_path / "limited.tflite"  # a Dice limit that no mask can check is an error
    refused = runner.invoke(cli, ["convert", str(model), "--quant", "int8", "--calib", str(photos),
                                  "--input-size", "64", "--calib-samples", "8",
                                  "--verify-samples", "4", "--max-dice-drop", "0.01", "--out",
                                  str(limited)])
    assert refused.exit_code == 2 and not limited.exists()
    assert "--max-dice-drop 0.01: the parity images (the calibration images of" in refused.output
    assert refused.output.strip().endswith("give labelled images with --verify-data DIR")
    given = runner.invoke(cli, ["convert", str(model), "--quant", "int8", "--calib", str(photos),
                                "--verify-data", str(photos), "--input-size", "64",
                                "--calib-samples", "8", "--verify-samples", "4",
                                "--max-dice-drop", "0.01", "--out", str(limited)])
    assert given.exit_code == 2 and f"--verify-data {photos} has no masks" in given.output


def test_quant_error_ranks_the_layers_a_bad_calibration_breaks(tiny_run, tmp_path, runner):
    """Issue 17, per-layer error: TFLite's debugger on held-out images, ranked; calibrated on
    black frames, the worst layers' error (in quantization steps) grows many times over."""
    from PIL import Image

    model = tiny_run / "model.keras"
    good = tmp_path / "good.json"
    result = runner.invoke(cli, ["quant-error", str(model), "--calib-samples", "8", "--samples",
                                 "4", "--sensitivity", "--json", str(good)])
    assert result.exit_code == 0, result.output
    report = json.loads(good.read_text())
    gains = [s["gain"] for s in report["sensitivity"]]  # each layer alone in float, ranked
    assert gains == sorted(gains, reverse=True) and len(gains) >= len(report["layers"]) - 2
    assert all(s["dice"] == pytest.approx(report["dice_int8"] + s["gain"])
               for s in report["sensitivity"]) and "Sensitivity" in result.output
    layers = report["layers"]
    steps = [layer["rmse_steps"] for layer in layers]
    assert steps == sorted(steps, reverse=True) and "held-out" in report["images"]
    assert {"CONV_2D", "DEPTHWISE_CONV_2D"} <= {layer["op"] for layer in layers}
    assert 0.9 < sum(layer["macs_share"] for layer in layers) <= 1.0 + 1e-9
    black = tmp_path / "black"
    black.mkdir()
    for i in range(8):
        Image.fromarray(np.zeros((64, 64), np.uint8)).save(black / f"{i}.png")
    bad = tmp_path / "bad.json"
    result = runner.invoke(cli, ["quant-error", str(model), "--calib", str(black), "--samples",
                                 "4", "--json", str(bad)])
    assert result.exit_code == 0, result.output
    assert json.loads(bad.read_text())["layers"][0]["rmse_steps"] > 3 * steps[0]
    onnx_report = tmp_path / "onnx.json"  # ONNX Runtime's int8, through its qdq_loss_debug
    result = runner.invoke(cli, ["quant-error", str(model), "--to", "onnx", "--calib-samples",
                                 "8", "--samples", "2", "--json", str(onnx_report)])
    assert result.exit_code == 0, result.output
    nodes = json.loads(onnx_report.read_text())["layers"]
    lost = [node["lost_db"] for node in nodes]
    assert lost == sorted(lost, reverse=True) and {"Conv", "Add"} & {n["op"] for n in nodes}
    assert all(np.isfinite(node["sqnr_db"]) for node in nodes) and "lost here" in result.output


@pytest.mark.slow  # over 10 s on 2 cores: the quick suite stays well under 15 min
def test_selective_int8_puts_denylisted_ops_in_float_and_searches_a_dice_budget(tiny_run):
    """Issue 17, selective quantization: one calibration, then trials that each keep some ops in
    float; an impossible budget measures every op's sensitivity and says it is not met."""
    from converters.selective import calibrate, candidates, search
    from edgeseg import runtime
    from edgeseg.device.data.roles import calibration_images, labelled_samples
    from edgeseg.device.formats.tflite import read_tflite

    loaded = runtime.load(tiny_run / "model.keras")
    model = loaded.selected
    calibration = calibration_images("synthetic-nuclei", size=(64, 64), channels=1, count=8)
    calibrated, quantize = calibrate(model, (64, 64), calibration)
    ops = candidates(calibrated)
    stem = next(op for op in ops if op["layer"].startswith("stem"))
    assert stem["op"] == "CONV_2D" and stem["macs"] > 0

    def dtype_into(data, node):
        parsed = read_tflite(data)
        op = next(o for o in parsed.ops if parsed.tensors[o.outputs[0]].name == node)
        return parsed.tensors[op.inputs[0]].dtype

    assert dtype_into(quantize(), stem["node"]) == "int8"
    assert dtype_into(quantize([stem["node"]]), stem["node"]) == "float32"

    images, masks = labelled_samples("synthetic-nuclei", size=(64, 64), channels=1, num_classes=1,
                                     count=4, seed=1)
    probs = loaded.predict(images)
    easy = search(model, (64, 64), calibration, images, masks, probs, max_dice_drop=1.0,
                  echo=lambda line: None)
    assert easy.met and easy.float_ops == [] and easy.trials == 1 and easy.sensitivity == []
    hard = search(model, (64, 64), calibration, images, masks, probs, max_dice_drop=-1.0,
                  echo=lambda line: None)  # a Dice above the float model's: never met
    assert not hard.met and len(hard.sensitivity) == len(ops)
    helping = [s for s in hard.sensitivity if s["gain"] > 0]
    assert hard.trials == 1 + len(ops) + len(helping)  # full, each op alone, the greedy steps
    assert len(hard.float_ops) == len(helping)

    from converters.onnx import OnnxQuantizer, onnx_bytes
    from converters.selective import onnx_candidates

    raw = onnx_bytes(model, (64, 64))  # ONNX Runtime: calibrated once, nodes_to_exclude per trial
    with OnnxQuantizer(raw, calibration) as quantizer:
        nodes = onnx_candidates(quantizer)
    assert {"Conv", "Add"} <= {node["op"] for node in nodes}
    hard = search(raw, (64, 64), calibration, images, masks, probs, max_dice_drop=-1.0, to="onnx",
                  echo=lambda line: None)
    assert not hard.met and len(hard.sensitivity) == len(nodes)
    assert hard.model[:2] != b"" and hard.trials >= 1 + len(nodes)


def test_convert_fallback_records_its_choice_and_refuses_what_it_cannot_do(tiny_run, tmp_path,
                                                                          runner):
    model = tiny_run / "model.keras"
    out = tmp_path / "sel.tflite"
    result = runner.invoke(cli, ["convert", str(model), "--quant", "int8", "--fallback",
                                 "--max-dice-drop", "1", "--calib-samples", "8",
                                 "--verify-samples", "4", "--out", str(out)])
    assert result.exit_code == 0, result.output
    card = json.loads(out.with_name(out.name + ".json").read_text())
    chosen = card["recipe"]["float_fallback"]
    assert chosen["float_ops"] == [] and chosen["float_macs_share"] == 0  # int8 met the budget
    assert chosen["budget_met"] and chosen["dice_full_int8"] == chosen["dice"]
    assert "chose the float ops" in card["parity"]["images"]  # scored on the other half
    onnx_out = tmp_path / "sel.onnx"  # the same search through ONNX Runtime's nodes_to_exclude
    result = runner.invoke(cli, ["convert", str(model), "--to", "onnx", "--quant", "int8",
                                 "--fallback", "--max-dice-drop", "1", "--calib-samples", "8",
                                 "--verify-samples", "4", "--out", str(onnx_out)])
    assert result.exit_code == 0, result.output
    chosen = json.loads(onnx_out.with_name(onnx_out.name + ".json").read_text())["recipe"][
        "float_fallback"]
    assert chosen["budget_met"] and chosen["float_ops"] == []
    for args, message in ((["--quant", "fp16"], "not --quant fp16"),
                          (["--quant", "int8", "--no-verify"], "needs the parity check")):
        bad = tmp_path / ("x.onnx" if "onnx" in args else "x.tflite")
        result = runner.invoke(cli, ["convert", str(model), *args, "--fallback", "--out", str(bad)])
        assert result.exit_code == 2 and message in result.output and not bad.exists()


@pytest.mark.slow  # over 20 s on 2 cores: the quick suite stays well under 15 min
def test_calib_compare_scores_every_setting_and_names_the_convert_options(tiny_run, tmp_path,
                                                                         runner):
    """Issue 17, calibration choices: each setting a real conversion, scored on the same
    held-out images, timed beside the float file; the chosen one's options convert to a card
    that records the method."""
    report_path = tmp_path / "calib.json"
    result = runner.invoke(cli, ["calib-compare", str(tiny_run / "model.keras"), "--to", "onnx",
                                 "--counts", "4,8", "--method", "minmax", "--method",
                                 "percentile", "--weights", "per-channel", "--samples", "4",
                                 "--runs", "2", "--json", str(report_path)])
    assert result.exit_code == 0, result.output
    report = json.loads(report_path.read_text())
    rows = report["rows"]
    assert [(r["method"], r["images"]) for r in rows] == [
        ("-", 0), ("minmax", 4), ("minmax", 8), ("percentile", 4), ("percentile", 8)]
    assert all(r["p50_ms"] > 0 and r["size_bytes"] > 0 for r in rows)
    assert "held-out" in report["images"]
    int8 = [r for r in rows if r["weights"] != "float32"]
    top = max(r["dice"] for r in int8)
    assert report["chosen"]["dice"] >= top - 0.0005 and "chosen" in result.output
    assert all(r["dice_delta"] == pytest.approx(r["dice"] - rows[0]["dice"]) for r in int8)
    calibration = _run_printed(runner, result.output, tmp_path / "chosen.onnx", report)
    assert calibration["data"] == "synthetic-nuclei"


def _run_printed(runner, output, out, report):
    """Run the 'chosen' command calib-compare printed, as printed (OUT replaced), twice: the
    same bytes each time, and a card whose calibration is the chosen setting's."""
    import shlex

    line = next(line for line in output.splitlines() if line.startswith("chosen ("))
    words = shlex.split(line.split("): ", 1)[1])
    assert words[:2] == ["edgeseg", "convert"] and words[-2] == "--out"
    made = []
    for name in ("a", "b"):
        target = out.with_name(f"{out.stem}-{name}{out.suffix}")
        done = runner.invoke(cli, [*words[1:-1], str(target), "--keep-failed"])
        assert done.exit_code == 0, done.output
        made.append(target)
    cards = [json.loads(m.with_name(m.name + ".json").read_text()) for m in made]
    for key in ("calibration", "parity", "recipe", "macs", "input_size"):
        assert cards[0][key] == cards[1][key], key
    if out.suffix == ".tflite":  # TFLite's converter is deterministic; ORT's QDQ graph names vary
        assert made[0].read_bytes() == made[1].read_bytes()
    card = cards[0]
    chosen = report["chosen"]
    assert card["calibration"]["method"] == chosen["method"]
    assert card["calibration"]["samples"] == chosen["images"]
    assert card["calibration"]["per_tensor"] == (chosen["weights"] == "per-tensor")
    assert card["parity"]["images"] == report["images"]
    return card["calibration"]


@pytest.mark.slow  # over 10 s on 2 cores: the quick suite stays well under 15 min
def test_calib_compare_prints_a_command_that_makes_the_file_it_chose(tiny_run, tmp_path,
                                                                     runner):
    """With --calib and --input-size of its own: the printed command keeps both (it dropped
    them, and calibrated on synthetic-nuclei)."""
    from edgeseg.device.data.writer import write_synthetic

    cells = write_synthetic("synthetic-nuclei", tmp_path / "cells", count=12, size=64, seed=4)
    result = runner.invoke(cli, ["calib-compare", str(tiny_run / "model.keras"), "--to", "tflite",
                                 "--counts", "8", "--weights", "per-channel", "--calib",
                                 str(cells), "--input-size", "48", "--samples", "4", "--runs",
                                 "2", "--json", str(tmp_path / "c.json")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "c.json").read_text())
    calibration = _run_printed(runner, result.output, tmp_path / "made.tflite", report)
    assert calibration["data"] == str(cells)


def test_calib_compare_refuses_what_its_runtimes_cannot(tiny_run, tmp_path, runner):
    result = runner.invoke(cli, ["calib-compare", str(tiny_run / "model.keras"), "--to", "tflite",
                                 "--method", "entropy"])
    assert result.exit_code == 2 and "min/max only" in result.output
    result = runner.invoke(cli, ["convert", str(tiny_run / "model.keras"), "--quant", "int8",
                                 "--calib-method", "entropy", "--out", str(tmp_path / "t.tflite")])
    assert result.exit_code == 2 and "--calib-method entropy is ONNX Runtime's" in result.output


@pytest.mark.parametrize("options, says", [
    (["--quant", "fp16", "--fallback"], "--fallback keeps layers of a --quant int8 conversion"),
    (["--quant", "dynamic", "--io", "int8"], "--io int8 needs --quant int8"),
    (["--quant", "none", "--per-tensor"], "--per-tensor applies to quantized weights"),
    (["--quant", "int8", "--calib-method", "entropy"], "--calib-method entropy is ONNX Runtime's"),
    (["--quant", "int8", "--max-dice-drop", "0.01", "--no-verify"], "held by the parity check"),
])
def test_options_that_contradict_each_other_are_refused_before_tensorflow(tiny_run, tmp_path,
                                                                         options, says):
    code = ("import sys\nfrom edgeseg.cli import main\nsys.argv = sys.argv[1:]\n"
            "try:\n    main()\nfinally:\n    print('TF', 'tensorflow' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code, "edgeseg", "convert",
                           str(tiny_run / "model.keras"), *options, "--out",
                           str(tmp_path / "m.tflite")], capture_output=True, text=True)
    assert done.returncode == 2 and says in done.stderr, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "TF False"


def test_convert_says_what_it_is_doing_at_a_terminal_and_nothing_in_a_log(tiny_run, tmp_path,
                                                                         monkeypatch):
    import io

    from converters import convert

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    convert(tiny_run / "model.keras", tmp_path / "m.tflite", quant="int8", calib_samples=8,
            verify_samples=4, input_size=64)
    said = [line for line in terminal.getvalue().splitlines() if line.startswith("... ")]
    assert said == ["... reading 8 calibration inputs from synthetic-nuclei",
                    "... converting model.keras to int8 .tflite at 64x64",
                    "... checking the file against its source (parity)"]
    log = io.StringIO()  # not a terminal: no running commentary
    monkeypatch.setattr(sys, "stderr", log)
    convert(tiny_run / "model.keras", tmp_path / "n.tflite", input_size=64, verify_samples=4)
    assert "... " not in log.getvalue()


def test_parity_words_for_a_quantized_file_and_a_zero_dice_limit():
    import numpy as np

    from converters.verify import check_parity

    rng = np.random.default_rng(0)
    source = rng.random((2, 8, 8, 1)).astype(np.float32)
    flipped = np.where(np.arange(64).reshape(1, 8, 8, 1) < 4, 1 - source, source)  # 4 px a image
    masks = (source[..., 0] > 0.5).astype(np.uint8)
    parity = check_parity(source, flipped, mode="quantized", num_classes=2, masks=masks,
                          max_dice_drop=0.0)
    assert parity.warning is not None and parity.warning.endswith("change class after "
                                                                   "quantization"), parity.warning
    assert "no Dice drop" in parity.summary() and ">= -0" not in parity.summary()


def test_a_written_file_the_runtime_refuses_is_named_by_its_out_path_not_the_scratch_copy(
        tmp_path, monkeypatch):
    from types import SimpleNamespace

    from onnx import TensorProto, helper

    from converters.config import ConvertConfig
    from converters.write import write_checked
    from edgeseg.device.errors import EdgesegError

    def value(name):
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, 1, 8, 8])

    graph = helper.make_graph([helper.make_node("NoSuchOp", ["x"], ["y"], domain="com.nobody")],
                              "g", [value("x")], [value("y")])
    raw = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                  helper.make_opsetid("com.nobody", 1)])
    out = tmp_path / "model_int8.onnx"
    here = tmp_path / "working folder"
    here.mkdir()
    monkeypatch.chdir(here)  # the shape inference of an unknown op writes no scratch file here
    samples = SimpleNamespace(masks=None, where="four images", pairs=[])
    with pytest.raises(EdgesegError) as caught:
        write_checked(out, "onnx", raw.SerializeToString(), {"channels": 1, "num_classes": 1},
                      None, (8, 8), ConvertConfig(), None, None, samples=samples)
    assert str(caught.value).startswith(f"{out}: ONNX Runtime cannot load")
    assert "partial" not in str(caught.value)
    assert list(tmp_path.iterdir()) == [here]  # nothing written, the scratch copy gone
    assert list(here.iterdir()) == []


@pytest.mark.slow  # about 15 s: onnx2tf starts TensorFlow in its own environment
def test_an_op_onnx2tf_has_no_converter_for_is_one_line_naming_it(tmp_path, runner):
    """A graph ONNX Runtime runs (a com.microsoft QuickGelu, as ORT's transformer optimizer
    writes) that onnx2tf cannot take: one line naming the op, node and domain, exit 2, nothing
    written."""
    from onnx import TensorProto, helper, numpy_helper

    from converters.tools import tool_python
    from edgeseg.device.errors import ConfigError

    try:
        version = tool_python("onnx2tf")[1]["versions"]["onnx2tf"]
    except ConfigError as error:  # .ci/run makes it (edgeseg tools install onnx2tf)
        pytest.skip(str(error))
    weights = np.random.default_rng(0).normal(size=(1, 3, 3, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
         helper.make_node("QuickGelu", ["c"], ["y"], domain="com.microsoft", alpha=1.702,
                          name="gate")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 32, 32])],
        [numpy_helper.from_array(weights, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 8
    source = tmp_path / "gelu.onnx"
    source.write_bytes(model.SerializeToString())
    out = tmp_path / "out" / "gelu.tflite"
    result = runner.invoke(cli, ["convert", str(source), "--normalize", "scale", "--out",
                                 str(out)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    error = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert error == [f"Error: {source}: onnx2tf {version} has no converter for the QuickGelu op "
                     f"(node gate, domain com.microsoft); export it as standard ONNX ops, or "
                     f"--to onnx (ONNX Runtime runs it)"]
    assert not out.parent.exists() or not list(out.parent.iterdir())


def test_a_float_tflite_made_elsewhere_is_quantized_by_ai_edge_quantizer(converted, runner,
                                                                          tmp_path):
    """A float32 .tflite and a float16 one (weights behind DEQUANTIZE, as MediaPipe ships its
    models) to int8 with ai-edge-quantizer: parity checked, the tool in the card, eval's Dice
    within the budget of the float file's; widening float16 weights changes no output."""
    from ai_edge_litert.interpreter import Interpreter

    from converters.flatbuffer import for_quantizer, integer_weights

    fp32, fp16 = converted[("tflite", "none")][0], converted[("tflite", "fp16")][0]
    raw = fp16.read_bytes()
    prepared, widened = for_quantizer(raw)
    assert widened > 0 and len(prepared) > len(raw)
    image = np.random.default_rng(0).random((1, *Interpreter(model_path=str(fp16))
                                             .get_input_details()[0]["shape"][1:]), np.float32)
    np.testing.assert_array_equal(_litert_output(raw, image), _litert_output(prepared, image))
    assert Interpreter(model_content=prepared).get_signature_list()  # the quantizer needs one

    def dice(path):
        report = tmp_path / f"{path.stem}.json"
        done = runner.invoke(cli, ["eval", str(path), "--n", "8", "--json", str(report)])
        assert done.exit_code == 0, done.output
        return json.loads(report.read_text())["dice"]

    for source in (fp32, fp16):
        out = tmp_path / f"{source.stem}_int8.tflite"
        result = runner.invoke(cli, ["convert", str(source), "--quant", "int8", "--calib-samples",
                                     "8", "--verify-samples", "4", "--out", str(out)])
        assert result.exit_code == 0, result.output
        card = json.loads(out.with_name(out.name + ".json").read_text())
        assert card["recipe"]["tool"]["name"] == "ai-edge-quantizer" and card["parity"]["passed"]
        assert card["recipe"]["float16_weights_widened"] == (widened if source == fp16 else 0)
        assert integer_weights(out.read_bytes()) > 0
        assert dice(out) > dice(source) - 0.02

    int8 = tmp_path / f"{fp32.stem}_int8.tflite"
    corrupt = tmp_path / "corrupt.tflite"
    corrupt.write_bytes(fp32.read_bytes()[:100])
    for args, message in (([str(int8), "--quant", "int8"], "already quantized (int8 input"),
                          ([str(corrupt), "--quant", "int8"], f"{corrupt}: corrupt or truncated"),
                          ([str(tmp_path / "absent.tflite"), "--quant", "int8"],
                           "absent.tflite: no such file"),
                          ([str(fp32), "--quant", "dynamic", "--verify-data", "synthetic-shapes"],
                           "have class ids up to 3; the model predicts 1 output (binary)"),
                          ([str(fp32), "--quant", "fp16"], "convert quantizes one with --quant "
                                                           "int8, int16x8, dynamic")):
        result = runner.invoke(cli, ["convert", *args, "--out", str(tmp_path / "again.tflite")])
        assert result.exit_code == 2 and message in result.output, result.output
        assert "Traceback" not in result.output and not (tmp_path / "again.tflite").exists()
