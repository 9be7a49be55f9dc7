"""The bench JSON (``schema: edgeseg.bench/1``): its one definition, and its text table.

The harness writes it (:func:`benchmarks.harness.bench`); the gate (:mod:`edgeseg.gate`), the
reports (:mod:`edgeseg.report`) and ``edgeseg.testing`` read it. One row per (variant, runtime,
threads); keys are added, never renamed. Rows of targets that cannot run here carry
``estimator`` (Vela, TFLite Micro) and have a table of their own.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from edgeseg.device.errors import EdgesegError
from edgeseg.device.metrics import text as score_text


def where(variant, runtime, threads) -> str:
    """A row's name in messages: ``int8 (litert, 2 thread(s))``."""
    return f"{variant} ({runtime}{f', {threads} thread(s)' if threads else ''})"


def is_bench_report(obj) -> bool:
    """Whether a parsed JSON is an edgeseg bench report (what bench, run and baselines write)."""
    return isinstance(obj, dict) and obj.get("schema") == SCHEMA


def load_report(path) -> dict:
    """A bench JSON from disk, checked to be one; a bad file is one clear error."""
    path = Path(path)
    try:
        report = json.loads(path.read_text())
    except FileNotFoundError:
        raise EdgesegError(f"{path}: no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise EdgesegError(f"{path}: not JSON ({error})") from None
    except IsADirectoryError:
        raise EdgesegError(f"{path}: a folder, not a bench report") from None
    validate(report, path)
    return report


SCHEMA = "edgeseg.bench/1"
# The keys of a bench row the gate reads, and what they must hold: one definition, used by the
# harness that writes reports and by every reader. None is allowed where a figure can be missing
# (it is then "not measured": a failure for the gate, never a pass).
ROW_KEYS = {"variant": (str,), "runtime": (str,), "threads": (int, type(None)),
            "latency_ms": (dict,), "size_bytes": (int,), "dice": (int, float, type(None)),
            "dice_delta": (int, float, type(None))}


def validate(report, source) -> None:
    """Raise one EdgesegError naming ``source`` when ``report`` is not a bench JSON of
    :data:`SCHEMA` with rows as :data:`ROW_KEYS` says (latencies and sizes positive)."""
    if not isinstance(report, dict) or report.get("schema") != SCHEMA or \
            not isinstance(report.get("results"), list):
        raise EdgesegError(f"{source}: not an edgeseg bench report (schema {SCHEMA})")
    for index, row in enumerate(report["results"]):
        if not isinstance(row, dict):
            raise EdgesegError(f"{source}: results[{index}] is not a row (an object)")
        for key, types in ROW_KEYS.items():
            if key not in row:
                raise EdgesegError(f"{source}: results[{index}] has no {key!r}")
            if not isinstance(row[key], types) or isinstance(row[key], bool):
                raise EdgesegError(f"{source}: results[{index}].{key} is {row[key]!r}, not "
                                   f"{' or '.join(t.__name__ for t in types)}")
        p50 = row["latency_ms"].get("p50")
        if not isinstance(p50, (int, float)) or isinstance(p50, bool) or not p50 > 0 \
                and not math.isnan(p50):
            raise EdgesegError(f"{source}: results[{index}].latency_ms.p50 must be a positive "
                               f"number (got {p50!r})")
        if row["size_bytes"] <= 0:
            raise EdgesegError(f"{source}: results[{index}].size_bytes must be positive")
        if math.isinf(p50):
            raise EdgesegError(f"{source}: results[{index}].latency_ms.p50 is infinite")
        dice = row["dice"]
        if dice is not None and not math.isnan(dice) and not 0 <= dice <= 1:
            raise EdgesegError(f"{source}: results[{index}].dice is {dice!r}; a Dice is between 0 "
                               f"and 1 (or null/NaN when not measured)")
    seen = {}
    for index, row in enumerate(report["results"]):
        key = (row["variant"], row["runtime"], row["threads"])
        if key in seen:
            raise EdgesegError(f"{source}: results[{seen[key]}] and results[{index}] are both "
                               f"{where(*key)}; a report holds one row each")
        seen[key] = index



# --- the table -------------------------------------------------------------------------------
def estimate(row: dict) -> bool:
    """A row a target's tool estimated (Vela, TFLite Micro), not a measured run (here or on a
    board over SSH)."""
    return bool(row.get("estimator"))


def merged_rows(report: dict) -> list[dict]:
    """One row per (variant, runtime), the latency of each thread count side by side (rows
    measured, here or on a board; the estimates have their own table)."""
    merged: dict[tuple, dict] = {}
    for r in report["results"]:
        if estimate(r):
            continue
        key = (r["variant"], r["runtime"])
        row = merged.setdefault(key, {**r, "latency": {}})
        row["latency"][r["threads"]] = r["latency_ms"]
    return sorted(merged.values(), key=lambda r: (not r.get("reference"), r["format"] != "keras",
                                                   r["variant"], r["runtime"]))


def thread_counts(report: dict) -> list:
    values = {r["threads"] for r in report["results"] if not estimate(r)}
    return sorted(v for v in values if v is not None) or [None]


def row_cells(row: dict, threads: list) -> list[str]:
    def latency(t):
        lat = row["latency"].get(t) or (row["latency"].get(None) if t == threads[0] else None)
        return f"{lat['p50']:.2f} / {lat['p90']:.2f}" if lat else ""

    macs = f"{row['macs'] / 1e6:,.1f}" if row.get("macs") else ""
    sparsity = f"{row['sparsity']:.0%}" if row.get("sparsity") is not None else ""
    name = row["variant"] + (" (reference)" if row.get("reference") else "")
    return [name, row["runtime"], macs, f"{row['params']:,}" if row.get("params") else "",
            f"{row['size_bytes'] / 1024:,.1f}", f"{row['gzip_bytes'] / 1024:,.1f}", sparsity,
            *[latency(t) for t in threads], score_text(row["dice"]),
            "–" if row["dice_delta"] is None else f"{row['dice_delta']:+.4f}",
            f"{row['agreement']:.2%}"]


def header(threads: list) -> list[str]:
    lat = [f"p50 / p90 ms ({t} thr)" if t else "p50 / p90 ms" for t in threads]
    return ["variant", "runtime", "MMACs", "params", "size KB", "gzip KB", "sparsity", *lat,
            "Dice", "Dice delta", "agreement"]


TARGET_HEADER = ["target", "file", "how", "latency ms", "cycles", "SRAM / arena KB", "flash KB",
                 "DRAM KB", "ops on the CPU / missing", "Dice"]


def _kb(value) -> str:
    return f"{value / 1024:,.1f}" if value else ""


def targets_table(report: dict) -> list[list[str]]:
    """The targets table: for every file with target rows, the host's measured row (its first
    thread count) and each target's, with the Dice of the file that target runs."""
    from edgeseg.device.machine import line

    rows = [r for r in report["results"] if estimate(r)]
    boards = [r for r in report["results"] if str(r.get("target", "")).startswith("ssh://")]
    table = []
    for path in dict.fromkeys(r["path"] for r in boards + rows):
        name = Path(path).name
        host = next((r for r in report["results"] if r["path"] == path
                     and r.get("target") in (None, "local")), None)
        if host is not None:
            cpu = report.get("machine", {}).get("cpu") or line(report.get("machine", {}))
            threads = f", {host['threads']} thr" if host.get("threads") else ""
            table.append([f"host CPU ({cpu}{threads})", name, f"measured ({host['runtime']})",
                          f"{host['latency_ms']['p50']:.2f}", "", "", _kb(host["size_bytes"]),
                          "", "", dice_text(host)])
        for board in (r for r in boards if r["path"] == path):
            cpu = (board.get("machine") or {}).get("cpu", "")
            threads = f", {board['threads']} thr" if board.get("threads") else ""
            emulated = (board.get("machine") or {}).get("emulated")
            how = f"emulated ({emulated}): no timing" if emulated else "measured on the board"
            table.append([f"{board['target']} ({cpu}{threads})", name,
                          f"{how} ({board['runtime']})",
                          "" if emulated else f"{board['latency_ms']['p50']:.2f}", "", "",
                          _kb(board["size_bytes"]), "", "", dice_text(board)])
        for r in (r for r in rows if r["path"] == path):
            p50 = r["latency_ms"].get("p50")
            latency = f"{p50:.2f} @ {r['clock_mhz']:.0f} MHz" \
                if r.get("estimated") and p50 == p50 else "not estimated"
            if r.get("runs") is False:
                ops = "missing: " + ", ".join(r["unsupported_ops"]) if r.get("unsupported_ops") \
                    else "does not run: " + _short(r.get("failure") or "")
            else:
                ops = ", ".join(f"{op} x{n}" for op, n in (r.get("cpu_ops") or {}).items()) or \
                    ("none" if r.get("estimated") else "all ops run")
            memory = _kb(r.get("sram_bytes")) if r.get("estimated") else \
                _kb(r.get("arena_bytes"))
            how = r.get("estimator", "")
            if r.get("system_config"):
                how += f" ({r['system_config']}, {r['memory_mode']})"
            table.append([r["target"], name, how, latency,
                          f"{r['cycles']:,}" if r.get("cycles") else "", memory,
                          _kb(r.get("flash_bytes")), _kb(r.get("dram_bytes")), ops, dice_text(r)])
    return table


def _short(failure: str) -> str:
    """TFLM's failure without its wrapper, at most 90 characters."""
    import re

    text = re.sub(r"^TFLite Micro cannot load it \((.*)\)$", r"\1", failure)
    return text if len(text) <= 90 else text[:89] + "…"


def dice_text(row: dict) -> str:
    dice = row.get("dice")
    if dice is None or dice != dice:
        return "–"
    text = f"{dice:.4f}"
    if row.get("agreement_litert") is not None:
        text += f" ({row['agreement_litert']:.2%} as LiteRT)"
    elif row.get("dice_source", "").startswith("LiteRT"):
        text += " (LiteRT, same file)"
    return text


QUANTIZED = ("int8", "int16x8", "dynamic")


def slower_notes(report: dict) -> list[str]:
    """One line per quantized file that runs slower than a float file of the same runtime on
    this machine (at every thread count both were timed at): an int8 file is not faster by its
    name, and on some CPUs and models it is not faster at all."""
    def quantized(row) -> bool:  # "pruned50-int8", "int8 (runs/a/int8.onnx)": the last part
        return row["variant"].split(" ")[0].rsplit("-", 1)[-1] in QUANTIZED

    rows = [r for r in merged_rows(report) if r["format"] != "keras"]
    notes = []
    for row in rows:
        if not quantized(row):
            continue
        floats = [r for r in rows if r["runtime"] == row["runtime"] and not quantized(r)]
        for base in floats:
            shared = [t for t in row["latency"] if t in base["latency"]]
            if not shared or any(row["latency"][t]["p50"] <= base["latency"][t]["p50"]
                                 for t in shared):
                continue
            t = shared[0]
            ours, theirs = row["latency"][t]["p50"], base["latency"][t]["p50"]
            threads = f", {t} thr" if t else ""
            notes.append(f"{row['variant']} ({row['runtime']}) is {ours / theirs:.1f}x slower "
                         f"than {base['variant']} here ({ours:.2f} vs {theirs:.2f} ms p50"
                         f"{threads}): on this machine the float file is the faster one")
            break
    return notes


def text_table(report: dict) -> str:
    """The same table in fixed-width text, for a terminal."""
    from edgeseg.device.machine import EMULATED

    threads = thread_counts(report)
    table = [header(threads), *[row_cells(row, threads) for row in merged_rows(report)]]
    text = _fixed(table, 2)
    emulated = sorted({m["emulated"] for m in [report.get("machine") or {},
                                               *(report.get("targets") or {}).values()]
                       if isinstance(m, dict) and m.get("emulated")})
    if emulated:
        text += f"\n({', '.join(emulated)} {EMULATED}: the ms columns of its rows are emulated " \
                f"time, for correctness, parity and packaging only)"
    for note in slower_notes(report):
        text += f"\nnote: {note}"
    targets = targets_table(report)
    if targets:
        text += "\n\n" + _fixed([TARGET_HEADER, *targets], 3)
    return text


def _fixed(table: list[list[str]], left: int) -> str:
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    return "\n".join("  ".join(c.ljust(w) if i < left else c.rjust(w)
                               for i, (c, w) in enumerate(zip(r, widths))) for r in table)




def app_lines(report: dict) -> list[str]:
    """The lines under the bench table: cold start, end to end and sustained, per row (see
    :mod:`benchmarks.app_latency`)."""
    out, cold = [], []
    for row in report["results"]:
        name = f"{row['variant']} ({row['runtime']}, {row['threads'] or '-'} thr)"
        if row.get("cold_start_ms") is not None:
            cold.append(f"{name} {row['cold_start_ms']:.1f}")
        model_ms = row["latency_ms"]["p50"]
        if row.get("end_to_end_ms"):
            e = row["end_to_end_ms"]
            out.append(f"end to end {name}: {e['frame'][0]}x{e['frame'][1]} frame -> "
                       f"{e['input'][0]}x{e['input'][1]} -> mask: {e['p50']:.2f} ms p50 "
                       f"(preprocess {e['preprocess_p50']:.2f} + invoke {e['invoke_p50']:.2f} + "
                       f"postprocess {e['postprocess_p50']:.2f}; model alone {model_ms:.2f})")
        if row.get("sustained"):
            s = row["sustained"]
            drift = "n/a" if s["drift"] is None else f"{s['drift']:+.1%}"
            out.append(f"sustained {name}: {s['queries']} queries in {s['seconds']:.1f} s, p50 "
                       f"{s['p50']:.2f} / p90 {s['p90']:.2f} / p99 {s['p99']:.2f} ms, drift "
                       f"{drift} (last tenth {s['last_tenth_p50']:.2f} vs first "
                       f"{s['first_tenth_p50']:.2f} ms)")
    if cold:
        out.insert(0, f"cold start (load + first inference, ms): {', '.join(cold)}")
    return out


__all__ = ["ROW_KEYS", "app_lines", "SCHEMA", "TARGET_HEADER", "dice_text", "estimate", "header",
           "is_bench_report", "load_report", "merged_rows", "row_cells", "targets_table",
           "text_table", "thread_counts", "validate", "where"]
