"""Masks and overlays as images (numpy + Pillow): what `predict` writes and the report shows."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

UNLABELED = 255
# Distinct, colour-blind-friendly colours for the first classes (index = class id).
COLOURS = np.array([(0, 0, 0), (230, 25, 75), (60, 180, 75), (0, 130, 200), (255, 225, 25),
                    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60),
                    (250, 190, 212), (0, 128, 128), (170, 110, 40)], np.uint8)


def palette() -> list[int]:
    """A 256-entry PNG palette: the class colours, grey beyond them, white for 255 (unlabeled)."""
    colours = np.full((256, 3), 128, np.uint8)
    colours[:len(COLOURS)] = COLOURS
    colours[UNLABELED] = 255
    return colours.ravel().tolist()


def mask_image(mask: np.ndarray) -> Image.Image:
    """A class-id mask (H, W) as a palette PNG image: readable as ids, viewable as colours."""
    image = Image.fromarray(np.asarray(mask, np.uint8), mode="P")
    image.putpalette(palette())
    return image


def overlay(image: np.ndarray, mask: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """RGB uint8 (H, W, 3): the image (float [0, 1], grey or RGB) with class colours blended in
    where the mask is not background; unlabeled pixels are left as they are."""
    image = np.asarray(image, np.float32)
    rgb = np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image[..., :3]
    rgb = np.clip(rgb * 255.0, 0, 255)
    colours = np.asarray(palette(), np.float32).reshape(256, 3)[mask]
    paint = ((mask > 0) & (mask != UNLABELED))[..., None]
    return np.where(paint, (1 - alpha) * rgb + alpha * colours, rgb).astype(np.uint8)


DIFFERS = (255, 0, 255)  # magenta: the variant's class differs from the reference's
WRONG = (255, 200, 0)  # amber: the variant agrees with the reference, and both miss the truth


def disagreement(image: np.ndarray, labels: np.ndarray, reference: np.ndarray,
                 truth: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
    """RGB uint8 (H, W, 3): the image in grey with the pixels where ``labels`` differ from the
    ``reference``'s in magenta and, where ground truth is given, the pixels both get wrong in
    amber; and the counts ``{"differs", "wrong", "pixels"}`` (unlabeled truth pixels left out).
    A variant's regression is then seen where it is, not only counted."""
    image = np.asarray(image, np.float32)
    grey = image.mean(axis=-1, keepdims=True) if image.shape[-1] > 1 else image
    rgb = np.repeat(np.clip(grey * 255.0 * 0.6, 0, 255), 3, axis=-1)
    labelled = np.ones(labels.shape, bool) if truth is None else truth != UNLABELED
    differs = (labels != reference) & labelled
    wrong = np.zeros_like(differs) if truth is None else \
        (labels == reference) & (labels != truth) & labelled
    rgb[differs] = DIFFERS
    rgb[wrong] = WRONG
    return rgb.astype(np.uint8), {"differs": int(differs.sum()), "wrong": int(wrong.sum()),
                                  "pixels": int(labelled.sum())}


def png_data_uri(array: np.ndarray, width: int | None = None) -> str:
    """An image as a ``data:image/png;base64,...`` URI (for a self-contained HTML page)."""
    image = Image.fromarray(np.asarray(array))
    if width and image.width > width:
        image = image.resize((width, round(image.height * width / image.width)), Image.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


__all__ = ["COLOURS", "DIFFERS", "WRONG", "disagreement", "mask_image", "overlay", "palette",
           "png_data_uri"]
