"""The harness's command line, shared by ``python -m benchmarks`` and ``edgeseg bench`` (which
adds Keras models and boards over SSH to it)."""

from __future__ import annotations

import click

from edgeseg.device.cli_options import contract_from, contract_options, parse_threads
from edgeseg.device.entry import Command


def options(function):
    """The harness's options (MODEL... and the rest), applied to a click command."""
    decorators = [
        click.argument("models", nargs=-1, required=True, metavar="MODEL...",
                       type=click.Path()),
        click.option("--data", default="synthetic-nuclei", show_default=True, metavar="NAME|DIR",
                     help="A built-in dataset (held-out samples) or a labelled folder."),
        click.option("--layout", help="Folder layout (default: detected)."),
        click.option("--reference", type=click.Path(), metavar="MODEL",
                     help="Model for Dice delta and agreement [the first fp32 one]."),
        click.option("--threads", default="1", show_default=True, callback=parse_threads,
                     help="Thread counts, e.g. 1,2."),
        click.option("--runs", type=click.IntRange(min=1), default=50, show_default=True,
                     help="Timed round-robin iterations."),
        click.option("--warmup", type=click.IntRange(min=0), default=5, show_default=True),
        click.option("--samples", type=click.IntRange(min=0), default=32, show_default=True,
                     help="Images to score (built-in datasets; folders: at most, 0 = all)."),
        click.option("--image-size", type=click.IntRange(min=8),
                     help="Built-in datasets: image side [the models' input size]."),
        click.option("--json", "json_out", type=click.Path(dir_okay=False),
                     help="Write the bench JSON here."),
        click.option("--frame", metavar="HxW",
                     help="Also time each model end to end as an app runs it: a uint8 camera "
                          "frame of this size (e.g. 480x640) resized to the input and normalised, "
                          "invoked, its mask resized back; each stage and the total."),
        click.option("--sustained", is_flag=True,
                     help="Also run each model as a single stream (--sustained-queries and "
                          "--sustained-seconds, both): p50/p90/p99 and the drift from the first "
                          "tenth to the last (throttling)."),
        click.option("--sustained-queries", type=click.IntRange(min=1), default=1024,
                     show_default=True, help="Sustained run: at least this many queries."),
        click.option("--sustained-seconds", type=click.FloatRange(min=0), default=60.0,
                     show_default=True, help="Sustained run: at least this long."),
        click.option("--quiet", is_flag=True, help="No progress bar."),
        click.option("--no-amx", is_flag=True,
                     help="Keep the runtimes off Intel AMX (a seccomp filter refuses the kernel's "
                          "AMX permission): what a CPU with AVX-512 VNNI but no AMX would run. "
                          "The machine line says 'AMX-INT8 denied'."),
        click.option("--target", "targets", multiple=True, metavar="NAME[,NAME...]",
                     help="Add a row per .tflite for a target that cannot run here (repeatable): "
                          "ethos-u55-128/-256, ethos-u65-256/-512, ethos-u85-256 (Vela "
                          "estimate), cortex-m (TFLite Micro: arena, Dice). Needs "
                          "edgeseg[targets]."),
        contract_options,
    ]
    for decorator in reversed(decorators):
        function = decorator(function)
    return function


def run(models, data, layout, reference, threads, runs, warmup, samples, image_size, json_out,
        quiet, targets=(), load=None, remote=None, no_amx=False, frame=None, sustained=False,
        sustained_queries=1024, sustained_seconds=60.0, **contract) -> dict:
    """Run the harness with parsed options (on a board: ``remote``, the keyword arguments of
    :func:`benchmarks.remote.bench_remote` that say where; ``load``: how model files are opened,
    see :func:`benchmarks.harness.bench`); write the JSON atomically."""
    from benchmarks.app_latency import parse_frame
    from benchmarks.harness import bench
    from edgeseg.device.benchjson import is_bench_report
    from edgeseg.device.files import atomic_write_json, check_output

    frame = parse_frame(frame)  # a bad --frame fails before any work
    app = {"frame": frame,
           "sustained": (sustained_queries, sustained_seconds) if sustained else None}
    if json_out:
        json_out = check_output(json_out, inputs=[*models, reference, data], option="--json",
                                kind=("a bench report", is_bench_report))

    if no_amx:
        if remote:
            raise click.UsageError("--no-amx applies to this machine, not to a board (--on)")
        from edgeseg.device.machine import deny_amx

        deny_amx()  # before any runtime loads a model
    if remote and targets:
        raise click.UsageError("--target estimates run here and --on runs files on a board: "
                               "give them to two bench commands")
    if remote:
        from benchmarks.remote import bench_remote

        report = bench_remote(list(models), data=data, layout=layout, reference=reference,
                              threads=threads, runs=runs, warmup=warmup, samples=samples,
                              image_size=image_size, progress=not quiet,
                              contract=contract_from(**contract), load=load,
                              echo=click.echo, **app, **remote)
    else:
        report = bench(list(models), data=data, layout=layout, reference=reference,
                       threads=threads, runs=runs, warmup=warmup, samples=samples,
                       image_size=image_size, progress=not quiet,
                       contract=contract_from(**contract), load=load, targets=targets,
                       echo=click.echo, **app)
    if json_out:
        atomic_write_json(json_out, report)
        click.echo(f"wrote {json_out}")
    return report


@click.command("benchmarks", cls=Command, context_settings={"help_option_names": ["-h", "--help"]})
@options
def main(**kwargs):
    """Benchmark .tflite/.onnx models on this device: latency (round robin), MACs, size, sparsity,
    and Dice against ground truth and against a reference model. Needs numpy and a runtime only
    (Keras models: edgeseg bench, on a machine with edgeseg[train]).

    \b
    python -m benchmarks model_fp32.tflite model_int8.tflite --threads 1,2 --json bench.json
    python -m benchmarks model_int8.tflite --data my_test_set/ --runs 200
    """
    run(**kwargs)
