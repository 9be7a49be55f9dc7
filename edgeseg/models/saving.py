"""Saving Keras models atomically (loading them: :mod:`edgeseg.keras_files`)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path


def save_model(model, path) -> Path:
    """Save a Keras model atomically (to a temporary name beside it, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.partial{path.suffix}")
    try:
        with warnings.catch_warnings():  # HDF5 is chosen on purpose for QAT models (see optimize)
            warnings.filterwarnings("ignore", message="You are saving your model as an HDF5 file")
            model.save(str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def is_quantization_aware(model) -> bool:
    """True for a tfmot QAT model (its layers wrapped with fake-quantization)."""
    return any(type(layer).__name__.startswith("Quantize") for layer in model.layers)
