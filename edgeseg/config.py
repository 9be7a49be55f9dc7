"""One frozen dataclass per stage, saved as JSON beside every artifact and loaded back to resume:
data (:class:`DataConfig`), model, training, optimization and the whole run (:class:`RunConfig`).

    >>> cfg = TrainConfig(data=DataConfig("synthetic-nuclei"), model=ModelConfig("mobile_unet"))
    >>> TrainConfig.from_dict(cfg.to_dict()) == cfg
    True
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from edgeseg.device.data.config import DataConfig
from edgeseg.device.jsonconfig import JsonConfig, load_config, save_config


@dataclass(frozen=True)
class ModelConfig(JsonConfig):
    """Which zoo model and its options (``create_model(name, **options)``)."""

    name: str = "mobile_unet"
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Augment(JsonConfig):
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
        from edgeseg.device.errors import ConfigError

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
class TrainConfig(JsonConfig):
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
    def nested(cls) -> dict[str, type]:
        return {"data": DataConfig, "model": ModelConfig, "augment": Augment}

    @classmethod
    def _upgrade(cls, data: dict) -> dict:
        per_epoch = data.pop("steps_per_epoch", None)  # before budgets: epochs x steps per epoch
        if per_epoch and data.get("epochs") and not data.get("steps"):
            data["steps"], data["epochs"] = per_epoch * data["epochs"], None
        return data


@dataclass(frozen=True)
class OptimizeConfig(JsonConfig):
    """What ``edgeseg optimize`` does to a trained model; stages chain prune -> cluster -> QAT."""

    data: DataConfig = field(default_factory=DataConfig)
    prune: float | None = None  # target sparsity of the pruned kernels, e.g. 0.5
    schedule: str = "poly"  # "poly" (PolynomialDecay from 0) or "constant" (ConstantSparsity)
    structured: str | None = None  # "2:4": two zeros in every four weights along the input axis
    cluster: int | None = None  # weight clusters per kernel, e.g. 16
    qat: bool = False  # quantization-aware fine-tune (prune-/cluster-preserving after those)
    steps: int = 300  # fine-tune steps per stage: half the default training run's 600
    lr: float = 5e-4  # Adam, constant: a tenth of training's peak, enough to recover accuracy
    batch_size: int = 16
    seed: int = 0

    @classmethod
    def nested(cls) -> dict[str, type]:
        return {"data": DataConfig}


@dataclass(frozen=True)
class RunConfig(JsonConfig):
    """What ``edgeseg run`` does; saved as ``run.json``. ``quick`` shrinks every stage."""

    data: str = "synthetic-nuclei"
    layout: str | None = None
    test_data: str | None = None  # a labelled folder to score on; else the held-out images
    model: ModelConfig = field(default_factory=ModelConfig)
    input_size: int | tuple[int, int] = 256  # the deployed (converted, benchmarked) size: a
    # side, or (height, width)
    train_size: int = 128  # training crops: the model is fully convolutional
    quick: bool = False
    epochs: int | None = None  # training passes; None: the budget edgeseg.plan chooses
    train_steps: int | None = None  # training optimizer steps instead (quick: 96)
    steps: int | None = None  # optimize fine-tune steps per stage (None: 200; quick: 30)
    # (200: a third of the training run; held-out Dice within 0.0004 of 300's, 2 min less)
    threads: tuple[int, ...] = (1, 2)
    runs: int | None = None  # timed bench iterations (None: 50; quick: 10)
    samples: int | None = None  # bench images (None: 32; quick: 8)
    calib_samples: int | None = None  # int8 calibration images (None: 100; quick: 16)
    verify_samples: int | None = None  # parity images per conversion (None: 16; quick: 8)
    seed: int = 0
    model_file: str | None = None  # a user's trained model: no training, its own I/O contract
    contract: dict = field(default_factory=dict)  # contract keys over its card (runtime.load)
    unsafe: bool = False  # its Lambda layers may load
    targets: tuple[str, ...] = ()  # target names (edgeseg.device.targets): rows per .tflite

    def resolved(self) -> "RunConfig":
        """The config with every None replaced by its (quick or full) default."""
        quick = self.quick
        train_steps = self.train_steps or (96 if quick and not self.epochs else None)
        return replace(
            self, train_steps=train_steps,
            steps=self.steps or (30 if quick else 200), runs=self.runs or (10 if quick else 50),
            samples=self.samples or (8 if quick else 32),
            calib_samples=self.calib_samples or (16 if quick else 100),
            verify_samples=self.verify_samples or (8 if quick else 16),
            threads=tuple(self.threads), targets=tuple(self.targets))

    @classmethod
    def nested(cls) -> dict[str, type]:
        return {"model": ModelConfig}

    @classmethod
    def from_dict(cls, data: dict):
        data = dict(data)
        for name in ("threads", "targets"):
            if name in data:
                data[name] = tuple(data[name])
        if isinstance(data.get("input_size"), list):
            data["input_size"] = tuple(data["input_size"])
        return super().from_dict(data)

    @property
    def deployed(self) -> tuple[int, int]:
        """The deployed (height, width)."""
        size = self.input_size
        return (size, size) if isinstance(size, int) else tuple(size)


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


__all__ = ["Augment", "DataConfig", "JsonConfig", "ModelConfig", "OptimizeConfig", "RunConfig",
           "TrainConfig", "load_config", "save_config", "train_defaults"]
