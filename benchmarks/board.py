"""The board side of ``edgeseg bench --on ssh://...``: the harness on files and images copied here.

``benchmarks/remote.py`` copies this file with the device-side sources of edgeseg (the harness,
the runtimes' wrapper, metrics; no TensorFlow, no Pillow, no click) into a temporary folder on the
board, with the model files, their cards, the evaluation images (``data.npz``) and ``job.json``,
and runs, with the board's own Python (numpy and a runtime are all it needs)::

    cd /tmp/edgeseg-bench.XXXXXX && PYTHONPATH=src python3 -m benchmarks.board job.json

The bench JSON is the last line of standard output, after :data:`MARK`; progress and warnings go
to standard error; bad input is ``error: ...`` on standard error and exit status 2. When standard
input closes (the SSH connection dropped, or the host stopped) the process ends at once, so a
board is never left running a benchmark nobody will read.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path

MARK = "edgeseg-bench-json "  # the line that carries the result


class Images:
    """The evaluation images of ``data.npz`` (``image_<i>``, ``mask_<i>``), as the harness reads
    a loaded dataset: ``name``, ``len`` and ``sample(i)``."""

    def __init__(self, name: str, arrays):
        self.name, self._arrays = name, arrays
        self._count = sum(1 for key in arrays.files if key.startswith("image_"))

    def __len__(self) -> int:
        return self._count

    def sample(self, index: int):
        return self._arrays[f"image_{index}"], self._arrays[f"mask_{index}"]


def _end_when_the_host_goes() -> None:
    """Exit as soon as standard input reaches its end: the host closed the connection."""
    def watch():
        try:
            while sys.stdin.buffer.read(4096):
                pass
        except (OSError, ValueError):
            pass
        os._exit(129)  # 128 + SIGHUP: what a hung-up terminal would have sent

    threading.Thread(target=watch, daemon=True).start()


def main(argv: list[str]) -> int:
    root = Path(argv[0]).resolve().parent
    job = json.loads(Path(argv[0]).read_text())
    if job.get("watch_stdin", True):
        _end_when_the_host_goes()

    import numpy as np

    from benchmarks.harness import bench
    from edgeseg.device.errors import EdgesegError

    if job.get("mode") == "outputs":
        return outputs(root, job)
    try:
        with np.load(root / "data.npz") as arrays:
            data = Images(job["dataset"], arrays)
            given = None  # a reference that ran on the host (a Keras model): its predictions
            if job.get("reference_name"):
                given = (job["reference_name"],
                         [arrays[f"reference_{i}"] for i in range(len(data))])
            report = bench([root / m for m in job["models"]], data=data,
                           reference=root / job["reference"] if job.get("reference") else None,
                           reference_labels=given,
                           threads=tuple(job["threads"]), runs=job["runs"], warmup=job["warmup"],
                           samples=0, image_size=job["image_size"], overlap=job["overlap"],
                           progress=job["progress"], contract=job.get("contract") or None,
                           frame=job.get("frame"), sustained=job.get("sustained"),
                           echo=lambda line: None)
    except EdgesegError as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        return 2
    except OSError as error:
        print(f"error: {error.filename or root}: {os.strerror(error.errno or 0).lower()}",
              file=sys.stderr, flush=True)
        return 2
    report["dataset"]["name"] = job["dataset"]
    sys.stdout.write(MARK + json.dumps(report) + "\n")
    sys.stdout.flush()
    return 0


def model_outputs(models, images, overlap: int = 32, contract=None) -> tuple[dict, dict]:
    """Each model's probabilities of each image, fed as its card says (the harness's feeding):
    ({"<model>:<image>": (H, W, K) float32}, {model: {"runtime", "kernels"}}). Shared by the board
    (``mode: outputs``) and the host, so both sides compute the same thing."""
    from edgeseg.device import runtime
    from edgeseg.device.tiling import predict_image

    arrays, about = {}, {}
    for index, path in enumerate(models):
        model = runtime.load(path, num_threads=1, contract=contract, foreign_only=True)
        about[str(index)] = {"runtime": model.runtime, "kernels": model.kernels()}
        for number, image in enumerate(images):
            arrays[f"{index}:{number}"] = predict_image(model, image, overlap).astype("float32")
    return arrays, about


def outputs(root: Path, job: dict) -> int:
    """``mode: outputs``: every model's probabilities of ``data.npz``'s images, into
    ``outputs.npz`` in the folder (the host fetches it); the machine and kernels on stdout."""
    import numpy as np

    from edgeseg.device import machine
    from edgeseg.device.errors import EdgesegError

    try:
        with np.load(root / "data.npz") as arrays:
            images = [arrays[f"image_{i}"] for i in range(len(Images("", arrays)))]
        found, about = model_outputs([root / m for m in job["models"]], images,
                                     job.get("overlap", 32), job.get("contract") or None)
    except EdgesegError as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        return 2
    np.savez(root / "outputs.npz", **{key.replace(":", "_"): value
                                      for key, value in found.items()})
    sys.stdout.write(MARK + json.dumps({"machine": machine.describe(), "models": about}) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    try:
        status = main(sys.argv[1:])
    except BaseException:  # noqa: BLE001 - said, then the same exit as below
        import traceback

        traceback.print_exc()
        status = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)  # not a normal shutdown: the thread that watches standard input is blocked
