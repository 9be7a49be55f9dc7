"""The command line: lazy imports, help for every command, `edgeseg models`, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from edgeseg.cli import COMMANDS, cli

ALL_COMMANDS = sorted(COMMANDS)


def test_design_commands_are_all_registered():
    design = {"run", "data", "train", "eval", "optimize", "convert", "inspect", "bench",
              "predict", "check", "models"}
    assert design <= set(ALL_COMMANDS)


def test_help_and_every_command_help_import_no_tensorflow():
    code = (
        "import sys\n"
        "from edgeseg.cli import cli\n"
        f"for args in [['--help'], ['--version'], *[[c, '--help'] for c in {ALL_COMMANDS!r}]]:\n"
        "    try:\n"
        "        cli(args, prog_name='edgeseg')\n"
        "    except SystemExit as e:\n"
        "        assert e.code == 0, (args, e.code)\n"
        "print('tensorflow' in sys.modules, 'tf_keras' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False False"


@pytest.mark.parametrize("command", ALL_COMMANDS)
def test_every_command_has_help(runner, command):
    result = runner.invoke(cli, [command, "--help"])
    assert result.exit_code == 0
    assert f"Usage: cli {command} " in result.output, result.output


def test_version(runner):
    from edgeseg import __version__

    result = runner.invoke(cli, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


def test_models_lists_the_zoo_with_params_and_macs(runner):
    result = runner.invoke(cli, ["models", "--input-size", "64"])
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line.split() for line in result.output.splitlines()[2:]}
    assert set(lines) == {"mobile_unet", "unet", "tutorial_unet", "xception_unet",
                          "lraspp_mobilenetv3", "fast_scnn", "deeplabv3plus_mobilenetv2"}
    assert float(lines["mobile_unet"][3]) == 1.0
    assert float(lines["unet"][3]) >= 20


def test_models_json_with_options(runner):
    result = runner.invoke(cli, ["models", "--input-size", "64", "--model", "mobile_unet",
                                 "-o", "alpha=0.5", "-o", "upsample=transpose", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    from edgeseg.device.flops import keras_cost
    from edgeseg.models import create_model

    want = keras_cost(create_model("mobile_unet", input_size=64, alpha=0.5, upsample="transpose"))
    assert data["models"] == [{"model": "mobile_unet", "params": want.params, "macs": want.macs}]


def test_models_layers_prints_per_layer_tables(runner):
    result = runner.invoke(cli, ["models", "--input-size", "32", "--model", "unet", "-o", "base=4",
                                 "--layers"])
    assert result.exit_code == 0, result.output
    assert "enc0_conv1" in result.output and "total" in result.output


@pytest.mark.parametrize("args, message", [
    (["models", "--input-size", "100"], "does not divide by 16"),
    (["models", "--model", "nope"], "unknown model 'nope'; valid models:"),
    (["models", "--model", "mobile_unet", "-o", "upsample=cubic"], "upsample must be one of"),
    (["models", "-o", "alpha"], "'alpha' is not KEY=VALUE"),
    (["models", "--input-size", "0"], "--input-size"),
])
def test_bad_input_gives_one_line_and_exit_2(runner, args, message):
    result = runner.invoke(cli, args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_console_script_is_installed():
    out = subprocess.run(["edgeseg", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and "edgeseg, version" in out.stdout


def test_tools_install_leaves_a_folder_it_did_not_make(tmp_path, monkeypatch):
    """A tool's environment goes under the cache's tools folder; a folder there that edgeseg
    did not make is refused in one line and left as it is."""
    from click.testing import CliRunner

    monkeypatch.setenv("EDGESEG_CACHE", str(tmp_path))
    mine = tmp_path / "tools" / "onnx2tf" / "notes.txt"
    mine.parent.mkdir(parents=True)
    mine.write_text("mine")
    result = CliRunner().invoke(cli, ["tools", "install", "onnx2tf"])
    assert result.exit_code == 2 and "not an environment edgeseg made" in result.output
    assert mine.read_text() == "mine" and len(list(mine.parent.iterdir())) == 1
    unknown = CliRunner().invoke(cli, ["tools", "install", "tflite2onnx"])
    assert unknown.exit_code == 2 and "onnx2tf" in unknown.output
