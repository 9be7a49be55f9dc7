"""The latency an app sees, beside the model's: a camera frame taken to a mask (end to end), a
long single stream (sustained), and the first inference after loading (cold start).

Numpy and the runtime only, like the rest of the harness, so a board measures them too.

- **End to end** (``frame``): a uint8 frame of the app's resolution (say 640x480 for a 256x256
  model) is resized whole to the model's input and normalised as its card says (preprocess), run
  (invoke: the runtime and the card's output conversion), and its class ids resized back to the
  frame, nearest (postprocess). Each stage is timed on its own and the three together.
- **Sustained** (``queries``, ``seconds``): one model, one query after another with nothing
  between them, MLPerf Mobile's single stream: until both at least ``queries`` have run and
  ``seconds`` have passed. p50/p90/p99 over all of them, and the drift of the last tenth's median
  from the first tenth's (a board that throttles when it warms up shows it there).
"""

from __future__ import annotations

import time

import numpy as np

from edgeseg.device.card import normalization_of
from edgeseg.device.errors import EdgesegError
from edgeseg.device.metrics import labels_from_probs
from edgeseg.device.preprocess import normalize, resize, type_max
from edgeseg.device.tiling import fed_channels


def parse_frame(text) -> tuple[int, int] | None:
    """``--frame``: HxW (height first, as every size edgeseg prints) or N, or None."""
    if text is None or isinstance(text, tuple):
        return text
    parts = str(text).lower().split("x")
    try:
        sizes = [int(p) for p in parts]
    except ValueError:
        sizes = []
    if len(sizes) == 1:
        sizes *= 2
    if len(sizes) != 2 or min(sizes) < 8:
        raise EdgesegError(f"--frame {text}: give the app's frame as HxW (e.g. 480x640) or N, "
                           f"each at least 8")
    return sizes[0], sizes[1]


def camera_frame(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """A camera-like frame (uint8, ``height`` x ``width``) made of a benchmark image: its pixels
    scaled to 0-255 and resized."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        scale = 255.0 / type_max(image)
        image = np.clip(np.round(image.astype(np.float32) * scale), 0, 255).astype(np.uint8)
    return resize(image, height, width)


class EndToEnd:
    """A frame through ``model`` as an app runs it, stage by stage (see the module's text);
    ``input_hw``: the (height, width) it is resized to, the model's own for a fixed-size one."""

    def __init__(self, model, frame: np.ndarray, input_hw):
        _, height, width, _ = model.input_shape
        self.model, self.frame = model, fed_channels(model, frame)
        self.input_hw = (height or int(input_hw[0]), width or int(input_hw[1]))
        self.norm = normalization_of(model.card)
        self.stages: dict[str, list[float]] = {"preprocess": [], "invoke": [], "postprocess": [],
                                               "total": []}

    def run(self, timed: bool = True) -> np.ndarray:
        """The frame's mask (class ids at the frame's size); the stages' times kept if ``timed``."""
        t0 = time.perf_counter()
        x = normalize(resize(self.frame, *self.input_hw), self.norm)[None]
        t1 = time.perf_counter()
        probs = self.model.predict(x)
        t2 = time.perf_counter()
        mask = resize(labels_from_probs(probs)[0][..., None], *self.frame.shape[:2], nearest=True)
        t3 = time.perf_counter()
        if timed:
            for name, ms in zip(self.stages, (t1 - t0, t2 - t1, t3 - t2, t3 - t0)):
                self.stages[name].append(ms * 1e3)
        return mask[..., 0]

    def summary(self) -> dict:
        total = np.asarray(self.stages["total"])
        return {"frame": [int(s) for s in self.frame.shape[:2]],
                "input": [int(s) for s in self.input_hw], "runs": int(total.size),
                "p50": float(np.percentile(total, 50)), "p90": float(np.percentile(total, 90)),
                **{f"{name}_p50": float(np.percentile(self.stages[name], 50))
                   for name in ("preprocess", "invoke", "postprocess")}}


def sustained(model, x: np.ndarray, queries: int, seconds: float) -> dict:
    """``model`` run on ``x`` one query after another until at least ``queries`` have run and at
    least ``seconds`` have passed (both limits); its latency percentiles and drift."""
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < queries or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        model.predict(x)
        times.append((time.perf_counter() - t0) * 1e3)
    elapsed = time.perf_counter() - start
    ms = np.asarray(times)
    tenth = max(1, ms.size // 10)
    first, last = float(np.median(ms[:tenth])), float(np.median(ms[-tenth:]))
    return {"queries": int(ms.size), "seconds": round(elapsed, 3),
            "min_queries": int(queries), "min_seconds": float(seconds),
            "p50": float(np.percentile(ms, 50)), "p90": float(np.percentile(ms, 90)),
            "p99": float(np.percentile(ms, 99)), "first_tenth_p50": first,
            "last_tenth_p50": last, "drift": last / first - 1 if first > 0 else None}


__all__ = ["EndToEnd", "camera_frame", "parse_frame", "sustained"]
