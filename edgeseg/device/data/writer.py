"""Write a built-in dataset to disk in the generic layout (numpy + Pillow only).

    >>> write_synthetic("synthetic-nuclei", "data/nuclei", count=200, size=256,
    ...                 seed=7)  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from edgeseg.device.data import synthetic
from edgeseg.device.data.datasets import to_uint8
from edgeseg.device.data.folders import DataError
from edgeseg.device.files import atomic_dir
from edgeseg.device.outputs import MANIFEST, Outputs
from edgeseg.device.visualize import mask_image


def write_synthetic(name: str, out, *, count: int, size: int, seed: int,
                    replace: bool = False) -> Path:
    """Write ``count`` samples of a built-in dataset as ``out/images/NNNNN.png`` and
    ``out/masks/NNNNN.png``.

    The folder appears complete or not at all, with a manifest of what was written
    (:mod:`edgeseg.device.outputs`). A non-empty ``out`` is an error unless ``replace``, and
    then only when everything in it was written here before (it is replaced); a file of the
    user's in it is never removed.
    """
    if name not in synthetic.SYNTHETIC:
        raise DataError(f"unknown built-in dataset {name!r}; valid: "
                        f"{', '.join(synthetic.SYNTHETIC)}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        outputs = Outputs(out, "data synth")  # every entry, folders and links too, must be
        theirs = [p for p in sorted(out.rglob("*")) if p != out / MANIFEST  # its own: the
                  and not outputs.owns(p)]  # folder is replaced whole
        if theirs:  # --force would not help: said first, so the hint is one that works
            raise DataError(f"{out}: holds files `edgeseg data synth` did not write ({theirs[0]}"
                            f"{f' and {len(theirs) - 1} more' if len(theirs) > 1 else ''}); "
                            f"choose an empty --out (--force replaces only a dataset it wrote)")
        if not replace:
            raise DataError(f"{out}: holds a dataset `edgeseg data synth` wrote; pass --force to "
                            f"replace it")
    sample, class_names, _ = synthetic.SYNTHETIC[name]
    with atomic_dir(out, replace=replace) as tmp:
        written = Outputs(tmp, "data synth")
        written.claim_file(*(f"{kind}/{index:05d}.png" for kind in ("images", "masks")
                             for index in range(count)), "classes.txt")  # makes the folders
        for index in range(count):
            image, mask = sample(size=size, seed=seed, index=index)
            pixels = to_uint8(image)
            Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(
                tmp / "images" / f"{index:05d}.png")
            mask_image(mask).save(tmp / "masks" / f"{index:05d}.png")
        (tmp / "classes.txt").write_text("\n".join(class_names) + "\n")
    return out


__all__ = ["write_synthetic"]
