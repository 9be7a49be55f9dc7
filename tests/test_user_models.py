"""Models nobody at edgeseg wrote (tests/user_models.py) through every command a user runs.

Each failure issue 14 lists is a test here: a Keras 3 model, a custom layer, a non-square model,
multi-output models, logits, an NCHW ONNX from "PyTorch", a size the model does not keep, Lambda
layers and --unsafe, parity limits, and optimize on what tfmot cannot take.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from PIL import Image

from edgeseg.cli import cli


def _ok(result):
    assert result.exit_code == 0, result.output
    return result.output


def _one_line_error(result, *needles):
    """Exit 2, one line naming what is wrong, no traceback."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(lines) == 1, result.output
    for needle in needles:
        assert needle in lines[0], result.output
    return lines[0]


def _eval(runner, model, tmp_path, *options) -> dict:
    out = tmp_path / f"{model.name}.eval.json"
    _ok(runner.invoke(cli, ["eval", str(model), "--n", "16", "--input-size", "64", *options,
                            "--json", str(out)]))
    return json.loads(out.read_text())


def _convert(runner, model, out, *options):
    return runner.invoke(cli, ["convert", str(model), "--verify-samples", "8",
                               "--calib-samples", "8", *options, "--out", str(out)])


@pytest.fixture(scope="module")
def reference_dice(user_models, tmp_path_factory):
    """Held-out Dice of the Keras 3 U-Net and of the plain net, through `edgeseg eval`."""
    from click.testing import CliRunner

    where = tmp_path_factory.mktemp("reference")
    runner = CliRunner()
    return {key: _eval(runner, user_models[key], where)["dice"]
            for key in ("keras3_unet", "keras3_plain")}


def test_keras3_model_converts_evaluates_and_states_its_contract(user_models, runner, tmp_path,
                                                                 reference_dice):
    assert reference_dice["keras3_unet"] > 0.85  # the fixture learned its task
    for key in ("keras3_unet", "keras3_unet_h5"):
        out = tmp_path / f"{key}.tflite"
        _ok(_convert(runner, user_models[key], out, "--input-size", "64"))
        card = json.loads((tmp_path / f"{key}.tflite.json").read_text())
        assert card["source"]["keras"] == "keras3"
        assert card["output_kind"] == "probabilities" and card["input_size"] == [64, 64]
        assert card["parity"]["passed"] and card["parity"]["min_agreement"] == 0.999
        assert _eval(runner, out, tmp_path)["dice"] == pytest.approx(
            reference_dice["keras3_unet"], abs=0.002)
    onnx = tmp_path / "unet.onnx"
    _ok(_convert(runner, user_models["keras3_unet"], onnx, "--input-size", "64", "--quant",
                 "int8", "--calib", "synthetic-nuclei"))
    assert _eval(runner, onnx, tmp_path)["dice"] > reference_dice["keras3_unet"] - 0.02
    # the Keras 3 row: its parameters counted, its MACs left to the converted file, and said
    report = tmp_path / "bench.json"
    result = runner.invoke(cli, ["bench", str(user_models["keras3_unet"]),
                                 str(tmp_path / "keras3_unet.tflite"), "--runs", "1", "--warmup",
                                 "0", "--samples", "2", "--quiet", "--json", str(report)])
    _ok(result)
    keras_row, tflite_row = json.loads(report.read_text())["results"]
    assert keras_row["macs"] is None and keras_row["params"] > 0 and tflite_row["macs"] > 0
    assert "MACs are counted on tf_keras models with one output and on converted files" in \
        result.output


def test_logits_model_scores_like_its_sigmoid_twin(user_models, runner, tmp_path,
                                                   reference_dice):
    logits = user_models["keras3_logits"]
    assert _eval(runner, logits, tmp_path)["dice"] == pytest.approx(
        reference_dice["keras3_unet"], abs=1e-6)
    out = tmp_path / "logits.tflite"
    _ok(_convert(runner, logits, out, "--input-size", "64"))
    assert json.loads((tmp_path / "logits.tflite.json").read_text())["output_kind"] == "logits"
    assert _eval(runner, out, tmp_path)["dice"] == pytest.approx(
        reference_dice["keras3_unet"], abs=0.002)
    # told the logits are probabilities, eval thresholds raw scores at 0.5, not at 0: worse
    wrong = _eval(runner, out, tmp_path, "--probabilities")["dice"]
    assert wrong < reference_dice["keras3_unet"] - 0.001


def test_non_square_model_everywhere(user_models, runner, tmp_path, reference_dice):
    wide = user_models["keras3_wide"]
    out = tmp_path / "wide.tflite"
    _ok(_convert(runner, wide, out))  # its own 144x256, no --input-size needed
    card = json.loads((tmp_path / "wide.tflite.json").read_text())
    assert card["input_size"] == [144, 256]
    _one_line_error(runner.invoke(cli, ["eval", str(out), "--input-size", "256"]),
                    "144x256", "--input-size")
    result = runner.invoke(cli, ["eval", str(out), "--n", "8", "--json", str(tmp_path / "e.json")])
    _ok(result)
    assert json.loads((tmp_path / "e.json").read_text())["dice"] > 0.85
    # a dynamic model converted at a non-square size
    rect = tmp_path / "rect.tflite"
    _ok(_convert(runner, user_models["keras3_unet"], rect, "--input-size", "96x160"))
    assert json.loads((tmp_path / "rect.tflite.json").read_text())["input_size"] == [96, 160]
    image = tmp_path / "scan.png"
    Image.fromarray((np.random.default_rng(0).random((100, 300)) * 255).astype(np.uint8)).save(image)
    _ok(runner.invoke(cli, ["predict", str(out), str(image), "--out", str(tmp_path / "masks")]))
    assert Image.open(tmp_path / "masks" / "scan_mask.png").size == (300, 100)
    report = tmp_path / "bench.json"
    _ok(runner.invoke(cli, ["bench", str(out), str(rect), "--runs", "2", "--warmup", "0",
                            "--samples", "4", "--quiet", "--json", str(report)]))
    rows = json.loads(report.read_text())["results"]
    assert {tuple(r["input_shape"]) for r in rows} == {(1, 144, 256, 1), (1, 96, 160, 1)}


def test_multi_output_models(user_models, runner, tmp_path):
    two = user_models["keras3_two_full"]
    error = _one_line_error(_convert(runner, two, tmp_path / "two.tflite", "--input-size", "64"),
                            "--output", "mask", "edges")
    assert not (tmp_path / "two.tflite").exists(), error
    _ok(_convert(runner, two, tmp_path / "two.tflite", "--input-size", "64", "--output", "mask"))
    assert json.loads((tmp_path / "two.tflite.json").read_text())["source"]["output"] == "mask"
    _one_line_error(runner.invoke(cli, ["eval", str(two), "--output", "nope"]), "nope", "mask")
    # one output keeps the input's size: chosen without being asked, in every runtime
    aux = user_models["keras3_aux"]
    assert _eval(runner, aux, tmp_path)["dice"] > 0.85
    _ok(_convert(runner, aux, tmp_path / "aux.onnx", "--input-size", "64"))
    assert _eval(runner, tmp_path / "aux.onnx", tmp_path)["dice"] > 0.85


@pytest.mark.slow  # over 20 s on 2 cores: the quick suite stays well under 15 min
def test_custom_layer_needs_its_code(user_models, runner, tmp_path, reference_dice):
    model, code = user_models["tfkeras_custom"], user_models["custom_objects_file"]
    # without the code, in a fresh process (this one may have imported it already): one line
    for path in (model, user_models["tfkeras_custom_h5"]):
        done = subprocess.run([sys.executable, "-m", "edgeseg", "eval", str(path), "--n", "2",
                               "--input-size", "64"], capture_output=True, text=True)
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr
        assert "'Scale'" in done.stderr and "--custom-objects" in done.stderr, done.stderr
    out = tmp_path / "custom.tflite"
    _ok(_convert(runner, model, out, "--input-size", "64", "--custom-objects", str(code)))
    assert _eval(runner, out, tmp_path)["dice"] == pytest.approx(
        reference_dice["keras3_unet"], abs=0.002)
    assert _eval(runner, user_models["tfkeras_custom_h5"], tmp_path, "--custom-objects",
                 str(code))["dice"] == pytest.approx(reference_dice["keras3_unet"], abs=0.002)
    _one_line_error(runner.invoke(cli, ["eval", str(model), "--custom-objects",
                                        str(tmp_path / "nothere.py")]), "nothere.py")


def test_nchw_onnx_from_pytorch(user_models, runner, tmp_path, reference_dice, monkeypatch):
    want = reference_dice["keras3_plain"]
    assert want > 0.8
    for key in ("onnx_nchw", "onnx_nchw_logits", "onnx_nchw_fixed"):
        assert _eval(runner, user_models[key], tmp_path)["dice"] == pytest.approx(want, abs=1e-4)
    nchw = user_models["onnx_nchw"]
    scores = _eval(runner, nchw, tmp_path)
    assert scores["contract"]["input_layout"] == "NCHW"
    assert scores["contract"]["input_shape"] == [None, None, None, 1]
    # int8 with ONNX Runtime's quantizer, calibrated and verified in the model's own layout
    int8 = tmp_path / "int8.onnx"
    _ok(_convert(runner, nchw, int8, "--to", "onnx", "--quant", "int8", "--calib",
                 "synthetic-nuclei", "--input-size", "64"))
    card = json.loads((tmp_path / "int8.onnx.json").read_text())
    assert card["input_layout"] == "NCHW" and card["output_kind"] == "probabilities"
    assert _eval(runner, int8, tmp_path)["dice"] == pytest.approx(want, abs=0.01)
    # to .tflite through onnx2tf's own environment: where there is none, how to make it
    monkeypatch.setenv("EDGESEG_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("EDGESEG_ONNX2TF_PYTHON", raising=False)
    _one_line_error(_convert(runner, nchw, tmp_path / "x.tflite", "--input-size", "64"),
                    "edgeseg tools install onnx2tf")
    assert not (tmp_path / "x.tflite").exists() and not (tmp_path / "cache").exists()
    # bench, inspect, predict, check on the user's files
    report = tmp_path / "bench.json"
    _ok(runner.invoke(cli, ["bench", str(nchw), str(int8), user_models["onnx_nchw_logits"].as_posix(),
                            "--image-size", "64", "--runs", "2", "--warmup", "0", "--samples", "4",
                            "--quiet", "--json", str(report)]))
    rows = json.loads(report.read_text())["results"]
    assert all(r["macs"] and r["macs"] > 0 for r in rows)
    assert max(r["dice"] for r in rows) - min(r["dice"] for r in rows) < 0.01
    _ok(runner.invoke(cli, ["inspect", str(nchw), "--input-size", "64"]))
    image = tmp_path / "cells.png"
    Image.fromarray((np.random.default_rng(1).random((80, 120)) * 255).astype(np.uint8)).save(image)
    _ok(runner.invoke(cli, ["predict", user_models["onnx_nchw_logits"].as_posix(), str(image),
                            "--out", str(tmp_path / "masks")]))
    assert Image.open(tmp_path / "masks" / "cells_mask.png").size == (120, 80)
    _ok(runner.invoke(cli, ["check", str(report), "--max-dice-delta", "0.02"]))


def test_a_users_onnx_gets_fp16_and_int8_with_float_fallback(user_models, runner, tmp_path,
                                                              reference_dice):
    """An NCHW .onnx with logits out (as torch exports one) has the choices a Keras model has
    through ONNX Runtime: float16, and the selective int8 search (``--fallback``), whose trial
    files are run by the source's own contract (layout, logits)."""
    want = reference_dice["keras3_plain"]
    source = user_models["onnx_nchw_logits"]
    fp16 = tmp_path / "fp16.onnx"
    output = _ok(_convert(runner, source, fp16, "--to", "onnx", "--quant", "fp16", "--calib",
                          "synthetic-nuclei", "--input-size", "64"))
    card = json.loads((tmp_path / "fp16.onnx.json").read_text())
    assert card["variant"] == "fp16" and card["parity"]["mode"] == "fp16", output
    assert card["input_layout"] == "NCHW" and card["output_kind"] == "logits"
    weights = {i.data_type for i in onnx.load(str(fp16)).graph.initializer if len(i.dims) > 1}
    assert weights == {onnx.TensorProto.FLOAT16}  # the kernels in 16 bits, inputs still float
    assert _eval(runner, fp16, tmp_path)["dice"] == pytest.approx(want, abs=2e-3)

    fallback = tmp_path / "fallback.onnx"
    output = _ok(_convert(runner, source, fallback, "--to", "onnx", "--quant", "int8",
                          "--fallback", "--max-dice-drop", "0.01", "--calib", "synthetic-nuclei",
                          "--input-size", "64"))
    card = json.loads((tmp_path / "fallback.onnx.json").read_text())
    chosen = card["recipe"]["float_fallback"]
    assert chosen["budget_met"] and chosen["dice"] >= chosen["dice_source"] - 0.01, output
    assert card["parity"]["passed"] and "selective int8" in output
    assert _eval(runner, fallback, tmp_path)["dice"] == pytest.approx(want, abs=0.02)


def test_sidecar_card_and_options_are_obeyed(user_models, runner, tmp_path, reference_dice):
    copy = tmp_path / "torch.onnx"
    copy.write_bytes(user_models["onnx_nchw_logits"].read_bytes())
    (tmp_path / "torch.onnx.json").write_text(json.dumps(
        {"input_layout": "NCHW", "output_kind": "logits", "class_names": ["bg", "nucleus"]}))
    result = runner.invoke(cli, ["eval", str(copy), "--n", "16", "--input-size", "64"])
    assert "no model card" not in _ok(result) and "nucleus" in result.output
    (tmp_path / "torch.onnx.json").write_text(json.dumps({"output_kind": "probabilities"}))
    assert abs(_eval(runner, copy, tmp_path)["dice"] - reference_dice["keras3_plain"]) > 0.001
    assert _eval(runner, copy, tmp_path, "--logits")["dice"] == pytest.approx(
        reference_dice["keras3_plain"], abs=1e-4)


def test_size_the_model_does_not_keep_is_refused(tf, runner, tmp_path):
    import keras

    inputs = keras.Input((None, None, 1))
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same")(inputs)
    x = keras.layers.UpSampling2D()(x)
    model = keras.Model(inputs, keras.layers.Conv2D(1, 1, activation="sigmoid")(x))
    path = tmp_path / "odd.keras"
    model.save(path)
    _one_line_error(_convert(runner, path, tmp_path / "odd.tflite", "--input-size", "97"),
                    "97x97", "98x98")
    assert not (tmp_path / "odd.tflite").exists()
    _ok(_convert(runner, path, tmp_path / "even.tflite", "--input-size", "96"))


def test_lambda_models_and_unsafe(tf, runner, tmp_path):
    import keras

    inputs = keras.Input((None, None, 1))
    x = keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid")(inputs)
    path = tmp_path / "lambda.keras"
    keras.Model(inputs, keras.layers.Lambda(lambda t: t * 1.0)(x)).save(path)
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(image)
    for command in (["predict", str(path), str(image), "--out", str(tmp_path / "o")],
                    ["eval", str(path)], ["convert", str(path), "--out", str(tmp_path / "l.tflite")],
                    ["bench", str(path)]):
        _one_line_error(runner.invoke(cli, command), "--unsafe")
    _ok(runner.invoke(cli, ["predict", str(path), str(image), "--out", str(tmp_path / "o"),
                            "--unsafe"]))


def test_parity_limits_are_options_and_recorded(user_models, runner, tmp_path):
    model = user_models["keras3_unet"]
    error = _one_line_error(_convert(runner, model, tmp_path / "a.tflite", "--input-size", "64",
                                     "--parity-tolerance", "0"), "parity check failed")
    assert "--parity-tolerance" in error and not (tmp_path / "a.tflite").exists()
    _ok(_convert(runner, model, tmp_path / "b.tflite", "--input-size", "64",
                 "--parity-tolerance", "0.01", "--min-agreement", "0.99"))
    parity = json.loads((tmp_path / "b.tflite.json").read_text())["parity"]
    assert parity["tolerance"] == 0.01 and parity["min_agreement"] == 0.99
    # quantized parity can fail when asked to
    _one_line_error(_convert(runner, model, tmp_path / "c.tflite", "--input-size", "64",
                             "--quant", "int8", "--calib", "synthetic-nuclei",
                             "--min-agreement", "1"), "parity check failed")


def test_optimize_says_what_tfmot_cannot_take(user_models, runner, tmp_path):
    error = _one_line_error(runner.invoke(cli, ["optimize", str(user_models["keras3_unet"]),
                                                "--prune", "0.5", "--out", str(tmp_path / "o")]),
                            "Keras 3", "tf-keras")
    assert "convert" in error


@pytest.mark.slow
def test_run_with_a_user_model(user_models, runner, tmp_path):
    folder = tmp_path / "cells"
    _ok(runner.invoke(cli, ["data", "synth", "--kind", "nuclei", "--n", "24", "--size", "64",
                            "--out", str(folder)]))
    out = tmp_path / "run"
    output = _ok(runner.invoke(cli, ["run", "--model", str(user_models["keras3_unet"]), "--data",
                                     str(folder), "--input-size", "64", "--quick", "--threads",
                                     "1", "--out", str(out)]))
    assert "optimize: not for this model" in output
    report = json.loads((out / "report.json").read_text())
    variants = {(r["variant"], r["runtime"]) for r in report["results"]}
    assert ("int8", "litert") in variants and ("fp32", "onnxruntime") in variants
    assert report["reference"] == "unet_k3"
    assert "validation split" in report["dataset"]["name"]
    assert (out / "report.html").exists() and (out / "report.md").exists()


def test_contract_options_leave_files_edgeseg_converted_alone(user_models, runner, tmp_path):
    two = user_models["keras3_two_full"]
    _ok(_convert(runner, two, tmp_path / "two.tflite", "--input-size", "64", "--output", "mask"))
    report = tmp_path / "b.json"
    _ok(runner.invoke(cli, ["bench", str(two), str(tmp_path / "two.tflite"), "--output", "mask",
                            "--image-size", "64", "--runs", "2", "--warmup", "0", "--samples", "4",
                            "--quiet", "--json", str(report)]))
    rows = json.loads(report.read_text())["results"]
    assert len(rows) == 2 and all(r["agreement"] > 0.999 for r in rows)


def test_named_outputs(user_models, tf, runner, tmp_path, reference_dice):
    import keras
    import onnx

    # a dict of outputs, the segmentation second in sorted order
    unet = keras.saving.load_model(user_models["keras3_unet"], compile=False)
    aux = keras.layers.Conv2D(1, 1, activation="sigmoid", name="aux_head")(unet.layers[-3].output)
    path = tmp_path / "dict.keras"
    keras.Model(unet.input, {"mask": unet.output, "aux": aux}).save(path)
    assert _eval(runner, path, tmp_path, "--output", "mask")["dice"] == pytest.approx(
        reference_dice["keras3_unet"], abs=1e-6)
    # an output named by a number, as PyTorch's exporter names them
    proto = onnx.load(str(user_models["onnx_nchw"]))
    old = proto.graph.output[0].name
    for node in proto.graph.node:
        node.output[:] = ["573" if name == old else name for name in node.output]
    proto.graph.output[0].name = "573"
    numbered = tmp_path / "numbered.onnx"
    onnx.save(proto, str(numbered))
    assert _eval(runner, numbered, tmp_path, "--output", "573")["dice"] == pytest.approx(
        reference_dice["keras3_plain"], abs=1e-4)


def test_a_sidecar_with_a_bad_input_size_is_one_line(user_models, runner, tmp_path):
    copy = tmp_path / "m.onnx"
    copy.write_bytes(user_models["onnx_nchw"].read_bytes())
    (tmp_path / "m.onnx.json").write_text(json.dumps({"input_size": [1, 256, 256, 3]}))
    _one_line_error(runner.invoke(cli, ["eval", str(copy)]), "m.onnx", "input_size")


def test_savedmodel_folder(user_models, tf, runner, tmp_path, reference_dice):
    import keras

    folder = tmp_path / "exported"
    keras.saving.load_model(user_models["keras3_unet"], compile=False).export(str(folder))
    assert _eval(runner, folder, tmp_path)["dice"] == pytest.approx(
        reference_dice["keras3_unet"], abs=1e-6)
    out = tmp_path / "exported.tflite"
    _ok(_convert(runner, folder, out, "--input-size", "64"))
    card = json.loads((tmp_path / "exported.tflite.json").read_text())
    assert card["source"]["keras"] == "savedmodel" and card["output_kind"] == "probabilities"
    assert _eval(runner, out, tmp_path)["dice"] == pytest.approx(
        reference_dice["keras3_unet"], abs=0.002)


def test_inputs_and_outputs_that_are_not_images_are_one_line(tf, runner, tmp_path):
    import keras

    inputs = keras.Input((16,))
    path = tmp_path / "dense.keras"
    keras.Model(inputs, keras.layers.Dense(2)(inputs)).save(path)
    _one_line_error(runner.invoke(cli, ["eval", str(path)]), "dense.keras", "input")
    image = keras.Input((None, None, 1))
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(2, 3)(image))
    path = tmp_path / "classifier.keras"
    keras.Model(image, pooled).save(path)
    _one_line_error(runner.invoke(cli, ["eval", str(path)]), "classifier.keras", "class scores")


def test_pruning_keeps_a_users_classifier_dense_behind_a_custom_layer(user_models):
    from edgeseg.keras_files import custom_objects_from, load_for_training
    from edgeseg.optimize.selection import choose

    objects = custom_objects_from([str(user_models["custom_objects_file"])])
    model = load_for_training(user_models["tfkeras_custom"], custom_objects=objects)
    choices = {choice.layer: choice for choice in choose(model)}
    # logits_conv -> Scale (a weight of its own) -> sigmoid: still the classifier
    assert not choices["logits_conv"].selected
    assert choices["logits_conv"].reason.startswith("classifier")
    assert choices["dec1_conv"].selected


def _external_data_copy(onnx_file, folder):
    """``onnx_file`` as torch >= 2.9 exports it (the graph in model.onnx, the weights in
    model.onnx.data beside it; tensors under 1 KB inline), without edgeseg's card: a foreign file."""
    import onnx

    proto = onnx.load(str(onnx_file))
    del proto.metadata_props[:]
    folder.mkdir(parents=True)
    onnx.save_model(proto, str(folder / "model.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="model.onnx.data")
    assert (folder / "model.onnx.data").stat().st_size > (folder / "model.onnx").stat().st_size
    return folder / "model.onnx"


def test_an_onnx_with_external_data_works_from_any_folder(converted, runner, tmp_path,
                                                          monkeypatch):
    """Issue 29, finding 1: eval, inspect, bench (the size counts the data file) and int8
    quantization of an .onnx whose weights are in model.onnx.data, run from another folder; the
    figures are those of the same weights in one file."""
    from edgeseg.cli import cli

    single = converted[("onnx", "none")][0]
    model = _external_data_copy(single, tmp_path / "export")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    scores = {}
    for name, path in (("single", single), ("external", model)):
        done = runner.invoke(cli, ["eval", str(path), "--data", "synthetic-nuclei", "--n", "8",
                                   "--json", str(tmp_path / f"{name}.json")])
        assert done.exit_code == 0, done.output
        scores[name] = json.loads((tmp_path / f"{name}.json").read_text())["dice"]
    assert scores["external"] == scores["single"]

    done = runner.invoke(cli, ["inspect", str(model)])
    assert done.exit_code == 0 and "with its weights in model.onnx.data" in done.output

    done = runner.invoke(cli, ["bench", str(model), "--samples", "2", "--runs", "2", "--quiet",
                               "--json", str(tmp_path / "bench.json")])
    assert done.exit_code == 0, done.output
    row = json.loads((tmp_path / "bench.json").read_text())["results"][0]
    assert row["size_bytes"] == model.stat().st_size + \
        (model.parent / "model.onnx.data").stat().st_size

    out = tmp_path / "int8" / "model_int8.onnx"
    done = runner.invoke(cli, ["convert", str(model), "--to", "onnx", "--quant", "int8",
                               "--calib", "synthetic-nuclei", "--calib-samples", "8",
                               "--verify-samples", "4", "--out", str(out)])
    assert done.exit_code == 0, done.output
    assert sorted(p.name for p in out.parent.iterdir()) == ["model_int8.onnx",
                                                           "model_int8.onnx.json"]


def test_an_onnx_whose_data_file_is_missing_or_elsewhere_is_one_line(converted, runner,
                                                                     tmp_path):
    import onnx

    from edgeseg.cli import cli

    model = _external_data_copy(converted[("onnx", "none")][0], tmp_path / "export")
    (model.parent / "model.onnx.data").rename(tmp_path / "model.onnx.data")
    done = runner.invoke(cli, ["eval", str(model), "--data", "synthetic-nuclei"])
    lines = [line for line in done.output.splitlines() if line.strip()]
    assert done.exit_code == 2 and len(lines) == 1, done.output
    assert "model.onnx.data, which is not beside it" in lines[0]

    proto = onnx.load(str(model), load_external_data=False)
    for tensor in proto.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = "../model.onnx.data"  # the file exists, but outside the folder
    onnx.save_model(proto, str(model))
    done = runner.invoke(cli, ["eval", str(model), "--data", "synthetic-nuclei"])
    lines = [line for line in done.output.splitlines() if line.strip()]
    assert done.exit_code == 2 and len(lines) == 1, done.output
    assert "outside the model's folder; refusing it" in lines[0]


def test_a_keras_model_that_rescales_inside_takes_raw_pixels_by_default(user_models, runner,
                                                                        tmp_path):
    """Issue 29, finding 4: the trained U-Net behind Rescaling(1/255) scores, by default, what
    the U-Net scores on scaled pixels, and says it feeds raw values; --normalize scale (the old
    default) does not, and --normalize none is the same as the default."""
    scores = {}
    for name, model, extra in (("inner", user_models["keras3_unet"], []),
                               ("rescaled", user_models["keras3_rescaled"], []),
                               ("none", user_models["keras3_rescaled"], ["--normalize", "none"]),
                               ("scaled", user_models["keras3_rescaled"],
                                ["--normalize", "scale"])):
        done = runner.invoke(cli, ["eval", str(model), "--data", "synthetic-nuclei", "--n", "8",
                                   "--input-size", "64", *extra, "--json",
                                   str(tmp_path / f"{name}.json")])
        assert done.exit_code == 0, done.output
        scores[name] = json.loads((tmp_path / f"{name}.json").read_text())["dice"]
        if name == "rescaled":
            assert "starts with a Rescaling layer: fed raw pixel values" in done.output
    assert scores["inner"] > 0.5
    assert abs(scores["rescaled"] - scores["inner"]) < 1e-4 and scores["none"] == scores["rescaled"]
    assert scores["scaled"] < scores["inner"] - 0.2


def test_run_stops_on_a_model_that_predicts_one_class_everywhere(runner, tmp_path):
    """A user's .onnx whose output is background on every pixel (a constant head, written with
    onnx.helper) stops `run --model` before anything is written, naming the likely causes."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from user_models import IR_VERSION, OPSET

    dims = ["batch", 3, "height", "width"]
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "w", "b"], ["output"], name="head",
                          kernel_shape=[1, 1])], "flat",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 1, "height",
                                                                     "width"])],
        initializer=[numpy_helper.from_array(np.zeros((1, 3, 1, 1), np.float32), "w"),
                     numpy_helper.from_array(np.array([-4.0], np.float32), "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    flat = tmp_path / "flat.onnx"
    onnx.save(model, str(flat))
    folder = tmp_path / "cells"
    _ok(runner.invoke(cli, ["data", "synth", "--n", "24", "--size", "64", "--out", str(folder)]))
    out = tmp_path / "run"
    result = runner.invoke(cli, ["run", "--model", str(flat), "--data", str(folder),
                                 "--input-size", "64", "--quick", "--threads", "1", "--out",
                                 str(out)])
    assert result.exit_code != 0 and not out.exists()
    line = result.output.strip().splitlines()[-1]
    assert "predicts only 'background' on every pixel" in line and "Traceback" not in result.output
    for cause in ("--normalize", "3 channels (grey images repeated to RGB)", "--logits"):
        assert cause in line
