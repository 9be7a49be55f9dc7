"""Real dataset layouts on disk: find image/mask pairs, decode them, check them (numpy + Pillow only).

Layouts (detected from the folder, or named with ``--layout``):

- ``generic``:  ``images/*`` + ``masks/*`` matched by file stem (PNG/JPEG/TIFF/BMP images). The
  masks are class-id PNGs (palette indices or grey values; 255 = unlabeled), or 0/255 binary
  masks: decided once for the folder (:func:`mask_encoding`), never mask by mask. Class names
  come from ``classes.txt`` when present.
- ``carvana``:  ``train/*.jpg`` + ``train_masks/*_mask.gif``: binary car masks.
- ``oxford``:   Oxford-IIIT Pet, ``images/*.jpg`` + ``annotations/trimaps/*.png``; trimap 1 = pet,
  2 = background, 3 = border, read as unlabeled (255).
- ``dsb2018``:  Data Science Bowl 2018 stage 1, ``<id>/images/<id>.png`` + ``<id>/masks/*.png``:
  the union of the instance masks is the nucleus class.
- ``voc``:      ``JPEGImages/*.jpg`` + ``SegmentationClass/*.png`` palette PNGs (index = class,
  255 = border); class names from ``labelmap.txt``/``classes.txt`` or the 21 VOC classes; the
  ``ImageSets/Segmentation/{train,val}.txt`` lists give the split when present.

Every problem is a :class:`DataError` whose message names the file and what is wrong.
"""

from __future__ import annotations

import functools
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from edgeseg.device.errors import EdgesegError

UNLABELED = 255
# Pillow refuses images over ~179 megapixels as "decompression bombs"; the files here are the user's
# own, named by them, and predict streams any size: the limit is raised to a gigapixel.
MAX_PIXELS = 1 << 30
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
# Pillow modes read in their own depth (bytes a pixel a channel once decoded: "I" holds 16-bit PNGs)
DEEP_MODES = {"I;16": 2, "I;16B": 2, "I;16L": 2, "I": 2, "F": 4}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif")
LAYOUTS = ("generic", "carvana", "oxford", "dsb2018", "voc")
VOC_CLASSES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
               "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
               "sheep", "sofa", "train", "tvmonitor")


class DataError(EdgesegError):
    """A dataset folder or file that cannot be used; the message names it."""


@dataclass(frozen=True)
class Sample:
    """One image and the mask file(s) that label it (DSB2018 has one file per instance)."""

    image: Path
    masks: tuple[Path, ...]
    binary: bool = False  # generic layout: its folder's masks are 0/255 (255 = foreground)


@dataclass(frozen=True)
class FolderSet:
    """What a layout found in a folder, before anything is decoded."""

    root: Path
    layout: str
    samples: tuple[Sample, ...]
    class_names: tuple[str, ...] | None  # None: infer from the masks
    split: dict[str, tuple[str, ...]] | None = None  # stem lists given by the dataset itself
    class_file: Path | None = None  # where class_names were read from


def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                  and not p.name.startswith("."))


def detect_layout(root: Path) -> str:
    """The layout of a dataset folder, from the sub-folders it has."""
    root = Path(root)
    if (root / "train_masks").is_dir() and (root / "train").is_dir():
        return "carvana"
    if (root / "annotations" / "trimaps").is_dir() and (root / "images").is_dir():
        return "oxford"
    if (root / "JPEGImages").is_dir() and (root / "SegmentationClass").is_dir():
        return "voc"
    if (root / "images").is_dir() and (root / "masks").is_dir():
        return "generic"
    if any((d / "images").is_dir() and (d / "masks").is_dir() for d in root.iterdir() if d.is_dir()):
        return "dsb2018"
    raise DataError(f"{root}: no known dataset layout (expected images/ + masks/, train/ + "
                    f"train_masks/ (Carvana), images/ + annotations/trimaps/ (Oxford-IIIT Pet), "
                    f"<id>/images/ + <id>/masks/ (DSB2018) or JPEGImages/ + SegmentationClass/ (VOC))")


def find_samples(root, layout: str | None = None) -> FolderSet:
    """Pair every image of a dataset folder with its mask(s); raise on a missing folder or mask."""
    root = Path(root)
    if not root.exists():
        raise DataError(f"{root}: no such folder")
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    layout = layout or detect_layout(root)
    if layout not in LAYOUTS:
        raise DataError(f"--layout must be one of {', '.join(LAYOUTS)} (got {layout!r})")
    found = _FINDERS[layout](root)
    if not found.samples:
        raise DataError(f"{root}: no images found for the {layout} layout")
    return found


def _pair(images_dir: Path, masks_dir: Path, mask_name) -> list[Sample]:
    for folder in (images_dir, masks_dir):
        if not folder.is_dir():
            raise DataError(f"{folder}: no such folder")
    masks = {p.name: p for p in masks_dir.iterdir()  # mask images only: a labelme .json or
             if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES}  # a note beside is no mask
    by_stem = {p.stem: p for p in masks.values()}
    samples, stems = [], {}
    for image in image_files(images_dir):
        other = stems.setdefault(image.stem, image)
        if other != image and mask_name(image) is None:
            raise DataError(f"{other} and {image}: two images with one name pair with one mask "
                            f"({masks_dir / image.stem}.*); keep one of them")
        wanted = mask_name(image)
        mask = masks.get(wanted) if wanted else by_stem.get(image.stem)
        if mask is None:
            raise DataError(f"{image}: no mask for this image (expected {masks_dir / (wanted or image.stem + '.png')})")
        samples.append(Sample(image, (mask,)))
    return samples


def mask_encoding(samples) -> str:
    """How a generic folder's masks are written, decided once from all of them: ``binary``
    (every mask holds only 0 and 255: 255 is the foreground) or ``ids`` (class ids, 255 =
    unlabeled; a mask that holds only 0 and 255 there is background and an unlabeled part). A
    folder where many masks are 0/255 and others class ids mixes the two and is refused naming one
    of each; a mask that is all 255 labels nothing and is refused."""
    masks = [sample.masks[0] for sample in samples]
    key = tuple((str(m), *_stamp(m)) for m in masks)
    return _encoding(key)


def _stamp(path: Path) -> tuple[int, int]:
    try:
        stat = path.stat()
        return stat.st_size, stat.st_mtime_ns
    except OSError:
        return -1, -1


@functools.lru_cache(maxsize=8)  # one folder is found by several stages of one command
def _encoding(key: tuple) -> str:
    zero_255, ids = [], []
    for path, *_ in key:
        path = Path(path)
        present = set(np.unique(_mask_values(path)).tolist())
        if present == {UNLABELED}:
            raise DataError(f"{path}: every pixel is 255 (unlabeled): the mask labels nothing; "
                            f"label it, or leave the sample out")
        if UNLABELED in present and present <= {0, UNLABELED}:
            zero_255.append(path)
        elif present - {0, UNLABELED}:
            ids.append((path, sorted(present - {UNLABELED})))
    if zero_255 and not ids:
        return "binary"
    if len(zero_255) >= 2 and 4 * len(zero_255) >= len(ids):
        other, values = ids[0]
        shown = ", ".join(map(str, values[:5])) + (", ..." if len(values) > 5 else "")
        raise DataError(f"{zero_255[0]} holds only 0 and 255 (a 0/255 mask: 255 the foreground) "
                        f"but {other} holds class ids ({shown}; 255 = unlabeled): one encoding a "
                        f"folder ({len(zero_255)} masks of the first kind, {len(ids)} of the "
                        f"second); write the 0/255 masks as 0/1")
    return "ids"


def _skipped_folders(images_dir: Path) -> None:
    """Images in sub-folders of ``images/`` are not read (a layout reads its folder itself):
    said in one line, not left to be found as a short dataset."""
    import sys

    nested = [p for p in images_dir.rglob("*") if p.is_file() and p.parent != images_dir
              and p.suffix.lower() in IMAGE_SUFFIXES]
    if nested:
        folders = sorted({p.parent for p in nested})
        print(f"warning: {images_dir}: {len(nested)} image(s) in sub-folders are not read "
              f"({folders[0]}{' and others' if len(folders) > 1 else ''}); the images of a "
              f"layout lie in its images folder itself: move them up, or make each sub-folder a "
              f"dataset of its own", file=sys.stderr)


def _generic(root: Path) -> FolderSet:
    _skipped_folders(root / "images")
    samples = _pair(root / "images", root / "masks", lambda image: None)
    names, source = _class_file(root)
    binary = mask_encoding(samples) == "binary"
    samples = [replace(sample, binary=binary) for sample in samples]
    return FolderSet(root, "generic", tuple(samples), names, class_file=source)


def _carvana(root: Path) -> FolderSet:
    samples = _pair(root / "train", root / "train_masks", lambda image: f"{image.stem}_mask.gif")
    return FolderSet(root, "carvana", tuple(samples), ("background", "car"))


def _oxford(root: Path) -> FolderSet:
    samples = _pair(root / "images", root / "annotations" / "trimaps",
                    lambda image: f"{image.stem}.png")
    return FolderSet(root, "oxford", tuple(samples), ("background", "pet"))


def _dsb2018(root: Path) -> FolderSet:
    samples = []
    for folder in sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")):
        images = image_files(folder / "images") if (folder / "images").is_dir() else []
        if not images:
            raise DataError(f"{folder / 'images'}: no image for sample {folder.name}")
        masks = image_files(folder / "masks") if (folder / "masks").is_dir() else []
        if not masks:
            raise DataError(f"{images[0]}: no mask for this image (expected {folder / 'masks'}/*.png)")
        samples.append(Sample(images[0], tuple(masks)))
    return FolderSet(root, "dsb2018", tuple(samples), ("background", "nucleus"))


def _voc(root: Path) -> FolderSet:
    masks_dir = root / "SegmentationClass"
    for folder in (root / "JPEGImages", masks_dir):
        if not folder.is_dir():
            raise DataError(f"{folder}: no such folder")
    stems = {p.stem for p in masks_dir.iterdir() if p.suffix.lower() == ".png"}
    images = [p for p in image_files(root / "JPEGImages") if p.stem in stems]  # VOC has unlabelled JPEGs
    samples = tuple(Sample(p, (masks_dir / f"{p.stem}.png",)) for p in images)
    lists = root / "ImageSets" / "Segmentation"
    split = None
    if (lists / "train.txt").is_file() and (lists / "val.txt").is_file():
        split = {name: tuple((lists / f"{name}.txt").read_text().split()) for name in ("train", "val")}
    names, source = _class_file(root)
    return FolderSet(root, "voc", samples, names or VOC_CLASSES, split, class_file=source)


def _class_file(root: Path) -> tuple[tuple[str, ...] | None, Path | None]:
    """(class names, the file they came from) of ``classes.txt`` or ``labelmap.txt``: a name a
    line, the background (id 0) first; VOC's ``name:r,g,b::`` lines; ``id: name`` or ``id name``
    lines; or CSV lines ``id,name`` (a header line above them is skipped). A byte order mark (a
    file saved by Windows' Notepad) is not part of the first name."""
    for name in ("classes.txt", "labelmap.txt"):
        path = root / name
        if path.is_file():
            try:
                text = path.read_text(encoding="utf-8-sig")
            except UnicodeDecodeError:
                raise DataError(f"{path}: not UTF-8 text; save it as UTF-8, a class name a "
                                f"line") from None
            lines = [line.strip() for line in text.splitlines()
                     if line.strip() and not line.startswith("#")]
            rows = [[field.strip() for field in line.split(",")] for line in lines]
            if rows and ":" not in lines[-1] and all(len(r) >= 2 for r in rows) and \
                    all(r[0].isdigit() for r in rows[1:]):
                table = rows if rows[0][0].isdigit() else rows[1:]  # without its header
                return _by_id(path, [(int(r[0]), r[1]) for r in table]), path
            numbered = [_ID_NAME.match(line) for line in lines]
            if lines and all(numbered):
                return _by_id(path, [(int(m[1]), m[2].strip()) for m in numbered]), path
            return tuple(line.split(":")[0].strip() for line in lines), path
    return None, None


_ID_NAME = re.compile(r"^(\d+)\s*(?::|\s)\s*([^:,]*[^\s:,\d][^:,]*)$")  # "0: background", "1 cell"


def _by_id(path: Path, pairs: list[tuple[int, str]]) -> tuple[str, ...]:
    """The names of ``(id, name)`` lines in id order; ids must be 0, 1, 2, ... (each once; a
    line for 255, the unlabeled id, names no class)."""
    pairs = [(i, name) for i, name in pairs if i != UNLABELED]
    ids = sorted(i for i, _ in pairs)
    if ids != list(range(len(ids))):
        raise DataError(f"{path}: its class ids are {', '.join(map(str, ids[:8]))}"
                        f"{', ...' if len(ids) > 8 else ''}; give each of 0, 1, 2, ... once "
                        f"(0 the background)")
    return tuple(name for _, name in sorted(pairs))


_FINDERS = {"generic": _generic, "carvana": _carvana, "oxford": _oxford, "dsb2018": _dsb2018,
            "voc": _voc}


def _open(path: Path, decode: bool = True) -> Image.Image:
    """Open an image file (decoding its pixels, or its header only); any failure names the file."""
    try:
        image = Image.open(path)
        if decode:
            image.load()
            if image.getexif().get(0x0112, 1) != 1:  # EXIF orientation: applied, as viewers do
                image = ImageOps.exif_transpose(image)
        return image
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except Image.DecompressionBombError:
        raise DataError(f"{path}: larger than {MAX_PIXELS:,} pixels, the most edgeseg decodes; "
                        f"cut it into parts") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        reason = str(error).split("\n")[0] or type(error).__name__
        raise DataError(f"{path}: cannot read image ({reason})") from None


def read_raw(path, channels: int | None = None) -> np.ndarray:
    """An image as (H, W, channels) in its own depth: uint8, uint16 (16-bit PNG/TIFF) or float32
    (float TIFF); ``channels`` 1 (grey) or 3 (RGB), None keeps the file's. Normalisation to the
    model's input is :func:`edgeseg.device.preprocess.normalize`'s job, as the model's card says."""
    path = Path(path)
    image = _open(path)
    if channels not in (None, 1, 3):
        raise DataError(f"--channels must be 1 or 3 (got {channels})")
    if image.mode in ("RGB", "RGBA") and _png_depth(path) == 16:
        from edgeseg.device.log import warn_once

        warn_once(f"{path}: a 16-bit colour PNG, which Pillow decodes to 8 bits a channel (the "
                  f"low bits are cut, for this and any file like it); save such images as 16-bit "
                  f"TIFFs to keep their depth")
    if image.mode in DEEP_MODES:  # 16-bit / float microscopy images
        array = np.asarray(image)
        if image.mode == "F" or array.min(initial=0) < 0 or array.max(initial=0) > 65535:
            array = array.astype(np.float32)
            if not np.isfinite(array).all():
                bad = int((~np.isfinite(array)).sum())
                raise DataError(f"{path}: {bad} pixel(s) are NaN or infinite; an image must hold "
                                f"finite values")
        else:
            array = array.astype(np.uint16)
        array = array[..., None]
        return np.repeat(array, 3, axis=-1) if channels == 3 else array
    grey = image.mode in ("L", "LA", "1") or (image.mode == "P" and _palette_is_grey(image))
    channels = channels or (1 if grey else 3)
    array = np.asarray(image.convert("L" if channels == 1 else "RGB"), np.uint8)
    return array[..., None] if channels == 1 else array


def _png_depth(path: Path) -> int | None:
    """The bit depth a PNG's header states (IHDR), None for other files."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(26)
    except OSError:
        return None
    if len(head) < 26 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    return head[24]


def read_image(path, channels: int | None = None) -> np.ndarray:
    """An image as uint8 (H, W, channels), for display: deeper images are scaled by their type's
    range (16-bit / 65535) or a float image's maximum. Models take :func:`read_raw`'s pixels."""
    return to_8bit(read_raw(path, channels))


def to_8bit(image: np.ndarray) -> np.ndarray:
    """An image of any depth as uint8, scaled by its type's range (for display and overlays)."""
    if image.dtype == np.uint8:
        return image
    from edgeseg.device.preprocess import type_max

    scaled = image.astype(np.float64) / type_max(image) * 255 + 0.5
    return np.clip(scaled, 0, 255).astype(np.uint8)


def _palette_is_grey(image: Image.Image) -> bool:
    rgb = np.asarray(image.convert("RGB"))
    return bool(np.all(rgb[..., 0] == rgb[..., 1]) and np.all(rgb[..., 1] == rgb[..., 2]))


def read_mask(sample: Sample, layout: str) -> np.ndarray:
    """A sample's mask as class ids uint8 (H, W), 255 = unlabeled, by the rules of its layout."""
    if layout == "dsb2018":
        union = None
        for path in sample.masks:
            instance = _mask_values(path) > 0
            if union is not None and instance.shape != union.shape:
                raise DataError(f"{path}: instance mask is {_size(instance)}, the first is {_size(union)}")
            union = instance if union is None else union | instance
        return union.astype(np.uint8)
    path = sample.masks[0]
    values = _mask_values(path)
    if layout == "carvana":
        return (values > 0).astype(np.uint8)
    if layout == "oxford":
        if not np.isin(values, (1, 2, 3)).all():
            raise DataError(f"{path}: trimap values must be 1, 2 or 3 (found {_odd(values, (1, 2, 3))})")
        return np.choose(values.astype(np.intp) - 1, [1, 0, UNLABELED]).astype(np.uint8)
    if layout == "generic" and sample.binary:  # the folder's masks are 0/255 (mask_encoding)
        return (values == UNLABELED).astype(np.uint8)
    present, counts = np.unique(values, return_counts=True)
    _check_not_lossy(path, present, counts)
    return values


def _check_not_lossy(path: Path, present: np.ndarray, counts: np.ndarray) -> None:
    """A JPEG-saved or anti-aliased mask holds a few dominant values and a spray of their
    neighbours (edges, compression noise): read as class ids, every one of them would become a
    class. Refused with the fix."""
    share = counts / counts.sum()
    rare = share < 0.005
    # class ids are small integers (255: unlabeled); a spray of rare values between 64 and 254 is
    # compression noise or anti-aliasing around 0/255 regions, not classes
    sprayed = rare & (present > 64) & (present < UNLABELED)
    if rare.sum() >= 3 and sprayed.any() and share[rare].sum() < 0.1:
        dominant = ", ".join(str(v) for v in present[~rare][:4])
        suffix = " (a JPEG mask)" if path.suffix.lower() in (".jpg", ".jpeg") else ""
        raise DataError(f"{path}: {len(present)} distinct values, {int((~rare).sum())} of them "
                        f"({dominant}) cover {share[~rare].sum():.0%} of pixels: a lossy or "
                        f"anti-aliased mask{suffix}; save masks as PNGs of exact class ids (for "
                        f"a 0/255 mask: threshold it at 128)")


def _mask_values(path: Path) -> np.ndarray:
    mask = _open(path)
    if mask.mode in ("P", "L", "1", "I;16", "I"):
        values = np.asarray(mask if mask.mode != "1" else mask.convert("L"))
    elif mask.mode in ("LA", "RGB", "RGBA"):
        rgb = np.asarray(mask.convert("RGB"))
        if not (np.all(rgb[..., 0] == rgb[..., 1]) and np.all(rgb[..., 1] == rgb[..., 2])):
            raise DataError(f"{path}: a colour mask; save masks as class-id PNGs (palette or grey)")
        values = rgb[..., 0]
    else:
        raise DataError(f"{path}: mask mode {mask.mode} is not a class-id image")
    if values.max(initial=0) > 255:
        raise DataError(f"{path}: mask values above 255")
    return values.astype(np.uint8)


def _size(array) -> str:
    return f"{array.shape[0]}x{array.shape[1]}"


def _odd(values, allowed) -> str:
    return ", ".join(str(v) for v in np.setdiff1d(np.unique(values), allowed)[:5])


def load_sample(sample: Sample, layout: str, channels: int | None,
                resize_to: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Decode and check one sample (the image in its own depth, see :func:`read_raw`);
    optionally resize it (image bilinear, mask nearest)."""
    from edgeseg.device.preprocess import resize

    image = read_raw(sample.image, channels)
    mask = read_mask(sample, layout)
    if image.shape[:2] != mask.shape:
        turned = " (the image's EXIF orientation, applied as viewers do, turns it: turn the " \
            "mask too)" if image.shape[:2] == mask.shape[::-1] else ""
        raise DataError(f"{sample.masks[0]}: mask is {_size(mask)}, its image {sample.image} is "
                        f"{_size(image)}{turned}")
    if resize_to is not None and image.shape[:2] != tuple(resize_to):
        height, width = resize_to
        image = resize(image, height, width)
        mask = resize(mask[..., None], height, width, nearest=True)[..., 0]
    return image, mask


def load_samples(found: FolderSet, samples, channels: int | None, resize_to=None,
                 workers: int = 4) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Decode samples in parallel (Pillow releases the GIL); all images get the same channel count."""
    samples = list(samples)
    if channels is None and samples:
        channels = read_raw(samples[0].image).shape[-1]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pairs = list(pool.map(lambda s: load_sample(s, found.layout, channels, resize_to), samples))
    return [p[0] for p in pairs], [p[1] for p in pairs]


def top_class_id(mask: np.ndarray) -> int:
    """The largest class id in a mask, 255 (unlabeled) left out."""
    return int(mask[mask != UNLABELED].max(initial=0))


def check_class_id(top: int, sample: Sample, num_classes: int) -> None:
    """A mask's largest class id must be < num_classes (255 is unlabeled): name the mask if not."""
    if top >= num_classes:
        raise DataError(f"{sample.masks[0]}: class id {top} >= num_classes {num_classes} "
                        f"(255 is unlabeled)")


def check_sizes(sample: Sample) -> None:
    """Image and mask(s) of one size, read from the file headers alone (nothing is decoded)."""
    width, height = _header_size(sample.image)
    for mask in sample.masks:
        if _header_size(mask) != (width, height):
            mw, mh = _header_size(mask)
            raise DataError(f"{mask}: mask is {mh}x{mw}, its image {sample.image} is "
                            f"{height}x{width} (height x width)")


def decoded_bytes(sample: Sample, channels: int, resize_to=None) -> int:
    """Bytes the decoded image and mask take in memory (from the image header, or ``resize_to``)."""
    with _open(sample.image, decode=False) as image:
        width, height = image.size
        depth = DEEP_MODES.get(image.mode, 1)
    height, width = resize_to or (height, width)
    return height * width * (channels * depth + 1)


def header_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image file, from its header alone."""
    return _header_size(path)


def _header_size(path: Path) -> tuple[int, int]:
    with _open(path, decode=False) as image:
        width, height = image.size
        try:  # an EXIF orientation that turns the image by 90 degrees swaps its sides
            turned = image.getexif().get(0x0112, 1) in (5, 6, 7, 8)
        except Exception:  # noqa: BLE001 - a damaged EXIF block: the pixels decide later
            turned = False
        return (height, width) if turned else (width, height)
