"""The scoring loop: each image predicted as the model's card says, its labels taken, Dice and IoU
pooled over the images. ``eval``, the harness (here and on a board), training's validation,
the targets' rows, the reports and ``edgeseg.testing`` all score through it. numpy only.

    >>> result = score_model(model, data)  # doctest: +SKIP
    >>> result["dice"], result["dice_per_class"], result["samples"]  # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np

from edgeseg.device import metrics
from edgeseg.device.errors import EdgesegError
from edgeseg.device.tiling import predict_image


class Pairs:
    """Images already decoded, as the scoring loop reads a dataset: ``(image, mask)`` pairs with
    a name (``len``, ``sample(i)``)."""

    def __init__(self, name: str, pairs):
        self.name, self.pairs = name, list(pairs)

    def __len__(self) -> int:
        return len(self.pairs)

    def sample(self, index: int):
        return self.pairs[index]


def labels_of(model, image: np.ndarray, overlap: int = 32, tile=None) -> np.ndarray:
    """Class ids (H, W) of one raw image (as decoded): normalised as the model's card says, then
    run whole, tiled or resized (:func:`edgeseg.device.tiling.predict_image`)."""
    return metrics.labels_from_probs(predict_image(model, image, overlap, tile)[None])[0]


def score_labels(labels, masks, num_classes: int) -> dict:
    """Dice/IoU per class and their foreground means, pooled over every image's pixels, with
    ``samples``, ``dice_interval`` (a 95% bootstrap interval over the images), ``chance_dice``
    (:func:`edgeseg.device.metrics.chance_dice`), ``predicted_classes`` (the classes predicted
    anywhere) and ``image_sizes``."""
    classes = max(2, num_classes)
    return _pooled([metrics.confusion_matrix(pred, mask, classes)
                    for pred, mask in zip(labels, masks)],
                   {f"{m.shape[0]}x{m.shape[1]}" for m in masks})


def _pooled(confusions: list, sizes: set) -> dict:
    """:func:`score_labels` from each image's confusion matrix."""
    if not confusions:
        raise ValueError("no samples to score")
    pooled = np.sum(confusions, axis=0)
    predicted = np.any([cm.sum(0) > 0 for cm in confusions], axis=0)
    return {**metrics.scores_from_confusion(pooled), "samples": len(confusions),
            "dice_interval": list(metrics.dice_interval(confusions)),
            "chance_dice": metrics.chance_dice(pooled),
            "predicted_classes": [int(c) for c in np.flatnonzero(predicted)],
            "image_sizes": sorted(sizes)}


def predictions(model, data, *, limit: int | None = None, overlap: int = 32, tile=None,
                step=None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(labels, masks) of a dataset's first ``limit`` images (all by default), each predicted
    whole by :func:`labels_of`, for a caller that compares models pixel by pixel (the harness's
    agreement); ``step()`` is called after each (a progress bar)."""
    count = len(data) if limit is None else min(limit, len(data))
    labels, masks = [], []
    for index in range(count):
        image, mask = data.sample(index)
        labels.append(labels_of(model, image, overlap, tile))
        masks.append(mask)
        if step is not None:
            step()
    return labels, masks


def score_model(model, data, *, limit: int | None = None, overlap: int = 32,
                tile=None) -> dict:
    """Dice/IoU of a model (an EdgeModel, or anything with its ``predict``, ``input_shape``,
    ``num_classes`` and ``card``) on a dataset's whole images (:func:`score_labels`), one image
    at a time: only each image's confusion matrix is kept (a folder streamed from disk is never
    held whole)."""
    classes = max(2, model.num_classes)
    count = len(data) if limit is None else min(limit, len(data))
    confusions, sizes = [], set()
    for index in range(count):
        image, mask = data.sample(index)
        confusions.append(metrics.confusion_matrix(labels_of(model, image, overlap, tile), mask,
                                                   classes))
        sizes.add(f"{mask.shape[0]}x{mask.shape[1]}")
    return _pooled(confusions, sizes)


def score_on(model, source: str, *, size=None, layout: str | None = None, count: int = 64,
             seed: int = 0, num_classes: int | None = None):
    """(the images, the size used, the scores) of a model on a named dataset, as ``edgeseg
    eval`` scores it: the images :func:`edgeseg.device.data.roles.score_data` gives (held-out
    built-in samples at ``size``, or a folder's images whole), each fed as the model's card says
    (tiled at ``size`` for a model that takes any size: its card's, else 256). Said on stderr:
    images that trained the model (its card's training split), data whose range is far from
    what the model expects."""
    import sys

    from edgeseg.device.card import failed_note, size_of
    from edgeseg.device.data import folders
    from edgeseg.device.data.datasets import is_builtin
    from edgeseg.device.data.roles import (
        score_data,
        scored_training_images,
        trained_config,
    )
    from edgeseg.device.preprocess import range_note

    _, height, width, channels = model.input_shape
    size = (height, width) if height is not None else \
        (size or size_of(model.card) or (256, 256))
    data = score_data(source, size=size, channels=channels, layout=layout,
                      num_classes=num_classes, model_classes=max(2, model.num_classes),
                      count=count, seed=seed)
    check_classes(model.num_classes, data, model.path)
    if failed := failed_note(model.card):
        print(f"warning: {model.path}: {failed}", file=sys.stderr)
    trained_names = model.card.get("class_names")
    if trained_names and not is_builtin(source) and \
            folders.find_samples(source, layout).class_file is not None and \
            [str(n) for n in trained_names] != list(data.class_names):
        print(f"warning: {data.name}: its class file names {', '.join(data.class_names)}; "
              f"{model.path.name} was trained on {', '.join(map(str, trained_names))}: each is "
              f"scored by its class id", file=sys.stderr)
    trained = scored_training_images(trained_config(model.card), data)
    if trained:
        print(f"warning: {data.name}: {trained} of its {len(data)} images trained {model.path} "
              f"(the training split its card records): scores on them are optimistic; score "
              f"images it never saw", file=sys.stderr)
    dim = range_note((data.sample(i)[0] for i in range(min(32, len(data)))), model.card)
    if dim:
        print(f"warning: {data.name}: {dim}", file=sys.stderr)
    return data, size, score_model(model, data, tile=size)


def check_classes(model_classes: int, data, model_name) -> None:
    """Refuse data whose classes the model cannot predict (a binary model has one output)."""
    if max(2, model_classes) != max(2, data.num_classes, len(data.class_names)):
        outputs = "1 output (binary)" if model_classes == 1 else f"{model_classes} classes"
        raise EdgesegError(f"{model_name} predicts {outputs}; {data.name} has "
                           f"{len(data.class_names)} classes ({', '.join(data.class_names)})")


__all__ = ["Pairs", "check_classes", "labels_of", "predictions", "score_labels",
           "score_model", "score_on"]
