"""The regression gate: compare a bench report with a baseline, row by row (no TensorFlow).

Rows are matched by (variant, runtime, threads). A row regresses when its Dice fell by more than
``max_dice_drop``, its p50 latency grew by more than ``max_latency_ratio`` or its file by more than
``max_size_ratio``; a row of the baseline missing from the report is a regression too. Latency is
compared as measured when both reports come from the same machine (CPU and cores), and relative to
each report's own reference row otherwise: absolute times from different machines say nothing.

Rows of targets that cannot run here (``target`` set: Vela's Ethos-U estimates, TFLite Micro) are
matched the same way; an estimated latency does not depend on the machine that made it, so it is
compared as it is, and a target without a latency figure (TFLM) is not held to one. Per-target
budgets (:class:`Budget`: arena, SRAM, flash, estimated latency) hold every target row, or the
rows of one target, to an absolute limit.

    >>> problems = compare(report, baseline, max_dice_drop=0.01)  # doctest: +SKIP
    >>> [p.message for p in problems]  # doctest: +SKIP
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from edgeseg.device.benchjson import where
from edgeseg.device.errors import EdgesegError


@dataclass(frozen=True)
class Violation:
    variant: str
    runtime: str
    threads: int | None
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{where(self.variant, self.runtime, self.threads)}: {self.message}"


@dataclass(frozen=True)
class Budget:
    """An absolute limit on a target row's figure: ``key`` (``arena_bytes``, ``sram_bytes``,
    ``flash_bytes`` or ``latency_ms``) at most ``limit``, for ``target`` (None: every target
    row that reports the figure)."""

    key: str
    limit: float
    target: str | None = None

    def label(self) -> str:
        return {"arena_bytes": "arena", "sram_bytes": "SRAM", "flash_bytes": "flash",
                "latency_ms": "estimated latency"}[self.key]


_UNITS = {"": 1, "b": 1, "kb": 1024, "k": 1024, "kib": 1024, "mb": 1024 ** 2, "m": 1024 ** 2,
          "mib": 1024 ** 2, "gb": 1024 ** 3, "gib": 1024 ** 3}


def parse_bytes(text: str, option: str = "size") -> int:
    """``512KB``, ``1MB``, ``1.5MiB``, ``65536``: bytes (KB = 1024 bytes, as MCU datasheets
    count RAM); anything else is one line naming the option."""
    import re

    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
    unit = match.group(2).lower() if match else None
    if not match or unit not in _UNITS or float(match.group(1)) <= 0:
        raise EdgesegError(f"{option}: {text!r} is not a size (e.g. 512KB, 1MB, 65536)")
    return int(float(match.group(1)) * _UNITS[unit])


def parse_budget(text: str, key: str, option: str) -> Budget:
    """``[TARGET=]VALUE`` of a budget option: a size, or milliseconds for ``latency_ms``."""
    target, _, value = str(text).rpartition("=")
    target = target.strip().lower() or None
    if target is not None:
        from edgeseg.device.targets import parse_targets

        try:
            target = parse_targets([target])[0]
        except EdgesegError as error:
            raise EdgesegError(f"{option}: {str(error).split(': ', 1)[1]}") from None
    if key == "latency_ms":
        try:
            limit = float(value)
        except ValueError:
            limit = -1.0
        if not limit > 0:
            raise EdgesegError(f"{option}: {value!r} is not a positive number of milliseconds")
    else:
        limit = parse_bytes(value, option)
    return Budget(key, limit, target)


def _figure(row: dict, key: str):
    value = row.get(key)
    if key == "latency_ms":
        return value.get("p50") if isinstance(value, dict) else None
    return value


def _budget_problems(report: dict, budgets) -> list[Violation]:
    problems = []
    targets = [r for r in report["results"] if r.get("target")]
    for budget in budgets:
        rows = [r for r in targets if budget.target in (None, r["target"])]
        if budget.target and not rows:
            problems.append(Violation("-", budget.target, None, "budget",
                                      f"no row for target {budget.target} in the report: its "
                                      f"{budget.label()} budget cannot be checked"))
        elif not any(_measured(_figure(r, budget.key)) for r in rows) and not budget.target:
            problems.append(Violation("-", "targets", None, "budget",
                                      f"no target row in the report gives its "
                                      f"{budget.label()}: the budget cannot be checked (bench "
                                      f"--target)"))
        for row in rows:
            value = _figure(row, budget.key)
            if not _measured(value):
                if budget.target:  # asked of this target by name: missing fails
                    problems.append(Violation(*_key(row), "budget",
                                              f"no {budget.label()} figure for {row['target']}"
                                              f": its budget cannot be checked"))
                continue
            if value > budget.limit:
                if budget.key == "latency_ms":
                    what = f"{value:.2f} ms > {budget.limit:g} ms"
                else:
                    what = f"{value:,} bytes ({value / 1024:,.1f} KB) > {budget.limit:,} bytes"
                problems.append(Violation(*_key(row), "budget",
                                          f"{row['target']}: {budget.label()} {what}"))
    return problems


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


def _measured(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _spread_ratio(row: dict, base: dict) -> float | None:
    """The smallest latency growth the timing blocks allow: the new row's fastest block median
    over the baseline's slowest (None without blocks in both)."""
    new, old = row["latency_ms"].get("blocks"), base["latency_ms"].get("blocks")
    if not (isinstance(new, list) and isinstance(old, list) and new and old):
        return None
    return min(new) / max(old)


def _data_name(name: str) -> str:
    """A report's data as it can be compared across checkouts: a folder by its own name (the
    path before it differs from machine to machine), a built-in dataset as it is."""
    head, sep, rest = str(name).partition(" (")
    return Path(head.rstrip("/")).name + sep + rest


def _check_comparable(report: dict, baseline: dict, notes: list) -> None:
    """A baseline measured on other data, or of another task (other inputs or classes), is no
    baseline: refused in one line. Rows whose files have other parameter counts are said."""
    mine, theirs = report.get("dataset") or {}, baseline.get("dataset") or {}
    if mine.get("name") and theirs.get("name"):
        if _data_name(mine["name"]) != _data_name(theirs["name"]) or \
                mine.get("samples") != theirs.get("samples"):
            raise EdgesegError(f"the baseline was measured on {theirs['name']} "
                               f"({theirs.get('samples')} images), the report on {mine['name']} "
                               f"({mine.get('samples')} images): compare reports of the same "
                               f"images")
    rows = {_key(r): r for r in report["results"]}
    for base in baseline["results"]:
        row = rows.get(_key(base))
        if row is None:
            continue
        shape, base_shape = row.get("input_shape"), base.get("input_shape")
        classes, base_classes = (len(r.get("dice_per_class") or []) for r in (row, base))
        if (shape and base_shape and shape[-1] != base_shape[-1]) or \
                (classes and base_classes and classes != base_classes):
            raise EdgesegError(f"{where(*_key(base))}: the baseline's model takes "
                               f"{base_shape[-1] if base_shape else '?'} channel(s) and scores "
                               f"{base_classes} classes, the report's {shape[-1] if shape else '?'} "
                               f"and {classes}: a baseline of another task")
        if row.get("params") and base.get("params") and row["params"] != base["params"]:
            notes.append(f"{where(*_key(base))}: {base['params']:,} parameters in the baseline, "
                         f"{row['params']:,} in the report: another model, compared as given")


def compare(report: dict, baseline: dict | None = None, *, max_dice_drop: float = 0.01,
            max_latency_ratio: float | None = 1.25, max_size_ratio: float | None = 1.05,
            max_dice_delta: float | None = None, notes: list | None = None,
            budgets=()) -> list[Violation]:
    """Every rule the report breaks against the baseline (and, with ``max_dice_delta``, against
    its own reference: no variant's Dice may be more than that below the reference's).

    Latency is noise-aware where both rows carry the medians of their timing blocks (the harness
    writes ``latency_ms.blocks``): a row regresses only when even its fastest block is slower
    than the baseline's slowest by more than ``max_latency_ratio``. What could not be compared
    (latency across machines without a reference row) is appended to ``notes``, one line each.
    ``budgets`` (:class:`Budget`) hold target rows to absolute limits.
    """
    notes = [] if notes is None else notes
    problems: list[Violation] = []
    rows = {_key(r): r for r in report["results"]}
    for row in report["results"]:  # a figure that could not be measured never passes
        for name, value in (("Dice", row["dice"]), ("p50 latency", row["latency_ms"]["p50"])):
            if name == "p50 latency" and row.get("target") and not row.get("estimated"):
                continue  # a target measured for memory and Dice only (TFLM): no latency to hold
            if not _measured(value):
                problems.append(Violation(*_key(row), "unmeasured",
                                          f"{name} not measured ({value}): cannot be checked"))
    if max_dice_delta is not None:
        for row in report["results"]:
            if not _measured(row["dice_delta"]):
                continue  # said above
            if -row["dice_delta"] > max_dice_delta:
                problems.append(Violation(*_key(row), "dice_delta",
                                          f"Dice {row['dice_delta']:+.4f} against the reference "
                                          f"(allowed -{max_dice_delta})"))
    problems += _budget_problems(report, budgets)
    if baseline is None:
        return problems
    if not baseline["results"]:
        raise EdgesegError("the baseline has no rows: nothing to compare with (record one with "
                           "--write-baseline from a report that has rows)")
    for base in baseline["results"]:  # a baseline is what a build is held to: it must be whole
        if not (_measured(base["dice"]) and (_measured(base["latency_ms"]["p50"]) or
                                             base.get("target") and not base.get("estimated"))):
            raise EdgesegError(f"the baseline's {where(*_key(base))} has no measured Dice or "
                               f"latency: record the baseline from a complete report")
    _check_comparable(report, baseline, notes)
    same = _same_machine(report, baseline)
    for key, base in ((_key(r), r) for r in baseline["results"]):
        row = rows.get(key)
        if row is None:
            problems.append(Violation(*key, "missing", "in the baseline, missing from the report"))
            continue
        drop = base["dice"] - row["dice"] if _measured(row["dice"]) else 0.0
        if drop > max_dice_drop:
            problems.append(Violation(*key, "dice", f"Dice {base['dice']:.4f} -> {row['dice']:.4f}"
                                                    f" (-{drop:.4f}, allowed -{max_dice_drop})"))
        emulated = next((m.get("emulated") for m in (row.get("machine") or report.get("machine"),
                                                     base.get("machine") or baseline.get("machine"))
                         if isinstance(m, dict) and m.get("emulated")), None)
        if max_latency_ratio is not None and not _measured(base["latency_ms"]["p50"]):
            pass  # a target without a latency figure (TFLM)
        elif max_latency_ratio is not None and emulated and not base.get("estimated"):
            notes.append(where(*key) + f": latency not compared (it ran {emulated} emulated: "
                                       f"emulated time is not a timing)")
        elif max_latency_ratio is not None:
            if same or base.get("estimated"):  # an estimate does not depend on the machine
                ratio = row["latency_ms"]["p50"] / base["latency_ms"]["p50"] \
                    if _measured(row["latency_ms"]["p50"]) and \
                    _measured(base["latency_ms"]["p50"]) else None
                what = (f"p50 {base['latency_ms']['p50']:.2f} -> {row['latency_ms']['p50']:.2f} ms")
                spread = _spread_ratio(row, base)
                if ratio is not None and spread is not None and ratio > max_latency_ratio:
                    if spread <= max_latency_ratio:
                        notes.append(where(*key) +
                                     f": p50 x{ratio:.2f}, but x{spread:.2f} between the timing "
                                     f"blocks' extremes: within noise, not a regression")
                        ratio = None
                    else:
                        what += f", x{spread:.2f} even between the blocks' extremes"
            else:
                now, before = _relative_latency(report, row), _relative_latency(baseline, base)
                ratio = now / before if now and before else None
                what = "p50 relative to the reference" + \
                    (f" {before:.2f} -> {now:.2f}" if ratio else "")
                if ratio is None:
                    notes.append(where(*key) +
                                 ": latency not compared (the reports come from different "
                                 "machines and one has no reference row to compare relative to)")
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


__all__ = ["Budget", "Violation", "compare", "parse_budget", "parse_bytes"]
