"""A dataset by name or path, decoded into memory as uint8 arrays (numpy only, no TensorFlow).

    >>> train, val = load_data(DataConfig("synthetic-nuclei", n_train=8, n_val=4, input_size=64))
    >>> len(train), train.channels, train.num_classes, train.class_names
    (8, 1, 1, ('background', 'nucleus'))
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from edgeseg.config import DataConfig
from edgeseg.data import folders, synthetic
from edgeseg.data.folders import UNLABELED, DataError

# Built-in validation samples are drawn from indices far past any training count: never the same.
VAL_OFFSET = 1_000_000  # built-in validation samples: training scores and selects on them
TEST_OFFSET = 2_000_000  # built-in test samples: what eval, bench, run, peers and sweep score on


class _Samples:
    """What every dataset offers: names, channels, ``len``, ``sample(i)`` and evaluation arrays."""

    name: str
    class_names: tuple[str, ...]
    channels: int
    layout: str

    @property
    def num_classes(self) -> int:
        """Model outputs: 1 (a sigmoid) for background/foreground, else one per class."""
        return 1 if len(self.class_names) == 2 else len(self.class_names)

    def sample(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def __iter__(self):
        return (self.sample(i) for i in range(len(self)))

    @property
    def dtype(self) -> np.dtype:
        """The images' decoded type: uint8, uint16 (16-bit files) or float32."""
        return self.sample(0)[0].dtype if len(self) else np.dtype(np.uint8)

    def arrays(self, size: int | None = None, limit: int | None = None, normalization=None):
        """(images float32 (N, H, W, C), masks uint8 (N, H, W)) for evaluation.

        Each whole image is normalised (``normalization``, default ``scale``: [0, 1]) and then,
        with ``size``, centre-cropped (or padded: image with 0, mask with 255) to ``size`` x
        ``size``, as the evaluation pipeline does; without, all must share a size.
        ``limit``: the first samples only.
        """
        from edgeseg.card import Normalization
        from edgeseg.preprocess import normalize

        norm = normalization or Normalization()
        images, masks = [], []
        for index in range(len(self) if limit is None else min(limit, len(self))):
            image, mask = self.sample(index)
            image = normalize(image, norm)
            if size is not None:
                image = center_fit(image, size, 0)
                mask = center_fit(mask[..., None], size, UNLABELED)[..., 0]
            images.append(image)
            masks.append(mask)
        return np.stack(images), np.stack(masks)


@dataclass(frozen=True)
class SegData(_Samples):
    """A dataset held in memory: images (H, W, C) as decoded (uint8, or uint16/float32 for deeper
    files) and masks (H, W) uint8 class ids (255 = unlabeled)."""

    name: str
    images: tuple[np.ndarray, ...]
    masks: tuple[np.ndarray, ...]
    class_names: tuple[str, ...]
    channels: int
    layout: str = "built-in"
    fit: str = "tile"  # how a trained model takes images: "tile" (crops) or "resize"
    fit_note: str = ""  # why (see edgeseg.data.sizing)
    sources: tuple = ()  # a folder's samples (folders.Sample), to decode again at their own size

    def __len__(self) -> int:
        return len(self.images)

    def sample(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        return self.images[index], self.masks[index]


@dataclass(frozen=True)
class StreamedData(_Samples):
    """A folder too large to hold in memory: each sample is decoded from disk when it is used.

    Pairing, image/mask sizes and class ids were checked when it was made; a file that breaks
    while training still raises a DataError naming it.
    """

    name: str
    found: folders.FolderSet
    samples: tuple[folders.Sample, ...]
    class_names: tuple[str, ...]
    channels: int
    resize_to: tuple[int, int] | None
    layout: str = "generic"
    fit: str = "tile"
    fit_note: str = ""

    def __len__(self) -> int:
        return len(self.samples)

    def sample(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        sample = self.samples[index]
        image, mask = folders.load_sample(sample, self.layout, self.channels, self.resize_to)
        folders.check_class_id(folders.top_class_id(mask), sample, len(self.class_names))
        return image, mask


def center_fit(array: np.ndarray, size: int, fill: int) -> np.ndarray:
    """Centre-crop an (H, W, C) array to ``size`` x ``size``, padding a short side with ``fill`` first."""
    height, width = array.shape[:2]
    if height < size or width < size:
        padded = np.full((max(height, size), max(width, size), array.shape[-1]), fill, array.dtype)
        top, left = (padded.shape[0] - height) // 2, (padded.shape[1] - width) // 2
        padded[top:top + height, left:left + width] = array
        array, height, width = padded, *padded.shape[:2]
    top, left = (height - size) // 2, (width - size) // 2
    return array[top:top + size, left:left + size]


def is_builtin(source: str) -> bool:
    return source in synthetic.SYNTHETIC


def to_uint8(images: np.ndarray) -> np.ndarray:
    return np.clip(np.round(images * 255.0), 0, 255).astype(np.uint8)


def builtin(name: str, count: int, size: int, seed: int, start: int = 0,
            channels: int | None = None) -> SegData:
    """``count`` samples of a built-in dataset from index ``start``, as 8-bit images (like PNGs)."""
    sample, class_names, natural = synthetic.SYNTHETIC[name]
    images, masks = [], []
    for index in range(start, start + count):
        image, mask = sample(size=size, seed=seed, index=index)
        images.append(_channels(to_uint8(image), channels or natural))
        masks.append(mask)
    return SegData(name, tuple(images), tuple(masks), class_names, channels or natural)


def _channels(image: np.ndarray, channels: int) -> np.ndarray:
    if image.shape[-1] == channels:
        return image
    if channels == 3:
        return np.repeat(image, 3, axis=-1)
    weights = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R 601 luma, as Pillow's "L"
    return np.round(image.astype(np.float32) @ weights)[..., None].astype(np.uint8)


def load_data(cfg: DataConfig) -> tuple[SegData, SegData]:
    """The training and validation sets a DataConfig describes."""
    if cfg.channels not in (None, 1, 3):
        raise DataError(f"--channels must be 1 or 3 (got {cfg.channels})")
    if is_builtin(cfg.source):
        if cfg.val_source:
            raise DataError(f"--val-data {cfg.val_source}: a built-in dataset draws its own "
                            f"validation samples; --val-data goes with a folder --data")
        size = cfg.image_size or cfg.input_size
        train = builtin(cfg.source, cfg.n_train, size, cfg.seed, 0, cfg.channels)
        val = builtin(cfg.source, cfg.n_val, size, cfg.seed, VAL_OFFSET, cfg.channels)
        return train, val
    check_source_name(cfg.source)
    if cfg.mode not in MODES:
        raise DataError(f"--mode must be one of {', '.join(MODES)} (got {cfg.mode!r})")
    found = folders.find_samples(cfg.source, cfg.layout)
    if cfg.val_source:
        val_found = folders.find_samples(cfg.val_source, cfg.layout or found.layout)
        train_samples, val_samples = found.samples, val_found.samples
    else:
        train_samples, val_samples = _split(found, cfg.val_fraction, cfg.seed)
    mode, note = _mode(cfg, found, train_samples)
    resize_to = (cfg.input_size, cfg.input_size) if mode == "resize" else None
    fit = {"fit": "resize" if mode == "resize" else "tile", "fit_note": note}
    train = replace(_decode(found, train_samples, cfg, resize_to), **fit)
    val = replace(_decode(found, val_samples, cfg, resize_to, channels=train.channels,
                          class_names=train.class_names), **fit)
    if not any(_has_objects(mask) for mask in _masks(train)):
        raise DataError(f"{found.root}: no training mask has a pixel of any class but background "
                        f"(0) or unlabeled (255): there is nothing to learn")
    return train, val


def _has_objects(mask: np.ndarray) -> bool:
    return bool(((mask != 0) & (mask != UNLABELED)).any())


def _masks(data):
    """Every mask of a dataset (a streamed one's decoded one at a time)."""
    if isinstance(data, SegData):
        return data.masks
    return (folders.read_mask(sample, data.layout) for sample in data.samples)


MODES = ("auto", "crop", "resize")


def _mode(cfg: DataConfig, found, samples) -> tuple[str, str]:
    """``crop`` or ``resize`` for training on ``samples`` (``auto``: by the objects' size on up
    to 32 masks, see :mod:`edgeseg.data.sizing`), and why."""
    from edgeseg.data.sizing import choose_mode

    sizes = np.array([folders.header_size(s.image)[::-1] for s in samples])
    median = tuple(int(v) for v in np.median(sizes, axis=0))
    if cfg.mode != "auto":
        how = ("whole images resized to the input, and at inference too" if cfg.mode == "resize"
               else "random crops at the images' resolution, tiled at inference")
        return cfg.mode, f"--mode {cfg.mode}: {how}"
    chosen = np.random.default_rng(cfg.seed).permutation(len(samples))[:32]
    masks = [folders.read_mask(samples[i], found.layout) for i in sorted(chosen)]
    return choose_mode(masks, median, cfg.input_size)


def load_folder(source, layout: str | None = None, channels: int | None = None,
                num_classes: int | None = None, resize_to=None) -> SegData:
    """Every sample of a dataset folder (for evaluation and benchmarks: no split)."""
    found = folders.find_samples(source, layout)
    cfg = DataConfig(str(source), layout=layout, channels=channels, num_classes=num_classes)
    return _decode(found, found.samples, cfg, resize_to)


def load_eval_data(source: str, *, size: int | None, channels: int | None = None,
                   num_classes: int | None = None, layout: str | None = None, count: int = 64,
                   seed: int = 0) -> SegData:
    """A dataset to score a model on: every sample of a folder, or held-out built-in samples.

    Built-in samples are the test range (``TEST_OFFSET``): past every training index and apart
    from the validation range (``VAL_OFFSET``) that training validates, keeps its best weights and
    checks its guard on, so no stage has seen or chosen by them. Folder images are resized to
    ``size`` when given.
    """
    if is_builtin(source):
        if isinstance(size, (tuple, list)):  # (height, width): square samples cut to it
            height, width = (int(v) for v in size)
            data = builtin(source, count, max(height, width), seed, TEST_OFFSET, channels)
            return replace(data, images=tuple(i[:height, :width] for i in data.images),
                           masks=tuple(m[:height, :width] for m in data.masks))
        return builtin(source, count, size or 256, seed, TEST_OFFSET, channels)
    check_source_name(source)
    return load_folder(source, layout, channels, num_classes,
                       resize_to=(size, size) if size else None)


def check_source_name(source: str) -> None:
    """A name that is neither a built-in dataset nor an existing path is one clear error."""
    if not Path(source).exists() and not any(sep in source for sep in "/\\."):
        raise DataError(f"{source}: no such folder, and not a built-in dataset "
                        f"({', '.join(synthetic.SYNTHETIC)})")


def _split(found: folders.FolderSet, fraction: float, seed: int):
    if found.split:
        stems = {name: set(stems) for name, stems in found.split.items()}
        train = [s for s in found.samples if s.image.stem in stems["train"]]
        val = [s for s in found.samples if s.image.stem in stems["val"]]
        if train and val:
            return train, val
    if not 0 < fraction < 1:
        raise DataError(f"--val-fraction must be between 0 and 1 (got {fraction})")
    order = np.random.default_rng(seed).permutation(len(found.samples))
    n_val = max(1, int(round(fraction * len(order))))
    if len(order) < 2:
        raise DataError(f"{found.root}: one sample cannot be split into training and validation; "
                        f"add images or give --val-data")
    if n_val >= len(order):
        raise DataError(f"--val-fraction {fraction:g} leaves no training images ({len(order)} "
                        f"samples in {found.root})")
    val_idx = set(order[:n_val].tolist())
    samples = found.samples
    return ([s for i, s in enumerate(samples) if i not in val_idx],
            [s for i, s in enumerate(samples) if i in val_idx])


def _decode(found, samples, cfg: DataConfig, resize_to, channels=None, class_names=None):
    """The samples in memory, or streamed from disk when decoded they would pass ``cfg.cache_mb``."""
    samples = tuple(samples)
    channels = channels or cfg.channels or folders.read_raw(samples[0].image).shape[-1]
    decoded = sum(folders.decoded_bytes(s, channels, resize_to) for s in samples)
    if decoded > cfg.cache_mb * 2 ** 20:
        # Too large to hold: read only the masks now (one at a time) to check them.
        tops = []
        for sample in samples:
            folders.check_sizes(sample)
            tops.append(folders.top_class_id(folders.read_mask(sample, found.layout)))
        class_names = class_names or _class_names(found, cfg, max(tops))
        for sample, top in zip(samples, tops):
            folders.check_class_id(top, sample, len(class_names))
        return StreamedData(str(found.root), found, samples, tuple(class_names), channels,
                            resize_to, found.layout)
    images, masks = folders.load_samples(found, samples, channels, resize_to)
    tops = [folders.top_class_id(mask) for mask in masks]
    class_names = class_names or _class_names(found, cfg, max(tops))
    for sample, top in zip(samples, tops):
        folders.check_class_id(top, sample, len(class_names))
    return SegData(str(found.root), tuple(images), tuple(masks), tuple(class_names), channels,
                   found.layout, sources=samples)


def at_own_size(data, limit: int | None = None):
    """The dataset with its images and masks at their own size: a ``resize``-fit folder is held
    resized to the input for training; scores are measured on the original masks, with each
    image resized as the model's card says (as ``edgeseg eval`` and the harness do). ``limit``:
    the first samples only."""
    if data.fit != "resize":
        return data
    if isinstance(data, StreamedData):
        return replace(data, resize_to=None, samples=data.samples[:limit])
    pairs = [folders.load_sample(sample, data.layout, data.channels)
             for sample in data.sources[:limit]]
    return replace(data, images=tuple(p[0] for p in pairs), masks=tuple(p[1] for p in pairs))


def _class_names(found, cfg: DataConfig, top_id: int) -> tuple[str, ...]:
    """The folder's class list, else ``--num-classes`` generic names, else from the largest id."""
    class_names = found.class_names
    if cfg.num_classes is not None:
        wanted = max(2, cfg.num_classes)
        return tuple((class_names or ())[:wanted]) + tuple(
            f"class{i}" for i in range(len(class_names or ()), wanted))
    if class_names is not None:
        return tuple(class_names)
    return ("background", "foreground") if top_id <= 1 else tuple(
        f"class{i}" for i in range(top_id + 1))
