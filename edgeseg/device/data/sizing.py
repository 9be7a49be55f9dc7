"""How a folder's images reach a model: native-resolution crops, or whole images resized.

Crops keep the images' own resolution, and the trained model then runs on any image tile by tile
(``input_fit: tile``), as microscopy and satellite pipelines do. That fails when the objects are
larger than a crop: a model that never sees a whole car cannot learn its outline. So ``auto``
measures the objects on the masks (the length of the runs of labelled pixels along rows and
columns) and resizes whole images to the input only when the typical object is larger than it
(``input_fit: resize``: every image is then resized at inference too), unless the labelled
regions span the images (land cover, tissue: learned from texture, so crops). numpy only.

    >>> mask = np.zeros((300, 300), np.uint8); mask[100:250, 50:280] = 1
    >>> int(object_extent([mask]))
    230
    >>> choose_mode([mask], (300, 300), input_size=128)[0]
    'resize'
"""

from __future__ import annotations

import numpy as np

from edgeseg.device.data.folders import UNLABELED

# The share of object pixels whose run is at most the extent: the typical large object, not the
# single largest.
EXTENT_QUANTILE = 0.9
# Regions as wide as this share of the image's short side span it: land cover, tissue, sky
# ("stuff", not objects) is learned from texture at its own resolution, so crops, not resizing.
SPANNING = 0.9


def _runs(labels: np.ndarray) -> np.ndarray:
    """Lengths of the runs of one non-zero class along each row of ``labels``."""
    padded = np.zeros((labels.shape[0], labels.shape[1] + 1), labels.dtype)
    padded[:, :-1] = labels
    flat = padded.ravel()
    change = np.flatnonzero(np.diff(flat) != 0) + 1
    starts = np.concatenate([[0], change])
    lengths = np.diff(np.concatenate([starts, [flat.size]]))
    return lengths[flat[starts] != 0]


def object_extent(masks) -> float:
    """The size in pixels of the objects in ``masks`` (class ids, 0 background, 255 unlabeled):
    the pixel-weighted 90th percentile of the lengths of object runs along rows and columns; 0
    when there are no objects."""
    lengths = []
    for mask in masks:
        labels = np.where(mask == UNLABELED, 0, mask)
        lengths += [_runs(labels), _runs(labels.T)]
    runs = np.sort(np.concatenate(lengths)) if lengths else np.zeros(0)
    if not runs.size:
        return 0.0
    weights = np.cumsum(runs) / runs.sum()  # each run weighs its pixels
    return float(runs[np.searchsorted(weights, EXTENT_QUANTILE)])


def choose_mode(masks, image_size: tuple[int, int], input_size: int) -> tuple[str, str]:
    """(``crop`` or ``resize``, why) for training on images of about ``image_size`` (h, w, the
    median) whose objects ``masks`` show."""
    extent = object_extent(masks)
    height, width = image_size
    if extent >= SPANNING * min(height, width):  # regions across the image: texture, not shapes
        return "crop", (f"labelled regions span the images (about {extent:.0f} px of "
                        f"{height}x{width}): random crops at the images' own resolution, tiled "
                        f"at inference")
    if extent > input_size and max(height, width) > input_size:
        return "resize", (f"objects of about {extent:.0f} px do not fit {input_size}-px crops: "
                          f"whole {height}x{width} images resized to {input_size}x{input_size}, "
                          f"and at inference too")
    if max(height, width) < input_size:
        return "crop", (f"{height}x{width} images, smaller than the {input_size}-px input: "
                        f"padded at their own resolution (the padding unlabeled), tiled at "
                        f"inference")
    return "crop", (f"objects of about {extent:.0f} px fit {input_size}-px crops: random crops of "
                    f"{height}x{width} images at their own resolution, tiled at inference")


__all__ = ["choose_mode", "object_extent"]
