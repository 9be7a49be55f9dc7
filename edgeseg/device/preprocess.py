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

from typing import NamedTuple

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
    return _depth_of((_extent(np.asarray(image)) for image in images), norm)


def _extent(image: np.ndarray) -> tuple[int, float] | None:
    """(highest value, type maximum) of an integer image; None for a float or empty one."""
    if image.dtype == np.float32 or not image.size:
        return None
    return int(image.max()), type_max(image)


def _depth_of(extents, norm) -> tuple[int, float] | None:
    if norm.kind != "scale":
        return None
    highest, maximum = 0, None
    for extent in extents:
        if extent is None:
            return None
        highest, maximum = max(highest, extent[0]), extent[1]
    if maximum is None or highest >= maximum / 8:
        return None
    return highest, maximum


def _depth_words(highest: int, maximum: float) -> str:
    return (f"the images reach at most {highest} of their type's {maximum:g} "
            f"({highest / maximum:.1%})")


def dim_range_warning(images, norm, depth=None) -> str | None:
    """Why ``scale`` will show these raw images to a model nearly black (see :func:`_dim_depth`),
    or None when all is well; ``depth``: theirs, when the caller has read it already."""
    depth = depth or _dim_depth(images, norm)
    if depth is None:
        return None
    return (f"{_depth_words(*depth)}; scale normalisation divides by {depth[1]:g}, so the model "
            f"sees them nearly black: percentile normalisation scales each image by its own "
            f"range (train --normalize percentile, or --normalize percentile on this command)")


def intensity_stats(images, norm: Normalization, limit: int = 32,
                    pixels: int = 200_000) -> dict | None:
    """Per-channel 1st, 50th and 99th percentiles of images normalised as ``norm`` says (at most
    ``limit`` images, ``pixels`` pixels drawn evenly from them): what the model was trained on,
    for the card (``input_stats``), and what it is fed, to compare with it.

    Also how the images differ among themselves, which says how far a few images may lie from
    the rest by chance: ``images`` (how many were read) and ``per_image``, the mean and standard
    deviation over the images of each one's median (``p50_mean``, ``p50_sd``) and of the log of
    its 1-99% range (``log_range_mean``, ``log_range_sd``). Scenes of one colour each (a street
    at noon and at dusk) lie far from the pooled median one by one; fields of one stain do not.
    """
    return _stats([sample.values * a + b for sample in _read(images, (norm,), limit, pixels)
                   for a, b in sample.affines])


class _Sample(NamedTuple):
    values: np.ndarray  # (pixels, C) float64: an even draw of the raw image's pixels
    affines: tuple  # (a, b) of each normalisation asked for, from the whole image
    extent: tuple[int, float] | None  # see _extent


def _read(images, norms, limit: int, pixels: int) -> list[_Sample]:
    """Up to ``limit`` images, each read once and kept as ``pixels / limit`` of its pixels: the
    statistics of large images (a folder of camera frames) in bounded memory."""
    samples = []
    for index, image in enumerate(images):
        if index >= limit:
            break
        image = np.asarray(image)
        values = image.reshape(-1, image.shape[-1])
        step = max(1, len(values) * limit // pixels)
        samples.append(_Sample(values[::step].astype(np.float64),
                               tuple(affine(image, norm) for norm in norms), _extent(image)))
    return samples


def _stats(images: list[np.ndarray]) -> dict | None:
    """:func:`intensity_stats` of images already normalised and drawn, (pixels, C) each."""
    if not images:
        return None
    medians, ranges = [], []
    for values in images:
        low, mid, high = np.percentile(values, [1, 50, 99], axis=0)
        medians.append(mid)
        ranges.append(np.log(np.maximum(high - low, 1e-6)))
    low, mid, high = np.percentile(np.concatenate(images), [1, 50, 99], axis=0)

    def rounded(values):
        return [round(float(v), 5) for v in values]

    return {"p1": rounded(low), "p50": rounded(mid), "p99": rounded(high), "images": len(images),
            "per_image": {"p50_mean": rounded(np.mean(medians, axis=0)),
                          "p50_sd": rounded(np.std(medians, axis=0)),
                          "log_range_mean": rounded(np.mean(ranges, axis=0)),
                          "log_range_sd": rounded(np.std(ranges, axis=0))}}


def range_note(images, card: dict) -> str | None:
    """How far the images a model is fed lie from the range it was trained on (its card's
    ``input_stats``), after the normalisation its card (or the command line) says, in one
    sentence with the ``--normalize`` that brings them back; None when they fit. A card without
    the statistics (older, or not edgeseg's) falls back to :func:`dim_range_warning`.

    The images' median and range are judged against the training images' (more than a quarter of
    the training range away, under half or over twice as wide), and a difference counts only
    when it is more than so few images of the training kind would show by chance: three standard
    errors of the per-image means the card records (a single scene of one colour, from data
    whose scenes each have their own, is not out of range). Up to 32 images are read, once."""
    from edgeseg.device.card import normalization_of

    norm = normalization_of(card)
    samples = _read(images, (norm, Normalization()), 32, 200_000)  # scale: the meanstd units
    depth = _depth_of((sample.extent for sample in samples), norm)
    trained = card.get("input_stats")
    fed = _stats([sample.values * a + b for sample in samples for a, b in sample.affines[:1]])
    fallback = None if depth is None else dim_range_warning([], norm, depth)
    if not isinstance(trained, dict) or fed is None:
        return fallback
    try:
        low, mid, high = (np.asarray(trained[k], np.float64) for k in ("p1", "p50", "p99"))
        fed_low, fed_mid, fed_high = (np.asarray(fed[k], np.float64) for k in ("p1", "p50", "p99"))
    except (KeyError, TypeError, ValueError):
        return fallback
    if low.shape != fed_low.shape:
        return None  # other channels: the runtime says so
    spread = np.maximum(high - low, 1e-6)
    fed_spread = np.maximum(fed_high - fed_low, 1e-9)
    off = np.abs(fed_mid - mid) / spread  # the median's distance, in training ranges
    scale = fed_spread / spread
    chance_mid, chance_range = _by_chance(trained, fed, len(low))
    bad = ((off > 0.25) & ~chance_mid) | (((scale < 0.5) | (scale > 2)) & ~chance_range)
    if not bad.any():
        return None
    c = int(np.argmax(np.where(bad, off + np.abs(np.log(scale)), -1)))
    raw = _stats([sample.values * a + b for sample in samples for a, b in sample.affines[1:]])
    raw_low, raw_mid, raw_high = (np.asarray(raw[k], np.float64) for k in ("p1", "p50", "p99"))
    std = np.maximum(raw_high - raw_low, 1e-6) / spread
    mean = raw_mid - mid * std
    fix = "meanstd:" + ",".join(f"{m:.4g}" for m in mean) + "/" + \
        ",".join(f"{v:.4g}" for v in std)
    channel = f" (channel {c})" if len(low) > 1 else ""
    return ((f"{_depth_words(*depth)}; " if depth else "") +
            f"after {norm.kind} normalisation these images have a median of "
            f"{fed_mid[c]:.3f} and a 1-99% range of {fed_low[c]:.3f}-{fed_high[c]:.3f}{channel}; "
            f"the model was trained on {mid[c]:.3f} and {low[c]:.3f}-{high[c]:.3f} "
            f"(their range x{scale[c]:.2g} the training images'): its results on them are not to "
            f"be trusted; --normalize {fix} maps them onto the training range")


def _by_chance(trained: dict, fed: dict, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Per channel, whether the fed images' typical median and typical log range lie within three
    standard errors of the training images' (``per_image`` of both; the error of a mean of n
    images is sd / sqrt(n), on both sides). All False for a card without ``per_image``: the
    pooled rule alone."""
    none = np.zeros(channels, bool)
    ours, theirs = trained.get("per_image"), fed.get("per_image")
    try:
        means = {k: np.asarray(ours[k], np.float64) - np.asarray(theirs[k], np.float64)
                 for k in ("p50_mean", "log_range_mean")}
        sds = {k: np.asarray(ours[k], np.float64) for k in ("p50_sd", "log_range_sd")}
        k = 3.0 * np.sqrt(1.0 / fed["images"] + 1.0 / trained["images"])
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return none, none
    if any(v.shape != (channels,) for v in (*means.values(), *sds.values())):
        return none, none
    return (np.abs(means["p50_mean"]) <= k * sds["p50_sd"],
            np.abs(means["log_range_mean"]) <= k * sds["log_range_sd"])
