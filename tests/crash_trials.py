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
        "qat": (edgeseg("optimize", base["model"], "--qat", "--steps", "20", "--data",
                        "synthetic-nuclei", "--input-size", "32", "--out", out),
                edgeseg("optimize", base["model"], "--qat", "--steps", "20", "--data",
                        "synthetic-nuclei", "--input-size", "32", "--out", out, "--force"),
                out / "model.h5", 30.0),
        "convert": (edgeseg("convert", base["model"], "--quant", "int8", "--calib-samples", "16",
                            "--keep-failed", "--out", out / "m.tflite"), None, out / "m.tflite",
                    15.0),
        "bench": (edgeseg("bench", base["tflite"], "--runs", "5000", "--samples", "4", "--json",
                          out / "bench.json", "--quiet"), None, out / "bench.json", 6.0),
        "run": (edgeseg("run", "--quick", "--threads", "1", "--out", out), None,
                out / "report.json", 90.0),
    }


MANIFEST = ".edgeseg-manifest.json"  # what a command wrote: an artifact, though hidden


def name_is_scratch(parts) -> bool:
    return any((p.startswith(".") and p != MANIFEST) or p.endswith(".partial") for p in parts)


def check_artifacts(folder: Path) -> tuple[int, int, list[str]]:
    """(artifacts opened, temporaries seen, [corrupt files with the reason])."""
    from edgeseg import runtime
    from edgeseg.device.errors import EdgesegError
    from edgeseg.keras_files import load_tf_keras as load_model

    opened, temporaries, corrupt = 0, 0, []
    for path in sorted(folder.rglob("*")):
        parts = path.relative_to(folder).parts
        if name_is_scratch(parts):
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


@dataclass
class DiskOutcome:
    command: str
    limit: int  # bytes any one file may reach (RLIMIT_FSIZE: writing past it fails with EFBIG)
    exit_code: int
    last_line: str
    traceback: bool
    artifacts: int = 0
    temporaries: int = 0
    corrupt: list = field(default_factory=list)
    rerun_ok: bool = False


def _limited(limit: int):
    def preexec():
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return preexec


def limits_for(sizes: list[int], points: int) -> list[int]:
    """Limits just under the sizes of ``points`` of the files a command writes (the largest, the
    smallest and evenly between): each fails the command at another of its writes."""
    sizes = sorted({s for s in sizes if s > 1})
    if not sizes:
        return []
    picks = {sizes[round(i * (len(sizes) - 1) / max(1, points - 1))] for i in range(points)}
    return sorted(size - 1 for size in picks)


def full_disk_trial(command: str, base: dict, out: Path, limit: int) -> DiskOutcome:
    """Run ``command`` where no file may grow past ``limit`` bytes (a full disk, as a writer sees
    it), then check: one line and exit 1 or 2 (no traceback, no crash), every artifact left
    loads, no temporary is left, and the command run again without the limit completes."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    argv, rerun, final, _ = commands(base, out)[command]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=900,
                          preexec_fn=_limited(limit))
    lines = done.stderr.strip().splitlines() or [""]
    outcome = DiskOutcome(command, limit, done.returncode, lines[-1][:200],
                          "Traceback" in done.stderr or done.returncode < 0
                          or done.returncode >= 128)
    outcome.artifacts, outcome.temporaries, outcome.corrupt = check_artifacts(out)
    again = rerun or argv
    if command == "train":
        backup = out / "backup"
        again = argv + (["--resume"] if backup.is_dir() and any(backup.iterdir()) else ["--force"])
    elif command == "run" and done.returncode != 0:
        again = argv  # run carries on where it stopped
    redo = subprocess.run(again, capture_output=True, text=True, timeout=900)
    outcome.rerun_ok = redo.returncode == 0 and final.exists()
    if not outcome.rerun_ok:
        outcome.corrupt.append(f"rerun failed (exit {redo.returncode}): "
                               f"{(redo.stderr.strip().splitlines() or [''])[-1][:200]}")
    return outcome


def written_sizes(base: dict, command: str, work: Path) -> list[int]:
    """The sizes of the files ``command`` writes when nothing stops it (one run)."""
    out = work / f"sizes-{command}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    argv, _, _, _ = commands(base, out)[command]
    subprocess.run(argv, capture_output=True, timeout=900, check=True)
    return [p.stat().st_size for p in out.rglob("*") if p.is_file()]


def run_full_disk_trials(work: Path, points: int = 3, commands_=None,
                         echo=print) -> list[DiskOutcome]:
    work.mkdir(parents=True, exist_ok=True)
    base = setup(work)
    outcomes = []
    for command in commands_ or ["train", "optimize", "qat", "convert", "run"]:
        for limit in limits_for(written_sizes(base, command, work), points):
            t0 = time.time()
            outcome = full_disk_trial(command, base, work / f"disk-{command}-{limit}", limit)
            outcomes.append(outcome)
            echo(f"full disk: {command:<8} files up to {limit:>9,} bytes: exit "
                 f"{outcome.exit_code}{' TRACEBACK/CRASH' if outcome.traceback else ''}; "
                 f"{outcome.artifacts} artifacts open, {outcome.temporaries} temporaries, "
                 f"corrupt {len(outcome.corrupt)}; rerun {'ok' if outcome.rerun_ok else 'FAILED'}"
                 f" [{time.time() - t0:.0f} s]\n    {outcome.last_line}")
            for line in outcome.corrupt:
                echo(f"    {line}")
    echo(f"{len(outcomes)} full-disk trials: {sum(o.exit_code in (1, 2) for o in outcomes)} "
         f"failed in one line; tracebacks or crashes {sum(o.traceback for o in outcomes)}; "
         f"temporaries left {sum(o.temporaries for o in outcomes)}; corrupt or lost "
         f"{sum(len(o.corrupt) for o in outcomes)}; reruns completed "
         f"{sum(o.rerun_ok for o in outcomes)}/{len(outcomes)}")
    return outcomes


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
    parser.add_argument("--commands", help="comma-separated subset of train,optimize,qat,convert,bench,run")
    parser.add_argument("--full-disk", type=int, metavar="POINTS", default=0,
                        help="instead: full-disk trials, failing each command at POINTS writes")
    parser.add_argument("--json", type=Path, help="write the outcomes here")
    args = parser.parse_args()
    chosen = args.commands.split(",") if args.commands else None
    if args.full_disk:
        outcomes = run_full_disk_trials(args.work, args.full_disk, chosen)
        good = all(o.exit_code in (1, 2) and not o.traceback and not o.temporaries
                   and not o.corrupt and o.rerun_ok for o in outcomes)
    else:
        outcomes = run_trials(args.work, args.trials, args.seed, chosen)
        good = all(not o.corrupt and o.rerun_ok for o in outcomes)
    if args.json:
        args.json.write_text(json.dumps([o.__dict__ for o in outcomes], indent=2))
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
