"""What differs on ARM: each file's probabilities on a board against this machine's, per image.

    python -m benchmarks.boards.parity model_fp32.tflite model_int8.tflite \\
        --on "$(cat /tmp/board/address)" --ssh-config /tmp/board/ssh_config \\
        --python /home/edgeseg/venv/bin/python --samples 8 --json parity-a72.json

The images are made or read here (the harness's held-out images, :func:`benchmarks.harness.
bench_images`) and sent with the files; the board computes each file's probabilities of each
image, fed as the file's card says (:func:`benchmarks.board.model_outputs`, the same function this
machine runs), and sends them back. Per file: the largest absolute difference of a probability,
the pixels whose label differs (of all), and the kernels that ran on each side as the runtime
reports them (XNNPACK partitions, or LiteRT's builtin kernels). No time is measured: on an
emulated board there is none worth the name.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path


def kernels_text(kernels: dict | None) -> str:
    if not kernels:
        return "unknown"
    if "providers" in kernels:
        return ", ".join(kernels["providers"])
    if kernels.get("delegate"):
        return (f"{kernels['delegate']} ({kernels['partitions']} partition"
                f"{'s' if kernels['partitions'] != 1 else ''}, {kernels['delegated_ops']}/"
                f"{kernels['ops']} ops)")
    return f"builtin ({kernels.get('ops', '?')} ops)"


def parity(models, target, *, ssh_config=None, python: str = "python3", data="synthetic-nuclei",
           samples: int = 8, seed: int = 0, overlap: int = 32, remote_dir: str | None = None,
           echo=print) -> dict:
    """``{"board": machine, "here": machine, "dataset", "rows": [...]}``: one row per file."""
    import numpy as np

    from benchmarks.board import model_outputs
    from benchmarks.harness import bench_images, task
    from benchmarks.remote import (
        Board,
        board_result,
        choose_code,
        cleaned,
        harness_members,
        model_members,
        parse_target,
    )
    from edgeseg.device import machine, runtime
    from edgeseg.device.errors import EdgesegError
    from edgeseg.device.metrics import labels_from_probs

    paths = [Path(p) for p in models]
    for path in paths:
        if not path.is_file() or path.suffix.lower() not in (".tflite", ".onnx"):
            raise EdgesegError(f"{path}: not a .tflite or .onnx file")
    opened = [runtime.load(p, num_threads=1) for p in paths]
    size, channels, num_classes = task(opened)
    data_name, pairs = bench_images(data, size, channels, num_classes, samples, seed, None)
    images = [image for image, _ in pairs]
    here, here_about = model_outputs(paths, images, overlap)

    board = Board(target if not isinstance(target, str) else parse_target(target),
                  ssh_config=ssh_config, python=python, remote_dir=remote_dir)
    needs = ["numpy", *sorted({"onnxruntime" if p.suffix.lower() == ".onnx" else
                               "ai-edge-litert" for p in paths})]
    with cleaned(board):
        board.prepare(needs)
        echo(choose_code(board))
        names, models = model_members(paths)
        members = ([] if board.use_installed else harness_members()) + models
        buffer = io.BytesIO()
        np.savez(buffer, **{f"image_{i}": image for i, image in enumerate(images)})
        job = {"mode": "outputs", "models": [names[p] for p in paths], "overlap": overlap,
               "watch_stdin": True}
        members += [("data.npz", buffer.getvalue()), ("job.json", json.dumps(job).encode())]
        board.upload(members)
        stdout, stderr, code = board.bench(lambda line: None)
        result = board_result(board, stdout, stderr, code, names)
        with np.load(io.BytesIO(board.fetch("outputs.npz"))) as arrays:
            there = {key.replace("_", ":", 1): arrays[key] for key in arrays.files}

    rows = []
    for index, path in enumerate(paths):
        worst, differing, pixels = 0.0, 0, 0
        for number in range(len(images)):
            a, b = here[f"{index}:{number}"], there[f"{index}:{number}"]
            worst = max(worst, float(np.abs(a - b).max()))
            la, lb = labels_from_probs(a[None])[0], labels_from_probs(b[None])[0]
            differing += int((la != lb).sum())
            pixels += la.size
        rows.append({"path": str(path), "runtime": here_about[str(index)]["runtime"],
                     "max_abs_diff": worst, "labels_differing": differing, "pixels": pixels,
                     "kernels_board": result["models"][str(index)]["kernels"],
                     "kernels_here": here_about[str(index)]["kernels"]})
    return {"board": result["machine"], "here": machine.describe(), "target": str(board.target),
            "dataset": {"name": data_name, "samples": len(images),
                        "image_sizes": sorted({f"{i.shape[0]}x{i.shape[1]}" for i in images})},
            "rows": rows}


def markdown(report: dict) -> str:
    from edgeseg.device.machine import line

    lines = [f"Board: {line(report['board'])}.", f"Here: {line(report['here'])}.",
             f"Images: {report['dataset']['samples']} of {report['dataset']['name']} "
             f"({', '.join(report['dataset']['image_sizes'])}).", "",
             "| file | max abs diff of a probability | pixels whose label differs | kernels on "
             "the board | kernels here |", "|---|---:|---:|---|---|"]
    for row in report["rows"]:
        lines.append(f"| {Path(row['path']).name} | {row['max_abs_diff']:.3g} | "
                     f"{row['labels_differing']:,} of {row['pixels']:,} | "
                     f"{kernels_text(row['kernels_board'])} | "
                     f"{kernels_text(row['kernels_here'])} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from edgeseg.device.errors import EdgesegError

    parser = argparse.ArgumentParser(prog="python -m benchmarks.boards.parity",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--on", required=True, help="ssh://[USER@]HOST[:PORT]")
    parser.add_argument("--ssh-config", type=Path)
    parser.add_argument("--python", default="python3", help="the board's Python")
    parser.add_argument("--data", default="synthetic-nuclei")
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--json", type=Path, help="write the report here (refused if it exists)")
    args = parser.parse_args(argv)
    if args.json is not None and args.json.exists():
        print(f"error: --json {args.json}: exists; choose a new file", file=sys.stderr)
        return 2
    try:
        report = parity(args.models, args.on, ssh_config=args.ssh_config, python=args.python,
                        data=args.data, samples=args.samples)
    except EdgesegError as error:
        print(f"error: {error}", file=sys.stderr)
        return getattr(error, "exit_code", 2)
    print(markdown(report))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
