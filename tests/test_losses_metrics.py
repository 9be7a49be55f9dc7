"""Dice and IoU in numpy, the training losses and the Keras Dice metric: 255 takes no part."""

from __future__ import annotations

import numpy as np
import pytest

from edgeseg.device import metrics
from edgeseg.device.scoring import Pairs, score_labels, score_model


def test_dice_and_iou_by_hand():
    true = np.array([[0, 1, 1], [2, 2, 255]])
    pred = np.array([[0, 1, 0], [2, 1, 2]])
    s = metrics.scores(pred, true, num_classes=3)
    # class 1: |X|=2 pred, |Y|=2 true, overlap 1 -> Dice 0.5, IoU 1/3
    # class 2: pred {(1,0)} (the 255 pixel is left out), true {(1,0),(1,1)} -> Dice 2/3, IoU 1/2
    np.testing.assert_allclose(s["dice_per_class"][1:], [0.5, 2 / 3])
    np.testing.assert_allclose(s["iou_per_class"][1:], [1 / 3, 0.5])
    assert s["dice"] == pytest.approx((0.5 + 2 / 3) / 2)
    assert s["pixels_per_class"] == [1, 2, 2]


def test_a_class_absent_from_both_has_no_dice_and_stays_out_of_the_mean():
    true = np.zeros((4, 4), np.uint8)
    assert metrics.dice(true, true, num_classes=1) is None  # nothing to find: no Dice, not 1.0
    assert metrics.iou(true, true, num_classes=1) is None
    wrong = true.copy()
    wrong[0, 0] = 1
    assert metrics.dice(wrong, true, num_classes=1) == 0.0  # found where there was nothing


def test_a_voc_like_set_where_one_class_of_21_occurs_is_scored_on_that_class():
    """21 classes, only "person" (15) in the masks: the mean is the person's Dice, not lifted
    by nineteen absent classes at 1.0 each (0.4524 for a person Dice of 0.0471 before)."""
    true = np.zeros((10, 10), np.uint8)
    true[2:6, 2:6] = 15
    pred = np.zeros_like(true)
    pred[2:4, 2:4] = 15  # a quarter of the person found
    s = metrics.scores(pred, true, num_classes=21)
    assert s["dice"] == pytest.approx(2 * 4 / (4 + 16))
    assert s["dice_per_class"][15] == pytest.approx(0.4)
    assert [c for c, d in enumerate(s["dice_per_class"]) if d is None] == s["absent_classes"]
    assert len(s["absent_classes"]) == 19 and metrics.text(s["dice_per_class"][3]) == "–"
    pred[8, 8] = 7  # a class predicted where none is: it occurs, and scores 0
    assert metrics.scores(pred, true, 21)["dice_per_class"][7] == 0.0


def test_chance_counts_only_the_classes_in_the_ground_truth():
    cm = np.zeros((4, 4))
    cm[0, 0], cm[1, 1] = 90, 10  # classes 2 and 3 absent
    assert metrics.chance_dice(cm) == pytest.approx(2 * 0.1 / 1.1)


def test_binary_model_has_background_and_foreground():
    probs = np.array([[[[0.2], [0.7]], [[0.9], [0.4]]]], np.float32)
    labels = metrics.labels_from_probs(probs)
    np.testing.assert_array_equal(labels, [[[0, 1], [1, 0]]])
    assert len(metrics.dice_per_class(labels, labels, num_classes=1)) == 2


def test_agreement_leaves_unlabeled_out():
    a, b = np.array([0, 1, 1, 0]), np.array([0, 1, 0, 1])
    assert metrics.agreement(a, b) == 0.5
    assert metrics.agreement(a, b, true=np.array([0, 1, 255, 255])) == 1.0


def test_confusion_matrix_rejects_out_of_range_ids():
    with pytest.raises(ValueError, match="class id >= num_classes"):
        metrics.confusion_matrix(np.array([3]), np.array([0]), 2)


class _Oracle:
    """A "model" that reads the answer off the image (one channel a class, as probabilities)."""

    input_shape, num_classes, card = (None, None, None, 3), 3, {}

    def predict(self, batch):
        return np.asarray(batch, np.float32)


def test_score_model_pools_every_image_as_score_labels_does():
    rng = np.random.default_rng(0)
    masks = rng.integers(0, 3, (5, 8, 8)).astype(np.uint8)
    images = (np.eye(3, dtype=np.uint8)[masks] * 255)  # one-hot classes as 8-bit images
    result = score_model(_Oracle(), Pairs("oracle", list(zip(images, masks))), tile=(8, 8))
    assert result["dice"] == 1.0 and result["samples"] == 5 and result["image_sizes"] == ["8x8"]
    wrong = score_labels([np.zeros_like(m) for m in masks], list(masks), 3)
    assert wrong["samples"] == 5 and wrong["dice"] < 0.5


def test_metrics_import_no_tensorflow():
    import subprocess
    import sys

    code = "import sys, edgeseg.device.metrics, edgeseg.device.scoring, " \
           "edgeseg.device.data.datasets; " \
           "print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --- the TensorFlow side -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def losses(tf):
    from edgeseg import losses

    return losses


def _onehot_probs(labels, classes):
    return np.eye(classes, dtype=np.float32)[labels]


def test_perfect_prediction_has_zero_dice_loss(losses):
    true = np.random.default_rng(1).integers(0, 3, (2, 8, 8)).astype(np.uint8)
    probs = _onehot_probs(true, 3)
    assert float(losses.soft_dice_loss(true, probs)) == pytest.approx(0.0, abs=1e-5)
    assert float(losses.cross_entropy_loss(true, probs)) < 1e-4


def test_unlabeled_pixels_take_no_part_in_any_loss(losses):
    rng = np.random.default_rng(2)
    true = rng.integers(0, 2, (2, 8, 8, 1)).astype(np.uint8)
    true[:, :2] = 255
    probs = rng.random((2, 8, 8, 1)).astype(np.float32)
    other = probs.copy()
    other[:, :2] = 1.0 - other[:, :2]  # change the prediction only where the label is 255
    for kind in ("dice", "ce", "dice+ce"):
        loss = losses.segmentation_loss(kind)
        assert float(loss(true, probs)) == pytest.approx(float(loss(true, other)), rel=1e-6), kind


def test_dice_plus_ce_is_their_sum(losses):
    rng = np.random.default_rng(3)
    true = rng.integers(0, 4, (1, 6, 6)).astype(np.uint8)
    logits = rng.normal(size=(1, 6, 6, 4))
    probs = (np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)).astype(np.float32)
    total = losses.segmentation_loss("dice+ce")(true, probs)
    parts = losses.soft_dice_loss(true, probs) + losses.cross_entropy_loss(true, probs)
    assert float(total) == pytest.approx(float(parts), rel=1e-6)


def test_unknown_loss_is_refused(losses):
    from edgeseg.device.errors import ConfigError

    with pytest.raises(ConfigError, match="loss must be one of dice\\+ce, dice, ce"):
        losses.segmentation_loss("focal")


@pytest.mark.parametrize("classes", [1, 4])
def test_keras_dice_metric_equals_the_numpy_dice(losses, classes):
    rng = np.random.default_rng(4)
    true = rng.integers(0, max(2, classes), (3, 16, 16)).astype(np.uint8)
    true[0, 0] = 255
    probs = rng.random((3, 16, 16, classes)).astype(np.float32)
    if classes > 1:
        probs /= probs.sum(-1, keepdims=True)
    metric = losses.DiceMetric(classes)
    metric.update_state(true[:2], probs[:2])
    metric.update_state(true[2:], probs[2:])  # pooled over batches, like the numpy score
    want = metrics.dice(metrics.labels_from_probs(probs), true, classes)
    assert float(metric.result()) == pytest.approx(want, rel=1e-5)
