"""Images for calibration (int8 ranges) and for parity checks, from a built-in dataset or a folder.

Both are normalised as the model's card says (:mod:`edgeseg.preprocess`), and cut as the model
will see them: crops at the images' own resolution for a model that runs tile by tile, whole
images resized to the input for one that resizes. Calibration never uses images that score the
model: for the data a model was trained on it draws from the training split (built-in: the
training indices; folder: the split its training config recorded), and parity uses the held-out
ones. A calibration folder may hold images alone (no masks are needed to calibrate): its
``images/`` sub-folder when there is one, else the images in it. numpy + Pillow only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeseg.card import Normalization, parse_size
from edgeseg.config import DataConfig
from edgeseg.data import folders, source
from edgeseg.data.folders import DataError
from edgeseg.preprocess import normalize, resize


def calibration_images(data: str, *, size, channels: int, count: int = 100, seed: int = 0,
                       normalization: Normalization | None = None, fit: str = "tile",
                       trained_on: DataConfig | None = None) -> np.ndarray:
    """``count`` model inputs (N, height, width, channels) float32, drawn reproducibly; ``size``
    is a side or (height, width).

    Built-in datasets give training-distribution samples (the first ``count``); the folder the
    model was trained on (``trained_on``) its training split; another folder a seeded choice of
    its images.
    """
    if count < 1:
        raise DataError(f"--calib-samples must be >= 1 (got {count})")
    norm = normalization or Normalization()
    size = parse_size(size)
    if source.is_builtin(data):  # drawn square at the longer side, cut to the input
        images = source.builtin(data, count, max(size), seed, 0, channels).arrays(
            normalization=norm)[0]
        return images[:, :size[0], :size[1]]
    if trained_on is not None and _same_folder(data, trained_on.source):
        train, _ = source.load_data(trained_on)
        order = np.random.default_rng(seed).permutation(len(train))
        raws = (train.sample(int(i))[0] for i in order)
        return _cut(raws, len(train), size, count, seed, norm, fit)
    paths = _image_files(Path(data))
    order = np.random.default_rng(seed).permutation(len(paths))
    raws = (folders.read_raw(paths[i], channels) for i in order)
    return _cut(raws, len(paths), size, count, seed, norm, fit)


def calibration_source(data: str, trained_on: DataConfig | None) -> str:
    """Which images :func:`calibration_images` draws from ``data``, in words (for the card)."""
    if source.is_builtin(data):
        return "training indices of the built-in dataset"
    if trained_on is not None and _same_folder(data, trained_on.source):
        return "the training split of the folder the model was trained on"
    return "a seeded choice of the folder's images"


def _cut(raws, available: int, size: tuple[int, int], count: int, seed: int, norm,
         fit: str) -> np.ndarray:
    """``count`` inputs from raw images: each normalised whole, then resized (``resize`` fit) or
    cropped at random (``tile``); with fewer images than ``count``, each gives several crops."""
    rng = np.random.default_rng(seed + 1)
    per_image = -(-count // max(1, available))
    inputs = []
    for raw in raws:
        if fit == "resize":  # as the model will see it: resized, then normalised
            inputs.append(normalize(resize(raw, *size), norm))
        else:
            image = normalize(raw, norm)
            for _ in range(per_image):
                inputs.append(_random_crop(image, size, rng))
        if len(inputs) >= count:
            break
    return np.stack(inputs[:count])


def _random_crop(image: np.ndarray, size: tuple[int, int], rng) -> np.ndarray:
    height, width = size
    pad_h, pad_w = max(0, height - image.shape[0]), max(0, width - image.shape[1])
    if pad_h or pad_w:  # smaller than the input: padded with 0, as training pads
        image = np.pad(image, [(pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2),
                               (0, 0)])
    top = int(rng.integers(0, image.shape[0] - height + 1))
    left = int(rng.integers(0, image.shape[1] - width + 1))
    return image[top:top + height, left:left + width]


def _same_folder(a: str, b: str | None) -> bool:
    if b is None or source.is_builtin(a) or source.is_builtin(b):
        return False
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


def _image_files(folder: Path) -> list[Path]:
    if not folder.exists():
        raise DataError(f"{folder}: no such folder, and not a built-in dataset "
                        f"({', '.join(source.synthetic.SYNTHETIC)})")
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder")
    where = folder / "images" if (folder / "images").is_dir() else folder
    paths = folders.image_files(where)
    if not paths and where == folder:
        try:  # a labelled dataset in another layout: its images
            paths = [sample.image for sample in folders.find_samples(folder).samples]
        except DataError:
            paths = []
    if not paths:
        raise DataError(f"{where}: no images for calibration "
                        f"({', '.join(s.lstrip('.') for s in folders.IMAGE_SUFFIXES)})")
    return paths


def labelled_samples(data: str, *, size, channels: int, num_classes: int, count: int,
                     seed: int = 0, normalization: Normalization | None = None,
                     trained_on: DataConfig | None = None):
    """(images, masks or None) at ``size`` (a side or (height, width)): held-out labelled samples
    when ``data`` has masks (built-in: past every training index; the folder the model was
    trained on: its validation split), else images. Non-square inputs are cut from square
    samples at the longer side."""
    norm = normalization or Normalization()
    height, width = parse_size(size)
    side = max(height, width)

    def cut(arrays):
        images, masks = arrays
        return images[:, :height, :width], None if masks is None else masks[:, :height, :width]

    if source.is_builtin(data):
        held_out = source.load_eval_data(data, size=side, channels=channels, count=count,
                                         seed=seed)
        return cut(held_out.arrays(side, normalization=norm))
    if trained_on is not None and _same_folder(data, trained_on.source):
        _, val = source.load_data(trained_on)
        return cut(val.arrays(side, limit=count, normalization=norm))
    try:
        labelled = source.load_eval_data(data, size=side, channels=channels,
                                         num_classes=max(2, num_classes))
    except DataError:
        return calibration_images(data, size=(height, width), channels=channels, count=count,
                                  seed=seed, normalization=norm), None
    return cut(labelled.arrays(side, limit=count, normalization=norm))
