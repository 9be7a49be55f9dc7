"""``optimize()``: prune -> cluster -> QAT on a trained model, each stage measured, one card at the end.

    >>> from edgeseg.config import OptimizeConfig, DataConfig
    >>> cfg = OptimizeConfig(data=DataConfig("synthetic-nuclei"), prune=0.5, qat=True)
    >>> result = optimize("runs/nuclei/model.keras", cfg, "runs/nuclei-pqat")  # doctest: +SKIP
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from edgeseg._keras import keras
from edgeseg.config import Augment, OptimizeConfig, save_config
from edgeseg.device.card import (
    card_path,
    contract,
    make_card,
    normalization_of,
    read_card,
    write_card,
)
from edgeseg.device.data.datasets import at_own_size
from edgeseg.device.data.roles import split
from edgeseg.device.errors import ConfigError
from edgeseg.device.files import check_space
from edgeseg.device.outputs import Outputs
from edgeseg.device.scoring import check_classes, score_model
from edgeseg.keras_files import KerasInMemory
from edgeseg.models.saving import is_quantization_aware, save_model
from edgeseg.optimize import cluster, prune
from edgeseg.optimize.finetune import finetune, plan_steps
from edgeseg.optimize.quantize import quantize_for_training
from edgeseg.optimize.report import cluster_report, sparsity_report
from edgeseg.optimize.selection import KERNELS, find_layer, weight_of

# tfmot's QAT layers do not survive the .keras format (their variables load in the wrong order);
# HDF5 keeps them, so quantization-aware models are saved as model.h5.
MODEL_FILES = {False: "model.keras", True: "model.h5"}


@dataclass(frozen=True)
class OptimizeResult:
    model_path: Path
    variant: str
    dice_before: float
    dice_after: float
    stages: tuple[dict, ...]
    sparsity: dict | None  # sparsity_report of the result (None when nothing was pruned)
    clusters: dict | None


def variant_name(cfg: OptimizeConfig) -> str:
    """``pruned50``, ``pruned2of4``, ``clustered16``, ``qat`` joined by ``-`` in the order applied."""
    parts = []
    if cfg.structured:
        parts.append("pruned" + cfg.structured.replace(":", "of"))
    elif cfg.prune:
        parts.append(f"pruned{round(cfg.prune * 100)}")
    if cfg.cluster:
        parts.append(f"clustered{cfg.cluster}")
    if cfg.qat:
        parts.append("qat")
    return "-".join(parts)


def _trainable(model_path, unsafe: bool, custom_objects: dict | None):
    """The tf-keras model tfmot fine-tunes: one output of probabilities (edgeseg's losses take
    probabilities); anything else is one line that says why."""
    from edgeseg.device.postprocess import kind_from_ops
    from edgeseg.keras_files import KerasSource, load_for_training

    model = load_for_training(model_path, unsafe=unsafe, custom_objects=custom_objects)
    source = KerasSource(model_path, model, "tf_keras")
    if len(source.output_names) != 1:
        raise ConfigError(f"{model_path}: {len(source.output_names)} outputs; optimize fine-tunes "
                          f"models with one segmentation output (convert, eval and bench take "
                          f"--output)")
    kind = kind_from_ops(source.output_ops(0))
    if kind is None:  # a last layer that does not tell: its values on a few images do
        import numpy as np

        from edgeseg.device.postprocess import looks_like_logits

        _, height, width, channels = source.input_shape
        probe = np.random.default_rng(0).random((2, height or 64, width or 64, channels),
                                                np.float32)
        kind = "logits" if looks_like_logits(np.asarray(source(probe))) else "probabilities"
    if kind == "logits":
        raise ConfigError(f"{model_path}: its output is logits; optimize fine-tunes models that "
                          f"end in a sigmoid/softmax (add the activation as a last layer)")
    return model


def optimize(model_path, cfg: OptimizeConfig, out, *, force: bool = False,
             verbose: int = 1, unsafe: bool = False,
             custom_objects: dict | None = None, announce=None) -> OptimizeResult:
    """Run the stages ``cfg`` asks for on the model at ``model_path``; write it into ``out``.

    The result is a plain Keras model, ``out/model.keras`` (pruning and clustering wrappers
    stripped); after QAT it is the quantization-aware model, ``out/model.h5``, which converts to
    an int8 .tflite without calibration data. ``announce()`` is called once the model and the
    data are read (the command's data line: said only when both are good).
    """
    if not (cfg.prune or cfg.structured or cfg.cluster or cfg.qat):
        raise ConfigError("nothing to do: give --prune, --structured, --cluster and/or --qat")
    if cfg.structured:
        prune.parse_structured(cfg.structured)  # from the option alone, before any work
    out = Path(out)
    cfg = replace(cfg, data=cfg.data.absolute())  # recorded whole: read again from anywhere
    existing = [out / name for name in MODEL_FILES.values() if (out / name).exists()]
    if existing and not force:
        raise ConfigError(f"{out}: holds an optimized {existing[0].name}; pass --force to "
                          f"replace it")
    outputs = Outputs(out, "optimize")
    written = (MODEL_FILES[cfg.qat], card_path(MODEL_FILES[cfg.qat]).name, "optimize.json")
    outputs.check_inputs({"MODEL": model_path, "--data": cfg.data.source}, planned=written)
    outputs.refuse_unowned(files=written)
    model = _trainable(model_path, unsafe, custom_objects)
    if is_quantization_aware(model):
        raise ConfigError(f"{model_path}: already quantization-aware; optimize the model it was "
                          f"made from")
    source_card = read_card(model_path)
    train_data, val_data = split(cfg.data)
    if train_data.channels != model.input_shape[-1]:
        raise ConfigError(f"{model_path} takes {model.input_shape[-1]} channel(s), --data "
                          f"{cfg.data.source} has {train_data.channels}")
    size, num_classes = cfg.data.input_size, int(model.output_shape[-1])
    check_classes(num_classes, train_data, model_path)
    if announce is not None:
        announce()
    # the optimized model (a QAT model keeps more variables) and its card: said before the work
    weights = model.count_params() * 4
    # the model is saved with its optimizer (Adam: two more copies of the weights)
    check_space(out, 3 * weights + 2**20, largest=3 * weights, what="the optimized model")
    keras.utils.set_random_seed(cfg.seed)
    norm = normalization_of(source_card)
    held_out = at_own_size(val_data)

    def score(m) -> dict:  # as training scores: whole validation images, fed as deployed
        return score_model(KerasInMemory(m, source_card), held_out, tile=size)

    before = score(model)
    latest = None  # (model, its scores): the last stage's model is not scored twice

    def scored(m) -> float:
        nonlocal latest
        latest = (m, score(m))
        return latest[1]["dice"]

    epochs, per_epoch = plan_steps(cfg, len(train_data))
    run = {"input_size": size, "num_classes": num_classes, "epochs": epochs,
           "steps_per_epoch": per_epoch, "verbose": verbose, "normalization": norm,
           "augment": _augment_of(source_card)}
    stages, axis = [], None
    # A model pruned or clustered by an earlier `optimize` keeps that under QAT here too.
    pruned_layers, clustered_layers = _inherited(source_card)
    sparsity = clusters = None

    if cfg.prune or cfg.structured:
        started = time.perf_counter()
        wrapped, plan = prune.apply_pruning(model, sparsity=cfg.prune, schedule=cfg.schedule,
                                            total_steps=epochs * per_epoch,
                                            structured=cfg.structured)
        finetune(wrapped, train_data, cfg, callbacks=prune.pruning_callbacks(), **run)
        model = prune.strip(wrapped)
        _recalibrate(model, train_data, cfg, run)
        pruned_layers = set(plan.layers)
        axis = prune.parse_structured(cfg.structured)[1] if cfg.structured else None
        sparsity = sparsity_report(model, pruned_layers, axis)
        prune.check_reached(sparsity, plan)
        stages.append({"stage": "prune", **plan.to_dict(),
                       "measured_sparsity": sparsity["selected"]["sparsity"],
                       "dice": scored(model),
                       "seconds": round(time.perf_counter() - started, 1)})

    if cfg.cluster:
        started = time.perf_counter()
        wrapped, chosen = cluster.apply_clustering(model, clusters=cfg.cluster,
                                                   preserve_sparsity=bool(pruned_layers))
        finetune(wrapped, train_data, cfg, **run)
        model = cluster.strip(wrapped)
        _recalibrate(model, train_data, cfg, run)
        clustered_layers = set(chosen)
        clusters = cluster_report(model, clustered_layers)
        stages.append({"stage": "cluster", "clusters": cfg.cluster, "layers": sorted(chosen),
                       "max_unique": clusters["max_unique"], "dice": scored(model),
                       "seconds": round(time.perf_counter() - started, 1)})

    if cfg.qat:
        started = time.perf_counter()
        scheme = ("prune+cluster" if pruned_layers and clustered_layers else
                  "prune" if pruned_layers else "cluster" if clustered_layers else "default")
        zeros_before = _zero_masks(model, pruned_layers)
        model = quantize_for_training(model, scheme)
        finetune(model, train_data, cfg, **run)
        stage = {"stage": "qat", "scheme": scheme, "dice": scored(model),
                 "seconds": round(time.perf_counter() - started, 1)}
        if pruned_layers:
            stage["zeros_kept"] = _zeros_kept(zeros_before, model)
            sparsity = sparsity_report(model, pruned_layers, axis)
        if clustered_layers:
            clusters = cluster_report(model, clustered_layers)
            stage["max_unique_per_channel"] = clusters["max_unique_per_channel"]
        stages.append(stage)

    after = latest[1] if latest and latest[0] is model else score(model)
    variant = variant_name(cfg)
    if source_card.get("variant") not in (None, "fp32"):
        variant = f"{source_card['variant']}-{variant}"
    if force:
        outputs.clear()  # the earlier optimized model (either kind) and its card, nothing else
    outputs.claim_file(*written)
    path = save_model(model, out / MODEL_FILES[cfg.qat])
    save_config(cfg, out / "optimize.json")
    write_card(path, make_card(
        format="keras", variant=variant,
        input_size=source_card.get("input_size", [size, size]),
        channels=train_data.channels, num_classes=num_classes,
        class_names=source_card.get("class_names", list(train_data.class_names)),
        **{**contract(source_card), "output_kind": "probabilities"},  # checked by _trainable
        source={"model": str(model_path), "variant": source_card.get("variant"),
                "data": cfg.data.source},
        recipe={"stage": "optimize", **cfg.to_dict(),
                "stages": [*((source_card.get("recipe") or {}).get("stages") or []), *stages]},
        quantization_aware=bool(cfg.qat),
        metrics={"val_before": before, "val": after},
        sparsity=None if sparsity is None else {k: sparsity[k] for k in ("selected", "kernels", "all")},
        clusters=clusters, macs=source_card.get("macs"), params=source_card.get("params")))
    return OptimizeResult(path, variant, before["dice"], after["dice"], tuple(stages), sparsity,
                          clusters)


def _recalibrate(model, train_data, cfg: OptimizeConfig, run: dict) -> None:
    """BatchNorm statistics for the fine-tuned weights (see :mod:`edgeseg.batchnorm`)."""
    from edgeseg.batchnorm import recalibrate
    from edgeseg.tfdata import make_dataset

    recalibrate(model, make_dataset(train_data, run["input_size"], cfg.batch_size, training=True,
                                    augment=run["augment"], normalization=run["normalization"],
                                    seed=cfg.seed + 1, repeat=True))


def _augment_of(card: dict) -> Augment:
    """The augmentation the model was trained with (its card's recipe), else the default."""
    recipe = card.get("recipe") or {}
    augment = recipe.get("augment")
    if augment is None:  # an optimized model's card records its own stage; the trained one's is gone
        return Augment()
    return Augment.from_dict(augment)


def _inherited(card: dict) -> tuple[set[str], set[str]]:
    """(pruned, clustered) layer names recorded in the card of a model optimize made."""
    pruned, clustered = set(), set()
    for stage in (card.get("recipe") or {}).get("stages") or []:
        if stage.get("stage") == "prune":
            pruned |= set(stage.get("layers") or [])
        elif stage.get("stage") == "cluster":
            clustered |= set(stage.get("layers") or [])
    return pruned, clustered


def _zero_masks(model, names) -> dict[str, np.ndarray]:
    """Where each pruned kernel is zero, before QAT."""
    return {name: _kernel(model, name) == 0 for name in names}


def _zeros_kept(zeros_before: dict, qat_model) -> float:
    """The share of the pruned zeros still zero in the QAT model's kernels."""
    kept = sum(int((_kernel(qat_model, name)[mask] == 0).sum()) for name, mask in zeros_before.items())
    total = sum(int(mask.sum()) for mask in zeros_before.values())
    return kept / total if total else 1.0


def _kernel(model, name: str) -> np.ndarray:
    layer = find_layer(model, name)
    return weight_of(model, name, KERNELS[type(layer).__name__]).numpy()
