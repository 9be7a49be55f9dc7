"""The errors edgeseg raises for bad input: the CLI prints their message as one line and exits 2."""

from __future__ import annotations


class EdgesegError(Exception):
    """Bad input from the user: a file, a folder or an option. The message names it and what is wrong."""

    exit_code = 2


class ConfigError(EdgesegError, ValueError):
    """An option or a combination of options that cannot work (unknown model, bad input size, ...)."""


__all__ = ["EdgesegError", "ConfigError"]
