"""Building blocks shared by the zoo: conv-BN-activation, MobileNet blocks, upsampling, heads.

Every function takes a ``name`` and names each layer it creates from it, so a model's layer names
are deterministic: per-layer tfmot annotation, MAC tables and TFLite graphs stay readable.
"""

from __future__ import annotations

from edgeseg._keras import keras, layers, tf
from edgeseg.device.errors import ConfigError

UPSAMPLE_MODES = ("bilinear", "nearest", "transpose", "maxunpool")


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a channel count to a multiple of ``divisor`` (MobileNet's rule: never more than 10% down)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def conv_bn_act(x, filters: int, kernel: int, stride: int, name: str, *, momentum: float,
                activation: str | None = "relu6", dilation: int = 1):
    """Conv2D (no bias) -> BatchNorm -> activation; ``activation=None`` keeps it linear."""
    x = layers.Conv2D(filters, kernel, strides=stride, padding="same", dilation_rate=dilation,
                      use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(momentum=momentum, name=f"{name}_bn")(x)
    if activation:
        x = layers.Activation(activation, name=f"{name}_{activation}")(x)
    return x


def ds_block(x, filters: int, stride: int, name: str, *, momentum: float, dilation: int = 1):
    """MobileNetV1 depthwise-separable block: 3x3 depthwise -> BN -> ReLU6 -> 1x1 pointwise -> BN -> ReLU6."""
    x = layers.DepthwiseConv2D(3, strides=stride, padding="same", dilation_rate=dilation,
                               use_bias=False, name=f"{name}_dw")(x)
    x = layers.BatchNormalization(momentum=momentum, name=f"{name}_dw_bn")(x)
    x = layers.Activation("relu6", name=f"{name}_dw_relu6")(x)
    return conv_bn_act(x, filters, 1, 1, f"{name}_pw", momentum=momentum)


def ir_block(x, filters: int, stride: int, name: str, *, momentum: float, dilation: int = 1,
             expansion: int = 6):
    """MobileNetV2 inverted residual: 1x1 expand -> 3x3 depthwise -> 1x1 linear projection (+ input)."""
    in_channels = x.shape[-1]
    shortcut = x
    if expansion != 1:
        x = conv_bn_act(x, make_divisible(in_channels * expansion), 1, 1, f"{name}_expand",
                        momentum=momentum)
    x = layers.DepthwiseConv2D(3, strides=stride, padding="same", dilation_rate=dilation,
                               use_bias=False, name=f"{name}_dw")(x)
    x = layers.BatchNormalization(momentum=momentum, name=f"{name}_dw_bn")(x)
    x = layers.Activation("relu6", name=f"{name}_dw_relu6")(x)
    x = conv_bn_act(x, filters, 1, 1, f"{name}_project", momentum=momentum, activation=None)
    if stride == 1 and in_channels == filters:
        x = layers.Add(name=f"{name}_add")([shortcut, x])
    return x


@keras.utils.register_keras_serializable(package="edgeseg")
class MaxUnpool2D(layers.Layer):
    """Max-unpooling by 2 with the positions of a 2x2 max-pool, from ops TFLite and ONNX run natively.

    Called on ``[values, source, pooled]``: ``pooled = MaxPool2D(2)(source)`` is the encoder's pooling,
    ``values`` has the shape of ``pooled``. Each value goes to the position(s) in its 2x2 window where
    ``source`` held the window's maximum; every other position is zero. The positions are found by
    comparing ``source`` with the nearest-upsampled maximum (GREATER_EQUAL, RESIZE_NEAREST_NEIGHBOR,
    SELECT_V2 in TFLite; GreaterOrEqual, Resize, Where in ONNX) instead of ``max_pool_with_argmax``,
    which neither runtime has as a builtin. Ties (a window of equal values, e.g. ReLU zeros) receive
    the value at every tied position.
    """

    def call(self, inputs):
        values, source, pooled = inputs
        up_max = _upsample_nearest(pooled)
        up_values = _upsample_nearest(values)
        return tf.where(source >= up_max, up_values, tf.zeros_like(up_values))

    def compute_output_shape(self, input_shape):
        return input_shape[1][:-1] + (input_shape[0][-1],)


@keras.utils.register_keras_serializable(package="edgeseg")
class DepthToSpace(layers.Layer):
    """Pixel shuffle: (H, W, C * b * b) -> (H * b, W * b, C), each pixel's channels laid out as a
    b x b patch (DEPTH_TO_SPACE in TFLite, DepthToSpace in ONNX). A learnable upsampling whose
    cost is the convolution before it: the values only move.
    """

    def __init__(self, block_size: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.block_size = int(block_size)

    def call(self, inputs):
        return tf.nn.depth_to_space(inputs, self.block_size)

    def compute_output_shape(self, input_shape):
        b = self.block_size
        return (input_shape[0], *(None if d is None else d * b for d in input_shape[1:3]),
                input_shape[3] // (b * b))

    def get_config(self):
        return {**super().get_config(), "block_size": self.block_size}


@keras.utils.register_keras_serializable(package="edgeseg")
class HardSigmoid(layers.Layer):
    """MobileNetV3's hard sigmoid, ReLU6(x + 3) / 6 (not Keras' 0.2x + 0.5)."""

    def call(self, inputs):
        return tf.nn.relu6(inputs + 3.0) * (1.0 / 6.0)


@keras.utils.register_keras_serializable(package="edgeseg")
class HardSwish(layers.Layer):
    """MobileNetV3's hard swish, x * ReLU6(x + 3) / 6 (HARD_SWISH in TFLite, HardSwish in ONNX)."""

    def call(self, inputs):
        return inputs * tf.nn.relu6(inputs + 3.0) * (1.0 / 6.0)


@keras.utils.register_keras_serializable(package="edgeseg")
class ICNR(keras.initializers.Initializer):
    """The kernel of a convolution followed by ``DepthToSpace(block_size)``: one ``base`` draw
    shared by the ``block_size**2`` sub-pixel positions (ICNR, Aitken et al. 2017: the pixel
    shuffle starts as nearest upsampling), plus an independent draw per position scaled by
    ``noise``.

    Filters drawn independently (``noise`` alone) disagree at the start and each learns from a
    quarter of the pixels: 48 steps of the tiny test model scored validation Dice 0.46 with one
    seed of eight (0.81 on average over six others). Equal filters (``noise=0``) learn fast, but
    the features before them get the same gradient from all four positions and learn no sub-pixel
    detail until the filters drift apart: 0.018 less Dice at 300 steps. Both draws at full scale
    (``noise=1``): 0.84 and 0.83 on the first two seeds, 0.83 on average over the six others (none
    under 0.72), and within 0.0015 of the independent draw's validation Dice at 300 steps (two
    seeds; on 3 seeds' held-out test images the sweep measured 0.002 less, README "Performance").
    The kernel's variance is then about twice the base's.
    """

    def __init__(self, block_size: int = 2, base="glorot_uniform", noise: float = 1.0):
        self.block_size = int(block_size)
        self.base = keras.initializers.get(base)
        self.noise = float(noise)
        # a second instance (a Keras initializer called twice repeats its draw), seeded apart
        config = self.base.get_config()
        if config.get("seed") is not None:
            config["seed"] += 1
        self._independent = type(self.base).from_config(config)

    def __call__(self, shape, dtype=None, **kwargs):
        copies = self.block_size ** 2
        if shape[-1] % copies:
            raise ValueError(f"ICNR: {shape[-1]} output channels do not divide by {copies}")
        shared = self.base((*shape[:-1], shape[-1] // copies), dtype=dtype)
        # DEPTH_TO_SPACE takes channel (dy * b + dx) * C + c to offset (dy, dx) of class c
        kernel = tf.tile(shared, [1] * (len(shape) - 1) + [copies])
        if not self.noise:
            return kernel
        return kernel + self.noise * self._independent(shape, dtype=dtype)

    def get_config(self):
        return {"block_size": self.block_size, "noise": self.noise,
                "base": keras.initializers.serialize(self.base)}


def _upsample_nearest(x):
    return keras.backend.resize_images(x, 2, 2, "channels_last", interpolation="nearest")


def upsample(x, mode: str, name: str, *, filters: int | None = None):
    """Double the spatial size: fixed (``bilinear``/``nearest``) or learnable (``transpose``).

    ``transpose`` is a 2x2, stride-2 Conv2DTranspose with a bias and no BatchNorm: QAT does not fold a
    BatchNorm that follows a transposed convolution, so the decoder's depthwise-separable block after
    the concatenation does the normalising. ``maxunpool`` needs the pooling positions and is built
    with :class:`MaxUnpool2D` by the caller.
    """
    if mode in ("bilinear", "nearest"):
        return layers.UpSampling2D(2, interpolation=mode, name=f"{name}_{mode}")(x)
    if mode == "transpose":
        return layers.Conv2DTranspose(filters or x.shape[-1], 2, strides=2, padding="same",
                                      name=f"{name}_transpose")(x)
    raise ValueError(f"upsample mode {mode!r} is built by the caller")


def classifier(x, num_classes: int, name: str = "head", kernel_initializer="glorot_uniform"):
    """1x1 conv to class logits (``{name}_logits``), kept apart from the activation (``probs``)."""
    return layers.Conv2D(num_classes, 1, kernel_initializer=kernel_initializer,
                         name=f"{name}_logits")(x)


def probabilities(logits, num_classes: int):
    """Sigmoid for one class (binary), softmax otherwise; always float32 (mixed-precision safe)."""
    activation = "sigmoid" if num_classes == 1 else "softmax"
    return layers.Activation(activation, dtype="float32", name="probs")(logits)


def model_input(model: str, input_size, channels: int, multiple: int, num_classes: int):
    """``keras.Input`` of shape (H, W, channels) after checking the options every zoo model shares.

    Args:
        input_size: an int (square), ``(height, width)``, or ``None`` for any size (fully convolutional).
        multiple: each side must divide by it (2**depth): the decoder's skips must line up.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"{model}: num_classes must be an integer >= 1 (got {num_classes!r})")
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise ConfigError(f"{model}: channels must be an integer >= 1 (got {channels!r})")
    size = _as_size(model, input_size)
    if size is not None:
        bad = [side for side in size if side % multiple]
        if bad:
            ok = max(multiple, round(size[0] / multiple) * multiple)
            raise ConfigError(
                f"{model}: input size {size[0]}x{size[1]} does not divide by {multiple} "
                f"(2^depth); use a multiple of {multiple}, e.g. {ok}")
    height, width = size or (None, None)
    return layers.Input(shape=(height, width, channels), name="image")


def _as_size(model: str, input_size):
    if input_size is None:
        return None
    if isinstance(input_size, int) and not isinstance(input_size, bool):
        input_size = (input_size, input_size)
    try:
        height, width = (int(side) for side in input_size)
    except (TypeError, ValueError):
        raise ConfigError(f"{model}: input_size must be an int, (height, width) or None "
                          f"(got {input_size!r})") from None
    if height < 1 or width < 1:
        raise ConfigError(f"{model}: input size must be positive (got {height}x{width})")
    return height, width


def check_choice(model: str, option: str, value, choices) -> None:
    """Raise a ConfigError naming the valid choices when ``value`` is not one of them."""
    if value not in choices:
        raise ConfigError(f"{model}: {option} must be one of {', '.join(map(str, choices))} "
                          f"(got {value!r})")


def check_positive(model: str, option: str, value, kind=int) -> None:
    ok = isinstance(value, (int, float) if kind is float else int) and not isinstance(value, bool)
    if not ok or value <= 0:
        raise ConfigError(f"{model}: {option} must be a positive {kind.__name__} (got {value!r})")
