"""``python -m benchmarks.studies.ram_fit``: which ``mobile_unet`` fits a microcontroller's RAM?
Arena, then Dice.

For each width multiplier ``alpha`` the search finds the largest input size whose int8 .tflite
runs in TensorFlow Lite Micro within the RAM budget: the tensor arena TFLM reports (the model
itself stays in flash; flash is the file's size). The arena depends on the architecture and the
input size, not on the weights, so the search converts untrained models (calibrated on 8 images,
no parity check) and only the chosen configuration is trained. The arena grows with the input
size at a fixed alpha, so each alpha is a binary search over :data:`SIZES`.

The choice for a budget: of the configurations on that frontier, the one with the most MACs
(the most computation the budget allows). It is trained briefly (:mod:`benchmarks.studies.budget`:
``--steps`` steps of 16 crops of 128x128), converted to int8 at its size with the parity check,
and benchmarked on held-out built-in test images with the Cortex-M target, so its Dice is the one
of the file the microcontroller runs, measured in TFLite Micro and in LiteRT.

    python -m benchmarks.studies.ram_fit --ram 512KB --ram 1MB --out fit/        # ~8 min on 2 cores
    python -m benchmarks.studies.ram_fit --ram 256KB --steps 100 --out /tmp/fit
"""

from __future__ import annotations

from pathlib import Path

import click

from benchmarks.studies import budget
from benchmarks.studies.budget import DATA, Candidate
from edgeseg.device.entry import Command

SIZES = (64, 96, 128, 160, 192, 224, 256)  # multiples of 16: the default depth 4 halves 4 times
ALPHAS = (1.0, 0.75, 0.5, 0.25)


def measure(alpha: float, size: int, out: Path, echo=print) -> dict:
    """Arena, flash and MACs of an untrained ``mobile_unet(alpha)`` as int8 at ``size``."""
    from converters import convert
    from edgeseg.device.flops import tflite_cost
    from edgeseg.device.targets.tflm import estimate

    folder = out / "search" / f"alpha{alpha}"
    model = folder / "model.keras"
    if not model.exists():
        budget.untrained(Candidate(f"alpha{alpha}", "mobile_unet", {"alpha": alpha}), model, 0)
    path = folder / f"int8_{size}.tflite"
    if not path.exists():
        convert(model, path, to="tflite", quant="int8", input_size=size, calib=DATA,
                calib_samples=8, verify=False)
    row = estimate(path)
    point = {"alpha": alpha, "size": size, "arena_bytes": row["arena_bytes"],
             "flash_bytes": row["flash_bytes"], "runs": row["runs"],
             "macs": tflite_cost(path).macs}
    echo(f"  alpha {alpha:<4} {size:>3}x{size:<3}: arena {point['arena_bytes'] / 1024:8,.1f} KB, "
         f"flash {point['flash_bytes'] / 1024:6,.1f} KB, {point['macs'] / 1e6:6.1f} MMACs")
    return point


def search(budgets: list[int], out: Path, alphas=ALPHAS, sizes=SIZES, echo=print) -> dict:
    """{budget: {"frontier": [largest fitting point per alpha], "choice": point or None}} and
    every point measured."""
    cache: dict[tuple, dict] = {}

    def point(alpha, size):
        if (alpha, size) not in cache:
            cache[(alpha, size)] = measure(alpha, size, out, echo)
        return cache[(alpha, size)]

    def fits(p, ram):
        return p["runs"] and p["arena_bytes"] is not None and p["arena_bytes"] <= ram

    results = {}
    for ram in budgets:
        frontier = []
        for alpha in alphas:
            low, high, best = 0, len(sizes) - 1, None  # the arena grows with the size
            while low <= high:
                middle = (low + high) // 2
                if fits(point(alpha, sizes[middle]), ram):
                    best, low = point(alpha, sizes[middle]), middle + 1
                else:
                    high = middle - 1
            if best:
                frontier.append(best)
        choice = max(frontier, key=lambda p: (p["macs"], p["size"]), default=None)
        results[ram] = {"frontier": frontier, "choice": choice}
    return {"budgets": results, "measured": sorted(cache.values(),
                                                   key=lambda p: (-p["alpha"], p["size"]))}


def train_choice(choice: dict, out: Path, steps: int, samples: int, echo=print) -> dict:
    """Train the chosen configuration, convert it to int8 at its size, bench it with the
    Cortex-M target; the bench JSON."""
    from benchmarks.harness import bench

    label = f"alpha{choice['alpha']}_{choice['size']}"
    folder = out / "trained" / label
    info = budget.train(Candidate(label, "mobile_unet", {"alpha": choice["alpha"]}), folder,
                        steps, echo=echo)
    [path] = budget.convert_all(folder / "model.keras", folder, choice["size"],
                                files=("int8.tflite",), echo=echo)
    report = bench([str(path)], data=DATA, samples=samples, image_size=choice["size"], runs=20,
                   progress=False, targets=["cortex-m"], echo=echo)
    report["training"] = info
    return report


def _kb(text: str) -> int:
    from edgeseg.gate import parse_bytes

    return parse_bytes(text, "--ram")


@click.command("ram_fit", cls=Command, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--ram", "rams", multiple=True, default=("512KB",), show_default=True,
              metavar="SIZE", help="RAM budgets for the tensor arena (repeatable): 512KB, 1MB.")
@click.option("--steps", type=click.IntRange(min=1), default=300, show_default=True,
              help="Training steps (batches of 16) for each budget's chosen configuration.")
@click.option("--samples", type=click.IntRange(min=1), default=32, show_default=True,
              help="Held-out test images to score the chosen configurations on.")
@click.option("--no-train", is_flag=True, help="Search only (no training, no Dice).")
@click.option("--out", type=click.Path(file_okay=False), required=True,
              help="Folder for the models, fit.json and fit.md.")
def main(rams, steps, samples, no_train, out):
    """The largest mobile_unet input size per width multiplier whose int8 file runs in TFLite
    Micro within each RAM budget, and the Dice of the chosen one after a short training."""
    from edgeseg.device import machine
    from edgeseg.device.files import atomic_write_json, atomic_write_text

    out = Path(out)
    budgets = sorted({_kb(r) for r in rams})
    echo = click.echo
    echo(f"machine: {machine.line(machine.describe())}")
    echo("search (untrained models, int8, TFLite Micro's arena):")
    found = search(budgets, out, echo=echo)
    lines = ["| RAM | alpha | input | arena KB | flash KB | MMACs | chosen | Dice (TFLM) | "
             "Dice (LiteRT) | TFLM = LiteRT |", "|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|"]
    for ram, result in found["budgets"].items():
        choice = result["choice"]
        if choice and not no_train:
            echo(f"{ram / 1024:,.0f} KB: chosen alpha {choice['alpha']} at {choice['size']}; "
                 f"training {steps} steps")
            report = train_choice(choice, out, steps, samples, echo)
            host = next(r for r in report["results"] if not r.get("target"))
            micro = next(r for r in report["results"] if r.get("target"))
            result["bench"] = report
            result["dice"] = {"tflm": micro["dice"], "litert": host["dice"],
                              "agreement": micro.get("agreement_litert"),
                              "arena_bytes": micro["arena_bytes"], "samples": len(
                                  report["results"]) and report["dataset"]["samples"]}
        for p in result["frontier"]:
            chosen = p is choice
            dice = result.get("dice") if chosen else None
            lines.append(
                f"| {ram / 1024:,.0f} KB | {p['alpha']} | {p['size']}x{p['size']} | "
                f"{p['arena_bytes'] / 1024:,.1f} | {p['flash_bytes'] / 1024:,.1f} | "
                f"{p['macs'] / 1e6:,.1f} | {'yes' if chosen else ''} | "
                + (f"{dice['tflm']:.4f} | {dice['litert']:.4f} | {dice['agreement']:.2%} |"
                   if dice else " | | |"))
        if not result["frontier"]:
            lines.append(f"| {ram / 1024:,.0f} KB | nothing fits | | | | | | | | |")
    table = "\n".join(lines)
    echo(table)
    atomic_write_json(out / "fit.json", {"machine": machine.describe(), "steps": steps,
                                         **{k: v for k, v in found.items()},
                                         "budgets": {str(k): v for k, v in
                                                     found["budgets"].items()}})
    atomic_write_text(out / "fit.md", f"Machine: {machine.line(machine.describe())}\n\n{table}\n")
    echo(f"wrote {out / 'fit.json'} and {out / 'fit.md'}")


if __name__ == "__main__":
    from edgeseg.device.entry import run

    run(main, "python -m benchmarks.studies.ram_fit")
