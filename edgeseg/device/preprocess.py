"""Raw pixels -> a model's input, as its card says (numpy only: the same code on host and device).

Training, evaluation, the harness, ``predict`` and int8 calibration all normalise through
:func:`normalize`, so a model sees the same numbers wherever it runs. Every normalisation of
:class:`edgeseg.device.card.Normalization` is an affine map per image and channel, ``x * a + b``:
:func:`affine` gives ``(a, b)`` (the tf.data pipeline applies it to crops of a whole image, the
sliding window to tiles), :func:`normalize` applies it.

Images are (H, W, C) arrays of their decoded type: uint8, uint16 (16-bit PNG/TIFF) or float32.

    >>> import numpy as np
    >>> from edgeseg.device.card import Normalization
    >>> image = np.array([[[0], [1000], [2000], [4000]]], np.uint16)
    >>> normalize(image, Normalization("percentile", 0, 100))[..., 0]
    array([[0.  , 0.25, 0.5 , 1.  ]], dtype=float32)
    >>> normalize(image, Normalization())[..., 0].round(4)
    array([[0.    , 0.0153, 0.0305, 0.061 ]], dtype=float32)
"""

from __future__ import annotations

import numpy as np

from edgeseg.device.card import Normalization

SPAN_FLOOR = 0.01  # the least percentile span, as a share of the image's range above it


def type_max(image: np.ndarray) -> float:
    """What ``scale`` divides by: the integer type's maximum, or a float image's own (at least 1)."""
    if np.issubdtype(image.dtype, np.integer):
        return float(np.iinfo(image.dtype).max)
    return max(float(np.max(image, initial=0.0)), 1.0)


def percentiles(image: np.ndarray, qs) -> np.ndarray:
    """``np.percentile(image, qs)`` (linear interpolation), from a histogram for 8- and 16-bit
    images: exact, and no sorted float copy of a large image."""
    qs = np.asarray(qs, np.float64)
    if image.dtype not in (np.uint8, np.uint16):
        return np.percentile(image, qs).astype(np.float64)
    counts = np.cumsum(np.bincount(image.ravel(), minlength=256))
    n = int(counts[-1])
    position = qs / 100.0 * (n - 1)
    below = np.floor(position).astype(np.int64)
    above = np.minimum(below + 1, n - 1)
    value_below = np.searchsorted(counts, below, side="right")  # the k-th smallest value
    value_above = np.searchsorted(counts, above, side="right")
    return value_below + (position - below) * (value_above - value_below)


def affine(image: np.ndarray, norm: Normalization) -> tuple[np.ndarray, np.ndarray]:
    """``(a, b)``, float32 (C,) each: the normalised image is ``image * a + b``."""
    channels = image.shape[-1]
    if norm.kind == "percentile":
        low, high = percentiles(image, (norm.low, norm.high))
        # at least 1% of the image's own range above the low percentile (a dark field with a few
        # bright pixels would reach 1e9 otherwise); relative, so the same image in 8 and 16 bits
        # normalises alike
        top = float(np.max(image, initial=0))
        span = max(float(high - low), SPAN_FLOOR * (top - low), 1e-6)
        a, b = np.full(channels, 1.0 / span), np.full(channels, -low / span)
    elif norm.kind == "meanstd":
        mean, std = _per_channel(norm.mean, channels), _per_channel(norm.std, channels)
        a, b = 1.0 / (type_max(image) * std), -mean / std
    elif norm.kind == "none":
        a, b = np.ones(channels), np.zeros(channels)
    else:
        a, b = np.full(channels, 1.0 / type_max(image)), np.zeros(channels)
    return a.astype(np.float32), b.astype(np.float32)


def normalize(image: np.ndarray, norm: Normalization) -> np.ndarray:
    """The image as the model's float32 input."""
    a, b = affine(image, norm)
    return image.astype(np.float32) * a + b


def display_affine(image: np.ndarray, norm: Normalization) -> tuple[np.ndarray, np.ndarray]:
    """``(a, b)`` that show an image as the model sees it, in [0, 1] once clipped: its own
    normalisation for ``scale`` and ``percentile``, plain scaling for ``meanstd`` (whose inputs are
    centred on 0) and ``none`` (raw values)."""
    return affine(image, norm if norm.kind not in ("meanstd", "none") else Normalization())


def _per_channel(values, channels: int) -> np.ndarray:
    values = np.asarray(values, np.float64)
    if values.size == 1:
        return np.full(channels, float(values[0]))
    if values.size != channels:
        from edgeseg.device.errors import EdgesegError

        raise EdgesegError(f"--normalize meanstd gives {values.size} values for {channels}-channel "
                           f"images")
    return values


def resize(image: np.ndarray, height: int, width: int, nearest: bool = False) -> np.ndarray:
    """An (H, W, C) image of any type resized to ``height`` x ``width`` (bilinear, or nearest for
    masks and labels), in its own type."""
    from PIL import Image

    if image.shape[:2] == (height, width):
        return image
    method = Image.NEAREST if nearest else Image.BILINEAR
    planes = []
    for c in range(image.shape[-1]):
        plane = image[..., c]
        if plane.dtype == np.uint8:
            planes.append(np.asarray(Image.fromarray(plane).resize((width, height), method)))
        else:  # 16-bit and float: Pillow's 32-bit float mode, rounded back for integer types
            out = np.asarray(Image.fromarray(plane.astype(np.float32)).resize((width, height),
                                                                            method))
            if np.issubdtype(image.dtype, np.integer):
                info = np.iinfo(image.dtype)
                out = np.clip(np.round(out), info.min, info.max)
            planes.append(out.astype(image.dtype))
    return np.stack(planes, axis=-1)


__all__ = ["SPAN_FLOOR", "affine", "dim_range_warning", "display_affine", "intensity_stats",
           "normalize", "range_note",
           "percentiles", "resize",
           "type_max"]


def _dim_depth(images, norm) -> tuple[int, float] | None:
    """(the highest value, the type's maximum) when ``scale`` (pixel / type maximum) divides these
    raw images by far more than they reach (12-bit data in 16-bit files: 0-4095 of 0-65535); None
    otherwise. Float images and other normalisations are never dim."""
    if norm.kind != "scale":
        return None
    highest, maximum = 0, None
    for image in images:
        image = np.asarray(image)
        if image.dtype == np.float32 or not image.size:
            return None
        maximum = type_max(image)
        highest = max(highest, int(image.max()))
    if maximum is None or highest >= maximum / 8:
        return None
    return highest, maximum


def _depth_words(highest: int, maximum: float) -> str:
    return (f"the images reach at most {highest} of their type's {maximum:g} "
            f"({highest / maximum:.1%})")


def dim_range_warning(images, norm) -> str | None:
    """Why ``scale`` will show these raw images to a model nearly black (see :func:`_dim_depth`),
    or None when all is well."""
    depth = _dim_depth(images, norm)
    if depth is None:
        return None
    return (f"{_depth_words(*depth)}; scale normalisation divides by {depth[1]:g}, so the model "
            f"sees them nearly black: percentile normalisation scales each image by its own "
            f"range (train --normalize percentile, or --normalize percentile on this command)")


def intensity_stats(images, norm: Normalization, limit: int = 32,
                    pixels: int = 200_000) -> dict | None:
    """Per-channel 1st, 50th and 99th percentiles of images normalised as ``norm`` says (at most
    ``limit`` images, ``pixels`` pixels drawn evenly from them): what the model was trained on,
    for the card (``input_stats``), and what it is fed, to compare with it."""
    samples = []
    for index, image in enumerate(images):
        if index >= limit:
            break
        values = normalize(np.asarray(image), norm).reshape(-1, np.asarray(image).shape[-1])
        step = max(1, len(values) * limit // pixels)
        samples.append(values[::step])
    if not samples:
        return None
    stacked = np.concatenate(samples).astype(np.float64)
    low, mid, high = np.percentile(stacked, [1, 50, 99], axis=0)
    return {"p1": [round(float(v), 5) for v in low], "p50": [round(float(v), 5) for v in mid],
            "p99": [round(float(v), 5) for v in high]}


def range_note(images, card: dict) -> str | None:
    """How far the images a model is fed lie from the range it was trained on (its card's
    ``input_stats``), after the normalisation its card (or the command line) says, in one
    sentence with the ``--normalize`` that brings them back; None when they fit. A card without
    the statistics (older, or not edgeseg's) falls back to :func:`dim_range_warning`."""
    from edgeseg.device.card import normalization_of

    images = list(images)
    norm = normalization_of(card)
    trained = card.get("input_stats")
    if not isinstance(trained, dict) or not images:
        return dim_range_warning(images, norm)
    fed = intensity_stats(images, norm)
    try:
        low, mid, high = (np.asarray(trained[k], np.float64) for k in ("p1", "p50", "p99"))
        fed_low, fed_mid, fed_high = (np.asarray(fed[k], np.float64) for k in ("p1", "p50", "p99"))
    except (KeyError, TypeError, ValueError):
        return dim_range_warning(images, norm)
    if low.shape != fed_low.shape:
        return None  # other channels: the runtime says so
    spread = np.maximum(high - low, 1e-6)
    fed_spread = np.maximum(fed_high - fed_low, 1e-9)
    off = np.abs(fed_mid - mid) / spread  # the median's distance, in training ranges
    scale = fed_spread / spread
    bad = (off > 0.25) | (scale < 0.5) | (scale > 2)
    if not bad.any():
        return None
    c = int(np.argmax(np.where(bad, off + np.abs(np.log(scale)), -1)))
    raw = intensity_stats(images, Normalization())  # pixel / type maximum: the meanstd units
    raw_low, raw_mid, raw_high = (np.asarray(raw[k], np.float64) for k in ("p1", "p50", "p99"))
    std = np.maximum(raw_high - raw_low, 1e-6) / spread
    mean = raw_mid - mid * std
    fix = "meanstd:" + ",".join(f"{m:.4g}" for m in mean) + "/" + \
        ",".join(f"{v:.4g}" for v in std)
    channel = f" (channel {c})" if len(low) > 1 else ""
    depth = _dim_depth(images, norm)
    return ((f"{_depth_words(*depth)}; " if depth else "") +
            f"after {norm.kind} normalisation these images have a median of "
            f"{fed_mid[c]:.3f} and a 1-99% range of {fed_low[c]:.3f}-{fed_high[c]:.3f}{channel}; "
            f"the model was trained on {mid[c]:.3f} and {low[c]:.3f}-{high[c]:.3f} "
            f"(their range x{scale[c]:.2g} the training images'): its results on them are not to "
            f"be trusted; --normalize {fix} maps them onto the training range")
