"""Crash trials: ``kill -9`` edgeseg commands at random moments, then check that nothing is corrupt
and that a rerun completes.

    python tests/crash_trials.py --trials 25 --work /tmp/crash      # the full set (~15 min)

Each trial starts one of ``train``, ``optimize``, ``convert``, ``bench`` or ``run`` (tiny settings)
in a fresh folder set up by an earlier uninterrupted step, sends SIGKILL after a random delay drawn
from that command's usual duration (narrowed to the real one once a command finishes before its
kill), and then

1. opens every artifact left in the folder with the reader a user would use (Keras models, weight
   files, .tflite/.onnx through edgeseg.runtime, JSON, CSV, PNG, Markdown/HTML): each must load or be
   absent. Hidden temporaries (``.name.*.tmp``, ``*.partial``) are the atomic writers' scratch and
   are counted, not opened;
2. reruns the command the way a user would after a crash (``--resume`` for an interrupted training,
   ``--force`` where a command refuses to overwrite, the same command for ``run``) and requires
   exit 0 and a loadable final artifact.

The test suite runs a few trials (tests/test_crash.py); the note of issue 9 gives this script's
counts.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

TINY = ["--data", "synthetic-nuclei", "--n-train", "64", "--n-val", "16", "--input-size", "32",
        "--batch-size", "8", "-o", "alpha=0.25"]


def edgeseg(*args) -> list[str]:
    return [sys.executable, "-m", "edgeseg", *map(str, args)]


@dataclass
class Outcome:
    command: str
    delay: float
    killed: bool
    exit_code: int | None = None  # of a command that finished before its kill
    artifacts: int = 0
    temporaries: int = 0
    corrupt: list = field(default_factory=list)
    rerun_ok: bool = False
    rerun: str = ""


def setup(work: Path) -> dict:
    """A trained tiny model and its int8 .tflite, made once without interruption."""
    base = work / "base"
    model, tflite = base / "train" / "model.keras", base / "int8.tflite"
    if not model.exists():
        subprocess.run(edgeseg("train", *TINY, "--epochs", "3", "--no-check", "--out",
                               base / "train", "--force"),
                       check=True, capture_output=True)
    if not tflite.exists():
        # a 3-epoch model: its int8 file may miss the parity limits; these trials are about
        # interruptions, so it is kept either way
        subprocess.run(edgeseg("convert", model, "--quant", "int8", "--calib-samples", "8",
                               "--verify-samples", "4", "--keep-failed", "--out", tflite),
                       check=True, capture_output=True)
    return {"model": model, "tflite": tflite}


# command -> (argv for a fresh folder, argv to rerun after the kill, the final artifact, seconds)
def commands(base: dict, out: Path) -> dict:
    return {
        "train": (edgeseg("train", *TINY, "--epochs", "8", "--no-check", "--out", out),
                  None, out / "model.keras", 30.0),
        "optimize": (edgeseg("optimize", base["model"], "--prune", "0.5", "--steps", "40",
                             "--data", "synthetic-nuclei", "--input-size", "32", "--out", out),
                     edgeseg("optimize", base["model"], "--prune", "0.5", "--steps", "40",
                             "--data", "synthetic-nuclei", "--input-size", "32", "--out", out,
                             "--force"), out / "model.keras", 30.0),
        "convert": (edgeseg("convert", base["model"], "--quant", "int8", "--calib-samples", "16",
                            "--keep-failed", "--out", out / "m.tflite"), None, out / "m.tflite",
                    15.0),
        "bench": (edgeseg("bench", base["tflite"], "--runs", "5000", "--samples", "4", "--json",
                          out / "bench.json", "--quiet"), None, out / "bench.json", 6.0),
        "run": (edgeseg("run", "--quick", "--threads", "1", "--out", out), None,
                out / "report.json", 90.0),
    }


def check_artifacts(folder: Path) -> tuple[int, int, list[str]]:
    """(artifacts opened, temporaries seen, [corrupt files with the reason])."""
    from edgeseg import runtime
    from edgeseg.device.errors import EdgesegError
    from edgeseg.keras_files import load_tf_keras as load_model

    opened, temporaries, corrupt = 0, 0, []
    for path in sorted(folder.rglob("*")):
        parts = path.relative_to(folder).parts
        if any(p.startswith(".") or p.endswith(".partial") for p in parts):
            temporaries += path.is_file()
            continue
        if not path.is_file() or any(p in ("logs", "backup") for p in parts):
            continue  # TensorBoard events and BackupAndRestore's checkpoint: read by the resume
        name = path.name
        try:
            if name.endswith(".weights.h5"):
                import h5py

                with h5py.File(path, "r") as handle:
                    list(handle.keys())
            elif path.suffix in (".keras", ".h5"):
                load_model(path)
            elif path.suffix in (".tflite", ".onnx"):
                runtime.load(path)
            elif path.suffix == ".json":
                json.loads(path.read_text())
            elif path.suffix == ".csv":
                rows = list(csv.reader(path.open()))
                if rows and any(len(r) != len(rows[0]) for r in rows):
                    raise ValueError("ragged rows")
            elif path.suffix == ".png":
                from PIL import Image

                with Image.open(path) as image:
                    image.load()
            elif path.suffix in (".md", ".html"):
                if not path.read_text(encoding="utf-8").strip():
                    raise ValueError("empty")
            else:
                continue
            opened += 1
        except (EdgesegError, ValueError, OSError, KeyError) as error:
            corrupt.append(f"{path.relative_to(folder)}: {str(error).splitlines()[0][:120]}")
    return opened, temporaries, corrupt


def trial(command: str, base: dict, out: Path, rng: random.Random, bounds: dict) -> Outcome:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    argv, rerun, final, usual = commands(base, out)[command]
    delay = rng.uniform(0.5, bounds.setdefault(command, usual))
    started = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        process.wait(timeout=delay)
        killed = False  # it finished first: later trials draw from within its real duration
        bounds[command] = 0.95 * (time.perf_counter() - started)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        killed = True
    outcome = Outcome(command, round(delay, 2), killed, None if killed else process.returncode)
    outcome.artifacts, outcome.temporaries, outcome.corrupt = check_artifacts(out)
    again = rerun or argv
    if command == "train":
        backup = out / "backup"
        has_backup = backup.is_dir() and any(backup.iterdir())
        again = argv + (["--resume"] if has_backup else ["--force"])
        outcome.rerun = "resume" if has_backup else "force"
    done = subprocess.run(again, capture_output=True, text=True, timeout=900)
    outcome.rerun_ok = done.returncode == 0 and final.exists()
    if outcome.rerun_ok:
        _, _, broken = check_artifacts(out)
        outcome.corrupt += [f"after rerun: {b}" for b in broken]
    else:
        outcome.corrupt.append(f"rerun failed (exit {done.returncode}): "
                               f"{done.stderr.strip().splitlines()[-1][:200] if done.stderr.strip() else ''}")
    return outcome


def run_trials(work: Path, trials: int, seed: int = 0, commands_=None, echo=print) -> list[Outcome]:
    rng = random.Random(seed)
    work.mkdir(parents=True, exist_ok=True)
    base = setup(work)
    names = commands_ or ["train", "optimize", "convert", "bench", "run"]
    outcomes, bounds = [], {}
    for i in range(trials):
        command = names[i % len(names)]
        t0 = time.time()
        outcome = trial(command, base, work / f"trial{i:02d}-{command}", rng, bounds)
        outcomes.append(outcome)
        echo(f"trial {i + 1:>2}/{trials} {command:<8} kill after {outcome.delay:5.2f} s: "
             f"{'killed' if outcome.killed else f'finished first (exit {outcome.exit_code})'}; "
             f"{outcome.artifacts} artifacts "
             f"open, {outcome.temporaries} temporaries, corrupt {len(outcome.corrupt)}; rerun "
             f"{'ok' if outcome.rerun_ok else 'FAILED'}{' (' + outcome.rerun + ')' if outcome.rerun else ''}"
             f" [{time.time() - t0:.0f} s]")
        for line in outcome.corrupt:
            echo(f"    {line}")
    killed = [o for o in outcomes if o.killed]
    echo(f"{len(outcomes)} trials, {len(killed)} killed mid-run; artifacts opened "
         f"{sum(o.artifacts for o in outcomes)}; corrupt or lost: "
         f"{sum(len(o.corrupt) for o in outcomes)}; reruns completed "
         f"{sum(o.rerun_ok for o in outcomes)}/{len(outcomes)}")
    return outcomes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=25)
    parser.add_argument("--work", type=Path, default=Path("crash-trials"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--commands", help="comma-separated subset of train,optimize,convert,bench,run")
    parser.add_argument("--json", type=Path, help="write the outcomes here")
    args = parser.parse_args()
    outcomes = run_trials(args.work, args.trials, args.seed,
                          args.commands.split(",") if args.commands else None)
    if args.json:
        args.json.write_text(json.dumps([o.__dict__ for o in outcomes], indent=2))
    return 0 if all(not o.corrupt and o.rerun_ok for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
