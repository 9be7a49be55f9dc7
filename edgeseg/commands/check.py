"""``edgeseg check``: the regression gate; exit 1 on any regression."""

from __future__ import annotations

import click


@click.command(short_help="Accuracy/latency/size regression gate against a baseline.")
@click.argument("report_path", metavar="REPORT", type=click.Path())
@click.option("--baseline", type=click.Path(), help="A bench JSON to compare with.")
@click.option("--write-baseline", type=click.Path(dir_okay=False),
              help="Record REPORT as a baseline here (and check nothing else).")
@click.option("--max-dice-drop", type=click.FloatRange(min=0), default=0.01, show_default=True,
              help="Allowed fall of a variant's Dice against the baseline.")
@click.option("--max-latency-ratio", type=click.FloatRange(min=1), default=1.25, show_default=True,
              help="Allowed growth of a variant's p50 latency.")
@click.option("--max-size-ratio", type=click.FloatRange(min=1), default=1.05, show_default=True,
              help="Allowed growth of a variant's file size.")
@click.option("--max-dice-delta", type=click.FloatRange(min=0),
              help="Allowed Dice below the report's own reference, for every variant.")
@click.option("--max-arena", multiple=True, metavar="[TARGET=]SIZE",
              help="Targets' tensor arena at most SIZE (512KB, 1MB), for one TARGET or all "
                   "(repeatable).")
@click.option("--max-sram", multiple=True, metavar="[TARGET=]SIZE",
              help="Targets' SRAM (Vela's figure) at most SIZE (repeatable).")
@click.option("--max-flash", multiple=True, metavar="[TARGET=]SIZE",
              help="Targets' flash at most SIZE (repeatable).")
@click.option("--max-latency", multiple=True, metavar="[TARGET=]MS",
              help="Targets' estimated latency at most MS milliseconds (repeatable).")
def check(report_path, baseline, write_baseline, max_dice_drop, max_latency_ratio, max_size_ratio,
          max_dice_delta, max_arena, max_sram, max_flash, max_latency):
    """Compare REPORT (a bench JSON: report.json of `edgeseg run`, or `bench --json`) per variant,
    runtime and thread count with --baseline; print each violation; exit 1 if there is any.

    \b
    edgeseg check runs/nuclei/report.json --write-baseline baselines/nuclei.json
    edgeseg check runs/nuclei/report.json --baseline baselines/nuclei.json
    edgeseg check runs/nuclei/report.json --max-dice-delta 0.01
    edgeseg check bench.json --max-arena cortex-m=512KB --max-latency ethos-u55-128=20

    The target budgets (--max-arena, --max-sram, --max-flash, --max-latency) hold the rows of
    `bench --target` to absolute limits: a named target without a row or a figure fails.
    """
    from edgeseg.device.benchjson import is_bench_report, load_report
    from edgeseg.device.files import atomic_write_json, check_output
    from edgeseg.gate import compare, parse_budget

    budgets = [parse_budget(value, key, option)
               for key, option, values in (("arena_bytes", "--max-arena", max_arena),
                                           ("sram_bytes", "--max-sram", max_sram),
                                           ("flash_bytes", "--max-flash", max_flash),
                                           ("latency_ms", "--max-latency", max_latency))
               for value in values]
    if write_baseline and (baseline or max_dice_delta is not None or budgets):
        raise click.UsageError("--write-baseline records REPORT and checks nothing: give it alone, "
                               "or check with --baseline / --max-dice-delta")
    if write_baseline:
        write_baseline = check_output(write_baseline, inputs=[report_path],
                                      option="--write-baseline",
                                      kind=("a bench report", is_bench_report))
    report = load_report(report_path)
    if write_baseline and any(row["dice"] is None or row["dice"] != row["dice"]
                              for row in report["results"]):
        raise click.UsageError(f"{report_path} has rows without a measured Dice; a baseline must "
                               f"be complete")
    if write_baseline:
        atomic_write_json(write_baseline, report)
        click.echo(f"recorded {len(report['results'])} rows of {report_path} as {write_baseline}")
        return
    if baseline is None and max_dice_delta is None and not budgets:
        raise click.UsageError("give --baseline, --max-dice-delta, a target budget (--max-arena, "
                               "--max-sram, --max-flash, --max-latency) or --write-baseline")
    notes: list[str] = []
    problems = compare(report, load_report(baseline) if baseline else None,
                       max_dice_drop=max_dice_drop, max_latency_ratio=max_latency_ratio,
                       max_size_ratio=max_size_ratio, max_dice_delta=max_dice_delta, notes=notes,
                       budgets=budgets)
    for note in notes:
        click.echo(f"note: {note}")
    for problem in problems:
        click.echo(f"REGRESSION {problem}")
    rows = len(report["results"])
    if problems:
        click.echo(f"{len(problems)} regression(s) in {rows} rows")
        raise SystemExit(1)
    skipped = sum("latency not compared" in note for note in notes)
    click.echo(f"ok: {rows} rows, no regression" +
               (f" (latency not compared for {skipped} of them: see the notes)" if skipped else ""))
