"""Saving and loading Keras models: atomic writes, safe-mode loads, one clear error."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from edgeseg._keras import keras
from edgeseg.errors import EdgesegError
from edgeseg.losses import DiceMetric  # noqa: F401  (registers the custom objects)
from edgeseg.models import blocks  # noqa: F401


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


def load_model(path, *, unsafe: bool = False, custom_objects: dict | None = None):
    """Load a tf-keras model (edgeseg's own, quantization-aware ones included, or a user's).

    Safe mode: a model that carries code (a Lambda layer) is refused unless ``unsafe``.
    ``custom_objects``: the user's classes (``--custom-objects``; see
    :mod:`edgeseg.keras_models`, which loads models of every Keras flavour).
    """
    from edgeseg.keras_models import carries_code, code_refused, custom_objects as given, \
        load_error
    from edgeseg.optimize.quantize import quantize_names, quantize_scope

    path = Path(path)
    if not path.exists():
        raise EdgesegError(f"{path}: no such model file")
    if not unsafe and carries_code(path):
        # Keras' safe_mode covers the .keras format only; a legacy .h5 would run the code
        raise code_refused(path)
    users = custom_objects or given() or {}
    try:  # the user's objects in the inner scope: theirs win over a zoo class of the same name
        with quantize_scope(), keras.utils.custom_object_scope(users):
            return keras.models.load_model(str(path), compile=False, safe_mode=not unsafe,
                                           custom_objects=users or None)
    except (ValueError, TypeError) as error:
        raise load_error(path, error, keras, "tf-keras", known_scope=quantize_names) from None
    except (OSError, KeyError) as error:
        raise EdgesegError(f"{path}: not a Keras model file ({type(error).__name__})") from None


def is_quantization_aware(model) -> bool:
    """True for a tfmot QAT model (its layers wrapped with fake-quantization)."""
    return any(type(layer).__name__.startswith("Quantize") for layer in model.layers)
