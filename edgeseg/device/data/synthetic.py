"""Built-in datasets, made from a seed (no download): fluorescence nuclei and coloured shapes.

Both are numpy only (no TensorFlow) and bit-identical for a seed: sample ``i`` of a dataset depends
only on ``(seed, i)``, so any count can be drawn and a prefix is the smaller dataset.

    >>> image, mask = nuclei_sample(size=128, seed=0, index=0)
    >>> image.shape, image.dtype, mask.shape, sorted(set(mask.ravel().tolist()))
    ((128, 128, 1), dtype('float32'), (128, 128), [0, 1])
"""

from __future__ import annotations

import numpy as np

from edgeseg.device.data.imageops import gaussian_blur, smooth_noise

UNLABELED = 255
NUCLEI_CLASSES = ("background", "nucleus")
SHAPES_CLASSES = ("background", "disc", "box", "triangle")


def _rng(seed: int, index: int, kind: int) -> np.random.Generator:
    return np.random.default_rng([seed, index, kind])


def nuclei_sample(size: int = 256, seed: int = 0, index: int = 0):
    """One fluorescence-microscopy-like image (H, W, 1) float32 in [0, 1] and its binary mask (H, W).

    Modelled on the fluorescence fields of the 2018 Data Science Bowl (stage 1): a near-black
    background under uneven illumination (a vignette and a tilt); many nuclei, clustered, touching
    and overlapping, whose size follows the field's magnification; brightness spread over an order
    of magnitude within a field, so the dimmest nuclei stand only a little above the background;
    chromatin texture and a brighter rim; some nuclei out of focus (individually blurred); a few
    small, saturating mitotic nuclei; then optical blur, shot noise and read noise. Sizes are in
    pixels, not fractions of the image, so crops and larger images look alike.
    """
    rng = _rng(seed, index, 1)
    h = w = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)

    background = 0.01 + 0.05 * rng.random() * smooth_noise(rng, (h, w), cells=3)
    cy, cx = rng.uniform(0, h), rng.uniform(0, w)
    vignette = 1.0 - 0.6 * rng.random() * ((yy - cy) ** 2 + (xx - cx) ** 2) / (h * h + w * w)
    tilt_angle, tilt = rng.uniform(0, 2 * np.pi), 0.3 * rng.random()
    ramp = (np.cos(tilt_angle) * xx + np.sin(tilt_angle) * yy) / max(h, w)
    illumination = vignette * (1.0 - tilt * (ramp - ramp.min()) / max(np.ptp(ramp), 1e-6))
    signal = np.zeros((h, w), np.float32)
    mask = np.zeros((h, w), np.uint8)

    magnification = float(np.exp(rng.uniform(np.log(0.85), np.log(1.8))))
    level = rng.uniform(0.35, 0.9)  # the field's brightest nuclei
    density = rng.uniform(0.5, 2.5)
    count = max(1, int(rng.poisson(density * 30 * (h * w) / (256 * 256) / magnification ** 2)))
    clusters = rng.uniform(0, [h, w], size=(max(1, count // 6), 2))
    for _ in range(count):
        if rng.random() < 0.5:  # nuclei cluster: touching and overlapping neighbours
            centre = clusters[rng.integers(len(clusters))] + rng.normal(0, 14 * magnification, 2)
        else:
            centre = rng.uniform(0, [h, w])
        radius = rng.uniform(5.0, 12.0) * magnification
        brightness = level * 10 ** rng.uniform(-0.7, 0.0)  # dim ones a little above background
        focus = rng.uniform(0.8, 2.0) * magnification ** 0.5 if rng.random() < 0.1 else 0.0
        _add_nucleus(rng, signal, mask, yy, xx, centre, radius, radius * rng.uniform(0.55, 1.0),
                     brightness=brightness, texture=rng.uniform(0.1, 0.45), defocus=focus)
    for _ in range(rng.integers(0, 4)):  # mitotic: small, condensed, saturating
        radius = rng.uniform(2.0, 3.5) * magnification
        _add_nucleus(rng, signal, mask, yy, xx, rng.uniform(0, [h, w]), radius,
                     radius * rng.uniform(0.6, 1.0), brightness=rng.uniform(0.9, 1.2), texture=0.05)

    image = (background + signal) * illumination
    image = gaussian_blur(image, rng.uniform(0.5, 1.2))
    photons = rng.uniform(100, 500)  # shot noise: Poisson in photon counts
    image = rng.poisson(np.clip(image, 0, None) * photons) / photons
    image = image + rng.normal(0, rng.uniform(0.002, 0.012), image.shape)
    return np.clip(image, 0, 1).astype(np.float32)[..., None], mask


def _add_nucleus(rng, signal, mask, yy, xx, centre, a, b, *, brightness, texture, defocus=0.0):
    theta = rng.uniform(0, np.pi)
    cos, sin = np.cos(theta), np.sin(theta)
    r0 = int(max(a, b) + 4 + 3 * defocus)
    y0, x0 = int(centre[0]), int(centre[1])
    ys = slice(max(0, y0 - r0), min(signal.shape[0], y0 + r0 + 1))
    xs = slice(max(0, x0 - r0), min(signal.shape[1], x0 + r0 + 1))
    if ys.start >= ys.stop or xs.start >= xs.stop:
        return
    dy, dx = yy[ys, xs] - centre[0], xx[ys, xs] - centre[1]
    u, v = dx * cos + dy * sin, -dx * sin + dy * cos
    wobble = 1.0 + 0.08 * np.sin(3 * np.arctan2(v, u) + rng.uniform(0, 6.3))  # not a perfect ellipse
    dist = np.sqrt((u / a) ** 2 + (v / b) ** 2) / wobble  # 1.0 on the boundary
    edge = 1.0 / (1.0 + np.exp((dist - 1.0) * max(a, b) * 1.5))  # soft, ~1 px wide edge
    chromatin = 1.0 + texture * (smooth_noise(rng, dist.shape, cells=max(2, int(a / 2.5))) - 0.5) * 2
    rim = 1.0 - 0.25 * rng.random() * np.clip(1.0 - dist, 0, 1)  # brighter rim, dimmer centre
    nucleus = brightness * edge * chromatin * rim
    if defocus:  # out of focus: its light spread, its outline (the mask) where the nucleus is
        nucleus = gaussian_blur(nucleus, defocus)
    signal[ys, xs] = np.maximum(signal[ys, xs], nucleus)
    mask[ys, xs] |= (dist <= 1.0).astype(np.uint8)


def shapes_sample(size: int = 256, seed: int = 0, index: int = 0, border: int = 2):
    """One RGB scene (H, W, 3) float32 in [0, 1] and its class-id mask (H, W) uint8.

    Classes: 0 background, 1 disc, 2 box, 3 triangle, on a textured background; objects of random
    colour, size, rotation and shading overlap one another. As in VOC-style annotations, a band of
    ``border`` pixels along every object outline is 255 ("unlabeled") and takes no part in losses
    or metrics.
    """
    rng = _rng(seed, index, 2)
    h = w = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = rng.random(3) * 0.6 + 0.2
    image = base[None, None, :] * (0.7 + 0.6 * smooth_noise(rng, (h, w), cells=4)[..., None])
    image += 0.12 * (smooth_noise(rng, (h, w), cells=max(4, size // 6))[..., None] - 0.5)
    stripes = 0.05 * np.sin((xx * np.cos(rng.uniform(0, 3.2)) + yy * np.sin(rng.uniform(0, 3.2)))
                            / rng.uniform(2, 6))
    image = image + stripes[..., None]
    labels = np.zeros((h, w), np.uint8)

    scale = size / 256
    for _ in range(rng.integers(2, 7)):
        kind = int(rng.integers(1, 4))
        centre = rng.uniform(0.1, 0.9, 2) * [h, w]
        radius = rng.uniform(14, 40) * scale
        angle = rng.uniform(0, 2 * np.pi)
        dy, dx = yy - centre[0], xx - centre[1]
        if kind == 1:
            inside = dy ** 2 + dx ** 2 <= radius ** 2
        elif kind == 2:
            u = dx * np.cos(angle) + dy * np.sin(angle)
            v = -dx * np.sin(angle) + dy * np.cos(angle)
            inside = (np.abs(u) <= radius * 0.85) & (np.abs(v) <= radius * rng.uniform(0.45, 0.85))
        else:
            inside = np.ones((h, w), bool)
            for k in range(3):  # inside the three edges of an equilateral triangle
                t = angle + k * 2 * np.pi / 3
                inside &= dx * np.cos(t) + dy * np.sin(t) <= radius * 0.5
        colour = rng.random(3)
        shade = 0.75 + 0.5 * smooth_noise(rng, (h, w), cells=3)[..., None]
        image = np.where(inside[..., None], colour[None, None, :] * shade, image)
        labels[inside] = kind

    image = gaussian_blur(image, 0.7) + rng.normal(0, 0.02, image.shape)
    mask = labels.copy()
    if border:
        mask[_boundary(labels, border)] = UNLABELED
    return np.clip(image, 0, 1).astype(np.float32), mask


def _boundary(labels: np.ndarray, width: int) -> np.ndarray:
    """Pixels within ``width`` of a change of label (object outlines), like VOC's void band."""
    edge = np.zeros(labels.shape, bool)
    edge[:-1, :] |= labels[:-1, :] != labels[1:, :]
    edge[1:, :] |= labels[:-1, :] != labels[1:, :]
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    edge[:, 1:] |= labels[:, :-1] != labels[:, 1:]
    grown = edge.copy()
    for _ in range(width - 1):
        step = grown.copy()
        step[1:, :] |= grown[:-1, :]
        step[:-1, :] |= grown[1:, :]
        step[:, 1:] |= grown[:, :-1]
        step[:, :-1] |= grown[:, 1:]
        grown = step
    return grown


SYNTHETIC = {
    "synthetic-nuclei": (nuclei_sample, NUCLEI_CLASSES, 1),
    "synthetic-shapes": (shapes_sample, SHAPES_CLASSES, 3),
}


def synthetic_arrays(name: str, count: int, size: int, seed: int):
    """``count`` samples of a built-in dataset as (images (N, H, W, C) float32, masks (N, H, W) uint8)."""
    sample, _, channels = SYNTHETIC[name]
    images = np.empty((count, size, size, channels), np.float32)
    masks = np.empty((count, size, size), np.uint8)
    for i in range(count):
        images[i], masks[i] = sample(size=size, seed=seed, index=i)
    return images, masks
