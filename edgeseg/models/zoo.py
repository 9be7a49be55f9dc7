"""The model zoo: ``create_model(name, **options)`` over a plain dict of builders.

    >>> from edgeseg.models import create_model, list_models
    >>> list_models()
    ['deeplabv3plus_mobilenetv2', 'fast_scnn', 'lraspp_mobilenetv3', 'mobile_unet', 'tutorial_unet',
     'unet', 'xception_unet']
    >>> model = create_model("unet", input_size=64, base=16, num_classes=3)
"""

from __future__ import annotations

import inspect

from edgeseg.device.errors import ConfigError

# name -> "module:function"; the modules import TensorFlow, so they are imported on first use.
_BUILDERS = {
    "mobile_unet": "edgeseg.models.unet:mobile_unet",
    "unet": "edgeseg.models.unet:unet",
    "tutorial_unet": "edgeseg.models.peers:tutorial_unet",
    "xception_unet": "edgeseg.models.peers:xception_unet",
    "lraspp_mobilenetv3": "edgeseg.models.field:lraspp_mobilenetv3",
    "fast_scnn": "edgeseg.models.field:fast_scnn",
    "deeplabv3plus_mobilenetv2": "edgeseg.models.field:deeplabv3plus_mobilenetv2",
}


def list_models() -> list[str]:
    """Names ``create_model`` accepts, sorted."""
    return sorted(_BUILDERS)


def get_builder(name: str):
    """The builder function of a zoo model; an unknown name raises a ConfigError listing the valid ones."""
    if name not in _BUILDERS:
        raise ConfigError(f"unknown model {name!r}; valid models: {', '.join(list_models())}")
    module, function = _BUILDERS[name].split(":")
    return getattr(__import__(module, fromlist=[function]), function)


def model_options(name: str) -> dict[str, object]:
    """The options of a zoo model with their defaults (what ``create_model(name, ...)`` accepts)."""
    params = inspect.signature(get_builder(name)).parameters
    return {key: p.default for key, p in params.items()}


def create_model(name: str, **options):
    """Build a zoo model (an uncompiled tf_keras Model with probability outputs).

    Args:
        name: one of :func:`list_models`.
        **options: ``input_size`` (int, (h, w) or None for any size), ``channels``, ``num_classes``
            (1 = binary with a sigmoid, otherwise softmax) and the model's own options
            (see :func:`model_options`).

    Raises:
        ConfigError: unknown name, unknown option, or a value the model cannot take.
    """
    builder = get_builder(name)
    valid = model_options(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ConfigError(f"{name}: unknown option {', '.join(unknown)}; valid options: "
                          f"{', '.join(valid)}")
    check_options(name, options)
    return builder(**options)


# option -> (kind, low, high): the values a zoo model can be built with, checked before building
# (a NaN width or a depth of 99 otherwise fails deep inside Keras, or not at all)
RANGES = {"alpha": (float, 1 / 64, 8.0), "depth": (int, 1, 7), "base_filters": (int, 1, 1024),
          "base": (int, 1, 1024), "bn_momentum": (float, 0.0, 0.999),
          "blocks_per_level": (int, 1, 8), "stem": (int, 1, 8), "stem_filters": (int, 1, 1024),
          "stem_blocks": (int, 0, 8), "decoder_stride": (int, 2, 64),
          "filters": (int, 1, 1024), "head_filters": (int, 1, 1024), "rates": (int, 1, 64),
          "dilation": (int, 1, 64), "channels": (int, 1, 64), "num_classes": (int, 1, 255)}


def check_options(name: str, options: dict) -> None:
    """Refuse an option value out of its range (:data:`RANGES`) in one line."""
    import math

    for key, value in options.items():
        if key not in RANGES or value is None:  # None has each option's own meaning (builder checks)
            continue
        kind, low, high = RANGES[key]
        listed = isinstance(value, (list, tuple)) and key in ("dilation", "rates")
        values = value if listed else (value,)
        for item in values:
            ok = isinstance(item, (int, float)) and not isinstance(item, bool) and \
                math.isfinite(item) and (kind is float or float(item).is_integer()) and \
                low <= item <= high
            if not ok:
                what = "a whole number" if kind is int else "a number"
                raise ConfigError(f"{name}: option {key}={value!r} must be {what} from {low:g} "
                                  f"to {high:g}")
