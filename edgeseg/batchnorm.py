"""BatchNorm statistics that match the trained weights: a recalibration pass after training.

During training BatchNorm normalises with each batch's statistics and keeps an exponential moving
average of them for inference. After a short run that average trails far behind the weights
(Keras' momentum 0.99 averages over ~100 steps, while the weights keep moving), so a model that
scores well in training mode can predict nothing in inference mode. :func:`recalibrate` replaces
the averages with the population statistics of the final weights ("precise BN", Wu & Johnson,
2021): training-mode forward passes over training batches with the momentum set so each layer
keeps the plain mean of the batch statistics. Weights are untouched. Works for every model with
BatchNormalization layers, nested ones included (a Keras application inside a peer model).

    >>> recalibrate(model, train_batches, batches=32)  # doctest: +SKIP
"""

from __future__ import annotations


def batchnorm_layers(model) -> list:
    """Every BatchNormalization layer of a model, in nested models too."""
    from edgeseg._keras import layers

    found = []
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            found.append(layer)
        elif hasattr(layer, "layers"):
            found += batchnorm_layers(layer)
    return found


def recalibrate(model, batches, *, batches_max: int = 32) -> int:
    """Set every BatchNorm's moving mean and variance to the mean of its batch statistics over
    up to ``batches_max`` batches of ``batches`` (an iterable of ``(images, masks)``) under the
    model's current weights; returns how many batches were used (0: the model has no BatchNorm)."""
    bns = batchnorm_layers(model)
    if not bns:
        return 0
    momenta = [layer.momentum for layer in bns]
    used = 0
    try:
        for images, _ in batches:
            if used == batches_max:
                break
            used += 1
            for layer in bns:  # moving = moving * (n-1)/n + batch / n: the running plain mean
                layer.momentum = (used - 1) / used
            model(images, training=True)
    finally:
        for layer, momentum in zip(bns, momenta):
            layer.momentum = momentum
    return used


__all__ = ["batchnorm_layers", "recalibrate"]
