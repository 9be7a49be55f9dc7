"""The field's converters that pin their own TensorFlow, each in a virtual environment of its own.

onnx2tf (ONNX -> TFLite) pins TensorFlow 2.19, onnx and onnxruntime versions of its own: installed
beside edgeseg it would replace edgeseg's. ``edgeseg tools install onnx2tf`` makes its environment
once under ``$EDGESEG_CACHE/tools/onnx2tf`` (default ``~/.cache/edgeseg``) and records what went in
(``tool.json``: the pins, the versions installed, the Python); converting runs it there as a
subprocess. ``EDGESEG_ONNX2TF_PYTHON`` names a Python of another such environment instead.

    edgeseg tools install onnx2tf
    edgeseg convert model.onnx --quant int8 --calib data/cells --out model_int8.tflite
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from edgeseg.device.errors import ConfigError

# what each environment installs (the tool pins the rest), and what its record reports
TOOLS = {"onnx2tf": {"requirements": ["onnx2tf==1.29.24"],
                     "versions": ["onnx2tf", "tensorflow", "onnx", "onnxruntime"],
                     "what": "ONNX -> TFLite"}}
RECORD = "tool.json"


def tools_root() -> Path:
    base = os.environ.get("EDGESEG_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "edgeseg")
    return Path(base) / "tools"


def _known(name: str) -> dict:
    if name not in TOOLS:
        raise ConfigError(f"unknown tool {name!r}: edgeseg installs {', '.join(TOOLS)}")
    return TOOLS[name]


def tool_python(name: str) -> tuple[Path, dict]:
    """(the Python of ``name``'s environment, its record); one line on how to make it if none."""
    _known(name)
    named = os.environ.get(f"EDGESEG_{name.upper()}_PYTHON")
    if named:
        python = Path(named)
        if not python.is_file():
            raise ConfigError(f"EDGESEG_{name.upper()}_PYTHON={named}: no such Python")
        return python, {"python": str(python), "versions": versions(python, name)}
    home = tools_root() / name
    record = home / RECORD
    if not record.is_file():
        raise ConfigError(f"{TOOLS[name]['what']} runs {name} in an environment of its own (it "
                          f"pins its own TensorFlow): make it once with `edgeseg tools install "
                          f"{name}` (about 3 GB in {home}), or name one with "
                          f"EDGESEG_{name.upper()}_PYTHON")
    return home / "bin" / "python", json.loads(record.read_text())


def versions(python: Path, name: str) -> dict:
    """The installed versions of what ``name``'s record reports, read in its environment."""
    code = ("import json, importlib.metadata as m\nout = {}\nfor p in %r:\n    try:\n"
            "        out[p] = m.version(p)\n    except m.PackageNotFoundError:\n"
            "        out[p] = None\nprint(json.dumps(out))" % TOOLS[name]["versions"])
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise ConfigError(f"{python}: cannot read its packages: "
                          f"{(done.stderr.strip().splitlines() or ['no output'])[-1]}")
    found = json.loads(done.stdout.strip().splitlines()[-1])
    if not found.get(name):
        raise ConfigError(f"{python}: {name} is not installed in that environment")
    return found


def install(name: str, python: str = sys.executable, echo=print) -> dict:
    """Make ``name``'s environment (a venv of ``python``) and its record; an environment made
    before is kept. A folder left by an interrupted install (no record) is made again: nothing
    else lives under the tools folder."""
    spec = _known(name)
    home = tools_root() / name
    record = home / RECORD
    if record.is_file():
        echo(f"{name}: already installed in {home}")
        return json.loads(record.read_text())
    if home.exists():
        if not (home / "pyvenv.cfg").is_file():
            raise ConfigError(f"{home}: exists and is not an environment edgeseg made; move it")
        shutil.rmtree(home)  # an interrupted install of ours
    home.parent.mkdir(parents=True, exist_ok=True)
    echo(f"{name}: making its environment in {home} (pip install {' '.join(spec['requirements'])})")
    for step in ([python, "-m", "venv", str(home)],
                 [str(home / "bin" / "python"), "-m", "pip", "install", "-q",
                  *spec["requirements"]]):
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode != 0:
            tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise ConfigError(f"{name}: {' '.join(step[:3])} ... failed: {tail} ({home} is "
                              f"kept; run the install again to retry)")
    made = {"tool": name, "requirements": spec["requirements"],
            "python": str(home / "bin" / "python"),
            "versions": versions(home / "bin" / "python", name)}
    record.write_text(json.dumps(made, indent=2) + "\n")
    echo(f"{name}: installed ({', '.join(f'{k} {v}' for k, v in made['versions'].items())})")
    return made


__all__ = ["TOOLS", "install", "tool_python", "tools_root", "versions"]
