"""Images for calibration (int8 ranges) and for parity checks, from a built-in dataset or a folder.

A calibration folder may hold images alone (no masks are needed to calibrate): its ``images/``
sub-folder when there is one, else the images in it. numpy + Pillow only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from edgeseg.data import folders, source
from edgeseg.data.folders import DataError


def calibration_images(data: str, *, size: int, channels: int, count: int = 100,
                       seed: int = 0) -> np.ndarray:
    """``count`` images (N, size, size, channels) float32 in [0, 1], drawn reproducibly.

    Built-in datasets give training-distribution samples (the first ``count``); a folder gives a
    seeded choice of its images, each resized to ``size`` x ``size``.
    """
    if count < 1:
        raise DataError(f"--calib-samples must be >= 1 (got {count})")
    if source.is_builtin(data):
        return source.builtin(data, count, size, seed, 0, channels).arrays()[0]
    paths = _image_files(Path(data))
    chosen = sorted(np.random.default_rng(seed).permutation(len(paths))[:count].tolist())
    images = []
    for index in chosen:
        image = folders.read_image(paths[index], channels)
        pil = Image.fromarray(image[..., 0] if channels == 1 else image)
        image = np.asarray(pil.resize((size, size), Image.BILINEAR))
        images.append(image[..., None] if channels == 1 else image)
    return np.stack(images).astype(np.float32) / 255.0


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


def labelled_samples(data: str, *, size: int, channels: int, num_classes: int, count: int,
                     seed: int = 0):
    """(images, masks or None): held-out labelled samples when ``data`` has masks, else images."""
    if source.is_builtin(data):
        held_out = source.load_eval_data(data, size=size, channels=channels, count=count,
                                         seed=seed)
        return held_out.arrays(size)
    try:
        labelled = source.load_eval_data(data, size=size, channels=channels,
                                         num_classes=max(2, num_classes))
    except DataError:
        return calibration_images(data, size=size, channels=channels, count=count, seed=seed), None
    return labelled.arrays(size, limit=count)
