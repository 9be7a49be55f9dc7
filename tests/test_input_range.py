"""Images fed outside the range a model was trained on are named, with the --normalize that maps
them back: 12-bit data in 16-bit files, an under-exposed camera. Held-out images that merely
differ (other seeds of the same data) are not."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from edgeseg.cli import cli

WARNED = "are not to be trusted"


def _hot_pixel(image):
    image = image.astype(np.uint16) * 16
    image[0, 0] = 65535  # the type's range is reached: only the statistics can tell
    return image


@pytest.fixture(scope="module")
def held_out(tmp_path_factory):
    """Unseen nuclei (seed 7, as a user would write them), and the same images as 12-bit data in
    16-bit PNGs, at a third of the exposure, and as 12-bit data with one hot pixel at 65535."""
    root = tmp_path_factory.mktemp("range")
    plain = root / "plain"
    result = CliRunner().invoke(cli, ["data", "synth", "--n", "12", "--size", "64", "--seed", "7",
                                      "--out", str(plain)])
    assert result.exit_code == 0, result.output
    variants = {"plain": plain}
    for name, change in {"d12": lambda a: a.astype(np.uint16) * 16,
                         "dark": lambda a: (a // 3).astype(np.uint8),
                         "hot": _hot_pixel}.items():
        folder = root / name
        (folder / "images").mkdir(parents=True)
        (folder / "masks").mkdir()
        for image in sorted((plain / "images").iterdir()):
            Image.fromarray(change(np.asarray(Image.open(image)))).save(
                folder / "images" / image.name)
            (folder / "masks" / image.name).write_bytes((plain / "masks" / image.name).read_bytes())
        (folder / "classes.txt").write_text((plain / "classes.txt").read_text())
        variants[name] = folder
    return variants


def _eval(model, folder, tmp_path, *extra):
    report = tmp_path / f"{folder.name}{len(extra)}.json"
    result = CliRunner().invoke(cli, ["eval", str(model), "--data", str(folder), "--json",
                                      str(report), *extra])
    assert result.exit_code == 0, result.output
    return result.output, json.loads(report.read_text())["dice"]


def test_the_card_records_what_the_model_was_trained_on(tiny_run, converted):
    card = json.loads((tiny_run / "model.keras.json").read_text())
    stats = card["input_stats"]
    assert set(stats) == {"p1", "p50", "p99", "images", "per_image"} and len(stats["p50"]) == 1
    assert 0 <= stats["p1"][0] < stats["p50"][0] < stats["p99"][0] <= 1
    assert stats["images"] == 32  # 96 training images, every third
    spread = stats["per_image"]
    assert set(spread) == {"p50_mean", "p50_sd", "log_range_mean", "log_range_sd"}
    assert spread["p50_sd"][0] > 0 and spread["log_range_sd"][0] > 0
    path = converted[("tflite", "int8")][0]
    assert json.loads(path.with_name(path.name + ".json").read_text())["input_stats"] == stats


def test_held_out_images_of_the_same_kind_are_not_warned_about(converted, held_out, tmp_path):
    output, dice = _eval(converted[("tflite", "none")][0], held_out["plain"], tmp_path)
    assert WARNED not in output and dice > 0.5


@pytest.mark.parametrize("variant", ["d12", "dark", "hot"])
def test_out_of_range_images_are_named_and_the_fix_works(converted, held_out, tmp_path, variant):
    model = converted[("tflite", "none")][0]
    _, plain = _eval(model, held_out["plain"], tmp_path)
    output, shifted = _eval(model, held_out[variant], tmp_path)
    assert WARNED in output, output
    assert ("at most" in output and "65535" in output) == (variant == "d12")  # the depth, named
    fix = re.search(r"--normalize (meanstd:\S+) maps", output).group(1)
    fixed_output, fixed = _eval(model, held_out[variant], tmp_path, "--normalize", fix)
    assert WARNED not in fixed_output, fixed_output
    assert abs(fixed - plain) < 0.05 and fixed > shifted, (plain, shifted, fixed)


def test_bench_and_predict_say_it_too(converted, held_out, tmp_path):
    model = converted[("tflite", "none")][0]
    result = CliRunner().invoke(cli, ["bench", str(model), "--data", str(held_out["dark"]),
                                      "--runs", "1", "--samples", "4"])
    assert result.exit_code == 0 and WARNED in result.output, result.output
    # predict judges the images it is given together
    images = [str(p) for p in sorted((held_out["dark"] / "images").iterdir())]
    result = CliRunner().invoke(cli, ["predict", str(model), *images, "--out",
                                      str(tmp_path / "masks")])
    assert result.exit_code == 0 and WARNED in result.output, result.output
    assert f"the {len(images)} images given" in result.output
    plain = sorted((held_out["plain"] / "images").iterdir())
    for name, given in {"one": plain[:1], "all": plain}.items():
        result = CliRunner().invoke(cli, ["predict", str(model), *map(str, given), "--out",
                                          str(tmp_path / name)])
        assert result.exit_code == 0 and WARNED not in result.output, result.output


def test_single_scenes_of_many_colours_are_not_warned_about_one_by_one(tmp_path):
    """Shapes scenes each have their own background colour: one alone lies far from the pooled
    training median, and no farther than the training scenes lie from one another. Judged one by
    one (as predict does for a single image, and bench for one image), few warn where the pooled
    rule alone called most out of range; together they do not; at a third of the exposure, each
    one still does."""
    from edgeseg.device.card import Normalization
    from edgeseg.device.preprocess import intensity_stats, range_note

    folders = {}
    for name, n, seed in (("train", 32, 0), ("test", 24, 7)):
        folders[name] = tmp_path / name
        result = CliRunner().invoke(cli, ["data", "synth", "--kind", "shapes", "--n", str(n),
                                          "--size", "96", "--seed", str(seed), "--out",
                                          str(folders[name])])
        assert result.exit_code == 0, result.output

    def images(name):
        return [np.asarray(Image.open(p).convert("RGB"))
                for p in sorted((folders[name] / "images").iterdir())]

    trained = intensity_stats(images("train"), Normalization())  # as train records it
    card = {"input_stats": trained, "normalization": Normalization().to_dict()}
    test = images("test")
    spread = np.subtract(trained["p99"], trained["p1"])
    far = [image for image in test if np.any(np.abs(np.subtract(
        intensity_stats([image], Normalization())["p50"], trained["p50"])) > 0.25 * spread)]
    warned = [i for i, image in enumerate(test) if range_note([image], card)]
    assert len(far) >= len(test) // 2, len(far)  # what the pooled rule alone called out of range
    assert len(warned) <= len(test) // 10, warned  # three standard errors: rare, not never
    assert range_note(test, card) is None
    dark = [image // 3 for image in test]
    assert all(WARNED in range_note([image], card) for image in dark)
