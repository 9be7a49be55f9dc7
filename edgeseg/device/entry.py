"""The one entry wrapper of every command line (``edgeseg``, ``python -m benchmarks``, the studies):
bad input is one line and exit 2, never a traceback; Ctrl-C or SIGTERM is one line and
128 + the signal (130, 143), whatever was running when it came.

    if __name__ == "__main__":
        run(main, "python -m benchmarks.studies.peers")
"""

from __future__ import annotations

import errno
import os
import signal
import sys

import click

from edgeseg.device.errors import EdgesegError

# errors of the disk, not of the program: one line, not a traceback
DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR,
               errno.EISDIR, errno.EFBIG}


class UserError(click.ClickException):
    """Bad input: printed as one ``Error: ...`` line, exit status 2 (or the error's own: 1 for a
    result that failed its check, such as a model that learned nothing)."""

    exit_code = 2

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code


def user_error(error: BaseException) -> UserError | None:
    """The one line an exception stands for, or None for a bug (which keeps its traceback):
    an :class:`EdgesegError` (its own exit status), or a disk's refusal (a full disk, a
    read-only file system, permissions)."""
    if isinstance(error, EdgesegError):
        return UserError(str(error), getattr(error, "exit_code", 2))
    if isinstance(error, OSError) and error.errno in DISK_ERRORS:
        where = error.filename or "an output file"
        return UserError(f"{where}: {os.strerror(error.errno).lower()} (nothing half-written "
                         f"was left)")
    native = _native_disk_error(error)
    if native is not None:
        return UserError(native)
    return None


# what a full disk looks like in a native library's message (TensorFlow's file writers), and
# what to do about it
_FULL = {os.strerror(errno.ENOSPC): "free some space and run the command again",
         os.strerror(errno.EDQUOT): "free some space and run the command again",
         os.strerror(errno.EFBIG): "the shell's file size limit (ulimit -f) stops it: raise it "
                                   "and run the command again"}


def _native_disk_error(error: BaseException) -> str | None:
    """The one line for a native library's error that is a full disk (TensorFlow raises its own
    error types, naming the file in the message: ``Failed to write to logs/x; File too large``)."""
    if not type(error).__module__.startswith(("tensorflow", "tf_keras", "h5py")):
        return None
    message = " ".join(str(error).split())
    reason = next((r for r in _FULL if r in message), None)
    if reason is None:
        return None
    import re

    # the path: after the last "to " or ": " before "; <reason>" (it may hold spaces)
    path = re.search(r".*(?:\bto|:)\s+(\S.*?)\s*;\s*" + re.escape(reason), message)
    where = path.group(1) if path else "an output file"
    return f"{where}: {reason.lower()}; {_FULL[reason]}"


class OneLineErrors:
    """A click command (or group) mixin: an error of the input or of the disk is a
    :class:`UserError` (one line), also where click runs the command itself (``CliRunner``)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except Exception as error:  # noqa: BLE001 - user_error() tells which ones are said
            said = user_error(error)
            if said is None:
                raise
            raise said from None


class Command(OneLineErrors, click.Command):
    """A click command whose bad input is one line: ``@click.command(cls=Command)``."""


class _Stops:
    """SIGTERM and SIGINT unwind the stack (every temporary file is removed by the block that
    made it); the signal is remembered, because an exception raised inside native code
    (TensorFlow, a runtime) can reach the command disguised as some other error."""

    def __init__(self):
        self.signals: list[int] = []

    def __call__(self, signum, frame):
        self.signals.append(signum)
        raise KeyboardInterrupt


def _ignore_stops() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def run(command: click.Command, prog_name: str, args=None) -> None:
    """Run a click command as a program: returns when it succeeded, else exits with its status
    after one line on stderr (``Error: ...``, or ``interrupted: ...`` after a signal)."""
    stops = _Stops()
    previous = {sig: signal.signal(sig, stops) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        command.main(args, prog_name=prog_name, standalone_mode=False)
        if not stops.signals:  # the work is done and said: a signal during TensorFlow's shutdown
            import atexit  # must not turn it into a failure; ignored only once the process

            # exits, so a caller that runs this in-process (and its children) keeps Ctrl-C
            atexit.register(_ignore_stops)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            return
    except (KeyboardInterrupt, click.exceptions.Abort):
        stops.signals.append(signal.SIGINT)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    except click.ClickException as error:
        if not stops.signals:
            error.show()
            sys.exit(error.exit_code)
    except SystemExit:
        if not stops.signals:
            raise
    except Exception as error:  # noqa: BLE001 - after a signal, what native code raised is the stop
        said = None if stops.signals else user_error(error)
        if said is not None:
            said.show()
            sys.exit(said.exit_code)
        if not stops.signals:
            raise
    name = "interrupted" if stops.signals[0] == signal.SIGINT else "terminated"
    print(f"{name}: stopped; nothing half-written was left", file=sys.stderr)
    sys.exit(128 + stops.signals[0])


__all__ = ["DISK_ERRORS", "Command", "OneLineErrors", "UserError", "run", "user_error"]
