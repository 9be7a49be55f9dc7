"""The input contract: normalisation and input fit in the card, applied alike by every path."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from edgeseg.cli import cli
from edgeseg.device.card import Normalization, normalization_of
from edgeseg.device.preprocess import normalize, percentiles


def test_percentiles_from_the_histogram_equal_numpys():
    rng = np.random.default_rng(0)
    for dtype in (np.uint8, np.uint16):
        image = rng.integers(0, np.iinfo(dtype).max, (37, 53, 3)).astype(dtype)
        qs = [0, 1, 37.5, 99.8, 100]
        np.testing.assert_allclose(percentiles(image, qs), np.percentile(image, qs), atol=1e-9)


@pytest.mark.parametrize("text, kind", [("scale", "scale"), ("percentile", "percentile"),
                                        ("percentile:2,98", "percentile"),
                                        ("meanstd:0.5/0.25", "meanstd")])
def test_normalisations_round_trip_through_the_card(text, kind):
    norm = Normalization.parse(text)
    assert norm.kind == kind
    assert normalization_of({"normalization": norm.to_dict()}) == norm


def test_an_old_card_means_pixel_over_255():
    card = {"normalization": "float32 RGB or grey in [0, 1]: pixel / 255"}
    image = np.array([[[0], [255]]], np.uint8)
    np.testing.assert_array_equal(normalize(image, normalization_of(card))[..., 0], [[0, 1]])


@pytest.mark.parametrize("text, message", [
    ("cubic", "must be auto or one of scale, percentile, meanstd"),
    ("percentile:99,1", "need 0 <= low < high <= 100"),
    ("meanstd:0.5,0.5/0.1", "as many means as deviations"),
    ("meanstd:0.5/0", "deviations positive"),
    ("percentile:a,b", "not of the form"),
])
def test_bad_normalisations_are_one_clear_error(text, message):
    from edgeseg.device.errors import EdgesegError

    with pytest.raises(EdgesegError, match=message):
        Normalization.parse(text)


def test_the_same_image_in_8_and_16_bits_normalises_alike():
    rng = np.random.default_rng(2)
    eight = rng.integers(0, 256, (50, 50, 1)).astype(np.uint8)
    sixteen = (eight.astype(np.uint16) * 13)  # 5% of the 16-bit range
    norm = Normalization("percentile")
    np.testing.assert_allclose(normalize(sixteen, norm), normalize(eight, norm), atol=1e-5)


# --- a 16-bit TIFF folder, end to end ----------------------------------------------------------

@pytest.fixture(scope="module")
def deep_folders(tmp_path_factory):
    """Nuclei as 16-bit TIFFs using 5% of the range, and the same images as 8-bit PNGs."""
    from edgeseg.device.data.writer import write_synthetic

    root = tmp_path_factory.mktemp("deep")
    eight = write_synthetic("synthetic-nuclei", root / "eight", count=24, size=64, seed=3)
    deep = root / "deep"
    (deep / "images").mkdir(parents=True)
    (deep / "masks").mkdir()
    for image in sorted((eight / "images").iterdir()):
        pixels = np.asarray(Image.open(image), np.uint16) * 13  # 0-3315 of 0-65535
        Image.fromarray(pixels).save(deep / "images" / f"{image.stem}.tif")
        (deep / "masks" / image.name).write_bytes((eight / "masks" / image.name).read_bytes())
    return eight, deep


def test_16_bit_images_are_read_in_their_own_depth(deep_folders):
    from edgeseg.device.data.folders import read_image, read_raw

    _, deep = deep_folders
    path = sorted((deep / "images").iterdir())[0]
    raw = read_raw(path)
    assert raw.dtype == np.uint16 and raw.max() > 255
    assert read_image(path).max() <= 13  # what an 8-bit reader would keep: almost nothing


@pytest.fixture(scope="module")
def deep_model(deep_folders, tmp_path_factory):
    """A tiny model trained on the 16-bit folder (normalisation: auto) and its int8 .tflite."""
    from click.testing import CliRunner

    _, deep = deep_folders
    out = tmp_path_factory.mktemp("deep_model")
    result = CliRunner().invoke(cli, ["train", "--data", str(deep), "--input-size", "64",
                                      "-o", "alpha=0.25", "--steps", "200", "--lr", "0.01",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    tflite = out / "model.tflite"
    result = CliRunner().invoke(cli, ["convert", str(out / "model.keras"), "--quant", "int8",
                                      "--calib-samples", "16", "--out", str(tflite)])
    assert result.exit_code == 0, result.output
    return out, tflite


@pytest.mark.slow  # over 10 s on 2 cores: the quick suite stays well under 15 min
def test_auto_normalisation_of_16_bit_images_is_percentile_and_recorded(deep_model):
    out, tflite = deep_model
    card = json.loads((out / "model.keras.json").read_text())
    assert card["normalization"]["kind"] == "percentile" and card["input_fit"] == "tile"
    from edgeseg.runtime import load

    assert normalization_of(load(tflite).card).kind == "percentile"  # carried into the file
    assert card["metrics"]["val"]["dice"] > 0.7


@pytest.mark.slow  # over 10 s on 2 cores: the quick suite stays well under 15 min
def test_a_deep_model_scores_alike_on_16_bit_and_8_bit_copies_without_tensorflow(deep_folders,
                                                                                deep_model):
    """On the device: LiteRT and numpy only (TensorFlow's import is made to fail)."""
    eight, deep = deep_folders
    _, tflite = deep_model
    code = (
        "import sys, json\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('tensorflow', 'tf_keras', 'keras'):\n"
        "            raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from edgeseg.cli import cli\n"
        "for folder, out in zip(sys.argv[2:4], sys.argv[4:6]):\n"
        "    try:\n"
        "        cli(['eval', sys.argv[1], '--data', folder, '--json', out], standalone_mode=False)\n"
        "    except SystemExit:\n"
        "        pass\n")
    jsons = [deep_folders[1].parent / "deep.json", deep_folders[1].parent / "eight.json"]
    done = subprocess.run([sys.executable, "-c", code, str(tflite), str(deep), str(eight),
                           *map(str, jsons)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    dice = [json.loads(path.read_text())["dice"] for path in jsons]
    assert dice[0] > 0.7 and abs(dice[0] - dice[1]) < 0.01, dice


@pytest.mark.slow  # over 10 s on 2 cores: the quick suite stays well under 15 min
def test_predict_reads_16_bit_images_as_the_card_says(deep_folders, deep_model, runner, tmp_path):
    eight, deep = deep_folders
    _, tflite = deep_model
    image = sorted((deep / "images").iterdir())[0]
    result = runner.invoke(cli, ["predict", str(tflite), str(image), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    labels = np.asarray(Image.open(tmp_path / f"{image.stem}_mask.png"))
    truth = np.asarray(Image.open(eight / "masks" / f"{image.stem}.png"))
    assert 2 * ((labels == 1) & (truth == 1)).sum() / ((labels == 1).sum() + truth.sum()) > 0.6


# --- calibration and the held-out split ------------------------------------------------------

def test_calibration_draws_only_training_images_of_the_folder_the_model_learned(tmp_path):
    from edgeseg.config import DataConfig
    from edgeseg.device.data.roles import calibration_images, labelled_samples, split
    from edgeseg.device.data.writer import write_synthetic

    folder = write_synthetic("synthetic-nuclei", tmp_path / "f", count=10, size=32, seed=0)
    cfg = DataConfig(str(folder), input_size=32)
    _, val = split(cfg)
    for stem in (s.image.stem for s in _samples_of(val, folder)):  # the validation images: white
        Image.fromarray(np.full((32, 32), 255, np.uint8)).save(folder / "images" / f"{stem}.png")
    calib = calibration_images(str(folder), size=32, channels=1, count=40, trained_on=cfg)
    assert calib.shape == (40, 32, 32, 1) and not (calib == 1.0).all(axis=(1, 2, 3)).any()
    parity, _ = labelled_samples(str(folder), size=32, channels=1, num_classes=1, count=8,
                                 trained_on=cfg)
    assert (parity == 1.0).all()  # parity is checked on the held-out ones


def _samples_of(data, folder):
    from edgeseg.device.data.folders import find_samples

    stems = {np.asarray(image).tobytes() for image in data.images}
    from edgeseg.device.data.folders import read_raw

    return [s for s in find_samples(folder).samples if read_raw(s.image).tobytes() in stems]


# --- crop or resize -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def big_objects(tmp_path_factory):
    """Images with one large object each (a bright ellipse over most of the frame)."""
    folder = tmp_path_factory.mktemp("big") / "big"
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:128, 0:160]
    for i in range(12):
        cy, cx, ry, rx = 64 + rng.integers(-8, 8), 80 + rng.integers(-10, 10), 30, 45
        inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        image = np.where(inside, 170, 60) + rng.normal(0, 12, inside.shape)
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(folder / "images" / f"{i}.png")
        Image.fromarray(inside.astype(np.uint8)).save(folder / "masks" / f"{i}.png")
    return folder


def test_objects_larger_than_a_crop_make_training_resize_whole_images(big_objects):
    from edgeseg.config import DataConfig
    from edgeseg.device.data.roles import split

    train, _ = split(DataConfig(str(big_objects), input_size=32))
    assert train.fit == "resize" and train.images[0].shape[:2] == (32, 32)
    assert "do not fit 32-px crops" in train.fit_note
    small, _ = split(DataConfig(str(big_objects), input_size=128))
    assert small.fit == "tile" and small.images[0].shape[:2] == (128, 160)


@pytest.mark.slow  # over 20 s on 2 cores: the quick suite stays well under 15 min
def test_a_resize_model_is_fed_whole_resized_images_everywhere(big_objects, runner, tmp_path):
    out = tmp_path / "m"
    result = runner.invoke(cli, ["train", "--data", str(big_objects), "--input-size", "32",
                                 "-o", "alpha=0.25", "--steps", "150", "--lr", "0.01",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "whole 128x160 images resized to 32x32" in result.output
    assert json.loads((out / "model.keras.json").read_text())["input_fit"] == "resize"
    tflite = tmp_path / "m.tflite"
    assert runner.invoke(cli, ["convert", str(out / "model.keras"), "--out",
                               str(tflite)]).exit_code == 0
    scores = tmp_path / "s.json"
    result = runner.invoke(cli, ["eval", str(tflite), "--data", str(big_objects), "--json",
                                 str(scores)])
    assert result.exit_code == 0 and "resize" in result.output.splitlines()[0], result.output
    assert json.loads(scores.read_text())["dice"] > 0.8  # whole objects, at the original size
    image = big_objects / "images" / "0.png"
    assert runner.invoke(cli, ["predict", str(tflite), str(image), "--out",
                               str(tmp_path / "p")]).exit_code == 0
    assert np.asarray(Image.open(tmp_path / "p" / "0_mask.png")).shape == (128, 160)


@pytest.mark.slow  # over 10 s on 2 cores: the quick suite stays well under 15 min
def test_a_model_without_a_card_is_run_with_a_warning_that_says_what_is_assumed(deep_model,
                                                                               deep_folders,
                                                                               tmp_path):
    import shutil

    from click.testing import CliRunner

    out, _ = deep_model
    bare = tmp_path / "bare.keras"
    shutil.copy(out / "model.keras", bare)  # its card (model.keras.json) left behind
    result = CliRunner().invoke(cli, ["eval", str(bare), "--data", str(deep_folders[0]),
                                      "--input-size", "64"])
    assert result.exit_code == 0, result.output
    assert "no model card" in result.stderr and "assuming pixel / 255" in result.stderr


def test_predict_tiles_a_dynamic_model_at_its_card_size_like_eval(deep_model, deep_folders,
                                                                   runner, tmp_path):
    from edgeseg import runtime
    from edgeseg.device.data.folders import read_raw
    from edgeseg.device.metrics import labels_from_probs
    from edgeseg.device.tiling import predict_image

    out, _ = deep_model
    image = sorted((deep_folders[1] / "images").iterdir())[1]
    result = runner.invoke(cli, ["predict", str(out / "model.keras"), str(image), "--out",
                                 str(tmp_path)])
    assert result.exit_code == 0, result.output
    written = np.asarray(Image.open(tmp_path / f"{image.stem}_mask.png"))
    model = runtime.load(out / "model.keras")
    direct = labels_from_probs(predict_image(model, read_raw(image))[None])[0]
    assert (written == direct).mean() > 0.99


def test_a_nearly_empty_field_is_not_stretched_to_infinity():
    image = np.zeros((64, 64, 1), np.uint16)
    image[:3, :3] = 1000  # nine bright pixels: the 1st and 99.8th percentiles are both 0
    out = normalize(image, Normalization("percentile"))
    assert np.isfinite(out).all() and out.max() <= 100  # span: at least 1% of the image's range


def test_regions_that_span_the_images_are_learned_from_crops():
    from edgeseg.device.data.sizing import choose_mode

    land = np.zeros((300, 400), np.uint8)
    land[:, :250], land[150:] = 1, 2  # fields and water across the whole frame
    assert choose_mode([land], (300, 400), 128)[0] == "crop"
    car = np.zeros((300, 400), np.uint8)
    car[60:240, 80:330] = 1
    assert choose_mode([car], (300, 400), 128)[0] == "resize"
