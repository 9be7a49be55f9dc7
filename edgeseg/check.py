"""The regression gate: compare a bench report with a baseline, row by row (no TensorFlow).

Rows are matched by (variant, runtime, threads). A row regresses when its Dice fell by more than
``max_dice_drop``, its p50 latency grew by more than ``max_latency_ratio`` or its file by more than
``max_size_ratio``; a row of the baseline missing from the report is a regression too. Latency is
compared as measured when both reports come from the same machine (CPU and cores), and relative to
each report's own reference row otherwise: absolute times from different machines say nothing.

    >>> problems = compare(report, baseline, max_dice_drop=0.01)  # doctest: +SKIP
    >>> [p.message for p in problems]  # doctest: +SKIP
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from edgeseg.errors import EdgesegError


@dataclass(frozen=True)
class Violation:
    variant: str
    runtime: str
    threads: int | None
    rule: str
    message: str

    def __str__(self) -> str:
        threads = f", {self.threads} thread(s)" if self.threads else ""
        return f"{self.variant} ({self.runtime}{threads}): {self.message}"


def load_report(path) -> dict:
    """A bench JSON from disk, checked to be one; a bad file is one clear error."""
    path = Path(path)
    try:
        report = json.loads(path.read_text())
    except FileNotFoundError:
        raise EdgesegError(f"{path}: no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise EdgesegError(f"{path}: not JSON ({error})") from None
    if not isinstance(report, dict) or report.get("schema") != "edgeseg.bench/1" or \
            not isinstance(report.get("results"), list):
        raise EdgesegError(f"{path}: not an edgeseg bench report (schema edgeseg.bench/1)")
    return report


def _key(row: dict) -> tuple:
    return row["variant"], row["runtime"], row["threads"]


def _same_machine(a: dict, b: dict) -> bool:
    ma, mb = a.get("machine", {}), b.get("machine", {})
    return (ma.get("cpu"), ma.get("cores")) == (mb.get("cpu"), mb.get("cores"))


def _relative_latency(report: dict, row: dict) -> float | None:
    """p50 of ``row`` over the p50 of the reference row at the same thread count."""
    for ref in report["results"]:
        if ref.get("reference") and ref["threads"] in (row["threads"], None):
            return row["latency_ms"]["p50"] / ref["latency_ms"]["p50"]
    return None


def compare(report: dict, baseline: dict | None = None, *, max_dice_drop: float = 0.01,
            max_latency_ratio: float | None = 1.25, max_size_ratio: float | None = 1.05,
            max_dice_delta: float | None = None) -> list[Violation]:
    """Every rule the report breaks against the baseline (and, with ``max_dice_delta``, against
    its own reference: no variant's Dice may be more than that below the reference's)."""
    problems: list[Violation] = []
    rows = {_key(r): r for r in report["results"]}
    if max_dice_delta is not None:
        for row in report["results"]:
            if -row["dice_delta"] > max_dice_delta:
                problems.append(Violation(*_key(row), "dice_delta",
                                          f"Dice {row['dice_delta']:+.4f} against the reference "
                                          f"(allowed -{max_dice_delta})"))
    if baseline is None:
        return problems
    same = _same_machine(report, baseline)
    for key, base in ((_key(r), r) for r in baseline["results"]):
        row = rows.get(key)
        if row is None:
            problems.append(Violation(*key, "missing", "in the baseline, missing from the report"))
            continue
        drop = base["dice"] - row["dice"]
        if drop > max_dice_drop:
            problems.append(Violation(*key, "dice", f"Dice {base['dice']:.4f} -> {row['dice']:.4f}"
                                                    f" (-{drop:.4f}, allowed -{max_dice_drop})"))
        if max_latency_ratio is not None:
            if same:
                ratio = row["latency_ms"]["p50"] / base["latency_ms"]["p50"]
                what = (f"p50 {base['latency_ms']['p50']:.2f} -> {row['latency_ms']['p50']:.2f} ms")
            else:
                now, before = _relative_latency(report, row), _relative_latency(baseline, base)
                ratio = now / before if now and before else None
                what = "p50 relative to the reference" + \
                    (f" {before:.2f} -> {now:.2f}" if ratio else "")
            if ratio is not None and ratio > max_latency_ratio:
                problems.append(Violation(*key, "latency",
                                          f"{what} (x{ratio:.2f}, allowed x{max_latency_ratio})"))
        if max_size_ratio is not None:
            ratio = row["size_bytes"] / base["size_bytes"]
            if ratio > max_size_ratio:
                problems.append(Violation(*key, "size",
                                          f"size {base['size_bytes']:,} -> {row['size_bytes']:,} "
                                          f"bytes (x{ratio:.2f}, allowed x{max_size_ratio})"))
    return problems


__all__ = ["Violation", "compare", "load_report"]
