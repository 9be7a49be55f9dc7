"""tf.data input pipelines over a dataset in memory or on disk: crop, augment, normalise, batch.

Images leave the pipeline as float32 NHWC in [0, 1], masks as uint8 (N, H, W, 1) with 255 kept
for "unlabeled" (the losses and metrics leave it out).
"""

from __future__ import annotations

import numpy as np

from edgeseg._keras import tf
from edgeseg.data.source import SegData, StreamedData
from edgeseg.data.folders import UNLABELED


def _in_memory(data: SegData):
    """(image uint8, mask uint8 (H, W, 1)) pairs; stacked into one tensor when all share a size."""
    shapes = {image.shape for image in data.images}
    if len(shapes) == 1:
        return tf.data.Dataset.from_tensor_slices(
            (np.stack(data.images), np.stack(data.masks)[..., None]))
    signature = (tf.TensorSpec((None, None, data.channels), tf.uint8),
                 tf.TensorSpec((None, None, 1), tf.uint8))
    pairs = list(zip(data.images, data.masks))
    return tf.data.Dataset.from_generator(
        lambda: ((image, mask[..., None]) for image, mask in pairs), output_signature=signature)


def _decode_on_the_fly(data: StreamedData, indices):
    """Decode each index's files with the same Pillow reader as the in-memory path, in parallel."""
    def load(index):
        image, mask = data.sample(int(index))
        return image, mask[..., None]

    def decode(index):
        image, mask = tf.numpy_function(load, [index], (tf.uint8, tf.uint8), stateful=False)
        image.set_shape((None, None, data.channels))
        mask.set_shape((None, None, 1))
        return image, mask

    return indices.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def _fit_to(image, mask, size: int, random: bool, seed):
    """Pad (mask with 255) to at least ``size``, then crop ``size`` x ``size`` (random or centred)."""
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    pad_h, pad_w = tf.maximum(size - height, 0), tf.maximum(size - width, 0)
    paddings = [[pad_h // 2, pad_h - pad_h // 2], [pad_w // 2, pad_w - pad_w // 2], [0, 0]]
    image = tf.pad(image, paddings)
    mask = tf.pad(mask, paddings, constant_values=UNLABELED)
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    if random:
        top = tf.random.stateless_uniform((), seed, 0, height - size + 1, tf.int32)
        left = tf.random.stateless_uniform((), seed + 1, 0, width - size + 1, tf.int32)
    else:
        top, left = (height - size) // 2, (width - size) // 2
    return (image[top:top + size, left:left + size], mask[top:top + size, left:left + size])


def _augment(image, mask, seed):
    """Random left-right and up-down flips and a 90-degree rotation (square inputs), same for both."""
    flips = tf.random.stateless_uniform((3,), seed, 0, 2, tf.int32)
    rotation = tf.random.stateless_uniform((), seed + 2, 0, 4, tf.int32)
    both = tf.concat([image, mask], axis=-1)
    both = tf.cond(flips[0] > 0, lambda: tf.reverse(both, [1]), lambda: both)
    both = tf.cond(flips[1] > 0, lambda: tf.reverse(both, [0]), lambda: both)
    both = tf.image.rot90(both, rotation)
    return both[..., :-1], both[..., -1:]


def make_dataset(data: SegData, input_size: int, batch_size: int, *, training: bool,
                 augment: bool = True, seed: int = 0, repeat: bool = False) -> tf.data.Dataset:
    """Batches of (float32 images in [0, 1], uint8 masks) for ``fit``/``evaluate``.

    Training: shuffled every epoch, random crops of ``input_size`` (when images are larger),
    flips and 90-degree rotations. Evaluation: centred crops, fixed order, no augmentation.
    """
    if isinstance(data, StreamedData):  # shuffle the indices, then decode: memory stays small
        dataset = tf.data.Dataset.range(len(data))
        if training:
            dataset = dataset.shuffle(len(data), seed=seed, reshuffle_each_iteration=True)
        dataset = _decode_on_the_fly(data, dataset)
    else:
        dataset = _in_memory(data).cache()
        if training:
            dataset = dataset.shuffle(len(data), seed=seed, reshuffle_each_iteration=True)
    if training:
        if repeat:
            dataset = dataset.repeat()
        dataset = tf.data.Dataset.zip((dataset, tf.data.Dataset.random(seed=seed).batch(2)))
        dataset = dataset.map(lambda pair, s: _train_map(pair, s, input_size, augment),
                              num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    else:
        dataset = dataset.map(lambda image, mask: _eval_map(image, mask, input_size),
                              num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.batch(batch_size, drop_remainder=training).prefetch(tf.data.AUTOTUNE)


def _train_map(pair, seed, size, augment):
    image, mask = pair
    seed = tf.cast(seed % (2 ** 31), tf.int32)
    image, mask = _fit_to(image, mask, size, True, seed)
    if augment:
        image, mask = _augment(image, mask, seed + 7)
    return tf.cast(image, tf.float32) / 255.0, mask


def _eval_map(image, mask, size):
    image, mask = _fit_to(image, mask, size, False, None)
    return tf.cast(image, tf.float32) / 255.0, mask
