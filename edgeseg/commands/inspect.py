"""``edgeseg inspect``: ops, types, float islands, MACs and bytes of a .tflite or .onnx file."""

from __future__ import annotations

import click

from edgeseg.commands.options import size_option


@click.command(short_help="Ops, dtypes, float islands, delegate coverage, MACs of a model file.")
@click.argument("model_path", metavar="MODEL", type=click.Path())
@size_option("Count MACs of a dynamic-size ONNX model at this size, N or HxW [its card's].")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--profile", is_flag=True,
              help="Also time every op in the file's runtime (LiteRT or ONNX Runtime).")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="With --profile: runtime threads.")
@click.option("--runs", type=click.IntRange(min=1), default=50, show_default=True,
              help="With --profile: timed runs (medians are reported).")
@click.option("--target", "targets", multiple=True, metavar="NAME[,NAME...]",
              help="Also estimate for a target that cannot run here (repeatable): "
                   "ethos-u55-128, ethos-u55-256, ethos-u65-256, ethos-u65-512, ethos-u85-256 "
                   "(Arm's Vela), cortex-m or tflm (TensorFlow Lite Micro). Needs "
                   "edgeseg[targets].")
def inspect(model_path, input_size, as_json, profile, threads, runs, targets):
    """Describe MODEL from the file alone (no Keras): its ops and their counts, input/output types
    and quantization, tensors left in float inside an integer graph ("float islands"), ops that
    need dynamic shapes, MACs and params, where the bytes go, and for .tflite which ops LiteRT's
    XNNPACK delegate takes. ``--profile`` adds where the time goes, per op type and for the slowest
    ops: ONNX Runtime's own profiler for .onnx; for .tflite, differences of graph prefixes timed
    in LiteRT (its Python interpreter has no op profiler; see edgeseg.profiling).

    \b
    edgeseg inspect model_int8.tflite
    edgeseg inspect model_int8.onnx --json
    edgeseg inspect model_fp32.tflite --profile --threads 1
    edgeseg inspect model_int8.tflite --target ethos-u55-128,ethos-u65-256 --target cortex-m

    ``--target`` adds, per target, what its vendor's tool says: for Ethos-U NPUs Vela's
    estimated time and cycles at the stated clock, SRAM and flash use and the ops left to the
    CPU; for Cortex-M whether TFLite Micro has a kernel for every op and the tensor arena it
    needs. Dice on a target: `edgeseg bench FILE --target NAME`.
    """
    import json

    from edgeseg.device.errors import EdgesegError
    from edgeseg.device.targets import parse_targets
    from edgeseg.inspection import format_report, inspect_file

    targets = parse_targets(targets)  # an unknown name fails before any work
    report = inspect_file(model_path, input_size)
    if targets:
        from edgeseg.device.targets import estimate

        if report["format"] != "tflite":
            raise click.UsageError(f"--target: {model_path} is an .onnx; the targets take an int8 "
                                   f".tflite (convert --quant int8)")
        rows, refused = [], {}
        for name in targets:  # a target that refuses this file does not take the others down
            try:
                rows += estimate(model_path, [name])
            except EdgesegError as error:
                refused[name] = str(error)
        if not rows:
            raise EdgesegError(next(iter(refused.values())))
        report["targets"], report["targets_refused"] = rows, refused
    if profile:
        from edgeseg.profiling import format_profile, profile_file

        report["profile"] = profile_file(model_path, threads=threads, runs=runs)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(format_report(report))
    if targets:
        from edgeseg.device.targets import format_rows

        click.echo(format_rows(report["targets"]))
        for name, why in report["targets_refused"].items():
            click.echo(f"{name}: not estimated: {why}")
    if profile:
        click.echo("")
        click.echo(format_profile(report["profile"]))
