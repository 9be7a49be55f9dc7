"""Training on a user's folder: the step budget, BatchNorm recalibration, the learned-nothing guard."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from edgeseg.cli import cli
from edgeseg.plan import MAX_PASSES_UNAUGMENTED, MIN_STEPS, plan_training, views_of


def _lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.strip()]


# --- the budget ------------------------------------------------------------------------------

def test_a_small_folder_gets_the_floor_of_steps_not_a_few_epochs():
    plan = plan_training(images=21, val_images=5, views=21, batch_size=16)
    assert plan.steps >= MIN_STEPS and plan.why == "chosen from the data"
    assert plan.passes > 100  # hundreds of augmented passes: a few dozen images need them
    assert plan.chunks * plan.steps_per_chunk == plan.steps


def test_the_budget_grows_sublinearly_with_the_data():
    steps = [plan_training(images=n, val_images=n // 5, views=n, batch_size=16).steps
             for n in (2_000, 20_000)]
    assert steps[0] > MIN_STEPS and steps[1] < 10 * steps[0] and steps[1] > 2 * steps[0]


def test_large_images_hold_more_views_than_their_count():
    assert views_of([(512, 512)] * 10, 128) == 160 and views_of([(64, 64)] * 10, 128) == 10


def test_without_augmentation_a_small_set_is_not_trained_to_memorisation():
    plan = plan_training(images=32, val_images=8, views=32, batch_size=16, augmented=False)
    assert plan.steps <= MAX_PASSES_UNAUGMENTED * 2 + plan.chunks


def test_explicit_steps_or_epochs_replace_the_rule():
    assert plan_training(images=96, val_images=16, views=96, batch_size=8, epochs=4).steps == 48
    for asked in (80, 100, 610, 1000):  # a count up to half as few chunks divide: run exactly
        plan = plan_training(images=96, val_images=16, views=96, batch_size=8, steps=asked)
        assert plan.steps == asked and plan.chunks * plan.steps_per_chunk == asked
        assert plan.why == "--steps"
    plan = plan_training(images=96, val_images=16, views=96, batch_size=8, steps=97)  # a prime
    assert (plan.steps, plan.chunks) == (99, 3)
    assert plan.why == "--steps 97, rounded up to 3 chunks of 33"
    from edgeseg.device.errors import ConfigError

    with pytest.raises(ConfigError, match="--steps or --epochs, not both"):
        plan_training(images=9, val_images=1, views=9, batch_size=8, steps=5, epochs=1)


def test_train_prints_the_plan_before_training(tiny_run):
    config = json.loads((tiny_run / "config.json").read_text())
    card = json.loads((tiny_run / "model.keras.json").read_text())
    assert config["epochs"] == 4 and card["recipe"]["plan"]["why"] == "--epochs"
    assert card["recipe"]["plan"]["steps"] == 4 * (96 // 8)


# --- BatchNorm --------------------------------------------------------------------------------

def test_recalibration_sets_the_moving_statistics_to_the_population_mean(tf):
    from edgeseg._keras import keras
    from edgeseg.batchnorm import recalibrate
    from edgeseg.models import create_model

    model = create_model("mobile_unet", input_size=32, channels=1, alpha=0.25)
    rng = np.random.default_rng(0)
    batches = [(rng.random((4, 32, 32, 1)).astype("float32") * 3 + 1, None) for _ in range(5)]
    assert recalibrate(model, batches) == 5
    stem = keras.Model(model.input, model.get_layer("stem_conv").output)
    want = np.mean([stem(x).numpy().mean(axis=(0, 1, 2)) for x, _ in batches], axis=0)
    np.testing.assert_allclose(model.get_layer("stem_bn").moving_mean.numpy(), want, atol=1e-5)
    assert model.get_layer("stem_bn").momentum == 0.9  # put back


@pytest.mark.slow  # over 10 s on 2 cores: the quick suite stays well under 15 min
def test_recalibration_rescues_a_model_whose_averages_lag_behind(tf):
    """A short run with Keras' default momentum (0.99) predicts nothing in inference mode until
    the moving statistics are recomputed."""
    from edgeseg._keras import keras
    from edgeseg.batchnorm import recalibrate
    from edgeseg.device import metrics
    from edgeseg.device.data.datasets import builtin
    from edgeseg.keras_files import keras_predictor
    from edgeseg.losses import segmentation_loss
    from edgeseg.models import create_model
    from edgeseg.tfdata import make_dataset

    keras.utils.set_random_seed(1)
    data = builtin("synthetic-nuclei", 64, 64, 0)
    val = builtin("synthetic-nuclei", 16, 64, 0, start=10_000)
    model = create_model("mobile_unet", input_size=64, channels=1, alpha=0.5, bn_momentum=0.99)
    model.compile(keras.optimizers.Adam(1e-2), segmentation_loss("dice+ce"))
    batches = make_dataset(data, 64, 16, training=True, seed=0, repeat=True)
    model.fit(batches, epochs=1, steps_per_epoch=60, verbose=0)
    images, masks = val.arrays(64)
    def dice():  # the validation arrays, already cut to the input, in inference mode
        return metrics.scores(metrics.labels_from_probs(keras_predictor(model)(images)), masks,
                              1)["dice"]

    before = dice()
    recalibrate(model, batches)
    after = dice()
    assert before < 0.5 and after > 0.75, (before, after)


# --- the guard --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def noise_folder(tmp_path_factory):
    """Nuclei images whose masks are random noise: there is nothing to learn."""
    from edgeseg.device.data.writer import write_synthetic

    folder = write_synthetic("synthetic-nuclei", tmp_path_factory.mktemp("noise") / "noise",
                             count=20, size=64, seed=0)
    rng = np.random.default_rng(0)
    for mask in sorted((folder / "masks").iterdir()):
        Image.fromarray((rng.random((64, 64)) < 0.5).astype(np.uint8)).save(mask)
    return folder


@pytest.mark.slow  # over 20 s on 2 cores: the quick suite stays well under 15 min
def test_a_model_that_learned_nothing_fails_with_one_line_and_keeps_its_files(noise_folder,
                                                                              runner, tmp_path):
    out = tmp_path / "noise"
    result = runner.invoke(cli, ["train", "--data", str(noise_folder), "--input-size", "32",
                                 "-o", "alpha=0.25", "--steps", "150", "--out", str(out)])
    assert result.exit_code == 1, result.output
    error = [line for line in _lines(result.output) if line.startswith("Error")]
    assert len(error) == 1 and "the model learned nothing useful" in error[0]
    assert "Traceback" not in result.output
    card = json.loads((out / "model.keras.json").read_text())
    assert card["status"] == "failed" and card["failure"] in error[0]

    kept = runner.invoke(cli, ["train", "--data", str(noise_folder), "--input-size", "32",
                               "-o", "alpha=0.25", "--steps", "50", "--no-check", "--force",
                               "--out", str(out)])
    assert kept.exit_code == 0, kept.output
    assert json.loads((out / "model.keras.json").read_text())["status"] == "failed"


@pytest.mark.slow  # over 20 s on 2 cores: the quick suite stays well under 15 min
def test_run_stops_before_converting_a_model_that_learned_nothing(noise_folder, runner, tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(cli, ["run", "--data", str(noise_folder), "--quick", "--threads", "1",
                                 "--out", str(out)])
    assert result.exit_code == 1, result.output
    assert "stopped before optimizing, converting and benchmarking" in result.output
    assert not (out / "models").exists() and not (out / "optimize").exists()
    again = runner.invoke(cli, ["run", "--data", str(noise_folder), "--quick", "--threads", "1",
                                "--out", str(out)])
    assert again.exit_code == 1 and "learned nothing useful" in again.output


def test_check_learned_names_each_failure():
    from edgeseg.guard import check_learned

    good = {"dice": 0.9, "chance_dice": 0.3, "predicted_classes": [0, 1],
            "pixels_per_class": [80, 20]}
    assert check_learned(good, good) is None
    overfit = dict(good, dice=0.5)
    assert "fits its training images but not the validation" in check_learned(good, overfit)
    chance = dict(good, dice=0.31)
    assert "no better than a prediction that ignores the image" in check_learned(chance, chance)
    blank = dict(good, dice=0.0, predicted_classes=[0])
    assert "predicts only 'background'" in check_learned(good, blank)
    # the other way round is as suspicious: validation 1.0, training 0.0 (nearly empty images)
    assert "far better on its validation images than on its training images" in \
        check_learned(dict(good, dice=0.0), dict(good, dice=1.0))
    assert check_learned(dict(good, dice=0.8), good) is None  # within the gap either way


def test_images_smaller_than_the_coarsest_feature_map_are_refused_before_training(tmp_path,
                                                                                  runner):
    from PIL import Image

    from edgeseg.cli import cli

    for i in range(6):  # 1x1 images: every crop is padding, validation "1.0000"
        (tmp_path / "d" / "images").mkdir(parents=True, exist_ok=True)
        (tmp_path / "d" / "masks").mkdir(exist_ok=True)
        Image.fromarray(np.full((1, 1), 100 + i, np.uint8)).save(tmp_path / "d" / "images" /
                                                                 f"{i}.png")
        Image.fromarray(np.full((1, 1), i % 2, np.uint8)).save(tmp_path / "d" / "masks" /
                                                               f"{i}.png")
    done = runner.invoke(cli, ["train", "--data", str(tmp_path / "d"), "--input-size", "32",
                               "--steps", "2", "--out", str(tmp_path / "out")])
    assert done.exit_code == 2
    assert "1 px on its shorter side; mobile_unet reduces its input 16x, so images need sides " \
           "of at least 16 px" in done.output
    assert not (tmp_path / "out").exists()


def test_budget_caches_are_keyed_on_what_made_them(tmp_path):
    """A model or file left by a run with other parameters is not passed off as this run's."""
    from benchmarks.studies.budget import Candidate, convert_all, train

    lines = []
    candidate = Candidate("tiny", "mobile_unet", {"alpha": 0.25, "depth": 2}, trained=False)
    train(candidate, tmp_path, steps=5, seed=0, echo=lines.append)
    train(candidate, tmp_path, steps=5, seed=0, echo=lines.append)
    assert "reused" in lines[-1]
    train(candidate, tmp_path, steps=5, seed=1, echo=lines.append)
    assert any("other parameters" in line and "seed 0 -> 1" in line for line in lines)
    # the same options, another network (as when a default of the zoo changes): built again
    summary = json.loads((tmp_path / "budget.json").read_text())
    summary["key"]["architecture"] = "a network made by older code"
    (tmp_path / "budget.json").write_text(json.dumps(summary))
    train(candidate, tmp_path, steps=5, seed=1, echo=lines.append)
    assert "architecture" in lines[-2] and "reused" not in lines[-1]
    model = tmp_path / "model.keras"
    convert_all(model, tmp_path, 32, ("fp32.tflite",), trained=False, echo=lines.append)
    first = (tmp_path / "fp32.tflite").stat().st_mtime_ns
    convert_all(model, tmp_path, 32, ("fp32.tflite",), trained=False, echo=lines.append)
    assert "reused" in lines[-1] and (tmp_path / "fp32.tflite").stat().st_mtime_ns == first
    convert_all(model, tmp_path, 64, ("fp32.tflite",), trained=False, echo=lines.append)
    assert "reused" not in lines[-1]
    from edgeseg.device.card import read_card

    assert read_card(tmp_path / "fp32.tflite")["input_size"] == [64, 64]


def test_the_budget_trains_and_converts_for_the_task_it_is_given(tmp_path):
    """--data synthetic-shapes: RGB input and four outputs; the nuclei model of the same candidate
    is not reused for it (the task is part of the key)."""
    from benchmarks.studies.budget import Candidate, convert_all, task, train
    from edgeseg.device.card import read_card
    from edgeseg.keras_files import load_tf_keras

    assert task("synthetic-nuclei") == (1, 1) and task("synthetic-shapes") == (3, 4)
    lines = []
    candidate = Candidate("tiny", "mobile_unet", {"alpha": 0.25, "depth": 2}, trained=False)
    train(candidate, tmp_path, steps=5, seed=0, echo=lines.append)
    train(candidate, tmp_path, steps=5, seed=0, echo=lines.append, data="synthetic-shapes")
    assert "synthetic-nuclei' -> 'synthetic-shapes'" in lines[-2] and "reused" not in lines[-1]
    model = load_tf_keras(tmp_path / "model.keras")
    assert model.input_shape[-1] == 3 and model.output_shape[-1] == 4
    convert_all(tmp_path / "model.keras", tmp_path, 32, ("int8.tflite",), trained=False,
                echo=lines.append, data="synthetic-shapes")
    card = read_card(tmp_path / "int8.tflite")
    assert card["channels"] == 3 and card["num_classes"] == 4
    assert "shapes" in str(card["calibration"])
