"""``edgeseg predict``: class-id masks and colour overlays for images of any size."""

from __future__ import annotations

import click

from edgeseg.commands.options import keras_options
from edgeseg.device.cli_options import contract_from, contract_options


@click.command(short_help="Masks and overlays for images of any size (sliding-window tiles).")
@click.argument("model_path", metavar="MODEL", type=click.Path())
@click.argument("images", nargs=-1, required=True, metavar="IMAGE...", type=click.Path())
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Output folder.")
@click.option("--tile", type=click.IntRange(min=16),
              help="Tile side for models that take any size, on images over 1024x1024 pixels "
                   "(smaller ones run whole) [the size in the model card, else 256]; fixed-size "
                   "models use theirs.")
@click.option("--overlap", type=click.IntRange(min=0), default=None,
              help="Pixels shared by neighbouring tiles (blended) [32, at most a quarter tile].")
@click.option("--threads", type=click.IntRange(min=1), help="Runtime threads.")
@click.option("--force", is_flag=True,
              help="Replace masks and overlays an earlier predict wrote into --out.")
@keras_options
@contract_options
def predict(model_path, images, out, tile, overlap, threads, force, unsafe, custom_objects,
            **contract):
    """Segment IMAGE... with MODEL (.tflite, .onnx, .keras/.h5) and write OUT/<name>_mask.png
    (class ids as a palette PNG) and OUT/<name>_overlay.png for each.

    Images are fed as the model's card says: normalised (x/255, per-image percentiles or mean/std;
    16-bit images read in their own depth), then run through overlapping tiles of the model's
    input size at their own resolution and blended back, or, for a model trained on whole
    resized images, resized to its input and the mask back.

    \b
    edgeseg predict model_int8.tflite scan_*.png --out masks/
    """
    from pathlib import Path

    import numpy as np
    from PIL import Image

    from edgeseg import runtime
    from edgeseg.device.card import contract_note, failed_note, normalization_of
    from edgeseg.device.data.folders import read_raw
    from edgeseg.device.files import atomic_file, check_output, resolved
    from edgeseg.device.outputs import Outputs
    from edgeseg.device.preprocess import display_affine, range_note
    from edgeseg.device.tiling import model_tile, segment_labels
    from edgeseg.device.visualize import mask_image, overlay

    out = check_output(out, inputs=[model_path], folder=True)
    model = runtime.load(model_path, num_threads=threads, unsafe=unsafe,
                         custom_objects=custom_objects,
                         contract=contract_from(**contract))
    model_norm = normalization_of(model.card)
    _, height, width, channels = model.input_shape
    if failed := failed_note(model.card):
        click.echo(f"warning: {model_path}: {failed}", err=True)
    note = contract_note(model.card)
    if note:
        click.echo(f"warning: {model_path}: {note}", err=True)
    if height is None:
        height, width = model_tile(model, tile)
        if height % 16 or width % 16:
            raise click.BadParameter(f"{height}x{width} must be a multiple of 16",
                                     param_hint="'--tile'")
    if overlap is None:
        overlap = min(32, min(height, width) // 4)
    elif overlap >= min(height, width):
        raise click.BadParameter(f"{overlap} must be smaller than the tile ({height})",
                                 param_hint="'--overlap'")
    stems = {}
    for path in images:  # two images must not write one mask
        other = stems.setdefault(Path(path).stem, path)
        if other != path:
            raise click.BadParameter(f"{other} and {path} would both write "
                                     f"{Path(out) / (Path(path).stem + '_mask.png')}; predict "
                                     f"them into different --out folders", param_hint="IMAGE")
    outputs = Outputs(out, "predict")
    outputs.check_inputs({"MODEL": model_path})
    for path in images:
        outputs.check_inputs({"IMAGE": path})
    inputs = {resolved(path, "IMAGE") for path in images} | {resolved(model_path, "MODEL")}
    targets = [out / f"{Path(path).stem}_{suffix}.png" for path in images
               for suffix in ("mask", "overlay")]
    for target in targets:  # nothing written over an input
        if resolved(target, "--out") in inputs:
            raise click.BadParameter(f"{target} is one of the inputs; choose another --out",
                                     param_hint="'--out'")
    names = [target.name for target in targets]
    outputs.refuse_unowned(files=names)  # --force replaces masks it wrote, never the user's
    for target in targets:  # and those only when asked
        if target.exists() and not force:
            raise click.BadParameter(f"{target} exists; --force replaces it",
                                     param_hint="'--out'")
    for path in images:  # every image decodes before anything is written (one at a time)
        read_raw(path, channels)
    outputs.claim_file(*names)
    # the images given, judged together (up to 32, read once more): one scene's colours alone
    # say little where every training scene has its own
    dim = range_note((read_raw(path, channels) for path in images), model.card)
    if dim:
        given = str(images[0]) if len(images) == 1 else f"the {len(images)} images given" \
            if len(images) <= 32 else f"the first 32 of the {len(images)} images given"
        click.echo(f"warning: {given}: {dim}", err=True)
    for path in images:
        image = read_raw(path, channels)  # its own depth; normalised tile by tile as the card says
        labels = segment_labels(model, image, overlap=overlap, tile=(height, width))
        painted = np.empty((*labels.shape, 3), np.uint8)
        counts = np.zeros(max(2, model.num_classes, int(labels.max()) + 1), np.int64)
        a, b = display_affine(image, model_norm)  # the image as the model saw it, in [0, 1]
        for row in range(0, len(labels), 256):  # band by band: no float copy of the whole image
            band = np.clip(image[row:row + 256].astype(np.float32) * a + b, 0, 1)
            painted[row:row + 256] = overlay(band, labels[row:row + 256])
            counts += np.bincount(labels[row:row + 256].ravel(), minlength=len(counts))
        stem = Path(path).stem
        # mask and overlay as a pair: the overlay is encoded (straight to disk) and put in place,
        # then the mask; an interruption before that leaves neither
        with atomic_file(out / f"{stem}_mask.png") as mask_handle:
            mask_image(labels).save(mask_handle, format="PNG")
            with atomic_file(out / f"{stem}_overlay.png") as overlay_handle:
                Image.fromarray(painted).save(overlay_handle, format="PNG")
        share = ", ".join(f"{c / labels.size:.1%}" for c in counts[1:])
        click.echo(f"{path}: {image.shape[0]}x{image.shape[1]} -> {out / (stem + '_mask.png')} "
                   f"(foreground {share})")
