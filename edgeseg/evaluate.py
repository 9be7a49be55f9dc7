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


class KerasInMemory:
    """A Keras model object with the part of the EdgeModel interface that scoring uses
    (``input_shape``, ``num_classes``, ``card``, ``predict`` in inference mode)."""

    format = runtime = "keras"

    def __init__(self, model, card: dict):
        self.model, self.card = model, card
        self.predict = keras_predictor(model)

    @property
    def input_shape(self) -> tuple:
        return (None, *self.model.input_shape[1:])

    @property
    def num_classes(self) -> int:
        return int(self.model.output_shape[-1])


def score_model(model, data, *, limit: int | None = None, overlap: int = 32,
                tile: int | None = None) -> dict:
    """Dice/IoU of a model (an EdgeModel, or :class:`KerasInMemory`) on a dataset's whole images,
    each fed as the model's card says (:func:`edgeseg.tiling.predict_image`: normalised, then run
    whole, tiled or resized), pooled over the images. Adds ``samples``, ``dice_interval`` (a 95%
    bootstrap interval over the images), ``chance_dice`` (:func:`edgeseg.metrics.chance_dice`),
    ``predicted_classes`` (the classes predicted anywhere) and ``image_sizes``.
    """
    from edgeseg.tiling import predict_image

    classes = max(2, model.num_classes)
    count = len(data) if limit is None else min(limit, len(data))
    confusions, predicted, sizes = [], np.zeros(classes, bool), set()
    for index in range(count):
        image, mask = data.sample(index)
        sizes.add(f"{mask.shape[1]}x{mask.shape[0]}")
        labels = metrics.labels_from_probs(predict_image(model, image, overlap, tile)[None])[0]
        confusions.append(metrics.confusion_matrix(labels, mask, classes))
        predicted |= confusions[-1].sum(0) > 0
    if not confusions:
        raise ValueError("no samples to score")
    pooled = np.sum(confusions, axis=0)
    return {**metrics.scores_from_confusion(pooled), "samples": count,
            "dice_interval": list(metrics.dice_interval(confusions)),
            "chance_dice": metrics.chance_dice(pooled),
            "predicted_classes": [int(c) for c in np.flatnonzero(predicted)],
            "image_sizes": sorted(sizes)}


__all__ = ["KerasInMemory", "check_classes", "evaluate", "keras_predictor", "predict_labels",
           "score_model"]
