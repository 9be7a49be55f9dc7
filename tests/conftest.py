"""Shared fixtures: a click runner and the TensorFlow side imported once per session."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture
def runner():
    from click.testing import CliRunner

    return CliRunner()


@pytest.fixture(scope="session")
def tf():
    from edgeseg._keras import tf

    return tf


TINY_TRAIN = ["--data", "synthetic-nuclei", "--n-train", "96", "--n-val", "16", "--input-size", "64",
              "--epochs", "4", "--batch-size", "8", "--lr", "0.01", "-o", "alpha=0.25"]


@pytest.fixture(scope="session")
def tiny_train_args():
    return list(TINY_TRAIN)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A tiny mobile_unet trained once per session through `edgeseg train` (a few seconds)."""
    from click.testing import CliRunner

    from edgeseg.cli import cli

    out = tmp_path_factory.mktemp("tiny_run")
    result = CliRunner().invoke(cli, ["train", *TINY_TRAIN, "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="session")
def converted(tiny_run, tmp_path_factory):
    """The tiny trained model converted once in every mode through `edgeseg convert`."""
    from click.testing import CliRunner
    from tests_support import MODES

    from edgeseg.cli import cli

    out = tmp_path_factory.mktemp("converted")
    files = {}
    for to, quant in MODES:
        path = out / f"model_{quant}.{to}"
        result = CliRunner().invoke(cli, ["convert", str(tiny_run / "model.keras"), "--quant", quant,
                                          "--calib-samples", "8", "--verify-samples", "4",
                                          "--out", str(path)])
        assert result.exit_code == 0, (to, quant, result.output)
        files[(to, quant)] = (path, result.output)
    return files


@pytest.fixture(scope="session")
def user_models(tmp_path_factory):
    """Models nobody at edgeseg wrote (Keras 3, tf_keras + a custom layer, hand-built ONNX), built
    once per session in ~15 s: {key: path}, see tests/user_models.py."""
    from user_models import build_user_models

    return build_user_models(tmp_path_factory.mktemp("user-models"))
