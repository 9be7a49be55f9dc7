"""The ``edgeseg`` command line: a click group whose commands live in ``edgeseg/commands/``.

Commands are imported only when they run (or when their ``--help`` is asked for), and each command
imports TensorFlow, tfmot or the runtimes inside its body: ``edgeseg --help`` is instant and never
imports TensorFlow.

    edgeseg --help
    edgeseg models --input-size 256
"""

from __future__ import annotations

import errno
import importlib
import os

import click

from edgeseg import __version__
from edgeseg.errors import EdgesegError

# Each command lives in edgeseg/commands/<name>.py, imported only when it is looked up.
COMMANDS = ("bench", "calib-compare", "check", "convert", "data", "eval", "inspect", "models",
            "optimize", "predict", "quant-error", "run", "train")


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


class LazyGroup(click.Group):
    """A group that imports a command's module only when the command is looked up."""

    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def get_command(self, ctx, name):
        if name in COMMANDS:
            attr = name.replace("-", "_")
            module = importlib.import_module(f"edgeseg.commands.{attr}")
            return getattr(module, attr, None) or getattr(module, f"{attr}_")
        return None

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except EdgesegError as error:
            raise UserError(str(error), getattr(error, "exit_code", 2)) from None
        except OSError as error:
            if error.errno not in DISK_ERRORS:
                raise
            where = error.filename or "an output file"
            raise UserError(f"{where}: {os.strerror(error.errno).lower()} (nothing half-written "
                            f"was left)") from None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgeseg")
def cli():
    """edgeseg: segmentation models from training to the device, with the numbers.

    Train a MobileNet-style U-Net, prune and quantize it with tensorflow-model-optimization,
    convert it to TFLite and ONNX, and measure latency, MACs, size and Dice of every variant.
    """


_stopped: list[int] = []  # the signal that asked this process to stop, once it came


def _stop(signum, frame):
    """SIGTERM and SIGINT unwind the stack (every temporary file is removed by the block that
    made it); the signal is remembered, because an exception raised inside native code
    (TensorFlow, a runtime) can reach the command disguised as some other error."""
    _stopped.append(signum)
    raise KeyboardInterrupt


def _ignore_stops() -> None:
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def main() -> None:
    """Console entry point: bad input is one line and exit 2; Ctrl-C or SIGTERM one line and
    128 + the signal (130, 143), whatever was running when it came."""
    import signal
    import sys

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter
    previous_term = signal.signal(signal.SIGTERM, _stop)
    previous_int = signal.signal(signal.SIGINT, _stop)
    try:
        cli.main(prog_name="edgeseg", standalone_mode=False)
        if not _stopped:  # the work is done and said: a signal during TensorFlow's shutdown
            import atexit  # must not turn it into a failure; ignored only once the process
            # exits, so a caller that runs main() in-process (and its children) keeps Ctrl-C
            atexit.register(_ignore_stops)
            signal.signal(signal.SIGTERM, previous_term)
            signal.signal(signal.SIGINT, previous_int)
            return
    except (KeyboardInterrupt, click.exceptions.Abort):
        _stopped.append(signal.SIGINT)
    except click.ClickException as error:
        if not _stopped:
            error.show()
            sys.exit(error.exit_code)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    except SystemExit:
        if not _stopped:
            raise
    except Exception:  # noqa: BLE001 - after a signal, whatever native code raised is the stop
        if not _stopped:
            raise
    if _stopped:
        name = "interrupted" if _stopped[0] == signal.SIGINT else "terminated"
        print(f"{name}: stopped; nothing half-written was left", file=sys.stderr)
        sys.exit(128 + _stopped[0])


if __name__ == "__main__":  # pragma: no cover
    main()
