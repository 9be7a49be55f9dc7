"""Parity: run a converted file in its real runtime and compare it with the Keras model it came from.

Float conversions must reproduce the probabilities (max abs difference <= 1e-4 for float32,
<= 1e-2 for float16 weights); quantized ones are judged by what they predict: the share of pixels
whose class agrees with the source's, and the Dice of both against the ground truth when it is
known. Past 1% disagreement a quantized model gets a warning, not a refusal: how much is
acceptable is the user's call (and ``edgeseg check``'s).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from edgeseg import metrics

TOLERANCES = {"none": 1e-4, "fp16": 1e-2}
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
        if self.tolerance is not None:
            text += f" ({'within' if self.passed else 'OUTSIDE'} {self.tolerance:g})"
        return text


def keras_probabilities(model, images: np.ndarray, batch_size: int = 8) -> np.ndarray:
    return np.concatenate([np.asarray(model(images[i:i + batch_size], training=False))
                           for i in range(0, len(images), batch_size)])


def check_parity(source_probs: np.ndarray, converted_probs: np.ndarray, *, mode: str,
                 num_classes: int, masks: np.ndarray | None = None) -> Parity:
    """Compare the probabilities of the source and the converted model on the same images."""
    diff = np.abs(np.asarray(source_probs, np.float64) - np.asarray(converted_probs, np.float64))
    source_labels = metrics.labels_from_probs(source_probs)
    converted_labels = metrics.labels_from_probs(converted_probs)
    agreement = metrics.agreement(source_labels, converted_labels, masks)
    tolerance = TOLERANCES.get(mode)
    passed = bool(diff.max() <= tolerance) if tolerance is not None else True
    dice_source = dice_converted = delta = None
    if masks is not None:
        dice_source = metrics.dice(source_labels, masks, num_classes)
        dice_converted = metrics.dice(converted_labels, masks, num_classes)
        delta = dice_converted - dice_source
    warning = None
    if tolerance is None and agreement < 1 - DISAGREEMENT_WARNING:
        warning = f"{1 - agreement:.1%} of pixels change class after {mode} quantization"
    return Parity(mode, int(len(source_probs)), float(diff.max()), float(diff.mean()),
                  float(agreement), tolerance, passed, dice_source, dice_converted, delta, warning)


__all__ = ["DISAGREEMENT_WARNING", "Parity", "TOLERANCES", "check_parity", "keras_probabilities"]
