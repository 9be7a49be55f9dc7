"""Sliding-window inference: a model with a fixed input runs on images of any size.

The image is covered by tiles of the model's size that overlap by ``overlap`` pixels; each tile's
probabilities are weighted by a window that is highest in its centre (pixels near a tile's edge
see less context) and never zero, and the weighted sum is divided by the summed weights. Sums are
kept in float64, so where every tile agrees (an identity-like model) the blend gives back exactly
the tiles' float32 values. An image smaller than a tile is padded (by reflection) and cropped back.
numpy only.

    >>> probs = predict_tiled(model.predict, image, tile=(256, 256), overlap=32)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Callable, Iterator

import numpy as np


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of ``tile`` pixels that cover ``[0, length)`` with at least
    ``overlap`` pixels shared by neighbours; the last tile ends at ``length`` exactly."""
    if tile < 1:
        raise ValueError(f"tile must be >= 1 (got {tile})")
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must be in [0, tile) (got {overlap} for tile {tile})")
    if length <= tile:
        return [0]
    step = tile - overlap
    count = -(-(length - tile) // step) + 1  # ceil: enough tiles to reach the end
    # spread the tiles evenly, so the overlap is shared fairly and never below the one asked for
    return [round(i * (length - tile) / (count - 1)) for i in range(count)]


def pad_to(array: np.ndarray, height: int, width: int, fill=None) -> np.ndarray:
    """``array`` (H, W, ...) padded at its bottom and right edges to ``height`` x ``width``: the
    one padding rule of every path that feeds a model (whole images, tiles, calibration and
    parity inputs). Images are mirrored (reflection, or the edge repeated where the image is
    shorter than the padding); with ``fill`` (masks: unlabeled), filled with it."""
    pad_h, pad_w = height - array.shape[0], width - array.shape[1]
    if pad_h < 0 or pad_w < 0:
        raise ValueError(f"cannot pad {array.shape[:2]} to {(height, width)}")
    if not (pad_h or pad_w):
        return array
    widths = [(0, pad_h), (0, pad_w)] + [(0, 0)] * (array.ndim - 2)
    if fill is not None:
        return np.pad(array, widths, constant_values=fill)
    mode = "reflect" if pad_h < array.shape[0] and pad_w < array.shape[1] else "edge"
    return np.pad(array, widths, mode=mode)


def blend_window(height: int, width: int, overlap: int) -> np.ndarray:
    """(height, width) float64 weights: 1 in the middle, ramping down to a small positive value
    over ``overlap`` pixels at each edge."""
    def ramp(n):
        if overlap == 0:
            return np.ones(n)
        edge = np.minimum(np.arange(n) + 1, np.arange(n)[::-1] + 1) / (overlap + 1)
        return np.clip(edge, 1.0 / (overlap + 1), 1.0)

    return np.outer(ramp(height), ramp(width))


def tile_bands(predict: Callable[[np.ndarray], np.ndarray], image: np.ndarray,
               tile: tuple[int, int], overlap: int = 32, batch_size: int = 4,
               affine=None) -> Iterator[tuple[int, np.ndarray]]:
    """Blended probabilities of ``image`` (H, W, C), band by band: yields ``(row, probs)`` with
    ``probs`` (rows, W, K) float32 for image rows ``row`` onwards, top to bottom.

    Only one row of tiles is held at a time: the sums cover at most a tile's height of the image,
    and a band is given out as soon as no later tile can reach it. Tiles are cut from ``image`` as
    they are needed. Peak memory beyond the image: about ``tile height x W x (K + 1) x 8`` bytes of sums
    and one batch of tiles. ``affine``: ``(a, b)`` of :func:`edgeseg.device.preprocess.affine`,
    applied to each tile as it is cut (the image's normalisation, computed on the whole image), so
    the image can stay in its own 8- or 16-bit type.
    """
    image = np.asarray(image)
    height, width = image.shape[:2]
    th, tw = tile
    # smaller than a tile: padding copies an image no bigger than a tile
    image = pad_to(image, max(th, height), max(tw, width))
    full_h, full_w = image.shape[:2]
    overlap = min(overlap, th - 1, tw - 1)
    rows, columns = tile_starts(full_h, th, overlap), tile_starts(full_w, tw, overlap)
    window = blend_window(th, tw, overlap)[..., None]
    top = 0  # the first row the sums hold
    total = weight = None
    for index, y in enumerate(rows):
        corners = [(y, x) for x in columns]
        for start in range(0, len(corners), batch_size):
            chunk = corners[start:start + batch_size]
            batch = np.stack([image[y:y + th, x:x + tw] for y, x in chunk]).astype(np.float32)
            if affine is not None:
                batch = batch * affine[0] + affine[1]
            probs = np.asarray(predict(batch), np.float32)
            if total is None:
                total = np.zeros((th, full_w, probs.shape[-1]), np.float64)
                weight = np.zeros((th, full_w, 1), np.float64)
            for (ty, x), p in zip(chunk, probs):
                total[ty - top:ty - top + th, x:x + tw] += window * p
                weight[ty - top:ty - top + th, x:x + tw] += window
        done = rows[index + 1] if index + 1 < len(rows) else full_h  # no later tile reaches above
        finished = min(done, height) - top
        if finished > 0:
            yield top, (total[:finished, :width] / weight[:finished, :width]).astype(np.float32)
        shift = done - top  # slide the sums down to start at the next tile row
        total = np.concatenate([total[shift:], np.zeros_like(total[:shift])])
        weight = np.concatenate([weight[shift:], np.zeros_like(weight[:shift])])
        top = done


def predict_tiled(predict: Callable[[np.ndarray], np.ndarray], image: np.ndarray,
                  tile: tuple[int, int], overlap: int = 32, batch_size: int = 4) -> np.ndarray:
    """Probabilities (H, W, K) float32 of ``image`` (H, W, C) through ``predict`` (a batch of
    (N, th, tw, C) -> (N, th, tw, K)) on overlapping ``tile`` windows."""
    return np.concatenate([band for _, band in tile_bands(predict, image, tile, overlap,
                                                          batch_size)])


def predict_labels(predict: Callable[[np.ndarray], np.ndarray], image: np.ndarray,
                   tile: tuple[int, int], overlap: int = 32, batch_size: int = 4,
                   affine=None) -> np.ndarray:
    """Class ids (H, W) uint8 of a raw ``image`` (H, W, C), band by band: the only full-size
    arrays are the image and the labels (see :func:`tile_bands` for the rest)."""
    from edgeseg.device.metrics import labels_from_probs

    labels = np.zeros(image.shape[:2], np.uint8)
    for row, band in tile_bands(predict, image, tile, overlap, batch_size, affine):
        labels[row:row + len(band)] = labels_from_probs(band[None])[0]
    return labels


def model_tile(model, tile=None) -> tuple[int, int]:
    """The window a model runs on: its fixed input, else ``tile`` (a side or (height, width);
    default: its card's size, else 256)."""
    from edgeseg.device.card import size_of

    _, height, width, _ = model.input_shape
    if height is not None and width is not None:
        return height, width
    if tile is not None:
        return (int(tile), int(tile)) if isinstance(tile, int) else tuple(int(v) for v in tile)
    return size_of(model.card) or (256, 256)


def resized_input(model, image: np.ndarray, tile=None):
    """A ``resize``-fit model's view of an image: the whole image scaled to its input, normalised."""
    from edgeseg.device.card import normalization_of
    from edgeseg.device.preprocess import normalize, resize

    height, width = model_tile(model, tile)
    return normalize(resize(image, height, width), normalization_of(model.card))


# A model that takes any size runs an image whole up to this many pixels (no seams), tile by tile
# beyond (bounded memory): the same rule in every path, so eval, the harness and predict agree.
WHOLE_LIMIT = 1024 * 1024


def runs_whole(model, image: np.ndarray) -> bool:
    """Whether :func:`predict_image` runs ``image`` in one piece (its size is the model's, or the
    model takes any size and the image is at most :data:`WHOLE_LIMIT` pixels)."""
    _, height, width, _ = model.input_shape
    if height is None or width is None:
        return image.shape[0] * image.shape[1] <= WHOLE_LIMIT
    return image.shape[:2] == (height, width)


def fed_channels(model, image: np.ndarray) -> np.ndarray:
    """A grey image (one channel) repeated to RGB for a model that takes 3 channels, as every
    path feeds it; any other image as it is (a mismatch is the model's to refuse)."""
    if image.ndim == 3 and image.shape[-1] == 1 and model.input_shape[-1] == 3:
        return np.repeat(image, 3, axis=-1)
    return image


def predict_image(model, image: np.ndarray, overlap: int = 32, tile=None,
                  normalization=None) -> np.ndarray:
    """Probabilities (H, W, K) of one raw image (H, W, C; uint8, uint16 or float32) through an
    EdgeModel, fed as its card says: normalised (:mod:`edgeseg.device.preprocess`), then resized
    whole (``input_fit: resize``), or run whole (:func:`runs_whole`; a model that takes any size
    gets the image padded to a multiple of 32), or tile by tile (:func:`model_tile`)."""
    from edgeseg.device.card import input_fit_of, normalization_of
    from edgeseg.device.preprocess import affine, resize

    norm = normalization or normalization_of(model.card)
    image = fed_channels(model, image)
    if input_fit_of(model.card) == "resize":
        probs = model.predict(resized_input(model, image, tile)[None])[0]
        return resize(probs, *image.shape[:2])
    a, b = affine(image, norm)
    if not runs_whole(model, image):
        return np.concatenate([band for _, band in tile_bands(
            model.predict, image, model_tile(model, tile), overlap, affine=(a, b))])
    height, width = image.shape[:2]
    if model.input_shape[1] is None:
        image = pad_to(image, height + -height % 32, width + -width % 32)
    probs = model.predict((image.astype(np.float32) * a + b)[None])[0]
    return probs[:height, :width]


def segment_labels(model, image: np.ndarray, overlap: int = 32, tile=None,
                   batch_size: int = 4) -> np.ndarray:
    """Class ids (H, W) uint8 of one raw image, fed as :func:`predict_image` feeds it, but band
    by band when it is tiled: the only full-size arrays are then the image and the labels."""
    from edgeseg.device.card import input_fit_of, normalization_of
    from edgeseg.device.metrics import labels_from_probs
    from edgeseg.device.preprocess import affine

    image = fed_channels(model, image)
    if input_fit_of(model.card) == "resize" or runs_whole(model, image):
        return labels_from_probs(predict_image(model, image, overlap, tile)[None])[0]
    return predict_labels(model.predict, image, model_tile(model, tile), overlap, batch_size,
                          affine(image, normalization_of(model.card)))


__all__ = ["WHOLE_LIMIT", "blend_window", "fed_channels", "model_tile", "pad_to",
           "predict_image", "predict_labels", "predict_tiled", "runs_whole", "segment_labels",
           "tile_bands", "tile_starts"]
