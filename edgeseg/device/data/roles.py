"""Which images play which role: train, validation, calibration, parity, score.

Every stage asks this module (training, the converters, the harness, ``eval``, ``edgeseg run``,
``edgeseg.testing``); none decides on its own.

============  ====================================  ==========================================
role          a built-in dataset                    a folder (``--data DIR``)
============  ====================================  ==========================================
train         indices 0 .. n_train                  its training split: VOC's ``train.txt``, a
                                                    seeded share, or all of it (``--val-data``)
validation    indices from :data:`VAL_OFFSET`       the rest: ``val.txt``, or ``--val-data``
calibration   training indices                      the training split of the folder the model
                                                    was trained on; another folder: a seeded
                                                    choice of its images
parity        indices from :data:`PARITY_OFFSET`    the validation split, or ``--verify-data``
score         indices from :data:`TEST_OFFSET`      the validation split, or ``--test-data``
============  ====================================  ==========================================

Training keeps its last weights (no checkpoint is picked on the validation images), so the
validation split of a folder can score. Images that train or calibrate never score; where two
roles are given as folders, they are checked apart by path and by content (the same image
copied under another name or into another folder is the same image): refused where sharing
cannot be meant (validation or test images that also train), said in one line where it can
(parity on the calibration images when there are no others). numpy and Pillow only.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np

from edgeseg.device.card import Normalization, parse_size
from edgeseg.device.data import folders
from edgeseg.device.data.config import DataConfig
from edgeseg.device.data.datasets import (
    SegData,
    builtin,
    center_fit,
    check_source_name,
    decode,
    is_builtin,
    load_folder,
)
from edgeseg.device.data.folders import UNLABELED, DataError
from edgeseg.device.files import sha256_of
from edgeseg.device.preprocess import normalize, resize
from edgeseg.device.tiling import pad_to

# Built-in samples of each role come from index ranges far apart: never the same image.
VAL_OFFSET = 1_000_000  # validation: training reports and checks its guard on them
TEST_OFFSET = 2_000_000  # score: what eval, bench, run, peers and sweep measure
PARITY_OFFSET = 3_000_000  # parity: converted files checked against their source (and the
# --fallback search's choice made), never the images a figure is then scored on
MODES = ("auto", "crop", "resize")


# --- train and validation -----------------------------------------------------------------------
def split(cfg: DataConfig) -> tuple[SegData, SegData]:
    """The training and validation sets a DataConfig describes, checked apart (a folder's own
    lists, a --val-data folder: by path and by content)."""
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
    found, train_samples, val_samples = split_samples(cfg)
    mode, note = _mode(cfg, found, train_samples)
    resize_to = (cfg.input_size, cfg.input_size) if mode == "resize" else None
    fit = {"fit": "resize" if mode == "resize" else "tile", "fit_note": note}
    train = replace(decode(found, train_samples, cfg, resize_to), **fit)
    val = replace(decode(found, val_samples, cfg, resize_to, channels=train.channels,
                         class_names=train.class_names), **fit)
    if not any(_has_objects(mask) for mask in _masks(train)):
        raise DataError(f"{found.root}: no training mask has a pixel of any class but background "
                        f"(0) or unlabeled (255): there is nothing to learn")
    if not cfg.val_source and _listed(found) is None:  # copies inside one folder, fallen on both
        # sides of the seeded split (the folder is good otherwise: said, not refused)
        shared = same_images(_images_of(train_samples), _images_of(val_samples))
        if shared:
            a, b = shared[0]
            print(f"warning: {found.root}: {len(shared)} validation image(s) are copies of "
                  f"training images ({b} has the same bytes as {a}): their validation "
                  f"scores are not held out; remove the copies", file=sys.stderr)
    return train, val


def describe_split(cfg: DataConfig, train: int, val: int) -> dict:
    """``{"train": {"images": n, "from": ...}, "validation": {...}}``: which images trained and
    which validated, in words (for the card and the report)."""
    if is_builtin(cfg.source):
        return {"train": {"images": train, "from": f"{cfg.source} indices 0-{train - 1}"},
                "validation": {"images": val, "from": f"{cfg.source} indices from "
                                                      f"{VAL_OFFSET:,}"}}
    if cfg.val_source:
        return {"train": {"images": train, "from": f"all of {cfg.source}"},
                "validation": {"images": val, "from": f"all of {cfg.val_source}"}}
    listed = _listed(folders.find_samples(cfg.source, cfg.layout)) is not None
    how = "its own lists" if listed else f"a split seeded {cfg.seed}, {cfg.val_fraction:g} held out"
    return {"train": {"images": train, "from": f"the training split of {cfg.source} ({how})"},
            "validation": {"images": val, "from": f"the validation split of {cfg.source}"}}


def split_samples(cfg: DataConfig):
    """(the folder's samples, training samples, validation samples) of a folder ``cfg.source``,
    before anything is decoded: the dataset's own lists, ``cfg.val_source`` or a seeded share,
    checked apart."""
    check_source_name(cfg.source)
    if cfg.mode not in MODES:
        raise DataError(f"--mode must be one of {', '.join(MODES)} (got {cfg.mode!r})")
    found = folders.find_samples(cfg.source, cfg.layout)
    if cfg.val_source:
        check_source_name(cfg.val_source)
        val_found = folders.find_samples(cfg.val_source, cfg.layout or found.layout)
        train_samples, val_samples = found.samples, val_found.samples
        check_apart(train_samples, f"--data {cfg.source}", val_samples,
                    f"--val-data {cfg.val_source}", "validation")
    else:
        train_samples, val_samples = _split(found, cfg.val_fraction, cfg.seed)
        if _listed(found) is not None:  # the dataset's own lists: a copy on both sides is a
            # mistake in them
            check_apart(train_samples, f"{found.root}'s training list", val_samples,
                        "its validation list", "validation")
    return found, train_samples, val_samples


def _listed(found: folders.FolderSet):
    """(training, validation) samples as the dataset's own lists give them (VOC's
    ``ImageSets/Segmentation/{train,val}.txt``), or None when it has no lists with images."""
    if not found.split:
        return None
    stems = {name: set(stems) for name, stems in found.split.items()}
    train = [s for s in found.samples if s.image.stem in stems["train"]]
    val = [s for s in found.samples if s.image.stem in stems["val"]]
    if not (train and val):
        return None
    both = sorted(stems["train"] & stems["val"] & {s.image.stem for s in found.samples})
    if both:
        raise DataError(f"{found.root}: ImageSets/Segmentation/train.txt and val.txt both list "
                        f"{len(both)} image(s) ({', '.join(both[:3])}"
                        f"{', ...' if len(both) > 3 else ''}): a validation image must not "
                        f"train; list each image once")
    return train, val


def _split(found: folders.FolderSet, fraction: float, seed: int):
    listed = _listed(found)
    if listed is not None:
        return listed
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


def _has_objects(mask: np.ndarray) -> bool:
    return bool(((mask != 0) & (mask != UNLABELED)).any())


def _masks(data):
    """Every mask of a dataset (a streamed one's decoded one at a time)."""
    if isinstance(data, SegData):
        return data.masks
    return (folders.read_mask(sample, data.layout) for sample in data.samples)


def _mode(cfg: DataConfig, found, samples) -> tuple[str, str]:
    """``crop`` or ``resize`` for training on ``samples`` (``auto``: by the objects' size on up
    to 32 masks, see :mod:`edgeseg.device.data.sizing`), and why."""
    from edgeseg.device.data.sizing import choose_mode

    sizes = np.array([folders.header_size(s.image)[::-1] for s in samples])
    median = tuple(int(v) for v in np.median(sizes, axis=0))
    if cfg.mode != "auto":
        how = ("whole images resized to the input, and at inference too" if cfg.mode == "resize"
               else "random crops at the images' resolution, tiled at inference")
        return cfg.mode, f"--mode {cfg.mode}: {how}"
    chosen = np.random.default_rng(cfg.seed).permutation(len(samples))[:32]
    masks = [folders.read_mask(samples[i], found.layout) for i in sorted(chosen)]
    return choose_mode(masks, median, cfg.input_size)


# --- score --------------------------------------------------------------------------------------
def score_data(source: str, *, size=None, channels: int | None = None,
               num_classes: int | None = None, layout: str | None = None, count: int = 64,
               seed: int = 0, model_classes: int | None = None) -> SegData:
    """The images a model is scored on for ``source``: held-out built-in samples (the test range,
    :data:`TEST_OFFSET`, made at ``size``: a side or (height, width)), or every image of a
    folder, whole, at its own size (each is then fed as the model's card says).

    ``num_classes`` (a user's ``--num-classes``) sets a folder's class count; ``model_classes``
    (the model's) only where the folder names none: a folder's class file says what its masks
    hold, and a model of other classes is then refused, not scored on padded names."""
    if is_builtin(source):
        height, width = parse_size(size or 256)
        data = builtin(source, count, max(height, width), seed, TEST_OFFSET, channels)
        if height == width:
            return data
        return replace(data, images=tuple(i[:height, :width] for i in data.images),
                       masks=tuple(m[:height, :width] for m in data.masks))
    check_source_name(source)
    found = folders.find_samples(source, layout)  # listed once: its class file decides
    if num_classes is None and found.class_file is None:
        num_classes = model_classes
    return load_folder(source, layout, channels, num_classes, found=found)


def describe_score(source: str, count: int) -> str:
    """What :func:`score_data` scores on, in words (for reports and bench JSON)."""
    if is_builtin(source):
        return (f"{source} (test samples from index {TEST_OFFSET:,}: never trained, validated "
                f"or calibrated on)")
    return f"{source} ({count} images, whole)"


# --- the data a model was trained on, as its card records it ------------------------------------
def trained_config(card: dict) -> DataConfig | None:
    """The DataConfig the model's training (or fine-tune) read, when its card records one (a
    converted file's card: its source's)."""
    data = (card.get("recipe") or {}).get("data")
    if not isinstance(data, dict) and isinstance(card.get("source"), dict):
        data = (card["source"].get("recipe") or {}).get("data")
    if not isinstance(data, dict):
        return None
    try:
        return DataConfig.from_dict(data)
    except TypeError:
        return None


def trained_data(card: dict) -> str | None:
    """The data the model was trained on, when that can be read again (a built-in name or a
    folder)."""
    trained = trained_config(card)  # the card's training data, or its source's
    data = trained.source if trained is not None else None
    if data is None and isinstance(card.get("source"), dict):
        data = card["source"].get("data")
    if data and (is_builtin(data) or Path(data).is_dir()):
        return data
    return None


@dataclass(frozen=True)
class OwnSplit(DataConfig):
    """A folder's own seeded train/validation split, for a model trained on other images."""


def own_split(data: str | None, seed: int) -> DataConfig | None:
    """A labelled folder given as --calib for a model whose card records no training data: its
    own train/validation split, so calibration (training split) and parity (validation split)
    never use the same images. None for built-in data and image-only folders."""
    if data is None or is_builtin(data) or not Path(data).is_dir():
        return None
    try:
        folders.find_samples(data)
    except DataError:
        return None
    return OwnSplit(source=data, seed=seed)


# --- calibration --------------------------------------------------------------------------------
def calibration_images(data: str, *, size, channels: int, count: int = 100, seed: int = 0,
                       normalization: Normalization | None = None, fit: str = "tile",
                       trained_on: DataConfig | None = None) -> np.ndarray:
    """``count`` model inputs (N, height, width, channels) float32 for the int8 ranges, drawn
    reproducibly and cut as the model will see them (crops at the images' own resolution for a
    model that runs tile by tile, whole images resized for one that resizes); ``size`` is a side
    or (height, width).

    Built-in datasets give training samples (the first ``count``); the folder the model was
    trained on (``trained_on``) its training split; another folder a seeded choice of its images
    (its ``images/`` sub-folder when there is one: no masks are needed to calibrate).
    """
    if count < 1:
        raise DataError(f"--calib-samples must be >= 1 (got {count})")
    norm = normalization or Normalization()
    size = parse_size(size)
    if is_builtin(data):  # drawn square at the longer side, cut to the input
        images = builtin(data, count, max(size), seed, 0, channels).arrays(
            normalization=norm)[0]
        return images[:, :size[0], :size[1]]
    if trained_on is not None and same_folder(data, trained_on.source):
        train, _ = split(replace(trained_on, channels=channels))
        order = np.random.default_rng(seed).permutation(len(train))
        raws = (train.sample(int(i))[0] for i in order)
        return _cut(raws, len(train), size, count, seed, norm, fit)
    paths = _calibration_files(data, trained_on)
    order = np.random.default_rng(seed).permutation(len(paths))
    raws = (folders.read_raw(paths[i], channels) for i in order)
    return _cut(raws, len(paths), size, count, seed, norm, fit)


def _calibration_files(data: str, trained_on: DataConfig | None) -> list[Path]:
    """The images of a --calib folder, less those of the training folder's validation split
    (by path or content): those check the converted file, so they never calibrate it (a
    ``--calib d0/images`` drew them all)."""
    paths = image_files(Path(data))
    if trained_on is None or is_builtin(trained_on.source):
        return paths
    try:
        _, _, val_samples = split_samples(trained_on)
    except DataError:
        return paths
    held = {a for a, _ in same_images(paths, _images_of(val_samples))}
    kept = [p for p in paths if p not in held]
    if held and not kept:
        raise DataError(f"--calib {data}: holds only the validation images of "
                        f"{trained_on.source}, which check the converted file; calibrate on "
                        f"other images (its training split: leave --calib out)")
    return kept


def calibration_source(data: str, trained_on: DataConfig | None) -> str:
    """Which images :func:`calibration_images` draws from ``data``, in words (for the card)."""
    if is_builtin(data):
        return "training indices of the built-in dataset"
    if isinstance(trained_on, OwnSplit) and same_folder(data, trained_on.source):
        return ("the training split of the folder's own seeded split (the model's card names "
                "no training data; the validation split checks the file)")
    if trained_on is not None and same_folder(data, trained_on.source):
        return "the training split of the folder the model was trained on"
    left_out = len(image_files(Path(data))) - len(_calibration_files(data, trained_on))
    if left_out:
        return (f"a seeded choice of the folder's images, less the {left_out} of "
                f"{trained_on.source}'s validation split (they check the file)")
    return "a seeded choice of the folder's images"


def calibration_sources(data: str, trained_on: DataConfig | None, count: int) -> int:
    """How many images :func:`calibration_images` cuts ``count`` inputs from (fewer images than
    inputs: several crops of each)."""
    if is_builtin(data):
        return count
    if trained_on is not None and same_folder(data, trained_on.source):
        available = len(split_samples(trained_on)[1])
    else:
        available = len(_calibration_files(data, trained_on))
    per_image = -(-count // max(1, available))
    return min(available, -(-count // per_image))


def _cut(raws, available: int, size: tuple[int, int], count: int, seed: int, norm,
         fit: str) -> np.ndarray:
    """``count`` inputs from raw images: each normalised whole, then resized (``resize`` fit) or
    cropped at random (``tile``); with fewer images than ``count``, each gives several crops."""
    rng = np.random.default_rng(seed + 1)
    per_image = -(-count // max(1, available))
    inputs = []
    for raw in raws:
        if fit == "resize":  # as the model will see it: resized, then normalised
            inputs.append(normalize(resize(raw, *size), norm))
        else:
            image = normalize(raw, norm)
            for _ in range(per_image):
                inputs.append(_random_crop(image, size, rng))
        if len(inputs) >= count:
            break
    return np.stack(inputs[:count])


def _random_crop(image: np.ndarray, size: tuple[int, int], rng) -> np.ndarray:
    height, width = size
    # smaller than the input: padded at the bottom and right edges, as the model is fed
    image = pad_to(image, max(height, image.shape[0]), max(width, image.shape[1]))
    top = int(rng.integers(0, image.shape[0] - height + 1))
    left = int(rng.integers(0, image.shape[1] - width + 1))
    return image[top:top + height, left:left + width]


def image_files(folder: Path) -> list[Path]:
    """The images of a calibration folder: its ``images/`` when there is one, else its own
    images, else the images of the labelled dataset it holds."""
    if not folder.exists():
        from edgeseg.device.data import synthetic

        raise DataError(f"{folder}: no such folder, and not a built-in dataset "
                        f"({', '.join(synthetic.SYNTHETIC)})")
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


# --- parity -------------------------------------------------------------------------------------
class ParitySamples(NamedTuple):
    """The images a converted file is checked on: ``pairs``, each image as decoded with its mask
    (or None), which the check feeds to both models whole, as ``eval`` does; and the same images
    made into one model input each (``images``, ``masks``: :func:`fed_arrays`) for what needs
    inputs of the model's size (calibration's look-alike test, the ``--fallback`` search, the
    per-layer error)."""

    images: np.ndarray
    masks: np.ndarray | None
    where: str
    pairs: tuple = ()

    def halves(self) -> tuple[ParitySamples, ParitySamples]:
        """(to choose on, to check on): cut in two for ``--fallback``, so the images that chose
        which ops stay float never score the file."""
        half = len(self.images) // 2

        def part(cut, where):
            masks = None if self.masks is None else self.masks[cut]
            return ParitySamples(self.images[cut], masks, where, self.pairs[cut])

        return (part(slice(None, half), f"{half} of {self.where}"),
                part(slice(half, None), f"{len(self.images) - half} of {self.where} (the other "
                                        f"{half} chose the float ops)"))


def parity_images(calib: str | None, *, verify_data: str | None, trained_on: DataConfig | None,
                  size, channels: int, num_classes: int, count: int, seed: int = 0,
                  normalization: Normalization | None = None,
                  fit: str = "tile") -> ParitySamples:
    """The images a converted file is checked against its source on (:class:`ParitySamples`),
    never the calibration images when anything else is known: ``verify_data``, else the
    validation data of what the model was trained on, else ``calib``'s own validation split
    (``trained_on`` from :func:`own_split`), else ``calib``'s images (then ``where`` says so).
    Random 8-bit images when there is no data at all."""
    source = verify_data or (trained_on.source if trained_on is not None else None) or calib
    height, width = parse_size(size)
    if source is None:
        raws = list(np.random.default_rng(seed).integers(0, 256, (count, height, width, channels),
                                                         dtype=np.uint8))
        masks, where = None, "random images (no data: give --verify-data DIR)"
    else:
        if verify_data and calib and not is_builtin(calib) and not is_builtin(verify_data):
            shared = _shared_images(calib, verify_data)
            if shared:
                print(f"warning: --verify-data {verify_data}: {shared} of its images are also "
                      f"in --calib {calib}: parity is then measured on images that set the int8 "
                      f"ranges", file=sys.stderr)
        raws, masks = labelled_pairs(source, size=size, channels=channels,
                                     num_classes=num_classes, count=count, seed=seed,
                                     trained_on=trained_on)
        if masks is None and source == calib:
            where = (f"the calibration images of {calib} themselves (there are no labelled "
                     f"images apart from them: give --verify-data DIR)")
        elif is_builtin(source):
            where = f"{len(raws)} held-out {source} images"
        elif trained_on is not None and same_folder(source, trained_on.source):
            where = f"{len(raws)} images of {source}'s validation split"
        else:
            where = f"{len(raws)} images of {source}"
    images, fed_masks = fed_arrays(raws, masks, size=size, normalization=normalization, fit=fit)
    pairs = tuple(zip(raws, masks if masks is not None else [None] * len(raws)))
    return ParitySamples(images, fed_masks, where, pairs)


def scored_training_images(trained: DataConfig | None, scored) -> int:
    """How many of the images a model is scored on (a folder's samples) are images of the
    training split its card records (by path or by content): 0 when none, or not known."""
    if trained is None or is_builtin(trained.source) or not Path(trained.source).is_dir():
        return 0
    sources = getattr(scored, "sources", None) or getattr(scored, "samples", None) or ()
    if not sources:
        return 0
    try:
        _, train_samples, _ = split_samples(trained)
    except DataError:
        return 0
    return len(same_images(_images_of(train_samples), _images_of(sources)))


def labels_hint(verify_data: str | None) -> str:
    """What to do when labelled images are needed and none were found."""
    if verify_data:
        return (f"--verify-data {verify_data} has no masks: give a labelled folder (images/ + "
                f"masks/, or another layout edgeseg reads)")
    return "give labelled images with --verify-data DIR"


def labelled_pairs(data: str, *, size, channels: int, num_classes: int, count: int,
                   seed: int = 0, trained_on: DataConfig | None = None):
    """(images, masks or None): ``count`` held-out images as decoded, at their own size, and
    their masks when ``data`` has them (built-in: the parity range, made at ``size``'s longer side
    and cut to it; the folder the model was trained on: its validation split; another labelled
    folder: its first images; an image-only folder: a seeded choice of its images)."""
    height, width = parse_size(size)
    if is_builtin(data):
        held_out = builtin(data, count, max(height, width), seed, PARITY_OFFSET, channels)
        return ([i[:height, :width] for i in held_out.images],
                [m[:height, :width] for m in held_out.masks])
    if trained_on is not None and same_folder(data, trained_on.source):
        _, val = split(replace(trained_on, channels=channels))
        return _first(val, count)
    check_source_name(data)
    try:
        found = folders.find_samples(data)
    except DataError:
        paths = image_files(Path(data))
        order = np.random.default_rng(seed).permutation(len(paths))[:count]
        return [folders.read_raw(paths[int(i)], channels) for i in order], None
    cfg = DataConfig(str(data), channels=channels, num_classes=max(2, num_classes))
    return _first(decode(found, found.samples[:count], cfg, None), count)


def _first(data, count: int):
    pairs = [data.sample(i) for i in range(min(count, len(data)))]
    return [image for image, _ in pairs], [mask for _, mask in pairs]


def fed_arrays(images, masks, *, size, normalization: Normalization | None = None,
               fit: str = "tile"):
    """(inputs (N, height, width, C) float32, masks (N, height, width) or None): one model input
    per image, made as the model is fed (:mod:`edgeseg.device.tiling`): normalised over the whole
    image, then resized (``resize`` fit), or padded at the bottom and right edges as a tile is
    (masks with unlabeled pixels, which no score counts) and cut to the input at the centre."""
    norm = normalization or Normalization()
    height, width = parse_size(size)
    inputs, labels = [], []
    for index, raw in enumerate(images):
        mask = None if masks is None else masks[index]
        if fit == "resize":
            inputs.append(normalize(resize(raw, height, width), norm))
            if mask is not None:
                labels.append(resize(mask[..., None], height, width, nearest=True)[..., 0])
            continue
        inputs.append(center_fit(normalize(raw, norm), (height, width)))
        if mask is not None:
            labels.append(center_fit(mask, (height, width), UNLABELED))
    return np.stack(inputs).astype(np.float32, copy=False), \
        None if masks is None else np.stack(labels)


def labelled_samples(data: str, *, size, channels: int, num_classes: int, count: int,
                     seed: int = 0, normalization: Normalization | None = None,
                     trained_on: DataConfig | None = None, fit: str = "tile"):
    """(inputs, masks or None): :func:`labelled_pairs` made into model inputs at ``size`` by
    :func:`fed_arrays`."""
    images, masks = labelled_pairs(data, size=size, channels=channels, num_classes=num_classes,
                                   count=count, seed=seed, trained_on=trained_on)
    return fed_arrays(images, masks, size=size, normalization=normalization, fit=fit)


# --- apart --------------------------------------------------------------------------------------
def same_folder(a: str, b: str | None) -> bool:
    if b is None or is_builtin(a) or is_builtin(b):
        return False
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


def same_images(first, second) -> list[tuple[Path, Path]]:
    """The pairs (an image of ``first``, the same image in ``second``) of two lists of image
    files: the same file, or the same bytes under another name or in another folder. Only files
    of equal size are read."""
    def resolved(path):
        return Path(path).resolve()

    pairs, by_path = [], {resolved(p): Path(p) for p in first}
    rest = []
    for path in second:
        if resolved(path) in by_path:
            pairs.append((by_path[resolved(path)], Path(path)))
        else:
            rest.append(Path(path))
    sizes: dict[int, list[Path]] = {}
    for path in by_path.values():
        sizes.setdefault(path.stat().st_size, []).append(path)
    digests: dict[str, Path] = {}
    for path in rest:
        candidates = sizes.get(path.stat().st_size)
        if not candidates:
            continue
        for candidate in candidates:
            key = str(candidate)
            if key not in digests:
                digests[key] = sha256_of(candidate)
        wanted = sha256_of(path)
        match = next((c for c in candidates if digests[str(c)] == wanted), None)
        if match is not None:
            pairs.append((match, path))
    return pairs


def _images_of(samples) -> list[Path]:
    return [s.image if isinstance(s, folders.Sample) else Path(s) for s in samples]


def check_apart(first, first_name: str, second, second_name: str, role: str) -> None:
    """Refuse, naming both, when images of ``second`` (samples or image files) are images of
    ``first``: ``role`` images (validation, score) must be images that never trained."""
    shared = same_images(_images_of(first), _images_of(second))
    if shared:
        a, b = shared[0]
        same = "is" if a.resolve() == b.resolve() else "has the same bytes as"
        raise DataError(f"{second_name}: {len(shared)} of its {len(list(second))} images are "
                        f"training images of {first_name} ({b} {same} {a}); {role} images must "
                        f"be images training never sees")


def _shared_images(a: str, b: str) -> int:
    """How many images two folders share (by path or content); 0 when either has none."""
    try:
        return len(same_images(image_files(Path(a)), image_files(Path(b))))
    except DataError:
        return 0


def check_score_apart(train: DataConfig, test_data: str) -> None:
    """``--test-data`` must hold no image of the training data (a folder): refused, naming one."""
    if is_builtin(train.source) or is_builtin(test_data):
        return
    _, train_samples, _ = split_samples(train)
    test = folders.find_samples(test_data, train.layout)
    check_apart(train_samples, f"--data {train.source}", test.samples, f"--test-data {test_data}",
                "test")


__all__ = ["MODES", "PARITY_OFFSET", "TEST_OFFSET", "VAL_OFFSET", "OwnSplit", "ParitySamples",
           "calibration_images", "calibration_source", "calibration_sources", "check_apart",
           "check_score_apart", "describe_score", "describe_split", "fed_arrays", "image_files",
           "labelled_pairs", "labelled_samples", "labels_hint", "own_split", "parity_images",
           "same_folder", "same_images", "score_data", "scored_training_images", "split",
           "split_samples", "trained_config", "trained_data"]
