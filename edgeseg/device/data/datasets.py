"""A dataset by name or path, decoded into memory as it is on disk (numpy and Pillow only).

Which of its images train, validate, calibrate, check parity or score is not decided here:
:mod:`edgeseg.device.data.roles` does that, for every stage.

    >>> data = builtin("synthetic-nuclei", count=8, size=64, seed=0)
    >>> len(data), data.channels, data.num_classes, data.class_names
    (8, 1, 1, ('background', 'nucleus'))
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from edgeseg.device.data import folders, synthetic
from edgeseg.device.data.config import DataConfig
from edgeseg.device.data.folders import UNLABELED, DataError


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
        with ``size``, centre-cropped to ``size`` x ``size`` (a short side padded at its bottom
        or right edge first: the image mirrored, the mask unlabeled); without, all must share a
        size.
        ``limit``: the first samples only.
        """
        from edgeseg.device.card import Normalization
        from edgeseg.device.preprocess import normalize

        norm = normalization or Normalization()
        images, masks = [], []
        for index in range(len(self) if limit is None else min(limit, len(self))):
            image, mask = self.sample(index)
            image = normalize(image, norm)
            if size is not None:
                image = center_fit(image, size)
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
    fit_note: str = ""  # why (see edgeseg.device.data.sizing)
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


def center_fit(array: np.ndarray, size, fill: int | None = None) -> np.ndarray:
    """Centre-crop an (H, W, ...) array to ``size`` (a side or (height, width)); a short side is
    first padded at its bottom or right edge as a model is fed
    (:func:`edgeseg.device.tiling.pad_to`: mirrored, or ``fill`` for masks)."""
    from edgeseg.device.tiling import pad_to

    height, width = (size, size) if isinstance(size, int) else size
    array = pad_to(array, max(height, array.shape[0]), max(width, array.shape[1]), fill)
    top, left = (array.shape[0] - height) // 2, (array.shape[1] - width) // 2
    return array[top:top + height, left:left + width]


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


def load_folder(source, layout: str | None = None, channels: int | None = None,
                num_classes: int | None = None, resize_to=None, found=None) -> SegData:
    """Every sample of a dataset folder (for evaluation and benchmarks: no split); ``found``:
    its :func:`edgeseg.device.data.folders.find_samples`, when the caller has it already."""
    found = folders.find_samples(source, layout) if found is None else found
    cfg = DataConfig(str(source), layout=layout, channels=channels, num_classes=num_classes)
    return decode(found, found.samples, cfg, resize_to)


def check_source_name(source: str) -> None:
    """A name that is neither a built-in dataset nor an existing path is one clear error."""
    if not Path(source).exists() and not any(sep in source for sep in "/\\."):
        raise DataError(f"{source}: no such folder, and not a built-in dataset "
                        f"({', '.join(synthetic.SYNTHETIC)})")


def decode(found, samples, cfg: DataConfig, resize_to, channels=None, class_names=None):
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
        _check_class_file(found, class_names, samples, tops, cfg)
        for sample, top in zip(samples, tops):
            folders.check_class_id(top, sample, len(class_names))
        return StreamedData(str(found.root), found, samples, tuple(class_names), channels,
                            resize_to, found.layout)
    images, masks = folders.load_samples(found, samples, channels, resize_to)
    tops = [folders.top_class_id(mask) for mask in masks]
    class_names = class_names or _class_names(found, cfg, max(tops))
    _check_class_file(found, class_names, samples, tops, cfg)
    for sample, top in zip(samples, tops):
        folders.check_class_id(top, sample, len(class_names))
    return SegData(str(found.root), tuple(images), tuple(masks), tuple(class_names), channels,
                   found.layout, sources=samples)


def _check_class_file(found, class_names, samples, tops, cfg) -> None:
    """Masks with class ids past the names of the folder's class file: the file is named (the
    usual cause: no background line, id 0, at its top)."""
    if found.class_file is None or cfg.num_classes is not None or \
            tuple(class_names) != tuple(found.class_names or ()):
        return
    top = max(tops)
    if top >= len(class_names):
        mask = samples[tops.index(top)].masks[0]
        listed = ", ".join(class_names[:4]) + (", ..." if len(class_names) > 4 else "")
        raise folders.DataError(
            f"{found.class_file}: names {len(class_names)} class(es) ({listed}), but masks use ids "
            f"0-{top} ({mask} has {top}): one name a line for every id, the background (id 0) "
            f"first")


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
