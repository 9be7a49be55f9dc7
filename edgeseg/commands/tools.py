"""``edgeseg tools``: the environments of the converters that pin their own TensorFlow."""

from __future__ import annotations

import click


@click.group(short_help="Install the converters that need an environment of their own.")
def tools():
    """The field's converters that pin their own TensorFlow (onnx2tf: ONNX -> TFLite), each
    installed once in a virtual environment of its own under ~/.cache/edgeseg/tools
    ($EDGESEG_CACHE), so edgeseg's own packages are never replaced.

    \b
    edgeseg tools install onnx2tf
    """


@tools.command(short_help="Make a tool's environment (once) and record its versions.")
@click.argument("name", type=click.Choice(["onnx2tf"]))
@click.option("--python", "python", type=click.Path(exists=True, dir_okay=False),
              help="The Python to make the environment with [the one running edgeseg].")
def install(name, python):
    """Make NAME's virtual environment and pip install it there (about 3 GB for onnx2tf, which
    brings TensorFlow 2.19); its tool.json records the versions every conversion card names."""
    import sys

    from converters.tools import install as install_tool

    install_tool(name, python or sys.executable, echo=lambda line: click.echo(line, err=True))
