"""Quantization-aware training with tfmot, for every layer of the zoo, and its collaborative forms.

Three schemes over the same annotation: ``default`` (plain 8-bit QAT), ``prune`` (prune-preserving
QAT: pruned zeros stay zero while the model learns its int8 ranges) and ``cluster`` (cluster- and
sparsity-preserving QAT). What the schemes do not cover is handled here:

- ``MaxUnpool2D`` (the max-unpooling of ``mobile_unet(upsample="maxunpool")``) and ``DepthToSpace``
  (the pixel-shuffle head, ``head="shuffle"``) have no weights; their outputs are quantized like a
  concatenation's, so the int8 graph stays integer through the GREATER_EQUAL / SELECT_V2 and
  DEPTH_TO_SPACE ops they convert to.
- Conv2DTranspose is rejected by tfmot's prune- and cluster-preserving registries. It is quantized
  with the default 8-bit transposed-convolution config instead, its kernel behind a stop-gradient
  (:class:`FrozenWeightsQuantizer`), so its zeros and clusters survive exactly while the rest of
  the model, its bias included, adapts.
- A BatchNorm right after a Conv2DTranspose is not folded by QAT (it would stay a float island in
  the int8 graph); :func:`fold_transpose_batchnorm` folds it into the transposed convolution first.
  ``mobile_unet`` has none (its transposed convolutions carry a bias instead); the peers do.

    >>> qat = quantize_for_training(model, scheme="default")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib

import numpy as np
import tensorflow_model_optimization as tfmot
from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
    default_8bit_quantize_configs as _configs,
)
from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
    default_8bit_quantize_registry as _registry,
)
from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
    default_8bit_quantizers as _quantizers,
)

from edgeseg._keras import keras, layers, tf
from edgeseg.device.errors import ConfigError
from edgeseg.models.blocks import (
    ICNR,
    DepthToSpace,
    HardSigmoid,
    HardSwish,
    MaxUnpool2D,
)
from edgeseg.optimize.selection import producers

SCHEMES = ("default", "prune", "cluster", "prune+cluster")
_quantization = tfmot.quantization.keras


@keras.utils.register_keras_serializable(package="edgeseg")
class FrozenWeightsQuantizer(_quantizers.Default8BitConvTransposeWeightsQuantizer):
    """Conv2DTranspose weight quantizer that passes no gradient: the kernel keeps its values.

    Used where the prune-/cluster-preserving schemes cannot go: with no gradient, the optimizer
    never moves the kernel, so its zeros and its clusters are exactly those it came in with.
    """

    def __call__(self, inputs, training, weights, **kwargs):
        # A zero gradient, not none: Adam leaves the kernel where it is, Keras does not warn.
        frozen = tf.stop_gradient(inputs) + 0.0 * inputs
        return super().__call__(frozen, training, weights, **kwargs)


@keras.utils.register_keras_serializable(package="edgeseg")
class FrozenConvTransposeQuantizeConfig(_registry.Default8BitConvTransposeQuantizeConfig):
    """The default 8-bit Conv2DTranspose config with :class:`FrozenWeightsQuantizer`."""

    def __init__(self, weight_attrs, activation_attrs, quantize_output):
        super().__init__(weight_attrs, activation_attrs, quantize_output)
        self.weight_quantizer = FrozenWeightsQuantizer()


def _scheme(name: str):
    combine = tfmot.experimental.combine
    if name == "default":
        return _quantization.default_8bit.Default8BitQuantizeScheme()
    if name == "prune":
        return combine.Default8BitPrunePreserveQuantizeScheme()
    if name in ("cluster", "prune+cluster"):
        return combine.Default8BitClusterPreserveQuantizeScheme(
            preserve_sparsity=name == "prune+cluster")
    raise ConfigError(f"QAT scheme must be one of {', '.join(SCHEMES)} (got {name!r})")


def custom_objects() -> dict:
    """What a saved QAT model of the zoo needs besides tfmot's own objects."""
    return {"MaxUnpool2D": MaxUnpool2D, "DepthToSpace": DepthToSpace, "ICNR": ICNR,
            "HardSigmoid": HardSigmoid, "HardSwish": HardSwish,
            "Default8BitOutputQuantizeConfig": _configs.Default8BitOutputQuantizeConfig,
            "Default8BitConvTransposeQuantizeConfig":
                _registry.Default8BitConvTransposeQuantizeConfig,
            "FrozenConvTransposeQuantizeConfig": FrozenConvTransposeQuantizeConfig,
            "FrozenWeightsQuantizer": FrozenWeightsQuantizer}


@contextlib.contextmanager
def quantize_scope():
    """tfmot's quantize_scope with the zoo's custom layers and configs: load QAT models in it."""
    with _quantization.quantize_scope(custom_objects()):
        yield


def quantize_names(file_classes) -> set[str]:
    """The class names :func:`quantize_scope` supplies, for a file that is a QAT model (names a
    ``Quantize*`` class among ``file_classes``); none for any other file, whose missing classes
    are the user's to supply whatever their names."""
    if not any(name.split(">")[-1].startswith("Quantize") for name in file_classes):
        return set()
    scope = _quantization.quantize_scope(custom_objects())
    return {name for objects in scope.custom_objects for name in objects}


def _custom(layer) -> bool:
    """A layer class defined outside Keras (a user's ``--custom-objects``)."""
    return type(layer).__module__.split(".")[0] not in ("tf_keras", "keras", "edgeseg",
                                                       "tensorflow_model_optimization")


# layers quantized at their output only (tfmot's registry has no rule for them)
OUTPUT_ONLY = (MaxUnpool2D, DepthToSpace, HardSigmoid, HardSwish, layers.Multiply)


def quantize_for_training(model, scheme: str = "default"):
    """The QAT model of ``model`` (fake-quantized weights and activations), ready to fine-tune.

    Args:
        model: a plain tf_keras model of the zoo (pruned and/or clustered ones stripped first).
        scheme: ``default``, ``prune``, ``cluster`` or ``prune+cluster`` (see the module doc).
    """
    tf_scheme = _scheme(scheme)
    model = fold_transpose_batchnorm(model)
    preserving = scheme != "default"

    def annotate(layer):
        if isinstance(layer, layers.InputLayer):
            return layer
        if isinstance(layer, OUTPUT_ONLY) or _custom(layer):
            # a layer tfmot has no rule for (edgeseg's unpooling, pixel shuffle and hard
            # activations, Keras' Multiply, a user's custom layer): its output is
            # fake-quantized, its own weights (if any) train in float
            return _quantization.quantize_annotate_layer(
                layer, _configs.Default8BitOutputQuantizeConfig())
        if preserving and isinstance(layer, layers.Conv2DTranspose):
            return _quantization.quantize_annotate_layer(
                layer, FrozenConvTransposeQuantizeConfig(["kernel"], ["activation"], False))
        return _quantization.quantize_annotate_layer(layer)

    annotated = keras.models.clone_model(model, clone_function=annotate)
    with quantize_scope():
        return _quantization.quantize_apply(annotated, tf_scheme)


def fold_transpose_batchnorm(model):
    """Fold every BatchNorm that directly follows a Conv2DTranspose into its kernel and bias.

    Returns ``model`` itself when there is none. BN(x) = gamma (x - mean) / sqrt(var + eps) + beta
    is affine per output channel, so it becomes kernel * scale and (bias - mean) * scale + beta.
    """
    by_name = {layer.name: layer for layer in model.layers}
    config = model.get_config()
    sources_of = producers(config)
    pairs = {}
    for entry in config["layers"]:
        if entry["class_name"] != "BatchNormalization":
            continue
        sources = sources_of[entry["name"]]
        if len(sources) == 1 and entry["config"].get("axis") in (-1, [-1], [3], 3) and \
                isinstance(by_name[sources[0]], layers.Conv2DTranspose) and \
                _consumers(config, sources[0]) == [entry["name"]]:
            pairs[entry["name"]] = sources[0]
    if not pairs:
        return model

    folded = {}
    for bn_name, conv_name in pairs.items():
        bn, conv = by_name[bn_name], by_name[conv_name]
        gamma = bn.gamma.numpy() if bn.scale else 1.0
        beta = bn.beta.numpy() if bn.center else 0.0
        scale = gamma / np.sqrt(bn.moving_variance.numpy() + bn.epsilon)
        kernel = conv.kernel.numpy() * scale[None, None, :, None]  # (kh, kw, out, in)
        bias = conv.bias.numpy() if conv.use_bias else 0.0
        folded[conv_name] = [kernel, (bias - bn.moving_mean.numpy()) * scale + beta]

    for entry in config["layers"]:
        if entry["name"] in folded:
            entry["config"]["use_bias"] = True
    config["layers"] = [_rewire(entry, pairs) for entry in config["layers"]
                        if entry["name"] not in pairs]
    config["output_layers"] = [[pairs.get(name, name), *rest]
                               for name, *rest in config["output_layers"]]
    rebuilt = model.__class__.from_config(config, custom_objects=custom_objects())
    for layer in rebuilt.layers:
        if layer.name in folded:
            layer.set_weights(folded[layer.name])
        elif layer.weights:
            layer.set_weights(by_name[layer.name].get_weights())
    return rebuilt


def _consumers(config, name: str) -> list[str]:
    return [layer for layer, sources in producers(config).items() if name in sources]


def _rewire(entry, renamed: dict[str, str]):
    """Point an entry's inputs that came from a removed BatchNorm at the layer before it."""
    entry = dict(entry)
    entry["inbound_nodes"] = [[[renamed.get(item[0], item[0]), *item[1:]] for item in node]
                              for node in entry.get("inbound_nodes", [])]
    return entry


__all__ = ["SCHEMES", "custom_objects", "fold_transpose_batchnorm", "quantize_for_training",
           "quantize_scope"]
