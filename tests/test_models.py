"""The zoo: every model builds, runs, is fully convolutional and converts to a .tflite LiteRT runs."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from edgeseg.device.errors import ConfigError
from edgeseg.models import create_model, list_models, model_options

UPSAMPLES = ("bilinear", "nearest", "transpose", "maxunpool")
CASES = [("mobile_unet", {"upsample": mode, "alpha": 0.25}) for mode in UPSAMPLES] + [
    ("mobile_unet", {"block": "ir", "alpha": 0.25, "dilation": (2, 4)}),
    ("mobile_unet", {"alpha": 0.25, "decoder_stride": 4}),
    ("unet", {"base": 4}),
    ("tutorial_unet", {"alpha": 0.35}),
    ("xception_unet", {}),
]
# the field's mobile segmenters (edgeseg/models/field.py), narrowed to keep the tests quick
FIELD = [
    ("lraspp_mobilenetv3", {"variant": "small", "alpha": 0.5}),
    ("lraspp_mobilenetv3", {"variant": "large", "alpha": 0.5}),
    ("fast_scnn", {"alpha": 0.5}),
    ("deeplabv3plus_mobilenetv2", {"alpha": 0.35, "filters": 32}),
]
CASES += FIELD
SIZE = 32


def _ids(case):
    name, options = case
    return name + "".join(f"-{k}={v}" for k, v in options.items())


def _images(n=2, size=SIZE, seed=0):
    return np.random.default_rng(seed).random((n, size, size, 3), dtype=np.float32)


def test_list_models_names_the_zoo_models():
    assert list_models() == ["deeplabv3plus_mobilenetv2", "fast_scnn", "lraspp_mobilenetv3",
                             "mobile_unet", "tutorial_unet", "unet", "xception_unet"]


@pytest.mark.parametrize("num_classes", [1, 3])
@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_model_outputs_probabilities_of_the_input_size(case, num_classes):
    name, options = case
    model = create_model(name, input_size=SIZE, num_classes=num_classes, **options)
    probs = model(_images(), training=False).numpy()
    assert probs.shape == (2, SIZE, SIZE, num_classes)
    assert np.all((probs >= 0) & (probs <= 1))
    if num_classes > 1:
        np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
    assert model.layers[-1].name == "probs"
    assert model.layers[-1].dtype == "float32"


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_model_built_for_any_size_takes_other_sizes(case):
    name, options = case
    model = create_model(name, input_size=None, **options)
    assert model.input_shape == (None, None, None, 3)
    for height, width in [(32, 64), (64, 32)]:
        out = model(np.zeros((1, height, width, 3), np.float32), training=False)
        assert out.shape == (1, height, width, 1)


@pytest.mark.parametrize("case, num_classes", [
    (case, n) for case in CASES for n in ((1, 3) if case[0] == "mobile_unet" else (3,))],
    ids=lambda v: _ids(v) if isinstance(v, tuple) else str(v))  # peers: their multi-class form
def test_model_converts_to_tflite_that_litert_runs_like_keras(case, num_classes, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    from converters.tflite import convert_tflite

    name, options = case
    model = create_model(name, input_size=SIZE, num_classes=num_classes, **options)
    path = convert_tflite(model, tmp_path / "model.tflite")
    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    assert tuple(inp["shape"]) == (1, SIZE, SIZE, 3)
    ops = {op["op_name"] for op in interpreter._get_ops_details()}
    assert not ops & {"SHAPE", "PACK", "STRIDED_SLICE"}, ops
    image = _images(1, seed=1)
    interpreter.set_tensor(inp["index"], image)
    interpreter.invoke()
    got = interpreter.get_tensor(out["index"])
    want = model(image, training=False).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_layer_names_are_deterministic():
    first = [layer.name for layer in create_model("mobile_unet", input_size=SIZE).layers]
    second = [layer.name for layer in create_model("mobile_unet", input_size=SIZE).layers]
    assert first == second
    assert {"stem_conv", "enc1_b0_dw", "dec0_b0_pw_conv", "head_logits", "probs"} <= set(first)


@pytest.mark.slow  # over 10 s on 2 cores: the quick suite stays well under 15 min
def test_peer_layer_names_are_deterministic():
    for name in ("tutorial_unet", "xception_unet", "unet"):
        a = [layer.name for layer in create_model(name, input_size=SIZE).layers]
        b = [layer.name for layer in create_model(name, input_size=SIZE).layers]
        assert a == b


@pytest.mark.parametrize("case", FIELD, ids=_ids)
def test_field_models_name_every_layer_and_no_keras_counter_does(case):
    name, options = case
    a = [layer.name for layer in create_model(name, input_size=SIZE, **options).layers]
    b = [layer.name for layer in create_model(name, input_size=SIZE, **options).layers]
    assert a == b and len(set(a)) == len(a)
    counted = [n for n in a if n.split("_")[-1].isdigit() and not n.startswith("block_")
               or n.startswith("tf.")]  # multiply_11, re_lu_3, tf.math.add (Keras' own names)
    assert not counted, counted


def test_skips_false_builds_the_plain_hourglass():
    added = create_model("mobile_unet", input_size=SIZE)
    concatenated = create_model("mobile_unet", input_size=SIZE, merge="concat")
    hourglass = create_model("mobile_unet", input_size=SIZE, skips=False)
    kinds = lambda m: [type(layer).__name__ for layer in m.layers]  # noqa: E731
    assert kinds(added).count("Add") == 3 and kinds(concatenated).count("Concatenate") == 3
    assert kinds(hourglass).count("Concatenate") == kinds(hourglass).count("Add") == 0


def test_dilation_puts_atrous_blocks_in_the_bottleneck():
    model = create_model("mobile_unet", input_size=SIZE, dilation=(2, 4))
    rates = {layer.name: layer.dilation_rate for layer in model.layers
             if layer.name.startswith("bottleneck") and layer.name.endswith("_dw")}
    assert rates == {"bottleneck_b0_dw": (2, 2), "bottleneck_b1_dw": (4, 4)}


def test_alpha_scales_the_width():
    narrow = create_model("mobile_unet", input_size=SIZE, alpha=0.5)
    wide = create_model("mobile_unet", input_size=SIZE, alpha=1.0)
    assert narrow.get_layer("enc3_b0_pw_conv").filters == 128
    assert wide.get_layer("enc3_b0_pw_conv").filters == 256
    assert narrow.count_params() < wide.count_params() / 3


def test_a_full_resolution_stem_keeps_the_output_size_and_costs_more():
    from edgeseg.device.flops import keras_cost

    half = create_model("mobile_unet", input_size=SIZE)
    full = create_model("mobile_unet", input_size=SIZE, stem=1)
    assert full.get_layer("stem_conv").strides == (1, 1)
    assert full.output_shape == half.output_shape == (None, SIZE, SIZE, 1)
    assert not any(layer.name.startswith("head_bilinear") for layer in full.layers)
    assert keras_cost(full).macs > 2 * keras_cost(half).macs
    create_model("mobile_unet", input_size=8, depth=4, stem=1)  # three halvings: 8 divides


def test_the_first_level_has_its_own_width_and_blocks():
    from edgeseg.device.flops import keras_cost

    names = lambda m: {layer.name for layer in m.layers}  # noqa: E731
    default = create_model("mobile_unet", input_size=SIZE)  # the stem's output is the first skip
    assert "head_bilinear" in names(default) and "dec0_b0_pw_conv" in names(default)
    assert not any(n.startswith("enc0_b") for n in names(default))
    blocked = create_model("mobile_unet", input_size=SIZE, stem_blocks=None)  # as the other levels
    narrow = create_model("mobile_unet", input_size=SIZE, stem_blocks=None, stem_filters=16)
    widths = lambda m, layers: [m.get_layer(n).filters for n in layers]  # noqa: E731
    first = ["stem_conv", "enc0_b1_pw_conv", "dec0_proj_conv", "dec0_b0_pw_conv"]
    assert widths(narrow, first) == [16] * 4 and widths(blocked, first) == [32] * 4
    assert widths(narrow, ["enc1_b0_pw_conv", "enc3_b0_pw_conv"]) == [64, 256]
    assert keras_cost(narrow).macs < keras_cost(blocked).macs
    assert keras_cost(default).macs < keras_cost(blocked).macs

    short = create_model("mobile_unet", input_size=SIZE, stem_blocks=None, final_block=False)
    assert "enc0_b1_pw_conv" in names(short) and not any(n.startswith("dec0_b") for n in names(short))
    deep = create_model("mobile_unet", input_size=SIZE, blocks_per_level=2, stem_blocks=1)
    assert "enc0_b1_pw_conv" in names(deep) and "enc0_b2_pw_conv" not in names(deep)
    assert "enc1_b1_pw_conv" in names(deep)  # the other levels keep blocks_per_level
    for model in (blocked, narrow, short, deep):
        assert model.output_shape == default.output_shape == (None, SIZE, SIZE, 1)
    for stem_blocks, first in ((None, {"enc0_b1_pw_conv"}), (0, set())):  # maxunpool's too
        unpooled = create_model("mobile_unet", input_size=SIZE, upsample="maxunpool",
                                stem_blocks=stem_blocks)
        assert {n for n in names(unpooled) if n.startswith("enc0_b")} & {"enc0_b1_pw_conv"} == first


def test_a_shallower_decoder_leaves_out_the_finest_levels_and_resizes_its_logits():
    from edgeseg.device.flops import keras_cost

    names = lambda m: {layer.name for layer in m.layers}  # noqa: E731
    default = create_model("mobile_unet", input_size=SIZE * 2)
    for stride, kept in ((4, {"dec2", "dec1"}), (8, {"dec2"})):
        shallow = create_model("mobile_unet", input_size=SIZE * 2, decoder_stride=stride)
        levels = {n.split("_")[0] for n in names(shallow) if n.startswith("dec")}
        assert levels == kept and shallow.output_shape == default.output_shape
        assert shallow.get_layer("head_bilinear").size == (stride, stride)
        assert keras_cost(shallow).macs < keras_cost(default).macs
        shuffled = create_model("mobile_unet", input_size=SIZE * 2, decoder_stride=stride,
                                head="shuffle", num_classes=3)
        assert shuffled.get_layer("head_logits").filters == 3 * stride ** 2
        assert shuffled.output_shape == (None, SIZE * 2, SIZE * 2, 3)
    stated = create_model("mobile_unet", input_size=SIZE, decoder_stride=2)
    assert stated.to_json() == create_model("mobile_unet", input_size=SIZE).to_json()


def test_the_default_head_upsamples_as_the_decoder_does():
    names = lambda m: {layer.name for layer in m.layers}  # noqa: E731
    for upsample in ("bilinear", "nearest"):
        model = create_model("mobile_unet", input_size=SIZE, upsample=upsample)
        assert f"head_{upsample}" in names(model) and "head_shuffle" not in names(model)
    transposed = create_model("mobile_unet", input_size=SIZE, upsample="transpose")
    assert "head_logits_transpose" in names(transposed)
    nearest_head = create_model("mobile_unet", input_size=SIZE, head="nearest")
    assert "head_nearest" in names(nearest_head) and "head_bilinear" not in names(nearest_head)
    shuffled = create_model("mobile_unet", input_size=SIZE, head="shuffle")
    assert "head_shuffle" in names(shuffled) and shuffled.output_shape == (None, SIZE, SIZE, 1)


@pytest.mark.parametrize("mode", UPSAMPLES)
def test_merge_add_adds_skips_of_the_same_width(mode):
    from edgeseg.device.flops import keras_cost

    concat = create_model("mobile_unet", input_size=SIZE, upsample=mode, merge="concat")
    added = create_model("mobile_unet", input_size=SIZE, upsample=mode, merge="add")
    names = [layer.name for layer in added.layers]
    assert "dec0_add" in names and not any(name.endswith("_concat") for name in names)
    assert added.output_shape == concat.output_shape
    assert keras_cost(added).macs < keras_cost(concat).macs


def test_inverted_residual_blocks_add_their_input():
    model = create_model("mobile_unet", input_size=SIZE, block="ir", blocks_per_level=2)
    assert "enc1_b1_add" in [layer.name for layer in model.layers]
    assert "enc1_b0_add" not in [layer.name for layer in model.layers]  # stride 2: no residual


def test_maxunpool_puts_values_at_the_pooling_positions(tf):
    from edgeseg.models.blocks import MaxUnpool2D

    rng = np.random.default_rng(3)
    source = rng.permutation(4 * 8 * 8 * 5).reshape(4, 8, 8, 5).astype(np.float32)  # no ties
    pooled, argmax = tf.nn.max_pool_with_argmax(source, 2, 2, "VALID", include_batch_in_index=True)
    values = rng.random(pooled.shape).astype(np.float32) + 1.0
    want = np.zeros(source.size, np.float32)
    want[argmax.numpy().ravel()] = values.ravel()
    got = MaxUnpool2D()([values, source, pooled]).numpy()
    np.testing.assert_array_equal(got, want.reshape(source.shape))


def test_a_pixel_shuffle_head_converts_to_depth_to_space_in_both_runtimes(tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    from converters.onnx import onnx_bytes
    from converters.tflite import convert_tflite
    from edgeseg.runtime import load

    model = create_model("mobile_unet", input_size=SIZE, num_classes=3, alpha=0.25, head="shuffle")
    assert model.get_layer("head_logits").filters == 12  # 4 logits per class: a 2x2 patch each
    image = _images(1, seed=2)
    want = model(image, training=False).numpy()
    path = convert_tflite(model, tmp_path / "m.tflite")
    interpreter = Interpreter(model_path=str(path))
    ops = [op["op_name"] for op in interpreter._get_ops_details()]
    assert "DEPTH_TO_SPACE" in ops and "RESIZE_BILINEAR" not in ops[-3:]
    np.testing.assert_allclose(load(path).predict(image), want, atol=1e-4)
    onnx_path = tmp_path / "m.onnx"
    onnx_path.write_bytes(onnx_bytes(model, input_size=SIZE))
    np.testing.assert_allclose(load(onnx_path).predict(image), want, atol=1e-4)


def test_the_pixel_shuffle_head_shares_a_draw_between_sub_pixels_and_keeps_its_initialiser(tmp_path):
    from edgeseg._keras import keras
    from edgeseg.models.blocks import ICNR

    kernel = ICNR(2, noise=0.0)((1, 1, 8, 12)).numpy()  # pure ICNR: nearest upsampling at first
    for offset in range(1, 4):
        np.testing.assert_array_equal(kernel[..., 3 * offset:3 * offset + 3], kernel[..., :3])
    keras.utils.set_random_seed(0)
    kernels = np.stack([ICNR(2)((1, 1, 64, 4)).numpy().ravel() for _ in range(200)])
    share = np.corrcoef(kernels[:, ::4].ravel(), kernels[:, 1::4].ravel())[0, 1]
    assert 0.3 < share < 0.7  # half the variance shared (noise=1): correlated, not equal
    with warnings.catch_warnings():  # one initializer called twice would repeat its draw
        warnings.simplefilter("error")
        ICNR(2)((1, 1, 8, 4))
    model = create_model("mobile_unet", input_size=SIZE, num_classes=3, alpha=0.25, head="shuffle")
    assert isinstance(model.get_layer("head_logits").kernel_initializer, ICNR)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert loaded.get_layer("head_logits").kernel_initializer.get_config() == \
        model.get_layer("head_logits").kernel_initializer.get_config()
    with pytest.raises(ValueError, match="do not divide by 4"):
        ICNR(2)((1, 1, 8, 6))


def test_a_users_class_wins_over_a_zoo_class_of_the_same_name(tmp_path):
    from edgeseg._keras import keras, layers, tf
    from edgeseg.keras_files import load_tf_keras as load_model

    class ICNR(keras.initializers.Initializer):  # the user's own, named like the zoo's
        def __call__(self, shape, dtype=None, **kwargs):
            return tf.ones(shape, dtype)

        def get_config(self):
            return {}

    inputs = keras.Input((8, 8, 1))
    model = keras.Model(inputs, layers.Conv2D(2, 1, kernel_initializer=ICNR())(inputs))
    for suffix in (".keras", ".h5"):
        model.save(tmp_path / f"m{suffix}")
        loaded = load_model(tmp_path / f"m{suffix}", custom_objects={"ICNR": ICNR})
        assert type(loaded.layers[-1].kernel_initializer) is ICNR


@pytest.mark.parametrize("name, options, message", [
    ("resnet_unet", {}, "valid models: deeplabv3plus_mobilenetv2, fast_scnn, lraspp_mobilenetv3, "
                        "mobile_unet"),
    ("mobile_unet", {"input_size": 100}, "does not divide by 16"),
    ("mobile_unet", {"input_size": 64, "depth": 7}, "does not divide by 128"),
    ("tutorial_unet", {"input_size": 48}, "does not divide by 32"),
    ("mobile_unet", {"upsample": "cubic"}, "upsample must be one of bilinear, nearest, transpose, maxunpool"),
    ("mobile_unet", {"block": "v3"}, "block must be one of ds, ir"),
    ("mobile_unet", {"stem": 4}, "stem must be one of 1, 2"),
    ("mobile_unet", {"merge": "sum"}, "merge must be one of concat, add"),
    ("mobile_unet", {"head": "cubic"}, "head must be one of bilinear, nearest, shuffle"),
    ("mobile_unet", {"head": "shuffle", "stem": 1}, "head='shuffle' upsamples a half-resolution"),
    ("mobile_unet", {"stem_filters": 0}, "option stem_filters=0 must be a whole number from 1"),
    ("mobile_unet", {"stem_blocks": -1}, "option stem_blocks=-1 must be a whole number from 0 to 8"),
    ("mobile_unet", {"final_block": "no"}, "final_block must be true or false"),
    ("mobile_unet", {"upsample": "maxunpool", "final_block": False}, "unpools to full resolution"),
    ("mobile_unet", {"decoder_stride": 3}, "decoder_stride must be one of 2, 4, 8 with depth=4"),
    ("mobile_unet", {"decoder_stride": 16}, "decoder_stride must be one of 2, 4, 8 with depth=4"),
    ("mobile_unet", {"decoder_stride": 1}, "option decoder_stride=1 must be a whole number from 2"),
    ("mobile_unet", {"decoder_stride": 4, "stem": 1}, "decoder_stride shapes the strided U-Net"),
    ("mobile_unet", {"alpha": 0}, "option alpha=0 must be a number from"),
    ("mobile_unet", {"dilation": 0}, "option dilation=0 must be a whole number from 1"),
    ("mobile_unet", {"num_classes": 0}, "option num_classes=0 must be a whole number from 1"),
    ("unet", {"alpha": 0.5}, "unknown option alpha; valid options: input_size"),
])
def test_bad_options_raise_one_clear_error(name, options, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        create_model(name, **options)


def test_model_options_lists_defaults():
    options = model_options("mobile_unet")
    assert options["upsample"] == "bilinear" and options["alpha"] == 1.0 and options["depth"] == 4
