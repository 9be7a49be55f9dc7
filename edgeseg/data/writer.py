"""Write a built-in dataset to disk in the generic layout (numpy + Pillow only).

    >>> write_synthetic("synthetic-nuclei", "data/nuclei", count=200, size=256, seed=7)  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from edgeseg.data import synthetic
from edgeseg.data.folders import DataError
from edgeseg.data.source import to_uint8
from edgeseg.files import atomic_dir
from edgeseg.visualize import mask_image

def write_synthetic(name: str, out, *, count: int, size: int, seed: int,
                    replace: bool = False) -> Path:
    """Write ``count`` samples of a built-in dataset as ``out/images/NNNNN.png`` + ``out/masks/NNNNN.png``.

    The folder appears complete or not at all. A non-empty ``out`` is an error unless ``replace``.
    """
    if name not in synthetic.SYNTHETIC:
        raise DataError(f"unknown built-in dataset {name!r}; valid: {', '.join(synthetic.SYNTHETIC)}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not replace:
        raise DataError(f"{out}: folder is not empty; pass --force to replace it")
    sample, class_names, _ = synthetic.SYNTHETIC[name]
    with atomic_dir(out, replace=replace) as tmp:
        (tmp / "images").mkdir()
        (tmp / "masks").mkdir()
        for index in range(count):
            image, mask = sample(size=size, seed=seed, index=index)
            pixels = to_uint8(image)
            Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(
                tmp / "images" / f"{index:05d}.png")
            mask_image(mask).save(tmp / "masks" / f"{index:05d}.png")
        (tmp / "classes.txt").write_text("\n".join(class_names) + "\n")
    return out


__all__ = ["write_synthetic"]
