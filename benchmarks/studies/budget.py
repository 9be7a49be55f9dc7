"""Train zoo models on one fixed step budget and convert each to the deployable files.

Shared by the peer comparison (``python -m benchmarks.studies.peers``) and the default-model sweep
(``python -m benchmarks.studies.sweep``): every model sees the same data, the same number of
optimizer steps of the same batch size, the same schedule and seed, so what differs is the
architecture alone. These two need TensorFlow (they train); the harness itself does not.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

DATA = "synthetic-nuclei"  # the default task; --data synthetic-shapes is the 4-class one
TASKS = ("synthetic-nuclei", "synthetic-shapes")
TRAIN_SIZE = 128  # training crops; the models are fully convolutional and deployed at --input-size

# file name -> (to, quant): what each trained model is converted to
FILES = {"fp32.tflite": ("tflite", "none"), "int8.tflite": ("tflite", "int8"),
         "fp32.onnx": ("onnx", "none"), "int8.onnx": ("onnx", "int8")}


@dataclass(frozen=True)
class Candidate:
    """One model to train and convert: a label, a zoo name and its options."""

    label: str
    model: str
    options: dict
    trained: bool = True  # False: random weights, for MACs and latency only


DEPLOYABLE_DICE = 0.01  # a file is deployable within this much of its own model's fp32 Dice


def best_deployable(rows: list[dict]) -> dict | None:
    """The fastest of one model's bench rows (each with ``file``) whose Dice is within
    DEPLOYABLE_DICE of that model's fp32 file's. Fails closed: None when there is no fp32 row
    with a Dice to judge by, and a row without a Dice is never deployable."""
    fp32 = next((r for r in rows if r["file"].startswith("fp32")), None)
    if fp32 is None or fp32.get("dice") is None:
        return None
    ok = [r for r in rows if r.get("dice") is not None
          and r["dice"] >= fp32["dice"] - DEPLOYABLE_DICE]
    return min(ok, key=lambda r: r["latency_ms"]["p50"]) if ok else None


def task(data: str) -> tuple[int, int]:
    """(channels, model outputs) of a built-in dataset: 1 output (a sigmoid) for two classes."""
    from edgeseg.device.data.synthetic import SYNTHETIC

    _, classes, channels = SYNTHETIC[data]
    return channels, 1 if len(classes) == 2 else len(classes)


def _seed_list(ctx, param, value):
    import click

    try:
        seeds = [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of whole numbers") \
            from None
    if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise click.BadParameter(f"{value!r}: give distinct seeds >= 0, e.g. 0,1,2")
    return tuple(seeds)


def options(function):
    """The budget's command-line options (--data, --input-size, --steps, --runs, --samples,
    --seeds, --rounds, --no-amx)."""
    import click

    for decorator in reversed([
            click.option("--data", type=click.Choice(TASKS), default=DATA, show_default=True,
                         help="The built-in task every model trains and is scored on (binary "
                              "nuclei, or four-class RGB shapes)."),
            click.option("--input-size", type=click.IntRange(min=32), default=256,
                         show_default=True, help="The size models are converted and timed at."),
            click.option("--steps", type=click.IntRange(min=1), default=300, show_default=True,
                         help="Training steps (batches of 16) per model."),
            click.option("--runs", type=click.IntRange(min=1), default=30, show_default=True,
                         help="Timed round-robin iterations."),
            click.option("--samples", type=click.IntRange(min=1), default=64, show_default=True,
                         help="Held-out images to score (built-in test range)."),
            click.option("--seeds", default="0,1,2", show_default=True, callback=_seed_list,
                         help="Training seeds: every model is trained once per seed; Dice is "
                              "their mean (with the spread), latency is timed on the first "
                              "seed's files."),
            click.option("--rounds", type=click.IntRange(min=1), default=3, show_default=True,
                         help="Timing rounds (each a whole interleaved run): p50 is their median, "
                              "goals must hold in the worst one."),
            click.option("--no-amx", is_flag=True,
                         help="Time with Intel AMX denied to the runtimes (see edgeseg bench "
                              "--help): the figures of a CPU with AVX-512 VNNI but no AMX.")]):
        function = decorator(function)
    return function


def train(candidate: Candidate, out: Path, steps: int, seed: int = 0, echo=print,
          data: str = DATA) -> dict:
    """Train (or build, when ``trained`` is False) ``candidate`` into ``out/model.keras``.

    ``steps`` optimizer steps of 16 crops of ``data``. A finished model is reused only when it was
    made with the same parameters (model, options, steps, seed, data: the ``key`` in
    ``budget.json``) and the
    same network (its ``architecture``: layers and initializers, which a change of the zoo's
    defaults or code changes under the same options), and that is said. Returns ``{"dice":
    validation Dice or None, "seconds": ..., "key": ...}``.
    """
    from edgeseg.config import DataConfig, ModelConfig, TrainConfig, train_defaults
    from edgeseg.train import MODEL_FILE, fit

    out.mkdir(parents=True, exist_ok=True)
    summary = out / "budget.json"
    key = {"model": candidate.model, "options": dict(candidate.options),
           "architecture": architecture(candidate, data),
           "trained": candidate.trained, "steps": steps if candidate.trained else 0,
           "seed": seed, "data": data, "train_size": TRAIN_SIZE}
    if (out / MODEL_FILE).exists() and summary.exists():
        previous = json.loads(summary.read_text())
        if previous.get("key") == key:
            echo(f"  {candidate.label}: reused {out / MODEL_FILE} (same model, steps {key['steps']}"
                 f", seed {seed})")
            return previous
        echo(f"  {candidate.label}: {out / MODEL_FILE} was made with other parameters "
             f"({_differences(previous.get('key'), key)}): trained again")
    started = time.perf_counter()
    if candidate.trained:
        cfg = TrainConfig(
            data=DataConfig(source=data, input_size=TRAIN_SIZE, n_train=400, n_val=64, seed=seed),
            model=ModelConfig(candidate.model, dict(candidate.options)), steps=steps,
            lr=train_defaults(data)["lr"], seed=seed)
        # a model that learned little is still a point of the comparison: kept, and said
        result = fit(cfg, out, force=True, verbose=0, echo=lambda line: None, check=False)
        info = {"dice": result.dice, "seconds": round(result.seconds, 1), "steps": result.steps,
                "failure": result.failure}
    else:
        untrained(candidate, out / MODEL_FILE, seed, data)
        info = {"dice": None, "seconds": 0.0, "steps": 0}
    info["wall_seconds"] = round(time.perf_counter() - started, 1)
    info["key"] = key
    summary.write_text(json.dumps(info))
    echo(f"  {candidate.label}: " + (f"validation Dice {info['dice']:.4f}, {info['seconds']:.0f} s"
                                     if info["dice"] is not None else "random weights"))
    return info


def architecture(candidate: Candidate, data: str = DATA) -> str:
    """A digest of the network ``candidate`` builds (its Keras config: every layer, option and
    initializer), so a cached model is not taken for one that code or default changes made
    different under the same options."""
    import hashlib

    from edgeseg.models import create_model

    channels, outputs = task(data)
    model = create_model(candidate.model, input_size=TRAIN_SIZE, channels=channels,
                         num_classes=outputs, **candidate.options)
    return hashlib.sha256(model.to_json().encode()).hexdigest()[:16]


def _differences(old: dict | None, new: dict) -> str:
    if not isinstance(old, dict):
        return "not recorded"
    return ", ".join(f"{k} {old.get(k)!r} -> {v!r}" for k, v in new.items() if old.get(k) != v)


def untrained(candidate: Candidate, path: Path, seed: int, data: str = DATA) -> None:
    from edgeseg._keras import keras
    from edgeseg.device.card import make_card, write_card
    from edgeseg.models import create_model
    from edgeseg.models.saving import save_model

    keras.utils.set_random_seed(seed)
    channels, outputs = task(data)
    model = create_model(candidate.model, channels=channels, num_classes=outputs,
                         **candidate.options)
    saved = save_model(model, path)
    write_card(saved, make_card(format="keras", variant="fp32", input_size=None,
                                channels=channels, num_classes=outputs,
                                recipe={"stage": "untrained", "model": candidate.model,
                                        "options": candidate.options}))


def convert_all(model: Path, out: Path, size: int, files=tuple(FILES), trained: bool = True,
                seed: int = 0, echo=print, data: str = DATA) -> list[Path]:
    """Convert ``model`` to each of ``files`` (names from :data:`FILES`) at ``size``, calibrated
    on ``data``'s calibration images. A file is
    reused only when its card says it was made from this model (not older than it) at this size,
    format, quantization and seed; what was reused is said.

    Parity is checked for trained models (an untrained one's int8 agreement means nothing)."""
    from converters import convert
    from edgeseg.device.card import read_card

    paths, reused = [], []
    for name in files:
        target = out / name
        to, quant = FILES[name]
        card = read_card(target) if target.exists() else {}
        recipe, calibration = card.get("recipe") or {}, card.get("calibration") or {}
        same = bool(card) and card.get("input_size") == [size, size] and \
            recipe.get("to") == to and recipe.get("quant") == quant and \
            calibration.get("seed", seed) == seed and calibration.get("data", data) == data and \
            _same_path((card.get("source") or {}).get("model", ""), model) and \
            target.stat().st_mtime >= Path(model).stat().st_mtime
        if same:
            reused.append(name)
        else:
            convert(model, target, to=to, quant=quant, input_size=size, calib=data,
                    calib_samples=64, verify=trained, verify_samples=16, seed=seed,
                    keep_failed=True)  # a comparison point, failed or not: its card says
        paths.append(target)
    echo(f"  {out.name}: " + ", ".join(f"{p.name} {p.stat().st_size / 1024:.0f} KB" for p in paths)
         + (f" (reused, same model, size, mode and seed: {', '.join(reused)})" if reused else ""))
    return paths


def _same_path(recorded: str, model: Path) -> bool:
    """Whether a card's source path names ``model``, however either was spelled (relative to
    another directory, or absolute)."""
    return bool(recorded) and Path(recorded).resolve() == Path(model).resolve()


def seed_folder(out: Path, seed: int) -> Path:
    """Where one seed's models and files go: ``out/seed<N>``."""
    return Path(out) / f"seed{seed}"


def measure(files: dict[int, list[Path]], *, threads, runs: int, samples: int, rounds: int,
            input_size: int, reference: Path, echo=print, data: str = DATA) -> dict:
    """Time and score the files of every seed; one bench report whose rows are the aggregates.

    ``files`` maps each seed to its files (``.../seed<N>/<label>/<file>``; the first seed holds every
    label, later ones may hold fewer). The first seed's files are timed ``rounds`` times, each time
    in one interleaved run of all of them (a busy moment moves one round, not the comparison);
    every seed's files are scored on the same ``samples`` held-out images. Each row is the first
    seed's, with ``latency_ms.p50`` the median of the rounds' p50 (``latency_ms.rounds``: each
    round's), and ``dice`` the mean over the seeds (``dice_seeds``, ``dice_sd``; None when a seed
    has no Dice for it). ``dice_delta`` is against the reference's mean Dice.
    """
    import numpy as np

    from benchmarks.harness import bench

    seeds = list(files)
    first = seeds[0]
    timed = []
    for number in range(rounds):
        echo(f"timing round {number + 1}/{rounds}: {len(files[first])} files at "
             f"{', '.join(map(str, threads))} thread(s), {runs} runs, round robin"
             + (f"; scoring {samples} held-out images" if number == 0 else ""))
        timed.append(bench(files[first], data=data, threads=threads, runs=runs,
                           samples=samples if number == 0 else 1, image_size=input_size, seed=0,
                           echo=lambda line: None, reference=reference, progress=False))
    scored = {first: timed[0]}
    for seed in seeds[1:]:
        echo(f"scoring seed {seed}'s {len(files[seed])} files on the same {samples} images")
        scored[seed] = bench(files[seed], data=data, threads=(1,), runs=1, warmup=0,
                             samples=samples, image_size=input_size, seed=0,
                             echo=lambda line: None, progress=False)

    def ident(row):
        path = Path(row["path"])
        return path.parent.name, path.name

    dice = {seed: {ident(r): r["dice"] for r in report["results"]} for seed, report in scored.items()}
    report = timed[0]
    for row in report["results"]:
        rounds_p50 = [next(r["latency_ms"]["p50"] for r in t["results"] if r["path"] == row["path"]
                           and r["threads"] == row["threads"]) for t in timed]
        row["latency_ms"]["rounds"] = rounds_p50
        row["latency_ms"]["p50"] = float(np.median(rounds_p50))
        if row["macs"]:
            row["gmacs_per_s"] = row["macs"] / (row["latency_ms"]["p50"] / 1e3) / 1e9
        per_seed = {seed: dice[seed].get(ident(row)) for seed in seeds}
        row["dice_seeds"] = {str(seed): d for seed, d in per_seed.items()}
        known = [d for d in per_seed.values() if d is not None]
        complete = len(known) == len(seeds)
        row["dice"] = float(np.mean(known)) if complete else None
        row["dice_sd"] = float(np.std(known, ddof=1)) if complete and len(known) > 1 else None
    reference_row = next((r for r in report["results"] if r.get("reference")), None)
    for row in report["results"]:
        row["dice_delta"] = row["dice"] - reference_row["dice"] \
            if row["dice"] is not None and reference_row and reference_row["dice"] is not None \
            else None
    report["seeds"], report["rounds"] = seeds, rounds
    report["run"]["seconds"] = round(sum(t["run"]["seconds"] for t in timed) +
                                     sum(s["run"]["seconds"] for seed, s in scored.items()
                                         if seed != first), 1)
    return report


__all__ = ["Candidate", "DATA", "FILES", "TASKS", "best_deployable", "convert_all", "measure",
           "options", "seed_folder", "task", "train"]
