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

from typing import Callable

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


def blend_window(height: int, width: int, overlap: int) -> np.ndarray:
    """(height, width) float64 weights: 1 in the middle, ramping down to a small positive value
    over ``overlap`` pixels at each edge."""
    def ramp(n):
        if overlap == 0:
            return np.ones(n)
        edge = np.minimum(np.arange(n) + 1, np.arange(n)[::-1] + 1) / (overlap + 1)
        return np.clip(edge, 1.0 / (overlap + 1), 1.0)

    return np.outer(ramp(height), ramp(width))


def predict_tiled(predict: Callable[[np.ndarray], np.ndarray], image: np.ndarray,
                  tile: tuple[int, int], overlap: int = 32, batch_size: int = 4) -> np.ndarray:
    """Probabilities (H, W, K) float32 of ``image`` (H, W, C) through ``predict`` (a batch of
    (N, th, tw, C) -> (N, th, tw, K)) on overlapping ``tile`` windows."""
    image = np.asarray(image, np.float32)
    height, width = image.shape[:2]
    th, tw = tile
    pad_h, pad_w = max(0, th - height), max(0, tw - width)
    if pad_h or pad_w:
        mode = "reflect" if pad_h < height and pad_w < width else "edge"
        image = np.pad(image, [(0, pad_h), (0, pad_w), (0, 0)], mode=mode)
    full_h, full_w = image.shape[:2]
    overlap = min(overlap, th - 1, tw - 1)
    corners = [(y, x) for y in tile_starts(full_h, th, overlap)
               for x in tile_starts(full_w, tw, overlap)]
    window = blend_window(th, tw, overlap)[..., None]
    total = weight = None
    for start in range(0, len(corners), batch_size):
        chunk = corners[start:start + batch_size]
        batch = np.stack([image[y:y + th, x:x + tw] for y, x in chunk])
        probs = np.asarray(predict(batch), np.float32)
        if total is None:
            total = np.zeros((full_h, full_w, probs.shape[-1]), np.float64)
            weight = np.zeros((full_h, full_w, 1), np.float64)
        for (y, x), p in zip(chunk, probs):
            total[y:y + th, x:x + tw] += window * p
            weight[y:y + th, x:x + tw] += window
    return (total / weight)[:height, :width].astype(np.float32)


def predict_image(model, image: np.ndarray, overlap: int = 32) -> np.ndarray:
    """Probabilities (H, W, K) of one image through an EdgeModel: whole when the model takes its
    size (or any size), tile by tile otherwise."""
    _, height, width, _ = model.input_shape
    if height is None or image.shape[:2] == (height, width):
        return model.predict(np.asarray(image, np.float32)[None])[0]
    return predict_tiled(model.predict, image, (height, width), overlap=overlap)


__all__ = ["blend_window", "predict_image", "predict_tiled", "tile_starts"]
