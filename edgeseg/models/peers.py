"""What a user would have built without edgeseg: the two U-Nets of the TensorFlow and Keras tutorials.

Both are rebuilt here layer for layer (flat functional models, every layer named) so that they can
be trained, pruned, quantized, converted and benchmarked exactly like ``mobile_unet``.
"""

from __future__ import annotations

from edgeseg._keras import keras, layers
from edgeseg.models.blocks import check_positive, model_input, probabilities

# The MobileNetV2 activations the TensorFlow tutorial takes as skips, from 1/2 down to 1/32.
TUTORIAL_SKIPS = ("block_1_expand_relu", "block_3_expand_relu", "block_6_expand_relu",
                  "block_13_expand_relu", "block_16_project")


def tutorial_unet(input_size=None, channels: int = 3, num_classes: int = 1, *, alpha: float = 1.0,
                  bn_momentum: float = 0.9) -> keras.Model:
    """TensorFlow's image-segmentation tutorial model: MobileNetV2 encoder + pix2pix upsample stack.

    The encoder is ``keras.applications.MobileNetV2(include_top=False, weights=None, alpha=alpha)``
    (no pretrained weights can be downloaded here); the decoder is the tutorial's four
    ``pix2pix.upsample`` steps (3x3 stride-2 Conv2DTranspose, BatchNorm, ReLU) of 512, 256, 128 and 64
    filters, each concatenated with an encoder skip, then a 3x3 stride-2 Conv2DTranspose to the
    classes. Sides must divide by 32. ``bn_momentum`` replaces MobileNetV2's 0.999 (see mobile_unet).
    """
    name = "tutorial_unet"
    check_positive(name, "alpha", alpha, float)
    inputs = model_input(name, input_size, channels, 32, num_classes)
    encoder = keras.applications.MobileNetV2(input_tensor=inputs, include_top=False, weights=None,
                                             alpha=alpha)
    for layer in encoder.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.momentum = bn_momentum
    skips = [encoder.get_layer(skip).output for skip in TUTORIAL_SKIPS]
    x = skips[-1]
    init = keras.initializers.RandomNormal(0.0, 0.02, seed=0)
    for i, (filters, skip) in enumerate(zip((512, 256, 128, 64), reversed(skips[:-1]))):
        x = layers.Conv2DTranspose(filters, 3, strides=2, padding="same", use_bias=False,
                                   kernel_initializer=init, name=f"up{i}_transpose")(x)
        x = layers.BatchNormalization(momentum=bn_momentum, name=f"up{i}_bn")(x)
        x = layers.Activation("relu", name=f"up{i}_relu")(x)
        x = layers.Concatenate(name=f"up{i}_concat")([x, skip])
    logits = layers.Conv2DTranspose(num_classes, 3, strides=2, padding="same",
                                    name="head_logits_transpose")(x)
    return keras.Model(inputs, probabilities(logits, num_classes), name=name)


def xception_unet(input_size=None, channels: int = 3, num_classes: int = 1, *,
                  bn_momentum: float = 0.9) -> keras.Model:
    """The keras.io "U-Net-like" Oxford-Pets model (Xception-style separable convs and residuals).

    Entry 3x3 stride-2 conv (32); three downsampling blocks (64, 128, 256) of two SeparableConv2D +
    BatchNorm with a 3x3 stride-2 max-pool and a 1x1 stride-2 residual projection; four upsampling
    blocks (256, 128, 64, 32) of two Conv2DTranspose + BatchNorm, 2x nearest upsampling and a 1x1
    residual projection; a 3x3 conv to the classes. Sides must divide by 16.
    """
    name = "xception_unet"
    inputs = model_input(name, input_size, channels, 16, num_classes)
    bn = {"momentum": bn_momentum}
    x = layers.Conv2D(32, 3, strides=2, padding="same", name="entry_conv")(inputs)
    x = layers.BatchNormalization(name="entry_bn", **bn)(x)
    x = layers.Activation("relu", name="entry_relu")(x)
    previous = x
    for i, filters in enumerate((64, 128, 256)):
        for j in (1, 2):
            x = layers.Activation("relu", name=f"down{i}_relu{j}")(x)
            x = layers.SeparableConv2D(filters, 3, padding="same", name=f"down{i}_sepconv{j}")(x)
            x = layers.BatchNormalization(name=f"down{i}_bn{j}", **bn)(x)
        x = layers.MaxPooling2D(3, strides=2, padding="same", name=f"down{i}_pool")(x)
        residual = layers.Conv2D(filters, 1, strides=2, padding="same",
                                 name=f"down{i}_residual")(previous)
        x = previous = layers.Add(name=f"down{i}_add")([x, residual])
    for i, filters in enumerate((256, 128, 64, 32)):
        for j in (1, 2):
            x = layers.Activation("relu", name=f"up{i}_relu{j}")(x)
            x = layers.Conv2DTranspose(filters, 3, padding="same", name=f"up{i}_transpose{j}")(x)
            x = layers.BatchNormalization(name=f"up{i}_bn{j}", **bn)(x)
        x = layers.UpSampling2D(2, name=f"up{i}_upsample")(x)
        residual = layers.UpSampling2D(2, name=f"up{i}_residual_upsample")(previous)
        residual = layers.Conv2D(filters, 1, padding="same", name=f"up{i}_residual")(residual)
        x = previous = layers.Add(name=f"up{i}_add")([x, residual])
    logits = layers.Conv2D(num_classes, 3, padding="same", name="head_logits")(x)
    return keras.Model(inputs, probabilities(logits, num_classes), name=name)
