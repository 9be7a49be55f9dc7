"""Training losses and the Keras Dice metric; pixels labelled 255 ("unlabeled") take no part.

Models output probabilities (sigmoid for one class, softmax otherwise), so every loss here takes
probabilities. ``y_true`` is the class-id mask, (B, H, W) or (B, H, W, 1).

    >>> loss = segmentation_loss(num_classes=1, kind="dice+ce")  # doctest: +SKIP
"""

from __future__ import annotations

from edgeseg._keras import keras, tf
from edgeseg.device.errors import ConfigError

UNLABELED = 255
LOSSES = ("dice+ce", "dice", "ce")
_EPS = 1e-6


def _targets(y_true, y_pred):
    """(one-hot targets, probabilities, valid-pixel weights), all (B, H, W, K) float32."""
    y_true = tf.cast(y_true, tf.int32)
    if y_true.shape.rank == 4:
        y_true = y_true[..., 0]
    valid = tf.cast(tf.not_equal(y_true, UNLABELED), tf.float32)[..., None]
    labels = tf.where(tf.equal(y_true, UNLABELED), tf.zeros_like(y_true), y_true)
    y_pred = tf.cast(y_pred, tf.float32)
    classes = y_pred.shape[-1]
    if classes == 1:
        onehot = tf.cast(tf.equal(labels, 1), tf.float32)[..., None]
    else:
        onehot = tf.one_hot(labels, classes, dtype=tf.float32)
    return onehot, y_pred, valid


def soft_dice_loss(y_true, y_pred):
    """1 - soft Dice, per class over the whole batch, averaged over the foreground classes."""
    onehot, probs, valid = _targets(y_true, y_pred)
    axes = (0, 1, 2)
    intersection = tf.reduce_sum(onehot * probs * valid, axes)
    total = tf.reduce_sum((onehot + probs) * valid, axes)
    per_class = (2.0 * intersection + _EPS) / (total + _EPS)
    if probs.shape[-1] > 1:
        per_class = per_class[1:]
    return 1.0 - tf.reduce_mean(per_class)


def cross_entropy_loss(y_true, y_pred):
    """Binary (one class) or categorical cross-entropy, averaged over labelled pixels."""
    onehot, probs, valid = _targets(y_true, y_pred)
    probs = tf.clip_by_value(probs, _EPS, 1.0 - _EPS)
    if probs.shape[-1] == 1:
        pixel = -(onehot * tf.math.log(probs) + (1 - onehot) * tf.math.log(1 - probs))
    else:
        pixel = -tf.reduce_sum(onehot * tf.math.log(probs), -1, keepdims=True)
    return tf.reduce_sum(pixel * valid) / tf.maximum(tf.reduce_sum(valid), 1.0)


def segmentation_loss(kind: str = "dice+ce"):
    """The training loss: ``dice+ce`` (their sum, the default), ``dice`` or ``ce``."""
    if kind not in LOSSES:
        raise ConfigError(f"loss must be one of {', '.join(LOSSES)} (got {kind!r})")
    if kind == "dice":
        return soft_dice_loss
    if kind == "ce":
        return cross_entropy_loss

    def dice_ce(y_true, y_pred):
        return soft_dice_loss(y_true, y_pred) + cross_entropy_loss(y_true, y_pred)

    dice_ce.__name__ = "dice_ce"
    return dice_ce


@keras.utils.register_keras_serializable(package="edgeseg")
class DiceMetric(keras.metrics.Metric):
    """Hard Dice pooled over an epoch (argmax, or > 0.5 for one class), mean over foreground classes.

    The same definition as :func:`edgeseg.device.metrics.dice`: a class absent from both prediction
    and ground truth scores 1.
    """

    def __init__(self, num_classes: int, name: str = "dice", **kwargs):
        super().__init__(name=name, **kwargs)
        self.num_classes = num_classes
        classes = max(2, num_classes)
        self.intersection = self.add_weight("intersection", (classes,), initializer="zeros")
        self.total = self.add_weight("total", (classes,), initializer="zeros")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = tf.cast(y_true, tf.int32)
        if y_true.shape.rank == 4:
            y_true = y_true[..., 0]
        if y_pred.shape[-1] == 1:
            pred = tf.cast(y_pred[..., 0] > 0.5, tf.int32)
        else:
            pred = tf.argmax(y_pred, -1, output_type=tf.int32)
        classes = max(2, self.num_classes)
        valid = tf.cast(tf.not_equal(y_true, UNLABELED), tf.float32)[..., None]
        true_1h = tf.one_hot(y_true, classes) * valid  # 255 -> all zeros anyway
        pred_1h = tf.one_hot(pred, classes) * valid
        self.intersection.assign_add(tf.reduce_sum(true_1h * pred_1h, (0, 1, 2)))
        self.total.assign_add(tf.reduce_sum(true_1h + pred_1h, (0, 1, 2)))

    def result(self):
        per_class = tf.where(self.total > 0, 2 * self.intersection / tf.maximum(self.total, 1.0),
                             tf.ones_like(self.total))
        return tf.reduce_mean(per_class[1:])

    def reset_state(self):
        for variable in (self.intersection, self.total):
            variable.assign(tf.zeros_like(variable))

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes}

