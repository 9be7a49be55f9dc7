"""Score any model on arrays: a ``predict`` callable in, Dice/IoU per class out (numpy only).

The callable is what differs between back ends (a Keras model in inference mode, later a LiteRT or
ONNX Runtime session); batching, thresholding and scoring are the same for all.

    >>> result = evaluate(lambda batch: model(batch, training=False).numpy(), images, masks, 1)  # doctest: +SKIP
    >>> result["dice"], result["dice_per_class"]  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from edgeseg import metrics


def predict_labels(predict: Callable[[np.ndarray], np.ndarray], images: np.ndarray,
                   batch_size: int = 8) -> np.ndarray:
    """Class ids (N, H, W) of ``images`` (N, H, W, C) float32 in [0, 1], ``batch_size`` at a time."""
    labels = [metrics.labels_from_probs(np.asarray(predict(images[start:start + batch_size])))
              for start in range(0, len(images), batch_size)]
    return np.concatenate(labels)


def evaluate(predict: Callable[[np.ndarray], np.ndarray], images: np.ndarray, masks: np.ndarray,
             num_classes: int, batch_size: int = 8) -> dict:
    """Dice and IoU per class and their foreground means, with the number of samples scored."""
    pred = predict_labels(predict, images, batch_size)
    return {**metrics.scores(pred, masks, num_classes), "samples": int(len(images))}


def check_classes(model_classes: int, data, model_name) -> None:
    """Refuse data whose classes the model cannot predict (a binary model has one output)."""
    from edgeseg.errors import EdgesegError

    if max(2, model_classes) != max(2, data.num_classes, len(data.class_names)):
        outputs = "1 output (binary)" if model_classes == 1 else f"{model_classes} classes"
        raise EdgesegError(f"{model_name} predicts {outputs}; {data.name} has "
                           f"{len(data.class_names)} classes ({', '.join(data.class_names)})")


def keras_predictor(model) -> Callable[[np.ndarray], np.ndarray]:
    """A Keras model as a ``predict`` callable, always in inference mode (BatchNorm's moving stats)."""
    return lambda batch: np.asarray(model(batch, training=False))


__all__ = ["check_classes", "evaluate", "keras_predictor", "predict_labels"]
