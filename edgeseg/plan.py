"""The training budget: how many optimizer steps a dataset gets, chosen from the data itself.

A fixed epoch count gives 20 images 20 optimizer steps and 20,000 images 25,000: too few to learn
anything, and more than the data needs. edgeseg counts the *views* a training set holds — crops
of the input size in its images (an image of four times the input's area holds four) — and gives

    steps = min(max(STEPS_PER_ROOT_VIEW * sqrt(views), MIN_STEPS) * min(3, 1 + (k - 1) / 2),
                MAX_STEPS)

optimizer steps for ``k`` foreground classes: a floor that lets a few dozen augmented images
train (random crops, flips, rotations, zoom and photometric changes make every step's batch new),
then growth with the square root of the data, so ten times the images costs about three times
the time; every class beyond the first adds half, up to three times in all (telling classes
apart takes longer than finding objects: synthetic-shapes' three classes need twice nuclei's
steps). Without
augmentation a small set would only be memorised: the budget is capped at MAX_PASSES_UNAUGMENTED
passes. ``--steps`` or ``--epochs`` (passes over the training set) replace the rule.

Validation runs at ``chunks`` points of the run (Keras epochs of ``steps_per_chunk`` steps). A
chosen budget is rounded up to whole chunks; a ``--steps`` count is run exactly where up to half
as few chunks divide it (``--steps 80``: 2 chunks of 40), else rounded up and the plan line says
so (``--steps 97``: "--steps 97, rounded up to 3 chunks of 33").

    >>> plan = plan_training(images=21, val_images=5, views=21, batch_size=16)
    >>> plan.steps, plan.chunks, plan.steps_per_chunk
    (600, 20, 30)
    >>> plan_training(images=20_000, val_images=4_000, views=20_000, batch_size=16).steps
    3540
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MIN_STEPS = 600  # a 21-image folder reaches its long-schedule Dice (measured: README, Training)
STEPS_PER_ROOT_VIEW = 25  # 400 views -> 600 steps; 2,000 -> 1,120; 20,000 -> 3,540
MAX_STEPS = 20_000
MAX_PASSES_UNAUGMENTED = 30
MAX_CHUNKS = 20  # validation points in a run
MIN_STEPS_PER_CHUNK = 25


@dataclass(frozen=True)
class TrainingPlan:
    """What a training run will do, decided before it starts (and printed in one line)."""

    steps: int
    batch_size: int
    chunks: int  # Keras epochs: validation and backup points
    steps_per_chunk: int
    images: int  # training images
    val_images: int
    views: float  # input-sized crops in the training images
    why: str  # "chosen from the data", "--steps", "--epochs"

    @property
    def passes(self) -> float:
        """The passes over the training set (epochs) that ``steps`` batches amount to."""
        return self.steps * self.batch_size / max(1, self.images)

    def describe(self, seconds_per_step: float | None = None) -> str:
        line = (f"{self.images} training + {self.val_images} validation images; {self.steps} "
                f"steps of {self.batch_size} ({self.why}) = {self.passes:.1f} passes over the "
                f"training set, validated {self.chunks} times")
        if seconds_per_step:
            line += (f"; about {_duration(self.steps * seconds_per_step)} "
                     f"({seconds_per_step * 1e3:.0f} ms/step, measured)")
        return line

    def to_dict(self) -> dict:
        return {"steps": self.steps, "batch_size": self.batch_size, "chunks": self.chunks,
                "steps_per_chunk": self.steps_per_chunk, "images": self.images,
                "val_images": self.val_images, "views": round(self.views, 1),
                "passes": round(self.passes, 2), "why": self.why}


def plan_training(*, images: int, val_images: int, views: float, batch_size: int,
                  augmented: bool = True, classes: int = 1, steps: int | None = None,
                  epochs: int | None = None) -> TrainingPlan:
    """The budget for ``images`` training images holding ``views`` input-sized crops of
    ``classes`` foreground classes.

    ``steps`` (optimizer steps) or ``epochs`` (passes, each ``images // batch_size`` steps, at
    least one) override the rule; with ``epochs`` the run is validated after each pass.
    """
    if steps is not None and epochs is not None:
        from edgeseg.device.errors import ConfigError

        raise ConfigError("give --steps or --epochs, not both")
    per_pass = max(1, images // batch_size)
    if epochs is not None:
        return TrainingPlan(epochs * per_pass, batch_size, epochs, per_pass, images, val_images,
                            views, "--epochs")
    if steps is not None:
        why = "--steps"
    else:
        steps = max(MIN_STEPS, STEPS_PER_ROOT_VIEW * math.sqrt(max(views, 1.0)))
        steps = round(min(MAX_STEPS, steps * min(3.0, 1 + (max(1, classes) - 1) / 2)))
        if not augmented:
            steps = min(steps, math.ceil(MAX_PASSES_UNAUGMENTED * images / batch_size))
        why = "chosen from the data"
    wanted = max(1, min(MAX_CHUNKS, steps // MIN_STEPS_PER_CHUNK))
    chunks = wanted
    if why == "--steps":  # the user's count: down to half as many chunks where that divides it
        chunks = next((c for c in range(wanted, 0, -1) if steps % c == 0 and 2 * c >= wanted),
                      wanted)
    per_chunk = -(-steps // chunks)
    if chunks * per_chunk != steps and why == "--steps":
        why += f" {steps}, rounded up to {chunks} chunks of {per_chunk}"
    return TrainingPlan(chunks * per_chunk, batch_size, chunks, per_chunk, images, val_images,
                        views, why)


def views_of(image_sizes, input_size: int) -> float:
    """Input-sized crops the images hold: each image's area over the input's, at least one."""
    area = input_size * input_size
    return float(sum(max(1.0, h * w / area) for h, w in image_sizes))


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


__all__ = ["TrainingPlan", "plan_training", "views_of"]
