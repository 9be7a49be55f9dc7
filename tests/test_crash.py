"""kill -9 at random moments, and a full disk: a few trials of tests/crash_trials.py (the script
runs the full sets)."""

import pytest
from crash_trials import full_disk_trial, run_trials, setup


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """One folder for the trials, with the base model both kinds start from (made once)."""
    work = tmp_path_factory.mktemp("crash")
    setup(work)
    return work


@pytest.mark.slow
def test_killed_commands_leave_nothing_corrupt_and_rerun_to_completion(work):
    # `run` chains the others and takes minutes, and a killed `train` resuming is tested in
    # test_train and test_run: the script's full set covers both
    outcomes = run_trials(work, trials=3, seed=1, commands_=["optimize", "convert", "bench"],
                          echo=lambda line: None)
    assert [o.command for o in outcomes] == ["optimize", "convert", "bench"]
    assert any(o.killed for o in outcomes)  # the delays fall inside the commands' runs
    for outcome in outcomes:
        assert not outcome.corrupt, (outcome.command, outcome.corrupt)
        assert outcome.rerun_ok, outcome.command


@pytest.mark.slow
@pytest.mark.parametrize("command, limit", [
    ("train", 200_000),  # past the up-front estimate: fails while training writes its files
    ("convert", 8_000),  # under the int8 file of the base model: fails writing it
])
def test_a_full_disk_is_one_line_leaves_nothing_half_written_and_reruns(work, command, limit):
    """No file may grow past ``limit`` bytes (``ulimit -f``, as a full disk looks to a writer):
    the HDF5 library's segmentation fault and TensorFlow's tracebacks were what users saw."""
    outcome = full_disk_trial(command, setup(work), work / f"disk-{command}", limit)
    assert outcome.exit_code in (1, 2) and not outcome.traceback, outcome
    assert "Error: " in outcome.last_line and ("too large" in outcome.last_line
                                               or "limit" in outcome.last_line), outcome
    assert outcome.temporaries == 0 and not outcome.corrupt and outcome.rerun_ok, outcome


def test_a_native_full_disk_error_names_the_file():
    import tensorflow as tf

    from edgeseg.device.entry import user_error

    raised = tf.errors.UnknownError(None, None, "Failed to write to logs/train/events.out."
                                    "tfevents.1.vm.2.v2; File too large")
    assert str(user_error(raised)) == ("logs/train/events.out.tfevents.1.vm.2.v2: file too "
                                       "large; the shell's file size limit (ulimit -f) stops it: "
                                       "raise it and run the command again")
    spaced = tf.errors.UnknownError(None, None, "could not write to /home/me/My Runs/logs/ev.v2; "
                                    "No space left on device")  # a path with a space, whole
    assert str(user_error(spaced)) == ("/home/me/My Runs/logs/ev.v2: no space left on device; "
                                       "free some space and run the command again")
    assert user_error(tf.errors.UnknownError(None, None, "something else")) is None
    assert user_error(RuntimeError("No space left on device")) is None  # not a writer's error
