"""Dice, IoU and agreement in plain numpy (no TensorFlow): the same code on the host and the device.

Scores are pooled over every pixel given (a whole validation set at once), per class, from a
confusion matrix: Dice_c = 2 TP / (2 TP + FP + FN), IoU_c = TP / (TP + FP + FN). Pixels whose
ground truth is 255 ("unlabeled") take no part. A class absent from both the prediction and the
ground truth of everything scored has no Dice (``None`` in the scores, left out of the mean,
shown as "–"): nothing was there to find, and a 1.0 for it would lift the mean of the classes
that are. "Mean" is over the foreground classes (every class but 0) that occur; for a binary
model that is the foreground's Dice, and ``None`` when no foreground occurs at all.

    >>> true = np.array([[0, 1], [1, 255]])
    >>> pred = np.array([[0, 1], [0, 1]])
    >>> round(float(dice(pred, true, num_classes=2)), 3)
    0.667
"""

from __future__ import annotations

import numpy as np

UNLABELED = 255


def labels_from_probs(probs: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Class ids (N, H, W) from probabilities (N, H, W, C): argmax, or ``> threshold`` for C == 1."""
    probs = np.asarray(probs)
    if probs.shape[-1] == 1:
        return (probs[..., 0] > threshold).astype(np.uint8)
    return np.argmax(probs, axis=-1).astype(np.uint8)


def confusion_matrix(pred: np.ndarray, true: np.ndarray, num_classes: int) -> np.ndarray:
    """(num_classes, num_classes) counts, rows = ground truth, columns = prediction; 255 ignored."""
    pred, true = np.asarray(pred).ravel(), np.asarray(true).ravel()
    if pred.shape != true.shape:
        raise ValueError(f"prediction has {pred.size} pixels, ground truth {true.size}")
    keep = true != UNLABELED
    pred, true = pred[keep].astype(np.int64), true[keep].astype(np.int64)
    if true.size and (true.max() >= num_classes or pred.max() >= num_classes):
        raise ValueError(f"class id >= num_classes ({num_classes})")
    return np.bincount(true * num_classes + pred, minlength=num_classes ** 2).reshape(
        num_classes, num_classes)


def _classes(num_classes: int) -> int:
    """A binary model (one sigmoid output) has two classes: background and foreground."""
    return max(2, num_classes)


def dice_per_class(pred, true, num_classes: int) -> np.ndarray:
    """Dice of each class, 2|X∩Y| / (|X| + |Y|), pooled over all pixels given (NaN for a class
    absent from both)."""
    return np.array(scores(pred, true, num_classes)["dice_per_class"], np.float64)


def iou_per_class(pred, true, num_classes: int) -> np.ndarray:
    """IoU (Jaccard) of each class, |X∩Y| / |X∪Y|, pooled over all pixels given (NaN for a
    class absent from both)."""
    return np.array(scores(pred, true, num_classes)["iou_per_class"], np.float64)


def dice(pred, true, num_classes: int) -> float | None:
    """Mean Dice over the foreground classes that occur (None when none does)."""
    return scores(pred, true, num_classes)["dice"]


def iou(pred, true, num_classes: int) -> float | None:
    """Mean IoU over the foreground classes that occur (None when none does)."""
    return scores(pred, true, num_classes)["iou"]


def difference(a, b) -> float | None:
    """``a - b`` of two scores, None when either has none."""
    return None if a is None or b is None else float(a - b)


def text(value, digits: int = 4) -> str:
    """A score as a table shows it: ``0.9760``, or "–" for a score there is none of."""
    if value is None or (isinstance(value, float) and value != value):
        return "–"
    return f"{value:.{digits}f}"


def scores(pred, true, num_classes: int) -> dict:
    """Dice and IoU, per class and mean over the foreground, from one confusion matrix (JSON-ready)."""
    return scores_from_confusion(confusion_matrix(pred, true, _classes(num_classes)))


def scores_from_confusion(cm: np.ndarray) -> dict:
    """:func:`scores` of a confusion matrix (rows ground truth, columns prediction): per class
    (``None`` for a class absent from both), their means over the foreground classes that occur,
    and ``absent_classes``."""
    cm = np.asarray(cm, np.float64)
    tp = np.diag(cm)
    predicted, actual = cm.sum(0), cm.sum(1)
    occurs = predicted + actual > 0
    dice_c = 2 * tp / np.maximum(predicted + actual, 1)
    union = predicted + actual - tp
    iou_c = tp / np.maximum(union, 1)
    foreground = occurs[1:]

    def mean(values):
        return float(values[1:][foreground].mean()) if foreground.any() else None

    return {"dice": mean(dice_c),
            "dice_per_class": [float(d) if o else None for d, o in zip(dice_c, occurs)],
            "iou": mean(iou_c),
            "iou_per_class": [float(i) if o else None for i, o in zip(iou_c, occurs)],
            "pixels_per_class": [int(n) for n in actual],
            "absent_classes": [int(c) for c in np.flatnonzero(~occurs)]}


def dice_interval(confusions, level: float = 0.95, rounds: int = 2000,
                  seed: int = 0) -> tuple[float, float]:
    """A bootstrap interval of the pooled foreground Dice: images drawn with replacement
    ``rounds`` times, the pooled Dice of each draw, its ``level`` central range. Small
    validation sets get wide intervals, as they should.

        >>> perfect = np.diag([90, 10])
        >>> dice_interval([perfect, perfect])
        (1.0, 1.0)
    """
    stack = np.asarray(confusions, np.float64)
    if len(stack) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(stack), (rounds, len(stack)))
    counts = np.stack([np.bincount(draw, minlength=len(stack)) for draw in draws])
    pooled = np.einsum("rn,nij->rij", counts, stack)
    values = [v for v in (scores_from_confusion(cm)["dice"] for cm in pooled) if v is not None]
    if not values:
        return None, None
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def chance_dice(cm: np.ndarray) -> float:
    """The mean foreground Dice a prediction that ignores the image can reach at best: for each
    foreground class of the ground truth, predicting it everywhere (2p / (1 + p) for a class on a
    share p of the pixels). 0.0 when no foreground class is in the ground truth."""
    cm = np.asarray(cm, np.float64)
    share = cm.sum(1) / max(cm.sum(), 1)
    there = share[1:] > 0
    return float((2 * share / (1 + share))[1:][there].mean()) if there.any() else 0.0


def agreement(pred_a, pred_b, true=None) -> float:
    """Fraction of pixels where two predictions give the same class (unlabeled pixels left out)."""
    pred_a, pred_b = np.asarray(pred_a), np.asarray(pred_b)
    if pred_a.shape != pred_b.shape:
        raise ValueError(f"predictions differ in shape: {pred_a.shape} vs {pred_b.shape}")
    same = pred_a == pred_b
    if true is not None:
        same = same[np.asarray(true) != UNLABELED]
    return float(same.mean()) if same.size else 1.0


__all__ = ["agreement", "chance_dice", "confusion_matrix", "dice", "dice_interval",
           "dice_per_class", "iou", "iou_per_class", "labels_from_probs",
           "scores", "scores_from_confusion", "text", "difference"]
