"""Optimization through tfmot: pruning schedules, 2:4, clustering, QAT/PQAT/CQAT on every decoder."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgeseg.cli import cli

# bilinear and nearest build the same layer (UpSampling2D) for tfmot: one of them is enough here
DECODERS = ("bilinear", "transpose", "maxunpool")
SLOW = pytest.mark.slow  # the tests over 10 s on 2 cores, in CI's second step


@pytest.fixture(scope="module")
def tiny_data(tf):
    from edgeseg.config import DataConfig, OptimizeConfig
    from edgeseg.device.data.roles import split

    cfg = OptimizeConfig(data=DataConfig("synthetic-nuclei", input_size=32, n_train=16, n_val=4),
                         steps=6, batch_size=4, lr=1e-3)
    train, _ = split(cfg.data)
    return cfg, train


def _model(upsample="bilinear", **kw):
    from edgeseg.models import create_model

    return create_model("mobile_unet", input_size=32, channels=1, alpha=0.25, upsample=upsample,
                        **kw)


def _finetune(model, tiny_data, callbacks=()):
    from edgeseg.optimize.finetune import finetune, plan_steps

    cfg, train = tiny_data
    epochs, per_epoch = plan_steps(cfg, len(train))
    finetune(model, train, cfg, input_size=32, num_classes=1, epochs=epochs,
             steps_per_epoch=per_epoch, callbacks=callbacks, verbose=0)
    return epochs * per_epoch


def _pruned(tiny_data, upsample="bilinear", **prune_kw):
    from edgeseg.optimize import prune
    from edgeseg.optimize.finetune import plan_steps

    cfg, train = tiny_data
    epochs, per_epoch = plan_steps(cfg, len(train))
    wrapped, plan = prune.apply_pruning(_model(upsample), total_steps=epochs * per_epoch,
                                        **{"sparsity": 0.5, "schedule": "poly", **prune_kw})
    _finetune(wrapped, tiny_data, prune.pruning_callbacks())
    return prune.strip(wrapped), plan


# --- pruning -------------------------------------------------------------------------------------

@pytest.mark.parametrize("schedule", ["poly", pytest.param("constant", marks=SLOW)])
def test_a_short_finetune_reaches_the_target_sparsity(tiny_data, schedule):
    from edgeseg.optimize.report import sparsity_report

    model, plan = _pruned(tiny_data, schedule=schedule)
    assert plan.total_steps == 6 and plan.frequency == 1  # the 6 steps that run: masks every step
    report = sparsity_report(model, set(plan.layers))
    assert report["selected"]["sparsity"] == pytest.approx(0.5, abs=0.01)
    assert all(row["sparsity"] == pytest.approx(0.5, abs=0.02) for row in report["layers"]
               if row["pruned"])


@pytest.mark.slow  # over 10 s on 2 cores: the quick suite stays well under 15 min
def test_tfmot_default_frequency_would_leave_the_same_finetune_unpruned(tiny_data):
    """The trap make_schedule guards against: PolynomialDecay updates masks every 100 steps."""
    import tensorflow_model_optimization as tfmot

    from edgeseg._keras import keras
    from edgeseg.optimize.report import sparsity_report
    from edgeseg.optimize.selection import choose, selected_names

    model = _model()
    chosen = selected_names(choose(model))
    schedule = tfmot.sparsity.keras.PolynomialDecay(0.0, 0.5, begin_step=0, end_step=8)
    wrapped = keras.models.clone_model(model, clone_function=lambda layer: (
        tfmot.sparsity.keras.prune_low_magnitude(layer, pruning_schedule=schedule)
        if layer.name in chosen else layer))
    _finetune(wrapped, tiny_data, [tfmot.sparsity.keras.UpdatePruningStep()])
    report = sparsity_report(tfmot.sparsity.keras.strip_pruning(wrapped), chosen)
    assert report["selected"]["sparsity"] < 0.01


@pytest.mark.slow  # over 10 s on 2 cores: the quick suite stays well under 15 min
def test_sparsity_report_counts_what_tfmot_does_not_prune(tiny_data):
    from edgeseg.optimize.report import format_sparsity, sparsity_report

    model, plan = _pruned(tiny_data)
    report = sparsity_report(model, set(plan.layers))
    reasons = {row["layer"]: row["reason"] for row in report["layers"]}
    assert reasons["enc1_b0_dw"] == "tfmot does not prune or cluster depthwise kernels"
    assert reasons["stem_conv"] == "first layer: kept dense"
    assert reasons["head_logits"] == "classifier: kept dense"
    assert reasons["enc1_b0_pw_conv"] == "pruned"
    # depthwise kernels, the dense ends, biases and BatchNorm dilute the model-wide figure
    assert report["all"]["sparsity"] < report["kernels"]["sparsity"] < report["selected"]["sparsity"]
    table = format_sparsity(report)
    assert "enc1_b0_dw" in table and table.splitlines()[-3].startswith("pruned kernels")


@pytest.mark.parametrize("upsample", ["bilinear", pytest.param("transpose", marks=SLOW)])
def test_two_of_four_holds_in_every_pruned_kernel(tiny_data, upsample):
    from edgeseg.optimize.prune import satisfies_m_by_n
    from edgeseg.optimize.selection import KERNELS, find_layer

    model, plan = _pruned(tiny_data, upsample=upsample, sparsity=None, structured="2:4")
    assert plan.layers and plan.sparsity == 0.5
    for name in plan.layers:
        layer = find_layer(model, name)
        kernel = getattr(layer, KERNELS[type(layer).__name__]).numpy()
        assert satisfies_m_by_n(kernel, 2, 4), name
        assert (kernel == 0).mean() == pytest.approx(0.5, abs=0.01), name


def test_m_by_n_check_by_hand():
    from edgeseg.optimize.prune import satisfies_m_by_n

    kernel = np.ones((1, 1, 8, 2))  # (kh, kw, in, out): blocks run along the 8 inputs
    kernel[0, 0, [0, 1, 6, 7], :] = 0
    assert satisfies_m_by_n(kernel)
    kernel[0, 0, 1, 1] = 3.0  # the first block of output 1 now has a single zero
    assert not satisfies_m_by_n(kernel)
    assert satisfies_m_by_n(np.zeros((6, 3)))  # a partial block is padded with zeros


@pytest.mark.parametrize("kwargs, message", [
    ({"sparsity": 0.75, "structured": "2:4"}, "is 50% sparsity by definition"),
    ({"sparsity": 0.5, "structured": "2-4"}, "--structured must look like 2:4"),
    ({"sparsity": 1.5}, "--prune must be between 0 and 1"),
    ({"sparsity": 0.5, "schedule": "cubic"}, "--schedule must be one of poly, constant"),
    ({"sparsity": None}, "pruning needs a target sparsity"),
])
def test_bad_pruning_options(kwargs, message):
    from edgeseg.device.errors import ConfigError
    from edgeseg.optimize.prune import apply_pruning

    with pytest.raises(ConfigError, match=message):
        apply_pruning(_model(), total_steps=10, **{"schedule": "poly", **kwargs})


# --- clustering ----------------------------------------------------------------------------------

def test_every_clustered_kernel_has_at_most_k_values(tiny_data):
    from edgeseg.optimize import cluster
    from edgeseg.optimize.report import cluster_report

    wrapped, chosen = cluster.apply_clustering(_model("transpose"), clusters=8)
    _finetune(wrapped, tiny_data)
    report = cluster_report(cluster.strip(wrapped), set(chosen))
    assert len(report["layers"]) == len(chosen) > 0
    assert all(2 <= row["unique"] <= 8 for row in report["layers"])


@pytest.mark.slow  # over 20 s on 2 cores: the quick suite stays well under 15 min
def test_clustering_a_pruned_model_keeps_its_zeros(tiny_data):
    from edgeseg.optimize import cluster
    from edgeseg.optimize.report import sparsity_report

    pruned, plan = _pruned(tiny_data)
    wrapped, _ = cluster.apply_clustering(pruned, clusters=8, preserve_sparsity=True)
    _finetune(wrapped, tiny_data)
    report = sparsity_report(cluster.strip(wrapped), set(plan.layers))
    assert report["selected"]["sparsity"] >= 0.5 - 0.01


# --- quantization-aware training -----------------------------------------------------------------

def _layer_kinds(model):
    return {type(layer).__name__ for layer in model.layers}


@pytest.mark.parametrize("upsample", [pytest.param(d, marks=SLOW)
                                      for d in (*DECODERS, "shuffle-head")])
def test_qat_wraps_trains_and_reloads_every_decoder(tiny_data, upsample, tmp_path):
    from edgeseg.keras_files import load_tf_keras as load_model
    from edgeseg.models.saving import is_quantization_aware, save_model
    from edgeseg.optimize.quantize import quantize_for_training

    model = _model(head="shuffle") if upsample == "shuffle-head" else _model(upsample)
    qat = quantize_for_training(model, "default")
    assert is_quantization_aware(qat) and "QuantizeLayer" in _layer_kinds(qat)
    _finetune(qat, tiny_data)
    image = np.random.rand(1, 32, 32, 1).astype("float32")
    out = qat(image, training=False).numpy()
    assert out.shape == (1, 32, 32, 1) and np.isfinite(out).all()
    # QAT models are saved as .h5 (see optimize), whose loader must find the zoo's own objects
    # (the shuffle head's initializer once was not, reported as tfmot's QuantizeLayer)
    loaded = load_model(save_model(qat, tmp_path / "qat.h5"))
    np.testing.assert_allclose(loaded(image, training=False).numpy(), out, atol=1e-6)


@pytest.mark.parametrize("upsample", [pytest.param(d, marks=SLOW) for d in DECODERS])
def test_prune_preserving_qat_keeps_the_pruned_zeros(tiny_data, upsample):
    from edgeseg.optimize.quantize import quantize_for_training
    from edgeseg.optimize.recipe import _zero_masks, _zeros_kept

    pruned, plan = _pruned(tiny_data, upsample=upsample)
    zeros = _zero_masks(pruned, plan.layers)
    qat = quantize_for_training(pruned, "prune")
    _finetune(qat, tiny_data)
    assert _zeros_kept(zeros, qat) >= 0.99


@pytest.mark.slow  # over 20 s on 2 cores: the quick suite stays well under 15 min
def test_cluster_preserving_qat_keeps_the_clusters(tiny_data):
    from edgeseg.optimize import cluster
    from edgeseg.optimize.quantize import quantize_for_training
    from edgeseg.optimize.report import cluster_report

    wrapped, chosen = cluster.apply_clustering(_model("transpose"), clusters=8)
    _finetune(wrapped, tiny_data)
    qat = quantize_for_training(cluster.strip(wrapped), "cluster")
    _finetune(qat, tiny_data)
    assert cluster_report(qat, set(chosen))["max_unique_per_channel"] <= 8


def test_batchnorm_after_a_transposed_convolution_is_folded_first():
    from edgeseg.models import create_model
    from edgeseg.optimize.quantize import fold_transpose_batchnorm

    model = create_model("tutorial_unet", input_size=32, alpha=0.35)
    rng = np.random.default_rng(0)
    for layer in model.layers:  # statistics far from the initial ones, so a wrong fold shows
        if type(layer).__name__ == "BatchNormalization":
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([gamma * rng.uniform(0.5, 2, gamma.shape), beta + 0.1,
                               mean + rng.normal(0, 0.2, mean.shape), var * 1.5])
    folded = fold_transpose_batchnorm(model)
    assert [l.name for l in folded.layers if l.name.startswith("up") and l.name.endswith("_bn")] == []
    assert len(model.layers) - len(folded.layers) == 4
    x = rng.random((2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(folded(x, training=False), model(x, training=False), atol=1e-5)
    plain = create_model("mobile_unet", input_size=32, upsample="transpose")
    assert fold_transpose_batchnorm(plain) is plain  # mobile_unet has no BN after its transposes


# --- the recipe and `edgeseg optimize` -----------------------------------------------------------

@pytest.mark.slow  # over 20 s on 2 cores: the quick suite stays well under 15 min
def test_optimize_prunes_then_quantizes_and_writes_a_card(tiny_run, runner, tmp_path):
    out = tmp_path / "pqat"
    result = runner.invoke(cli, ["optimize", str(tiny_run / "model.keras"), "--prune", "0.5",
                                 "--qat", "--steps", "12", "--batch-size", "8", "--out", str(out),
                                 "--layers"])
    assert result.exit_code == 0, result.output
    assert "pruned50-qat: validation Dice" in result.output and "enc1_b0_dw" in result.output
    assert not (out / "model.keras").exists()  # QAT models are HDF5: tfmot's layers need it
    card = json.loads((out / "model.h5.json").read_text())
    assert card["variant"] == "pruned50-qat" and card["quantization_aware"] is True
    assert [s["stage"] for s in card["recipe"]["stages"]] == ["prune", "qat"]
    assert card["recipe"]["stages"][1]["scheme"] == "prune"
    assert card["recipe"]["stages"][1]["zeros_kept"] >= 0.99
    assert card["sparsity"]["selected"]["sparsity"] >= 0.49
    assert card["recipe"]["data"]["n_train"] == 96  # the model's own training split
    assert {"val_before", "val"} <= set(card["metrics"])
    assert card["class_names"] == ["background", "nucleus"]

    from edgeseg.keras_files import load_tf_keras as load_model
    from edgeseg.models.saving import is_quantization_aware

    model = load_model(out / "model.h5")
    assert is_quantization_aware(model)
    again = runner.invoke(cli, ["optimize", str(out / "model.h5"), "--prune", "0.5",
                                "--out", str(tmp_path / "again")])
    assert again.exit_code == 2 and "already quantization-aware" in again.output


@pytest.mark.parametrize("args, message", [
    ([], "nothing to do: give --prune, --structured, --cluster and/or --qat"),
    (["--structured", "2:4", "--prune", "0.75"], "is 50% sparsity by definition"),
    (["--prune", "1.5"], "Invalid value for '--prune'"),
    (["--cluster", "1"], "Invalid value for '--cluster'"),
    (["--prune", "0.5", "--data", "synthetic-shapes"],
     "predicts 1 output (binary); synthetic-shapes has 4 classes (background, disc, box, triangle)"),
])
def test_bad_optimize_options_give_one_line(tiny_run, runner, tmp_path, args, message):
    result = runner.invoke(cli, ["optimize", str(tiny_run / "model.keras"), *args, "--steps", "2",
                                 "--out", str(tmp_path / "o")])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "o").exists()


def test_optimize_a_missing_model(runner, tmp_path):
    result = runner.invoke(cli, ["optimize", str(tmp_path / "none.keras"), "--qat",
                                 "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and f"{tmp_path / 'none.keras'}: no such model file" in result.output


@pytest.mark.slow  # over 20 s on 2 cores: the quick suite stays well under 15 min
def test_qat_on_a_model_pruned_earlier_preserves_its_zeros(tiny_run, runner, tmp_path):
    pruned, pqat = tmp_path / "pruned", tmp_path / "pqat"
    for source, args, out in [(tiny_run / "model.keras", ["--prune", "0.5"], pruned),
                              (pruned / "model.keras", ["--qat"], pqat)]:
        result = runner.invoke(cli, ["optimize", str(source), *args, "--steps", "8",
                                     "--batch-size", "8", "--out", str(out)])
        assert result.exit_code == 0, result.output
    card = json.loads((pqat / "model.h5.json").read_text())
    assert card["variant"] == "pruned50-qat"
    assert [s["stage"] for s in card["recipe"]["stages"]] == ["prune", "qat"]
    assert card["recipe"]["stages"][-1]["scheme"] == "prune"
    assert card["recipe"]["stages"][-1]["zeros_kept"] >= 0.99


# --- the field's models (edgeseg/models/field.py) -------------------------------------------------

# LR-ASPP-Large is built from the same blocks as Small (test_models converts both): its QAT graph
# would add about 100 s to CI and no block these do not have
FIELD = [("lraspp_mobilenetv3", {"variant": "small", "alpha": 0.5}),
         ("fast_scnn", {"alpha": 0.5}),
         ("deeplabv3plus_mobilenetv2", {"alpha": 0.35, "filters": 32})]


@pytest.mark.slow  # about 30 s a model on 2 cores: tfmot's QAT graph of a MobileNetV3
@pytest.mark.parametrize("name, options", FIELD, ids=lambda v: v if isinstance(v, str) else
                         "-".join(f"{k}={x}" for k, x in v.items()))
def test_the_field_models_prune_and_train_quantization_aware_like_the_default(
        tiny_data, name, options, tmp_path):
    from edgeseg.keras_files import load_tf_keras as load_model
    from edgeseg.models import create_model
    from edgeseg.models.saving import save_model
    from edgeseg.optimize import prune
    from edgeseg.optimize.finetune import plan_steps
    from edgeseg.optimize.quantize import quantize_for_training
    from edgeseg.optimize.recipe import _zero_masks, _zeros_kept
    from edgeseg.optimize.report import sparsity_report

    cfg, train = tiny_data
    epochs, per_epoch = plan_steps(cfg, len(train))
    model = create_model(name, input_size=32, channels=1, **options)
    wrapped, plan = prune.apply_pruning(model, sparsity=0.5, schedule="constant",
                                        total_steps=epochs * per_epoch)
    assert plan.layers  # its convolutions are chosen (tfmot never prunes the depthwise ones)
    _finetune(wrapped, tiny_data, prune.pruning_callbacks())
    pruned = prune.strip(wrapped)
    report = sparsity_report(pruned, set(plan.layers))
    assert report["selected"]["sparsity"] == pytest.approx(0.5, abs=0.01)

    zeros = _zero_masks(pruned, plan.layers)
    qat = quantize_for_training(pruned, "prune")  # the hard activations and gates included
    _finetune(qat, tiny_data)
    assert _zeros_kept(zeros, qat) >= 0.99
    image = np.random.default_rng(0).random((1, 32, 32, 1), dtype=np.float32)
    out = qat(image, training=False).numpy()
    assert out.shape == (1, 32, 32, 1) and np.isfinite(out).all()
    loaded = load_model(save_model(qat, tmp_path / "qat.h5"))
    np.testing.assert_allclose(loaded(image, training=False).numpy(), out, atol=1e-6)
