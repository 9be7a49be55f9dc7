"""Training: `edgeseg train`/`eval`/`data`, resume, the NaN guard, strategy and precision choice."""

from __future__ import annotations

import csv
import dataclasses
import json

import numpy as np
import pytest

from edgeseg.cli import cli


def _lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.strip()]


def test_train_writes_the_model_its_card_config_and_history(tiny_run):
    for name in ("model.keras", "model.keras.json", "config.json", "history.csv",
                 "checkpoints/last.weights.h5"):
        assert (tiny_run / name).exists(), name
    assert not (tiny_run / "backup").exists()  # a finished run leaves nothing to resume
    card = json.loads((tiny_run / "model.keras.json").read_text())
    assert card["schema"] == "edgeseg.card/1" and card["input_size"] == [64, 64]
    assert card["channels"] == 1 and card["num_classes"] == 1
    assert card["class_names"] == ["background", "nucleus"]
    assert card["macs"] > 0 and card["params"] > 0
    assert card["recipe"]["model"] == {"name": "mobile_unet", "options": {"alpha": 0.25}}
    assert card["recipe"]["strategy"] == "default" and card["recipe"]["precision"] == "float32"
    with (tiny_run / "history.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["epoch"]) for row in rows] == [0, 1, 2, 3]


def test_trained_model_segments_in_inference_mode(tiny_run):
    """A few seconds of training already beat a global threshold's best on these images."""
    card = json.loads((tiny_run / "model.keras.json").read_text())
    assert card["metrics"]["val"]["dice"] >= 0.8


def test_eval_prints_per_class_scores_that_match_the_card(tiny_run, runner, tmp_path):
    out = tmp_path / "scores.json"
    result = runner.invoke(cli, ["eval", str(tiny_run / "model.keras"), "--n", "16",
                                 "--json", str(out)])
    assert result.exit_code == 0, result.output
    lines = _lines(result.output)
    assert "test samples" in lines[0] and ": 16 images (64x64), pixel / type maximum" in lines[0]
    assert lines[2].split()[0] == "background" and lines[3].split()[0] == "nucleus"
    scores = json.loads(out.read_text())
    card = json.loads((tiny_run / "model.keras.json").read_text())
    # the test range is not the validation range training picked its weights on: close to the
    # card's validation Dice (the same distribution), not equal to it
    assert scores["dice"] != card["metrics"]["val"]["dice"]
    assert abs(scores["dice"] - card["metrics"]["val"]["dice"]) < 0.1
    assert f"{scores['dice']:.4f}" in lines[-2]
    low, high = scores["dice_interval"]
    assert low <= scores["dice"] <= high and lines[-1].endswith(f"{low:.4f} - {high:.4f}")


def test_eval_on_a_folder_written_by_data_synth(tiny_run, runner, tmp_path):
    folder = tmp_path / "nuclei"
    result = runner.invoke(cli, ["data", "synth", "--n", "4", "--size", "96", "--out", str(folder)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["eval", str(tiny_run / "model.keras"), "--data", str(folder),
                                 "--input-size", "96"])
    assert result.exit_code == 0, result.output
    assert ": 4 images (96x96)" in result.output


def test_train_refuses_to_overwrite_a_run_without_force(tiny_run, tiny_train_args, runner):
    result = runner.invoke(cli, ["train", *tiny_train_args, "--out", str(tiny_run)])
    assert result.exit_code == 2
    assert _lines(result.output) == [f"Error: {tiny_run}: holds a trained model.keras; pass "
                                     f"--force to train again over it, or give another --out"]
    # a finished run has nothing to resume: the hint says only what works
    result = runner.invoke(cli, ["train", *tiny_train_args, "--out", str(tiny_run), "--resume"])
    assert result.exit_code == 2 and "no interrupted run to resume" in result.output


class _Interrupt(Exception):
    pass


class _InterruptAfter:
    """A Keras callback that stops the process-like run after an epoch has been backed up."""

    def __new__(cls, epoch):
        from edgeseg._keras import keras

        class Callback(keras.callbacks.Callback):
            def on_epoch_end(self, done, logs=None):
                if done == epoch:
                    raise _Interrupt()

        return Callback()


def _tiny_cfg(**changes):
    from edgeseg.config import DataConfig, ModelConfig, TrainConfig

    data = DataConfig("synthetic-nuclei", input_size=32, n_train=16, n_val=4)
    settings = {"epochs": 3, "batch_size": 8, **changes}
    return TrainConfig(data=data, model=ModelConfig("mobile_unet", {"alpha": 0.25}), **settings)


@pytest.mark.slow  # over 20 s on 2 cores: the quick suite stays well under 15 min
def test_resume_continues_an_interrupted_run_from_its_last_epoch(tmp_path):
    from edgeseg.train import TrainingError, fit

    with pytest.raises(_Interrupt):
        fit(_tiny_cfg(), tmp_path, verbose=0, callbacks=[_InterruptAfter(1)], check=False)
    assert any((tmp_path / "backup").iterdir())
    with pytest.raises(TrainingError, match="holds an interrupted run; pass --resume"):
        fit(_tiny_cfg(), tmp_path, verbose=0)
    from click.testing import CliRunner

    from edgeseg.cli import cli

    changed = CliRunner().invoke(cli, ["train", "--out", str(tmp_path), "--resume", "-o",
                                       "alpha=0.5", "--epochs", "3", "--input-size", "48"])
    assert changed.exit_code == 2, changed.output
    assert ("these options differ from its config.json: input_size 32 -> 48, alpha 0.25 -> 0.5 "
            "(leave them out") in " ".join(changed.output.split())
    assert "epochs" not in changed.output  # given again as it was: not a difference
    result = fit(_tiny_cfg(epochs=99), tmp_path, resume=True, verbose=0, check=False)  # saved config wins
    with (tmp_path / "history.csv").open() as handle:
        epochs = [int(row["epoch"]) for row in csv.DictReader(handle)]
    assert epochs == [0, 1, 2]  # epochs 0-1 before the interrupt, only epoch 2 after it
    assert result.epochs == 1 and result.model_path.exists()
    with pytest.raises(TrainingError, match="no interrupted run to resume"):
        fit(_tiny_cfg(), tmp_path, resume=True, verbose=0)


@pytest.mark.slow  # over 10 s on 2 cores: the quick suite stays well under 15 min
def test_resuming_a_run_whose_network_changed_since_is_one_line(tmp_path):
    """A run interrupted before a default of the zoo changed: its saved options now build another
    network, whose variables the checkpoint does not fit (it once ended in a traceback)."""
    from edgeseg.config import ModelConfig, load_config, save_config
    from edgeseg.train import TrainingError, fit

    made = dataclasses.replace(_tiny_cfg(), model=ModelConfig("mobile_unet", {
        "alpha": 0.25, "stem_blocks": None}))
    with pytest.raises(_Interrupt):
        fit(made, tmp_path, verbose=0, callbacks=[_InterruptAfter(1)], check=False)
    saved = load_config(type(made), tmp_path / "config.json")  # as a run started before the
    # default changed saved it: without the option, which meant what the default meant then
    save_config(dataclasses.replace(saved, model=ModelConfig("mobile_unet", {"alpha": 0.25})),
                tmp_path / "config.json")
    with pytest.raises(TrainingError, match=r"checkpoint does not fit the mobile_unet that its "
                                            r"options \(alpha=0.25\) build now.*--force"):
        fit(made, tmp_path, resume=True, verbose=0, check=False)
    assert any((tmp_path / "backup").iterdir())  # the checkpoint is left as it was


@pytest.mark.slow  # over 10 s on 2 cores: the quick suite stays well under 15 min
def test_a_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path):
    from edgeseg._keras import keras
    from edgeseg.train import TrainingError, fit

    class Poison(keras.callbacks.Callback):
        """Epoch 2 starts from weights with a NaN in them, as a diverged update would leave."""

        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                kernel = self.model.get_layer("stem_conv").kernel
                kernel.assign(kernel * np.nan)

    with pytest.raises(TrainingError, match=r"loss became NaN/inf at epoch 2, batch 1; the last "
                                            r"good checkpoint is kept at .*last\.weights\.h5"):
        fit(_tiny_cfg(), tmp_path, verbose=0, callbacks=[Poison()])
    from edgeseg.models import create_model

    model = create_model("mobile_unet", input_size=32, channels=1, alpha=0.25)
    model.load_weights(str(tmp_path / "checkpoints" / "last.weights.h5"))
    assert all(np.isfinite(w).all() for w in model.get_weights())
    assert not (tmp_path / "model.keras").exists()


@pytest.mark.parametrize("gpus, tf_config, want", [
    ([], None, "default"),
    (["/gpu:0"], None, "one_device"),
    (["/gpu:0", "/gpu:1"], None, "mirrored"),
    ([], '{"cluster": {"worker": ["localhost:1", "localhost:2"]}, "task": {"type": "worker", '
         '"index": 0}}', "multi_worker"),
    (["/gpu:0", "/gpu:1"], '{"cluster": {"worker": ["localhost:1"]}}', "mirrored"),
])
def test_strategy_is_chosen_from_the_visible_devices(gpus, tf_config, want):
    from edgeseg.train import choose_strategy

    assert choose_strategy(gpus, tf_config) == want


def test_a_malformed_tf_config_is_one_clear_error():
    from edgeseg.train import TrainingError, choose_strategy

    with pytest.raises(TrainingError, match="TF_CONFIG is not valid JSON"):
        choose_strategy([], "{cluster")


def test_the_default_strategy_on_this_cpu(tf):
    from edgeseg.train import choose_strategy, make_strategy

    gpus = tf.config.list_physical_devices("GPU")
    strategy = make_strategy(choose_strategy([d.name for d in gpus], None))
    assert strategy.num_replicas_in_sync == max(1, len(gpus))


@pytest.mark.parametrize("asked, gpu, want", [
    (None, False, "float32"), (None, True, "mixed_float16"), (True, True, "mixed_float16"),
    (True, False, "mixed_bfloat16"), (False, True, "float32"),
])
def test_precision_policy(asked, gpu, want):
    from edgeseg.train import precision_policy

    assert precision_policy(asked, gpu) == want


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("upsample", ["bilinear", "transpose", "maxunpool"])
def test_mixed_precision_computes_in_half_and_outputs_float32(policy, upsample):
    from edgeseg._keras import keras
    from edgeseg.models import create_model

    keras.mixed_precision.set_global_policy(policy)
    try:
        model = create_model("mobile_unet", input_size=32, alpha=0.25, upsample=upsample)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    half = policy.split("_")[1]
    assert model.get_layer("stem_conv").compute_dtype == half
    assert model.get_layer("stem_conv").dtype == "float32"  # variables stay float32
    probs = model(np.random.rand(1, 32, 32, 3).astype("float32"), training=False)
    assert probs.dtype.name == "float32" and model.layers[-1].compute_dtype == "float32"


@pytest.mark.slow  # over 10 s on 2 cores: the quick suite stays well under 15 min
def test_mixed_precision_training_step_runs_on_cpu(tmp_path):
    from edgeseg.train import fit

    result = fit(_tiny_cfg(epochs=1, mixed_precision=True), tmp_path, verbose=0, check=False)
    card = json.loads((tmp_path / "model.keras.json").read_text())
    assert card["recipe"]["precision"] == "mixed_bfloat16" and np.isfinite(result.dice)


# --- bad input: one line naming the file or option, exit 2, nothing written ----------------------

def _write_folder(root, *, mask_shape=(24, 32), mask_value=0, with_mask=True, corrupt=False):
    from PIL import Image

    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for stem in ("a", "b"):
        Image.fromarray(np.zeros((24, 32, 3), np.uint8)).save(root / "images" / f"{stem}.png")
        if with_mask or stem == "a":
            mask = np.full(mask_shape if stem == "b" else (24, 32), 0, np.uint8)
            mask[0, 0] = mask_value if stem == "b" else 0
            Image.fromarray(mask).save(root / "masks" / f"{stem}.png")
    if corrupt:
        (root / "images" / "b.png").write_bytes(b"not a png at all")
    return root


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "missing", "{p}/missing: no such folder"),
    (lambda p: (p / "empty").mkdir() or p / "empty", "{p}/empty: no known dataset layout"),
    (lambda p: _write_folder(p / "d", with_mask=False),
     "{p}/d/images/b.png: no mask for this image"),
    (lambda p: _write_folder(p / "d", mask_shape=(20, 32)),
     "{p}/d/masks/b.png: mask is 20x32, its image {p}/d/images/b.png is 24x32"),
    (lambda p: _write_folder(p / "d", mask_value=5),
     "{p}/d/masks/b.png: class id 5 >= num_classes 2 (255 is unlabeled)"),
    (lambda p: _write_folder(p / "d", corrupt=True), "{p}/d/images/b.png: cannot read image"),
], ids=["missing", "empty", "no-mask", "mask-size", "class-id", "corrupt"])
def test_bad_data_gives_one_line_exit_2_and_writes_nothing(runner, tmp_path, make, message):
    data = make(tmp_path)
    out = tmp_path / "out"
    result = runner.invoke(cli, ["train", "--data", str(data), "--num-classes", "2",
                                 "--out", str(out)])
    assert result.exit_code == 2, result.output
    lines = _lines(result.output)
    assert len(lines) == 1 and lines[0].startswith("Error: " + message.format(p=tmp_path)), lines
    assert not out.exists()


@pytest.mark.parametrize("args, message", [
    (["train", "--out", "{p}/o", "--model", "resnet"], "unknown model 'resnet'; valid models:"),
    (["train", "--out", "{p}/o", "-o", "upsample=cubic"], "upsample must be one of"),
    (["train", "--out", "{p}/o", "--lr", "-1"], "--lr must be a positive number (got -1.0)"),
    (["train", "--out", "{p}/o", "--input-size", "100"], "does not divide by 16"),
    (["train", "--out", "{p}/o", "--resume"], "{p}/o: no interrupted run to resume"),
    (["eval", "{p}/nope.keras"], "{p}/nope.keras: no such model file"),
    (["data", "synth", "--n", "0", "--out", "{p}/o"], "Invalid value for '--n'"),
])
def test_bad_options_give_one_line_and_exit_2(runner, tmp_path, args, message):
    result = runner.invoke(cli, [a.format(p=tmp_path) for a in args])
    assert result.exit_code == 2, result.output
    assert message.format(p=tmp_path) in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "o").exists()


def test_eval_refuses_a_file_that_is_not_a_model(runner, tmp_path):
    bogus = tmp_path / "model.keras"
    bogus.write_bytes(b"\x89PNG\r\n\x1a\n....")
    result = runner.invoke(cli, ["eval", str(bogus)])
    assert result.exit_code == 2
    assert _lines(result.output)[0].startswith(f"Error: {bogus}: ")


def test_eval_refuses_data_with_classes_the_model_cannot_predict(tiny_run, runner):
    result = runner.invoke(cli, ["eval", str(tiny_run / "model.keras"), "--data", "synthetic-shapes",
                                 "--n", "2"])
    assert result.exit_code == 2
    assert _lines(result.output) == [
        f"Error: {tiny_run / 'model.keras'} predicts 1 output (binary); synthetic-shapes has 4 "
        f"classes (background, disc, box, triangle)"]


@pytest.mark.slow  # over 20 s on 2 cores: the quick suite stays well under 15 min
def test_a_deterministic_cpu_run_is_repeatable(tmp_path, tiny_train_args):
    """Two `edgeseg train --deterministic` runs with one seed give bit-identical weights."""
    from click.testing import CliRunner

    from edgeseg.cli import cli
    from edgeseg.keras_files import load_tf_keras as load_model

    weights = []
    for name in ("a", "b"):
        args = [a for a in tiny_train_args]
        args[args.index("--epochs") + 1] = "2"
        result = CliRunner().invoke(cli, ["train", *args, "--deterministic", "--out",
                                          str(tmp_path / name)])
        assert result.exit_code == 0, result.output
        weights.append(load_model(tmp_path / name / "model.keras").get_weights())
    assert len(weights[0]) == len(weights[1])
    for first, second in zip(*weights):
        assert first.tobytes() == second.tobytes()
