"""``python -m benchmarks MODEL...``: the on-device harness (numpy and a runtime only)."""

from benchmarks.command import main
from edgeseg.device.entry import run

if __name__ == "__main__":
    run(main, "python -m benchmarks")
