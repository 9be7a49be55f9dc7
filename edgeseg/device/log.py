"""What the user sees of logs: scoped silencing of known, harmless messages (never a global
change of log levels), and warnings said once.

Native code (TensorFlow's start-up, its int8 quantizer, LiteRT's delegate) writes chatter
straight to the stderr file descriptor, past Python's logging: :func:`native_chatter_dropped`
drops those known lines around the calls that print them, and writes every other line through.
``EDGESEG_VERBOSE=1`` (``edgeseg --verbose``) keeps everything.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import time

# Lines native code prints that say nothing to a user; anything else passes through.
NATIVE_CHATTER = tuple(re.compile(pattern) for pattern in (
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR",
    r"I\d{4} [\d:. ]+\d+ \S+\.cc:\d+\] ",  # absl INFO lines (oneDNN, CUDA stubs)
    r"W\d{4} [\d:. ]+\d+ \S+\.cc:\d+\] ",  # absl WARNING lines
    r"E\d{4} [\d:. ]+\d+ cuda_\w+\.cc:\d+\] failed call to cuInit",  # no GPU: said by the plan
    r"fully_quantize: \d+, inference_type: ",  # TFLite's int8 quantizer, once per conversion
    r"INFO: Created TensorFlow Lite XNNPACK delegate for CPU\.",  # LiteRT, once per model
))


def verbose() -> bool:
    """Whether every log line is wanted (``EDGESEG_VERBOSE``, set by ``edgeseg --verbose``)."""
    return os.environ.get("EDGESEG_VERBOSE", "") not in ("", "0")


@contextlib.contextmanager
def native_chatter_dropped():
    """While the block runs, what is written to the stderr file descriptor is held; afterwards
    every line but :data:`NATIVE_CHATTER`'s is written out, in order. For short calls into native
    code that print nothing of edgeseg's own (an import, a conversion, an interpreter)."""
    try:
        target = sys.__stderr__.fileno() if sys.__stderr__ else 2
    except (AttributeError, ValueError, OSError):  # no real stderr (an embedding host)
        target = None
    if verbose() or target is None:
        yield
        return
    import tempfile

    sys.stderr.flush()
    saved = os.dup(target)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), target)
        try:
            yield
        finally:
            try:
                sys.stderr.flush()
            except (OSError, ValueError):
                pass
            os.dup2(saved, target)
            os.close(saved)
            held.seek(0)
            kept = [line for line in held.read().decode(errors="replace").splitlines(True)
                    if not any(pattern.match(line) for pattern in NATIVE_CHATTER)]
            if kept:
                os.write(target, "".join(kept).encode())


@contextlib.contextmanager
def dropping(logger_name: str, fragment: str):
    """Drop records of ``logger_name`` whose message contains ``fragment`` while the block runs."""
    logger = logging.getLogger(logger_name)

    def keep(record: logging.LogRecord) -> bool:
        return fragment not in record.getMessage()

    logger.addFilter(keep)
    try:
        yield
    finally:
        logger.removeFilter(keep)


def progress(message: str) -> None:
    """What a long step is doing now, one line on stderr, at a terminal only (a log or a pipe
    gets the results, not the running commentary)."""
    stream = sys.stderr
    if getattr(stream, "isatty", lambda: False)():
        print(f"... {message}", file=stream, flush=True)


class Progress:
    """A one-line progress bar on a terminal with the time left (estimated from the steps
    done), a few plain lines otherwise (``enabled=False``: nothing)."""

    def __init__(self, total: int, label: str, enabled: bool = True):
        self.total, self.label, self.done = max(1, total), label, 0
        self.enabled, self.tty = enabled, sys.stderr.isatty()
        self._next_note, self._started = 0.25, time.perf_counter()

    def left(self) -> str:
        """``, ~12 s left`` once a step is done (nothing before, or at the end)."""
        if not self.done or self.done >= self.total:
            return ""
        seconds = (time.perf_counter() - self._started) / self.done * (self.total - self.done)
        return f", ~{seconds:.0f} s left" if seconds < 90 else f", ~{seconds / 60:.0f} min left"

    def step(self, n: int = 1) -> None:
        if not self.enabled:
            return
        self.done += n
        share = self.done / self.total
        if self.tty:
            bar = "#" * int(30 * share)
            sys.stderr.write(f"\r{self.label} [{bar:<30}] {self.done}/{self.total}"
                             f"{self.left():<16}")
            if self.done >= self.total:
                sys.stderr.write("\n")
            sys.stderr.flush()
        elif share >= self._next_note:
            print(f"{self.label}: {share:.0%}{self.left()}", file=sys.stderr, flush=True)
            self._next_note += 0.25

    def close(self) -> None:
        """End the bar's line where the work stopped before its total (a search that is done)."""
        if self.enabled and self.tty and 0 < self.done < self.total:
            sys.stderr.write("\n")
            sys.stderr.flush()


_said: set[str] = set()


def warn_once(message: str) -> None:
    """``warning: message`` on stderr, once per process: what edgeseg could not do and went on
    without (a thread setting, a corrupt embedded card, a count it cannot make) is said, not
    swallowed, and not repeated for every file or tile."""
    import sys

    if message not in _said:
        _said.add(message)
        print(f"warning: {message}", file=sys.stderr)
