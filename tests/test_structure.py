"""The shape of the code, read from its imports (ast; nothing is run): the device side is a place
that never reaches TensorFlow or the host side, the modules import each other without cycles, and
no module takes another's private names. Each rule is also shown to catch a planted offender."""

from __future__ import annotations

from pathlib import Path

import pytest
from import_rules import (
    cycles,
    device_modules,
    device_violations,
    graph,
    private_imports,
)

ROOT = Path(__file__).resolve().parents[1]


def test_the_device_side_imports_no_tensorflow_and_nothing_of_the_host_side():
    assert device_violations(ROOT) == []


def test_the_project_modules_import_each_other_without_cycles():
    assert cycles(graph(ROOT)) == []


def test_no_module_imports_another_modules_private_names():
    assert private_imports(ROOT) == []


def test_only_the_orchestration_inside_edgeseg_imports_converters_or_benchmarks():
    reaching = {module: sorted(t for t in targets if t.startswith(("converters", "benchmarks")))
                for module, targets in graph(ROOT).items()
                if module.startswith("edgeseg") and not module.startswith(
                    ("edgeseg.commands", "edgeseg.pipeline"))}
    assert {module: found for module, found in reaching.items() if found} == {}


def test_the_device_side_holds_the_harness_the_runtimes_and_the_scoring():
    device = device_modules(ROOT)
    for needed in ("benchmarks.harness", "benchmarks.board", "edgeseg.device.runtime",
                   "edgeseg.device.card", "edgeseg.device.scoring", "edgeseg.device.tiling",
                   "edgeseg.device.benchjson", "edgeseg.device.metrics"):
        assert needed in device
    assert not any(name.startswith("benchmarks.studies") for name in device)


def test_what_ships_to_a_board_is_the_device_side_as_it_is_on_disk():
    from benchmarks.remote import device_sources

    shipped = {path.as_posix() for path in device_sources()}
    on_disk = {path.relative_to(ROOT).as_posix() for path in device_modules(ROOT).values()}
    assert shipped == on_disk


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for package in ("edgeseg", "converters", "benchmarks"):
        (tmp_path / package).mkdir(exist_ok=True)
        (tmp_path / package / "__init__.py").touch()
    return tmp_path


def test_a_planted_cycle_is_found_even_inside_a_function(tmp_path):
    root = _tree(tmp_path, {
        "edgeseg/a.py": "from edgeseg import b\n",
        "edgeseg/b.py": "def f():\n    from edgeseg.c import g\n",
        "edgeseg/c.py": "import edgeseg.a\n",
    })
    assert cycles(graph(root)) == [["edgeseg.a", "edgeseg.b", "edgeseg.c"]]


@pytest.mark.parametrize("line, says", [
    ("def f():\n    import tensorflow as tf\n", "imports tensorflow"),
    ("from edgeseg.train import fit\n", "host-side module edgeseg.train"),
    ("import matplotlib.pyplot\n", "imports matplotlib.pyplot"),
    ("import pandas\n", "not a device dependency"),
])
def test_a_planted_forbidden_import_on_the_device_side_is_found(tmp_path, line, says):
    root = _tree(tmp_path, {"edgeseg/device/__init__.py": "", "edgeseg/device/x.py": line,
                            "edgeseg/train.py": "", "benchmarks/harness.py": "import numpy\n"})
    found = device_violations(root)
    assert len(found) == 1 and found[0].startswith("edgeseg/device/x.py:") and says in found[0]


def test_host_side_studies_may_import_anything(tmp_path):
    root = _tree(tmp_path, {"benchmarks/studies/__init__.py": "",
                            "benchmarks/studies/peers.py": "import tensorflow\n"
                                                           "from edgeseg.train import fit\n",
                            "edgeseg/train.py": ""})
    assert device_violations(root) == []


def test_a_planted_private_import_is_found(tmp_path):
    root = _tree(tmp_path, {"edgeseg/a.py": "def _secret(): pass\n",
                            "edgeseg/b.py": "from edgeseg.a import _secret\n",
                            "edgeseg/commands/_options.py": "",
                            "benchmarks/command.py": "from edgeseg.commands._options import x\n",
                            "edgeseg/commands/run.py": "from edgeseg.commands._options import x\n",
                            "edgeseg/c.py": "from edgeseg import a\nx = a._secret\n"})
    assert sorted(private_imports(root)) == ["benchmarks.command <- edgeseg.commands._options",
                                            "edgeseg.b <- edgeseg.a._secret",
                                            "edgeseg.c <- edgeseg.a._secret"]


def test_the_public_paths_users_rely_on_still_import():
    import inspect

    import converters
    from edgeseg import runtime
    from edgeseg.models import create_model

    assert callable(runtime.load) and callable(create_model)
    assert list(inspect.signature(converters.convert).parameters)[:3] == ["model_path", "out",
                                                                          "config"]
    assert converters.ConvertConfig().quant == "none"


def test_the_device_harness_says_where_keras_models_are_benchmarked(tmp_path):
    import subprocess
    import sys

    model = tmp_path / "unet.keras"
    model.write_bytes(b"PK")  # the name is enough: the harness refuses it before reading it
    done = subprocess.run([sys.executable, "-m", "benchmarks", str(model)], capture_output=True,
                          text=True)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"Error: {model}: a Keras model; this runtime runs .tflite and .onnx files: convert it "
        f"(edgeseg convert), or benchmark it with edgeseg bench on a machine with edgeseg[train]"]
