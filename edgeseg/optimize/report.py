"""What an optimised model holds: zeros per kernel, unique values per kernel, honestly counted.

Plain numpy over a Keras model's weights (no tfmot): it reads the stripped model that is saved, so
what it reports is what the converters receive.
"""

from __future__ import annotations

import numpy as np

from edgeseg.optimize.selection import choose, weight_of


def _kernel(model, choice):
    return weight_of(model, choice.layer, choice.weight).numpy()


def sparsity_report(model, pruned: set[str] = frozenset(), axis_multiple: int | None = None) -> dict:
    """Zeros per convolution/dense kernel and overall.

    Args:
        pruned: the layers whose kernels were pruned (the others are reported with the reason
            they were left alone).
        axis_multiple: n of m-by-n sparsity, when that was used.

    Returns a dict with ``layers`` (name, kind, weight, params, zeros, sparsity, pruned, reason)
    and totals: ``selected`` (the kernels that were pruned), ``kernels`` (every conv/dense kernel,
    depthwise and the dense first/last layers included) and ``all`` (every weight of the model).
    """
    rows = []
    for choice in choose(model, axis_multiple=axis_multiple):
        kernel = _kernel(model, choice)
        was_pruned = choice.layer in pruned and choice.selected
        reason = "pruned" if was_pruned else choice.reason if not choice.selected else "not pruned"
        rows.append({"layer": choice.layer, "kind": choice.kind, "weight": choice.weight,
                     "params": int(kernel.size), "zeros": int((kernel == 0).sum()),
                     "sparsity": float((kernel == 0).mean()), "pruned": was_pruned,
                     "reason": reason})
    everything = [np.asarray(w) for w in model.get_weights()]

    def total(subset):
        params = sum(row["params"] for row in subset)
        zeros = sum(row["zeros"] for row in subset)
        return {"params": params, "zeros": zeros, "sparsity": zeros / params if params else 0.0}

    all_params = sum(w.size for w in everything)
    all_zeros = sum(int((w == 0).sum()) for w in everything)
    return {"layers": rows, "selected": total([r for r in rows if r["pruned"]]),
            "kernels": total(rows),
            "all": {"params": all_params, "zeros": all_zeros,
                    "sparsity": all_zeros / all_params if all_params else 0.0}}


def cluster_report(model, selected: set[str]) -> dict:
    """Distinct values per clustered kernel, and per output channel.

    Clustering leaves at most K values per kernel. Cluster-preserving QAT keeps them per output
    channel (tfmot clusters Conv2D kernels channel by channel there, as int8 scales them), so the
    int8 file holds at most K values per channel.
    """
    rows = []
    for choice in choose(model):
        if choice.layer in selected:
            kernel = _kernel(model, choice)
            channels = kernel.reshape(-1, kernel.shape[-1])
            rows.append({"layer": choice.layer, "weight": choice.weight, "params": int(kernel.size),
                         "unique": int(np.unique(kernel).size),
                         "unique_per_channel": max(int(np.unique(channels[:, c]).size)
                                                   for c in range(channels.shape[1]))})
    return {"layers": rows, "max_unique": max((r["unique"] for r in rows), default=0),
            "max_unique_per_channel": max((r["unique_per_channel"] for r in rows), default=0)}


def format_sparsity(report: dict) -> str:
    """A fixed-width per-layer table with the three totals."""
    lines = [f"{'layer':<28} {'kind':<16} {'params':>9} {'sparsity':>9}  note"]
    for row in report["layers"]:
        lines.append(f"{row['layer']:<28} {row['kind']:<16} {row['params']:>9,} "
                     f"{row['sparsity']:>8.1%}  {row['reason']}")
    for key, label in (("selected", "pruned kernels"), ("kernels", "all conv kernels"),
                       ("all", "all weights")):
        t = report[key]
        lines.append(f"{label:<45} {t['params']:>9,} {t['sparsity']:>8.1%}")
    return "\n".join(lines)
