"""``python -m benchmarks.studies.peers``: the default ``mobile_unet`` against what a user would
have built.

Trains ``mobile_unet`` (the default), ``tutorial_unet`` (TensorFlow's tutorial, alpha 1.0),
``xception_unet`` (the keras.io Oxford-Pets model), ``unet`` base 16 and ``mobile_unet-previous``
(the default before a block after the stem was dropped), the field's mobile segmenters
(``lraspp_small``, ``lraspp_large``, ``fast_scnn``, ``deeplabv3plus``: edgeseg/models/field.py)
on the same data and step budget
(:mod:`benchmarks.studies.budget`); builds ``unet`` base 64 (the paper's width) with random weights,
for MACs and latency only; converts each to TFLite fp32/int8 and ONNX fp32/int8; benchmarks every
file in one interleaved run at 1 and 2 threads; measures the roofline of each runtime, data type and
thread count (:mod:`benchmarks.studies.roofline`: one large 1x1 convolution) and the default model's
per-op time in each runtime; and checks the goals below, printing
each ratio. Writes ``peers.json`` (the bench schema plus ``roofline``, ``goals``, ``profile`` and
``peers``) and ``peers.md``.

Every trained model is trained once per seed (``--seeds``, default 0,1,2); a file's Dice is the
mean over the seeds (with the spread), on ``--samples`` held-out test images. Latency is timed on
the first seed's files in ``--rounds`` whole interleaved runs: a row's p50 is the median of the
rounds', and a latency goal holds only if it holds in every round (the worst one is printed).

A model's *best deployable variant* in a runtime is its fastest file at one thread whose mean Dice
is within 0.01 of its own fp32 file's in that runtime.

    python -m benchmarks.studies.peers --out peers/    # ~60 min on 2 cores (3 seeds, 3 rounds)
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from benchmarks.studies import budget
from benchmarks.studies.budget import (
    DATA,
    FILES,
    Candidate,
    convert_all,
    measure,
    seed_folder,
    train,
)
from benchmarks.studies.roofline import CHANNELS, PIXELS
from benchmarks.studies.roofline import key as roofline_key
from edgeseg.device.entry import Command

PEERS = (
    Candidate("mobile_unet", "mobile_unet", {}),
    Candidate("tutorial_unet", "tutorial_unet", {"alpha": 1.0}),
    Candidate("xception_unet", "xception_unet", {}),
    Candidate("unet16", "unet", {"base": 16}),
    Candidate("unet64", "unet", {"base": 64}, trained=False),
    # the default until issue 19 (a block after the stem), beside the new one
    Candidate("mobile_unet-previous", "mobile_unet", {"head": "bilinear", "stem_blocks": None}),
    # the default with the shallow decoders of the field (DeepLabV3+ at 1/4, LR-ASPP at 1/8)
    Candidate("mobile_unet-stride4", "mobile_unet", {"decoder_stride": 4}),
    Candidate("mobile_unet-stride8", "mobile_unet", {"decoder_stride": 8}),
    # the field's mobile segmenters (edgeseg/models/field.py)
    Candidate("lraspp_small", "lraspp_mobilenetv3", {"variant": "small"}),
    Candidate("lraspp_large", "lraspp_mobilenetv3", {"variant": "large"}),
    Candidate("fast_scnn", "fast_scnn", {}),
    Candidate("deeplabv3plus", "deeplabv3plus_mobilenetv2", {}),
)
FIELD = ("lraspp_small", "lraspp_large", "fast_scnn", "deeplabv3plus")
FIELD_SPEEDUP = 1.5  # the default's best deployable file against the fastest field model's
DEFAULT = "mobile_unet"
TARGETS = ("ethos-u55-128", "ethos-u65-256", "cortex-m")  # estimated for each int8.tflite


def _rows(report, model=None, runtime=None, threads=None):
    return [r for r in report["results"]
            if (model is None or r["model"] == model) and (runtime is None or r["runtime"] == runtime)
            and (threads is None or r["threads"] == threads)]


def best_deployable(report: dict, model: str, runtime: str, threads: int = 1) -> dict | None:
    """``model``'s best deployable file in ``runtime`` at ``threads`` (see budget.best_deployable)."""
    return budget.best_deployable(_rows(report, model, runtime, threads))


def _row(report, model, file, threads=1):
    return next((r for r in report["results"] if r["model"] == model and r["file"] == file
                 and r["threads"] == threads), None)


def _rounds(row: dict) -> list[float]:
    """A row's p50 in each timing round (one round: its p50)."""
    return row["latency_ms"].get("rounds") or [row["latency_ms"]["p50"]]


def _ratios(slow: dict, fast: dict) -> list[float]:
    """``slow``'s p50 over ``fast``'s, round by round (both timed in the same rounds)."""
    return [a / b for a, b in zip(_rounds(slow), _rounds(fast))]


def _spread(values: list[float], unit: str = "") -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}{unit}"
    return f"{sorted(values)[len(values) // 2]:.2f}{unit} (rounds {min(values):.2f}-" \
           f"{max(values):.2f})"


def _dice(row: dict) -> str:
    sd = row.get("dice_sd")
    return f"{row['dice']:.4f}" + (f" +/- {sd:.4f}" if sd is not None else "")


def goals(report: dict) -> list[dict]:
    """The issue's goals, each with its measured value, target and verdict. Every goal is listed:
    one whose figures are missing is "not measured" and counts as not met, except a goal against
    peers the run left out (``report["peers"]``, the labels trained: ``--peers``). A latency
    goal's value is its worst timing round, and it holds only if it holds there."""
    out = []
    ran = report.get("peers")

    def chosen(label):  # a report without its peers' labels judges every goal
        return ran is None or label in ran

    def goal(name, value, target, passed, detail):
        out.append({"goal": name, "value": value, "target": target, "passed": passed,
                    "detail": detail})

    def unmeasured(name, target, missing):
        goal(name, None, target, False, f"not measured: {missing}")

    candidates = [c.label for c in PEERS if c.model == DEFAULT and c.label != DEFAULT
                  and _rows(report, c.label)]
    pairs = [(m, rt) for m in (DEFAULT, *candidates) for rt in ("litert", "onnxruntime")]
    for model, runtime in pairs if chosen("tutorial_unet") else []:
        name = f"speedup vs tutorial_unet ({runtime}, 1 thread)"
        if model != DEFAULT:
            name = f"{model}: {name}"
        target = ">= 10x, Dice >= tutorial - 0.005"
        ours, theirs = (best_deployable(report, m, runtime) for m in (model, "tutorial_unet"))
        if not (ours and theirs):
            unmeasured(name, target, f"no deployable {model if not ours else 'tutorial_unet'} "
                                     f"file with a Dice in {runtime}")
            continue
        ratios = _ratios(theirs, ours)
        delta = ours["dice"] - theirs["dice"]
        goal(name, round(min(ratios), 2), target, min(ratios) >= 10 and delta >= -0.005,
             f"{ours['file']} {_spread(_rounds(ours), ' ms')} Dice {_dice(ours)} vs "
             f"{theirs['file']} {_spread(_rounds(theirs), ' ms')} Dice {_dice(theirs)} (Dice "
             f"{delta:+.4f}); ratio {_spread(ratios, 'x')}, worst round taken")
    for model, runtime in pairs if any(chosen(label) for label in FIELD) else []:
        _field_goal(report, runtime, goal, unmeasured, model)
    ours, big, small = (_row(report, m, "fp32.tflite") for m in (DEFAULT, "unet64", "unet16"))
    name, target = "fewer MACs than unet base 64", ">= 20x, Dice within 0.01 of unet base 16"
    measured = ours and big and small and None not in (
        ours.get("macs"), big.get("macs"), ours.get("dice"), small.get("dice"))
    if measured:
        ratio = big["macs"] / ours["macs"]
        delta = ours["dice"] - small["dice"]
        goal(name, round(ratio, 1), target, ratio >= 20 and delta >= -0.01,
             f"{ours['macs'] / 1e9:.3f} vs {big['macs'] / 1e9:.3f} GMACs; Dice {_dice(ours)} vs "
             f"unet16 {_dice(small)} ({delta:+.4f})")
    elif chosen("unet64") and chosen("unet16"):
        unmeasured(name, target, "fp32.tflite rows with MACs and Dice of the default, unet64 "
                                 "and unet16")
    name = "fp32 TFLite share of LiteRT's 1x1-convolution rate (1 thread)"
    ceiling = report.get("roofline", {}).get(roofline_key("litert", "fp32", 1))
    if not ours or ours.get("roofline_fraction") is None or not ceiling:
        unmeasured(name, ">= 0.40", "no roofline share for the default's fp32.tflite")
    else:
        goal(name, round(ours["roofline_fraction"], 3), ">= 0.40",
             ours["roofline_fraction"] >= 0.40,
             f"{ours['conv_macs'] / 1e9:.3f} convolution GMACs / {ours['latency_ms']['p50']:.2f} ms"
             f" = {ours['conv_macs'] / ours['latency_ms']['p50'] / 1e6:.1f} GMAC/s vs "
             f"{ceiling['gmacs_per_s']:.1f} ({ceiling['method']})")
    for runtime, fp32_file, int8_file in (("litert", "fp32.tflite", "int8.tflite"),
                                          ("onnxruntime", "fp32.onnx", "int8.onnx")):
        name = f"int8 / fp32 latency ({runtime}, 1 thread)"
        target = "<= 1.0" if runtime == "litert" else "reported"
        fp32, int8 = _row(report, DEFAULT, fp32_file), _row(report, DEFAULT, int8_file)
        if not (fp32 and int8):
            unmeasured(name, target, f"no {fp32_file} and {int8_file} rows of the default")
            continue
        ratios = _ratios(int8, fp32)
        goal(name, round(max(ratios), 3), target, max(ratios) <= 1.0 if runtime == "litert"
             else None, f"{_spread(_rounds(int8), ' ms')} / {_spread(_rounds(fp32), ' ms')}; "
                        f"ratio {_spread(ratios)}, worst round taken")
    name = "2-thread speedup of the default's best variant"
    best = best_deployable(report, DEFAULT, "litert")
    two = _row(report, DEFAULT, best["file"], threads=2) if best else None
    if not two:
        unmeasured(name, ">= 1.6x", "no 2-thread row of the default's best deployable file")
    else:
        ratios = _ratios(best, two)
        goal(name, round(min(ratios), 2), ">= 1.6x", min(ratios) >= 1.6,
             f"{best['file']}: {_spread(_rounds(best), ' ms')} -> {_spread(_rounds(two), ' ms')}; "
             f"speedup {_spread(ratios, 'x')}, worst round taken")
    return out


def _field_goal(report, runtime, goal, unmeasured, model=DEFAULT):
    """``model``'s (the default's, or another mobile_unet's) best deployable file against the
    fastest of the field models' best deployable files in ``runtime`` (1 thread, worst round), at
    a Dice no lower than that one's minus 0.005."""
    name = f"speedup vs the fastest field model ({runtime}, 1 thread)"
    if model != DEFAULT:
        name = f"{model}: {name}"
    target = f">= {FIELD_SPEEDUP}x, Dice >= theirs - 0.005"
    ours = best_deployable(report, model, runtime)
    field = [(label, best_deployable(report, label, runtime)) for label in FIELD]
    field = [(label, row) for label, row in field if row]
    if not (ours and field):
        unmeasured(name, target, f"no deployable {model if not ours else 'field model'} file "
                                 f"with a Dice in {runtime}")
        return
    label, theirs = min(field, key=lambda item: item[1]["latency_ms"]["p50"])
    ratios = _ratios(theirs, ours)
    delta = ours["dice"] - theirs["dice"]
    better = [f"{other} {row['dice']:.4f}" for other, row in field if row["dice"] > ours["dice"]]
    goal(name, round(min(ratios), 2), target, min(ratios) >= FIELD_SPEEDUP and delta >= -0.005,
         f"{ours['file']} {_spread(_rounds(ours), ' ms')} Dice {_dice(ours)} vs {label} "
         f"{theirs['file']} {_spread(_rounds(theirs), ' ms')} Dice {_dice(theirs)} (Dice "
         f"{delta:+.4f}); ratio {_spread(ratios, 'x')}, worst round taken"
         + (f"; more accurate than {model}: {', '.join(better)}" if better else ""))


def target_estimates(paths: list[Path], targets=TARGETS, echo=print) -> list[dict]:
    """Vela's Ethos-U estimates and TFLite Micro's arena for each int8 .tflite: a row per file and
    target (``model`` its folder's label); a target that refuses a file is a row with
    ``failure``, the tool's one line."""
    from edgeseg.device.errors import EdgesegError
    from edgeseg.device.targets import describe, estimate

    rows = []
    for path in paths:
        if not path.exists():
            continue
        for name in targets:
            try:
                row = estimate(path, [name])[0]
                echo(f"  {path.parent.name}: {describe(row)}")
            except EdgesegError as error:
                row = {"target": name, "path": str(path), "failure": str(error)}
                echo(f"  {path.parent.name}: {name}: {error}")
            row["model"] = path.parent.name
            rows.append(row)
    return rows


def _target_cell(rows: list[dict], model: str, target: str) -> str:
    row = next((r for r in rows if r["model"] == model and r["target"] == target), None)
    if row is None:
        return "-"
    if "latency_ms" not in row:  # the tool refused the file, or is missing: its line is kept
        return "not installed" if "install" in row.get("failure", "") else "refused"
    if target == "cortex-m":
        if not row.get("runs"):
            return "does not run"
        return f"{row['arena_bytes'] / 1024:,.0f} KB" if row.get("arena_bytes") else "-"
    cpu = sum((row.get("cpu_ops") or {}).values())
    p50 = row["latency_ms"].get("p50")
    if p50 is None or p50 != p50:  # NaN: not estimated
        return "-"
    return f"{p50:.2f}" + (f" ({cpu} ops on the CPU)" if cpu else "")


def target_table(report: dict) -> list[str]:
    """The int8 files' Ethos-U estimates and TFLM arenas, a row per model."""
    rows = report.get("targets") or []
    if not rows:
        return []
    lines = ["", "int8.tflite of each trained model (first seed) on targets that cannot run here: "
                 "Vela's estimate (ms; ops Vela leaves to the CPU beside it) and the TFLite Micro "
                 "tensor arena for one inference (activations and TFLM's records on this 64-bit "
                 "host).", "",
             "| model | " + " | ".join(f"{t} (Vela) ms" if t != "cortex-m" else "TFLM arena"
                                       for t in TARGETS) + " |",
             "|---|" + "---:|" * len(TARGETS)]
    for model in dict.fromkeys(r["model"] for r in rows):
        lines.append(f"| {model} | " + " | ".join(_target_cell(rows, model, t) for t in TARGETS)
                     + " |")
    return lines


def markdown(report: dict) -> str:
    from edgeseg.device import machine

    seeds = report.get("seeds", [0])
    tutorial = {rt: best_deployable(report, "tutorial_unet", rt) for rt in ("litert", "onnxruntime")}
    ceilings = "; ".join(f"{name} {r['gmacs_per_s']:.0f}" for name, r in report["roofline"].items())
    lines = [f"Machine: {machine.line(report['machine'])}.",
             f"Rooflines, GMAC/s of one 1x1 convolution {PIXELS}x{PIXELS}x{CHANNELS} -> {CHANNELS} "
             f"in each runtime, data type and thread count (fastest run): {ceilings}. A file's "
             f"'% of roofline' is its convolution and dense MACs (resizing left out) per p50 "
             f"second over the roofline of its runtime, data type and threads; fp32 and int8 "
             f"files only.",
             f"Each model trained {report['peers'][DEFAULT]['steps']} steps of 16 "
             f"{report.get('task', DATA)} crops " + (
                 f"with each of the seeds {', '.join(map(str, seeds))}; Dice is the mean +/- "
                 f"standard deviation over the seeds" if len(seeds) > 1 else
                 f"with seed {seeds[0]} only; Dice") +
             f" on {report['dataset']['samples']} "
             f"held-out test images (unet64: random weights, not scored); p50 at "
             f"{report['results'][0]['input_shape'][1]}x{report['results'][0]['input_shape'][2]}"
             f" on the first seed's files, the median of {report.get('rounds', 1)} interleaved "
             f"timing rounds (min-max of the rounds for 1 thread).", "",
             "| model | file | GMACs | size KB | p50 1 thr ms | p50 2 thr ms | 2-thr speedup | "
             "x faster than tutorial best | % of roofline | Dice |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in _rows(report, threads=1):
        two = _row(report, row["model"], row["file"], threads=2)
        ref = tutorial.get(row["runtime"])
        p50 = row["latency_ms"]["p50"]
        p50_two = two["latency_ms"]["p50"] if two else None
        rounds = _rounds(row)
        cells = [row["model"], row["file"], f"{row['macs'] / 1e9:.3f}",
                 f"{row['size_bytes'] / 1024:.0f}",
                 f"{p50:.2f}" + (f" ({min(rounds):.2f}-{max(rounds):.2f})" if len(rounds) > 1
                                  else ""),
                 f"{p50_two:.2f}" if p50_two else "-", f"{p50 / p50_two:.2f}" if p50_two else "-",
                 f"{ref['latency_ms']['p50'] / p50:.2f}" if ref else "-",
                 f"{row['roofline_fraction']:.0%}" if row.get("roofline_fraction") else "-",
                 _dice(row) if row["dice"] is not None else "-"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += target_table(report)
    lines += ["", "| goal | measured | target | met |", "|---|---:|---|:---:|"]
    for g in report["goals"]:
        met = "**not measured**" if g["value"] is None else \
            {True: "yes", False: "**no**", None: "-"}[g["passed"]]
        lines.append(f"| {g['goal']} | {g['value']} | {g['target']} | {met} |")
    lines += [""] + [f"- {g['goal']}: {g['detail']}" for g in report["goals"]]
    return "\n".join(lines) + "\n"


def run_peers(out: Path, *, input_size: int = 256, steps: int = 300, runs: int = 30,
              samples: int = 64, threads=(1, 2), seeds=(0, 1, 2), rounds: int = 3,
              peers=None, data: str = DATA, echo=print) -> dict:
    """``peers``: the labels of :data:`PEERS` to run (the default always runs); None: all."""
    from benchmarks.studies.roofline import conv_rooflines, row_share
    from edgeseg.device.files import atomic_write_json, atomic_write_text
    from edgeseg.profiling import format_profile, profile_file

    started = time.time()
    chosen = [c for c in PEERS if peers is None or c.label in peers or c.label == DEFAULT]
    echo(f"peers: {', '.join(c.label for c in chosen)}; {steps} steps of 16 {data} crops each, "
         f"seeds {', '.join(map(str, seeds))}, deployed at {input_size}x{input_size}")
    info, files = {}, {}
    for seed in seeds:
        folder = seed_folder(out, seed)
        for c in chosen:
            if not c.trained and seed != seeds[0]:  # random weights: one is enough
                continue
            entry = info.setdefault(c.label, {"model": c.model, "options": c.options,
                                              "trained": c.trained, "steps": steps, "seeds": {}})
            entry["seeds"][str(seed)] = train(c, folder / c.label, steps, seed,
                                               echo, data=data)
            files.setdefault(seed, []).extend(
                convert_all(folder / c.label / "model.keras", folder / c.label, input_size,
                            tuple(FILES), trained=c.trained, seed=seed, echo=echo, data=data))
    echo("measuring the rooflines (one 1x1 convolution per runtime, data type and thread count)")
    roofline = conv_rooflines(threads=threads)
    for name, ceiling in roofline.items():
        echo(f"  {name}: {ceiling['gmacs_per_s']:.1f} GMAC/s")
    first = seed_folder(out, seeds[0])
    report = measure(files, threads=threads, runs=runs, samples=samples, rounds=rounds,
                     input_size=input_size, reference=first / DEFAULT / "fp32.tflite", echo=echo,
                     data=data)
    report["task"] = data
    trained = {c.label: c.trained for c in PEERS}
    for row in report["results"]:
        row["model"] = Path(row["path"]).parent.name
        row["file"] = Path(row["path"]).name
        row["variant"] = f"{row['model']} {Path(row['path']).stem}"
        if not trained[row["model"]]:  # random weights: MACs and latency only
            for key in ("dice", "dice_per_class", "iou", "dice_delta", "agreement", "dice_sd",
                        "dice_seeds"):
                row[key] = None
        # fp32.tflite, int8.onnx, fp16.tflite, ...: the file's stem is what it computes in
        row["conv_macs"], row["roofline_fraction"] = row_share(row, roofline, Path(row["path"]).stem)
    report["roofline"] = roofline
    report["peers"] = info
    echo("profiling the default model, 1 thread")
    report["profile"] = []
    for name in FILES:
        profile = profile_file(first / DEFAULT / name, threads=1, runs=runs)
        report["profile"].append(profile)
        echo(format_profile(profile, top=5))
    report["targets"] = target_estimates(
        [first / c.label / "int8.tflite" for c in chosen if c.trained], echo=echo)
    report["goals"] = goals(report)
    report["run"]["seconds"] = round(time.time() - started)
    atomic_write_json(out / "peers.json", report)
    table = markdown(report)
    atomic_write_text(out / "peers.md", table)
    echo(table)
    echo(f"wrote {out / 'peers.json'} and {out / 'peers.md'}")
    return report


@click.command("peers", cls=Command, context_settings={"help_option_names": ["-h", "--help"]})
@budget.options
@click.option("--out", type=click.Path(file_okay=False), default="peers", show_default=True)
@click.option("--peers", "labels", default=None, metavar="LABEL[,LABEL...]",
              help=f"Only these peers (the default always runs): "
                   f"{', '.join(c.label for c in PEERS[1:])}.  [default: all]")
def main(data, input_size, steps, runs, samples, seeds, rounds, no_amx, out, labels):
    """Train, convert and benchmark mobile_unet against the tutorial, Xception and classic U-Nets
    and the field's mobile segmenters (LR-ASPP, Fast-SCNN, DeepLabV3+)."""
    peers = None
    if labels is not None:
        peers = {label.strip() for label in labels.split(",") if label.strip()}
        unknown = sorted(peers - {c.label for c in PEERS})
        if unknown or not peers:
            raise click.BadParameter(f"unknown peer {', '.join(unknown) or repr(labels)}; valid: "
                                     f"{', '.join(c.label for c in PEERS)}", param_hint="--peers")
    if input_size % 32:
        raise click.BadParameter(f"{input_size} must divide by 32 (tutorial_unet)",
                                 param_hint="--input-size")
    if no_amx:
        from edgeseg.device.machine import deny_amx

        deny_amx()  # for the whole process: training does not use AMX in fp32 either
    run_peers(Path(out), input_size=input_size, steps=steps, runs=runs, samples=samples,
              seeds=seeds, rounds=rounds, peers=peers, data=data, echo=click.echo)


if __name__ == "__main__":
    from edgeseg.device.entry import run

    run(main, "python -m benchmarks.studies.peers")
