"""The product, ``mobile_unet``, and the classic Ronneberger ``unet`` it is measured against.

    >>> from edgeseg.models import create_model
    >>> model = create_model("mobile_unet", input_size=256, alpha=0.5, upsample="transpose")
"""

from __future__ import annotations

from edgeseg._keras import keras, layers
from edgeseg.device.errors import ConfigError
from edgeseg.models.blocks import (
    ICNR,
    UPSAMPLE_MODES,
    DepthToSpace,
    MaxUnpool2D,
    check_choice,
    check_positive,
    classifier,
    conv_bn_act,
    ds_block,
    ir_block,
    make_divisible,
    model_input,
    probabilities,
    upsample,
)

BLOCKS = {"ds": ds_block, "ir": ir_block}


def mobile_unet(input_size=None, channels: int = 3, num_classes: int = 1, *, alpha: float = 1.0,
                depth: int = 4, block: str = "ds", upsample: str = "bilinear", skips: bool = True,
                dilation=1, base_filters: int = 32, blocks_per_level: int = 1, stem: int = 2,
                merge: str = "add", head: str | None = None, stem_filters: int | None = None,
                stem_blocks: int | None = 0, final_block: bool = True,
                decoder_stride: int | None = None, bn_momentum: float = 0.9) -> keras.Model:
    """A U-Net with a MobileNet encoder and a depthwise-separable decoder.

    The encoder halves the resolution ``depth`` times: a stride-2 3x3 stem (followed by
    ``stem_blocks`` stride-1 blocks, by default none), then per level a stride-2 MobileNet block
    (``block="ds"``: V1 depthwise + pointwise; ``"ir"``: V2 inverted residual) followed by
    ``blocks_per_level - 1`` stride-1 blocks; level ``i`` has ``base_filters * 2**i * alpha``
    channels (rounded to a multiple of 8). The deepest level is the bottleneck, where ``dilation``
    (an int, or one rate per extra block) adds atrous blocks to widen the field of view. The decoder
    upsamples, merges the encoder feature of the same resolution (``skips=True``; ``False`` gives
    the plain hour-glass) and applies one depthwise-separable block per level; a 1x1 head gives the
    class logits at half resolution, laid out at the input's size. ``merge="add"`` (the
    default) first projects the decoder to the skip's width with a 1x1 conv at the lower resolution,
    then upsamples and adds the skip (LinkNet-style); ``merge="concat"`` concatenates as the U-Net
    paper does. On the 300-step sweep (``python -m benchmarks.studies.sweep``) "add" was 1.6x faster
    at 256x256 in LiteRT for 0.0005 less Dice: concatenations and wide upsampling at the high
    resolutions are memory traffic, and the 1x1 projection runs at the low resolution. ``stem=1``
    runs the stem at full resolution instead (the encoder then halves ``depth - 1`` times and the
    head needs no upsampling): finer boundaries for about 4x the MACs of the first and last levels.

    ``head`` says how the half-resolution head reaches the input's size (``stem=2``): by default as
    the decoder upsamples (``upsample``: resized, or a transposed convolution); ``"bilinear"`` or
    ``"nearest"`` resize the class logits whatever the decoder does; ``"shuffle"`` predicts
    ``4 * num_classes`` logits per pixel and lays them out as 2x2 patches (pixel shuffle,
    DEPTH_TO_SPACE): a learned upsampling that only moves values, where resizing a one-channel map
    costs XNNPACK more than the convolutions before it. Its filters start half shared (see
    :class:`~edgeseg.models.blocks.ICNR`), or short runs learn little.

    ``stem_blocks=0`` is the default since the 3-seed sweep (``python -m benchmarks.studies.sweep``,
    README "Performance"): the first level, at half the input's resolution, is where the time
    goes, and its encoder block bought 0.0008 Dice (0.9730 against 0.9722, mean of 3 seeds at 300
    steps) for 1.17x the latency (3.13 against 2.68 ms, fp32 .tflite, 256x256, 1 thread).

    With ``upsample="maxunpool"`` the encoder downsamples by 2x2 max-pooling instead of strides (the
    stem runs at full resolution, whatever ``stem`` says) and the decoder puts values back at the pooling positions
    (SegNet-style), projecting to the encoder's channels first.

    Args:
        input_size: int, (height, width), or None for any size; sides must divide by ``2**depth``.
        alpha: MobileNet's width multiplier.
        stem_filters: channels of the first level alone (the stem, its blocks and, with the
            default ``decoder_stride``, the last decoder block and the head's input), whatever
            ``alpha`` gives the others; None: like the
            others. That level runs at the highest resolution, where time goes to memory traffic
            more than to MACs (MobileNetV3's 16-channel stem follows the same reasoning).
        stem_blocks: stride-1 blocks after the stem, at the first level (default 0: the stem's
            output is the first skip); None: ``blocks_per_level``, like the other levels.
        final_block: False leaves out the decoder's last block: the head classifies the sum of
            the upsampled decoder and the last skip it merges directly.
        decoder_stride: where the decoder ends, as the input's size over its own (strided
            encoder, ``stem=2``): 2 (None, the default) merges every skip; 4 or 8 stop the decoder
            at a quarter or an eighth of the input's resolution, leaving out the finer skips,
            and the head resizes its logits the rest of the way (the shallow decoders of
            LR-ASPP, at 1/8, and DeepLabV3+, at 1/4): the finest levels, where the time goes to
            memory traffic, are left to one resize of ``num_classes`` channels.
        bn_momentum: 0.9, not Keras' 0.99: short CPU fine-tunes otherwise leave the moving statistics
            far behind, and the model predicts nothing in inference mode.
    """
    name = "mobile_unet"
    check_choice(name, "block", block, tuple(BLOCKS))
    check_choice(name, "upsample", upsample, UPSAMPLE_MODES)
    check_positive(name, "alpha", alpha, float)
    check_positive(name, "depth", depth)
    check_positive(name, "base_filters", base_filters)
    check_positive(name, "blocks_per_level", blocks_per_level)
    if stem_filters is not None:
        check_positive(name, "stem_filters", stem_filters)
    if stem_blocks is not None and (isinstance(stem_blocks, bool) or not isinstance(stem_blocks, int)
                                    or stem_blocks < 0):
        raise ConfigError(f"{name}: stem_blocks must be a whole number >= 0 (got {stem_blocks!r})")
    if not isinstance(final_block, bool):
        raise ConfigError(f"{name}: final_block must be true or false (got {final_block!r})")
    if upsample == "maxunpool" and not final_block:
        raise ConfigError(f"{name}: final_block=False shapes the strided U-Net's decoder; "
                          f"upsample='maxunpool' unpools to full resolution through every level")
    stride = 2
    if decoder_stride is not None:
        strides = tuple(2 ** k for k in range(1, max(2, depth)))  # the levels it can end at
        if isinstance(decoder_stride, bool) or decoder_stride not in strides:
            raise ConfigError(f"{name}: decoder_stride must be one of "
                              f"{', '.join(map(str, strides))} with depth={depth} "
                              f"(got {decoder_stride!r})")
        stride = int(decoder_stride)
        if stride != 2 and (upsample == "maxunpool" or stem == 1):
            raise ConfigError(f"{name}: decoder_stride shapes the strided U-Net with stem=2; "
                              f"upsample='maxunpool' and stem=1 decode to full resolution")
    check_choice(name, "stem", stem, (1, 2))
    check_choice(name, "merge", merge, ("concat", "add"))
    if head is not None:
        check_choice(name, "head", head, HEADS)
    rates = _dilation_rates(name, dilation)
    full_resolution = upsample == "maxunpool" or stem == 1  # the decoder ends at the input's size
    halvings = depth if upsample == "maxunpool" else depth - (stem == 1)
    inputs = model_input(name, input_size, channels, 2 ** halvings, num_classes)
    filters = [make_divisible(base_filters * 2 ** i * alpha) for i in range(depth)]
    if stem_filters is not None:
        filters[0] = stem_filters
    block_fn, bn = BLOCKS[block], {"momentum": bn_momentum}

    if upsample == "maxunpool":
        x = _maxunpool_unet(inputs, filters, block_fn, rates, skips, blocks_per_level, bn, merge,
                            stem_blocks)
    else:
        x = _strided_unet(inputs, filters, block_fn, rates, skips, blocks_per_level, upsample, bn,
                          stem, merge, stem_blocks, final_block, stride.bit_length() - 2)
    if full_resolution:
        if head is not None:
            raise ConfigError(f"{name}: head={head!r} upsamples a half-resolution head; with "
                              f"upsample='maxunpool' or stem=1 the head is at full resolution")
        logits = classifier(x, num_classes)
    elif head == "shuffle":
        logits = DepthToSpace(stride, name="head_shuffle")(
            classifier(x, stride ** 2 * num_classes, kernel_initializer=ICNR(stride)))
    elif head is None and upsample == "transpose":
        logits = layers.Conv2DTranspose(num_classes, stride, strides=stride, padding="same",
                                        name="head_logits_transpose")(x)
    else:  # a 1x1 conv commutes with resizing: classify first, resize less
        mode = head or upsample
        logits = layers.UpSampling2D(stride, interpolation=mode, name=f"head_{mode}")(
            classifier(x, num_classes))
    return keras.Model(inputs, probabilities(logits, num_classes), name=name)


HEADS = ("bilinear", "nearest", "shuffle")


def _first_level_blocks(level, blocks_per_level, stem_blocks):
    """Stride-1 blocks of an encoder level: after the stem, or after the level's first block."""
    if level:
        return blocks_per_level - 1
    return blocks_per_level if stem_blocks is None else stem_blocks


def _strided_unet(x, filters, block_fn, rates, skips, blocks_per_level, mode, bn, stem, merge,
                  stem_blocks, final_block, last=0):
    """Encoder with stride-2 downsampling; returns the decoder output at the resolution of level
    ``last`` (level 0: 1/``stem`` of the input's)."""
    features = []
    for level, width in enumerate(filters):
        if level == 0:
            x = conv_bn_act(x, width, 3, stem, "stem", **bn)
        else:
            x = block_fn(x, width, 2, f"enc{level}_b0", **bn)
        for b in range(1, 1 + _first_level_blocks(level, blocks_per_level, stem_blocks)):
            x = block_fn(x, width, 1, f"enc{level}_b{b}", **bn)
        features.append(x)
    x = _bottleneck(x, filters[-1], block_fn, rates, bn)
    for level in reversed(range(last, len(filters) - 1)):
        if skips and merge == "add" and mode != "transpose":  # a transpose projects as it upsamples
            x = conv_bn_act(x, filters[level], 1, 1, f"dec{level}_proj", **bn)
        x = upsample(x, mode, f"dec{level}_up", filters=filters[level])
        x = _merge(x, features[level], merge, f"dec{level}") if skips else x
        if level > last or final_block:
            x = ds_block(x, filters[level], 1, f"dec{level}_b0", **bn)
    return x


def _merge(x, skip, merge, prefix):
    if merge == "add":
        return layers.Add(name=f"{prefix}_add")([x, skip])
    return layers.Concatenate(name=f"{prefix}_concat")([x, skip])


def _maxunpool_unet(x, filters, block_fn, rates, skips, blocks_per_level, bn, merge, stem_blocks):
    """Encoder with 2x2 max-pooling; decoder unpools at the recorded positions (full resolution out)."""
    pools = []
    for level, width in enumerate(filters):
        if level == 0:
            x = conv_bn_act(x, width, 3, 1, "stem", **bn)
        else:
            x = block_fn(x, width, 1, f"enc{level}_b0", **bn)
        for b in range(1, 1 + _first_level_blocks(level, blocks_per_level, stem_blocks)):
            x = block_fn(x, width, 1, f"enc{level}_b{b}", **bn)
        source = x
        x = layers.MaxPooling2D(2, name=f"enc{level}_pool")(x)
        pools.append((source, x))
    x = _bottleneck(x, filters[-1], block_fn, rates, bn)
    for level in reversed(range(len(filters))):
        source, pooled = pools[level]
        if x.shape[-1] != filters[level]:
            x = conv_bn_act(x, filters[level], 1, 1, f"dec{level}_proj", **bn)
        x = MaxUnpool2D(name=f"dec{level}_unpool")([x, source, pooled])
        x = _merge(x, source, merge, f"dec{level}") if skips else x
        x = ds_block(x, filters[level], 1, f"dec{level}_b0", **bn)
    return x


def _bottleneck(x, width, block_fn, rates, bn):
    for i, rate in enumerate(rates):
        x = block_fn(x, width, 1, f"bottleneck_b{i}", dilation=rate, **bn)
    return x


def _dilation_rates(model: str, dilation) -> tuple[int, ...]:
    """``1`` -> no extra bottleneck block; ``d`` -> one block at rate d; a tuple -> one block per rate."""
    rates = (dilation,) if isinstance(dilation, int) and not isinstance(dilation, bool) else dilation
    try:
        rates = tuple(rates)
    except TypeError:
        rates = (None,)
    if not rates or any(isinstance(r, bool) or not isinstance(r, int) or r < 1 for r in rates):
        raise ConfigError(f"{model}: dilation must be an integer >= 1 or a list of them "
                          f"(got {dilation!r})")
    return () if rates == (1,) else rates


def unet(input_size=None, channels: int = 3, num_classes: int = 1, *, base: int = 64,
         depth: int = 4, batch_norm: bool = True, bn_momentum: float = 0.9) -> keras.Model:
    """The classic U-Net (Ronneberger et al., 2015) with 'same' padding.

    Per level two 3x3 convolutions + ReLU, then 2x2 max-pooling; ``base * 2**depth`` channels at the
    bottom; the decoder upsamples with a 2x2 stride-2 transposed convolution, concatenates the skip
    and applies two 3x3 convolutions. ``base=64, depth=4`` is the paper's network.
    ``batch_norm=True`` adds BatchNorm after each convolution (the common modern form; it trains in
    the few CPU minutes this project budgets, the paper's form does not).
    """
    name = "unet"
    check_positive(name, "base", base)
    check_positive(name, "depth", depth)
    inputs = model_input(name, input_size, channels, 2 ** depth, num_classes)

    def double_conv(x, width, prefix):
        for i in (1, 2):
            x = layers.Conv2D(width, 3, padding="same", use_bias=not batch_norm,
                              name=f"{prefix}_conv{i}")(x)
            if batch_norm:
                x = layers.BatchNormalization(momentum=bn_momentum, name=f"{prefix}_bn{i}")(x)
            x = layers.Activation("relu", name=f"{prefix}_relu{i}")(x)
        return x

    x, features = inputs, []
    for level in range(depth):
        x = double_conv(x, base * 2 ** level, f"enc{level}")
        features.append(x)
        x = layers.MaxPooling2D(2, name=f"enc{level}_pool")(x)
    x = double_conv(x, base * 2 ** depth, "bottom")
    for level in reversed(range(depth)):
        x = layers.Conv2DTranspose(base * 2 ** level, 2, strides=2, name=f"dec{level}_up")(x)
        x = layers.Concatenate(name=f"dec{level}_concat")([x, features[level]])
        x = double_conv(x, base * 2 ** level, f"dec{level}")
    return keras.Model(inputs, probabilities(classifier(x, num_classes), num_classes), name=name)
