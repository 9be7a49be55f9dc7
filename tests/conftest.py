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
