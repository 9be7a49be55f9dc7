"""The bad-input matrix: every CLI command against missing, empty, corrupt, truncated and
wrong-format files, mismatched images and masks, NaN/inf pixels, out-of-range class ids and bad
option values. Each must give one line naming the file or option and what is wrong, exit 2, no
traceback, and leave nothing behind.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from edgeseg.cli import cli


def _png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def _folder(root: Path, name: str, image_sizes, mask_sizes=None, mask_value=1, image_mode="L",
            float_image=None) -> Path:
    """A generic-layout folder of 4 samples; the first sample is the odd one when asked."""
    folder = root / name
    for i in range(4):
        size = image_sizes[i] if isinstance(image_sizes, list) else image_sizes
        msize = (mask_sizes[i] if isinstance(mask_sizes, list) else mask_sizes) or size
        if float_image is not None and i == 0:
            (folder / "images").mkdir(parents=True, exist_ok=True)
            Image.fromarray(float_image).save(folder / "images" / f"s{i}.tif")
        else:
            channels = {"L": (size, size), "RGB": (size, size, 3)}[image_mode]
            _png(folder / "images" / f"s{i}.png", np.full(channels, 100 + i, np.uint8))  # no copies
        mask = np.zeros((msize, msize), np.uint8)
        mask[: msize // 2] = mask_value if i == 0 else 1
        _png(folder / "masks" / f"s{i}.png", mask)
    return folder


@pytest.fixture(scope="module")
def bad(tmp_path_factory, converted, tiny_run):
    """Every bad file the matrix uses, made once."""
    root = tmp_path_factory.mktemp("bad")
    rng = np.random.default_rng(0)
    files = {"missing": root / "does-not-exist.tflite", "dir": root}
    files["empty.tflite"] = root / "empty.tflite"
    files["empty.tflite"].write_bytes(b"")
    files["empty.onnx"] = root / "empty.onnx"
    files["empty.onnx"].write_bytes(b"")
    files["empty.keras"] = root / "empty.keras"
    files["empty.keras"].write_bytes(b"")
    files["random.tflite"] = root / "random.tflite"
    files["random.tflite"].write_bytes(rng.bytes(4096))
    files["random.onnx"] = root / "random.onnx"
    files["random.onnx"].write_bytes(rng.bytes(4096))
    files["random.keras"] = root / "random.keras"
    files["random.keras"].write_bytes(rng.bytes(4096))
    picture = io.BytesIO()
    Image.fromarray(np.full((64, 64), 50, np.uint8)).save(picture, format="PNG")
    for suffix in ("tflite", "onnx", "keras"):
        files[f"png.{suffix}"] = root / f"picture.{suffix}"
        files[f"png.{suffix}"].write_bytes(picture.getvalue())
    for (to, quant), (path, _) in converted.items():
        if quant in ("none", "int8"):
            data = path.read_bytes()
            files[f"half-{quant}.{to}"] = root / f"half-{quant}.{to}"
            files[f"half-{quant}.{to}"].write_bytes(data[: len(data) // 2])
    keras_bytes = (tiny_run / "model.keras").read_bytes()
    files["half.keras"] = root / "half.keras"
    files["half.keras"].write_bytes(keras_bytes[: len(keras_bytes) // 2])
    files["model.keras"] = tiny_run / "model.keras"
    files["model.tflite"] = converted[("tflite", "int8")][0]

    # images
    jpeg = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (64, 64), np.uint8)).save(jpeg, format="JPEG")
    files["half.jpg"] = root / "half.jpg"
    files["half.jpg"].write_bytes(jpeg.getvalue()[: len(jpeg.getvalue()) // 2])
    files["empty.png"] = root / "empty.png"
    files["empty.png"].write_bytes(b"")
    files["random.png"] = root / "random.png"
    files["random.png"].write_bytes(rng.bytes(2048))
    nan = np.full((64, 64), 0.5, np.float32)
    nan[10, 10] = np.nan
    files["nan.tif"] = root / "nan.tif"
    Image.fromarray(nan).save(files["nan.tif"])
    inf = np.full((64, 64), 0.5, np.float32)
    inf[3, 3] = np.inf
    files["inf.tif"] = root / "inf.tif"
    Image.fromarray(inf).save(files["inf.tif"])

    # folders
    files["empty_folder"] = root / "empty_folder"
    files["empty_folder"].mkdir()
    files["mismatch"] = _folder(root, "mismatch", 64, [48, 64, 64, 64])
    files["class_range"] = _folder(root, "class_range", 64, mask_value=9)
    files["nan_folder"] = _folder(root, "nan_folder", 64, float_image=nan)
    files["rgb_mask"] = root / "rgb_mask"
    _folder(root, "rgb_mask", 64)
    _png(files["rgb_mask"] / "masks" / "s0.png",
         np.dstack([np.zeros((64, 64), np.uint8), np.ones((64, 64), np.uint8) * 2,
                    np.ones((64, 64), np.uint8)]))
    files["no_masks"] = root / "no_masks"
    _png(files["no_masks"] / "images" / "a.png", np.zeros((64, 64), np.uint8))
    files["corrupt_image_folder"] = _folder(root, "corrupt_image_folder", 64)
    (files["corrupt_image_folder"] / "images" / "s1.png").write_bytes(
        (files["corrupt_image_folder"] / "images" / "s1.png").read_bytes()[:40])

    files["good"] = _folder(root, "good", 64)
    files["bg_only"] = root / "bg_only"
    for i in range(4):
        _png(files["bg_only"] / "images" / f"s{i}.png", np.full((64, 64), 100, np.uint8))
        _png(files["bg_only"] / "masks" / f"s{i}.png", np.zeros((64, 64), np.uint8))
    for side in ("a", "b"):  # two images with one name
        files[f"same_{side}"] = _png(root / side / "x.png", np.full((64, 64), 90, np.uint8))
    files["loop.png"] = root / "loop.png"  # a link that loops (loop.png -> loop2.png -> loop.png)
    (root / "loop2.png").symlink_to(files["loop.png"])
    files["loop.png"].symlink_to(root / "loop2.png")

    # reports
    files["empty.json"] = root / "empty.json"
    files["empty.json"].write_bytes(b"")
    files["random.json"] = root / "random.json"
    files["random.json"].write_bytes(rng.bytes(512))
    files["half.json"] = root / "half.json"
    files["half.json"].write_text('{"schema": "edgeseg.bench/1", "results": [{"variant": ')
    files["wrong.json"] = root / "wrong.json"
    files["wrong.json"].write_text('{"hello": 1}')

    # issue 15: outputs over inputs, malformed reports, lossy masks, twin images, foreign cards
    row = {"variant": "fp32", "runtime": "litert", "threads": 1, "latency_ms": {"p50": 2.0},
           "size_bytes": 1000, "dice": 0.9, "dice_delta": 0.0, "reference": True}
    import json

    def report(name, rows):
        files[name] = root / name
        files[name].write_text(json.dumps({"schema": "edgeseg.bench/1", "results": rows}))

    report("report.json", [row])
    report("no_rows.json", [])
    report("ints.json", [1, 2])
    report("no_dice_key.json", [{k: v for k, v in row.items() if k != "dice"}])
    report("string_dice.json", [{**row, "dice": "high"}])
    report("zero_size.json", [{**row, "size_bytes": 0}])
    report("zero_latency.json", [{**row, "latency_ms": {"p50": 0}}])
    report("inf_dice.json", [{**row, "dice": float("inf")}])
    report("big_dice.json", [{**row, "dice": 1.7}])
    report("twin_rows.json", [{**row, "dice": 0.5}, row])
    report("null_dice.json", [{**row, "dice": None}])
    files["lossy"] = _folder(root, "lossy", 64)
    y, x = np.mgrid[:64, :64]
    for i in range(4):  # 0/255 masks saved as JPEG: a spray of values near 0 and 255
        mask = (((y - 28) ** 2 + (x - 36) ** 2) < 16 ** 2).astype(np.uint8) * 255
        (files["lossy"] / "masks" / f"s{i}.png").unlink()
        Image.fromarray(mask).save(files["lossy"] / "masks" / f"s{i}.jpg", quality=60)
    files["twins"] = _folder(root, "twins", 64)
    Image.fromarray(np.full((64, 64), 80, np.uint8)).save(files["twins"] / "images" / "s0.jpg")
    files["foreign"] = root / "foreign" / "m.keras"
    files["foreign"].parent.mkdir()
    files["foreign"].write_bytes((tiny_run / "model.keras").read_bytes())
    (root / "foreign" / "m.keras.json").write_text(json.dumps(
        {"num_classes": 1, "channels": 1, "class_names": [f"c{i}" for i in range(255)]}))
    files["params_card"] = root / "params" / "m.keras"  # same classes, another model's size
    files["params_card"].parent.mkdir()
    files["params_card"].write_bytes((tiny_run / "model.keras").read_bytes())
    card = json.loads((tiny_run / "model.keras.json").read_text())
    (root / "params" / "m.keras.json").write_text(json.dumps({**card, "params": 32337}))
    files["gt"] = root / "gt"
    _png(files["gt"] / "cell.png", np.full((64, 64), 90, np.uint8))
    _png(files["gt"] / "cell_mask.png", np.zeros((64, 64), np.uint8))
    return files


def _out(f):
    return str(f["dir"] / "out")


# (id, argv from the files, words the one line must name)
CASES = [
    # ---- model files: eval, convert, optimize, inspect, bench, predict ----------------------------
    *[(f"{cmd}-{kind}", (lambda cmd, kind: lambda f: {
        "eval": ["eval", str(f[kind]), "--n", "2"],
        "convert": ["convert", str(f[kind]), "--out", str(f["dir"] / "out.tflite")],
        "optimize": ["optimize", str(f[kind]), "--prune", "0.5", "--out", _out(f)],
        "inspect": ["inspect", str(f[kind])],
        "bench": ["bench", str(f[kind]), "--runs", "1", "--samples", "1"],
        "predict": ["predict", str(f[kind]), str(f["half.jpg"]), "--out", _out(f)],
    }[cmd])(cmd, kind), kind)
      for cmd in ("eval", "bench", "predict", "inspect")
      for kind in ("missing", "empty.tflite", "random.tflite", "png.tflite", "half-int8.tflite",
                   "empty.onnx", "random.onnx", "png.onnx", "half-none.onnx")],
    *[(f"{cmd}-{kind}", (lambda cmd, kind: lambda f: {
        "eval": ["eval", str(f[kind]), "--n", "2"],
        "convert": ["convert", str(f[kind]), "--out", str(f["dir"] / "out.tflite")],
        "optimize": ["optimize", str(f[kind]), "--prune", "0.5", "--out", _out(f)],
        "predict": ["predict", str(f[kind]), str(f["half.jpg"]), "--out", _out(f)],
    }[cmd])(cmd, kind), kind)
      for cmd in ("eval", "convert", "optimize", "predict")
      for kind in ("empty.keras", "random.keras", "png.keras", "half.keras")],
    ("convert-missing", lambda f: ["convert", str(f["missing"].with_suffix(".keras")), "--out",
                                   str(f["dir"] / "o.tflite")], "does-not-exist.keras"),
    ("optimize-missing", lambda f: ["optimize", str(f["missing"].with_suffix(".keras")), "--qat",
                                    "--out", _out(f)], "does-not-exist.keras"),
    ("convert-tflite-as-source", lambda f: ["convert", str(f["model.tflite"]), "--out",
                                            str(f["dir"] / "o.onnx")], "model_int8.tflite"),
    # ---- images for predict ------------------------------------------------------------------------
    *[(f"predict-image-{kind}", (lambda kind: lambda f: [
        "predict", str(f["model.tflite"]), str(f[kind]), "--out", _out(f)])(kind), kind)
      for kind in ("half.jpg", "empty.png", "random.png", "nan.tif", "inf.tif")],
    ("predict-image-missing", lambda f: ["predict", str(f["model.tflite"]),
                                         str(f["dir"] / "nope.png"), "--out", _out(f)], "nope.png"),
    ("predict-image-link-loop", lambda f: ["predict", str(f["model.tflite"]), str(f["loop.png"]),
                                           "--out", _out(f)], "symbolic link that loops"),
    ("bench-same-file-twice", lambda f: ["bench", str(f["model.tflite"]), str(f["model.tflite"])],
     "given twice"),
    ("bench-binary-model-on-4-classes", lambda f: ["bench", str(f["model.tflite"]), "--data",
                                                   "synthetic-shapes", "--runs", "1"],
     "synthetic-shapes has 4 classes"),
    # ---- data folders: train, eval, bench, convert --calib, run -----------------------------------
    *[(f"{cmd}-{kind}", (lambda cmd, kind: lambda f: {
        "train": ["train", "--data", str(f[kind]), "--epochs", "1", "--input-size", "32",
                  "--batch-size", "2", "--num-classes", "2", "--out", _out(f)],
        "eval": ["eval", str(f["model.keras"]), "--data", str(f[kind]), "--input-size", "64"],
        "bench": ["bench", str(f["model.tflite"]), "--data", str(f[kind]), "--runs", "1"],
        "calib": ["convert", str(f["model.keras"]), "--quant", "int8", "--calib", str(f[kind]),
                  "--out", str(f["dir"] / "c.tflite")],
        "run": ["run", "--data", str(f[kind]), "--quick", "--out", _out(f)],
    }[cmd])(cmd, kind), kind.split("_")[0] if kind != "class_range" else "class")
      for cmd in ("train", "eval", "bench", "calib", "run")
      for kind in ("empty_folder", "mismatch", "class_range", "nan_folder", "rgb_mask",
                   "no_masks", "corrupt_image_folder")
      if not (cmd == "calib" and kind in ("mismatch", "class_range", "rgb_mask", "no_masks"))
      and not (cmd == "run" and kind == "class_range")],  # run takes the classes from the masks
    ("train-missing-data", lambda f: ["train", "--data", str(f["dir"] / "nodata"), "--out", _out(f)],
     "nodata"),
    ("train-no-objects", lambda f: ["train", "--data", str(f["bg_only"]), "--input-size", "32",
                                    "--out", _out(f)], "bg_only"),
    ("train-val-fraction", lambda f: ["train", "--data", str(f["good"]), "--val-fraction", "0.99",
                                      "--input-size", "32", "--out", _out(f)], "--val-fraction"),
    ("data-info-wrong-layout", lambda f: ["data", "info", str(f["good"]), "--layout", "voc"],
     "JPEGImages"),
    ("run-bad-test-data", lambda f: ["run", "--data", str(f["good"]), "--test-data",
                                     str(f["mismatch"]), "--quick", "--out", _out(f)], "mismatch"),
    ("run-builtin-test-data", lambda f: ["run", "--test-data", "synthetic-shapes", "--quick",
                                         "--out", _out(f)], "--test-data"),
    ("predict-same-name", lambda f: ["predict", str(f["model.tflite"]), str(f["same_a"]),
                                     str(f["same_b"]), "--out", _out(f)], "would both write"),
    ("train-val-missing", lambda f: ["train", "--data", "synthetic-nuclei", "--val-data",
                                     str(f["dir"] / "noval"), "--out", _out(f)], "noval"),
    # ---- reports for check ------------------------------------------------------------------------
    *[(f"check-{kind}", (lambda kind: lambda f: ["check", str(f[kind])])(kind), kind)
      for kind in ("empty.json", "random.json", "half.json", "wrong.json")],
    ("check-missing", lambda f: ["check", str(f["dir"] / "nope.json")], "nope.json"),
    ("check-bad-baseline", lambda f: ["check", str(f["wrong.json"]), "--baseline",
                                      str(f["half.json"])], "json"),
    # ---- bad option values ------------------------------------------------------------------------
    ("train-bad-model", lambda f: ["train", "--model", "resnet", "--out", _out(f)], "resnet"),
    ("train-bad-option", lambda f: ["train", "-o", "alpha=-1", "--out", _out(f)], "alpha"),
    ("train-bad-option-key", lambda f: ["train", "-o", "wings=2", "--out", _out(f)], "wings"),
    ("train-option-syntax", lambda f: ["train", "-o", "alpha", "--out", _out(f)], "alpha"),
    ("train-size", lambda f: ["train", "--input-size", "100", "--out", _out(f)], "100"),
    ("train-batch", lambda f: ["train", "--batch-size", "0", "--out", _out(f)], "--batch-size"),
    ("train-lr", lambda f: ["train", "--lr", "-1", "--out", _out(f)], "--lr"),
    ("train-unknown-data", lambda f: ["train", "--data", "synthetic-cats", "--out", _out(f)],
     "synthetic-cats"),
    ("train-augment-range", lambda f: ["train", "--augment", "contrast=2", "--out", _out(f)],
     "contrast"),
    ("train-augment-key", lambda f: ["train", "--augment", "hue=0.1", "--out", _out(f)], "hue"),
    ("train-augment-syntax", lambda f: ["train", "--augment", "noise", "--out", _out(f)],
     "--augment"),
    ("train-normalize-kind", lambda f: ["train", "--normalize", "zscore", "--out", _out(f)],
     "--normalize"),
    ("train-normalize-empty", lambda f: ["train", "--normalize", "percentile:", "--out", _out(f)],
     "--normalize"),
    ("train-normalize-tiny-std", lambda f: ["train", "--normalize", "meanstd:0.5/1e-40", "--out",
                                            _out(f)], "--normalize"),
    ("train-steps-and-epochs", lambda f: ["train", "--steps", "5", "--epochs", "1", "--out",
                                          _out(f)], "--steps"),
    ("optimize-prune", lambda f: ["optimize", str(f["model.keras"]), "--prune", "1.5", "--out",
                                  _out(f)], "--prune"),
    ("optimize-structured", lambda f: ["optimize", str(f["model.keras"]), "--structured", "5:4",
                                       "--out", _out(f)], "--structured"),
    ("optimize-nothing", lambda f: ["optimize", str(f["model.keras"]), "--out", _out(f)],
     "--prune"),
    ("convert-quant", lambda f: ["convert", str(f["model.keras"]), "--quant", "int4", "--out",
                                 str(f["dir"] / "o.tflite")], "--quant"),
    ("convert-suffix", lambda f: ["convert", str(f["model.keras"]), "--out",
                                  str(f["dir"] / "o.pb")], "o.pb"),
    ("convert-onnx-dynamic", lambda f: ["convert", str(f["model.keras"]), "--quant", "dynamic",
                                     "--out", str(f["dir"] / "o.onnx")], "--quant"),
    ("convert-size", lambda f: ["convert", str(f["model.keras"]), "--input-size", "50", "--out",
                                str(f["dir"] / "o.tflite")], "50"),
    ("bench-threads", lambda f: ["bench", str(f["model.tflite"]), "--threads", "0"], "--threads"),
    ("bench-threads-text", lambda f: ["bench", str(f["model.tflite"]), "--threads", "two"],
     "--threads"),
    ("bench-runs", lambda f: ["bench", str(f["model.tflite"]), "--runs", "0"], "--runs"),
    ("bench-data", lambda f: ["bench", str(f["model.tflite"]), "--data", "synthetic-dogs"],
     "synthetic-dogs"),
    ("predict-tile", lambda f: ["predict", str(f["model.tflite"]), str(f["half.jpg"]), "--tile",
                                "0", "--out", _out(f)], "--tile"),
    ("predict-threads", lambda f: ["predict", str(f["model.tflite"]), str(f["half.jpg"]),
                                   "--threads", "0", "--out", _out(f)], "--threads"),
    ("inspect-runs", lambda f: ["inspect", str(f["model.tflite"]), "--profile", "--runs", "0"],
     "--runs"),
    ("check-limit", lambda f: ["check", str(f["wrong.json"]), "--max-dice-drop", "-1"],
     "--max-dice-drop"),
    ("run-until", lambda f: ["run", "--until", "deploy", "--out", _out(f)], "--until"),
    ("run-threads", lambda f: ["run", "--threads", "0", "--out", _out(f)], "--threads"),
    ("run-model", lambda f: ["run", "--model", "resnet", "--out", _out(f)], "resnet"),
    ("data-synth-n", lambda f: ["data", "synth", "--n", "0", "--out", _out(f)], "--n"),
    # options that shape built-in data only, given with a folder (they were ignored)
    ("eval-n-folder", lambda f: ["eval", str(f["model.tflite"]), "--data", str(f["good"]), "--n",
                                 "3"], "--n shapes the built-in datasets"),
    ("eval-seed-folder", lambda f: ["eval", str(f["model.tflite"]), "--data", str(f["good"]),
                                    "--seed", "3"], "--seed shapes the built-in datasets"),
    ("train-typo-builtin", lambda f: ["train", "--data", "synthetic-nucle", "--out", _out(f)],
     "not a built-in dataset (synthetic-nuclei, synthetic-shapes)"),
    ("train-n-train-folder", lambda f: ["train", "--data", str(f["good"]), "--n-train", "3",
                                        "--out", _out(f)], "--n-train shapes the built-in"),
    ("eval-tile-folder", lambda f: ["eval", str(f["model.keras"]), "--data", str(f["good"]),
                                    "--input-size", "50"], "must be a multiple of 16"),
    ("data-synth-kind", lambda f: ["data", "synth", "--kind", "cats", "--out", _out(f)], "--kind"),
    ("data-info-missing", lambda f: ["data", "info", str(f["dir"] / "nodata")], "nodata"),
    ("data-info-empty", lambda f: ["data", "info", str(f["empty_folder"])], "empty_folder"),
    ("models-size", lambda f: ["models", "--input-size", "100"], "100"),
    ("models-name", lambda f: ["models", "--model", "resnet"], "resnet"),
    ("models-option", lambda f: ["models", "-o", "merge=sum"], "merge"),
    ("unknown-command", lambda f: ["deploy"], "deploy"),
    # ---- issue 15: nothing written over an input ---------------------------------------------------
    ("eval-json-over-model", lambda f: ["eval", str(f["model.tflite"]), "--json",
                                        str(f["model.tflite"])], "--json"),
    ("bench-json-over-model", lambda f: ["bench", str(f["model.tflite"]), "--json",
                                         str(f["model.tflite"])], "--json"),
    ("eval-json-over-card", lambda f: ["eval", str(f["model.keras"]), "--json",
                                       str(f["model.keras"]) + ".json"], "card"),
    ("check-baseline-over-card", lambda f: ["check", str(f["report.json"]), "--write-baseline",
                                            str(f["model.keras"]) + ".json"], "card"),
    ("check-baseline-over-report", lambda f: ["check", str(f["report.json"]), "--write-baseline",
                                              str(f["report.json"])], "input"),
    ("check-baseline-and-write", lambda f: ["check", str(f["report.json"]), "--baseline",
                                            str(f["report.json"]), "--write-baseline",
                                            _out(f)], "--write-baseline"),
    ("convert-out-is-source", lambda f: ["convert", str(f["model.keras"]), "--to", "tflite",
                                         "--out", str(f["model.keras"])], "input"),
    ("convert-under-a-file", lambda f: ["convert", str(f["model.keras"]), "--out",
                                        str(f["report.json"] / "m.tflite")], "is a file"),
    ("predict-over-existing", lambda f: ["predict", str(f["model.tflite"]), str(f["gt"] / "cell.png"),
                                         "--out", str(f["gt"])], "--force"),
    ("predict-over-input", lambda f: ["predict", str(f["model.tflite"]), str(f["gt"] / "cell.png"),
                                      str(f["gt"] / "cell_mask.png"), "--out", str(f["gt"]),
                                      "--force"], "inputs"),
    # ---- issue 15: reports the gate cannot read ----------------------------------------------------
    *[(f"check-{kind}", (lambda kind: lambda f: ["check", str(f[kind]), "--max-dice-delta",
                                                 "0.01"])(kind), kind)
      for kind in ("ints.json", "no_dice_key.json", "string_dice.json", "zero_size.json",
                   "zero_latency.json")],
    ("check-empty-baseline", lambda f: ["check", str(f["report.json"]), "--baseline",
                                        str(f["no_rows.json"])], "no rows"),
    *[(f"check-{kind}", (lambda kind: lambda f: ["check", str(f[kind]), "--max-dice-delta",
                                                 "0.01"])(kind), kind)
      for kind in ("inf_dice.json", "big_dice.json", "twin_rows.json")],
    *[(f"check-baseline-{kind}", (lambda kind: lambda f: ["check", str(f["report.json"]),
                                                          "--baseline", str(f[kind])])(kind), word)
      for kind, word in (("inf_dice.json", "inf_dice.json"), ("big_dice.json", "big_dice.json"),
                         ("twin_rows.json", "twin_rows.json"), ("null_dice.json", "baseline"))],
    ("check-baseline-from-incomplete", lambda f: ["check", str(f["null_dice.json"]),
                                                  "--write-baseline", _out(f)], "complete"),
    ("eval-json-into-data", lambda f: ["eval", str(f["model.tflite"]), "--data", str(f["gt"]),
                                       "--json", str(f["gt"] / "cell.png")], "input folder"),
    ("bench-json-into-data", lambda f: ["bench", str(f["model.tflite"]), "--data", str(f["good"]),
                                        "--json", str(f["good"] / "masks" / "s0.png")],
     "input folder"),
    ("check-baseline-over-png", lambda f: ["check", str(f["report.json"]), "--write-baseline",
                                           str(f["gt"] / "cell.png")], "not a JSON"),
    ("eval-card-params", lambda f: ["eval", str(f["params_card"]), "--n", "2"], "another model"),
    ("eval-json-over-config", lambda f: ["eval", str(f["model.keras"]), "--json",
                                         str(f["model.keras"].parent / "config.json")],
     "not an eval report"),
    ("check-baseline-over-config", lambda f: ["check", str(f["report.json"]), "--write-baseline",
                                              str(f["model.keras"].parent / "config.json")],
     "not a bench report"),
    ("check-folder-baseline", lambda f: ["check", str(f["report.json"]), "--baseline",
                                         str(f["gt"])], "gt"),
    # ---- issue 15: data that would be read wrong ---------------------------------------------------
    ("train-lossy-masks", lambda f: ["train", "--data", str(f["lossy"]), "--input-size", "32",
                                     "--out", _out(f)], "lossy"),
    ("train-twin-images", lambda f: ["train", "--data", str(f["twins"]), "--input-size", "32",
                                     "--out", _out(f)], "one name"),
    ("eval-foreign-card", lambda f: ["eval", str(f["foreign"]), "--n", "2"], "another model"),
    # ---- issue 15: sizes and model options ---------------------------------------------------------
    ("convert-huge-size", lambda f: ["convert", str(f["model.keras"]), "--input-size", "100000",
                                     "--out", str(f["dir"] / "o.tflite")], "16384"),
    ("train-huge-size", lambda f: ["train", "--input-size", "100000", "--out", _out(f)],
     "--input-size"),
    ("train-memory", lambda f: ["train", "--input-size", "16384", "--batch-size", "64", "--out",
                                _out(f)], "memory"),
    *[(f"train-option-{value}", (lambda value: lambda f: ["train", "-o", value, "--out",
                                                          _out(f)])(value), value.split("=")[0])
      for value in ("alpha=NaN", "alpha=Infinity", "alpha=1e9", "input_size=32", "channels=3",
                    "num_classes=2", "bn_momentum=2", "depth=99", "base_filters=0.5")],
    ("convert-dynamic-tflite", lambda f: ["convert", str(f["model.keras"]), "--dynamic", "--out",
                                          str(f["dir"] / "o.tflite")], "--dynamic"),
]


def _snapshot(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gives_one_line_exit_2_and_leaves_nothing(bad, case):
    name, argv, word = case
    word = bad[word].name if word in bad else word  # a file's key: its name must be in the line
    before = _snapshot(bad["dir"])
    result = CliRunner().invoke(cli, argv(bad))
    output = result.output
    lines = [line for line in output.splitlines() if line.strip()]
    assert result.exit_code == 2, (name, result.exit_code, output, result.exception)
    assert "Traceback" not in output and not isinstance(result.exception, (AssertionError,
                                                                           TypeError, KeyError))
    assert len(lines) == 1 or _is_usage_error(lines), (name, output)
    assert word.lower() in lines[-1].lower(), (name, word, output)
    assert _snapshot(bad["dir"]) == before, (name, sorted(map(str, _snapshot(bad["dir"]) - before)))


def _is_usage_error(lines):
    """click's usage errors print the usage and a hint before the one line that says what is wrong."""
    return lines[0].startswith("Usage:") and lines[-1].startswith("Error:")


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_a_keras_model_that_carries_code_is_refused_unless_unsafe(tmp_path, suffix):
    """A Lambda layer is Python code: loading it would run it. Refused, unless --unsafe."""
    from edgeseg._keras import keras, layers

    inputs = layers.Input((16, 16, 1), name="image")
    x = layers.Conv2D(1, 1, name="head_logits")(inputs)
    x = layers.Lambda(lambda t: t * 1.0, name="code")(x)
    model = keras.Model(inputs, layers.Activation("sigmoid", name="probs")(x))
    path = tmp_path / f"lambda{suffix}"
    model.save(path)
    for argv in (["eval", str(path), "--n", "2", "--input-size", "16"],
                 ["convert", str(path), "--out", str(tmp_path / "m.tflite")]):
        result = CliRunner().invoke(cli, argv)
        assert result.exit_code == 2, result.output
        assert "carries Python code" in result.output and str(path) in result.output
        assert "--unsafe" in result.output
    assert not (tmp_path / "m.tflite").exists()
    result = CliRunner().invoke(cli, ["eval", str(path), "--n", "2", "--input-size", "16",
                                      "--unsafe"])
    assert result.exit_code == 0, result.output
