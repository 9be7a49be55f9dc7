"""edgeseg: semantic-segmentation models from training to the device, with the numbers.

The flat API is loaded lazily: ``import edgeseg`` imports neither TensorFlow nor any runtime;
``edgeseg.create_model`` imports TensorFlow on first use.

    >>> import edgeseg
    >>> model = edgeseg.create_model("mobile_unet", input_size=256, alpha=0.5)  # doctest: +SKIP
    >>> edgeseg.keras_cost(model).macs  # doctest: +SKIP
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    "create_model": "edgeseg.models",
    "list_models": "edgeseg.models",
    "model_options": "edgeseg.models",
    "keras_cost": "edgeseg.device.flops",
    "ModelCost": "edgeseg.device.flops",
    "EdgesegError": "edgeseg.device.errors",
    "ConfigError": "edgeseg.device.errors",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'edgeseg' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
