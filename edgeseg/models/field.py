"""The field's mobile segmenters, rebuilt in tf_keras with every layer named: LR-ASPP on
MobileNetV3 (Small and Large), Fast-SCNN, and DeepLabV3+ on MobileNetV2.

They are what a team would otherwise ship to a phone or a microcontroller (torchvision's and
TensorFlow's reference mobile segmenter, a two-branch real-time design, the model STM32 and
Qualcomm model zoos deploy), built with ``weights=None`` and trained, optimized, converted and
benchmarked exactly like ``mobile_unet``, so the two are compared on the same footing.

Keras applications' MobileNetV3 is not used: its layers are named by counters (``multiply_11``),
its hard sigmoid is a TF-op lambda and it rescales its input inside; the backbone here follows the
paper's tables (Howard et al. 2019, tables 1 and 2) with named layers. Keras applications'
MobileNetV2, whose names are stable, is the DeepLabV3+ encoder as is.

A convolution followed directly by a ReLU (no BatchNorm between) is followed by ReLU6 instead
(MobileNetV3's squeeze, the global pooling branches): tfmot's prune-preserving QAT fuses a
Conv2D-ReLU pair with a config of its own and lost 66-100% of such a kernel's pruned zeros.

Each model takes ``input_size=None`` (any size whose sides divide by its stride): global pooling
branches reach every position by a broadcast add, since a 1x1 convolution of a concatenation is the
sum of 1x1 convolutions of its parts, so no branch needs the feature map's size when it is built.
"""

from __future__ import annotations

from edgeseg._keras import keras, layers
from edgeseg.models.blocks import (
    HardSigmoid,
    HardSwish,
    check_choice,
    check_positive,
    classifier,
    conv_bn_act,
    ds_block,
    ir_block,
    make_divisible,
    model_input,
    probabilities,
)

# (kernel, expanded channels, output channels, squeeze-and-excite, activation, stride) per block
MOBILENETV3 = {
    "large": ((3, 16, 16, False, "RE", 1), (3, 64, 24, False, "RE", 2),
              (3, 72, 24, False, "RE", 1), (5, 72, 40, True, "RE", 2),
              (5, 120, 40, True, "RE", 1), (5, 120, 40, True, "RE", 1),
              (3, 240, 80, False, "HS", 2), (3, 200, 80, False, "HS", 1),
              (3, 184, 80, False, "HS", 1), (3, 184, 80, False, "HS", 1),
              (3, 480, 112, True, "HS", 1), (3, 672, 112, True, "HS", 1),
              (5, 672, 160, True, "HS", 2), (5, 960, 160, True, "HS", 1),
              (5, 960, 160, True, "HS", 1)),
    "small": ((3, 16, 16, True, "RE", 2), (3, 72, 24, False, "RE", 2),
              (3, 88, 24, False, "RE", 1), (5, 96, 40, True, "HS", 2),
              (5, 240, 40, True, "HS", 1), (5, 240, 40, True, "HS", 1),
              (5, 120, 48, True, "HS", 1), (5, 144, 48, True, "HS", 1),
              (5, 288, 96, True, "HS", 2), (5, 576, 96, True, "HS", 1),
              (5, 576, 96, True, "HS", 1)),
}


def _act(x, kind: str, name: str):
    if kind == "HS":
        return HardSwish(name=f"{name}_hswish")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def _v3_block(x, kernel, expanded, filters, se, act, stride, dilation, name, bn):
    """MobileNetV3's bottleneck: 1x1 expand, kxk depthwise, squeeze-and-excite, 1x1 projection."""
    shortcut, in_channels = x, x.shape[-1]
    if expanded != in_channels:
        x = layers.Conv2D(expanded, 1, use_bias=False, name=f"{name}_expand_conv")(x)
        x = layers.BatchNormalization(name=f"{name}_expand_bn", **bn)(x)
        x = _act(x, act, f"{name}_expand")
    x = layers.DepthwiseConv2D(kernel, strides=stride, padding="same", dilation_rate=dilation,
                               use_bias=False, name=f"{name}_dw")(x)
    x = layers.BatchNormalization(name=f"{name}_dw_bn", **bn)(x)
    x = _act(x, act, f"{name}_dw")
    if se:
        s = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_se_pool")(x)
        s = layers.Conv2D(make_divisible(expanded / 4), 1, name=f"{name}_se_reduce")(s)
        s = layers.Activation("relu6", name=f"{name}_se_relu6")(s)
        s = layers.Conv2D(expanded, 1, name=f"{name}_se_expand")(s)
        s = HardSigmoid(name=f"{name}_se_hsigmoid")(s)
        x = layers.Multiply(name=f"{name}_se_scale")([x, s])
    x = layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_project_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_project_bn", **bn)(x)
    if stride == 1 and in_channels == filters:
        x = layers.Add(name=f"{name}_add")([shortcut, x])
    return x


def lraspp_mobilenetv3(input_size=None, channels: int = 3, num_classes: int = 1, *,
                       variant: str = "small", alpha: float = 1.0, head_filters: int = 128,
                       bn_momentum: float = 0.9) -> keras.Model:
    """LR-ASPP on MobileNetV3 (Howard et al. 2019, section 6.4; torchvision's ``lraspp``).

    The backbone is MobileNetV3-Small or -Large (``variant``) with the last stage dilated (rate 2
    instead of stride 2: output stride 16, as the paper and torchvision segment), ending in its
    1x1 convolution to 6x the last block's channels. The head: the 1/16 features through a 1x1
    convolution (BN, ReLU) of ``head_filters`` channels, gated by a sigmoid of their global
    average (the paper's large pooling window is torchvision's global one here), upsampled to
    1/8; class logits of that plus class logits of the 1/8 features; bilinear upsampling to the
    input's size. Sides must divide by 16.
    """
    name = "lraspp_mobilenetv3"
    check_choice(name, "variant", variant, tuple(MOBILENETV3))
    check_positive(name, "alpha", alpha, float)
    check_positive(name, "head_filters", head_filters)
    inputs = model_input(name, input_size, channels, 16, num_classes)
    bn = {"momentum": bn_momentum}
    x = layers.Conv2D(16, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = layers.BatchNormalization(name="stem_bn", **bn)(x)
    x = HardSwish(name="stem_hswish")(x)
    stride, dilation, low = 2, 1, None
    for i, (kernel, expanded, filters, se, act, s) in enumerate(MOBILENETV3[variant]):
        if s == 2 and stride == 16:  # the last stage: dilated, not strided
            s, dilation = 1, 2
        if s == 2 and stride == 8:
            low = x  # the last 1/8 features
        stride *= s
        x = _v3_block(x, kernel, make_divisible(expanded * alpha), make_divisible(filters * alpha),
                      se, act, s, dilation, f"block{i}", bn)
    x = layers.Conv2D(make_divisible(x.shape[-1] * 6), 1, use_bias=False, name="last_conv")(x)
    x = layers.BatchNormalization(name="last_bn", **bn)(x)
    high = HardSwish(name="last_hswish")(x)

    branch = conv_bn_act(high, head_filters, 1, 1, "head_cbr", momentum=bn_momentum,
                         activation="relu")
    gate = layers.GlobalAveragePooling2D(keepdims=True, name="head_pool")(high)
    gate = layers.Conv2D(head_filters, 1, use_bias=False, name="head_scale_conv")(gate)
    gate = layers.Activation("sigmoid", name="head_scale_sigmoid")(gate)
    x = layers.Multiply(name="head_scale")([branch, gate])
    x = layers.UpSampling2D(2, interpolation="bilinear", name="head_up")(x)
    logits = layers.Add(name="head_add")([classifier(x, num_classes, "head_high"),
                                          classifier(low, num_classes, "head_low")])
    logits = layers.UpSampling2D(8, interpolation="bilinear", name="head_bilinear")(logits)
    return keras.Model(inputs, probabilities(logits, num_classes), name=name)


def fast_scnn(input_size=None, channels: int = 3, num_classes: int = 1, *, alpha: float = 1.0,
              bn_momentum: float = 0.9) -> keras.Model:
    """Fast-SCNN (Poudel et al. 2019): a shared learning-to-downsample module, a global feature
    extractor at 1/32 and a feature fusion with the 1/8 branch.

    Learning to downsample: a 3x3 stride-2 convolution (32) and two stride-2 depthwise-separable
    blocks (48, 64) to 1/8. Global features: three stages of three inverted residuals (t = 6; 64,
    96, 128; the first two strided) to 1/32, then pyramid pooling: the global average and 'same'
    average pools of 2, 3 and 4 feature pixels at stride 1 (the paper's bins 2, 3 and 6 of a
    32x64 map, as sliding windows, so any input size works), each projected to a quarter of the
    channels and fused by a 1x1 convolution. Fusion: the 1/32 features upsampled 4x, a 3x3
    depthwise convolution at rate 4 and a 1x1 projection, added to a 1x1 projection of the 1/8
    features. Classifier: two depthwise-separable blocks, 1x1 to the classes, bilinear 8x. The
    activations are ReLU6, as in the rest of the zoo (the paper has ReLU). ``alpha`` scales every
    width. Sides must divide by 32.
    """
    name = "fast_scnn"
    check_positive(name, "alpha", alpha, float)
    inputs = model_input(name, input_size, channels, 32, num_classes)
    bn = {"momentum": bn_momentum}
    width = [make_divisible(c * alpha) for c in (32, 48, 64, 96, 128)]
    x = conv_bn_act(inputs, width[0], 3, 2, "down_conv", **bn)
    x = ds_block(x, width[1], 2, "down_ds1", **bn)
    high = ds_block(x, width[2], 2, "down_ds2", **bn)
    x = high
    for stage, (filters, stride) in enumerate(((width[2], 2), (width[3], 2), (width[4], 1))):
        for b in range(3):
            x = ir_block(x, filters, stride if b == 0 else 1, f"global{stage}_b{b}", **bn)
    x = _pyramid_pooling(x, width[4], (2, 3, 4), "ppm", bn)

    low = layers.UpSampling2D(4, interpolation="bilinear", name="fuse_up")(x)
    low = layers.DepthwiseConv2D(3, padding="same", dilation_rate=4, use_bias=False,
                                 name="fuse_low_dw")(low)
    low = layers.BatchNormalization(name="fuse_low_dw_bn", **bn)(low)
    low = layers.ReLU(6.0, name="fuse_low_dw_relu6")(low)
    low = conv_bn_act(low, width[4], 1, 1, "fuse_low", activation=None, **bn)
    high = conv_bn_act(high, width[4], 1, 1, "fuse_high", activation=None, **bn)
    x = layers.ReLU(6.0, name="fuse_relu6")(layers.Add(name="fuse_add")([low, high]))
    x = ds_block(x, width[4], 1, "cls_ds1", **bn)
    x = ds_block(x, width[4], 1, "cls_ds2", **bn)
    logits = layers.UpSampling2D(8, interpolation="bilinear", name="head_bilinear")(
        classifier(x, num_classes))
    return keras.Model(inputs, probabilities(logits, num_classes), name=name)


def _pyramid_pooling(x, filters, windows, name, bn):
    """Pyramid pooling with the global branch added by broadcast (see the module doc)."""
    quarter = max(8, filters // 4)
    parts = [x]
    for k in windows:
        pooled = layers.AveragePooling2D(k, strides=1, padding="same", name=f"{name}_pool{k}")(x)
        parts.append(conv_bn_act(pooled, quarter, 1, 1, f"{name}_branch{k}", **bn))
    fused = conv_bn_act(layers.Concatenate(name=f"{name}_concat")(parts), filters, 1, 1,
                        f"{name}_fuse", activation=None, **bn)
    return layers.ReLU(6.0, name=f"{name}_relu6")(
        layers.Add(name=f"{name}_add")([fused, _global_branch(x, quarter, filters, name)]))


def _global_branch(x, filters, out, name):
    """The global average through a 1x1 convolution (bias, ReLU6), then its share of the fusing 1x1
    convolution (with a bias: tfmot quantizes no BatchNorm after an Add, so the fused branches are
    normalised before it), shape (1, 1, out): added to every position by broadcast."""
    glob = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_global_pool")(x)
    glob = layers.Activation("relu6", name=f"{name}_global_relu6")(
        layers.Conv2D(filters, 1, name=f"{name}_global_conv")(glob))
    return layers.Conv2D(out, 1, name=f"{name}_global_fuse")(glob)


def deeplabv3plus_mobilenetv2(input_size=None, channels: int = 3, num_classes: int = 1, *,
                              alpha: float = 1.0, filters: int = 256, rates=(6,),
                              bn_momentum: float = 0.9) -> keras.Model:
    """DeepLabV3+ (Chen et al. 2018) on MobileNetV2, in the form Keras ports for microcontrollers
    take (the keras.io DeepLabV3+ example's ASPP and decoder on a MobileNetV2 encoder).

    The encoder is ``keras.applications.MobileNetV2(include_top=False, weights=None,
    alpha=alpha)`` up to ``block_12_project_BN`` (output stride 16). ASPP: the image's global
    average (1x1, ReLU6), a 1x1 branch and a 3x3 branch per atrous rate in ``rates`` (the
    ports keep 6 of the paper's 6, 12, 18), each of ``filters`` channels, fused by a 1x1
    convolution. Decoder: upsampled 4x, concatenated with a 48-channel projection of
    ``block_2_project_BN`` (1/4), two 3x3 convolutions of ``filters``, class logits upsampled 4x
    (bilinear; a 1x1 classifier commutes with it, so it runs first). Sides must divide by 16.
    """
    name = "deeplabv3plus_mobilenetv2"
    check_positive(name, "alpha", alpha, float)
    check_positive(name, "filters", filters)
    rates = tuple(rates) if isinstance(rates, (list, tuple)) else (rates,)
    for rate in rates:
        check_positive(name, "rates", rate)
    inputs = model_input(name, input_size, channels, 16, num_classes)
    encoder = keras.applications.MobileNetV2(input_tensor=inputs, include_top=False,
                                             weights=None, alpha=alpha)
    for layer in encoder.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.momentum = bn_momentum
    bn = {"momentum": bn_momentum}
    high = encoder.get_layer("block_12_project_BN").output
    low = encoder.get_layer("block_2_project_BN").output

    parts = [conv_bn_act(high, filters, 1, 1, "aspp_1x1", **bn)]
    parts += [conv_bn_act(high, filters, 3, 1, f"aspp_rate{r}", dilation=r, **bn) for r in rates]
    merged = layers.Concatenate(name="aspp_concat")(parts) if len(parts) > 1 else parts[0]
    fused = conv_bn_act(merged, filters, 1, 1, "aspp_fuse", activation=None, **bn)
    x = layers.ReLU(6.0, name="aspp_relu6")(
        layers.Add(name="aspp_add")([fused, _global_branch(high, filters, filters, "aspp")]))

    x = layers.UpSampling2D(4, interpolation="bilinear", name="decoder_up")(x)
    skip = conv_bn_act(low, 48, 1, 1, "decoder_skip", **bn)
    x = layers.Concatenate(name="decoder_concat")([x, skip])
    x = conv_bn_act(x, filters, 3, 1, "decoder_conv1", **bn)
    x = conv_bn_act(x, filters, 3, 1, "decoder_conv2", **bn)
    logits = layers.UpSampling2D(4, interpolation="bilinear", name="head_bilinear")(
        classifier(x, num_classes))
    return keras.Model(inputs, probabilities(logits, num_classes), name=name)
