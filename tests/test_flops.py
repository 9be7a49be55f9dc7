"""MAC counting: the analytic count agrees with TensorFlow's own profiler, layer by layer."""

from __future__ import annotations

import collections

import pytest

from edgeseg.device.flops import keras_cost
from edgeseg.models import create_model

CONV_LAYERS = {"Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Conv2DTranspose"}
CONV_OPS = {"Conv2D", "DepthwiseConv2dNative", "Conv2DBackpropInput"}
SIZE = 64


def profiler_conv_flops(model, tf) -> dict[str, int]:
    """FLOPs of each layer's convolution ops in the frozen graph, from TensorFlow's flops registry."""
    from tensorflow.python.framework import ops as tf_ops
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    spec = tf.TensorSpec((1, *model.input_shape[1:]), tf.float32)
    function = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
    graph = convert_variables_to_constants_v2(function).graph
    flops: dict[str, int] = collections.Counter()
    for op in graph.get_operations():
        if op.type in CONV_OPS:  # node names are "<model>/<layer>/<op>"
            stats = tf_ops.get_stats_for_node_def(graph, op.node_def, "flops")
            flops[op.name.split("/")[1]] += int(stats.value)
    return flops


@pytest.mark.parametrize("name, options", [
    ("mobile_unet", {}),
    ("mobile_unet", {"block": "ir", "upsample": "transpose", "dilation": (2, 4)}),
    ("mobile_unet", {"upsample": "maxunpool", "alpha": 0.5}),
    ("unet", {"base": 16}),
    ("tutorial_unet", {}),
    ("xception_unet", {}),
    ("lraspp_mobilenetv3", {"variant": "small"}),
    ("lraspp_mobilenetv3", {"variant": "large"}),
    ("fast_scnn", {}),
    # rates that divide its 4x4 map: TensorFlow pads for a dilated convolution (space-to-batch)
    # and the profiler counts the padding's MACs too
    ("deeplabv3plus_mobilenetv2", {"alpha": 0.5, "rates": (2, 4)}),
])
def test_macs_agree_with_tensorflow_profiler_per_layer(name, options, tf):
    model = create_model(name, input_size=SIZE, **options)
    cost = keras_cost(model)
    ours = {layer.name: layer.macs for layer in cost.layers if layer.kind in CONV_LAYERS}
    theirs = profiler_conv_flops(model, tf)
    assert set(ours) == set(theirs)
    for layer, macs in ours.items():
        # the profiler counts a multiply-accumulate as 2 FLOPs
        assert macs == pytest.approx(theirs[layer] / 2, rel=0.02), layer
    assert sum(ours.values()) / cost.macs > 0.9  # the conv layers are what dominates


def test_counts_a_conv_layer_by_hand():
    from edgeseg._keras import keras, layers

    inputs = layers.Input((8, 8, 3))
    x = layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    x = layers.DepthwiseConv2D(3, strides=2, padding="same", name="dw")(x)
    x = layers.Conv2DTranspose(2, 2, strides=2, name="up")(x)
    x = layers.UpSampling2D(2, interpolation="bilinear", name="bilinear")(x)
    cost = {layer.name: layer for layer in keras_cost(keras.Model(inputs, x)).layers}
    assert cost["conv"].macs == 8 * 8 * 4 * 3 * 3 * 3 and cost["conv"].params == 3 * 3 * 3 * 4 + 4
    assert cost["dw"].macs == 4 * 4 * 4 * 3 * 3
    assert cost["up"].macs == 4 * 4 * 4 * 2 * 2 * 2
    assert cost["bilinear"].macs == 4 * 16 * 16 * 2


def test_any_size_model_is_counted_at_the_given_size():
    model = create_model("mobile_unet")
    small, large = keras_cost(model, input_size=64), keras_cost(model, input_size=128)
    assert large.macs == pytest.approx(4 * small.macs, rel=1e-9)
    assert large.params == small.params == model.count_params()
    with pytest.raises(ValueError, match="give input_size"):
        keras_cost(model)


def test_mobile_unet_needs_far_fewer_macs_than_the_peers_at_256():
    """The acceptance ratios of the zoo: >= 20x fewer MACs than unet (base 64), >= 5x than tutorial."""
    macs = {name: keras_cost(create_model(name, input_size=256)).macs
            for name in ("mobile_unet", "unet", "tutorial_unet")}
    assert macs["unet"] / macs["mobile_unet"] >= 20
    assert macs["tutorial_unet"] / macs["mobile_unet"] >= 5


def test_table_lists_layers_and_a_total():
    cost = keras_cost(create_model("mobile_unet", input_size=SIZE))
    table = cost.table()
    assert "stem_conv" in table and table.splitlines()[-1].startswith("total")
    assert f"{cost.macs:,}" in table.splitlines()[-1]
    assert len(cost.table(top=3).splitlines()) == 5


def test_an_onnx_with_only_a_dynamic_batch_is_counted_at_its_own_size():
    """PyTorch exports (SMP's documented call) make the batch dynamic and keep height and width:
    their MACs are counted without --input-size; a dynamic side still needs it."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    from edgeseg.device.flops import onnx_cost

    def conv(dims):
        graph = helper.make_graph(
            [helper.make_node("Conv", ["input", "w", "b"], ["output"], name="head",
                              kernel_shape=[3, 3], pads=[1, 1, 1, 1])], "g",
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, dims)],
            [helper.make_tensor_value_info("output", TensorProto.FLOAT, None)],
            initializer=[numpy_helper.from_array(np.zeros((8, 3, 3, 3), np.float32), "w"),
                         numpy_helper.from_array(np.zeros(8, np.float32), "b")])
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])

    cost = onnx_cost(conv(["batch_size", 3, 40, 24]))
    assert cost.macs == 40 * 24 * 8 * 3 * 3 * 3 and cost.params == 8 * 27 + 8
    with pytest.raises(ValueError, match="takes any input size"):
        onnx_cost(conv(["batch", 3, "height", "width"]))
    assert onnx_cost(conv(["batch", 3, "height", "width"]), (40, 24)).macs == cost.macs
