"""Which layers an optimisation touches, and why the others are left alone.

tfmot prunes and clusters the kernels of Conv2D, Conv2DTranspose, the pointwise half of
SeparableConv2D and Dense; it never touches DepthwiseConv2D. edgeseg also keeps the first
convolution (on the image: a few hundred weights that every pixel depends on) and the classifier
(one output per class) dense, as is usual practice: they cost little and are the most sensitive.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgeseg._keras import keras

# layer class -> the weight tfmot prunes or clusters in it
KERNELS = {"Conv2D": "kernel", "Conv2DTranspose": "kernel", "SeparableConv2D": "pointwise_kernel",
           "Dense": "kernel"}
# weights tfmot does not prune or cluster, though they are convolution kernels
UNSUPPORTED = {"DepthwiseConv2D": "depthwise_kernel", "SeparableConv2D": "depthwise_kernel"}


@dataclass(frozen=True)
class Choice:
    """One weight tensor and what happens to it."""

    layer: str
    kind: str
    weight: str
    selected: bool
    reason: str  # why it is, or is not, selected


def unwrap(layer):
    """The Keras layer inside a tfmot wrapper (QAT, pruning, clustering), or the layer itself."""
    return layer.layer if isinstance(layer, keras.layers.Wrapper) else layer


def find_layer(model, name: str):
    """A layer by its own name, also when a tfmot wrapper (``quant_<name>``, ...) holds it."""
    for layer in model.layers:
        if layer.name == name or unwrap(layer).name == name:
            return unwrap(layer)
    raise ValueError(f"no layer {name!r} in {model.name}")


def weight_of(model, layer_name: str, attr: str):
    """A layer's weight variable by attribute name (``kernel``, ...), also inside a QAT wrapper.

    A QuantizeWrapper replaces the attribute with its fake-quantized tensor while it builds, so
    the variable is looked up among the layer's weights instead.
    """
    for layer in model.layers:
        if layer_name in (layer.name, unwrap(layer).name):
            for weight in [*layer.weights, *unwrap(layer).weights]:
                if weight.name.split("/")[-1] == f"{attr}:0":
                    return weight
    raise ValueError(f"{layer_name} has no weight {attr!r}")


def producers(config: dict) -> dict[str, list[str]]:
    """Layer name -> names of the layers that feed it, from a functional model's config."""
    graph = {}
    for entry in config["layers"]:
        graph[entry["name"]] = [item[0] for node in entry.get("inbound_nodes", [])
                                for item in node]
    return graph


def _ends(model) -> tuple[set[str], set[str]]:
    """(layers fed by the input directly, kernel layers that reach the output through layers
    without a convolution or dense kernel only: the classifier, even behind a resize, the softmax,
    a BatchNorm or a user's scaling layer)."""
    graph = producers(model.get_config())
    inputs = {layer.name for layer in model.layers if type(layer).__name__ == "InputLayer"}
    first = {name for name, sources in graph.items() if set(sources) & inputs}
    weighted = {layer.name for layer in model.layers
                if type(unwrap(layer)).__name__ in KERNELS or
                type(unwrap(layer)).__name__ in UNSUPPORTED}
    last, todo, seen = set(), list(model.output_names), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        if name in weighted:
            last.add(name)
        else:
            todo.extend(graph.get(name, []))
    return first, last


def choose(model, *, axis_multiple: int | None = None) -> list[Choice]:
    """Every convolution or dense kernel of ``model`` and whether to prune/cluster it.

    Args:
        axis_multiple: for m-by-n sparsity, the pruned axis (the kernel's second-to-last) must
            divide by it; other kernels are left dense.
    """
    first, last = _ends(model)
    choices = []
    for wrapper in model.layers:
        layer = unwrap(wrapper)
        kind = type(layer).__name__
        if kind in UNSUPPORTED:
            choices.append(Choice(layer.name, kind, UNSUPPORTED[kind], False,
                                  "tfmot does not prune or cluster depthwise kernels"))
        if kind not in KERNELS:
            continue
        weight = KERNELS[kind]
        if wrapper.name in first:
            selected, reason = False, "first layer: kept dense"
        elif wrapper.name in last:
            selected, reason = False, "classifier: kept dense"
        elif axis_multiple and getattr(layer, weight).shape[-2] % axis_multiple:
            selected, reason = False, (f"pruned axis of {getattr(layer, weight).shape[-2]} does "
                                       f"not divide by {axis_multiple}")
        else:
            selected, reason = True, "selected"
        choices.append(Choice(layer.name, kind, weight, selected, reason))
    return choices


def selected_names(choices: list[Choice]) -> set[str]:
    return {choice.layer for choice in choices if choice.selected}
