"""The benchmark harness: latency, size, MACs, sparsity and Dice of model files, side by side.

Needs numpy and a runtime only (LiteRT for .tflite, ONNX Runtime for .onnx); the host's
``edgeseg bench`` hands it a loader for Keras models too (``load``: :func:`edgeseg.runtime.load`),
which pulls in TensorFlow when such a model is loaded, and only then. Every (model, thread
count) pair is one row of the bench JSON (``schema: edgeseg.bench/1``, keys as in the design; more
may be added).

Latency is measured round robin: each timed iteration runs every loaded model, in turn, so
whatever else the machine does slows all of them alike and the ratios between rows hold. Each
timed run comes right after an untimed run of the same model: as on a device that runs one model
in a loop, its weights and buffers are in cache, not flushed by the model before it (a 120 MB model
in the round robin otherwise added 30% to a 0.5 MB model's time).

    >>> report = bench(["model_fp32.tflite", "model_int8.tflite"], data="synthetic-nuclei",
    ...                threads=(1, 2), runs=50)  # doctest: +SKIP
"""

from __future__ import annotations

import gzip
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeseg.device import machine, metrics, runtime
from edgeseg.device.benchjson import SCHEMA, app_lines, text_table, validate
from edgeseg.device.card import failed_note, input_fit_of, normalization_of
from edgeseg.device.errors import EdgesegError
from edgeseg.device.log import Progress
from edgeseg.device.preprocess import normalize
from edgeseg.device.scoring import Pairs, check_classes, predictions, score_labels
from edgeseg.device.tiling import fed_channels, pad_to, resized_input, runs_whole


@dataclass
class _Entry:
    path: Path
    variant: str
    model: runtime.EdgeModel
    threads: int | None
    load_ms: float
    times: list = field(default_factory=list)
    first_ms: float | None = None  # the first inference after loading (cold start: load + it)
    app: object = None  # an app_latency.EndToEnd when a frame is timed end to end
    sustained: dict | None = None


def _rss_mb() -> tuple[float | None, float | None]:
    """(current, peak) resident memory of this process in MB, from /proc (Linux, Android)."""
    try:
        with open("/proc/self/status") as handle:
            fields = dict(line.split(":", 1) for line in handle if ":" in line)
        return (int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024)
    except (OSError, KeyError, ValueError):
        return None, None


def _say_other_feeding(models: dict, reference_path: Path, pairs) -> None:
    """One line for each file that runs the images another way than the reference (tiled at its
    fixed input where the reference runs them whole, or the reverse): its Dice change and
    agreement then include that, not its conversion alone."""
    reference = models[reference_path]

    def how(model, image) -> str:
        if input_fit_of(model.card) == "resize":
            return "resized"
        return "whole" if runs_whole(model, image) else "tiled"

    for path, model in models.items():
        if path == reference_path:
            continue
        for image, _ in pairs:
            mine, theirs = how(model, image), how(reference, image)
            if mine != theirs:
                _, height, width, _ = model.input_shape
                takes = f"takes {height}x{width} and " if height is not None else ""
                print(f"note: {path.name} {takes}runs {image.shape[0]}x{image.shape[1]} images "
                      f"(height x width) {mine}, the reference {reference_path.name} {theirs}: "
                      f"its Dice change and agreement include that, not its conversion alone",
                      file=sys.stderr)
                break


def model_variant(model: runtime.EdgeModel) -> str:
    return model.card.get("variant") or model.path.stem


def file_size(path: Path) -> tuple[int, int]:
    """(bytes, gzip -9 bytes) of a model: a file, a folder (SavedModel), or an .onnx with its
    external data files."""
    if path.is_dir():
        data = b"".join(p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file())
    elif path.suffix.lower() == ".onnx":  # with its external data files: they are the weights
        from edgeseg.device.formats.onnx import file_parts

        data = b"".join(p.read_bytes() for p in file_parts(path))
    else:
        data = path.read_bytes()
    return len(data), len(gzip.compress(data, 9))


def bench_images(data, size: int, channels: int, num_classes: int, samples: int, seed: int,
                 layout: str | None):
    """(name, [(image, mask)]): the images :func:`edgeseg.device.data.roles.score_data` scores
    on for a named dataset (held-out built-in images at ``size``; a folder's images at their own
    sizes, at most ``samples`` of them, 0 = all), or those of a dataset already loaded (``edgeseg
    run`` passes the images its plan scores on, named for what they are); images raw (8- or
    16-bit, as decoded): each model normalises them as its card says."""
    if isinstance(data, str):  # images decoded here (Pillow); a loaded dataset needs numpy only
        from edgeseg.device.data.datasets import is_builtin
        from edgeseg.device.data.roles import describe_score, score_data

        builtin = is_builtin(data)
        dataset = score_data(data, size=size, channels=channels,
                             model_classes=max(2, num_classes), layout=layout, count=samples,
                             seed=seed)
        check_classes(num_classes, dataset, "each model")  # what eval refuses, said alike
        count = len(dataset) if builtin or not samples else min(samples, len(dataset))
        name = describe_score(data, count) if builtin else dataset.name
    else:
        dataset = data
        count = min(samples, len(dataset)) if samples else len(dataset)
        name = dataset.name
    return name, [dataset.sample(index) for index in range(count)]


def task(models, image_size: int | None = None) -> tuple[int, int, int]:
    """(image side, channels, classes) of the images to benchmark loaded models on: built-in
    images are made at ``image_size``, else at the models' longest input side (256 for models
    that take any size)."""
    sizes = {max(m.input_shape[1:3]) for m in models if m.input_shape[1] is not None}
    size = image_size or (max(sizes) if sizes else 256)
    channels = {m.input_shape[-1] for m in models}
    classes = {m.num_classes for m in models}
    if len(channels) > 1 or len(classes) > 1:
        raise EdgesegError("the models differ in input channels or classes; bench models of one "
                           "task together")
    return size, channels.pop(), classes.pop()


def bench(models, *, data="synthetic-nuclei", reference=None, threads=(1,), runs: int = 50,
          warmup: int = 5, samples: int = 32, image_size: int | None = None, seed: int = 0,
          layout: str | None = None, overlap: int = 32, progress: bool = True,
          contract: dict | None = None, targets=(), reference_labels=None, load=None,
          frame=None, sustained: tuple[int, float] | None = None, echo=print) -> dict:
    """Benchmark model files side by side; returns the bench JSON (a dict).

    Args:
        models: paths of .tflite / .onnx (and, where TensorFlow is installed, Keras) models.
        data: a built-in dataset (held-out samples), a labelled folder (every image, whole), or
            a dataset already loaded (its images, whole).
        reference: the model whose predictions give ``dice_delta`` and ``agreement``; by default
            the first fp32 one, else the first.
        threads: thread counts to run every model at (Keras uses TensorFlow's own pool).
        runs, warmup: timed and untimed round-robin iterations.
        samples: built-in datasets: how many images; folders: at most this many (0: all).
        image_size: built-in datasets: image side [the models' longest input side, or 256].
        contract: I/O-contract keys for the models edgeseg did not make (no card, or a sidecar
            their user wrote; files converted by edgeseg keep their cards): see
            :func:`edgeseg.device.runtime.load`.
        targets: names of targets that cannot run here (``ethos-u55-128``, ``cortex-m``, ...):
            a row each per .tflite, with ``target`` set (see :mod:`benchmarks.target_rows`).
        reference_labels: ``(name, [class ids per image])`` of a reference that ran elsewhere
            (a Keras model on the host while the files run on a board): it gives
            ``dice_delta`` and ``agreement`` instead of ``reference``.
        load: how a model file is opened, ``load(path, num_threads=, contract=,
            foreign_only=)`` [:func:`edgeseg.device.runtime.load`: .tflite and .onnx].
        frame: ``(height, width)`` of an app's camera frame: each row also times it end to end
            (preprocess, invoke, postprocess: :mod:`benchmarks.app_latency`).
        sustained: ``(queries, seconds)``: each row also runs a single stream of at least both.
    """
    from benchmarks import app_latency

    frame = app_latency.parse_frame(frame)
    if sustained is not None and (sustained[0] < 1 or sustained[1] < 0):
        raise EdgesegError(f"--sustained-queries must be >= 1 and --sustained-seconds >= 0 "
                           f"(got {sustained[0]}, {sustained[1]:g})")
    if runs < 1 or warmup < 0:
        raise EdgesegError(f"--runs must be >= 1 and --warmup >= 0 (got {runs}, {warmup})")
    if not models:
        raise EdgesegError("give at least one model file")
    if any(t < 1 for t in threads):
        raise EdgesegError(f"--threads must be positive (got {', '.join(map(str, threads))})")
    started = time.time()
    if targets:
        from edgeseg.device.targets import parse_targets

        targets = parse_targets(targets)  # an unknown name fails before any work
    paths = [Path(p) for p in models]
    seen: dict = {}
    for path in paths:  # one file given twice would be timed twice as two rows
        key = path.resolve() if path.exists() else path
        if key in seen:
            raise EdgesegError(f"{path}: given twice (also as {seen[key]}); give each model once")
        seen[key] = path
    reference_path = Path(reference) if reference else None
    if reference_path and reference_path not in paths:
        paths.append(reference_path)

    entries: list[_Entry] = []
    first_model: dict[Path, runtime.EdgeModel] = {}
    for path in paths:
        for count in threads:
            t0 = time.perf_counter()
            model = (load or runtime.load)(path, num_threads=count, contract=contract,
                                           foreign_only=True)
            load_ms = (time.perf_counter() - t0) * 1e3
            is_keras = model.format == "keras"
            entries.append(_Entry(path, model_variant(model), model, None if is_keras else count,
                                  load_ms))
            first_model.setdefault(path, model)
            if is_keras:  # one pool per process: thread counts make no difference
                break

    # Files of different models may carry the same variant name ("int8"): rows must stay apart.
    paths_of: dict[tuple, set] = {}
    for entry in entries:
        paths_of.setdefault((entry.variant, entry.model.runtime), set()).add(entry.path)
    for entry in entries:
        if len(paths_of[(entry.variant, entry.model.runtime)]) > 1:
            where = entry.path.resolve()
            entry.variant = f"{entry.variant} ({where.parent.name}/{where.name})"

    size, channels, num_classes = task(first_model.values(), image_size)
    data_name, pairs = bench_images(data, size, channels, num_classes, samples, seed, layout)
    if not pairs:
        raise EdgesegError(f"{data}: no samples to benchmark on")
    if reference_path is None and reference_labels is None:
        reference_path = next((p for p, m in first_model.items() if model_variant(m) == "fp32"),
                              paths[0])

    from edgeseg.device.preprocess import range_note

    # the timed input of each entry: the first image as the model is fed it
    inputs = {}
    for entry in entries:
        _, height, width, _ = entry.model.input_shape
        raw = fed_channels(entry.model, pairs[0][0])
        if input_fit_of(entry.model.card) == "resize":
            image = resized_input(entry.model, raw, size)
        else:
            image = normalize(raw, normalization_of(entry.model.card))
            if height is not None:
                image = _fit(image, height, width)
            else:  # as predict_image runs it: padded to sides its downsampling divides
                image = _fit(image, -(-image.shape[0] // 32) * 32, -(-image.shape[1] // 32) * 32)
        inputs[id(entry)] = image[None]
    # cold start: the first inference after loading (zeros of that shape), before anything else
    # has run the model
    for entry in entries:
        t0 = time.perf_counter()
        entry.model.predict(np.zeros_like(inputs[id(entry)]))
        entry.first_ms = (time.perf_counter() - t0) * 1e3

    said = set()
    for path, model in first_model.items():  # each file as its card says it was trained
        if failed := failed_note(model.card):
            print(f"warning: {path}: {failed}", file=sys.stderr)
        note = range_note((image for image, _ in pairs[:32]), model.card)
        if note and note not in said:
            said.add(note)
            print(f"warning: {data_name}, for {path.name}: {note}", file=sys.stderr)
    echo(f"machine: {machine.line(machine.describe())}")
    echo(f"data: {data_name}, {len(pairs)} images "
         f"({', '.join(sorted({f'{m.shape[0]}x{m.shape[1]}' for _, m in pairs}))})")

    # --- accuracy: every model once (threads do not change what it predicts) -------------------
    labels: dict[Path, list[np.ndarray]] = {}
    bar = Progress(len(first_model) * len(pairs), "predicting", progress)
    truth = [mask for _, mask in pairs]
    for path, model in first_model.items():
        labels[path], _ = predictions(model, Pairs(data_name, pairs), overlap=overlap,
                                     step=bar.step)
    scores = {path: score_labels(labels[path], truth, num_classes) for path in first_model}
    flat_truth = np.concatenate([m.ravel() for m in truth])
    if reference_labels is not None:
        reference_name, given = reference_labels
        reference_flat = np.concatenate([np.asarray(l).ravel() for l in given])
        reference_dice = score_labels(given, truth, num_classes)["dice"]
    else:
        reference_flat = np.concatenate([l.ravel() for l in labels[reference_path]])
        reference_dice = scores[reference_path]["dice"]
        _say_other_feeding(first_model, reference_path, pairs)

    # --- latency: round robin over every (model, threads) ---------------------------------------
    for entry in entries:
        if frame is not None:
            entry.app = app_latency.EndToEnd(  # to the size the model is timed at
                entry.model, app_latency.camera_frame(pairs[0][0], *frame),
                inputs[id(entry)].shape[1:3])
    bar = Progress((warmup + runs) * len(entries), "timing", progress)
    for iteration in range(warmup + runs):
        for entry in entries:
            x = inputs[id(entry)]
            entry.model.predict(x)  # untimed: the model's own weights back in cache (see above)
            t0 = time.perf_counter()
            entry.model.predict(x)
            elapsed = time.perf_counter() - t0
            if iteration >= warmup:
                entry.times.append(elapsed * 1e3)
            if entry.app is not None:  # right after the model's own run: as warm as it
                entry.app.run(timed=iteration >= warmup)
            bar.step()
    if sustained is not None:
        bar = Progress(len(entries), "sustained", progress)
        for entry in entries:
            entry.sustained = app_latency.sustained(entry.model, inputs[id(entry)], *sustained)
            bar.step()
    _, peak = _rss_mb()

    results, costs, kernels = [], {}, {}
    for entry in entries:
        if entry.path not in costs:  # once per file, whatever its thread counts
            kernels[entry.path] = entry.model.kernels()
            run_at = tuple(inputs[id(entry)].shape[1:3])  # MACs at the size timed
            costs[entry.path] = (*entry.model.cost(run_at), *file_size(entry.path))
        macs, params, sparsity, size_bytes, gzip_bytes = costs[entry.path]
        times = np.asarray(entry.times)
        p50 = float(np.percentile(times, 50))
        # the timed runs in consecutive blocks, each block's median: the spread the gate's
        # noise-aware comparison reads (a busy moment moves one block, not all of them)
        blocks = [float(np.median(block)) for block in np.array_split(times, min(3, times.size))]
        s = scores[entry.path]
        flat = np.concatenate([l.ravel() for l in labels[entry.path]])
        results.append({
            "variant": entry.variant, "runtime": entry.model.runtime, "path": str(entry.path),
            "format": entry.model.format, "threads": entry.threads,
            "input_shape": [1, *inputs[id(entry)].shape[1:3], channels],
            "latency_ms": {"p50": p50, "p90": float(np.percentile(times, 90)),
                           "mean": float(times.mean()), "std": float(times.std()),
                           "runs": int(times.size), "blocks": blocks},
            "load_ms": entry.load_ms, "first_inference_ms": entry.first_ms,
            "cold_start_ms": entry.load_ms + entry.first_ms,
            "end_to_end_ms": entry.app.summary() if entry.app is not None else None,
            "sustained": entry.sustained, "macs": macs, "params": params, "size_bytes": size_bytes,
            "gzip_bytes": gzip_bytes, "sparsity": sparsity, "dice": s["dice"],
            "dice_per_class": s["dice_per_class"], "iou": s["iou"],
            "dice_delta": metrics.difference(s["dice"], reference_dice),
            "agreement": metrics.agreement(flat, reference_flat, flat_truth),
            "gmacs_per_s": macs / (p50 / 1e3) / 1e9 if macs and p50 > 0 else None,
            "reference": entry.path == reference_path, "kernels": kernels[entry.path],
        })
    if targets:
        from benchmarks.target_rows import target_rows

        results += target_rows(targets, first_model, pairs, labels, scores, reference_path,
                               overlap, contract, echo)
    report = {
        "schema": SCHEMA, "machine": machine.describe(),
        "dataset": {"name": data_name, "samples": len(pairs),
                    "image_sizes": sorted({f"{m.shape[0]}x{m.shape[1]}" for _, m in pairs})},
        "reference": reference_name if reference_labels is not None else
        next(e.variant for e in entries if e.path == reference_path),
        "run": {"runs": runs, "warmup": warmup, "threads": list(threads),
                "peak_rss_mb": peak, "seconds": round(time.time() - started, 1)},
        "results": results,
    }
    validate(report, "the harness's report")  # what readers (the gate, reports) rely on

    echo(text_table(report))
    for line in app_lines(report):
        echo(line)
    return report


def _fit(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """The top-left ``height`` x ``width`` of an image, padded as a model is fed when it is
    smaller (:func:`edgeseg.device.tiling.pad_to`)."""
    image = pad_to(image, max(height, image.shape[0]), max(width, image.shape[1]))
    return image[:height, :width]


__all__ = ["SCHEMA", "bench", "bench_images", "file_size", "model_variant", "task"]
