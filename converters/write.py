"""The end of every conversion: the card stamped into the file, its MACs counted, its parity
against the source checked on the very bytes that are written, then the file and its card
written (nothing is written when parity fails, unless ``keep_failed``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from converters.config import FLOAT_MODES, ConvertConfig, ConvertResult
from converters.tflite import ConversionError
from converters.verify import check_parity
from edgeseg.device import card as cards
from edgeseg.device.data import roles
from edgeseg.device.errors import EdgesegError
from edgeseg.device.files import atomic_write_bytes
from edgeseg.device.log import progress


def write_checked(out: Path, to: str, raw: bytes, card: dict, source, size, cfg: ConvertConfig,
                  data, trained_on, samples=None) -> ConvertResult:
    """Stamp ``card`` into ``raw``, count its MACs, check its parity against ``source`` (an
    EdgeModel), and write the file and its card; nothing is written when parity fails."""
    from converters import onnx as onnx_conv
    from converters.flatbuffer import rewrite
    from edgeseg.device.flops import file_cost
    from edgeseg.device.untrusted import trust

    def stamped(card_: dict) -> bytes:
        if to == "tflite":
            return rewrite(raw, card_)
        return onnx_conv.with_metadata(raw, {cards.EMBEDDED_KEY: json.dumps(card_, sort_keys=True)})

    # Count and verify the very bytes that are written (only the card inside them changes after).
    trial = out.with_name(f".{out.stem}.partial{out.suffix}")
    try:
        atomic_write_bytes(trial, stamped(card))
        try:
            cost = file_cost(trial, input_size=size)
            card.update(macs=cost.macs, params=cost.params)
        except ValueError as error:  # a shape no inference follows: said, never guessed
            card.update(macs=None, params=None)
            print(f"warning: {out}: MACs not counted: {error}", file=sys.stderr)
        parity = None
        if cfg.verify:
            progress("checking the file against its source (parity)")
            parity, where = check(source, trial, samples or roles.parity_images(
                data, verify_data=cfg.verify_data, trained_on=trained_on, size=size,
                channels=card["channels"], num_classes=card["num_classes"],
                count=cfg.verify_samples, seed=cfg.seed,
                normalization=cards.normalization_of(card), fit=cards.input_fit_of(card)), cfg)
            card["parity"] = {**parity.to_dict(), "images": where}
            if not parity.passed:
                message = (f"{out}: parity check failed on {where}: {parity.summary()} (limits: "
                           f"--parity-tolerance, --min-agreement, --max-dice-drop)")
                if not cfg.keep_failed:
                    raise ConversionError(message)
                print(f"warning: {message}; written anyway (--keep-failed), its card says so",
                      file=sys.stderr)
            if parity.warning:
                print(f"warning: {out}: {parity.warning}", file=sys.stderr)
        path = atomic_write_bytes(out, stamped(card))
        cards.write_card(path, card)
        trust(path)  # this process wrote it: later loads here need no child-process probe
    except OSError as error:
        if error.filename is not None and str(error.filename) == str(trial):
            error.filename = str(out)  # the file the user asked for, not the scratch name
        raise
    except (ConversionError, ValueError, RuntimeError, EdgesegError) as error:
        if str(trial) not in str(error):
            raise
        # a runtime refusing the scratch copy: said of the file the user asked for
        raise type(error)(str(error).replace(str(trial), str(out))) from error
    finally:
        trial.unlink(missing_ok=True)
    return ConvertResult(path, card, parity)


def unlike(calibration, reference) -> str | None:
    """Why calibration images do not look like the data the model is checked on (their pixel
    statistics after normalisation), or None. Uniform or washed-out images calibrate ranges
    that real images overflow."""
    import numpy as np

    if calibration is None or reference is None or not len(reference):
        return None
    c_mean, c_std = float(np.mean(calibration)), float(np.std(calibration))
    r_mean, r_std = float(np.mean(reference)), float(np.std(reference))
    if r_std > 0 and (c_std < 0.25 * r_std or abs(c_mean - r_mean) > 2 * r_std):
        return (f"the calibration images look unlike the model's data (pixel mean {c_mean:.3f}, "
                f"spread {c_std:.3f}; the model's data: {r_mean:.3f}, {r_std:.3f}): their int8 "
                f"ranges may not fit real images")
    return None


def require_labels(cfg, masks, where) -> None:
    """A Dice limit asked for (``--max-dice-drop``) on parity images without masks cannot be
    checked: an error, not a footnote in the card."""
    if cfg.max_dice_drop is not None and masks is None:
        from edgeseg.device.errors import ConfigError

        raise ConfigError(f"--max-dice-drop {cfg.max_dice_drop:g}: the parity images ({where}) "
                          f"have no masks, so the Dice limit cannot be checked: "
                          f"{roles.labels_hint(cfg.verify_data)}")


def check(source, path, samples, cfg):
    """(Parity, where): the converted file against its source on ``samples``
    (:func:`edgeseg.device.data.roles.parity_images`), each image fed to both as ``eval`` feeds
    the converted file (:func:`fed_alike`), so the parity Dice is the Dice ``eval`` gives on
    those images."""
    from edgeseg import runtime

    require_labels(cfg, samples.masks, samples.where)
    converted = runtime.load(path, trusted=True)  # written by this process
    _labels_fit(source.num_classes, samples)
    mode = cfg.quant if cfg.quant in FLOAT_MODES else "quantized"
    source_probs, converted_probs, masks = fed_alike(source, converted, samples.pairs)
    parity = check_parity(source_probs, converted_probs, mode=mode,
                          num_classes=source.num_classes, masks=masks, tolerance=cfg.tolerance,
                          min_agreement=cfg.min_agreement, max_dice_drop=cfg.max_dice_drop,
                          samples=len(samples.pairs))
    return parity, samples.where


def _labels_fit(num_classes: int, samples) -> None:
    """Masks whose class ids the model cannot predict (a binary model checked on a 4-class set)
    are one line, not a failure inside the Dice."""
    import numpy as np

    from edgeseg.device.errors import ConfigError

    labelled = [m[m != 255] for _, m in samples.pairs if m is not None]
    top = max((int(np.max(m)) for m in labelled if m.size), default=0)
    if top >= max(2, num_classes):
        outputs = "1 output (binary)" if num_classes == 1 else f"{num_classes} classes"
        raise ConfigError(f"the parity images ({samples.where}) have class ids up to {top}; the "
                          f"model predicts {outputs}: give --verify-data labelled images of its "
                          f"own task, or --no-verify")


class _FedAs:
    """A source model seen through a converted file's input and card, so that both are fed the
    same way (the same size, tiles, normalisation and fit)."""

    def __init__(self, model, like):
        self.predict, self.input_shape, self.card = model.predict, like.input_shape, like.card
        self.num_classes = model.num_classes


def fed_alike(source, converted, pairs):
    """(source probabilities, converted probabilities, masks or None) over every pixel of the
    raw images ``pairs`` (image, mask or None), each image predicted whole by both models as
    ``eval`` predicts the converted file (:func:`edgeseg.device.tiling.predict_image`: padded,
    tiled or resized as its card says), as (1, pixels, classes) and (1, pixels) arrays."""
    import numpy as np

    from edgeseg.device.card import size_of
    from edgeseg.device.tiling import predict_image

    tile = size_of(converted.card)
    seen = _FedAs(source, converted)
    ours, theirs, truth = [], [], []
    for image, mask in pairs:
        for model, out in ((seen, ours), (converted, theirs)):
            probs = predict_image(model, image, tile=tile)
            out.append(probs.reshape(-1, probs.shape[-1]))
        if mask is not None:
            truth.append(np.asarray(mask).reshape(-1))
    masks = np.concatenate(truth)[None] if truth and len(truth) == len(pairs) else None
    return np.concatenate(ours)[None], np.concatenate(theirs)[None], masks


__all__ = ["check", "fed_alike", "require_labels", "unlike", "write_checked"]
