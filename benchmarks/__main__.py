"""``python -m benchmarks MODEL...``: the on-device harness (numpy and a runtime only)."""

import sys

from click.exceptions import ClickException

from benchmarks.command import main

if __name__ == "__main__":
    try:
        main.main(prog_name="python -m benchmarks", standalone_mode=False)
    except ClickException as error:
        error.exit_code = 2
        error.show()
        sys.exit(2)
    except Exception as error:  # noqa: BLE001 - click's own usage errors and aborts
        from click.exceptions import Abort, Exit

        if isinstance(error, Exit):
            sys.exit(error.exit_code)
        if isinstance(error, Abort):
            sys.exit(1)
        raise
