"""Magnitude pruning with tfmot: a schedule over the fine-tune's real steps, 2:4 sparsity, stripping.

tfmot's schedules update the masks every ``frequency`` steps, 100 by default: a fine-tune of a few
hundred steps would end before the last update, at a fraction of the target (or at 0% when it is
shorter than 100 steps). :func:`make_schedule` derives the frequency and the end step from the real
number of steps instead, and :func:`check_reached` refuses a result that missed its target.

    >>> wrapped, plan = apply_pruning(model, sparsity=0.5, schedule="poly", total_steps=300)  # doctest: +SKIP
    >>> model.fit(..., callbacks=pruning_callbacks()); pruned = strip(wrapped)  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import tensorflow_model_optimization as tfmot

from edgeseg._keras import keras
from edgeseg.device.errors import ConfigError
from edgeseg.optimize.selection import choose, selected_names

SCHEDULES = ("poly", "constant")
_sparsity = tfmot.sparsity.keras


@dataclass(frozen=True)
class PrunePlan:
    """The schedule as it was applied, for the model card."""

    sparsity: float
    schedule: str
    structured: str | None
    total_steps: int
    frequency: int
    end_step: int  # the last mask update (-1: every `frequency` steps to the end)
    layers: tuple[str, ...]

    def to_dict(self) -> dict:
        return {**asdict(self), "layers": list(self.layers)}


def parse_structured(text: str | None) -> tuple[int, int] | None:
    """``"2:4"`` -> (2, 4): m zeros in every n weights."""
    if text is None:
        return None
    try:
        m, n = (int(part) for part in text.split(":"))
    except ValueError:
        raise ConfigError(f"--structured must look like 2:4 (got {text!r})") from None
    if not 0 < m < n:
        raise ConfigError(f"--structured {text}: need 0 < m < n")
    return m, n


def make_schedule(kind: str, sparsity: float, total_steps: int):
    """A tfmot schedule that reaches ``sparsity`` within ``total_steps``; returns (schedule, frequency, end).

    ``poly``: PolynomialDecay from 0 to the target, its last update at ~70% of the steps, so the
    rest of the fine-tune recovers accuracy at the final sparsity; masks update about 20 times.
    ``constant``: ConstantSparsity at the target from the first step, masks refreshed as often.
    """
    if kind not in SCHEDULES:
        raise ConfigError(f"--schedule must be one of {', '.join(SCHEDULES)} (got {kind!r})")
    if not 0 < sparsity < 1:
        raise ConfigError(f"--prune must be between 0 and 1 (got {sparsity})")
    if total_steps < 2:
        raise ConfigError(f"pruning needs a fine-tune of at least 2 steps (got {total_steps})")
    frequency = max(1, total_steps // 20)
    if kind == "constant":
        return _sparsity.ConstantSparsity(sparsity, begin_step=0, frequency=frequency), frequency, -1
    end_step = max(frequency, int(0.7 * total_steps) // frequency * frequency)
    schedule = _sparsity.PolynomialDecay(initial_sparsity=0.0, final_sparsity=sparsity,
                                         begin_step=0, end_step=end_step, frequency=frequency)
    return schedule, frequency, end_step


def apply_pruning(model, *, sparsity: float | None, schedule: str, total_steps: int,
                  structured: str | None = None):
    """Wrap the selected kernels of ``model`` for pruning; returns (wrapped model, PrunePlan).

    The returned model shares its layers with ``model``. Train it with :func:`pruning_callbacks`.
    """
    m_by_n = parse_structured(structured)
    if m_by_n:
        natural = m_by_n[0] / m_by_n[1]
        if sparsity not in (None, natural):
            raise ConfigError(f"--structured {structured} is {natural:.0%} sparsity by definition; "
                              f"leave out --prune or give {natural}")
        sparsity, schedule = natural, "constant"  # tfmot sets m-by-n masks once, at the first step
    elif sparsity is None:
        raise ConfigError("pruning needs a target sparsity (--prune) or --structured 2:4")
    tf_schedule, frequency, end_step = make_schedule(schedule, sparsity, total_steps)
    chosen = selected_names(choose(model, axis_multiple=m_by_n[1] if m_by_n else None))

    def wrap(layer):
        if layer.name not in chosen:
            return layer
        return _sparsity.prune_low_magnitude(layer, pruning_schedule=tf_schedule,
                                             sparsity_m_by_n=m_by_n)

    wrapped = keras.models.clone_model(model, clone_function=wrap)
    plan = PrunePlan(sparsity, schedule, structured, total_steps, frequency, end_step,
                     tuple(sorted(chosen)))
    return wrapped, plan


def pruning_callbacks() -> list:
    """The callback that advances the pruning step (tfmot refuses to train without it)."""
    return [_sparsity.UpdatePruningStep()]


def strip(model):
    """The plain Keras model, pruning wrappers removed, zeros kept."""
    return _sparsity.strip_pruning(model)


def check_reached(report: dict, plan: PrunePlan, tolerance: float = 0.01) -> None:
    """Refuse a pruned model whose selected kernels missed the target sparsity."""
    measured = report["selected"]["sparsity"]
    if measured < plan.sparsity - tolerance:
        raise ConfigError(
            f"pruning reached {measured:.1%} instead of {plan.sparsity:.0%} in {plan.total_steps} "
            f"steps (masks updated every {plan.frequency} steps); give more --steps")


def satisfies_m_by_n(kernel: np.ndarray, m: int = 2, n: int = 4) -> bool:
    """True when every n consecutive weights along the pruned axis hold at least m zeros.

    The pruned axis is the kernel's second-to-last (input channels of Conv2D and Dense, filters of
    Conv2DTranspose): TFLite's weight layout puts it last, where sparse kernels read it.
    """
    kernel = np.asarray(kernel)
    rows = np.moveaxis(kernel, -1, 0).reshape(-1, kernel.shape[-2])
    pad = (-rows.shape[1]) % n
    blocks = np.pad(rows, [(0, 0), (0, pad)]).reshape(rows.shape[0], -1, n)
    return bool(((blocks == 0).sum(-1) >= m).all())


__all__ = ["PrunePlan", "apply_pruning", "check_reached", "make_schedule", "parse_structured",
           "pruning_callbacks", "satisfies_m_by_n", "strip"]
