"""The tf.data pipeline: crops, augmentation that moves image and mask together, batching."""

from __future__ import annotations

import numpy as np
import pytest

from edgeseg.data.source import SegData


@pytest.fixture(scope="module")
def make_dataset(tf):
    from edgeseg.data.pipeline import make_dataset

    return make_dataset


def _coded(n=6, h=40, w=48):
    """Images whose pixel values encode their own position, masks that encode the same."""
    ys, xs = np.mgrid[0:h, 0:w]
    code = ((ys * w + xs) % 251).astype(np.uint8)
    images = tuple(np.stack([code, code, np.full_like(code, i)], -1) for i in range(n))
    masks = tuple(code.copy() for _ in range(n))
    return SegData("coded", images, masks, tuple(f"c{i}" for i in range(251)), 3)


def test_training_batches_are_float_images_and_uint8_masks(make_dataset):
    data = _coded()
    batch_images, batch_masks = next(iter(make_dataset(data, 32, 4, training=True, seed=1)))
    assert batch_images.shape == (4, 32, 32, 3) and batch_images.dtype.name == "float32"
    assert batch_masks.shape == (4, 32, 32, 1) and batch_masks.dtype.name == "uint8"
    assert 0.0 <= float(batch_images.numpy().min()) and float(batch_images.numpy().max()) <= 1.0


def test_crops_flips_and_rotations_move_image_and_mask_together(make_dataset):
    data = _coded()
    seen = set()
    for images, masks in make_dataset(data, 24, 6, training=True, seed=2, augment=True):
        images, masks = images.numpy(), masks.numpy()
        np.testing.assert_array_equal(np.round(images[..., 0] * 255).astype(np.uint8),
                                      masks[..., 0])
        seen.update(int(m[0, 0, 0]) for m in masks)
    assert len(seen) > 1  # random crops: not always the same corner


def test_evaluation_is_centred_and_in_order(make_dataset):
    data = _coded(n=3)
    images, masks = next(iter(make_dataset(data, 32, 8, training=False)))
    assert images.shape[0] == 3
    np.testing.assert_array_equal(images.numpy()[:, 0, 0, 2] * 255, [0, 1, 2])
    want_images, want_masks = data.arrays(32)  # the numpy evaluation path cuts the same crops
    np.testing.assert_allclose(images.numpy(), want_images, atol=1e-6)
    np.testing.assert_array_equal(masks.numpy()[..., 0], want_masks)


def test_small_images_are_padded_with_unlabeled_masks(make_dataset):
    data = _coded(n=2, h=20, w=20)
    _, masks = next(iter(make_dataset(data, 32, 2, training=False)))
    masks = masks.numpy()[..., 0]
    assert (masks[:, :6, :] == 255).all() and (masks[:, 6:26, 6:26] != 255).any()


def test_images_of_different_sizes_are_batched_after_cropping(make_dataset):
    a, b = _coded(n=1, h=40, w=48), _coded(n=1, h=36, w=36)
    data = SegData("mixed", a.images + b.images, a.masks + b.masks, a.class_names, 3)
    images, _ = next(iter(make_dataset(data, 32, 2, training=True, seed=0)))
    assert images.shape == (2, 32, 32, 3)
