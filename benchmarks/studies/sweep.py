"""``python -m benchmarks.studies.sweep``: which ``mobile_unet`` should be the default? Latency
against Dice.

Trains each configuration below on the same budget (:mod:`benchmarks.studies.budget`), converts it
to fp32 and int8 .tflite, benchmarks every file in one interleaved run at one thread, and draws p50
latency against Dice with the Pareto front. A configuration's point is its best deployable file: the
faster of fp32 and int8, int8 only when its Dice is within 0.01 of the fp32 file's
(:func:`benchmarks.studies.budget.best_deployable`).

Every configuration is trained once per seed (``--seeds``, default 0,1,2): its Dice is the mean over
the seeds (spread beside it), on ``--samples`` held-out test images; its latency is the median of
``--rounds`` interleaved timing rounds of the first seed's files.

The rule for the default: **the fastest configuration whose mean Dice is within 0.005 of the best
mean Dice of the sweep** (0.005 is the accuracy a user gives up without noticing on this task;
anything faster than that loses visibly, anything slower buys nothing measurable), and with
``--min-dice`` at least that mean Dice: the default also keeps the peers' promise, within 0.005 of
the tutorial U-Net's mean Dice (``python -m benchmarks.studies.peers``).

    python -m benchmarks.studies.sweep --out sweep/            # ~70 min on 2 cores (3 seeds)
    python -m benchmarks.studies.sweep --only concat,add --steps 60 --seeds 0 --rounds 1 \
        --out /tmp/s
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from benchmarks.studies import budget
from benchmarks.studies.budget import (
    DATA,
    Candidate,
    convert_all,
    measure,
    seed_folder,
    train,
)
from edgeseg.device.entry import Command

DICE_TOLERANCE = 0.005  # the rule above

# Options are spelled out in full (not left to the defaults), so the sweep measures the same
# networks whatever the defaults become: "concat" is the U-Net form; the others change one thing.
# Until the first level lost its block, every configuration had one there (stem_blocks=None: as
# many as the other levels) and a bilinear head where not said otherwise.
_OLD = {"stem_blocks": None}
_CONCAT = {"merge": "concat", "head": "bilinear", **_OLD}
_ADD = {"merge": "add", "head": "bilinear", **_OLD}
_SHUFFLE = {"merge": "add", "head": "shuffle"}
CONFIGS = (
    Candidate("concat", "mobile_unet", dict(_CONCAT)),
    Candidate("alpha0.5", "mobile_unet", {**_CONCAT, "alpha": 0.5}),
    Candidate("alpha0.75", "mobile_unet", {**_CONCAT, "alpha": 0.75}),
    Candidate("depth3", "mobile_unet", {**_CONCAT, "depth": 3}),
    Candidate("depth5", "mobile_unet", {**_CONCAT, "depth": 5}),
    Candidate("ir", "mobile_unet", {**_CONCAT, "block": "ir"}),
    Candidate("nearest", "mobile_unet", {**_CONCAT, "upsample": "nearest", "head": "nearest"}),
    Candidate("transpose", "mobile_unet", {**_CONCAT, "upsample": "transpose", "head": None}),
    Candidate("stem1", "mobile_unet", {**_CONCAT, "stem": 1, "head": None}),
    Candidate("add", "mobile_unet", dict(_ADD)),
    Candidate("add-alpha0.75", "mobile_unet", {**_ADD, "alpha": 0.75}),
    Candidate("add-alpha0.5", "mobile_unet", {**_ADD, "alpha": 0.5}),
    Candidate("add-shuffle", "mobile_unet", {**_SHUFFLE, **_OLD}),
    Candidate("add-alpha0.75-shuffle", "mobile_unet", {**_SHUFFLE, **_OLD, "alpha": 0.75}),
    Candidate("add-alpha0.5-shuffle", "mobile_unet", {**_SHUFFLE, **_OLD, "alpha": 0.5}),
    # the first level runs at half the input's resolution, where the time goes to memory traffic
    # (stem, depthwise, resize and add at 128x128 were 2/3 of add-shuffle's profile): narrower...
    Candidate("add-shuffle-stem16", "mobile_unet", {**_SHUFFLE, **_OLD, "stem_filters": 16}),
    Candidate("add-shuffle-stem8", "mobile_unet", {**_SHUFFLE, **_OLD, "stem_filters": 8}),
    # ... or as wide, without its encoder block, its decoder block, or both
    Candidate("add-shuffle-stemblocks0", "mobile_unet", {**_SHUFFLE, "stem_blocks": 0}),
    Candidate("add-shuffle-nofinal", "mobile_unet", {**_SHUFFLE, **_OLD, "final_block": False}),
    Candidate("add-shuffle-stemblocks0-nofinal", "mobile_unet", {
        **_SHUFFLE, "stem_blocks": 0, "final_block": False}),
    Candidate("add-shuffle-stem48-stemblocks0-nofinal", "mobile_unet", {
        **_SHUFFLE, "stem_filters": 48, "stem_blocks": 0, "final_block": False}),
    # the same cuts with the bilinear head (the pixel shuffle's head needs its ICNR start to learn
    # in short runs, which costs it Dice at 300 steps); add-stemblocks0 is the default since
    Candidate("add-stemblocks0", "mobile_unet", {**_ADD, "stem_blocks": 0}),
    Candidate("add-nofinal", "mobile_unet", {**_ADD, "final_block": False}),
    Candidate("add-stemblocks0-nofinal", "mobile_unet", {**_ADD, "stem_blocks": 0,
                                                          "final_block": False}),
)


def choose(points: dict[str, dict], min_dice: float | None = None) -> str | None:
    """The label the rule picks from ``{label: {"p50": ms, "dice": ...}}``; with ``min_dice``, only
    among the points that also reach it (None when none does)."""
    top = max(p["dice"] for p in points.values())
    good = [label for label, p in points.items() if p["dice"] >= top - DICE_TOLERANCE
            and (min_dice is None or p["dice"] >= min_dice)]
    return min(good, key=lambda label: points[label]["p50"]) if good else None


def pareto(points: dict[str, dict]) -> list[str]:
    """Labels no other point beats on both latency (lower) and Dice (higher), fastest first."""
    from edgeseg.report import pareto_front

    labels = list(points)
    return [labels[i] for i in pareto_front([(points[k]["p50"], points[k]["dice"])
                                             for k in labels])]


def run_sweep(out: Path, *, input_size: int = 256, steps: int = 300, runs: int = 30,
              samples: int = 64, only=None, seeds=(0, 1, 2), rounds: int = 3,
              min_dice: float | None = None, data: str = DATA, echo=print) -> dict:
    from edgeseg.device.files import atomic_write_json, atomic_write_text

    configs = [c for c in CONFIGS if not only or c.label in only]
    started = time.time()
    echo(f"sweep: {len(configs)} mobile_unet configurations, {steps} steps of 16 {data} crops "
         f"each, seeds {', '.join(map(str, seeds))}, deployed at {input_size}x{input_size}")
    trained, files = {}, {}
    for seed in seeds:
        for c in configs:
            folder = seed_folder(out, seed) / c.label
            trained.setdefault(c.label, {})[str(seed)] = train(c, folder, steps, seed, echo,
                                                               data=data)
            files.setdefault(seed, []).extend(convert_all(
                folder / "model.keras", folder, input_size, ("fp32.tflite", "int8.tflite"),
                seed=seed, echo=echo, data=data))
    report = measure(files, threads=(1,), runs=runs, samples=samples, rounds=rounds,
                     input_size=input_size, echo=echo, data=data,
                     reference=seed_folder(out, seeds[0]) / configs[0].label / "fp32.tflite")
    by_config: dict[str, list[dict]] = {}
    for row in report["results"]:
        label = Path(row["path"]).parent.name
        row["config"], row["file"] = label, Path(row["path"]).name
        row["variant"] = f"{label} {Path(row['path']).stem}"
        by_config.setdefault(label, []).append(row)
    points = {}
    for c in configs:
        best = budget.best_deployable(by_config[c.label])
        if best is None:  # no fp32 Dice to judge its files by: not a point of the comparison
            echo(f"  {c.label}: no deployable file (no fp32 Dice): left out of the choice")
            continue
        validation = [t["dice"] for t in trained[c.label].values() if t["dice"] is not None]
        points[c.label] = {"options": c.options, "file": Path(best["path"]).name,
                           "p50": best["latency_ms"]["p50"],
                           "p50_rounds": best["latency_ms"]["rounds"], "dice": best["dice"],
                           "dice_sd": best.get("dice_sd"), "dice_seeds": best["dice_seeds"],
                           "macs": best["macs"], "size_bytes": best["size_bytes"],
                           "validation_dice": sum(validation) / len(validation)
                           if validation else None,
                           "train_seconds": sum(t["seconds"] for t in trained[c.label].values())}
    choice = choose(points, min_dice)
    report["sweep"] = {"configs": points, "pareto": pareto(points), "choice": choice,
                       "rule": f"fastest configuration whose mean Dice is within {DICE_TOLERANCE} "
                               f"of the best mean Dice of the sweep" + (
                                   f" and at least {min_dice} (--min-dice)" if min_dice else ""),
                       "min_dice": min_dice, "steps": steps, "task": data,
                       "input_size": input_size, "seeds": list(seeds), "rounds": rounds,
                       "seconds": round(time.time() - started)}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "sweep.json", report)
    table = markdown(report)
    atomic_write_text(out / "sweep.md", table)
    plot(points, report["sweep"]["pareto"], choice, out / "sweep.png", min_dice)
    echo(table)
    echo(f"wrote {out / 'sweep.json'}, {out / 'sweep.md'}, {out / 'sweep.png'}")
    return report


def markdown(report: dict) -> str:
    from edgeseg.device import machine

    sweep = report["sweep"]
    points, front = sweep["configs"], set(sweep["pareto"])
    reference = points.get("concat") or next(iter(points.values()))
    seeds = sweep.get("seeds", [0])
    lines = [f"Machine: {machine.line(report['machine'])}. {sweep['steps']} training steps of "
             f"{sweep.get('task', DATA)} each, "
             f"seeds {', '.join(map(str, seeds))}; p50 at {sweep['input_size']}x"
             f"{sweep['input_size']}, LiteRT, 1 thread: the median of {sweep.get('rounds', 1)} "
             f"interleaved timing rounds (min-max beside it) of the first seed's files; Dice: mean "
             f"+/- standard deviation over the seeds on {report['dataset']['samples']} held-out "
             f"test images.", "",
             "| config | options | deployed | GMACs | p50 ms | x concat | Dice | Pareto |",
             "|---|---|---|---:|---:|---:|---:|:---:|"]
    for label, p in sorted(points.items(), key=lambda item: item[1]["p50"]):
        options = ", ".join(f"{k}={v}" for k, v in p["options"].items())
        ratio = f"{reference['p50'] / p['p50']:.2f}" if reference else "-"
        mark = "**chosen**" if label == sweep["choice"] else ("yes" if label in front else "")
        rounds = p.get("p50_rounds") or [p["p50"]]
        spread = f" ({min(rounds):.2f}-{max(rounds):.2f})" if len(rounds) > 1 else ""
        sd = f" +/- {p['dice_sd']:.4f}" if p.get("dice_sd") is not None else ""
        lines.append(f"| {label} | {options} | {p['file']} | {p['macs'] / 1e9:.3f} | "
                     f"{p['p50']:.2f}{spread} | {ratio} | {p['dice']:.4f}{sd} | {mark} |")
    lines += ["", f"Rule: {sweep['rule']}; chosen: " + (
        f"**{sweep['choice']}**." if sweep["choice"] else "none: no configuration passes.")]
    return "\n".join(lines) + "\n"


def plot(points: dict, front: list[str], choice: str | None, path: Path,
         min_dice: float | None = None) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for label, p in points.items():
        ax.scatter(p["p50"], p["dice"], s=36, color="tab:red" if label == choice else "tab:blue")
    ax.plot([points[k]["p50"] for k in front], [points[k]["dice"] for k in front], "--",
            color="grey", linewidth=1, label="Pareto front")
    top = max(p["dice"] for p in points.values())
    ax.axhline(top - DICE_TOLERANCE, color="tab:red", linewidth=0.8, linestyle=":",
               label=f"best Dice - {DICE_TOLERANCE}")
    if min_dice:
        ax.axhline(min_dice, color="tab:orange", linewidth=0.8, linestyle="--",
                   label=f"--min-dice {min_dice}")
    ax.set_xlabel("p50 latency, ms (LiteRT, 1 thread)")
    ax.set_ylabel("Dice (held-out)")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    ax.margins(0.15)
    fig.tight_layout()
    from edgeseg.report import label_points

    label_points(ax, [(p["p50"], p["dice"]) for p in points.values()], list(points))
    import io

    from edgeseg.device.files import atomic_write_bytes

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


@click.command("sweep", cls=Command, context_settings={"help_option_names": ["-h", "--help"]})
@budget.options
@click.option("--only", help="Comma-separated labels of the configurations to run.")
@click.option("--min-dice", type=click.FloatRange(0, 1), default=None,
              help="Also require at least this mean Dice: the product's promise against the "
                   "tutorial U-Net, its mean Dice in python -m benchmarks.studies.peers minus "
                   "0.005.")
@click.option("--out", type=click.Path(file_okay=False), default="sweep", show_default=True)
def main(data, input_size, steps, runs, samples, seeds, rounds, no_amx, only, min_dice, out):
    """Sweep mobile_unet's options on one training budget; pick the default by latency and Dice."""
    labels = {c.label for c in CONFIGS}
    chosen = [s.strip() for s in only.split(",")] if only else None
    if chosen and set(chosen) - labels:
        raise click.BadParameter(f"unknown {', '.join(sorted(set(chosen) - labels))}; valid: "
                                 f"{', '.join(c.label for c in CONFIGS)}", param_hint="--only")
    if no_amx:
        from edgeseg.device.machine import deny_amx

        deny_amx()  # for the whole process: training does not use AMX in fp32 either
    run_sweep(Path(out), input_size=input_size, steps=steps, runs=runs, samples=samples,
              only=chosen, seeds=seeds, rounds=rounds, min_dice=min_dice, data=data,
              echo=click.echo)


if __name__ == "__main__":
    from edgeseg.device.entry import run

    run(main, "python -m benchmarks.studies.sweep")
