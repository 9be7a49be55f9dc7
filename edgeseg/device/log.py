"""Scoped silencing of one known, harmless log message (never a global change of log levels)."""

from __future__ import annotations

import contextlib
import logging


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


_said: set[str] = set()


def warn_once(message: str) -> None:
    """``warning: message`` on stderr, once per process: what edgeseg could not do and went on
    without (a thread setting, a corrupt embedded card, a count it cannot make) is said, not
    swallowed, and not repeated for every file or tile."""
    import sys

    if message not in _said:
        _said.add(message)
        print(f"warning: {message}", file=sys.stderr)
