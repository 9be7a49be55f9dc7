"""``edgeseg data``: write a built-in dataset as PNGs (``synth``), describe a dataset folder (``info``)."""

from __future__ import annotations

import click

from edgeseg.commands.options import data_options


@click.group(short_help="Write a built-in dataset as PNGs; describe a dataset folder.")
def data():
    """Built-in datasets as files, and what edgeseg reads from a dataset folder.

    \b
    edgeseg data synth --kind nuclei --n 200 --size 256 --seed 7 --out data/nuclei
    edgeseg data info data/nuclei
    """


@data.command(short_help="Write a built-in synthetic dataset in the generic layout.")
@click.option("--kind", type=click.Choice(["nuclei", "shapes"]), default="nuclei",
              show_default=True, help="synthetic-nuclei or synthetic-shapes.")
@click.option("--n", "count", type=click.IntRange(min=1), default=200, show_default=True,
              help="How many samples.")
@click.option("--size", type=click.IntRange(min=8, max=16384), default=256, show_default=True,
              help="Image side in pixels.")
@click.option("--seed", type=int, default=7, show_default=True,
              help="Seed; training draws from seed 0 by default, so 7 gives unseen samples.")
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Output folder.")
@click.option("--force", is_flag=True,
              help="Replace a dataset this command wrote into --out (a folder holding anything "
                   "else is refused).")
def synth(kind, count, size, seed, out, force):
    """Write OUT/images/*.png, OUT/masks/*.png (palette PNGs of class ids) and OUT/classes.txt.

    The folder is written under a temporary name and renamed when complete, so an interrupted run
    leaves nothing behind. Train on it or score a model on it with --data OUT.
    """
    from edgeseg.device.data.writer import write_synthetic
    from edgeseg.device.files import check_output

    out = check_output(out, folder=True)
    path = write_synthetic(f"synthetic-{kind}", out, count=count, size=size, seed=seed,
                           replace=force)
    click.echo(f"wrote {count} {kind} samples of {size}x{size} to {path}")


DEPTHS = {"uint8": "8-bit", "uint16": "16-bit", "float32": "float"}


@data.command(short_help="Describe a dataset folder: layout, samples, classes, sizes.")
@click.argument("folder", required=False, metavar="[DIR]")
@data_options
def info(folder, source, layout, channels, num_classes):
    """Read every sample of DIR (or --data) the way training would and summarise it.

    Every image and mask is decoded and checked, so this is also a quick way to find the one
    corrupt or mismatched file in a large folder.
    """
    import numpy as np

    from edgeseg.device.data.folders import UNLABELED
    from edgeseg.device.data.roles import score_data
    from edgeseg.device.data.sizing import object_extent

    if folder:
        source = folder
    data_ = score_data(source, size=None, layout=layout, num_classes=num_classes,
                       channels=int(channels) if channels else None)
    click.echo(f"{data_.name}: {data_.layout} layout, {len(data_)} samples, "
               f"{data_.channels} channel(s), model outputs {data_.num_classes}")
    samples = getattr(data_, "sources", None) or getattr(data_, "samples", ())
    if data_.layout == "generic" and samples:
        click.echo("masks: 0/255 binary (255 = the foreground), for the whole folder"
                   if samples[0].binary else
                   "masks: class ids (255 = unlabeled), for the whole folder")
    sizes, pixels, depths, sampled = set(), np.zeros(256, np.int64), set(), []
    for index, (image, mask) in enumerate(data_):  # one at a time: large folders are streamed
        sizes.add(image.shape[:2])
        depths.add(image.dtype.name)
        pixels += np.bincount(mask.ravel(), minlength=256)
        if index < 32:
            sampled.append(mask)
    sizes = sorted(sizes)
    shown = ", ".join(f"{h}x{w}" for h, w in sizes[:5]) + (" ..." if len(sizes) > 5 else "")
    click.echo(f"image sizes (height x width): {shown}")
    deep = depths != {"uint8"}
    click.echo(f"pixels: {', '.join(sorted(DEPTHS.get(d, d) for d in depths))}; "
               f"`train --normalize auto` uses "
               f"{'per-image percentiles' if deep else 'pixel / 255'}")
    extent = object_extent(sampled)
    click.echo(f"objects: about {extent:.0f} px across (90% of object pixels); `train --mode "
               f"auto` crops at --input-size >= {max(16, int(np.ceil(extent / 16)) * 16)}, "
               f"resizes whole images below that")
    total = pixels.sum()
    for class_id, name in enumerate(data_.class_names):
        click.echo(f"  {class_id:>3} {name:<20} {100 * pixels[class_id] / total:6.2f}% of pixels")
    if pixels[UNLABELED]:
        click.echo(f"  255 {'(unlabeled)':<20} {100 * pixels[UNLABELED] / total:6.2f}% of pixels")
