"""``python -m benchmarks.studies.hot_pixels``: the int8 case of a fluorescence camera's fields.

From an ``edgeseg data synth`` folder, 16-bit fields as such a camera writes them: the signal in
the lowest 5% of the range, read noise, and a dozen hot pixels near full scale per field (what
stretches a min/max int8 calibration until the signal has a few levels left).

    edgeseg data synth --kind nuclei --n 240 --size 256 --out hot8
    python -m benchmarks.studies.hot_pixels hot8 hot16 --seed 3
    edgeseg data synth --kind nuclei --n 200 --size 256 --seed 99 --out hot8t
    python -m benchmarks.studies.hot_pixels hot8t hot16test --seed 4
"""

from __future__ import annotations

from pathlib import Path

import click

from edgeseg.device.entry import Command


@click.command("hot_pixels", cls=Command, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("source", type=click.Path(exists=True, file_okay=False))
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--seed", type=int, default=3, show_default=True)
def main(source, out, seed):
    """Write SOURCE's images as 16-bit fields with hot pixels into OUT (masks copied)."""
    import numpy as np
    from PIL import Image

    from edgeseg.device.errors import EdgesegError

    source, out = Path(source), Path(out)
    if out.exists() and any(out.iterdir()):
        raise EdgesegError(f"{out}: not empty; give a new folder")
    images = sorted((source / "images").glob("*.png"))
    if not images:
        raise EdgesegError(f"{source / 'images'}: no PNG images (an edgeseg data synth folder)")
    (out / "images").mkdir(parents=True)
    (out / "masks").mkdir()
    rng = np.random.default_rng(seed)
    for image_path in images:
        image = np.asarray(Image.open(image_path).convert("L"), np.float64)
        field = (image / 255 * 0.05 * 65535 + rng.normal(100, 10, image.shape)).clip(0, 65535)
        ys, xs = rng.integers(0, image.shape[0], 12), rng.integers(0, image.shape[1], 12)
        field[ys, xs] = rng.uniform(30000, 65535, 12)  # hot pixels
        Image.fromarray(field.astype(np.uint16)).save(out / "images" / f"{image_path.stem}.tif")
        (out / "masks" / image_path.name).write_bytes(
            (source / "masks" / image_path.name).read_bytes())
    if (source / "classes.txt").exists():
        (out / "classes.txt").write_text((source / "classes.txt").read_text())
    click.echo(f"wrote {len(images)} 16-bit fields to {out}")


if __name__ == "__main__":
    from edgeseg.device.entry import run

    run(main, "python -m benchmarks.studies.hot_pixels")
