"""One feeding path: a converted file's parity check feeds each image as ``eval`` does, so the
Dice its card records is the Dice ``eval`` gives on the same images (a fixed-size model fed
images smaller than its input: padded at the bottom and right edges, never centred in zeros)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgeseg.cli import cli


@pytest.fixture(scope="module")
def small_images(tmp_path_factory):
    """A labelled folder as `edgeseg data synth` writes it, of images smaller than the 64x64
    input the tiny model is converted at."""
    from click.testing import CliRunner

    out = tmp_path_factory.mktemp("small") / "cells48"
    result = CliRunner().invoke(cli, ["data", "synth", "--n", "8", "--size", "48", "--seed", "11",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.parametrize("to, quant", [("tflite", "int8"), ("onnx", "int8")])
def test_card_parity_dice_is_evals_dice_on_the_same_images(tiny_run, small_images, tmp_path,
                                                           runner, to, quant):
    out = tmp_path / f"fixed_{quant}.{to}"
    result = runner.invoke(cli, ["convert", str(tiny_run / "model.keras"), "--to", to, "--quant",
                                 quant, "--input-size", "64", "--calib-samples", "8",
                                 "--verify-data", str(small_images), "--verify-samples", "8",
                                 "--keep-failed", "--out", str(out)])
    assert result.exit_code == 0, result.output
    parity = json.loads(out.with_name(out.name + ".json").read_text())["parity"]
    assert parity["samples"] == 8 and str(small_images) in parity["images"]
    scores = tmp_path / "scores.json"
    result = runner.invoke(cli, ["eval", str(out), "--data", str(small_images), "--json",
                                 str(scores)])
    assert result.exit_code == 0, result.output
    evaluated = json.loads(scores.read_text())
    assert evaluated["samples"] == 8
    assert parity["dice_converted"] == pytest.approx(evaluated["dice"], abs=1e-9)
    # and the source's parity Dice is the Keras model's own eval Dice on those images at 64x64
    source = tmp_path / "source.json"
    result = runner.invoke(cli, ["eval", str(tiny_run / "model.keras"), "--data",
                                 str(small_images), "--input-size", "64", "--json", str(source)])
    assert result.exit_code == 0, result.output
    assert parity["dice_source"] == pytest.approx(json.loads(source.read_text())["dice"],
                                                  abs=1e-9)


def test_pad_to_mirrors_images_and_fills_masks():
    from edgeseg.device.tiling import pad_to

    image = np.arange(12, dtype=np.uint8).reshape(3, 4, 1)
    padded = pad_to(image, 5, 6)
    assert padded.shape == (5, 6, 1)
    assert (padded[:3, :4] == image).all()  # the image stays at the top left
    assert (padded[3, :4, 0] == image[1, :, 0]).all()  # mirrored below its last row
    mask = pad_to(np.zeros((3, 4), np.uint8), 5, 6, fill=255)
    assert (mask[3:] == 255).all() and (mask[:, 4:] == 255).all() and (mask[:3, :4] == 0).all()
    with pytest.raises(ValueError):
        pad_to(image, 2, 6)


def _grey_threshold_onnx(path):
    """A 3-channel NCHW .onnx written with onnx.helper, as a PyTorch user's model looks: one
    logit, the mean of the normalised channels (bright pixels are foreground)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "w", "b"], ["output"], name="head",
                          kernel_shape=[1, 1])], "bright",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, "h", "w"])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 1, "h", "w"])],
        initializer=[numpy_helper.from_array(np.full((1, 3, 1, 1), 1 / 3, np.float32), "w"),
                     numpy_helper.from_array(np.zeros(1, np.float32), "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_grey_images_feed_a_3_channel_model_alike_in_every_path(small_images, tmp_path, runner):
    """Grey data into an RGB model with 3-value mean/std: repeated to RGB by convert (calibration
    and parity), eval and bench alike, so their Dice agree."""
    model = _grey_threshold_onnx(tmp_path / "bright.onnx")
    calib = tmp_path / "calib"  # other images than those checked and scored
    result = runner.invoke(cli, ["data", "synth", "--n", "8", "--size", "48", "--seed", "3",
                                 "--out", str(calib)])
    assert result.exit_code == 0, result.output
    norm = ["--normalize", "meanstd:0.3,0.3,0.3/0.2,0.2,0.2", "--logits"]
    out = tmp_path / "bright_int8.onnx"
    result = runner.invoke(cli, ["convert", str(model), "--to", "onnx", "--quant", "int8",
                                 "--input-size", "64", "--calib", str(calib),
                                 "--calib-samples", "8", "--verify-data", str(small_images),
                                 "--verify-samples", "8", *norm, "--out", str(out)])
    assert result.exit_code == 0, result.output
    parity = json.loads(out.with_name(out.name + ".json").read_text())["parity"]
    source = tmp_path / "source.json"
    result = runner.invoke(cli, ["eval", str(model), "--data", str(small_images),
                                 "--input-size", "64", *norm, "--json", str(source)])
    assert result.exit_code == 0, result.output
    dice = json.loads(source.read_text())["dice"]
    assert dice > 0.3  # the threshold finds the bright nuclei: a Dice that means something
    assert parity["samples"] == 8 and parity["dice_source"] == pytest.approx(dice, abs=1e-9)
    report = tmp_path / "bench.json"
    result = runner.invoke(cli, ["bench", str(model), str(out), "--data", str(small_images),
                                 "--image-size", "64", "--runs", "2", "--warmup", "0", *norm,
                                 "--quiet", "--json", str(report)])
    assert result.exit_code == 0, result.output
    rows = json.loads(report.read_text())["results"]
    assert rows[0]["dice"] == pytest.approx(dice, abs=1e-9)
