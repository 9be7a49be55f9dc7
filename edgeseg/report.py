"""Reports of a bench JSON: a Markdown table, a self-contained HTML page with plots and masks.

The HTML page needs nothing beside it: the plots (latency-vs-Dice and size-vs-Dice, Pareto fronts
marked) are PNGs made with matplotlib (the ``report`` extra) and the sample masks are PNGs, all
embedded as data URIs.

    >>> paths = write_reports(json.load(open("report.json")), "runs/nuclei")  # doctest: +SKIP
"""

from __future__ import annotations

import html
import io
from pathlib import Path

from edgeseg.device.benchjson import (
    TARGET_HEADER,
    app_lines,
    header,
    merged_rows,
    row_cells,
    slower_notes,
    targets_table,
    text_table,
    thread_counts,
)
from edgeseg.device.files import atomic_write_text


def roles_lines(report: dict) -> list[str]:
    """Which images played which role (a run's report), one line: ``Images: train 400 (...);
    ...``; none for a report without them."""
    found = report.get("roles") or {}
    if not found:
        return []
    parts = [f"{role} {entry['images'] if entry.get('images') is not None else ''} "
             f"({entry.get('from', '')})".replace("  ", " ") for role, entry in found.items()]
    return ["Images: " + "; ".join(parts) + "."]


def markdown(report: dict) -> str:
    """The report as Markdown: the machine, the data, and the table."""
    from edgeseg.device.machine import line

    threads = thread_counts(report)
    head = header(threads)
    lines = ["# edgeseg report", "",
             f"Machine: {line(report['machine'])}  ",
             f"Data: {report['dataset']['name']}, {report['dataset']['samples']} images; "
             f"reference: {report['reference']}; {report.get('run', {}).get('runs', '?')} timed "
             f"runs per model, round robin.  ", *roles_lines(report), "",
             "| " + " | ".join(head) + " |",
             "|" + "|".join("---" if i < 2 else "---:" for i in range(len(head))) + "|"]
    for row in merged_rows(report):
        lines.append("| " + " | ".join(row_cells(row, threads)) + " |")
    notes = slower_notes(report)
    if notes:
        lines += ["", *(f"Note: {note}.  " for note in notes)]
    app = app_lines(report)
    if app:
        lines += ["", "What an app waits for (ms):", "", *(f"- {text}" for text in app)]
    targets = targets_table(report)
    if targets:
        lines += ["", "## Targets", "",
                  "Ethos-U: Vela's estimate (cycles at the stated clock, of the NPU's part: ops "
                  "left to the CPU are not in it; SRAM, flash and DRAM as Vela places them), Dice "
                  "of the same .tflite in LiteRT. Cortex-M: TFLite Micro on this host (tensor "
                  "arena; flash = the file), with its own Dice.", "",
                  "| " + " | ".join(TARGET_HEADER) + " |",
                  "|" + "|".join("---" if i < 3 or i == 8 else "---:"
                                 for i in range(len(TARGET_HEADER))) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in targets]
    return "\n".join(lines) + "\n"


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both axes (lower x, higher y)."""
    front = []
    for i, (x, y) in enumerate(points):
        if not any((x2 <= x and y2 >= y) and (x2 < x or y2 > y) for x2, y2 in points):
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def label_points(ax, points, labels, fontsize: int = 7) -> list:
    """Annotate each of ``points`` (data coordinates) with its label where the label overlaps no
    other label and no marker: the nearest free spot on rings around the point, with a leader line
    when it had to move away. Call it last (after limits, legend and layout are final). Returns
    the labels' boxes in display coordinates."""
    import math

    from matplotlib.transforms import Bbox

    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    shown = [ax.transData.transform(p) for p in points]
    taken = [Bbox.from_bounds(x - 5, y - 5, 10, 10) for x, y in shown]  # the markers
    frame = ax.get_window_extent(renderer)
    rings = [(4, 3), (4, -11), (-4, 3), (-4, -11)] + [
        (r * math.cos(a), r * math.sin(a)) for r in (16, 28, 42, 58, 76, 96, 120)
        for a in (math.radians(d) for d in range(0, 360, 20))]
    boxes = []
    for index in sorted(range(len(points)), key=lambda i: (shown[i][0], -shown[i][1])):
        spot, box = rings[0], None
        for dx, dy in rings:
            note = ax.annotate(labels[index], points[index], xytext=(dx, dy),
                               textcoords="offset points", fontsize=fontsize,
                               ha="left" if dx >= 0 else "right",
                               va="bottom" if dy >= 0 else "top")
            extent = note.get_window_extent(renderer).expanded(1.05, 1.15)
            note.remove()
            if not any(extent.overlaps(other) for other in taken) and \
                    frame.contains(extent.x0, extent.y0) and frame.contains(extent.x1, extent.y1):
                spot, box = (dx, dy), extent
                break
        dx, dy = spot
        moved = box is not None and (abs(dx) > 6 or abs(dy) > 12)
        note = ax.annotate(labels[index], points[index], xytext=spot, textcoords="offset points",
                           fontsize=fontsize, ha="left" if dx >= 0 else "right",
                           va="bottom" if dy >= 0 else "top", alpha=1.0 if box else 0.6,
                           arrowprops={"arrowstyle": "-", "color": "grey", "lw": 0.6,
                                       "shrinkA": 0, "shrinkB": 3} if moved else None)
        box = box or note.get_window_extent(renderer)  # nowhere free: the first spot, faded
        taken.append(box)
        boxes.append(box)
    return boxes


def plots(report: dict) -> dict[str, str]:
    """{"latency": data URI, "size": data URI} of the two Pareto plots ({} without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return {}
    import base64

    rows = merged_rows(report)
    first = thread_counts(report)[0]
    out = {}
    for key, label, value in (
            ("latency", f"p50 latency, ms ({first} thread{'s' if first != 1 else ''})",
             lambda r: (r["latency"].get(first) or r["latency"].get(None) or {}).get("p50")),
            ("size", "size on disk, KB", lambda r: r["size_bytes"] / 1024)):
        points = [(value(r), r["dice"]) for r in rows]
        keep = [i for i, (x, y) in enumerate(points) if x is not None and y is not None]
        if not keep:  # no row with a Dice (no foreground in the scored images): no plot
            continue
        fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
        for i in keep:
            r = rows[i]
            ax.scatter(*points[i], s=36, marker="o" if r["format"] == "tflite" else
                       "s" if r["format"] == "onnx" else "^")
        front = pareto_front([points[i] for i in keep])
        xs, ys = zip(*[points[keep[i]] for i in front])
        ax.plot(xs, ys, "--o", color="grey", linewidth=1, markersize=11, markerfacecolor="none",
                label="Pareto front (nothing is both faster/smaller and better)")
        ax.legend(loc="lower right", fontsize=8)
        ax.set_xlabel(label)
        ax.set_ylabel("Dice")
        ax.grid(alpha=0.3)
        ax.margins(0.15)  # room for labels around the outer points
        fig.tight_layout()
        label_points(ax, [points[i] for i in keep],
                     [f"{rows[i]['variant']} ({rows[i]['runtime']})" for i in keep])
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        plt.close(fig)
        out[key] = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    return out


def sample_masks(report: dict, data: str, layout: str | None = None, count: int = 3,
                 contract: dict | None = None, unsafe: bool = False,
                 custom_objects: dict | None = None) -> list[dict]:
    """For ``count`` images of ``data``: the image, its ground truth and each file's mask, as
    overlay data URIs (every model file in the report run once more, in its runtime)."""
    import numpy as np

    from edgeseg import runtime
    from edgeseg.device.card import normalization_of
    from edgeseg.device.data.roles import score_data
    from edgeseg.device.errors import EdgesegError
    from edgeseg.device.preprocess import display_affine
    from edgeseg.device.scoring import labels_of
    from edgeseg.device.visualize import disagreement, overlay, png_data_uri

    models, seen = [], set()
    reference_name = None
    for row in merged_rows(report):
        if row["path"] in seen:
            continue
        seen.add(row["path"])
        try:
            models.append((f"{row['variant']} ({row['runtime']})",
                           runtime.load(row["path"], contract=contract, unsafe=unsafe,
                                        custom_objects=custom_objects, foreign_only=True)))
            if row.get("reference") and reference_name is None:
                reference_name = models[-1][0]
        except EdgesegError as error:  # e.g. a file removed since the bench: said, then left out
            from edgeseg.device.log import warn_once

            warn_once(f"the report's sample masks leave out {row['variant']} "
                      f"({row['runtime']}): {error}")
            continue
    if not models:
        return []
    first = models[0][1]
    size = next((m.input_shape[1] for _, m in models if m.input_shape[1]), 256)
    dataset = data if not isinstance(data, str) else score_data(
        data, size=size, channels=first.input_shape[-1], layout=layout,
        model_classes=max(2, first.num_classes), count=count)
    samples = []
    for index in range(min(count, len(dataset))):
        raw, truth = dataset.sample(index)
        a, b = display_affine(raw, normalization_of(first.card))  # as the model sees it
        image = np.clip(raw.astype(np.float32) * a + b, 0, 1)
        cells = [("image", png_data_uri(overlay(image, np.zeros_like(truth)), 256)),
                 ("ground truth", png_data_uri(overlay(image, truth), 256))]
        predicted = [(name, labels_of(model, raw)) for name, model in models]
        reference = dict(predicted).get(reference_name, predicted[0][1])
        differences = []
        for name, labels in predicted:
            cells.append((name, png_data_uri(overlay(image, labels), 256)))
            if labels is not reference:
                picture, counts = disagreement(image, labels, reference, truth)
                differences.append(
                    (f"{name}: {counts['differs']:,} px differ from the reference, "
                     f"{counts['wrong']:,} more wrong with it", png_data_uri(picture, 256)))
        samples.append({"index": index, "cells": cells, "differences": differences})
    return samples


def html_page(report: dict, plot_uris: dict[str, str], samples: list[dict]) -> str:
    """The self-contained HTML report."""
    from edgeseg.device.machine import line

    e = html.escape
    threads = thread_counts(report)
    images = "".join(f"<br>{e(text)}" for text in roles_lines(report))
    head = "".join(f"<th>{e(h)}</th>" for h in header(threads))
    body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row_cells(row, threads)) + "</tr>"
                   for row in merged_rows(report))
    notes = "".join(f"<p>Note: {e(note)}.</p>" for note in slower_notes(report))
    app = app_lines(report)
    if app:
        notes += "<p>What an app waits for (ms):</p><ul>" + "".join(
            f"<li>{e(text)}</li>" for text in app) + "</ul>"
    targets = targets_table(report)
    target_table = "" if not targets else (
        "<h2>Targets</h2><p>Boards (ssh://): measured there by the same harness. "
        "Ethos-U: Vela's estimate (the NPU's part; ops left to the CPU are "
        "not in it), Dice of the same .tflite in LiteRT. "
        "Cortex-M: TFLite Micro on this host (tensor arena; flash = the file), its own Dice.</p>"
        "<table><thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in TARGET_HEADER) +
        "</tr></thead><tbody>" + "".join(
            "<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in targets) +
        "</tbody></table>")
    figures = "".join(f'<figure><img alt="{e(k)} vs Dice" src="{uri}"><figcaption>{e(k)} vs Dice'
                      f"</figcaption></figure>" for k, uri in plot_uris.items()) or \
        "<p>(plots need matplotlib: pip install edgeseg[report])</p>"
    grids = ""
    for sample in samples:
        cells = "".join(f'<figure><img alt="{e(name)}" src="{uri}"><figcaption>{e(name)}'
                        f"</figcaption></figure>" for name, uri in sample["cells"])
        grids += f'<h3>sample {sample["index"]}</h3><div class="grid">{cells}</div>'
        if sample.get("differences"):
            diffs = "".join(f'<figure><img alt="{e(name)}" src="{uri}"><figcaption>{e(name)}'
                            f"</figcaption></figure>" for name, uri in sample["differences"])
            grids += (f'<p class="key">Where each variant disagrees: <b class="differs">magenta'
                      f'</b> its class differs from the reference\'s; <b class="wrong">amber</b> '
                      f"it agrees with the reference and both miss the ground truth.</p>"
                      f'<div class="grid">{diffs}</div>')
    run = report.get("run", {})
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>edgeseg report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; font-size: 13px; }}
th, td {{ border: 1px solid #ccc; padding: 3px 8px; text-align: right; }}
th:nth-child(-n+2), td:nth-child(-n+2) {{ text-align: left; }}
tr:first-child td {{ background: #f4f4f4; }}
figure {{ display: inline-block; margin: 4px; }}
figcaption {{ font-size: 12px; text-align: center; }}
.grid img {{ width: 192px; image-rendering: pixelated; }}
.grid figcaption {{ max-width: 192px; }}
.key {{ font-size: 13px; }}
.differs {{ color: #c0c; }} .wrong {{ color: #c90; }}
</style></head><body>
<h1>edgeseg report</h1>
<p>Machine: {e(line(report["machine"]))}<br>
Data: {e(str(report["dataset"]["name"]))}, {report["dataset"]["samples"]} images; reference:
{e(str(report["reference"]))}; {run.get("runs", "?")} timed runs per model after
{run.get("warmup", "?")} warm-up, round robin.{images}</p>
<h2>Results</h2>
<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>
{notes}
{target_table}
<h2>Latency, size and Dice</h2>
{figures}
<h2>Masks</h2>
{grids or "<p>(no samples)</p>"}
</body></html>
"""


def write_reports(report: dict, out, *, data: str | None = None, layout: str | None = None,
                  contract: dict | None = None, unsafe: bool = False,
                  custom_objects: dict | None = None) -> dict:
    """Write ``out/report.md`` and ``out/report.html``; returns their paths and the text table."""
    out = Path(out)
    md = atomic_write_text(out / "report.md", markdown(report))
    samples = sample_masks(report, data, layout, contract=contract, unsafe=unsafe,
                           custom_objects=custom_objects) if data else []
    page = atomic_write_text(out / "report.html", html_page(report, plots(report), samples))
    return {"md": md, "html": page, "table": text_table(report)}


__all__ = ["html_page", "markdown", "roles_lines", "pareto_front", "plots", "sample_masks",
           "text_table", "write_reports"]
