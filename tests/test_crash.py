"""kill -9 at random moments: a few trials of tests/crash_trials.py (the script runs the full set)."""

import pytest
from crash_trials import run_trials


@pytest.mark.slow
def test_killed_commands_leave_nothing_corrupt_and_rerun_to_completion(tmp_path):
    # `run` chains the others and takes minutes: the script's full set covers it
    outcomes = run_trials(tmp_path, trials=4, seed=1, commands_=["train", "optimize", "convert",
                                                                "bench"], echo=lambda line: None)
    assert [o.command for o in outcomes] == ["train", "optimize", "convert", "bench"]
    assert any(o.killed for o in outcomes)  # the delays fall inside the commands' runs
    for outcome in outcomes:
        assert not outcome.corrupt, (outcome.command, outcome.corrupt)
        assert outcome.rerun_ok, outcome.command
