"""PyTorch models as their users export them, through edgeseg from another working folder.

The models are made by ``benchmarks/torch_models/export.py`` in a PyTorch environment of their
own (``EDGESEG_TORCH_PYTHON``: a Python with ``benchmarks/torch_models/requirements.txt``; .ci/run
makes one): an SMP U-Net trained briefly on a folder ``edgeseg data synth`` wrote, exported with
SMP's documented call (its weights in ``smp_unet.onnx.data``), and torchvision's LR-ASPP
MobileNetV3 exported at a fixed size and with dynamic height and width. Every Dice edgeseg gives is
checked against one computed here with ONNX Runtime and numpy alone.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edgeseg.cli import cli

pytestmark = pytest.mark.torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def torch_models(tmp_path_factory):
    python = os.environ.get("EDGESEG_TORCH_PYTHON")
    if not python:
        pytest.skip("no PyTorch environment: set EDGESEG_TORCH_PYTHON to a Python with "
                    "benchmarks/torch_models/requirements.txt installed (.ci/run makes one)")
    from click.testing import CliRunner

    reused = os.environ.get("EDGESEG_TORCH_EXPORTS")  # a root this fixture made before
    if reused and (Path(reused) / "models" / "models.json").exists():
        return Path(reused)
    root = tmp_path_factory.mktemp("torch")
    for name, count, seed in (("train", 96, 0), ("test", 16, 7), ("calib", 16, 3)):
        result = CliRunner().invoke(cli, ["data", "synth", "--n", str(count), "--size", "64",
                                          "--seed", str(seed), "--out", str(root / name)])
        assert result.exit_code == 0, result.output
    made = subprocess.run([python, str(ROOT / "benchmarks/torch_models/export.py"), "--data",
                           str(root / "train"), "--out", str(root / "models")],
                          capture_output=True, text=True, timeout=900)
    assert made.returncode == 0, made.stderr[-3000:]
    return root


def independent_labels(session, path: Path) -> np.ndarray:
    """Class ids an NCHW logits .onnx gives one synth image, by ONNX Runtime and numpy: grey
    repeated to RGB, pixels / 255; one logit: foreground where it is > 0, else the argmax."""
    from PIL import Image

    grey = np.asarray(Image.open(path).convert("L"), np.float32) / 255.0
    logits = session.run(None, {session.get_inputs()[0].name:
                                np.repeat(grey[None, None], 3, axis=1)})[0][0]
    return (logits[0] > 0).astype(np.uint8) if len(logits) == 1 else logits.argmax(0)


def independent_dice(model: Path, folder: Path) -> float:
    """Foreground Dice of a logits NCHW .onnx on a synth folder (see independent_labels),
    pooled over the images."""
    import onnxruntime as ort
    from PIL import Image

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    tp = fp = fn = 0
    for path in sorted((folder / "images").glob("*.png")):
        truth = np.asarray(Image.open(folder / "masks" / path.name))
        pred, labelled = independent_labels(session, path) == 1, truth != 255
        tp += int((pred & (truth == 1) & labelled).sum())
        fp += int((pred & (truth == 0)).sum())
        fn += int((~pred & (truth == 1)).sum())
    return 2 * tp / (2 * tp + fp + fn)


def _json(runner, args, out: Path) -> dict:
    result = runner.invoke(cli, [*args, "--json", str(out)])
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text())


def _inspect(runner, *args) -> dict:
    result = runner.invoke(cli, ["inspect", *map(str, args), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_smp_unet_with_external_data_from_another_folder(torch_models, runner, tmp_path,
                                                          monkeypatch):
    models = torch_models / "models"
    unet, test = models / "smp_unet.onnx", torch_models / "test"
    assert (models / "smp_unet.onnx.data").stat().st_size > 10 * unet.stat().st_size
    monkeypatch.chdir(tmp_path)  # never the model's folder: the data file is found by the model
    inspected = _inspect(runner, unet)
    assert inspected["size_bytes"] == unet.stat().st_size + \
        (models / "smp_unet.onnx.data").stat().st_size
    assert inspected["macs"] > 3e8 and inspected["params"] > 1e7  # counted: only the batch is
    # dynamic
    scores = _json(runner, ["eval", str(unet), "--data", str(test)], tmp_path / "eval.json")
    reference = independent_dice(unet, test)
    assert reference > 0.8  # it learned: a Dice that means something
    assert scores["dice"] == pytest.approx(reference, abs=1e-6)

    int8 = tmp_path / "out" / "unet_int8.onnx"
    result = runner.invoke(cli, ["convert", str(unet), "--to", "onnx", "--quant", "int8",
                                 "--calib", str(torch_models / "calib"), "--calib-samples", "16",
                                 "--verify-data", str(test), "--verify-samples", "16", "--out",
                                 str(int8)])
    assert result.exit_code == 0, result.output
    card = json.loads(int8.with_name(int8.name + ".json").read_text())
    assert card["macs"] == inspected["macs"]
    quantized = _json(runner, ["eval", str(int8), "--data", str(test)], tmp_path / "int8.json")
    assert card["parity"]["dice_converted"] == pytest.approx(quantized["dice"], abs=1e-9)
    assert card["parity"]["dice_source"] == pytest.approx(reference, abs=1e-6)
    assert quantized["dice"] == pytest.approx(independent_dice(int8, test), abs=1e-6)

    fp16 = tmp_path / "out" / "unet_fp16.onnx"  # float16 weights, float32 I/O, a checked graph
    result = runner.invoke(cli, ["convert", str(unet), "--to", "onnx", "--quant", "fp16",
                                 "--verify-data", str(test), "--out", str(fp16)])
    assert result.exit_code == 0, result.output
    half = _json(runner, ["eval", str(fp16), "--data", str(test)], tmp_path / "fp16.json")
    assert half["dice"] == pytest.approx(independent_dice(fp16, test), abs=1e-6)
    assert half["dice"] == pytest.approx(reference, abs=2e-3)


def test_lraspp_fixed_and_dynamic_exports_are_counted_and_quantized(torch_models, runner,
                                                                    tmp_path, monkeypatch):
    models = torch_models / "models"
    monkeypatch.chdir(tmp_path)
    fixed = _inspect(runner, models / "lraspp.onnx")
    dynamic = _inspect(runner, models / "lraspp_dynamic.onnx", "--input-size", "64")
    assert fixed["macs"] and fixed["macs"] == dynamic["macs"] and fixed["params"] > 3e6
    unsized = runner.invoke(cli, ["inspect", str(models / "lraspp_dynamic.onnx")])
    assert unsized.exit_code == 0 and "give --input-size" in unsized.output
    out = tmp_path / "lraspp_int8.onnx"
    result = runner.invoke(cli, ["convert", str(models / "lraspp_dynamic.onnx"), "--to", "onnx",
                                 "--quant", "int8", "--input-size", "64", "--calib",
                                 str(torch_models / "calib"), "--calib-samples", "8",
                                 "--verify-samples", "4", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    card = json.loads(out.with_name(out.name + ".json").read_text())
    assert card["macs"] == fixed["macs"] and card["input_size"] == [64, 64]


def test_run_with_a_torch_export(torch_models, runner, tmp_path, monkeypatch):
    """`run --model` on the SMP export (external data, a grey folder into an RGB model): its int8
    quantization and both bench rows, scored on --test-data (images it never trained on)."""
    monkeypatch.chdir(tmp_path)
    unet = torch_models / "models/smp_unet.onnx"
    out = tmp_path / "run"
    result = runner.invoke(cli, ["run", "--model", str(unet), "--data",
                                 str(torch_models / "train"), "--test-data",
                                 str(torch_models / "test"), "--quick", "--threads", "1",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    rows = {r["variant"]: r for r in report["results"]}
    assert report["reference"] == "smp_unet" and set(rows) == {"smp_unet", "int8"}
    assert rows["smp_unet"]["dice"] > 0.8 and rows["int8"]["dice_delta"] > -0.02
    assert rows["smp_unet"]["size_bytes"] == unet.stat().st_size + \
        unet.with_name("smp_unet.onnx.data").stat().st_size


def test_predict_bench_check_and_fallback_take_the_torch_exports(torch_models, runner, tmp_path,
                                                                 monkeypatch):
    """predict writes the export's own classes pixel for pixel; bench scores the exports and an
    int8 --fallback file as ONNX Runtime and numpy do; check gates the report."""
    import onnxruntime as ort
    from PIL import Image

    monkeypatch.chdir(tmp_path)
    models, test = torch_models / "models", torch_models / "test"
    images = sorted((test / "images").glob("*.png"))[:3]
    for name in ("smp_unet.onnx", "lraspp.onnx"):
        result = runner.invoke(cli, ["predict", str(models / name), *map(str, images), "--out",
                                     str(tmp_path / name)])
        assert result.exit_code == 0, result.output
        session = ort.InferenceSession(str(models / name), providers=["CPUExecutionProvider"])
        for image in images:
            mask = np.asarray(Image.open(tmp_path / name / f"{image.stem}_mask.png"))
            assert np.array_equal(mask, independent_labels(session, image)), (name, image.name)

    fallback = tmp_path / "lraspp_fallback.onnx"
    result = runner.invoke(cli, ["convert", str(models / "lraspp.onnx"), "--to", "onnx",
                                 "--quant", "int8", "--fallback", "--calib",
                                 str(torch_models / "calib"), "--calib-samples", "8",
                                 "--verify-data", str(test), "--out", str(fallback)])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output and fallback.exists()
    report = tmp_path / "bench.json"  # one task per bench: the 2-class LR-ASPP files
    sources = [models / "lraspp.onnx", fallback]
    bench = _json(runner, ["bench", *map(str, sources), "--data", str(test), "--threads", "1",
                           "--runs", "3", "--warmup", "1", "--quiet"], report)
    dice = {Path(r["path"]).name: r["dice"] for r in bench["results"]}
    reference = {path.name: independent_dice(path, test) for path in sources}
    for name, value in reference.items():
        assert dice[name] == pytest.approx(value, abs=1e-6), name
    assert all(r["latency_ms"]["p50"] > 0 for r in bench["results"])

    baseline = tmp_path / "baseline.json"
    result = runner.invoke(cli, ["check", str(report), "--write-baseline", str(baseline)])
    assert result.exit_code == 0 and baseline.exists(), result.output
    result = runner.invoke(cli, ["check", str(report), "--baseline", str(baseline)])
    assert result.exit_code == 0, result.output
    # no Dice below the reference allowed: fails exactly when the int8 file scores lower
    result = runner.invoke(cli, ["check", str(report), "--max-dice-delta", "0"])
    lower = reference[fallback.name] < reference["lraspp.onnx"] - 1e-9
    assert result.exit_code == (1 if lower else 0), result.output
    assert ("REGRESSION int8 (onnxruntime, 1 thread(s))" in result.output) == lower, result.output


@pytest.fixture(scope="module")
def onnx2tf_env():
    from converters.tools import tool_python
    from edgeseg.device.errors import ConfigError

    try:
        return tool_python("onnx2tf")
    except ConfigError as error:  # .ci/run makes it (edgeseg tools install onnx2tf)
        pytest.skip(str(error))


def _litert_vs_ort(tflite: Path, onnx_model: Path, folder: Path) -> float:
    """The largest |difference| of the .tflite's NHWC output (LiteRT) from the .onnx's NCHW one
    (ONNX Runtime) on a synth folder's images, grey repeated to RGB, pixels / 255."""
    import onnxruntime as ort
    from ai_edge_litert.interpreter import Interpreter
    from PIL import Image

    session = ort.InferenceSession(str(onnx_model), providers=["CPUExecutionProvider"])
    interpreter = Interpreter(model_path=str(tflite))
    interpreter.allocate_tensors()
    given, taken = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    worst = 0.0
    for path in sorted((folder / "images").glob("*.png"))[:4]:
        grey = np.asarray(Image.open(path).convert("L"), np.float32) / 255.0
        nchw = np.repeat(grey[None, None], 3, axis=1)
        interpreter.set_tensor(given["index"], nchw.transpose(0, 2, 3, 1))
        interpreter.invoke()
        nhwc = interpreter.get_tensor(taken["index"])
        reference = session.run(None, {session.get_inputs()[0].name: nchw})[0]
        worst = max(worst, float(np.abs(nhwc - reference.transpose(0, 2, 3, 1)).max()))
    return worst


def test_a_dynamic_torch_export_to_tflite_through_onnx2tf(torch_models, onnx2tf_env, runner,
                                                          tmp_path, monkeypatch):
    """LR-ASPP exported with dynamic height and width, to fp32 and int8 .tflite at 64x64: onnx2tf
    in its own environment, parity against ONNX Runtime, the tool's versions in the card, and
    the files' Dice from eval equal to the .onnx's (floats) and within the budget (int8)."""
    monkeypatch.chdir(tmp_path)
    source, test = torch_models / "models/lraspp_dynamic.onnx", torch_models / "test"
    fp32, int8 = tmp_path / "lraspp.tflite", tmp_path / "lraspp_int8.tflite"
    for out, extra in ((fp32, []), (int8, ["--quant", "int8", "--calib",
                                           str(torch_models / "calib"), "--calib-samples", "8"])):
        result = runner.invoke(cli, ["convert", str(source), "--input-size", "64",
                                     "--verify-data", str(test), "--verify-samples", "8", *extra,
                                     "--out", str(out)])
        assert result.exit_code == 0, result.output
    card = json.loads(fp32.with_name(fp32.name + ".json").read_text())
    tool = card["recipe"]["tool"]
    assert tool["name"] == "onnx2tf" and tool["tensorflow"] == onnx2tf_env[1]["versions"][
        "tensorflow"] and card["input_size"] == [64, 64]
    assert card["parity"]["max_abs_diff"] < 1e-4
    assert _litert_vs_ort(fp32, torch_models / "models/lraspp.onnx", test) < 1e-4  # independent
    scores = {path.name: _json(runner, ["eval", str(path), "--data", str(test), "--input-size",
                                        "64"], tmp_path / f"{path.stem}.json")["dice"]
              for path in (source, fp32, int8)}
    assert scores["lraspp_dynamic.onnx"] > 0.5, scores  # it learned
    assert scores["lraspp.tflite"] == pytest.approx(scores["lraspp_dynamic.onnx"], abs=1e-4)
    assert scores["lraspp_int8.tflite"] > scores["lraspp_dynamic.onnx"] - 0.05, scores
    int8_card = json.loads(int8.with_name(int8.name + ".json").read_text())
    assert int8_card["variant"] == "int8" and int8_card["calibration"]["samples"] == 8


def test_the_smp_unet_reaches_an_int8_tflite_that_loads(torch_models, onnx2tf_env, runner,
                                                        tmp_path, monkeypatch):
    """The SMP U-Net (external data) to an int8 .tflite through onnx2tf: where LiteRT cannot
    load TensorFlow's int8 file (XNNPACK refused it here), ai-edge-quantizer quantizes onnx2tf's
    float32 file instead, said on stderr and in the card; the file runs and scores within the
    int8 budget of the .onnx, computed by ONNX Runtime and numpy."""
    from ai_edge_litert.interpreter import Interpreter

    monkeypatch.chdir(tmp_path)
    source, test = torch_models / "models/smp_unet.onnx", torch_models / "test"
    out = tmp_path / "smp_int8.tflite"
    result = runner.invoke(cli, ["convert", str(source), "--quant", "int8", "--calib",
                                 str(torch_models / "calib"), "--calib-samples", "16",
                                 "--verify-data", str(test), "--out", str(out)])
    assert result.exit_code == 0, result.output
    tool = json.loads(out.with_name(out.name + ".json").read_text())["recipe"]["tool"]
    assert tool["name"] == "onnx2tf"
    assert ("quantizing onnx2tf's float32 file with ai-edge-quantizer" in result.output) == \
        ("quantizer" in tool)
    Interpreter(model_path=str(out)).allocate_tensors()
    dice = _json(runner, ["eval", str(out), "--data", str(test)], tmp_path / "int8.json")["dice"]
    assert dice > independent_dice(source, test) - 0.02
