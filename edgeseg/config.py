"""One frozen dataclass per stage, saved as JSON beside every artifact and loaded back to resume.

    >>> cfg = TrainConfig(data=DataConfig("synthetic-nuclei"), model=ModelConfig("mobile_unet"))
    >>> TrainConfig.from_dict(cfg.to_dict()) == cfg
    True
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path


class _Json:
    def to_dict(self) -> dict:
        return _plain(dataclasses.asdict(self))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: dict):
        data = cls._upgrade(dict(data))
        kwargs = {}
        for f in dataclasses.fields(cls):
            if f.name not in data:
                continue
            value = data[f.name]
            sub = _NESTED.get((cls.__name__, f.name))
            kwargs[f.name] = sub.from_dict(value) if sub and isinstance(value, (dict, bool)) \
                else value
        return cls(**kwargs)


    @classmethod
    def _upgrade(cls, data: dict) -> dict:
        """Keys of configs written by earlier versions, in today's terms."""
        return data


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


@dataclass(frozen=True)
class ModelConfig(_Json):
    """Which zoo model and its options (``create_model(name, **options)``)."""

    name: str = "mobile_unet"
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class DataConfig(_Json):
    """Where the data comes from and how it is cut into training inputs.

    ``source`` is a built-in name (``synthetic-nuclei``, ``synthetic-shapes``) or a folder.
    """

    source: str = "synthetic-nuclei"
    input_size: int = 128  # training crops; the model is fully convolutional and runs at any size
    layout: str | None = None  # folders: detected when None
    channels: int | None = None  # None: the dataset's own (1 for nuclei/grey, 3 for RGB)
    num_classes: int | None = None  # None: from the dataset (class list or largest id)
    # folders: random "crop"s at the images' own resolution (the model then runs tile by tile),
    # or "resize" whole images to input_size (and every image at inference); "auto": crop unless
    # the objects are larger than a crop (measured on the masks)
    mode: str = "auto"
    val_source: str | None = None  # a second folder for validation; else a seeded split
    val_fraction: float = 0.2
    n_train: int = 400  # built-in datasets: how many samples to draw
    n_val: int = 64
    image_size: int | None = None  # built-in datasets: image side; None = input_size
    seed: int = 0
    cache_mb: int = 2048  # folders: decode into memory below this size, else stream from disk


@dataclass(frozen=True)
class Augment(_Json):
    """Random changes to each training crop, seeded; label 255 stays unlabeled through all of them.

    Geometric ones move image and mask together; photometric ones act on the normalised image.
    The defaults are mild: they widen what a few dozen images teach without changing the task.
    Zoom is off by default: where object size tells classes apart it cost synthetic-shapes 0.02
    Dice (0.9478 without, 0.9304 with 0.15), and a microscope's magnification is fixed.
    """

    flip: bool = True  # left-right and up-down
    rotate: bool = True  # multiples of 90 degrees
    scale: float = 0.0  # zoom by a factor in [1/(1+s), 1+s], log-uniform (0: off)
    brightness: float = 0.05  # add U(-b, b)
    contrast: float = 0.15  # stretch about the crop's mean by U(1-c, 1+c)
    gamma: float = 0.15  # x ** exp(U(-g, g))
    noise: float = 0.01  # Gaussian noise, standard deviation U(0, n)

    # the largest sensible value of each strength (contrast 1 would flatten a crop, more invert it)
    LIMITS = {"scale": 1.0, "brightness": 1.0, "contrast": 0.9, "gamma": 1.0, "noise": 1.0}

    def __post_init__(self):
        from edgeseg.errors import ConfigError

        for name, top in self.LIMITS.items():
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0 <= value <= top):
                raise ConfigError(f"--augment {name} must be a number from 0 to {top:g} "
                                  f"(got {value!r})")

    @classmethod
    def off(cls) -> "Augment":
        return cls(False, False, 0.0, 0.0, 0.0, 0.0, 0.0)

    @classmethod
    def from_dict(cls, data):
        if isinstance(data, bool):  # configs written before augmentation had options
            return cls() if data else cls.off()
        return super().from_dict(data)

    def describe(self) -> str:
        parts = [name for name, on in (("flips", self.flip), ("rot90", self.rotate)) if on]
        parts += [f"{name} {getattr(self, name):g}" for name in
                  ("scale", "brightness", "contrast", "gamma", "noise") if getattr(self, name)]
        return ", ".join(parts) or "none"


@dataclass(frozen=True)
class TrainConfig(_Json):
    """Everything ``edgeseg train`` needs; saved as ``config.json`` beside the model."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    # The budget: None and None lets edgeseg.plan choose the optimizer steps from the data; else
    # ``steps`` (optimizer steps) or ``epochs`` (passes over the training set), not both.
    steps: int | None = None
    epochs: int | None = None
    batch_size: int = 16
    lr: float = 3e-3  # Adam with cosine decay to 1% over the run
    loss: str = "dice+ce"
    augment: Augment = field(default_factory=Augment)
    normalize: str = "auto"  # "auto": percentile for 16-bit/float images, else scale (see card)
    seed: int = 0
    mixed_precision: bool | None = None  # None: on when a GPU is visible
    xla: bool = False
    deterministic: bool = False

    @classmethod
    def _upgrade(cls, data: dict) -> dict:
        per_epoch = data.pop("steps_per_epoch", None)  # before budgets: epochs x steps per epoch
        if per_epoch and data.get("epochs") and not data.get("steps"):
            data["steps"], data["epochs"] = per_epoch * data["epochs"], None
        return data


@dataclass(frozen=True)
class OptimizeConfig(_Json):
    """What ``edgeseg optimize`` does to a trained model; stages chain prune -> cluster -> QAT."""

    data: DataConfig = field(default_factory=DataConfig)
    prune: float | None = None  # target sparsity of the pruned kernels, e.g. 0.5
    schedule: str = "poly"  # "poly" (PolynomialDecay from 0) or "constant" (ConstantSparsity)
    structured: str | None = None  # "2:4": two zeros in every four weights along the input axis
    cluster: int | None = None  # weight clusters per kernel, e.g. 16
    qat: bool = False  # quantization-aware fine-tune (prune-/cluster-preserving after those)
    steps: int = 300  # fine-tune steps per stage: about the length of the training run
    lr: float = 5e-4  # Adam, constant: a tenth of training's peak, enough to recover accuracy
    batch_size: int = 16
    seed: int = 0


# Per-dataset training defaults: how many built-in samples to draw. The budget (steps) comes
# from edgeseg.plan for every dataset alike.
TRAIN_DEFAULTS = {
    "synthetic-nuclei": {"n_train": 400, "lr": 3e-3},
    "synthetic-shapes": {"n_train": 512, "lr": 5e-3},  # three classes: a hotter run
}
FOLDER_DEFAULTS = {"n_train": 400, "lr": 3e-3}


def train_defaults(source: str) -> dict:
    """``{"n_train", "lr"}`` for a dataset (a built-in name or a folder)."""
    return dict(TRAIN_DEFAULTS.get(source, FOLDER_DEFAULTS))


_NESTED = {("TrainConfig", "data"): DataConfig, ("TrainConfig", "model"): ModelConfig,
           ("TrainConfig", "augment"): Augment, ("OptimizeConfig", "data"): DataConfig}


def save_config(config: _Json, path) -> Path:
    from edgeseg.files import atomic_write_text

    return atomic_write_text(path, config.to_json() + "\n")


def load_config(cls, path):
    return cls.from_dict(json.loads(Path(path).read_text()))
