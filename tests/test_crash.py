"""kill -9 at random moments: a few trials of tests/crash_trials.py (the script runs the full set)."""

import pytest

from crash_trials import run_trials


@pytest.mark.slow
def test_killed_commands_leave_nothing_corrupt_and_rerun_to_completion(tmp_path):
    outcomes = run_trials(tmp_path, trials=5, seed=1, echo=lambda line: None)
    assert [o.command for o in outcomes] == ["train", "optimize", "convert", "bench", "run"]
    assert any(o.killed for o in outcomes)  # the delays fall inside the commands' runs
    for outcome in outcomes:
        assert not outcome.corrupt, (outcome.command, outcome.corrupt)
        assert outcome.rerun_ok, outcome.command
