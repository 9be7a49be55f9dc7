"""tf.data input pipelines over a dataset in memory or on disk: crop, normalise, augment, batch.

Images leave the pipeline as float32 NHWC, normalised as the model's card will say (each whole
image's affine map from :func:`edgeseg.device.preprocess.affine`, applied to its crops: the same
numbers the device computes), masks as uint8 (N, H, W, 1) with 255 kept for "unlabeled" (the losses
and metrics leave it out). Outside an image (a crop larger than it) the image is 0 and the mask 255.
"""

from __future__ import annotations

import numpy as np

from edgeseg._keras import tf
from edgeseg.config import Augment
from edgeseg.device.card import Normalization
from edgeseg.device.data.datasets import SegData, StreamedData
from edgeseg.device.data.folders import UNLABELED
from edgeseg.device.preprocess import affine, normalize


def _affines(data: SegData, norm: Normalization) -> tuple[np.ndarray, np.ndarray]:
    pairs = [affine(image, norm) for image in data.images]
    return np.stack([a for a, _ in pairs]), np.stack([b for _, b in pairs])


def _in_memory(data: SegData, norm: Normalization):
    """(raw image, mask (H, W, 1), a, b); stacked into one tensor when all share a size and type."""
    a, b = _affines(data, norm)
    shapes = {(image.shape, image.dtype) for image in data.images}
    if len(shapes) == 1:
        return tf.data.Dataset.from_tensor_slices(
            (np.stack(data.images), np.stack(data.masks)[..., None], a, b))
    dtype = data.images[0].dtype if len({dt for _, dt in shapes}) == 1 else np.dtype(np.float32)
    signature = (tf.TensorSpec((None, None, data.channels), tf.as_dtype(dtype)),
                 tf.TensorSpec((None, None, 1), tf.uint8),
                 tf.TensorSpec((data.channels,), tf.float32),
                 tf.TensorSpec((data.channels,), tf.float32))
    items = list(zip(data.images, data.masks, a, b))
    return tf.data.Dataset.from_generator(
        lambda: ((image.astype(dtype), mask[..., None], ai, bi) for image, mask, ai, bi in items),
        output_signature=signature)


def _decode_on_the_fly(data: StreamedData, indices, norm: Normalization):
    """Decode and normalise each index's files with the same numpy code as the in-memory path,
    in parallel; the image comes out normalised (a = 1, b = 0)."""
    ones, zeros = np.ones(data.channels, np.float32), np.zeros(data.channels, np.float32)

    def load(index):
        image, mask = data.sample(int(index))
        return normalize(image, norm), mask[..., None], ones, zeros

    def decode(index):
        image, mask, a, b = tf.numpy_function(load, [index],
                                              (tf.float32, tf.uint8, tf.float32, tf.float32),
                                              stateful=False)
        image.set_shape((None, None, data.channels))
        mask.set_shape((None, None, 1))
        a.set_shape((data.channels,))
        b.set_shape((data.channels,))
        return image, mask, a, b

    return indices.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def _crop(image, mask, a, b, side, random: bool, seed):
    """A ``side`` x ``side`` window of the image, normalised (``x * a + b``), and of the mask.

    The window is placed in the image padded (centred) to at least ``side``: at random, or in the
    centre. Only the window's pixels are normalised; where it leaves the image, image 0 and mask 255.
    """
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    full_h, full_w = tf.maximum(height, side), tf.maximum(width, side)
    if random:
        top = tf.random.stateless_uniform((), seed, 0, full_h - side + 1, tf.int32)
        left = tf.random.stateless_uniform((), seed + 1, 0, full_w - side + 1, tf.int32)
    else:
        top, left = (full_h - side) // 2, (full_w - side) // 2
    y, x = top - (full_h - height) // 2, left - (full_w - width) // 2  # in the unpadded image
    y0, x0 = tf.maximum(y, 0), tf.maximum(x, 0)
    y1, x1 = tf.minimum(y + side, height), tf.minimum(x + side, width)
    window = tf.cast(image[y0:y1, x0:x1], tf.float32) * a + b
    paddings = [[y0 - y, y + side - y1], [x0 - x, x + side - x1], [0, 0]]
    return (tf.pad(window, paddings),
            tf.pad(mask[y0:y1, x0:x1], paddings, constant_values=UNLABELED))


def _zoomed_crop(image, mask, a, b, size, aug: Augment, seed):
    """A random crop of ``size``, zoomed by a log-uniform factor in [1/(1+s), 1+s]: a window of
    ``size / factor`` resized to ``size`` (image bilinear, mask nearest: 255 stays 255)."""
    if not aug.scale:
        return _crop(image, mask, a, b, size, True, seed)
    log_max = float(np.log1p(aug.scale))
    factor = tf.exp(tf.random.stateless_uniform((), seed + 3, -log_max, log_max))
    side = tf.maximum(tf.cast(tf.round(size / factor), tf.int32), 1)
    window, labels = _crop(image, mask, a, b, side, True, seed)
    window = tf.image.resize(window, (size, size), "bilinear")
    labels = tf.image.resize(labels, (size, size), "nearest")
    return tf.reshape(window, (size, size, -1)), tf.reshape(tf.cast(labels, tf.uint8),
                                                             (size, size, 1))


def _geometric(image, mask, aug: Augment, seed):
    """Random flips and 90-degree rotations (square crops), the same for image and mask."""
    if not (aug.flip or aug.rotate):
        return image, mask
    flips = tf.random.stateless_uniform((2,), seed, 0, 2, tf.int32)
    both = tf.concat([image, tf.cast(mask, tf.float32)], axis=-1)
    if aug.flip:
        both = tf.cond(flips[0] > 0, lambda: tf.reverse(both, [1]), lambda: both)
        both = tf.cond(flips[1] > 0, lambda: tf.reverse(both, [0]), lambda: both)
    if aug.rotate:
        both = tf.image.rot90(both, tf.random.stateless_uniform((), seed + 2, 0, 4, tf.int32))
    return both[..., :-1], tf.cast(both[..., -1:], tf.uint8)


def _photometric(image, aug: Augment, seed):
    """Brightness, contrast, gamma and noise on the normalised image (the mask is untouched)."""
    u = tf.random.stateless_uniform((5,), seed + 5, -1.0, 1.0)
    if aug.gamma:  # monotone on the normalised range: |x| ** g with its sign
        gamma = tf.exp(aug.gamma * u[0])
        image = tf.sign(image) * tf.pow(tf.abs(image) + 1e-12, gamma)
    if aug.contrast:
        mean = tf.reduce_mean(image)
        image = (image - mean) * (1.0 + aug.contrast * u[1]) + mean
    if aug.brightness:
        image = image + aug.brightness * u[2]
    if aug.noise:
        sigma = aug.noise * (u[3] + 1.0) / 2.0
        image = image + sigma * tf.random.stateless_normal(tf.shape(image), seed + 9)
    return image


def make_dataset(data: SegData, input_size: int, batch_size: int, *, training: bool,
                 augment: Augment | bool = True, normalization: Normalization | None = None,
                 seed: int = 0, repeat: bool = False) -> tf.data.Dataset:
    """Batches of (float32 images, uint8 masks) for ``fit``/``evaluate``.

    Training: shuffled every epoch, random crops of ``input_size`` (zoomed, with ``augment``),
    flips, 90-degree rotations and photometric changes as ``augment`` says (``True``: the
    defaults, ``False``: none). Evaluation: centred crops, fixed order, no augmentation.
    ``normalization``: how raw pixels become inputs (default ``scale``: [0, 1]).
    """
    norm = normalization or Normalization()
    aug = Augment() if augment is True else Augment.off() if augment is False else augment
    if isinstance(data, StreamedData):  # shuffle the indices, then decode: memory stays small
        dataset = tf.data.Dataset.range(len(data))
        if training:
            dataset = dataset.shuffle(len(data), seed=seed, reshuffle_each_iteration=True)
        dataset = _decode_on_the_fly(data, dataset, norm)
    else:
        dataset = _in_memory(data, norm).cache()
        if training:
            dataset = dataset.shuffle(len(data), seed=seed, reshuffle_each_iteration=True)
    if training:
        if repeat:
            dataset = dataset.repeat()
        dataset = tf.data.Dataset.zip((dataset, tf.data.Dataset.random(seed=seed).batch(2)))
        dataset = dataset.map(lambda item, s: _train_map(item, s, input_size, aug),
                              num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    else:
        dataset = dataset.map(lambda image, mask, a, b: _crop(image, mask, a, b, input_size,
                                                              False, None),
                              num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.batch(batch_size, drop_remainder=training).prefetch(tf.data.AUTOTUNE)


def _train_map(item, seed, size, aug: Augment):
    image, mask, a, b = item
    seed = tf.cast(seed % (2 ** 31), tf.int32)
    image, mask = _zoomed_crop(image, mask, a, b, size, aug, seed)
    image, mask = _geometric(image, mask, aug, seed + 7)
    if aug.brightness or aug.contrast or aug.gamma or aug.noise:
        image = _photometric(image, aug, seed + 11)
    return image, mask
