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
