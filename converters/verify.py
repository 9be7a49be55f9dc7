"""Parity: run a converted file in its real runtime and compare it with the model it came from.

Both sides are compared as probabilities (logits after their sigmoid/softmax), so the limits are
on the outputs' own scale. Float conversions must reproduce them within a tolerance (1e-3 for
float32: a deep network's float32 round-off reaches 1e-4; 1e-2 for float16 weights) and agree on
the class of at least 99.9% of pixels. Quantized files are judged by what they predict: at least
98% of pixels in the source's class and, where ground truth is known, a Dice at most 0.02 below
the source's. Every limit is an option and is recorded in the card; a file outside them is
refused like a float one (``keep_failed`` writes it anyway, marked). The images are ones the
calibration did not use (see :mod:`converters.export`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from edgeseg.device import metrics

TOLERANCES = {"none": 1e-3, "fp16": 1e-2}
FLOAT_AGREEMENT = 0.999
QUANT_AGREEMENT = 0.98  # quantized files: at most 2% of pixels may change class...
QUANT_DICE_DROP = 0.02  # ...and Dice may fall at most this much, where ground truth is known
DISAGREEMENT_WARNING = 0.01


@dataclass(frozen=True)
class Parity:
    mode: str
    samples: int
    max_abs_diff: float
    mean_abs_diff: float
    agreement: float
    tolerance: float | None  # max abs difference allowed (float modes), None for quantized ones
    passed: bool
    min_agreement: float | None = None  # pixel agreement required, None when not judged
    max_dice_drop: float | None = None  # Dice fall allowed against the source, None: not judged
    dice_source: float | None = None
    dice_converted: float | None = None
    dice_delta: float | None = None
    warning: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        text = (f"parity on {self.samples} samples: max |diff| {self.max_abs_diff:.2e}, "
                f"agreement {self.agreement:.2%}")
        if self.dice_delta is not None:
            text += f", Dice {self.dice_source:.4f} -> {self.dice_converted:.4f} " \
                    f"({self.dice_delta:+.4f})"
        limits = []
        if self.tolerance is not None:
            limits.append(f"|diff| <= {self.tolerance:g}")
        if self.min_agreement is not None:
            limits.append(f"agreement >= {self.min_agreement:.2%}")
        if self.max_dice_drop is not None and self.dice_delta is not None:
            limits.append(f"Dice change >= {-self.max_dice_drop:g}" if self.max_dice_drop else
                          "no Dice drop")
        if limits:
            text += f" ({'within' if self.passed else 'OUTSIDE'} {' and '.join(limits)})"
        return text


def check_parity(source_probs: np.ndarray, converted_probs: np.ndarray, *, mode: str,
                 num_classes: int, masks: np.ndarray | None = None,
                 tolerance: float | None = None, min_agreement: float | None = None,
                 max_dice_drop: float | None = None, samples: int | None = None) -> Parity:
    """Compare the probabilities of the source and the converted model on the same images.

    ``tolerance`` (float modes), ``min_agreement`` and ``max_dice_drop`` replace the defaults:
    float modes ``TOLERANCES`` and ``FLOAT_AGREEMENT``; quantized modes ``QUANT_AGREEMENT`` and,
    with ground truth, ``QUANT_DICE_DROP``. ``samples``: how many images the arrays hold (when
    their pixels are pooled into one row), else their first axis."""
    diff = np.abs(np.asarray(source_probs, np.float64) - np.asarray(converted_probs, np.float64))
    source_labels = metrics.labels_from_probs(source_probs)
    converted_labels = metrics.labels_from_probs(converted_probs)
    agreement = metrics.agreement(source_labels, converted_labels, masks)
    floating = mode in TOLERANCES
    tolerance = (tolerance if tolerance is not None else TOLERANCES[mode]) if floating else None
    if min_agreement is None:
        min_agreement = FLOAT_AGREEMENT if floating else QUANT_AGREEMENT
    dice_source = dice_converted = delta = None
    if masks is not None:
        dice_source = metrics.dice(source_labels, masks, num_classes)
        dice_converted = metrics.dice(converted_labels, masks, num_classes)
        # no foreground class occurs in the parity images (nor is one predicted): no Dice to
        # hold, agreement alone judges
        delta = None if dice_source is None or dice_converted is None else \
            dice_converted - dice_source
        if max_dice_drop is None and not floating:
            max_dice_drop = QUANT_DICE_DROP
    passed = (tolerance is None or bool(diff.max() <= tolerance)) and \
        agreement >= min_agreement and \
        (max_dice_drop is None or delta is None or delta >= -max_dice_drop)
    warning = None
    if not floating and agreement < 1 - DISAGREEMENT_WARNING:
        what = "quantization" if mode == "quantized" else f"{mode} quantization"
        warning = f"{1 - agreement:.1%} of pixels change class after {what}"
    count = len(source_probs) if samples is None else samples
    return Parity(mode, int(count), float(diff.max()), float(diff.mean()),
                  float(agreement), tolerance, passed, min_agreement, max_dice_drop, dice_source,
                  dice_converted, delta, warning)


__all__ = ["DISAGREEMENT_WARNING", "FLOAT_AGREEMENT", "Parity", "QUANT_AGREEMENT",
           "QUANT_DICE_DROP", "TOLERANCES", "check_parity"]
