"""``edgeseg run``: data -> train -> optimize -> convert -> benchmark -> report, resumable.

Every stage writes its artifact under ``out`` and is skipped when a rerun finds it there
(``force=True`` redoes everything); an interrupted training run resumes from its last epoch.

    out/run.json                      the RunConfig
    out/train/model.keras             the full-precision model (and its logs, checkpoints)
    out/optimize/<variant>/model.*    pruned50 (.keras), qat and pruned50-qat (.h5, QAT)
    out/models/<variant>.tflite|.onnx every deployable file, each with its card
    out/report.json|.md|.html         the bench JSON and the reports

This module is orchestration: it imports ``converters`` and ``benchmarks`` (the design allows
that here and in the CLI only).

    >>> from edgeseg.pipeline import RunConfig, run
    >>> paths = run(RunConfig(quick=True), "runs/quick")  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import json
import shutil
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from edgeseg.config import DataConfig, ModelConfig, OptimizeConfig, TrainConfig, _Json, train_defaults
from edgeseg.errors import EdgesegError
from edgeseg.files import atomic_write_json


@dataclass(frozen=True)
class RunConfig(_Json):
    """What ``edgeseg run`` does; saved as ``run.json``. ``quick`` shrinks every stage."""

    data: str = "synthetic-nuclei"
    layout: str | None = None
    test_data: str | None = None  # a labelled folder to score on; else the held-out images
    model: ModelConfig = field(default_factory=ModelConfig)
    input_size: int = 256  # the deployed (converted, benchmarked) size
    train_size: int = 128  # training crops: the model is fully convolutional
    quick: bool = False
    epochs: int | None = None  # training passes; None: the budget edgeseg.plan chooses
    train_steps: int | None = None  # training optimizer steps instead (quick: 96)
    steps: int | None = None  # optimize fine-tune steps per stage (None: 300; quick: 30)
    threads: tuple[int, ...] = (1, 2)
    runs: int | None = None  # timed bench iterations (None: 50; quick: 10)
    samples: int | None = None  # bench images (None: 32; quick: 8)
    calib_samples: int | None = None  # int8 calibration images (None: 100; quick: 16)
    seed: int = 0
    model_file: str | None = None  # a user's trained model: no training, its own I/O contract
    contract: dict = field(default_factory=dict)  # contract keys over its card (runtime.load)
    unsafe: bool = False  # its Lambda layers may load
    targets: tuple[str, ...] = ()  # edgeseg.targets names: rows per .tflite beside the measured

    def resolved(self) -> "RunConfig":
        """The config with every None replaced by its (quick or full) default."""
        quick = self.quick
        train_steps = self.train_steps or (96 if quick and not self.epochs else None)
        return replace(
            self, train_steps=train_steps,
            steps=self.steps or (30 if quick else 300), runs=self.runs or (10 if quick else 50),
            samples=self.samples or (8 if quick else 32),
            calib_samples=self.calib_samples or (16 if quick else 100),
            threads=tuple(self.threads), targets=tuple(self.targets))

    @classmethod
    def from_dict(cls, data: dict):
        data = dict(data)
        if isinstance(data.get("model"), dict):
            data["model"] = ModelConfig.from_dict(data["model"])
        if "threads" in data:
            data["threads"] = tuple(data["threads"])
        if "targets" in data:
            data["targets"] = tuple(data["targets"])
        return super().from_dict(data)


# variant -> (source, to, quant, extra options): what `run` converts, from which model
CONVERSIONS = {
    "fp32.tflite": ("train", "tflite", "none"), "fp16.tflite": ("train", "tflite", "fp16"),
    "dynamic.tflite": ("train", "tflite", "dynamic"), "int8.tflite": ("train", "tflite", "int8"),
    "qat-int8.tflite": ("qat", "tflite", "int8"),
    "pruned50-int8.tflite": ("pruned50", "tflite", "int8"),
    "pruned50-qat-int8.tflite": ("pruned50-qat", "tflite", "int8"),
    "fp32.onnx": ("train", "onnx", "none"), "int8.onnx": ("train", "onnx", "int8"),
}


class _Stages:
    """Prints ``[k/n] name: what`` and times each stage."""

    def __init__(self, total: int, echo):
        self.total, self.done, self.echo = total, 0, echo

    def start(self, name: str, what: str) -> float:
        self.done += 1
        self.echo(f"[{self.done}/{self.total}] {name}: {what}")
        return time.perf_counter()

    def skip(self, name: str, why: str, redo: bool = True) -> None:
        self.done += 1
        self.echo(f"[{self.done}/{self.total}] {name}: {why} (skipped"
                  f"{'; --force redoes it' if redo else ''})")


STAGES = ("data", "train", "optimize", "convert", "bench", "report")


def run(cfg: RunConfig, out, *, force: bool = False, until: str = "report", echo=print,
        board: dict | None = None) -> dict:
    """Run every stage that has no output in ``out`` yet, up to ``until``; returns the report
    paths (those that were written). ``board``: benchmark the files there (the keyword
    arguments of :func:`benchmarks.remote.bench_remote` that say where: ``target``, ...)."""
    if until not in STAGES:
        raise EdgesegError(f"--until must be one of {', '.join(STAGES)} (got {until!r})")
    last = STAGES.index(until)
    out = Path(out)
    cfg = cfg.resolved()
    _check(cfg)
    saved = out / "run.json"
    if saved.exists() and not force:
        previous = RunConfig.from_dict(json.loads(saved.read_text())).resolved()
        if previous != cfg:
            raise EdgesegError(f"{out}: holds a run with other settings ({saved}); use another "
                               f"--out or --force to start over")
    if board and last >= STAGES.index("bench") and (force or not (out / "report.json").exists()):
        from benchmarks.remote import check_board

        check_board(**board)  # a board that cannot be used is said now, not after training
    from edgeseg.data.source import is_builtin

    if not is_builtin(cfg.data):  # decode the folders now: bad data leaves nothing behind
        _train_config(cfg)
    if cfg.test_data:
        _test_data(cfg)
    if force and out.exists():
        for name in ("train", "optimize", "models", "report.json", "report.md", "report.html"):
            path = out / name
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(saved, cfg.to_dict())
    verbose = 1 if sys.stdout.isatty() else 2
    stages = _Stages(6, echo)
    started = time.perf_counter()

    stages.start("data", _describe_data(cfg))
    if last < STAGES.index("train"):
        return {}
    if cfg.model_file:
        trained = Path(cfg.model_file)
        stages.skip("train", f"the user's model {trained} ({_user_model(cfg).describe})",
                    redo=False)
    else:
        trained = _train(cfg, out / "train", stages, verbose, echo)
    if last < STAGES.index("optimize"):
        return {}
    why_not = _cannot_optimize(cfg)
    if why_not:
        stages.skip("optimize", why_not, redo=False)
        optimized = {}
    else:
        optimized = _optimize(cfg, trained, out / "optimize", stages, verbose, echo)
    if last < STAGES.index("convert"):
        return {}
    files = _convert(cfg, {"train": trained, **optimized}, out / "models", stages, echo)
    if last < STAGES.index("bench"):
        return {}
    report_json = out / "report.json"
    if report_json.exists():
        stages.skip("bench", f"{report_json} exists")
        report = json.loads(report_json.read_text())
    else:
        where = f"; the files on {board['target']}" if board else ""
        stages.start("bench", f"{len(files) + 1} models x threads {','.join(map(str, cfg.threads))}"
                              f", {cfg.runs} runs, {_scored_on(cfg)}{where}")
        report = _bench(cfg, trained, files, echo, board)
        atomic_write_json(report_json, report)
    if last < STAGES.index("report"):
        return {"json": report_json}
    stages.start("report", "report.md, report.html")
    from edgeseg.report import write_reports

    paths = write_reports(report, out, data=held_out(cfg), layout=cfg.layout,
                          contract=cfg.contract or None, unsafe=cfg.unsafe)
    echo("")
    echo(paths["table"])
    echo(f"\n{time.perf_counter() - started:.0f} s; reports: {paths['md']}, {paths['html']}, "
         f"{report_json}")
    return {"json": report_json, "md": paths["md"], "html": paths["html"]}


def _check(cfg: RunConfig) -> None:
    """Refuse bad settings before anything is written: sizes, the data, the model options."""
    from edgeseg.data import folders
    from edgeseg.data.source import check_source_name, is_builtin
    from edgeseg.models import get_builder, model_options

    if cfg.input_size % 16 or cfg.train_size % 16:
        raise EdgesegError(f"--input-size must be a multiple of 16 (got {cfg.input_size})")
    if cfg.model_file:
        _user_model(cfg)  # loads it: a file that cannot be used is said before anything runs
    for name in ("epochs", "train_steps", "steps", "runs", "samples", "calib_samples"):
        if getattr(cfg, name) is not None and getattr(cfg, name) < 1:
            raise EdgesegError(f"--{name.replace('_', '-')} must be >= 1")
    if cfg.epochs and cfg.train_steps:
        raise EdgesegError("give --epochs or --train-steps, not both")
    if not is_builtin(cfg.data):
        check_source_name(cfg.data)
        folders.find_samples(cfg.data, cfg.layout)
    if cfg.test_data:
        if is_builtin(cfg.test_data):
            raise EdgesegError(f"--test-data {cfg.test_data}: give a labelled folder (built-in "
                               f"data is scored on its own held-out samples)")
        check_source_name(cfg.test_data)
        folders.find_samples(cfg.test_data, cfg.layout)
    if cfg.model_file:
        return
    get_builder(cfg.model.name)
    unknown = set(cfg.model.options) - set(model_options(cfg.model.name))
    if unknown:
        raise EdgesegError(f"{cfg.model.name}: unknown option {', '.join(sorted(unknown))}")
    from edgeseg.models import create_model

    create_model(cfg.model.name, input_size=cfg.input_size, **cfg.model.options)


def _describe_data(cfg: RunConfig) -> str:
    from edgeseg.data.source import is_builtin

    if is_builtin(cfg.data):
        return f"{cfg.data} (built-in, generated from seed {cfg.seed})"
    scored = (f"scored on {cfg.test_data}" if cfg.test_data else
              "scored on its validation split, which no stage trains, selects or calibrates on")
    if cfg.model_file and not cfg.test_data:
        scored += (f"; edgeseg does not know which images trained {Path(cfg.model_file).name}: "
                   f"if this split holds some, its scores are optimistic (--test-data DIR)")
    return f"{cfg.data} (folder; {scored})"


@functools.lru_cache(maxsize=4)
def _load(data: DataConfig):
    """A folder decoded once per process, however many stages ask for it."""
    from edgeseg.data.source import load_data

    return load_data(data)


def _train_config(cfg: RunConfig) -> TrainConfig:
    """What the train stage runs. A folder whose objects are larger than a training crop is
    trained on whole images resized to the deployed size (the size every image is then resized
    to at inference), not to the smaller training size."""
    from edgeseg.data.source import is_builtin

    defaults = train_defaults(cfg.data)
    quick = cfg.quick
    train_size = 64 if quick else cfg.train_size
    if cfg.model_file and _user_model(cfg).size:  # a fixed (square) model fine-tunes at its size
        train_size = _user_model(cfg).size[0]
    data = DataConfig(source=cfg.data, layout=cfg.layout, input_size=train_size,
                      n_train=256 if quick else defaults["n_train"], n_val=16 if quick else 64,
                      seed=cfg.seed)
    if not is_builtin(cfg.data) and _load(data)[0].fit == "resize":
        data = replace(data, mode="resize", input_size=cfg.input_size)
    return TrainConfig(data=data, model=cfg.model, epochs=cfg.epochs, steps=cfg.train_steps,
                       lr=defaults["lr"], seed=cfg.seed, batch_size=16)


def _train(cfg: RunConfig, where: Path, stages: _Stages, verbose: int, echo) -> Path:
    from edgeseg.card import read_card
    from edgeseg.train import MODEL_FILE, TrainingFailed, fit

    model = where / MODEL_FILE
    if model.exists():
        card = read_card(model)
        if card.get("status") == "failed":  # a rerun stops where the first run stopped
            raise TrainingFailed(f"{model}: the model learned nothing useful: "
                                 f"{card.get('failure')}; nothing was optimized, converted or "
                                 f"benchmarked (--force retrains)")
        stages.skip("train", f"{model} exists")
        return model
    resume = (where / "backup").is_dir() and any((where / "backup").iterdir())
    train_cfg = _train_config(cfg)
    size = train_cfg.data.input_size
    stages.start("train", ("resuming " if resume else "") +
                 f"{cfg.model.name} on {cfg.data}, {size}x{size} inputs")
    try:
        result = fit(train_cfg, where, resume=resume, force=not resume, verbose=verbose,
                     echo=lambda line: echo(f"  {line}"))
    except TrainingFailed as failed:
        raise TrainingFailed(f"{failed}; stopped before optimizing, converting and "
                             f"benchmarking") from None
    echo(f"  validation Dice {result.dice:.4f} on {result.val_images} images in "
         f"{result.seconds:.0f} s")
    return result.model_path


def _optimize(cfg: RunConfig, trained: Path, where: Path, stages: _Stages, verbose: int,
              echo) -> dict[str, Path]:
    from edgeseg.optimize import optimize

    train_cfg = _train_config(cfg)
    plan = [("pruned50", trained, {"prune": 0.5}, "model.keras"),
            ("qat", trained, {"qat": True}, "model.h5"),
            ("pruned50-qat", where / "pruned50" / "model.keras", {"qat": True}, "model.h5")]
    todo = [item for item in plan if not (where / item[0] / item[3]).exists()]
    if not todo:
        stages.skip("optimize", f"{', '.join(p[0] for p in plan)} exist in {where}")
    else:
        stages.start("optimize", ", ".join(p[0] for p in todo) + f" ({cfg.steps} steps each)")
    results = {}
    for name, source, options, file in plan:
        target = where / name / file
        if not target.exists():
            if not source.exists():
                continue  # its source stage was skipped (below)
            opt_cfg = OptimizeConfig(data=train_cfg.data, steps=cfg.steps, seed=cfg.seed,
                                     **options)
            try:
                result = optimize(source, opt_cfg, where / name, force=True, verbose=verbose,
                                  unsafe=cfg.unsafe)
            except (EdgesegError, RuntimeError, ValueError) as error:
                if not cfg.model_file:
                    raise
                # a user's model may hold layers tfmot cannot wrap: that variant is left out
                echo(f"  {name}: skipped ({str(error).splitlines()[0][:200]})")
                continue
            echo(f"  {result.variant}: validation Dice {result.dice_before:.4f} -> "
                 f"{result.dice_after:.4f}")
        results[name] = target
    return results


def _convert(cfg: RunConfig, sources: dict[str, Path], where: Path, stages: _Stages,
             echo) -> list[Path]:
    from converters import convert

    conversions = _conversions(cfg, sources)
    todo = [name for name in conversions if not (where / name).exists()]
    size = _deployed_size(cfg)
    if not todo:
        stages.skip("convert", f"all {len(conversions)} files exist in {where}")
    else:
        stages.start("convert", f"{len(todo)} files at {size[0]}x{size[1]}: {', '.join(todo)}")
    for name in todo:
        source, to, quant = conversions[name]
        user = {}
        if cfg.model_file:  # no card says what trained it: calibrate on the training split
            data = _train_config(cfg).data
            user = {"calib": data.source, "trained_on": data, "contract": cfg.contract or None,
                    "unsafe": cfg.unsafe}
        # a variant outside its parity limits is still benchmarked (its card says it failed):
        # the report shows what it costs rather than the run stopping
        result = convert(sources[source], where / name, to=to, quant=quant, input_size=size,
                         calib_samples=cfg.calib_samples, verify_samples=8 if cfg.quick else 16,
                         seed=cfg.seed, keep_failed=True, **user)
        parity = result.parity
        echo(f"  {name}: {result.path.stat().st_size:,} bytes, agreement "
             f"{parity.agreement:.2%}" + (f", Dice {parity.dice_delta:+.4f}"
                                           if parity.dice_delta is not None else "") +
             ("" if parity.passed else " (outside its parity limits: kept, marked in its card)"))
    return [where / name for name in conversions]


def _conversions(cfg: RunConfig, sources: dict[str, Path]) -> dict[str, tuple]:
    """The files ``run`` makes: every conversion whose source exists; from a user's .onnx only
    its int8 quantization, from a user's .tflite none (it is benchmarked as it is)."""
    if cfg.model_file and Path(cfg.model_file).suffix.lower() == ".onnx":
        return {"int8.onnx": ("train", "onnx", "int8")}
    if cfg.model_file and Path(cfg.model_file).suffix.lower() == ".tflite":
        return {}
    return {name: spec for name, spec in CONVERSIONS.items() if spec[0] in sources}


@dataclass(frozen=True)
class _UserModel:
    describe: str  # what it is, in words
    size: tuple[int, int] | None  # its fixed input, if it has one
    trainable: str | None  # why tfmot cannot fine-tune it (None: it can)


@functools.lru_cache(maxsize=4)
def _loaded_user_model(path: str, contract: tuple, unsafe: bool) -> _UserModel:
    from edgeseg import runtime

    model = runtime.load(path, contract=dict(contract), unsafe=unsafe)
    _, height, width, _ = model.input_shape
    kind = getattr(getattr(model, "source", None), "flavour", model.format)
    describe = f"{kind}, {model.layout}, output {model.output_name} " \
               f"({model.output_kind or 'probabilities'}), " + \
               (f"{height}x{width} inputs" if height is not None else "any input size")
    trainable = None
    if kind != "tf_keras":
        trainable = f"a {kind} model: tfmot prunes and quantization-aware trains tf-keras " \
                    f"models only; converted and benchmarked as it is"
    elif len(model._output_specs) > 1 or model.output_kind == "logits":
        trainable = "fine-tuning needs one output of probabilities"
    elif height is not None and height != width:
        trainable = "fine-tuning crops are square; the model takes only " \
                    f"{height}x{width} inputs"
    elif contract:
        trainable = "its I/O contract was given on the command line, not in its card"
    return _UserModel(describe, (height, width) if height is not None else None, trainable)


def _user_model(cfg: RunConfig) -> _UserModel:
    return _loaded_user_model(str(cfg.model_file), tuple(sorted(cfg.contract.items())),
                              cfg.unsafe)


def _cannot_optimize(cfg: RunConfig) -> str | None:
    """Why the optimize stage is skipped for this run (None: it runs)."""
    if not cfg.model_file:
        return None
    trainable = _user_model(cfg).trainable
    return None if trainable is None else f"not for this model: {trainable}"


def _deployed_size(cfg: RunConfig) -> tuple[int, int]:
    """The size files are converted and benchmarked at: a user model's own fixed input, else
    ``--input-size``."""
    if cfg.model_file and _user_model(cfg).size:
        return _user_model(cfg).size
    return (cfg.input_size, cfg.input_size)


def _test_data(cfg: RunConfig):
    """``--test-data``, decoded and checked (with the training data's classes)."""
    from edgeseg.data.source import is_builtin, load_eval_data

    classes = None if is_builtin(cfg.data) else len(_load(_train_config(cfg).data)[0].class_names)
    return load_eval_data(cfg.test_data, size=None, layout=cfg.layout, num_classes=classes)


def _scored_on(cfg: RunConfig) -> str:
    from edgeseg.data.source import is_builtin

    if is_builtin(cfg.data):
        return (f"{cfg.samples} held-out test samples at {cfg.input_size}x{cfg.input_size} (never "
                f"trained, validated or calibrated on)")
    if cfg.test_data:
        return f"up to {cfg.samples} images of {cfg.test_data}, whole"
    count = min(cfg.samples, len(held_out(cfg)))
    return f"{count} images of the validation split, whole"


def held_out(cfg: RunConfig):
    """What the report scores: built-in data's held-out samples (by name), ``--test-data``, or
    the validation split of the folder (loaded: no stage trains, selects or calibrates on it)."""
    from edgeseg.data.source import is_builtin

    if is_builtin(cfg.data):
        return cfg.data
    if cfg.test_data:
        return cfg.test_data
    from edgeseg.data.source import at_own_size

    return at_own_size(_load(_train_config(cfg).data)[1])


def _bench(cfg: RunConfig, trained: Path, files: list[Path], echo, board=None) -> dict:
    from benchmarks.harness import bench

    if board:
        from benchmarks.remote import bench_remote

        return bench_remote([trained, *files], data=held_out(cfg), layout=cfg.layout,
                            reference=trained, threads=cfg.threads, runs=cfg.runs,
                            warmup=2 if cfg.quick else 5, samples=cfg.samples,
                            image_size=max(_deployed_size(cfg)), seed=cfg.seed,
                            contract=cfg.contract or None, unsafe=cfg.unsafe, progress=False,
                            echo=lambda line: None, **board)
    return bench([trained, *files], data=held_out(cfg), layout=cfg.layout, reference=trained,
                 threads=cfg.threads, runs=cfg.runs, warmup=2 if cfg.quick else 5,
                 samples=cfg.samples, image_size=max(_deployed_size(cfg)), seed=cfg.seed,
                 contract=cfg.contract or None, unsafe=cfg.unsafe, targets=cfg.targets,
                 echo=lambda line: None)


__all__ = ["CONVERSIONS", "STAGES", "RunConfig", "held_out", "run"]
