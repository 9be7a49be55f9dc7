"""Which images play which role: one module decides, every stage asks it, and roles that must
stay apart are kept apart by path and by content (edgeseg.device.data.roles)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from edgeseg.config import DataConfig
from edgeseg.device.data import roles
from edgeseg.device.data.folders import DataError
from edgeseg.device.data.writer import write_synthetic
from edgeseg.device.visualize import mask_image


@pytest.fixture(scope="module")
def cells(tmp_path_factory):
    """A folder as a user makes one with `edgeseg data synth`: 12 images of 32 px."""
    folder = tmp_path_factory.mktemp("roles") / "cells"
    write_synthetic("synthetic-nuclei", folder, count=12, size=32, seed=3)
    return folder


def _voc(root, stems, train, val):
    rng = np.random.default_rng(0)
    (root / "JPEGImages").mkdir(parents=True)
    (root / "SegmentationClass").mkdir()
    for stem in stems:
        Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(
            root / "JPEGImages" / f"{stem}.jpg")
        mask = np.zeros((24, 32), np.uint8)
        mask[4:12, 4:12] = 15  # a person
        mask_image(mask).save(root / "SegmentationClass" / f"{stem}.png")
    lists = root / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True)
    (lists / "train.txt").write_text("\n".join(train) + "\n")
    (lists / "val.txt").write_text("\n".join(val) + "\n")
    return root


def test_a_voc_train_list_that_also_lists_the_validation_images_is_refused(tmp_path):
    stems = [f"2007_{i:06d}" for i in range(8)]
    root = _voc(tmp_path / "voc", stems, train=stems, val=stems[4:])
    with pytest.raises(DataError, match=r"train.txt and val.txt both list 4 image\(s\) "
                                         r"\(2007_000004, 2007_000005, 2007_000006, \.\.\.\)"):
        roles.split(DataConfig(str(root), input_size=32))


def test_voc_lists_apart_split_as_they_say(tmp_path):
    stems = [f"2007_{i:06d}" for i in range(6)]
    root = _voc(tmp_path / "voc", stems, train=stems[:4], val=stems[4:])
    train, val = roles.split(DataConfig(str(root), input_size=32))
    assert (len(train), len(val)) == (4, 2)


def test_the_training_folder_as_its_own_validation_data_is_refused(cells):
    cfg = DataConfig(str(cells), val_source=str(cells), input_size=32)
    with pytest.raises(DataError, match=r"--val-data .*cells: 12 of its 12 images are training "
                                        r"images of --data .*cells .*validation images must be "
                                        r"images training never sees"):
        roles.split(cfg)


def test_a_validation_folder_of_copies_under_other_names_is_refused(cells, tmp_path):
    copies = tmp_path / "val"
    (copies / "images").mkdir(parents=True)
    (copies / "masks").mkdir()
    for i, name in enumerate(["00002.png", "00007.png"]):  # renamed: only the bytes tell
        shutil.copy(cells / "images" / name, copies / "images" / f"copy_{i}.png")
        shutil.copy(cells / "masks" / name, copies / "masks" / f"copy_{i}.png")
    cfg = DataConfig(str(cells), val_source=str(copies), input_size=32)
    with pytest.raises(DataError, match=r"2 of its 2 images are training images .* has the same "
                                        r"bytes as"):
        roles.split(cfg)


def test_a_validation_folder_of_other_images_is_taken(cells, tmp_path):
    other = tmp_path / "other"
    write_synthetic("synthetic-nuclei", other, count=3, size=32, seed=99)
    train, val = roles.split(DataConfig(str(cells), val_source=str(other), input_size=32))
    assert (len(train), len(val)) == (12, 3)


def test_copies_inside_one_folder_that_fall_on_both_sides_of_the_split_are_said(tmp_path, capsys):
    folder = tmp_path / "dups"
    write_synthetic("synthetic-nuclei", folder, count=10, size=32, seed=1)
    for kind in ("images", "masks"):  # every image twice: some pair must straddle the split
        for path in sorted((folder / kind).glob("0*.png")):
            shutil.copy(path, folder / kind / f"dup_{path.name}")
    train, val = roles.split(DataConfig(str(folder), input_size=32))
    said = capsys.readouterr().err
    assert "validation image(s) are copies of training images" in said and len(val) == 4


def test_test_data_holding_training_images_is_refused(cells):
    with pytest.raises(DataError, match=r"--test-data .*cells: \d+ of its 12 images are "
                                        r"training images"):
        roles.check_score_apart(DataConfig(str(cells), input_size=32), str(cells))


def test_built_in_roles_draw_from_index_ranges_that_never_meet():
    offsets = [0, roles.VAL_OFFSET, roles.TEST_OFFSET, roles.PARITY_OFFSET]
    assert len(set(offsets)) == 4 and min(np.diff(sorted(offsets))) >= 1_000_000
    score = roles.score_data("synthetic-nuclei", size=32, count=4)
    parity, _ = roles.labelled_samples("synthetic-nuclei", size=32, channels=1, num_classes=1,
                                       count=4)
    calibration = roles.calibration_images("synthetic-nuclei", size=32, channels=1, count=4)
    scored = [image.astype(np.float32) / 255 for image in score.images]
    for image in (*parity, *calibration):
        assert not any(np.array_equal(image, other) for other in scored)


def test_parity_never_uses_the_calibration_images_of_a_folder_a_model_was_trained_on(cells):
    cfg = DataConfig(str(cells), input_size=32, seed=0)
    train, val = roles.split(cfg)
    images, masks, where, _ = roles.parity_images(str(cells), verify_data=None, trained_on=cfg,
                                               size=32, channels=1, num_classes=1, count=8)
    assert "validation split" in where and len(images) == len(val) and masks is not None


def test_score_data_gives_a_folders_images_whole_at_their_own_size(tmp_path):
    folder = tmp_path / "big"
    write_synthetic("synthetic-nuclei", folder, count=3, size=48, seed=0)
    data = roles.score_data(str(folder), size=32)
    assert [image.shape[:2] for image in data.images] == [(48, 48)] * 3


def test_dice_of_scores_a_folder_exactly_as_eval_does(tiny_run, runner, tmp_path):
    """192-px images for a model trained on 64-px crops: whole images, tiled, in both."""
    from edgeseg.cli import cli
    from edgeseg.testing import dice_of

    folder = tmp_path / "wide"
    write_synthetic("synthetic-nuclei", folder, count=4, size=192, seed=5)
    model = tiny_run / "model.keras"
    done = runner.invoke(cli, ["eval", str(model), "--data", str(folder), "--json",
                               str(tmp_path / "eval.json")])
    assert done.exit_code == 0, done.output
    scored = json.loads((tmp_path / "eval.json").read_text())
    assert scored["image_sizes"] == ["192x192"]
    assert dice_of(model, str(folder)) == pytest.approx(scored["dice"], abs=1e-9)


def test_a_run_scores_on_test_data_only_when_none_of_it_trained(cells, tmp_path, runner):
    from edgeseg.cli import cli

    done = runner.invoke(cli, ["run", "--data", str(cells), "--test-data", str(cells),
                               "--out", str(tmp_path / "run"), "--quick"])
    assert done.exit_code == 2
    assert "--test-data" in done.output and "are training images of --data" in done.output
    assert not (tmp_path / "run").exists()


def test_the_report_says_which_images_played_which_role():
    from edgeseg.config import RunConfig
    from edgeseg.pipeline import make_plan

    plan = make_plan(RunConfig(quick=True))
    assert set(plan.roles) == {"train", "validation", "calibration", "parity", "score"}
    assert plan.roles["train"]["images"] == 256 and plan.roles["score"]["images"] == 8
    assert f"{roles.TEST_OFFSET:,}" in plan.roles["score"]["from"]


def test_the_training_card_says_which_images_trained_and_validated(tiny_run):
    from edgeseg.device.card import read_card

    images = read_card(tiny_run / "model.keras")["images"]
    assert images["train"] == {"images": 96, "from": "synthetic-nuclei indices 0-95"}
    assert images["validation"]["images"] == 16
    assert f"{roles.VAL_OFFSET:,}" in images["validation"]["from"]


@pytest.mark.slow  # over 10 s on 2 cores: the quick suite stays well under 15 min
def test_eval_on_the_folder_a_model_trained_on_says_its_training_images_are_scored(
        tmp_path, runner):
    from edgeseg.cli import cli

    folder = tmp_path / "cells"
    write_synthetic("synthetic-nuclei", folder, count=10, size=32, seed=2)
    out = tmp_path / "model"
    trained = runner.invoke(cli, ["train", "--data", str(folder), "--input-size", "32",
                                  "--steps", "2", "--batch-size", "4", "-o", "alpha=0.25",
                                  "--no-check", "--out", str(out)])
    assert trained.exit_code == 0, trained.output
    done = runner.invoke(cli, ["eval", str(out / "model.keras"), "--data", str(folder)])
    assert done.exit_code == 0, done.output
    assert "8 of its 10 images trained" in done.output and "scores on them are optimistic" \
        in done.output


def test_calibration_counts_the_images_its_inputs_are_cut_from(tmp_path):
    folder = tmp_path / "few"
    write_synthetic("synthetic-nuclei", folder, count=12, size=32, seed=1)
    assert roles.calibration_sources(str(folder), None, 100) == 12  # 100 crops of 12 images
    assert roles.calibration_sources(str(folder), None, 8) == 8
    assert roles.calibration_sources("synthetic-nuclei", None, 100) == 100


def test_quant_error_says_how_many_images_its_calibration_inputs_come_from(tiny_run, tmp_path,
                                                                          runner):
    from edgeseg.cli import cli

    folder = tmp_path / "few"
    write_synthetic("synthetic-nuclei", folder, count=12, size=64, seed=1)
    done = runner.invoke(cli, ["quant-error", str(tiny_run / "model.keras"), "--calib",
                               str(folder), "--calib-samples", "100", "--samples", "4",
                               "--input-size", "64", "--top", "2"])
    assert done.exit_code == 0, done.output
    assert "calibrated on 100 inputs cut from 12 images" in done.output


@pytest.mark.slow  # over 20 s on 2 cores: the quick suite stays well under 15 min
def test_the_training_folder_is_recorded_whole_and_found_from_any_folder(tmp_path, monkeypatch):
    """`train --data d0` run in one folder, its model used from another: convert calibrates on
    that d0 (not on a d0 of the folder it runs in), eval warns of the real training images only,
    and a converted file's card still knows them; optimize without --data fine-tunes on it."""
    from click.testing import CliRunner

    from edgeseg.cli import cli

    project = tmp_path / "project"
    write_synthetic("synthetic-nuclei", project / "d0", count=12, size=32, seed=3)
    monkeypatch.chdir(project)
    result = CliRunner().invoke(cli, ["train", "--data", "d0", "--input-size", "32", "--steps",
                                      "4", "-o", "alpha=0.25", "--no-check", "--out", "m0"])
    assert result.exit_code == 0, result.output
    card = json.loads((project / "m0" / "model.keras.json").read_text())
    assert card["recipe"]["data"]["source"] == str(project / "d0")
    elsewhere = tmp_path / "elsewhere"
    write_synthetic("synthetic-nuclei", elsewhere / "d0", count=12, size=32, seed=99)
    monkeypatch.chdir(elsewhere)
    model = str(project / "m0" / "model.keras")
    result = CliRunner().invoke(cli, ["convert", model, "--quant", "int8", "--keep-failed",
                                      "--calib-samples", "8", "--out", "q.tflite"])
    assert result.exit_code == 0, result.output
    calibration = json.loads((elsewhere / "q.tflite.json").read_text())["calibration"]
    assert str(project / "d0") in json.dumps(calibration), calibration
    result = CliRunner().invoke(cli, ["eval", model, "--data", "d0"])  # other images, same name
    assert result.exit_code == 0 and "trained" not in result.output, result.output
    for scored in (model, "q.tflite"):
        result = CliRunner().invoke(cli, ["eval", scored, "--data", str(project / "d0")])
        assert result.exit_code == 0 and "10 of its 12 images trained" in result.output, \
            (scored, result.output)
    result = CliRunner().invoke(cli, ["optimize", model, "--prune", "0.5", "--steps", "2",
                                      "--out", "pruned"])
    assert result.exit_code == 0, result.output
    assert f"data: {project / 'd0'} (the data the model was trained on" in result.output


def test_calibration_from_the_training_folders_images_leaves_out_its_validation_split(
        cells, tmp_path):
    """--calib d0/images: parity checks the file on d0's validation split, so those images
    never calibrate it (all 12 did), also when copied elsewhere (the same bytes)."""
    trained_on = DataConfig(str(cells), input_size=32)
    _, _, val = roles.split_samples(trained_on)
    assert roles.calibration_sources(str(cells / "images"), trained_on, 100) == 12 - len(val)
    assert f"less the {len(val)} of {cells}'s validation split" in \
        roles.calibration_source(str(cells / "images"), trained_on)
    inputs = roles.calibration_images(str(cells / "images"), size=32, channels=1, count=100,
                                      trained_on=trained_on)
    assert inputs.shape == (100, 32, 32, 1)
    only_val = tmp_path / "val_copies"
    only_val.mkdir()
    for sample in val:
        shutil.copy(sample.image, only_val / f"copy_{sample.image.name}")
    with pytest.raises(DataError, match="holds only the validation images of"):
        roles.calibration_images(str(only_val), size=32, channels=1, count=8,
                                 trained_on=trained_on)
    elsewhere = roles.calibration_source(str(cells / "images"), None)
    assert elsewhere == "a seeded choice of the folder's images"  # nothing known to leave out


def test_a_foreign_models_calibration_is_not_said_to_be_its_training_folder(cells):
    """Issue 29, finding 7: a model whose card names no training data, calibrated on a folder's
    own split: the card says so, not 'the folder the model was trained on'."""
    own = roles.own_split(str(cells), 0)
    said = roles.calibration_source(str(cells), own)
    assert "own seeded split" in said and "was trained on" not in said
    assert roles.calibration_source(str(cells), DataConfig(str(cells))) == \
        "the training split of the folder the model was trained on"
