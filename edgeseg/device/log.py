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


_said: set[str] = set()


def warn_once(message: str) -> None:
    """``warning: message`` on stderr, once per process: what edgeseg could not do and went on
    without (a thread setting, a corrupt embedded card, a count it cannot make) is said, not
    swallowed, and not repeated for every file or tile."""
    import sys

    if message not in _said:
        _said.add(message)
        print(f"warning: {message}", file=sys.stderr)
