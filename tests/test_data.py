"""Datasets: the built-in synthetic sets, every real folder layout, and their clear errors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from edgeseg.config import DataConfig
from edgeseg.device.data import folders
from edgeseg.device.data.datasets import builtin, load_folder
from edgeseg.device.data.folders import DataError, detect_layout, find_samples
from edgeseg.device.data.roles import TEST_OFFSET, VAL_OFFSET, score_data, split
from edgeseg.device.data.synthetic import shapes_sample, synthetic_arrays
from edgeseg.device.data.writer import write_synthetic
from edgeseg.device.visualize import mask_image

# --- built-in datasets ---------------------------------------------------------------------------

def test_builtin_samples_are_bit_identical_for_a_seed():
    a_img, a_mask = synthetic_arrays("synthetic-nuclei", 3, 64, seed=5)
    b_img, b_mask = synthetic_arrays("synthetic-nuclei", 3, 64, seed=5)
    assert a_img.tobytes() == b_img.tobytes() and a_mask.tobytes() == b_mask.tobytes()
    c_img, _ = synthetic_arrays("synthetic-nuclei", 3, 64, seed=6)
    assert not np.array_equal(a_img, c_img)


def test_a_sample_depends_only_on_seed_and_index():
    _, masks = synthetic_arrays("synthetic-shapes", 4, 64, seed=1)
    _, alone = shapes_sample(64, seed=1, index=3)
    np.testing.assert_array_equal(masks[3], alone)


def test_nuclei_look_like_fluorescence_not_clean_discs():
    images, masks = synthetic_arrays("synthetic-nuclei", 8, 256, seed=0)
    assert images.shape == (8, 256, 256, 1) and images.dtype == np.float32
    assert set(np.unique(masks)) == {0, 1}
    background, nuclei = images[..., 0][masks == 0], images[..., 0][masks == 1]
    assert background.mean() < 0.15  # a dark background ...
    assert nuclei.mean() > 2 * background.mean()  # ... with brighter nuclei
    assert background.std() > 0.005  # noisy and uneven, not flat
    assert nuclei.std() > 0.05  # varied brightness and texture inside the nuclei
    assert 0.02 < masks.mean() < 0.3  # many nuclei, not a few
    # a threshold alone does not give the mask: blur, noise and dim nuclei make it imperfect
    best = max(_dice(images[..., 0] > t, masks == 1) for t in np.linspace(0.05, 0.5, 19))
    assert best < 0.97


def _dice(a, b):
    return 2 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def test_shapes_have_classes_and_unlabeled_borders():
    image, mask = shapes_sample(128, seed=0, index=2)
    assert image.shape == (128, 128, 3) and 0 <= image.min() and image.max() <= 1
    values = set(np.unique(mask).tolist())
    assert values <= {0, 1, 2, 3, 255} and 255 in values and len(values - {0, 255}) >= 1
    # the 255 band separates objects from the background: no object pixel touches a background one
    obj, bg = (mask > 0) & (mask < 255), mask == 0
    assert not (obj[:, 1:] & bg[:, :-1]).any() and not (obj[1:, :] & bg[:-1, :]).any()


def test_builtin_validation_samples_are_never_training_samples():
    train, val = split(DataConfig("synthetic-nuclei", input_size=32, n_train=4, n_val=2))
    assert len(train) == 4 and len(val) == 2
    assert not any(np.array_equal(t, v) for t in train.images for v in val.images)
    same = builtin("synthetic-nuclei", 2, 32, 0, VAL_OFFSET)
    assert all(np.array_equal(a, b) for a, b in zip(val.images, same.images))


def test_builtin_channels_can_be_changed():
    grey = builtin("synthetic-shapes", 1, 32, 0, channels=1)
    rgb = builtin("synthetic-nuclei", 1, 32, 0, channels=3)
    assert grey.images[0].shape == (32, 32, 1) and grey.channels == 1
    assert rgb.images[0].shape == (32, 32, 3)
    assert np.array_equal(rgb.images[0][..., 0], rgb.images[0][..., 2])


def test_write_synthetic_round_trips_through_the_generic_layout(tmp_path):
    out = write_synthetic("synthetic-shapes", tmp_path / "shapes", count=3, size=32, seed=7)
    data = load_folder(out)
    assert data.layout == "generic" and len(data) == 3
    assert data.class_names == ("background", "disc", "box", "triangle")
    for i in range(3):
        image, mask = shapes_sample(32, seed=7, index=i)
        np.testing.assert_array_equal(data.masks[i], mask)
        np.testing.assert_allclose(data.images[i] / 255.0, image, atol=0.5 / 255 + 1e-6)


def test_write_synthetic_refuses_a_non_empty_folder_and_leaves_no_partial_output(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    # the user's file: --force would not replace it either, so the hint is another folder
    with pytest.raises(DataError, match=r"full: holds files `edgeseg data synth` did not write "
                                        r"\(.*keep.txt\); choose an empty --out"):
        write_synthetic("synthetic-nuclei", tmp_path / "full", count=1, size=16, seed=0)
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full"]


# --- real layouts, written here as small folders -------------------------------------------------

def _save(path, array, mode=None, **kw):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode=mode).save(path, **kw)
    return path


def _rgb(seed, h=24, w=32):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_generic_layout_reads_class_id_and_binary_masks(tmp_path):
    ids = np.zeros((24, 32), np.uint8)
    ids[2:8, 2:8], ids[10:14, 10:20], ids[0, :] = 1, 2, 255
    binary = np.zeros((24, 32), np.uint8)
    binary[5:9, 5:9] = 255
    _save(tmp_path / "ids" / "images" / "a.png", _rgb(0))
    _save(tmp_path / "ids" / "masks" / "a.png", ids)
    _save(tmp_path / "bin" / "images" / "b.jpg", _rgb(1), quality=95)
    _save(tmp_path / "bin" / "masks" / "b.png", binary)
    assert detect_layout(tmp_path / "ids") == "generic"
    data = load_folder(tmp_path / "ids")
    np.testing.assert_array_equal(data.masks[0], ids)  # class ids kept, 255 stays unlabeled
    assert data.images[0].shape == (24, 32, 3) and data.class_names == ("class0", "class1", "class2")
    data = load_folder(tmp_path / "bin")  # a folder of 0/255 masks: 255 is the foreground
    np.testing.assert_array_equal(data.masks[0], (binary == 255).astype(np.uint8))


def test_generic_layout_reads_grey_tiff_and_bmp_images(tmp_path):
    grey16 = (np.arange(24 * 32, dtype=np.uint16).reshape(24, 32) * 80)
    _save(tmp_path / "images" / "t.tif", grey16)
    _save(tmp_path / "images" / "u.bmp", _rgb(2)[..., 0])
    for stem in "tu":
        _save(tmp_path / "masks" / f"{stem}.png", np.zeros((24, 32), np.uint8))
    data = load_folder(tmp_path)
    assert data.channels == 1 and data.images[0].shape == (24, 32, 1)
    assert data.images[0].max() > 200  # 16-bit scaled to 8 bits, not clipped to 255 everywhere
    rgb = load_folder(tmp_path, channels=3)
    assert rgb.images[1].shape == (24, 32, 3)


def test_carvana_layout_reads_gif_masks(tmp_path):
    car = np.zeros((24, 32), np.uint8)
    car[4:20, 6:26] = 1
    _save(tmp_path / "train" / "0cdf5b5d0ce1_01.jpg", _rgb(3))
    _save(tmp_path / "train_masks" / "0cdf5b5d0ce1_01_mask.gif", car * 255)
    data = load_folder(tmp_path)
    assert data.layout == "carvana" and data.class_names == ("background", "car")
    np.testing.assert_array_equal(data.masks[0], car)


def test_oxford_layout_turns_trimap_borders_into_unlabeled(tmp_path):
    trimap = np.full((24, 32), 2, np.uint8)  # 2 = background
    trimap[5:15, 5:15], trimap[5, 5:15] = 1, 3  # 1 = pet, 3 = border
    _save(tmp_path / "images" / "Abyssinian_1.jpg", _rgb(4))
    _save(tmp_path / "annotations" / "trimaps" / "Abyssinian_1.png", trimap)
    data = load_folder(tmp_path)
    assert data.layout == "oxford"
    want = np.where(trimap == 1, 1, np.where(trimap == 3, 255, 0))
    np.testing.assert_array_equal(data.masks[0], want)


def test_dsb2018_layout_unites_instance_masks(tmp_path):
    sample = tmp_path / "00ae65c1c6631ae6f2be1a449902976e6eb8483bf6b0740d00530220832c6d3e"
    instances = []
    for i, (y, x) in enumerate([(2, 2), (10, 12), (16, 24)]):
        m = np.zeros((24, 32), np.uint8)
        m[y:y + 5, x:x + 5] = 255
        instances.append(m)
        _save(sample / "masks" / f"inst{i}.png", m)
    _save(sample / "images" / f"{sample.name}.png", _rgb(5)[..., 0])
    data = load_folder(tmp_path)
    assert data.layout == "dsb2018" and len(data) == 1
    np.testing.assert_array_equal(data.masks[0], np.maximum.reduce(instances) // 255)


def test_voc_layout_reads_palette_masks_classes_and_split(tmp_path):
    for i, stem in enumerate(["2007_000032", "2007_000039", "2007_000063"]):
        m = np.zeros((24, 32), np.uint8)
        m[3:9, 3:9], m[3, 3:9] = 15, 255  # person, with a void border
        _save(tmp_path / "JPEGImages" / f"{stem}.jpg", _rgb(6 + i))
        (tmp_path / "SegmentationClass").mkdir(exist_ok=True)
        mask_image(m).save(tmp_path / "SegmentationClass" / f"{stem}.png")
    _save(tmp_path / "JPEGImages" / "2007_999999.jpg", _rgb(9))  # unlabelled: skipped
    lists = tmp_path / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True)
    (lists / "train.txt").write_text("2007_000032\n2007_000039\n")
    (lists / "val.txt").write_text("2007_000063\n")
    train, val = split(DataConfig(str(tmp_path), input_size=32, mode="resize"))
    assert train.layout == "voc" and len(train) == 2 and len(val) == 1
    assert len(train.class_names) == 21 and train.class_names[15] == "person"
    assert set(np.unique(train.masks[0])) == {0, 15, 255}
    assert train.images[0].shape == (32, 32, 3)  # resized to the input size


def test_split_by_seed_is_repeatable_and_disjoint(tmp_path):
    write_synthetic("synthetic-nuclei", tmp_path / "n", count=10, size=16, seed=0)
    cfg = DataConfig(str(tmp_path / "n"), input_size=16, val_fraction=0.3, seed=3)
    train, val = split(cfg)
    again, _ = split(cfg)
    assert len(train) == 7 and len(val) == 3
    assert all(np.array_equal(a, b) for a, b in zip(train.images, again.images))
    assert not any(np.array_equal(t, v) for t in train.images for v in val.images)


def test_split_by_given_folders(tmp_path):
    write_synthetic("synthetic-nuclei", tmp_path / "train", count=4, size=16, seed=0)
    write_synthetic("synthetic-nuclei", tmp_path / "val", count=2, size=16, seed=1)
    train, val = split(DataConfig(str(tmp_path / "train"), input_size=16,
                                      val_source=str(tmp_path / "val")))
    assert len(train) == 4 and len(val) == 2


def test_eval_data_of_a_builtin_set_is_neither_training_nor_validation():
    data = score_data("synthetic-nuclei", size=32, count=3)
    again = builtin("synthetic-nuclei", 3, 32, 0, TEST_OFFSET)
    assert all(np.array_equal(a, b) for a, b in zip(data.images, again.images))
    train, val = split(DataConfig("synthetic-nuclei", input_size=32, n_train=64, n_val=64))
    seen = [*train.images, *val.images]
    assert not any(np.array_equal(t, s) for t in data.images for s in seen)


# --- bad input: one DataError that names the file ---------------------------------------------

def _generic(tmp_path, mask=None, image=None, stem="a"):
    _save(tmp_path / "images" / f"{stem}.png", _rgb(0) if image is None else image)
    if mask is not False:
        _save(tmp_path / "masks" / f"{stem}.png", np.zeros((24, 32), np.uint8) if mask is None else mask)
    return tmp_path


def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match=f"{tmp_path / 'nope'}: no such folder"):
        find_samples(tmp_path / "nope")


def test_not_a_dataset_name(tmp_path):
    with pytest.raises(DataError, match="synthetic-nucleii: no such folder, and not a built-in"):
        split(DataConfig("synthetic-nucleii"))


def test_empty_folder(tmp_path):
    with pytest.raises(DataError, match=f"{tmp_path}: no known dataset layout"):
        find_samples(tmp_path)
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    with pytest.raises(DataError, match="no images found for the generic layout"):
        find_samples(tmp_path)


def test_image_without_a_mask(tmp_path):
    _generic(tmp_path)
    _generic(tmp_path, mask=False, stem="b")
    with pytest.raises(DataError, match=r"images/b\.png: no mask for this image"):
        find_samples(tmp_path)


def test_mask_of_another_size(tmp_path):
    _generic(tmp_path, mask=np.zeros((20, 32), np.uint8))
    with pytest.raises(DataError, match=r"masks/a\.png: mask is 20x32, its image .* is 24x32"):
        load_folder(tmp_path)


def test_class_id_out_of_range(tmp_path):
    mask = np.zeros((24, 32), np.uint8)
    mask[0, 0] = 7
    _generic(tmp_path, mask=mask)
    with pytest.raises(DataError, match=r"masks/a\.png: class id 7 >= num_classes 3"):
        load_folder(tmp_path, num_classes=3)


def test_corrupt_and_truncated_images(tmp_path):
    _generic(tmp_path)
    (tmp_path / "images" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    with pytest.raises(DataError, match=r"images/a\.png: cannot read image"):
        load_folder(tmp_path)
    jpeg = tmp_path / "j"
    _save(jpeg / "images" / "a.jpg", _rgb(1, 240, 320), quality=95)
    _save(jpeg / "masks" / "a.png", np.zeros((240, 320), np.uint8))
    data = (jpeg / "images" / "a.jpg").read_bytes()
    (jpeg / "images" / "a.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"images/a\.jpg: cannot read image"):
        load_folder(jpeg)


def test_colour_mask_is_refused(tmp_path):
    _generic(tmp_path, mask=_rgb(3))
    with pytest.raises(DataError, match="a colour mask; save masks as class-id PNGs"):
        load_folder(tmp_path)


def test_bad_trimap_values(tmp_path):
    _save(tmp_path / "images" / "x.jpg", _rgb(0))
    _save(tmp_path / "annotations" / "trimaps" / "x.png", np.full((24, 32), 9, np.uint8))
    with pytest.raises(DataError, match=r"x\.png: trimap values must be 1, 2 or 3 \(found 9\)"):
        load_folder(tmp_path)


def test_layouts_are_listed_in_one_place():
    assert folders.LAYOUTS == ("generic", "carvana", "oxford", "dsb2018", "voc")


def test_data_synth_and_info_commands(runner, tmp_path):
    from edgeseg.cli import cli

    out = tmp_path / "shapes"
    result = runner.invoke(cli, ["data", "synth", "--kind", "shapes", "--n", "3", "--size", "48",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["data", "info", "--data", str(out)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"{out}: generic layout, 3 samples, 3 channel(s), model outputs 4"
    assert lines[1] == "masks: class ids (255 = unlabeled), for the whole folder"
    lines = [lines[0], *lines[2:]]
    assert lines[1] == "image sizes (height x width): 48x48"
    assert lines[2].startswith("pixels: 8-bit; `train --normalize auto` uses pixel / 255")
    assert lines[3].startswith("objects: about ") and "`train --mode auto` crops" in lines[3]
    assert [line.split()[1] for line in lines[4:8]] == ["background", "disc", "box", "triangle"]
    assert "(unlabeled)" in lines[8]
    again = runner.invoke(cli, ["data", "synth", "--n", "1", "--out", str(out)])
    assert again.exit_code == 2 and "holds a dataset `edgeseg data synth` wrote; pass --force" \
        in again.output
    assert runner.invoke(cli, ["data", "synth", "--n", "1", "--size", "16", "--out", str(out),
                               "--force"]).exit_code == 0
    assert len(list((out / "images").iterdir())) == 1


# --- folders as users make them ---------------------------------------------------------------
def test_images_in_sub_folders_are_said_not_skipped_silently(tmp_path, capsys):
    write_synthetic("synthetic-nuclei", tmp_path / "d", count=4, size=16, seed=0)
    (tmp_path / "d" / "images" / "more").mkdir()
    for name in ("00000.png", "00001.png"):
        (tmp_path / "d" / "images" / "more" / name).write_bytes(
            (tmp_path / "d" / "images" / name).read_bytes())
    found = find_samples(tmp_path / "d")
    said = capsys.readouterr().err
    assert len(found.samples) == 4
    assert "2 image(s) in sub-folders are not read" in said and "more" in said


def test_a_labelme_json_beside_a_mask_is_not_read_as_the_mask(tmp_path):
    write_synthetic("synthetic-nuclei", tmp_path / "d", count=3, size=16, seed=0)
    for path in (tmp_path / "d" / "masks").glob("*.png"):
        path.with_suffix(".json").write_text('{"shapes": []}')  # labelme's file, same stem
    found = find_samples(tmp_path / "d")
    assert all(sample.masks[0].suffix == ".png" for sample in found.samples)


def test_a_class_file_without_its_background_line_is_named(tmp_path):
    write_synthetic("synthetic-nuclei", tmp_path / "d", count=4, size=16, seed=0)
    (tmp_path / "d" / "classes.txt").write_text("nucleus\n")
    with pytest.raises(DataError, match=r"classes.txt: names 1 class\(es\) \(nucleus\), but masks "
                                         r"use ids 0-1 .*the background \(id 0\) first"):
        load_folder(tmp_path / "d")


@pytest.mark.parametrize("text", ["id,name\n0,background\n1,nucleus\n",
                                  "1,nucleus\n0,background\n", "background\nnucleus\n",
                                  "0: background\n1: nucleus\n", "0 background\n1 nucleus\n",
                                  "1\tnucleus\n0\tbackground\n",
                                  "\ufeffbackground\r\nnucleus\r\n",  # Notepad's BOM, CRLF
                                  "0: background\n1: nucleus\n255: ignore\n"])  # unlabeled
def test_a_class_file_as_a_list_or_as_csv_gives_the_names(tmp_path, text):
    write_synthetic("synthetic-nuclei", tmp_path / "d", count=4, size=16, seed=0)
    (tmp_path / "d" / "classes.txt").write_text(text, encoding="utf-8", newline="")
    assert load_folder(tmp_path / "d").class_names == ("background", "nucleus")


@pytest.mark.parametrize("text", ["0: background\n2: nucleus\n", "0,background\n0,nucleus\n"])
def test_a_class_file_whose_ids_skip_or_repeat_is_refused(tmp_path, text):
    write_synthetic("synthetic-nuclei", tmp_path / "d", count=4, size=16, seed=0)
    (tmp_path / "d" / "classes.txt").write_text(text)
    with pytest.raises(DataError, match=r"classes.txt: its class ids are 0, [02]; give each of "
                                         r"0, 1, 2, \.\.\. once"):
        load_folder(tmp_path / "d")


# --- the mask encoding, decided once per folder -------------------------------------------------
def _masks_folder(root, masks):
    for i, mask in enumerate(masks):
        _save(root / "images" / f"s{i}.png", _rgb(i, *mask.shape)[..., 0])
        _save(root / "masks" / f"s{i}.png", mask.astype(np.uint8))
    return root


def _mask(*values, shape=(8, 8)):
    mask = np.zeros(shape, np.uint8)
    for i, value in enumerate(values):
        mask[i, :] = value
    return mask


def test_an_unlabeled_patch_in_a_class_id_folder_stays_unlabeled(tmp_path):
    """A 0/1 folder where one mask holds only 0 and a 255 patch: that patch is unlabeled, not a
    class-1 object (it was, when each mask was read on its own)."""
    root = _masks_folder(tmp_path, [_mask(1), _mask(1), _mask(1, 1), _mask(255)])
    data = load_folder(root)
    assert set(np.unique(data.masks[3]).tolist()) == {0, 255}
    assert not any(sample.binary for sample in data.sources)


@pytest.mark.parametrize("masks", [[_mask(255), _mask(255, 255), _mask(0)],
                                   [_mask(255)] * 3])
def test_a_folder_of_0_255_masks_reads_255_as_the_foreground(tmp_path, masks):
    data = load_folder(_masks_folder(tmp_path, masks))
    assert all(set(np.unique(m).tolist()) <= {0, 1} for m in data.masks)
    assert data.class_names == ("background", "foreground")


def test_a_folder_that_mixes_0_255_and_class_id_masks_is_refused_naming_two(tmp_path):
    root = _masks_folder(tmp_path, [_mask(255), _mask(255), _mask(1), _mask(1, 2)])
    with pytest.raises(DataError, match=r"s0.png holds only 0 and 255 .* but .*s2.png holds class "
                                         r"ids \(0, 1; 255 = unlabeled\): one encoding a folder"):
        find_samples(root)


def test_a_mask_that_labels_nothing_is_refused_as_such(tmp_path):
    root = _masks_folder(tmp_path, [_mask(1), np.full((8, 8), 255, np.uint8)])
    with pytest.raises(DataError, match=r"s1.png: every pixel is 255 \(unlabeled\): the mask "
                                         r"labels nothing"):
        find_samples(root)


def test_data_info_states_the_folders_mask_encoding(tmp_path, runner):
    from edgeseg.cli import cli

    root = _masks_folder(tmp_path / "bin", [_mask(255), _mask(0, 255)])
    done = runner.invoke(cli, ["data", "info", str(root)])
    assert done.exit_code == 0, done.output
    assert "masks: 0/255 binary (255 = the foreground), for the whole folder" in done.output


def test_a_16_bit_colour_png_is_said_to_be_cut_to_8_bits(tmp_path, capsys):
    import struct
    import zlib

    from edgeseg.device.data.folders import read_raw

    height, width = 4, 5  # a 16-bit RGB PNG written by hand (Pillow cannot write one)
    rows = b"".join(b"\x00" + struct.pack(">" + "H" * 3 * width, *([40000] * 3 * width))
                    for _ in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    path = tmp_path / "deep.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height,
                                                                         16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
    image = read_raw(path)
    assert image.dtype == np.uint8 and image.shape == (4, 5, 3)
    assert "a 16-bit colour PNG, which Pillow decodes to 8 bits" in capsys.readouterr().err


def test_a_class_file_that_is_not_utf8_is_named(tmp_path):
    write_synthetic("synthetic-nuclei", tmp_path / "d", count=4, size=16, seed=0)
    (tmp_path / "d" / "classes.txt").write_bytes("background\nnoyau\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"classes.txt: not UTF-8 text"):
        load_folder(tmp_path / "d")
