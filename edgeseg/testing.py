"""pytest helpers for accuracy-regression checks in your own test suite.

    from edgeseg.testing import assert_dice_close, assert_no_regression

    def test_int8_keeps_the_accuracy():
        assert_dice_close("model.keras", "model_int8.tflite", "data/val", tol=0.01)

    def test_no_regression_against_the_release():
        assert_no_regression("runs/ci/report.json", "baselines/release.json", max_dice_drop=0.005)

Both raise ``AssertionError`` with a message that names what regressed; they need only the
runtimes of the files they are given (TensorFlow for Keras models).
"""

from __future__ import annotations

from pathlib import Path


def _model(model):
    from edgeseg import runtime

    return runtime.load(model) if isinstance(model, (str, Path)) else model


def dice_of(model, data: str = "synthetic-nuclei", *, count: int = 16, size: int | None = None,
            seed: int = 0, layout: str | None = None) -> float:
    """Mean foreground Dice of a model (a path or an EdgeModel) on ``data``, scored exactly as
    ``edgeseg eval`` scores it (:func:`edgeseg.device.scoring.score_on`: ``count`` held-out
    built-in samples at ``size``, or every image of a folder, whole, each fed as the model's card
    says)."""
    from edgeseg.device.scoring import score_on

    return score_on(_model(model), data, size=size, layout=layout, count=count,
                    seed=seed)[2]["dice"]


def assert_dice_close(model_a, model_b, data: str = "synthetic-nuclei", tol: float = 0.01, *,
                      count: int = 16, size: int | None = None, seed: int = 0) -> tuple[float, float]:
    """Fail when the two models' Dice on the same images differ by more than ``tol``.

    Returns (Dice of ``model_a``, Dice of ``model_b``) when they agree.
    """
    a, b = _model(model_a), _model(model_b)
    size = size or a.input_shape[1] or b.input_shape[1]
    dice_a = dice_of(a, data, count=count, size=size, seed=seed)
    dice_b = dice_of(b, data, count=count, size=size, seed=seed)
    if dice_a is None or dice_b is None:
        raise AssertionError(f"no Dice to compare on {count} images of {data}: no foreground "
                             f"class occurs in them (nor is any predicted)")
    if abs(dice_a - dice_b) > tol:
        raise AssertionError(f"Dice of {getattr(a, 'path', a)} is {dice_a:.4f}, of "
                             f"{getattr(b, 'path', b)} {dice_b:.4f}: they differ by "
                             f"{abs(dice_a - dice_b):.4f} > {tol} on {count} images of {data}")
    return dice_a, dice_b


def assert_no_regression(report, baseline=None, **limits) -> None:
    """Fail when ``report`` regresses against ``baseline`` (bench JSON dicts or paths).

    ``limits`` are those of :func:`edgeseg.gate.compare`: ``max_dice_drop``,
    ``max_latency_ratio``, ``max_size_ratio``, ``max_dice_delta``.
    """
    from edgeseg.device.benchjson import load_report
    from edgeseg.gate import compare

    report = load_report(report) if isinstance(report, (str, Path)) else report
    if isinstance(baseline, (str, Path)):
        baseline = load_report(baseline)
    problems = compare(report, baseline, **limits)
    if problems:
        raise AssertionError(f"{len(problems)} regression(s):\n" +
                             "\n".join(f"  {p}" for p in problems))


__all__ = ["assert_dice_close", "assert_no_regression", "dice_of"]
