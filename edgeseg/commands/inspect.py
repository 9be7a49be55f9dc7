"""``edgeseg inspect``: ops, types, float islands, MACs and bytes of a .tflite or .onnx file."""

from __future__ import annotations

import click


@click.command(short_help="Ops, dtypes, float islands, delegate coverage, MACs of a model file.")
@click.argument("model_path", metavar="MODEL", type=click.Path())
@click.option("--input-size", type=click.IntRange(min=1),
              help="Count MACs of a dynamic-size ONNX model at this size [its card's].")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def inspect(model_path, input_size, as_json):
    """Describe MODEL from the file alone (no Keras): its ops and their counts, input/output types
    and quantization, tensors left in float inside an integer graph ("float islands"), ops that
    need dynamic shapes, MACs and params, where the bytes go, and for .tflite which ops LiteRT's
    XNNPACK delegate takes.

    \b
    edgeseg inspect model_int8.tflite
    edgeseg inspect model_int8.onnx --json
    """
    import json

    from edgeseg.inspection import format_report, inspect_file

    report = inspect_file(model_path, input_size)
    click.echo(json.dumps(report, indent=2) if as_json else format_report(report))
