"""Training: ``fit(config, out)`` over Keras ``fit`` with the standard TensorFlow mechanisms.

Devices: every visible GPU through MirroredStrategy, MultiWorkerMirroredStrategy when ``TF_CONFIG``
names a cluster, the default (CPU) strategy otherwise. Mixed precision (float16 on GPUs) keeps the
output layer in float32. Callbacks: BackupAndRestore (resume after an interrupt), the last
chunk's weights, a CSV log, TensorBoard, and a NaN guard that stops with a clear message and
keeps the last good checkpoint.

    edgeseg train --data synthetic-nuclei --out runs/nuclei
    python -c "from edgeseg.train import fit; from edgeseg.config import TrainConfig; fit(TrainConfig(), 'out')"
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from edgeseg._keras import keras, tf
from edgeseg.batchnorm import recalibrate
from edgeseg.config import Augment, TrainConfig, load_config, save_config
from edgeseg.device.card import Normalization, card_path, make_card
from edgeseg.device.data.datasets import SegData, at_own_size
from edgeseg.device.data.folders import DataError
from edgeseg.device.data.roles import describe_split, split
from edgeseg.device.errors import EdgesegError
from edgeseg.device.files import check_space
from edgeseg.device.outputs import Outputs
from edgeseg.device.preprocess import dim_range_warning, intensity_stats
from edgeseg.device.scoring import score_model
from edgeseg.guard import advice, check_learned
from edgeseg.keras_files import KerasInMemory
from edgeseg.losses import DiceMetric, segmentation_loss
from edgeseg.models import create_model
from edgeseg.models.saving import save_model, save_weights
from edgeseg.plan import plan_training, views_of
from edgeseg.tfdata import make_dataset

MODEL_FILE = "model.keras"
# what a run writes into its folder (each claimed in its manifest first: edgeseg.device.outputs):
# its own files, and the folders TensorFlow fills (checkpoint backups, TensorBoard logs)
OUTPUT_FILES = ("config.json", "history.csv", "checkpoints/last.weights.h5", MODEL_FILE,
                card_path(MODEL_FILE).name)
TOOL_FOLDERS = ("backup", "logs/train", "logs/validation")


class TrainingError(EdgesegError):
    """Training cannot start or did not finish (diverged, nothing to resume, ...)."""


class TrainingFailed(EdgesegError):
    """Training finished but the model learned nothing useful (its files stay, marked failed)."""

    exit_code = 1


@dataclass(frozen=True)
class TrainResult:
    model_path: Path
    dice: float
    dice_per_class: tuple[float, ...]
    iou: float
    epochs: int
    seconds: float
    images_per_second: float
    steps: int = 0
    train_dice: float = float("nan")
    dice_interval: tuple[float, float] = (float("nan"), float("nan"))
    val_images: int = 0
    failure: str | None = None  # why the model is useless (its card says failed), else None


def choose_strategy(gpus: list[str], tf_config: str | None) -> str:
    """Which distribution strategy fits the machine: a pure function of what is visible.

    ``multi_worker`` when TF_CONFIG describes a cluster of more than one task, ``mirrored`` for two
    or more GPUs, ``one_device`` for one GPU, ``default`` (the CPU) otherwise.
    """
    if tf_config:
        try:
            cluster = json.loads(tf_config).get("cluster", {})
        except (json.JSONDecodeError, AttributeError):
            raise TrainingError("TF_CONFIG is not valid JSON with a 'cluster' key") from None
        if sum(len(tasks) for tasks in cluster.values()) > 1:
            return "multi_worker"
    if len(gpus) > 1:
        return "mirrored"
    return "one_device" if gpus else "default"


def make_strategy(kind: str):
    if kind == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if kind == "mirrored":
        return tf.distribute.MirroredStrategy()
    if kind == "one_device":
        return tf.distribute.OneDeviceStrategy("/gpu:0")
    return tf.distribute.get_strategy()


def precision_policy(mixed_precision: bool | None, has_gpu: bool) -> str:
    """``mixed_float16`` on a GPU, ``mixed_bfloat16`` when asked for on a CPU, else ``float32``.

    ``None`` means: on when a GPU is present. Every zoo model's output layer is float32 whatever
    the policy, so probabilities and losses stay in full precision.
    """
    if mixed_precision is None:
        mixed_precision = has_gpu
    if not mixed_precision:
        return "float32"
    return "mixed_float16" if has_gpu else "mixed_bfloat16"


def _is_chief(strategy) -> bool:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    return resolver.task_type == "chief" or (
        resolver.task_type == "worker" and resolver.task_id == 0
        and "chief" not in resolver.cluster_spec().as_dict())


def fit(cfg: TrainConfig, out, *, resume: bool = False, force: bool = False, verbose: int = 1,
        callbacks=(), echo=print, check: bool = True) -> TrainResult:
    """Train ``cfg.model`` on ``cfg.data`` and write ``out/model.keras`` with its card.

    The budget is :func:`edgeseg.plan.plan_training`'s (steps chosen from the data, unless
    ``cfg.steps`` or ``cfg.epochs`` say); the plan is echoed in one line before training, with the
    time a short measured warm-up predicts. The model kept is the last one (no epoch is picked on
    the validation images, so their score stays honest), with its BatchNorm statistics recomputed
    over training batches (:mod:`edgeseg.batchnorm`); then :mod:`edgeseg.guard` checks in
    inference mode that it learned something.

    Writes ``config.json``, ``history.csv``, ``logs/`` (TensorBoard), ``checkpoints/`` and, while
    running, ``backup/`` (BackupAndRestore). ``resume=True`` continues an interrupted run from its
    last completed chunk, with the config it was started with; ``force=True`` starts over.
    ``callbacks`` are added to Keras' (the tests interrupt a run with one). ``check=False`` keeps
    a model that learned nothing without raising (its card still says ``failed``).

    Raises:
        TrainingError: bad options, an ``out`` that holds another run, or a run that diverged.
        TrainingFailed: the model learned nothing (its files are written, their card says so).
        DataError: the dataset cannot be read (nothing is written then).
    """
    out = Path(out)
    backup = out / "backup"
    if resume:
        if not _has_files(backup):
            raise TrainingError(f"{out}: no interrupted run to resume (no checkpoint in {backup})")
        cfg = load_config(TrainConfig, out / "config.json")
    else:
        cfg = replace(cfg, data=cfg.data.absolute())  # the card says which folder, from anywhere
        if _has_files(backup) and not force:
            raise TrainingError(f"{out}: holds an interrupted run; pass --resume to continue it "
                                f"or --force to start over")
        if (out / MODEL_FILE).exists() and not force:  # finished: nothing to resume
            raise TrainingError(f"{out}: holds a trained {MODEL_FILE}; pass --force to train "
                                f"again over it, or give another --out")
    outputs = Outputs(out, "train")
    outputs.check_inputs({"--data": cfg.data.source, "--val-data": cfg.data.val_source},
                         planned=(*OUTPUT_FILES, *TOOL_FOLDERS))
    outputs.refuse_unowned(files=OUTPUT_FILES, tools=TOOL_FOLDERS)
    _check(cfg)
    train_data, val_data = split(cfg.data)  # before anything is written: bad data leaves no trace
    norm = resolve_normalization(cfg.normalize, train_data)
    size = cfg.data.input_size
    plan = plan_training(images=len(train_data), val_images=len(val_data),
                         views=_views(train_data, size), batch_size=cfg.batch_size,
                         augmented=cfg.augment != Augment.off(),
                         classes=len(train_data.class_names) - 1, steps=cfg.steps,
                         epochs=cfg.epochs)
    num_classes = cfg.model.options.get("num_classes", train_data.num_classes)
    model_kwargs = {"channels": train_data.channels, "num_classes": num_classes,
                    **cfg.model.options}

    # The strategy comes first: MultiWorkerMirroredStrategy must exist before any TensorFlow op runs.
    gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
    strategy_kind = choose_strategy(gpus, os.environ.get("TF_CONFIG"))
    strategy = make_strategy(strategy_kind)
    keras.utils.set_random_seed(cfg.seed)
    if cfg.deterministic:
        tf.config.experimental.enable_op_determinism()
    train_ds = make_dataset(train_data, size, cfg.batch_size, training=True, augment=cfg.augment,
                            normalization=norm, seed=cfg.seed, repeat=True)
    val_ds = make_dataset(val_data, size, cfg.batch_size, training=False, normalization=norm)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    train_ds, val_ds = train_ds.with_options(options), val_ds.with_options(options)

    policy = precision_policy(cfg.mixed_precision, bool(gpus))
    previous_policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        with strategy.scope():  # trained at the crop size: a bad size is refused here
            model = create_model(cfg.model.name, input_size=size, **model_kwargs)
            schedule = keras.optimizers.schedules.CosineDecay(cfg.lr, plan.steps, alpha=0.01)
            # Under mixed_float16, compile wraps Adam in a LossScaleOptimizer.
            model.compile(optimizer=keras.optimizers.Adam(schedule),
                          loss=segmentation_loss(cfg.loss), metrics=[DiceMetric(num_classes)],
                          jit_compile=cfg.xla)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
    _check_image_sides(model, size, train_data, val_data, cfg)
    # the model file, two checkpoints and the final model with its optimizer (Adam keeps two
    # more copies of the weights), and the logs: a full disk is said now, not after training
    weights = model.count_params() * 4
    check_space(out, 6 * weights + 2**20, largest=3 * weights + 2**16, what="the training outputs")

    # Data and model are good: only now is anything written, each path claimed first (the
    # chief's: the other workers write only their own .worker-N, which they remove)
    chief = _is_chief(strategy)
    if chief:
        if force and not resume:
            outputs.clear()  # what an earlier run wrote here, and nothing else
        outputs.claim_file(*OUTPUT_FILES)
        for folder in TOOL_FOLDERS:
            outputs.claim_folder(folder, tool=True)
    workdir = out if chief else out / f".worker-{strategy.cluster_resolver.task_id}"
    workdir.mkdir(parents=True, exist_ok=True)
    if chief and not resume:
        save_config(cfg, out / "config.json")
    if chief:
        echo(f"data: {train_data.fit_note or 'built-in images, generated at the input size'}; "
             f"{norm.describe()}; augmentation: {cfg.augment.describe()}")
        dim = dim_range_warning((train_data.sample(i)[0] for i in range(min(8, len(train_data)))),
                                norm)
        if dim:
            print(f"warning: {dim}", file=sys.stderr)
    # Timed on one device only: under several replicas the step function wants distributed data.
    one_device = strategy_kind in ("default", "one_device")
    per_step = _warm_up(model, train_ds) if one_device and not resume else None
    if chief:
        echo(f"plan: {plan.describe(per_step)}")
    last = workdir / "checkpoints" / "last.weights.h5"
    last.parent.mkdir(parents=True, exist_ok=True)
    timer = _Throughput(cfg.batch_size)
    keras_callbacks = [
        _NaNGuard(),  # first: a NaN batch must stop the chunk before anything saves its weights
        # The chunk's log row and checkpoint are written before it is backed up: a kill in
        # between redoes the chunk on resume, and its repeated row is dropped afterwards.
        keras.callbacks.CSVLogger(str(workdir / "history.csv"), append=resume),
        _LastWeights(last),
        keras.callbacks.BackupAndRestore(str(backup)),
        keras.callbacks.TensorBoard(str(workdir / "logs"), profile_batch=0),
        timer, *callbacks,
    ]
    started = time.perf_counter()
    try:
        history = model.fit(train_ds, epochs=plan.chunks, steps_per_epoch=plan.steps_per_chunk,
                            validation_data=val_ds, callbacks=keras_callbacks, verbose=verbose)
    except tf.errors.OpError as error:  # a streamed file that broke while training
        raise _data_error(error) from None
    except ValueError as error:
        if not (resume and "attempting to restore" in str(error)):
            raise
        # BackupAndRestore's checkpoint was written by another network than these options build
        # now (e.g. a default of the zoo changed since the run started): nothing was trained
        options = ", ".join(f"{k}={v}" for k, v in cfg.model.options.items()) or "the defaults"
        raise TrainingError(
            f"{out}: the interrupted run's checkpoint does not fit the {cfg.model.name} that its "
            f"options ({options}) build now - a default may have changed "
            f"since it started; start it again with --force (or train into another --out with "
            f"the options it was made with)") from None
    except _Diverged as diverged:
        kept = f"the last good checkpoint is kept at {last}" if last.exists() else \
            "no epoch finished, so there is no checkpoint"
        raise TrainingError(f"training diverged: the loss became NaN/inf at epoch "
                            f"{diverged.epoch + 1}, batch {diverged.batch + 1}; {kept}; "
                            f"try a lower --lr") from None
    seconds = time.perf_counter() - started
    # Every worker reads the weights: BatchNorm's moving statistics are synchronised on read, a
    # collective op that all workers must join before any of them leaves.
    weights = model.get_weights()
    if not chief:
        shutil.rmtree(workdir, ignore_errors=True)
        return TrainResult(out / MODEL_FILE, float("nan"), (), float("nan"), plan.chunks,
                           seconds, timer.images_per_second, plan.steps)
    if resume:
        _dedupe_history(workdir / "history.csv")

    # A float32 copy outside the strategy with the final weights: it converts and deploys as is.
    final = create_model(cfg.model.name, **model_kwargs)
    final.set_weights(weights)
    bn_batches = recalibrate(final, make_dataset(train_data, size, cfg.batch_size, training=True,
                                                 augment=cfg.augment, normalization=norm,
                                                 seed=cfg.seed + 1, repeat=True))
    every = max(1, len(train_data) // 32)  # what it was trained on, from across the split
    trained_on = intensity_stats((train_data.sample(i)[0]
                                  for i in range(0, len(train_data), every)), norm)
    card = make_card(format="keras", variant="fp32", input_size=[size, size],
                     channels=train_data.channels, num_classes=num_classes,
                     class_names=list(train_data.class_names), normalization=norm.to_dict(),
                     input_fit=train_data.fit, input_stats=trained_on)
    scored = KerasInMemory(final, card)  # scored as deployed: whole images at their own size
    val_scores = score_model(scored, at_own_size(val_data), tile=size)
    train_scores = score_model(scored, at_own_size(train_data, 64), limit=64, tile=size)
    failure = check_learned(train_scores, val_scores, train_data.class_names)
    path = save_model(final, out / MODEL_FILE)
    devices = {"strategy": strategy_kind, "replicas": strategy.num_replicas_in_sync,
               "precision": policy}
    card.update(
        source={"data": cfg.data.source, "model": cfg.model.name},
        recipe={"stage": "train", **cfg.to_dict(), "plan": plan.to_dict(),
                "seconds": round(seconds, 1), "images_per_second": round(timer.images_per_second, 1),
                "batchnorm_recalibrated_batches": bn_batches,
                "weights": "last (no checkpoint picked on the validation images)", **devices},
        metrics={"val": val_scores, "train": _brief(train_scores)},
        images=describe_split(cfg.data, len(train_data), len(val_data)),
        status="failed" if failure else "ok", **({"failure": failure} if failure else {}))
    _write_train_card(path, final, card, size)
    # Only now is the run finished: a kill before this resumes, finds every chunk done, and
    # goes straight to the recalibration, the scores and the card.
    shutil.rmtree(backup, ignore_errors=True)
    if failure and check:
        raise TrainingFailed(f"{path}: the model learned nothing useful: {failure}; "
                             f"{advice(failure)} (the files stay in {out}, marked failed)")
    return TrainResult(path, val_scores["dice"], tuple(val_scores["dice_per_class"]),
                       val_scores["iou"], len(history.history.get("loss", [])) or plan.chunks,
                       seconds, timer.images_per_second, plan.steps, train_scores["dice"],
                       tuple(val_scores["dice_interval"]), val_scores["samples"], failure)


def resolve_normalization(choice: str, data) -> Normalization:
    """The normalisation ``--normalize`` names for this data: ``auto`` is ``percentile`` for
    16-bit or float images (the microscopy convention) and ``scale`` for 8-bit ones; ``meanstd``
    without values takes the training images' own mean and deviation per channel, fixed from then
    on (in the card)."""
    from edgeseg.device.preprocess import type_max

    if choice == "auto":
        return Normalization("scale" if data.dtype == np.uint8 else "percentile")
    norm = Normalization.parse(choice) if choice != "meanstd" else None
    if norm is not None:
        return norm
    total, squares, count = 0.0, 0.0, 0
    for index in range(len(data)):
        image = data.sample(index)[0]
        scaled = image.astype(np.float64) / type_max(image)
        total = total + scaled.sum(axis=(0, 1))
        squares = squares + (scaled ** 2).sum(axis=(0, 1))
        count += image.shape[0] * image.shape[1]
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean ** 2, 1e-12))
    return Normalization("meanstd", mean=tuple(round(float(m), 6) for m in mean),
                         std=tuple(round(float(v), 6) for v in std))


def _views(data, size: int) -> float:
    """Input-sized crops in the training images (from the decoded images, or a streamed
    folder's file headers)."""
    if isinstance(data, SegData):
        return views_of([image.shape[:2] for image in data.images], size)
    from edgeseg.device.data.folders import header_size

    return views_of([data.resize_to or header_size(s.image)[::-1] for s in data.samples], size)


def _warm_up(model, dataset, steps: int = 5) -> float | None:
    """Seconds per training step, timed over ``steps`` steps after one that traces the step
    function (which ``fit`` then reuses). The weights and the optimizer (its step count, so the
    learning-rate schedule, and Adam's moments) are put back as they were, whatever happens; the
    data order of the run differs from a run without the warm-up (the dataset reshuffles per
    iterator), as between any two seeds of the shuffle."""
    weights = model.get_weights()
    try:
        train = model.make_train_function()
        iterator = iter(dataset)
        train(iterator)  # traces and compiles
        started = time.perf_counter()
        for _ in range(steps):
            logs = train(iterator)
        float(logs["loss"])  # wait for the last step
        return (time.perf_counter() - started) / steps
    except (tf.errors.OpError, TypeError, AttributeError, KeyError, ValueError):
        return None  # a strategy or model that will not be timed this way: no estimate
    finally:
        model.set_weights(weights)
        optimizer = getattr(model.optimizer, "inner_optimizer", model.optimizer)
        for variable in optimizer.variables:
            variable.assign(tf.zeros_like(variable))
        model.reset_metrics()


def _brief(scores: dict) -> dict:
    return {key: scores[key] for key in ("dice", "dice_per_class", "iou", "samples")}


def _data_error(error: Exception) -> Exception:
    """The DataError inside a tf.data error (raised by a decoder in ``numpy_function``), if any."""
    import re

    found = re.search(r"DataError: (.+)", str(error))
    return DataError(found.group(1).strip()) if found else error


def _has_files(folder: Path) -> bool:
    return folder.is_dir() and any(folder.iterdir())


def _dedupe_history(path: Path) -> None:
    """Keep one row per epoch (the last: an epoch redone after an interrupt), in epoch order."""
    import csv
    import io

    from edgeseg.device.files import atomic_write_text

    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        fields, rows = reader.fieldnames, {int(row["epoch"]): row for row in reader}
    if not fields:
        return
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows[epoch] for epoch in sorted(rows))
    atomic_write_text(path, buffer.getvalue())


def _check_image_sides(model, size: int, train_data, val_data, cfg: TrainConfig) -> None:
    """Images smaller than the model's coarsest feature map teach it nothing (its crops are all
    padding): refused before anything is written, with the side they need."""
    sides = [shape[1] for layer in model.layers
             for shape in [getattr(layer, "output_shape", None)]
             if isinstance(shape, tuple) and len(shape) == 4 and shape[1]]
    stride = size // min(sides) if sides and min(sides) else 1
    smallest = None
    for data in (train_data, val_data):
        if getattr(data, "fit", "tile") == "resize":
            continue  # resized to the input: every side is the input's
        for index in range(len(data)):
            image = data.images[index] if hasattr(data, "images") else None
            side = min(image.shape[:2]) if image is not None else \
                min(_header_side(data.samples[index].image))
            if smallest is None or side < smallest[0]:
                smallest = (side, data, index)
    if smallest is not None and smallest[0] < stride:
        side, data, index = smallest
        where = data.sources[index].image if getattr(data, "sources", ()) else \
            (data.samples[index].image if hasattr(data, "samples") else f"{data.name} sample "
                                                                           f"{index}")
        raise TrainingError(f"{where}: {side} px on its shorter side; {cfg.model.name} reduces "
                            f"its input {stride}x, so images need sides of at least {stride} px "
                            f"(give larger images)")


def _header_side(path) -> tuple[int, int]:
    from edgeseg.device.data.folders import header_size

    return header_size(path)


def _check(cfg: TrainConfig) -> None:
    for name, value in (("--epochs", cfg.epochs), ("--steps", cfg.steps),
                        ("--batch-size", cfg.batch_size)):
        if value is not None and value < 1:
            raise TrainingError(f"{name} must be >= 1 (got {value})")
    if cfg.steps is not None and cfg.epochs is not None:
        raise TrainingError("give --steps or --epochs, not both")
    if cfg.normalize not in ("auto", "meanstd"):
        Normalization.parse(cfg.normalize)  # a bad value: one clear error before any work
    if not cfg.lr > 0 or not math.isfinite(cfg.lr):
        raise TrainingError(f"--lr must be a positive number (got {cfg.lr})")


def _write_train_card(path, model, card: dict, size: int) -> None:
    from edgeseg.device.card import write_card
    from edgeseg.device.flops import keras_cost

    cost = keras_cost(model, input_size=size)
    write_card(path, {**card, "macs": cost.macs, "params": cost.params})


class _LastWeights(keras.callbacks.Callback):
    """Keep the weights of the last finished chunk in ``path``, written to a temporary file and
    renamed into place: a kill mid-write leaves the previous one whole (Keras' ModelCheckpoint
    writes the file in place, and a crash trial found it half-written), and a full disk is one
    error naming it (the HDF5 library writing to it crashed the process)."""

    def __init__(self, path: Path):
        super().__init__()
        self.path = Path(path)

    def on_epoch_end(self, epoch, logs=None):
        save_weights(self.model, self.path)


class _Diverged(Exception):
    def __init__(self, epoch: int, batch: int):
        super().__init__(f"NaN/inf loss at epoch {epoch + 1}, batch {batch + 1}")
        self.epoch, self.batch = epoch, batch


class _NaNGuard(keras.callbacks.Callback):
    """Stop at the first NaN/inf loss, before the epoch ends: checkpoints never hold NaN weights.

    Keras' TerminateOnNaN only sets ``stop_training``, so the epoch still ends and the checkpoint
    callbacks save the diverged weights; raising here keeps the last good ones.
    """

    def __init__(self):
        super().__init__()
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise _Diverged(self._epoch, batch)


class _Throughput(keras.callbacks.Callback):
    """Training images per second, validation left out."""

    def __init__(self, batch_size: int):
        super().__init__()
        self.batch_size, self.images, self.seconds = batch_size, 0, 0.0
        self._start = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()
        self._batches = 0

    def on_train_batch_end(self, batch, logs=None):
        self._batches += 1

    def on_test_begin(self, logs=None):
        if self._start is not None:
            self.seconds += time.perf_counter() - self._start
            self.images += self._batches * self.batch_size
            self._start = None

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds else 0.0
