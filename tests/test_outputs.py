"""A command owns what it wrote into --out (a manifest), and --force removes only that: nothing a
user put under --out is ever deleted, and an input inside a path --force would clear is refused
before any work (edgeseg.device.outputs)."""

from __future__ import annotations

import json
import shutil

import pytest

from edgeseg.device.errors import EdgesegError
from edgeseg.device.outputs import MANIFEST, Outputs


def test_clear_removes_the_claimed_files_and_tool_folders_and_nothing_else(tmp_path):
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "server.log").write_text("the user's")
    outputs = Outputs(tmp_path, "train")
    outputs.claim_file("model.keras", "checkpoints/last.weights.h5")
    outputs.claim_folder("logs/train", tool=True)
    for name in ("model.keras", "checkpoints/last.weights.h5", "logs/train/events.1"):
        (tmp_path / name).write_text("ours")
    (tmp_path / "checkpoints" / "my_best.h5").write_text("the user's")
    removed = Outputs(tmp_path, "train").clear()  # read back from the manifest
    assert sorted(p.relative_to(tmp_path).as_posix() for p in removed) == [
        "checkpoints/last.weights.h5", "logs/train", "model.keras"]
    assert (tmp_path / "logs" / "server.log").read_text() == "the user's"
    assert (tmp_path / "checkpoints" / "my_best.h5").read_text() == "the user's"


def test_a_folder_made_for_outputs_goes_only_when_it_is_left_empty(tmp_path):
    outputs = Outputs(tmp_path, "run")
    outputs.claim_file("models/int8.tflite")
    (tmp_path / "models" / "int8.tflite").write_text("ours")
    (tmp_path / "models" / "notes.txt").write_text("the user's")
    outputs.clear()
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["notes.txt"]
    outputs.claim_file("models/int8.tflite")
    (tmp_path / "models" / "notes.txt").unlink()
    outputs.clear()
    assert not (tmp_path / "models").exists()


def test_a_file_that_is_there_and_not_an_output_is_refused_not_overwritten(tmp_path):
    (tmp_path / "model.keras").write_text("the user's")
    with pytest.raises(EdgesegError, match="model.keras: exists and edgeseg did not write it"):
        Outputs(tmp_path, "train").claim_file("model.keras")
    with pytest.raises(EdgesegError, match="exists and edgeseg did not write it"):
        Outputs(tmp_path, "train").refuse_unowned(files=["model.keras"])
    assert (tmp_path / "model.keras").read_text() == "the user's"
    assert not (tmp_path / MANIFEST).exists()


def test_an_input_that_force_would_remove_is_refused(tmp_path):
    outputs = Outputs(tmp_path, "run")
    outputs.claim_file("models/int8.tflite")
    with pytest.raises(EdgesegError,
                       match=r"--model .*int8.tflite: is an output edgeseg wrote in"):
        outputs.check_inputs({"--model": tmp_path / "models" / "int8.tflite"})
    with pytest.raises(EdgesegError, match=r"--data .*train: edgeseg run writes into it"):
        outputs.check_inputs({"--data": tmp_path / "train"}, planned=("train",))
    outputs.check_inputs({"--model": tmp_path / "models" / "mine.keras"}, planned=("models",))


def test_names_are_inside_the_folder_and_inputs_are_paths_as_given(tmp_path, monkeypatch):
    """A relative --out (runs/x, the default's kind): claims are names in it, inputs are paths
    from the working folder."""
    monkeypatch.chdir(tmp_path)
    outputs = Outputs("runs/x", "run")
    outputs.claim_file("report.json")
    (tmp_path / "runs" / "x" / "report.json").write_text("{}")
    assert outputs.owns("runs/x/report.json") and not outputs.owns("report.json")
    assert not (tmp_path / "runs" / "x" / "runs").exists()
    with pytest.raises(EdgesegError, match="is an output edgeseg wrote in"):
        outputs.check_inputs({"--test-data": "runs/x/report.json"})
    assert [p.name for p in Outputs("runs/x", "run").clear()] == ["report.json"]


def test_force_of_one_command_leaves_another_commands_outputs(tmp_path):
    Outputs(tmp_path, "train").claim_file("model.keras", "config.json")
    for name in ("model.keras", "config.json"):
        (tmp_path / name).write_text("trained")
    optimize = Outputs(tmp_path, "optimize")
    with pytest.raises(EdgesegError, match="model.keras: written here by edgeseg train; edgeseg "
                                           "optimize writes into another --out"):
        optimize.refuse_unowned(files=["model.keras"])
    optimize.clear()
    assert (tmp_path / "model.keras").is_file() and (tmp_path / "config.json").is_file()


def test_a_manifest_naming_paths_outside_its_folder_removes_nothing_there(tmp_path):
    root, victim = tmp_path / "out", tmp_path / "victim.txt"
    root.mkdir()
    victim.write_text("the user's")
    (root / "keep.txt").write_text("the user's")
    (root / MANIFEST).write_text(json.dumps({"claims": {
        ".": {"kind": "tool", "by": "run"}, "../victim.txt": {"kind": "file", "by": "run"},
        str(victim): {"kind": "file", "by": "run"}}}))
    assert Outputs(root, "run").clear() == []
    assert victim.read_text() == "the user's" and (root / "keep.txt").is_file()


def test_a_claimed_folder_replaced_by_a_link_is_not_followed(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "int8.tflite").write_text("someone else's")
    root = tmp_path / "out"
    outputs = Outputs(root, "run")
    outputs.claim_file("models/int8.tflite")
    shutil.rmtree(root / "models")
    (root / "models").symlink_to(shared, target_is_directory=True)
    outputs.clear()
    assert (shared / "int8.tflite").read_text() == "someone else's"


def test_an_input_inside_a_stage_folder_with_its_own_manifest_is_refused(tmp_path):
    root = tmp_path / "runs" / "a"
    Outputs(root, "run").claim_folder("train")
    Outputs(root / "train", "train").claim_file("model.keras")
    (root / "train" / "model.keras").write_text("trained")
    with pytest.raises(EdgesegError,
                       match=r"--model .*model.keras: is an output edgeseg wrote in"):
        Outputs(root, "run").check_inputs({"--model": root / "train" / "model.keras"},
                                          planned=("train",))


def test_an_output_folder_inside_an_input_folder_is_refused(tmp_path):
    (tmp_path / "data").mkdir()
    with pytest.raises(EdgesegError, match=r"--data .*data: --out .*run lies inside it"):
        Outputs(tmp_path / "data" / "run", "run").check_inputs({"--data": tmp_path / "data"})


# --- the four cases, as a user runs them ----------------------------------------------------------
def _user_onnx(converted, folder):
    """A user's .onnx (with the card beside it) in their own models/ folder, beside a note."""
    folder.mkdir(parents=True)
    source, _ = converted[("onnx", "none")]
    shutil.copy(source, folder / "my_unet.onnx")
    shutil.copy(f"{source}.json", folder / "my_unet.onnx.json")
    (folder / "README.txt").write_text("where these came from")
    return folder / "my_unet.onnx"


def test_run_force_over_the_users_models_folder_keeps_the_users_files(converted, tmp_path,
                                                                      monkeypatch, runner):
    from edgeseg.cli import cli

    monkeypatch.chdir(tmp_path)
    model = _user_onnx(converted, tmp_path / "models")
    args = ["run", "--model", "models/my_unet.onnx", "--data", "synthetic-nuclei", "--out", ".",
            "--quick", "--input-size", "64", "--until", "convert"]
    first = runner.invoke(cli, args)
    assert first.exit_code == 0, first.output
    assert (tmp_path / "models" / "int8.onnx").is_file()
    again = runner.invoke(cli, [*args, "--force"])
    assert again.exit_code == 0, again.output
    assert model.is_file() and (tmp_path / "models" / "my_unet.onnx.json").is_file()
    assert (tmp_path / "models" / "README.txt").read_text() == "where these came from"
    assert (tmp_path / "models" / "int8.onnx").is_file()  # remade


def test_run_force_refuses_an_input_that_is_one_of_its_outputs(converted, tmp_path, runner):
    from edgeseg.cli import cli

    model = _user_onnx(converted, tmp_path / "mine")
    out = tmp_path / "runs" / "x"
    first = runner.invoke(cli, ["run", "--model", str(model), "--out", str(out), "--quick",
                                "--input-size", "64", "--until", "convert"])
    assert first.exit_code == 0, first.output
    before = sorted(p.name for p in (out / "models").iterdir())
    again = runner.invoke(cli, ["run", "--model", str(out / "models" / "int8.onnx"),
                                "--out", str(out), "--quick", "--force"])
    assert again.exit_code == 2
    assert "is an output edgeseg wrote in" in again.output and str(out / "models") in again.output
    assert sorted(p.name for p in (out / "models").iterdir()) == before


def test_run_refuses_training_data_where_it_writes_its_train_stage(tmp_path, monkeypatch,
                                                                   runner):
    from edgeseg.cli import cli
    from edgeseg.device.data.writer import write_synthetic

    monkeypatch.chdir(tmp_path)
    write_synthetic("synthetic-nuclei", tmp_path / "train", count=6, size=32, seed=0)
    write_synthetic("synthetic-nuclei", tmp_path / "val", count=3, size=32, seed=1)
    done = runner.invoke(cli, ["run", "--data", "train", "--test-data", "val", "--out", ".",
                               "--force"])
    assert done.exit_code == 2 and "--data train: edgeseg run writes into it" in done.output
    assert len(list((tmp_path / "train" / "images").iterdir())) == 6
    assert not (tmp_path / MANIFEST).exists()


@pytest.mark.slow  # over 20 s on 2 cores: the quick suite stays well under 15 min
def test_train_force_keeps_what_the_user_put_in_the_output_folder(tmp_path, runner):
    from edgeseg.cli import cli

    proj = tmp_path / "proj"
    (proj / "logs").mkdir(parents=True)
    (proj / "checkpoints").mkdir()
    (proj / "logs" / "server.log").write_text("the user's log")
    (proj / "checkpoints" / "my_best.h5").write_text("the user's weights")
    args = ["train", "--n-train", "16", "--n-val", "4", "--input-size", "32", "--steps", "2",
            "--batch-size", "8", "-o", "alpha=0.25", "--no-check", "--out", str(proj)]
    assert runner.invoke(cli, [*args, "--force"]).exit_code == 0
    again = runner.invoke(cli, [*args, "--force"])
    assert again.exit_code == 0, again.output
    assert (proj / "logs" / "server.log").read_text() == "the user's log"
    assert (proj / "checkpoints" / "my_best.h5").read_text() == "the user's weights"
    claims = json.loads((proj / MANIFEST).read_text())["claims"]
    assert "logs/server.log" not in claims and "checkpoints" not in claims
    assert claims["checkpoints/last.weights.h5"] == {"kind": "file", "by": "train"}
    assert claims["backup"] == {"kind": "tool", "by": "train"}


def test_data_synth_force_replaces_its_own_dataset_but_never_a_users_folder(tmp_path, runner):
    from edgeseg.cli import cli

    out = tmp_path / "synth"
    synth = ["data", "synth", "--n", "3", "--size", "16", "--out", str(out)]
    assert runner.invoke(cli, synth).exit_code == 0
    assert runner.invoke(cli, [*synth, "--force"]).exit_code == 0
    (out / "images" / "my_photo.png").write_bytes((out / "images" / "00000.png").read_bytes())
    done = runner.invoke(cli, [*synth, "--force"])
    assert done.exit_code == 2 and "holds files `edgeseg data synth` did not write" in done.output
    assert (out / "images" / "my_photo.png").is_file()
    (out / "images" / "my_photo.png").unlink()
    (out / "notes").mkdir()  # an empty folder of the user's is the user's too
    assert runner.invoke(cli, [*synth, "--force"]).exit_code == 2 and (out / "notes").is_dir()


def test_a_relative_out_folder_reruns_and_forces_as_an_absolute_one(converted, tmp_path,
                                                                    monkeypatch, runner):
    from edgeseg.cli import cli

    monkeypatch.chdir(tmp_path)
    model = _user_onnx(converted, tmp_path / "mine")
    args = ["run", "--model", str(model), "--out", "runs/x", "--quick", "--input-size", "64",
            "--until", "convert"]
    for extra in ([], [], ["--force"], ["--force"]):
        done = runner.invoke(cli, [*args, *extra])
        assert done.exit_code == 0, done.output
    assert not (tmp_path / "runs" / "x" / "runs").exists()
    assert (tmp_path / "runs" / "x" / "models" / "int8.onnx").is_file()


def test_predict_force_replaces_its_own_masks_but_not_a_users_file_of_that_name(
        converted, tmp_path, runner):
    from edgeseg.cli import cli
    from edgeseg.device.data.writer import write_synthetic

    write_synthetic("synthetic-nuclei", tmp_path / "in", count=2, size=64, seed=0)
    model, _ = converted[("tflite", "none")]
    images = [str(p) for p in sorted((tmp_path / "in" / "images").iterdir())]
    out = tmp_path / "masks"
    predict = ["predict", str(model), *images, "--out", str(out)]
    assert runner.invoke(cli, predict).exit_code == 0
    assert runner.invoke(cli, [*predict, "--force"]).exit_code == 0
    user_mask = out / "00000_mask.png"
    (out / MANIFEST).write_text(json.dumps({"claims": {}}))  # as if the user made them all
    done = runner.invoke(cli, [*predict, "--force"])
    assert done.exit_code == 2 and "exists and edgeseg did not write it" in done.output
    assert user_mask.is_file()


def test_predict_hints_say_what_works(converted, tmp_path, runner):
    """A rerun into the images' own folder names the mask once (it was doubled, and spoke of a
    --force not given); a mask the user made is refused as theirs, not with a --force hint that
    then fails too."""
    import numpy as np
    from PIL import Image

    from edgeseg.cli import cli

    model = str(converted[("tflite", "none")][0])
    folder = tmp_path / "same"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(np.full((64, 64), 40 * i, np.uint8)).save(folder / f"{i}.png")
    images = sorted(str(p) for p in folder.glob("*.png"))
    assert runner.invoke(cli, ["predict", model, *images, "--out", str(folder)]).exit_code == 0
    again = sorted(str(p) for p in folder.glob("*.png"))  # the shell's glob, now with the masks
    result = runner.invoke(cli, ["predict", model, *again, "--out", str(folder)])
    mask = folder / "0_mask.png"
    assert result.exit_code == 2, result.output
    assert f"IMAGE {mask}: is an output edgeseg wrote in {folder}" in result.output
    assert result.output.count(str(mask)) == 2 and "--force" not in result.output, result.output
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "0_mask.png").write_bytes(b"my own mask")
    for extra in ([], ["--force"]):
        result = runner.invoke(cli, ["predict", model, images[0], "--out", str(mine), *extra])
        assert result.exit_code == 2 and "exists and edgeseg did not write it" in result.output, \
            result.output
    assert (mine / "0_mask.png").read_bytes() == b"my own mask"
