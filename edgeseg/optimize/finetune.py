"""The short fine-tune every optimisation stage runs: same data, loss and metric as training."""

from __future__ import annotations

import math

from edgeseg._keras import keras
from edgeseg.config import OptimizeConfig
from edgeseg.device.errors import ConfigError
from edgeseg.device.log import dropping
from edgeseg.losses import DiceMetric, segmentation_loss
from edgeseg.tfdata import make_dataset


def plan_steps(cfg: OptimizeConfig, train_samples: int) -> tuple[int, int]:
    """(epochs, steps per epoch) covering at least ``cfg.steps`` steps: an epoch is one pass, or 25
    steps for a training set smaller than that (its crops are random: batches never repeat).

    The pruning schedule is laid over ``epochs * steps_per_epoch``, the steps that really run.
    """
    if cfg.steps < 1:
        raise ConfigError(f"--steps must be >= 1 (got {cfg.steps})")
    per_epoch = max(1, min(cfg.steps, max(25, train_samples // cfg.batch_size)))
    return math.ceil(cfg.steps / per_epoch), per_epoch


def finetune(model, train_data, cfg: OptimizeConfig, *, input_size: int, num_classes: int,
             epochs: int, steps_per_epoch: int, callbacks=(), verbose: int = 1,
             normalization=None, augment=True):
    """Fine-tune ``model`` (plain, pruning-, clustering- or quantization-wrapped) in place, on
    inputs normalised and augmented as its training's were (``normalization``, ``augment``)."""
    model.compile(optimizer=keras.optimizers.Adam(cfg.lr), loss=segmentation_loss("dice+ce"),
                  metrics=[DiceMetric(num_classes)])
    dataset = make_dataset(train_data, input_size, cfg.batch_size, training=True, seed=cfg.seed,
                           repeat=True, normalization=normalization, augment=augment)
    # Cluster-preserving QAT computes kernels from centroids, so Keras finds no gradient for the
    # kernel variables themselves and says so at every trace: expected, not a problem.
    with dropping("tensorflow", "Gradients do not exist for variables"):
        model.fit(dataset, epochs=epochs, steps_per_epoch=steps_per_epoch,
                  callbacks=list(callbacks), verbose=verbose)
    return model
