"""``edgeseg run``: data -> train -> optimize -> convert -> benchmark -> report, resumable.

:func:`make_plan` resolves the run once (every stage's config, the files it makes, which images
play which role) and checks it before anything is written; :func:`run` then executes the plan.
Every stage writes its artifact under ``out``, claimed first in the folder's manifest
(:mod:`edgeseg.device.outputs`), and is skipped when a rerun finds it there (``force=True`` removes
what earlier runs wrote, and nothing else); an interrupted training run resumes from its last epoch.

    out/run.json                      the RunConfig
    out/train/model.keras             the full-precision model (and its logs, checkpoints)
    out/optimize/<variant>/model.*    pruned50 (.keras), qat and pruned50-qat (.h5, QAT)
    out/models/<variant>.tflite|.onnx every deployable file, each with its card
    out/report.json|.md|.html         the bench JSON and the reports

This module is orchestration: it imports ``converters`` and ``benchmarks`` (the design allows
that here and in the CLI only).

    >>> from edgeseg.config import RunConfig
    >>> paths = run(RunConfig(quick=True), "runs/quick")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

from edgeseg.config import (
    DataConfig,
    OptimizeConfig,
    RunConfig,
    TrainConfig,
    train_defaults,
)
from edgeseg.device.card import card_path
from edgeseg.device.data import roles
from edgeseg.device.data.datasets import at_own_size, is_builtin
from edgeseg.device.errors import EdgesegError
from edgeseg.device.files import atomic_write_json, sha256_of
from edgeseg.device.metrics import text
from edgeseg.device.outputs import Outputs

STAGES = ("data", "train", "optimize", "convert", "bench", "report")
# variant -> (source, to, quant): what `run` converts, from which model
CONVERSIONS = {
    "fp32.tflite": ("train", "tflite", "none"), "fp16.tflite": ("train", "tflite", "fp16"),
    "dynamic.tflite": ("train", "tflite", "dynamic"), "int8.tflite": ("train", "tflite", "int8"),
    "qat-int8.tflite": ("qat", "tflite", "int8"),
    "pruned50-int8.tflite": ("pruned50", "tflite", "int8"),
    "pruned50-qat-int8.tflite": ("pruned50-qat", "tflite", "int8"),
    "fp32.onnx": ("train", "onnx", "none"), "int8.onnx": ("train", "onnx", "int8"),
}
# (variant, its source, tfmot's options, the file it writes): the optimize stage
OPTIMIZATIONS = (("pruned50", "train", {"prune": 0.5}, "model.keras"),
                 ("qat", "train", {"qat": True}, "model.h5"),
                 ("pruned50-qat", "pruned50", {"qat": True}, "model.h5"))
REPORTS = ("report.json", "report.md", "report.html")
# what a run writes into its folder (see edgeseg.device.outputs): inputs must lie elsewhere
OUTPUTS = ("run.json", "train", "optimize", "models", *REPORTS)


@dataclass(frozen=True)
class UserModel:
    """A user's trained model (``--model FILE``), as the plan needs to know it."""

    describe: str  # what it is, in words
    size: tuple[int, int] | None  # its fixed input, if it has one
    trainable: str | None  # why tfmot cannot fine-tune it (None: it can)


@dataclass(frozen=True)
class Plan:
    """A run resolved once: every stage's settings and the images each role plays on."""

    cfg: RunConfig  # every None replaced by its (quick or full) default
    train: TrainConfig  # training, or the fine-tune and calibration data of a user's model
    user: UserModel | None
    size: tuple[int, int]  # what files are converted and benchmarked at
    optimize: str | None  # why the optimize stage is skipped (None: it runs)
    conversions: dict  # CONVERSIONS that this run makes
    scored: object  # what bench and the report score: a built-in name, a folder, a dataset
    scored_on: str  # the same, in words
    roles: dict  # {role: {"images": count, "from": what}}: in the report
    custom_objects: dict | None = None

    @property
    def calibrates_on(self) -> dict:
        """The converters' options for a user's model: its card records no training data, so
        the plan's training split calibrates and its validation split checks parity."""
        if not self.cfg.model_file:
            return {}
        data = self.train.data
        return {"calib": data.source, "trained_on": data, "contract": self.cfg.contract or None,
                "unsafe": self.cfg.unsafe, "custom_objects": self.custom_objects}

    def load(self):
        """How the harness opens the run's files (Keras models included)."""
        from edgeseg import runtime

        return partial(runtime.load, unsafe=self.cfg.unsafe, custom_objects=self.custom_objects)


def make_plan(cfg: RunConfig, *, custom_objects: dict | None = None) -> Plan:
    """Resolve and check a run before anything is written: sizes, budgets, the model and its
    options, the data (a folder is decoded here: bad data leaves nothing behind) and which
    images play which role (refused when test images are training images)."""
    cfg = cfg.resolved()
    _check_settings(cfg)
    user, model = _user_model(cfg, custom_objects) if cfg.model_file else (None, None)
    if user is None:
        _check_zoo_model(cfg)
    train = _train_config(cfg, user)
    split = None
    if not is_builtin(cfg.data):
        split = roles.split(train.data)
        if split[0].fit == "resize":  # objects larger than a crop: whole images, resized to
            # the deployed size (the size every image is then resized to at inference)
            height, width = cfg.deployed
            if height != width:
                raise EdgesegError(f"--input-size {height}x{width}: {cfg.data}'s objects are "
                                   f"larger than a crop, so its images are resized whole to a "
                                   f"square input; give one side (e.g. --input-size "
                                   f"{max(height, width)})")
            train = replace(train, data=replace(train.data, mode="resize", input_size=height))
            split = roles.split(train.data)
    if cfg.test_data:
        if is_builtin(cfg.test_data):
            raise EdgesegError(f"--test-data {cfg.test_data}: give a labelled folder (built-in "
                               f"data is scored on its own held-out samples)")
        classes = None if split is None else len(split[0].class_names)
        roles.score_data(cfg.test_data, layout=cfg.layout, num_classes=classes)  # decodes: checked
        roles.check_score_apart(train.data, cfg.test_data)
    size = user.size if user is not None and user.size else cfg.deployed
    scored, scored_on = _scored(cfg, split, size)
    if model is not None:
        _check_predictions(cfg, model, scored, size)
    return Plan(cfg=cfg, train=train, user=user, size=size, optimize=_why_not_optimize(user),
                conversions=_conversions(cfg), scored=scored, scored_on=scored_on,
                roles=_roles(cfg, train, split, scored), custom_objects=custom_objects)


def run(cfg: RunConfig, out, *, force: bool = False, until: str = "report", echo=print,
        board: dict | None = None, custom_objects: dict | None = None) -> dict:
    """Run every stage that has no output in ``out`` yet, up to ``until``; returns the report
    paths (those that were written). ``board``: benchmark the files there (the keyword
    arguments of :func:`benchmarks.remote.bench_remote` that say where: ``target``, ...).
    ``custom_objects``: a user's Keras classes (``--custom-objects``)."""
    if until not in STAGES:
        raise EdgesegError(f"--until must be one of {', '.join(STAGES)} (got {until!r})")
    last = STAGES.index(until)
    out = Path(out)
    outputs = Outputs(out, "run")
    outputs.check_inputs({"--data": cfg.data, "--test-data": cfg.test_data,
                          "--model": cfg.model_file}, planned=OUTPUTS)
    cfg = _whole_paths(cfg)  # recorded whole: a rerun from another folder is compared as paths
    plan = make_plan(cfg, custom_objects=custom_objects)
    cfg = plan.cfg
    saved = out / "run.json"
    if saved.exists() and not force:
        recorded_run = json.loads(saved.read_text())
        previous = _whole_paths(RunConfig.from_dict(recorded_run)).resolved()
        if previous != cfg:
            old, new = previous.to_dict(), cfg.to_dict()
            changed = ", ".join(f"{key} {old.get(key)!r} -> {new.get(key)!r}" for key in new
                                if old.get(key) != new.get(key))
            raise EdgesegError(f"{out}: holds a run with other settings ({changed}); rerun it "
                               f"with its own, use another --out, or --force to start over")
        recorded = recorded_run.get("model_sha256")
        if recorded and recorded != _digest(cfg.model_file):
            raise EdgesegError(f"{out}: holds a run of {cfg.model_file} as it was before it "
                               f"changed (its bytes differ from the run's); use another --out, "
                               f"or --force to run it again")
    if board and last >= STAGES.index("bench") and (force or not (out / "report.json").exists()):
        from benchmarks.remote import check_board

        check_board(**board)  # a board that cannot be used is said now, not after training
    outputs.refuse_unowned(files=("run.json", *REPORTS))  # before anything is removed
    if force:  # what earlier runs wrote here, and their stages' folders, nothing else
        for stage in outputs.stage_manifests(["train", *(f"optimize/{o[0]}" for o in
                                                        OPTIMIZATIONS)]):
            Outputs(stage, "run").clear(everyone=True)
        outputs.clear()
    outputs.claim_file("run.json")
    atomic_write_json(saved, {**cfg.to_dict(), **({"model_sha256": _digest(cfg.model_file)}
                                                 if cfg.model_file else {})})
    verbose = 1 if sys.stdout.isatty() else 2
    stages = _Stages(len(STAGES), echo)
    started = time.perf_counter()

    stages.start("data", _describe_data(plan))
    if last < STAGES.index("train"):
        return {}
    if plan.user is not None:
        trained = Path(cfg.model_file)
        stages.skip("train", f"the user's model {trained} ({plan.user.describe})", redo=False)
    else:
        trained = _train(plan, outputs.claim_folder("train"), stages, verbose, echo)
    if last < STAGES.index("optimize"):
        return {}
    if plan.optimize:
        stages.skip("optimize", plan.optimize, redo=False)
        optimized = {}
    else:
        optimized = _optimize(plan, trained, outputs, stages, verbose, echo)
    if last < STAGES.index("convert"):
        return {}
    files = _convert(plan, {"train": trained, **optimized}, outputs, stages, echo)
    if last < STAGES.index("bench"):
        return {}
    report_json = out / "report.json"
    if report_json.exists():
        stages.skip("bench", f"{report_json} exists")
        report = json.loads(report_json.read_text())
    else:
        where = f"; the files on {board['target']}" if board else ""
        stages.start("bench", f"{len(files) + 1} models x threads {','.join(map(str, cfg.threads))}"
                              f", {cfg.runs} runs, {plan.scored_on}{where}")
        report = {**_bench(plan, trained, files, board), "roles": plan.roles}
        outputs.claim_file("report.json")
        atomic_write_json(report_json, report)
    if last < STAGES.index("report"):
        return {"json": report_json}
    stages.start("report", "report.md, report.html")
    from edgeseg.report import write_reports

    outputs.claim_file("report.md", "report.html")
    paths = write_reports(report, out, data=plan.scored, layout=cfg.layout,
                          contract=cfg.contract or None, unsafe=cfg.unsafe,
                          custom_objects=plan.custom_objects)
    echo("")
    echo(paths["table"])
    echo(f"\n{time.perf_counter() - started:.0f} s; reports: {paths['md']}, {paths['html']}, "
         f"{report_json}")
    return {"json": report_json, "md": paths["md"], "html": paths["html"]}


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


# --- the plan ---------------------------------------------------------------------------------
def _check_settings(cfg: RunConfig) -> None:
    """Refuse bad settings before anything is read: sizes, budgets, the data's names."""
    from edgeseg.device.data import folders
    from edgeseg.device.data.datasets import check_source_name

    height, width = cfg.deployed
    if height % 16 or width % 16 or cfg.train_size % 16:
        raise EdgesegError(f"--input-size: each side must be a multiple of 16 (got "
                           f"{height}x{width})")
    for name in ("epochs", "train_steps", "steps", "runs", "samples", "calib_samples",
                 "verify_samples"):
        if getattr(cfg, name) is not None and getattr(cfg, name) < 1:
            raise EdgesegError(f"--{name.replace('_', '-')} must be >= 1")
    if cfg.epochs and cfg.train_steps:
        raise EdgesegError("give --epochs or --train-steps, not both")
    for source in (cfg.data, cfg.test_data):
        if source and not is_builtin(source):
            check_source_name(source)
            folders.find_samples(source, cfg.layout)


def _check_zoo_model(cfg: RunConfig) -> None:
    """The zoo model and its options build (TensorFlow)."""
    from edgeseg.models import create_model, get_builder, model_options

    get_builder(cfg.model.name)
    unknown = set(cfg.model.options) - set(model_options(cfg.model.name))
    if unknown:
        raise EdgesegError(f"{cfg.model.name}: unknown option {', '.join(sorted(unknown))}")
    create_model(cfg.model.name, input_size=cfg.deployed, **cfg.model.options)


def _user_model(cfg: RunConfig, custom_objects):
    """(UserModel, the loaded EdgeModel): a user's model, loaded once (a file that cannot be used
    is said before anything runs)."""
    from edgeseg import runtime

    model = runtime.load(cfg.model_file, contract=cfg.contract, unsafe=cfg.unsafe,
                         custom_objects=custom_objects)
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
    elif cfg.contract:
        trainable = "its I/O contract was given on the command line, not in its card"
    return UserModel(describe, (height, width) if height is not None else None, trainable), model


# How many of the scored images a user's model is first tried on (its predictions' classes).
PREDICTION_CHECK_IMAGES = 16


def _check_predictions(cfg: RunConfig, model, scored, size) -> None:
    """A user's model that predicts one class on every pixel of labelled images where several
    occur stops the run before anything is written: every row it would make scores Dice 0 at
    full agreement, and the cause is nearly always how the images are fed (normalisation,
    channels) or how its outputs are read, which the line names."""
    from edgeseg.device.card import normalization_of
    from edgeseg.device.scoring import score_model

    data = scored if not isinstance(scored, str) else roles.score_data(
        scored, size=size, channels=model.input_shape[-1], count=PREDICTION_CHECK_IMAGES,
        seed=cfg.seed, model_classes=max(2, model.num_classes))
    result = score_model(model, data, limit=PREDICTION_CHECK_IMAGES, tile=size)
    present = [i for i, n in enumerate(result.get("pixels_per_class", [])) if n]
    predicted = result["predicted_classes"]
    if len(present) < 2 or len(predicted) > 1:
        return
    names = list(data.class_names)
    only = names[predicted[0]] if predicted and predicted[0] < len(names) else \
        f"class {predicted[0] if predicted else '?'}"
    channels = model.input_shape[-1]
    grey = " (grey images repeated to RGB)" if channels == 3 and data.channels == 1 else ""
    raise EdgesegError(
        f"--model {cfg.model_file}: predicts only '{only}' on every pixel of "
        f"{result['samples']} labelled images of {getattr(data, 'name', scored)}, where "
        f"{len(present)} classes occur: likely how it is fed or read. Its inputs: "
        f"{normalization_of(model.card).describe()} (--normalize; none for a model that "
        f"rescales inside), {channels} channels{grey}; its output '{model.output_name}' read as "
        f"{model.output_kind or 'probabilities'} (--logits/--probabilities). Check with "
        f"edgeseg eval {cfg.model_file} --data {cfg.test_data or cfg.data} and these options")


def _why_not_optimize(user: UserModel | None) -> str | None:
    if user is None or user.trainable is None:
        return None
    return f"not for this model: {user.trainable}"


def _train_config(cfg: RunConfig, user: UserModel | None) -> TrainConfig:
    """What the train stage runs (for a user's model: the data it is fine-tuned and calibrated
    on). A fixed (square) user's model fine-tunes at its own size."""
    defaults = train_defaults(cfg.data)
    train_size = 64 if cfg.quick else cfg.train_size
    if user is not None and user.size:
        train_size = user.size[0]
    data = DataConfig(source=cfg.data, layout=cfg.layout, input_size=train_size,
                      n_train=256 if cfg.quick else defaults["n_train"],
                      n_val=16 if cfg.quick else 64, seed=cfg.seed)
    return TrainConfig(data=data, model=cfg.model, epochs=cfg.epochs, steps=cfg.train_steps,
                       lr=defaults["lr"], seed=cfg.seed, batch_size=16)


def _conversions(cfg: RunConfig) -> dict[str, tuple]:
    """The files ``run`` makes: from a user's .onnx only its int8 quantization, from a user's
    float .tflite its int8 and dynamic-range quantizations (ai-edge-quantizer; none when it is
    quantized already or the quantizer is not installed: :func:`_as_it_is`), else every
    conversion (those whose source stage was skipped are left out when it runs)."""
    suffix = Path(cfg.model_file).suffix.lower() if cfg.model_file else None
    if suffix == ".onnx":
        return {"int8.onnx": ("train", "onnx", "int8")}
    if _users_tflite(cfg):
        return {} if _as_it_is(cfg) else {"int8.tflite": ("train", "tflite", "int8"),
                                           "dynamic.tflite": ("train", "tflite", "dynamic")}
    return dict(CONVERSIONS)


def _users_tflite(cfg: RunConfig) -> bool:
    """Whether the run's model is a user's .tflite (its quantizations are extras, not stages
    the run needs)."""
    return bool(cfg.model_file) and Path(cfg.model_file).suffix.lower() == ".tflite"


def _as_it_is(cfg: RunConfig) -> str | None:
    """Why a user's .tflite is benchmarked as it is, or None when it is quantized here."""
    if not _users_tflite(cfg):
        return None
    from converters.tflite_source import quantized_already, quantizer_version
    from edgeseg.device.formats.tflite import SchemaUnavailable

    try:
        quantized = quantized_already(Path(cfg.model_file).read_bytes())
    except (SchemaUnavailable, OSError, ValueError, RuntimeError):
        return "the user's .tflite is benchmarked as it is (its flatbuffer is not read here)"
    if quantized:
        return f"the user's .tflite is quantized already ({quantized}): benchmarked as it is"
    if quantizer_version() is None:
        return ("the user's .tflite is benchmarked as it is (quantizing it needs "
                "ai-edge-quantizer: pip install 'edgeseg[quantizer]')")
    return None


def _scored(cfg: RunConfig, split, size) -> tuple[object, str]:
    """(what bench and the report score, the same in words): built-in data's held-out test
    samples (by name), ``--test-data`` (a folder, whole), or the folder's validation split at
    the images' own size (no stage trains or calibrates on it; training keeps its last
    weights)."""
    if is_builtin(cfg.data):
        return cfg.data, (f"{cfg.samples} held-out test samples at {size[0]}x{size[1]} (never "
                          f"trained, validated or calibrated on)")
    if cfg.test_data:
        return cfg.test_data, f"up to {cfg.samples} images of {cfg.test_data}, whole"
    val = at_own_size(split[1])
    count = min(cfg.samples, len(val))
    name = f"{val.name} (validation split: images no stage trained, selected or calibrated on)"
    return replace(val, name=name), f"{count} images of the validation split, whole"


def _roles(cfg: RunConfig, train: TrainConfig, split, scored) -> dict:
    """Which images play which role, with counts: the report's ``roles``."""
    data = train.data
    counts = (data.n_train, data.n_val) if split is None else (len(split[0]), len(split[1]))
    found = roles.describe_split(data, *counts)
    if cfg.model_file:
        found["train"]["from"] += (f" (fine-tuning and calibration; which images trained "
                                   f"{Path(cfg.model_file).name} is not known)")
    builtin = is_builtin(cfg.data)
    found["calibration"] = {"images": cfg.calib_samples, "from": (
        f"model inputs cut from the training {'indices' if builtin else 'split'} of "
        f"{cfg.data}")}
    verify = cfg.verify_samples  # at most: a folder's validation split may have fewer
    found["parity"] = {"images": verify if builtin else min(verify, counts[1]), "from": (
        f"{cfg.data} indices from {roles.PARITY_OFFSET:,}" if builtin else
        f"the validation split of {cfg.data}")}
    if isinstance(scored, str) and is_builtin(scored):
        found["score"] = {"images": cfg.samples,
                          "from": f"{scored} indices from {roles.TEST_OFFSET:,}"}
    elif isinstance(scored, str):
        found["score"] = {"images": None, "from": f"{scored} (up to {cfg.samples} images, whole)"}
    else:
        found["score"] = {"images": min(cfg.samples, len(scored)),
                          "from": "the validation split, whole"}
    return found


def _describe_data(plan: Plan) -> str:
    cfg = plan.cfg
    if is_builtin(cfg.data):
        return f"{cfg.data} (built-in, generated from seed {cfg.seed})"
    scored = (f"scored on {cfg.test_data}" if cfg.test_data else
              "scored on its validation split, which no stage trains, selects or calibrates on")
    if cfg.model_file and not cfg.test_data:
        scored += (f"; edgeseg does not know which images trained {Path(cfg.model_file).name}: "
                   f"if this split holds some, its scores are optimistic (--test-data DIR)")
    counts = ", ".join(f"{role} {entry['images']}" for role, entry in plan.roles.items()
                       if role in ("train", "validation") and entry["images"] is not None)
    return f"{cfg.data} (folder: {counts}; {scored})"


# --- the stages --------------------------------------------------------------------------------
def _train(plan: Plan, where: Path, stages: _Stages, verbose: int, echo) -> Path:
    from edgeseg.device.card import read_card
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
    size = plan.train.data.input_size
    stages.start("train", ("resuming " if resume else "") +
                 f"{plan.cfg.model.name} on {plan.cfg.data}, {size}x{size} inputs")
    try:
        result = fit(plan.train, where, resume=resume, force=not resume, verbose=verbose,
                     echo=lambda line: echo(f"  {line}"))
    except TrainingFailed as failed:
        raise TrainingFailed(f"{failed}; stopped before optimizing, converting and "
                             f"benchmarking") from None
    echo(f"  validation Dice {text(result.dice)} on {result.val_images} images in "
         f"{result.seconds:.0f} s")
    return result.model_path


def _optimize(plan: Plan, trained: Path, outputs: Outputs, stages: _Stages, verbose: int,
              echo) -> dict[str, Path]:
    from edgeseg.optimize import optimize

    where = outputs.root / "optimize"
    todo = [item for item in OPTIMIZATIONS if not (where / item[0] / item[3]).exists()]
    if not todo:
        stages.skip("optimize", f"{', '.join(p[0] for p in OPTIMIZATIONS)} exist in {where}")
    else:
        stages.start("optimize", ", ".join(p[0] for p in todo) + f" ({plan.cfg.steps} steps each)")
    made = {"train": trained}
    for name, source, options, file in OPTIMIZATIONS:
        target = where / name / file
        if not target.exists():
            if source not in made:
                continue  # its source stage was skipped (below)
            opt_cfg = OptimizeConfig(data=plan.train.data, steps=plan.cfg.steps,
                                     seed=plan.cfg.seed, **options)
            try:
                result = optimize(made[source], opt_cfg, outputs.claim_folder(f"optimize/{name}"),
                                  force=True, verbose=verbose, unsafe=plan.cfg.unsafe,
                                  custom_objects=plan.custom_objects)
            except (EdgesegError, RuntimeError, ValueError) as error:
                if not plan.cfg.model_file:
                    raise
                # a user's model may hold layers tfmot cannot wrap: that variant is left out
                echo(f"  {name}: skipped ({str(error).splitlines()[0][:200]})")
                continue
            echo(f"  {result.variant}: validation Dice {text(result.dice_before)} -> "
                 f"{text(result.dice_after)}")
        made[name] = target
    return {name: path for name, path in made.items() if name != "train"}


def _convert(plan: Plan, sources: dict[str, Path], outputs: Outputs, stages: _Stages,
             echo) -> list[Path]:
    from converters import convert
    from converters.tflite import ConversionError

    where = outputs.root / "models"
    conversions = {name: spec for name, spec in plan.conversions.items() if spec[0] in sources}
    todo = [name for name in conversions if not (where / name).exists()]
    size = plan.size
    if not conversions:
        stages.skip("convert", f"nothing to convert: {_as_it_is(plan.cfg)}", redo=False)
    elif not todo:
        stages.skip("convert", f"all {len(conversions)} files exist in {where}")
    else:
        stages.start("convert", f"{len(todo)} files at {size[0]}x{size[1]}: {', '.join(todo)}")
    for name in todo:
        source, to, quant = conversions[name]
        outputs.claim_file(f"models/{name}", f"models/{card_path(name).name}")
        # a variant outside its parity limits is still benchmarked (its card says it failed):
        # the report shows what it costs rather than the run stopping
        try:
            result = convert(sources[source], where / name, to=to, quant=quant,
                             input_size=size, calib_samples=plan.cfg.calib_samples,
                             verify_samples=plan.cfg.verify_samples, seed=plan.cfg.seed,
                             keep_failed=True, **plan.calibrates_on)
        except ConversionError as error:
            if not _users_tflite(plan.cfg):
                raise
            echo(f"  {name}: not made ({error}); the user's .tflite is benchmarked without it")
            continue
        parity = result.parity
        echo(f"  {name}: {result.path.stat().st_size:,} bytes, agreement "
             f"{parity.agreement:.2%}" + (f", Dice {parity.dice_delta:+.4f}"
                                           if parity.dice_delta is not None else "") +
             ("" if parity.passed else " (outside its parity limits: kept, marked in its card)"))
    return [where / name for name in conversions if (where / name).exists()]


def _bench(plan: Plan, trained: Path, files: list[Path], board=None) -> dict:
    cfg = plan.cfg
    settings = dict(data=plan.scored, layout=cfg.layout, reference=trained, threads=cfg.threads,
                    runs=cfg.runs, warmup=2 if cfg.quick else 5, samples=cfg.samples,
                    image_size=max(plan.size), seed=cfg.seed, contract=cfg.contract or None,
                    load=plan.load(), echo=lambda line: None)
    if board:
        from benchmarks.remote import bench_remote

        return bench_remote([trained, *files], progress=False, **settings, **board)
    from benchmarks.harness import bench

    return bench([trained, *files], targets=cfg.targets, **settings)


def _whole_paths(cfg: RunConfig) -> RunConfig:
    """The run's folders and model file as absolute paths (built-in names stay names)."""
    def whole(source):
        return None if source is None else DataConfig(source=str(source)).absolute().source

    return replace(cfg, data=whole(cfg.data), test_data=whole(cfg.test_data),
                   model_file=whole(cfg.model_file))


def _digest(model_file) -> str | None:
    """The SHA-256 of the user's model (of its files, in order, for a SavedModel folder): a
    rerun of a run with a model that changed since must not reuse its results."""
    if not model_file:
        return None
    path = Path(model_file)
    if path.is_file():
        return sha256_of(path)
    import hashlib

    sha = hashlib.sha256()
    for part in sorted(p for p in path.rglob("*") if p.is_file()):
        sha.update(f"{part.relative_to(path)}\0{sha256_of(part)}\0".encode())
    return sha.hexdigest()


__all__ = ["CONVERSIONS", "OPTIMIZATIONS", "STAGES", "Plan", "UserModel", "make_plan", "run"]
