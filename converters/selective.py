"""Selective int8: keep the fewest, cheapest layers in float until a Dice budget holds.

The runtimes' own quantizers do the work, each calibrating once. TFLite: the converter's
calibrate-only mode (as TFLite's ``QuantizationDebugger`` uses it), then per trial only the MLIR
quantization pass with some ops' outputs denylisted (``denylisted_nodes``: those ops stay float,
with QUANTIZE/DEQUANTIZE around them). ONNX: ONNX Runtime's ``quantize_static`` with its
calibration cache, per trial with ``nodes_to_exclude``. Each trial runs in its runtime (LiteRT,
ONNX Runtime) on labelled images the calibration did not use.

The search, on a Dice budget (``max_dice_drop`` against the float source, on those images):

1. **Sensitivity**: each op alone in float, its Dice gain over full int8 measured (one trial per
   op). Ranked by gain, then by MACs (cheaper first).
2. **Greedy**: ops are put back to float in that order, gainless ones never, until the budget
   and the pixel agreement hold.
3. **Prune**: each chosen op, most MACs first, is tried back in int8; it stays int8 when the budget
   still holds. What is left is the answer: which ops, their share of the MACs, and the Dice.

    >>> result = search(model, (256, 256), calibration, images, masks, source_probs,
    ...                 max_dice_drop=0.005)  # doctest: +SKIP
    >>> result.float_ops, result.dice  # doctest: +SKIP
"""

from __future__ import annotations

import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from converters.verify import QUANT_AGREEMENT, QUANT_DICE_DROP, check_parity
from edgeseg.device.data import roles
from edgeseg.device.errors import ConfigError
from edgeseg.device.log import Progress, native_chatter_dropped


@dataclass
class Trial:
    float_ops: tuple[str, ...]
    dice: float | None
    agreement: float


@dataclass
class Selection:
    """What the search found: the model bytes and why."""

    model: bytes
    float_ops: list[str]
    float_layers: list[str]
    float_macs: int
    macs: int
    dice_source: float
    dice_int8: float
    dice: float
    agreement: float
    met: bool
    sensitivity: list[dict] = field(default_factory=list)
    trials: int = 0

    def to_dict(self, summary: bool = False) -> dict:
        """The figures; ``summary``: the ten most sensitive ops only (for a card)."""
        sensitivity = self.sensitivity[:10] if summary else self.sensitivity
        return {"float_layers": self.float_layers, "float_ops": self.float_ops,
                "float_macs": self.float_macs, "float_macs_share": self.float_macs / (self.macs or 1),
                "dice_source": self.dice_source, "dice_full_int8": self.dice_int8,
                "dice": self.dice, "agreement": self.agreement, "budget_met": self.met,
                "trials": self.trials, "images": "the search's half of the parity images",
                "sensitivity": [{k: s[k] for k in ("layer", "op", "macs", "gain")}
                                for s in sensitivity]}


def calibrate(model, size, calibration, per_tensor: bool = False):
    """(calibrated float model bytes, a function denylist -> int8 model bytes)."""
    from tensorflow.lite.python import convert as tf_convert

    from converters.tflite import make_converter

    converter = make_converter(model, size, "int8", calibration, per_tensor=per_tensor)
    converter.experimental_mlir_quantizer = True
    converter._experimental_calibrate_only = True  # noqa: SLF001 - what QuantizationDebugger sets
    with warnings.catch_warnings(), native_chatter_dropped():  # TensorFlow's notes on int8
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
        calibrated = converter.convert()

    def quantize(denylist=()) -> bytes:
        with warnings.catch_warnings(), native_chatter_dropped():  # its notes on each trial
            warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
            return tf_convert.mlir_quantize(calibrated, disable_per_channel=per_tensor,
                                            fully_quantize=False,
                                            denylisted_nodes=list(denylist) or None)
    return calibrated, quantize


def candidates(calibrated: bytes) -> list[dict]:
    """The ops of the calibrated model that can stay float: each op's output tensor name (what
    ``denylisted_nodes`` takes), op name, Keras layer and MACs."""
    from converters.tflite import layer_name
    from edgeseg.device.flops import tflite_cost
    from edgeseg.device.formats.tflite import read_tflite

    parsed = read_tflite(calibrated)
    cost = tflite_cost(parsed)
    ops = []
    for op, layer in zip(parsed.ops, cost.layers):
        if not op.outputs or op.name in ("QUANTIZE", "DEQUANTIZE"):
            continue
        tensor = parsed.tensors[op.outputs[0]].name
        ops.append({"node": tensor, "op": op.name, "layer": layer_name(tensor),
                    "macs": layer.macs})
    return ops


def onnx_candidates(quantizer, input_size=None) -> list[dict]:
    """The nodes of an :class:`converters.onnx.OnnxQuantizer`'s model that its int8 model
    quantizes (a DequantizeLinear feeds them): name (what ``nodes_to_exclude`` takes), op type,
    MACs (counted at ``input_size`` when the model takes any size)."""
    import onnx

    from edgeseg.device.flops import onnx_cost

    quantized = onnx.load_from_string(quantizer.quantize())
    producer = {out: node.op_type for node in quantized.graph.node for out in node.output}
    quantized_nodes = {node.name for node in quantized.graph.node
                       if node.op_type not in ("QuantizeLinear", "DequantizeLinear")
                       and any(producer.get(i) == "DequantizeLinear" for i in node.input)}
    prepared = onnx.load(str(quantizer.prepared))
    macs = {layer.name: layer.macs for layer in onnx_cost(prepared, input_size).layers}
    return [{"node": node.name, "op": node.op_type, "layer": node.name,
             "macs": macs.get(node.name, 0)}
            for node in prepared.graph.node if node.name in quantized_nodes]


def search(model, size, calibration, images, masks, source_probs, *, max_dice_drop: float,
           min_agreement: float | None = None, per_tensor: bool = False, num_classes: int = 1,
           to: str = "tflite", measure_all: bool = False, contract: dict | None = None,
           echo=print) -> Selection:
    """The int8 model with the fewest, cheapest ops in float whose Dice on ``images`` (with
    ground truth ``masks``) is at most ``max_dice_drop`` below the source's (``source_probs``,
    the float model's probabilities on ``images``) and whose pixel agreement is at least
    ``min_agreement`` [0.98]. ``model``: a tf_keras model (``to="tflite"``), or the float .onnx
    bytes in its own layout with ``calibration`` in that layout (``to="onnx"``). ``measure_all``:
    each op's sensitivity even when full int8 meets the budget (a report of them);
    ``contract``: I/O-contract keys each trial file is run by (see
    :func:`edgeseg.runtime.load`)."""
    from converters.onnx import OnnxQuantizer

    if masks is None:
        raise ValueError("a Dice budget needs labelled images")
    if to == "onnx":
        with OnnxQuantizer(model, calibration, per_tensor) as quantizer:
            return _search(quantizer.quantize, onnx_candidates(quantizer, size), ".onnx", images,
                           masks, source_probs, max_dice_drop, min_agreement, num_classes, echo,
                           measure_all, contract)
    calibrated, quantize = calibrate(model, size, calibration, per_tensor)
    return _search(quantize, candidates(calibrated), ".tflite", images, masks, source_probs,
                   max_dice_drop, min_agreement, num_classes, echo, measure_all, contract)


def _search(quantize, ops, suffix, images, masks, source_probs, max_dice_drop, min_agreement,
            num_classes, echo, measure_all=False, contract=None) -> Selection:
    from edgeseg import runtime
    from edgeseg.device.files import atomic_write_bytes

    min_agreement = QUANT_AGREEMENT if min_agreement is None else min_agreement
    total_macs = sum(op["macs"] for op in ops)
    count = 0

    with tempfile.TemporaryDirectory(prefix="edgeseg-selective-") as tmp:
        def trial(float_ops) -> tuple[Trial, bytes]:
            nonlocal count
            count += 1
            data = quantize(float_ops)
            path = atomic_write_bytes(Path(tmp) / f"trial{count}{suffix}", data)
            probs = runtime.load(path, trusted=True, contract=contract).predict(images)
            parity = check_parity(source_probs, probs, mode="quantized", num_classes=num_classes,
                                  masks=masks)
            path.unlink()
            return Trial(tuple(float_ops), parity.dice_converted, parity.agreement), data

        def holds(t: Trial, source_dice: float) -> bool:
            return t.dice >= source_dice - max_dice_drop and t.agreement >= min_agreement

        source = check_parity(source_probs, source_probs, mode="quantized",
                              num_classes=num_classes, masks=masks).dice_source
        full, data = trial(())
        echo(f"  full int8: Dice {full.dice:.4f} ({full.dice - source:+.4f} against float "
             f"{source:.4f}), agreement {full.agreement:.2%}")
        best, best_data = full, data
        sensitivity = []
        if measure_all or not holds(full, source):
            echo(f"  sensitivity: each of {len(ops)} ops alone in float")
            bar = Progress(len(ops), "  sensitivity", enabled=sys.stderr.isatty())
            for op in ops:
                alone, _ = trial((op["node"],))
                sensitivity.append({**op, "dice": alone.dice, "gain": alone.dice - full.dice,
                                    "agreement": alone.agreement})
                bar.step()
        if not holds(full, source):
            ranked = sorted((s for s in sensitivity if s["gain"] > 0),
                            key=lambda s: (-s["gain"], s["macs"]))
            chosen: list[dict] = []
            # at most one conversion per helpful op (the search stops when the budget holds)
            bar = Progress(len(ranked), "  float ops added (at most)",
                           enabled=sys.stderr.isatty())
            for op in ranked:  # greedy: the most helpful first
                chosen.append(op)
                best, best_data = trial([c["node"] for c in chosen])
                bar.step()
                if holds(best, source):
                    break
            bar.close()
            if holds(best, source):  # prune: put the costliest back in int8 where it still holds
                for op in sorted(chosen, key=lambda c: -c["macs"]):
                    rest = [c for c in chosen if c is not op]
                    attempt, attempt_data = trial([c["node"] for c in rest])
                    if holds(attempt, source):
                        chosen, best, best_data = rest, attempt, attempt_data
        sensitivity.sort(key=lambda s: -s["gain"])
        met = holds(best, source)
    float_ops = [op for op in ops if op["node"] in best.float_ops]
    return Selection(model=best_data, float_ops=[op["node"] for op in float_ops],
                     float_layers=[f"{op['layer']} ({op['op']})" for op in float_ops],
                     float_macs=sum(op["macs"] for op in float_ops), macs=total_macs,
                     dice_source=source, dice_int8=full.dice, dice=best.dice,
                     agreement=best.agreement, met=met, sensitivity=sensitivity, trials=count)


def select_int8(cfg, to, loaded, model, size, calibration, samples, contract=None):
    """(Selection, parity samples): the selective int8 search on one half of twice the parity
    images, the other half left for the parity check, so the images that chose the float ops
    never score the file. ``loaded``: the source (an EdgeModel), ``model``: what
    :func:`search` takes; ``contract``: the source's I/O-contract keys, for the trial files
    (a user's .onnx: its layout, output and output kind)."""
    import numpy as np

    if to == "onnx" and cfg.calib_method != "minmax":
        raise ConfigError("--fallback calibrates min/max: drop --calib-method")
    images, masks, where = samples.images, samples.masks, samples.where  # twice
    # --verify-samples of them (read in convert)
    num_classes = loaded.num_classes
    if masks is None or len(images) < 4:
        raise ConfigError(f"--fallback measures a Dice budget: it needs labelled images apart "
                          f"from the calibration ones (found {where}): "
                          f"{roles.labels_hint(cfg.verify_data)}")
    choose, checked = samples.halves()
    chosen, chosen_masks = choose.images, choose.masks
    if not ((chosen_masks != 0) & (chosen_masks != 255)).any():
        raise ConfigError(f"--fallback measures a Dice budget, and {where} hold no labelled "
                          f"object (only background or unlabeled pixels): "
                          f"{roles.labels_hint(cfg.verify_data)}")
    budget = QUANT_DICE_DROP if cfg.max_dice_drop is None else cfg.max_dice_drop
    print(f"selective int8: the fewest, cheapest ops in float for a Dice drop <= {budget:g}, "
          f"chosen on {len(chosen)} of {where}, checked on the other {len(checked[0])}",
          file=sys.stderr)
    source_probs = np.concatenate([loaded.predict(chosen[i:i + 8])
                                   for i in range(0, len(chosen), 8)])
    selection = search(model, size, calibration, chosen, chosen_masks, source_probs,
                       max_dice_drop=budget, min_agreement=cfg.min_agreement,
                       per_tensor=cfg.per_tensor, num_classes=num_classes, to=to,
                       contract=contract, echo=lambda line: print(line, file=sys.stderr))
    share = selection.float_macs / (selection.macs or 1)
    print(f"  {len(selection.float_ops)} op(s) in float ({share:.1%} of the MACs): "
          f"{', '.join(selection.float_layers) or 'none'}; Dice {selection.dice:.4f} "
          f"(full int8 {selection.dice_int8:.4f}, float {selection.dice_source:.4f}) after "
          f"{selection.trials} trials" + ("" if selection.met else
                                          "; the budget is NOT met even so"), file=sys.stderr)
    return selection, checked


__all__ = ["Selection", "calibrate", "candidates", "onnx_candidates", "search",
           "select_int8"]
