"""The tf.data pipeline: crops, augmentation that moves image and mask together, batching."""

from __future__ import annotations

import numpy as np
import pytest

from edgeseg.device.data.datasets import SegData


@pytest.fixture(scope="module")
def make_dataset(tf):
    from edgeseg.tfdata import make_dataset

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
    batch_images, batch_masks = next(iter(make_dataset(data, 32, 4, training=True, seed=1,
                                                       augment=False)))
    assert batch_images.shape == (4, 32, 32, 3) and batch_images.dtype.name == "float32"
    assert batch_masks.shape == (4, 32, 32, 1) and batch_masks.dtype.name == "uint8"
    assert 0.0 <= float(batch_images.numpy().min()) and float(batch_images.numpy().max()) <= 1.0


GEOMETRIC = dict(scale=0.0, brightness=0.0, contrast=0.0, gamma=0.0, noise=0.0)


def test_crops_flips_and_rotations_move_image_and_mask_together(make_dataset):
    from edgeseg.config import Augment

    data = _coded()
    seen = set()
    for images, masks in make_dataset(data, 24, 6, training=True, seed=2,
                                      augment=Augment(**GEOMETRIC)):
        images, masks = images.numpy(), masks.numpy()
        np.testing.assert_array_equal(np.round(images[..., 0] * 255).astype(np.uint8),
                                      masks[..., 0])
        seen.update(int(m[0, 0, 0]) for m in masks)
    assert len(seen) > 1  # random crops: not always the same corner


def test_zoom_keeps_unlabeled_pixels_unlabeled_and_invents_no_class(make_dataset):
    from edgeseg.config import Augment

    rng = np.random.default_rng(0)
    masks = tuple(rng.choice(np.array([0, 2, 255], np.uint8), (40, 40)) for _ in range(4))
    images = tuple(np.repeat(m[..., None], 3, -1) for m in masks)  # the image encodes the label
    data = SegData("zoom", images, masks, ("a", "b", "c"), 3)
    zoomed = make_dataset(data, 32, 4, training=True, seed=5,
                          augment=Augment(**{**GEOMETRIC, "scale": 0.5}))
    plain = make_dataset(data, 32, 4, training=True, seed=5, augment=Augment(**GEOMETRIC))
    (_, labels), = zoomed.take(1)
    (_, unzoomed), = plain.take(1)
    assert set(np.unique(labels.numpy())) <= {0, 2, 255}
    assert (labels.numpy() != unzoomed.numpy()).mean() > 0.1  # the zoom changed the crops


def test_photometric_augmentation_changes_images_not_masks_and_repeats_with_the_seed(make_dataset):
    from edgeseg.config import Augment

    data = _coded()
    plain = Augment(**GEOMETRIC)
    strong = Augment(brightness=0.3, contrast=0.3, gamma=0.3, noise=0.05, scale=0.0)
    (a_images, a_masks), = make_dataset(data, 32, 6, training=True, seed=3, augment=plain).take(1)
    (b_images, b_masks), = make_dataset(data, 32, 6, training=True, seed=3, augment=strong).take(1)
    (c_images, _), = make_dataset(data, 32, 6, training=True, seed=3, augment=strong).take(1)
    np.testing.assert_array_equal(a_masks.numpy(), b_masks.numpy())  # same crops and turns
    assert np.abs(a_images.numpy() - b_images.numpy()).mean() > 0.01
    np.testing.assert_array_equal(b_images.numpy(), c_images.numpy())  # seeded


def test_percentile_normalisation_of_16_bit_images_matches_the_numpy_path(make_dataset):
    from edgeseg.device.card import Normalization

    rng = np.random.default_rng(1)
    images = tuple((rng.random((40, 40, 1)) * 3000 + 200).astype(np.uint16) for _ in range(3))
    masks = tuple(np.zeros((40, 40), np.uint8) for _ in range(3))
    data = SegData("deep", images, masks, ("bg", "fg"), 1)
    norm = Normalization("percentile")
    batch, _ = next(iter(make_dataset(data, 32, 3, training=False, normalization=norm)))
    want, _ = data.arrays(32, normalization=norm)  # what eval, the harness and predict compute
    np.testing.assert_array_equal(batch.numpy(), want)
    assert -0.05 < want.min() < 0.05 and 0.95 < want.max() < 1.05


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


def _folder(tmp_path, count=6, size=40):
    from edgeseg.device.data.writer import write_synthetic

    return write_synthetic("synthetic-shapes", tmp_path / "shapes", count=count, size=size, seed=3)


def test_a_folder_past_the_cache_limit_is_streamed_with_the_same_batches(make_dataset, tmp_path):
    from edgeseg.config import DataConfig
    from edgeseg.device.data.datasets import StreamedData
    from edgeseg.device.data.roles import split

    folder = _folder(tmp_path)
    cfg = DataConfig(str(folder), input_size=32, mode="crop", val_fraction=0.34)
    held, _ = split(cfg)
    streamed, _ = split(DataConfig(**{**cfg.to_dict(), "cache_mb": 0}))
    assert isinstance(held, SegData) and isinstance(streamed, StreamedData)
    assert streamed.class_names == held.class_names and len(streamed) == len(held)
    for training in (False, True):
        a = list(make_dataset(held, 32, 2, training=training, seed=4))
        b = list(make_dataset(streamed, 32, 2, training=training, seed=4))
        for (ia, ma), (ib, mb) in zip(a, b):
            np.testing.assert_array_equal(ia.numpy(), ib.numpy())
            np.testing.assert_array_equal(ma.numpy(), mb.numpy())


def test_a_file_that_breaks_while_streaming_is_named(tmp_path):
    from edgeseg.config import DataConfig, ModelConfig, TrainConfig
    from edgeseg.device.data.folders import DataError
    from edgeseg.train import fit

    folder = _folder(tmp_path, count=8, size=32)
    cfg = TrainConfig(data=DataConfig(str(folder), input_size=32, cache_mb=0, val_fraction=0.25),
                      model=ModelConfig("mobile_unet", {"alpha": 0.25}), epochs=1, batch_size=2)
    # headers intact, pixel data gone: found only when the image is decoded during training
    for image in sorted((folder / "images").iterdir()):
        data = image.read_bytes()
        image.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"images/\d+\.png: cannot read image"):
        fit(cfg, tmp_path / "out", verbose=0)
