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
    from edgeseg.keras_models import custom_objects as given, load_error
    from edgeseg.optimize.quantize import quantize_scope

    path = Path(path)
    if not path.exists():
        raise EdgesegError(f"{path}: no such model file")
    if path.suffix == ".h5" and not unsafe and _h5_carries_code(path):
        # Keras' safe_mode covers the .keras format only; a legacy .h5 would run the code
        raise EdgesegError(f"{path}: the model carries Python code (a Lambda layer) that loading "
                           f"would run; pass --unsafe only if you trust where it came from")
    try:
        with quantize_scope():
            return keras.models.load_model(str(path), compile=False, safe_mode=not unsafe,
                                           custom_objects=custom_objects or given() or None)
    except (ValueError, TypeError) as error:
        raise load_error(path, error, keras, "tf-keras") from None
    except (OSError, KeyError) as error:
        raise EdgesegError(f"{path}: not a Keras model file ({type(error).__name__})") from None


def _h5_carries_code(path: Path) -> bool:
    """True when a legacy .h5 model's config holds a Lambda layer (or any serialised function)."""
    import json

    import h5py

    try:
        with h5py.File(path, "r") as handle:
            config = handle.attrs.get("model_config")
    except OSError:
        return False  # not HDF5: Keras' own loader gives the clear error
    if config is None:
        return False
    if isinstance(config, bytes):
        config = config.decode("utf-8", "replace")
    try:
        tree = json.loads(config)
    except ValueError:
        return False

    def walk(node) -> bool:
        if isinstance(node, dict):
            if node.get("class_name") == "Lambda" or node.get("function_type") == "lambda":
                return True
            return any(walk(value) for value in node.values())
        if isinstance(node, list):
            return any(walk(value) for value in node)
        return False

    return walk(tree)


def is_quantization_aware(model) -> bool:
    """True for a tfmot QAT model (its layers wrapped with fake-quantization)."""
    return any(type(layer).__name__.startswith("Quantize") for layer in model.layers)
