"""Did training learn anything? A check of the trained model in inference mode, after the run.

A run can end "successfully" with a model that predicts background everywhere (BatchNorm
statistics that never caught up, too few steps), or one that only memorised its training images.
:func:`check_learned` compares the model's scores on its validation and training images with what
a prediction that ignores the image would reach, and names what went wrong and what to try.

    >>> ok = {"dice": 0.93, "chance_dice": 0.3, "predicted_classes": [0, 1], "pixels_per_class": [9, 1]}
    >>> check_learned(ok, ok) is None
    True
    >>> flat = dict(ok, dice=0.0, predicted_classes=[0])
    >>> check_learned(ok, flat)
    "predicts only 'background' on every validation pixel (validation Dice 0.0000, training Dice 0.9300)"
"""

from __future__ import annotations

from edgeseg.device.metrics import text

# Better than chance by at least this share of the way from chance to perfect.
MIN_GAIN_OVER_CHANCE = 0.1
# Validation Dice this far below training Dice: the model fits only the images it saw.
MAX_TRAIN_VAL_GAP = 0.25
# Fewer validation images than this and the Dice is reported with its uncertainty.
SMALL_VALIDATION = 8


def check_learned(train: dict, val: dict, class_names=("background", "foreground")) -> str | None:
    """Why the model is useless, or None when it learned something.

    ``train`` and ``val`` are :func:`edgeseg.device.scoring.score_model` results (inference mode).
    """
    present = [i for i, n in enumerate(val.get("pixels_per_class", [])) if n]
    predicted = val.get("predicted_classes", [])
    if val["dice"] is None:  # the classes that occur are judged, and none but background does
        return ("the validation images hold no labelled object (only background or unlabeled "
                "pixels), and the model predicts none: nothing to judge it on")
    scores = f"validation Dice {val['dice']:.4f}, training Dice {text(train['dice'])}"
    if len(present) > 1 and len(predicted) == 1:
        name = _name(class_names, predicted[0])
        return f"predicts only '{name}' on every validation pixel ({scores})"
    chance = val.get("chance_dice", 0.0)
    if val["dice"] < chance + MIN_GAIN_OVER_CHANCE * (1 - chance):
        return (f"validation Dice {val['dice']:.4f} is no better than a prediction that ignores "
                f"the image ({chance:.4f}: each class everywhere); training Dice "
                f"{text(train['dice'])}")
    if train["dice"] is None:
        return None
    if train["dice"] - val["dice"] > MAX_TRAIN_VAL_GAP:
        return f"fits its training images but not the validation images ({scores})"
    if val["dice"] - train["dice"] > MAX_TRAIN_VAL_GAP:  # as suspicious as the other way round
        return (f"scores far better on its validation images than on its training images "
                f"({scores})")
    return None


def advice(reason: str) -> str:
    """What to try, for a :func:`check_learned` reason."""
    if reason.startswith("fits its training"):
        return ("too few or unrepresentative training images: add images, or check that the "
                "validation images are of the same kind")
    if reason.startswith("scores far better on its validation"):
        return ("the validation images may be nearly empty, tiny or not of the training "
                "images' kind: check them (edgeseg data info --data DIR)")
    return ("check that each mask matches its image (edgeseg data info --data DIR), or train "
            "longer or more gently (edgeseg train --steps N, --lr)")


def _name(class_names, index: int) -> str:
    return class_names[index] if index < len(class_names) else f"class{index}"


__all__ = ["MAX_TRAIN_VAL_GAP", "MIN_GAIN_OVER_CHANCE", "SMALL_VALIDATION", "advice",
           "check_learned"]
