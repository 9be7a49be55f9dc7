"""Which layers lose accuracy when a model is quantized to int8: per-layer error, ranked.

TFLite's own tool does the measuring: :class:`tf.lite.experimental.QuantizationDebugger` converts
the model with a NumericVerify op after every quantized op, runs the float and the dequantized
value side by side on the images given, and reports per tensor the error statistics. This module
picks the images (never the calibration images when anything else is known, as parity does),
reads the debugger's table, scales each error by its tensor's quantization step, ranks the
layers, and puts each one's MACs beside it, so a team sees which layers cost accuracy and what
keeping them in float would cost.

    >>> report = quant_errors("runs/nuclei/model.keras")  # doctest: +SKIP
    >>> report["layers"][0]["layer"], report["layers"][0]["rmse_steps"]  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import io
import warnings

import numpy as np

from edgeseg.device import card as cards
from edgeseg.device.data import roles
from edgeseg.device.errors import ConfigError


def quant_errors(model_path, *, calib: str | None = None, verify_data: str | None = None,
                 input_size=None, calib_samples: int = 100, verify_samples: int = 16,
                 seed: int = 0, unsafe: bool = False, contract: dict | None = None,
                 custom_objects: dict | None = None,
                 sensitivity: bool = False, to: str = "tflite") -> dict:
    """Per-layer int8 error of the model at ``model_path`` (a Keras model of any flavour).

    Returns ``{"model", "calibration", "images", "layers": [...]}``; each layer (one quantized
    op's output) has ``op``, ``layer``, ``tensor``, ``elements``, ``rmse``, ``max_abs_error``,
    ``scale`` (the int8 step), ``rmse_steps`` (RMSE in steps: 0.29 is a perfect rounding error),
    ``macs`` and ``macs_share``, ranked by ``rmse_steps``, worst first. ``sensitivity``: also
    each layer's Dice gain when it alone stays float (``sensitivity`` key: layers ranked by gain,
    measured on the same labelled images; :mod:`converters.selective`). ``to="onnx"``: the same
    for ONNX Runtime's int8 QDQ model (:func:`onnx_layer_errors`; each layer with ``sqnr_db``
    instead of ``rmse_steps``, ranked lowest first).
    """
    from converters.tflite import layer_name, make_converter
    from edgeseg import runtime
    from edgeseg._keras import tf
    from edgeseg.device.flops import tflite_cost

    loaded = runtime.load(model_path, unsafe=unsafe, contract=contract,
                          custom_objects=custom_objects)
    if loaded.format != "keras":
        how = "TFLite's debugger converts it" if to == "tflite" else \
            "ONNX Runtime's quantizer takes its ONNX export"
        raise ConfigError(f"{model_path}: the per-layer error is measured from the float Keras "
                          f"model the int8 file is made from ({how})")
    model = loaded.selected
    card = loaded.card
    size = cards.parse_size(input_size) if input_size else cards.size_of(card) or \
        (tuple(model.input_shape[1:3]) if None not in model.input_shape[1:3] else None)
    if size is None:
        raise ConfigError(f"{model_path} takes any input size: give --input-size")
    channels, num_classes = int(model.input_shape[-1]), loaded.num_classes
    data = calib or roles.trained_data(card)
    if data is None:
        raise ConfigError("the int8 ranges need calibration data: give --calib DATA")
    trained_on = roles.trained_config(card) or roles.own_split(data, seed)
    norm, fit = cards.normalization_of(card), cards.input_fit_of(card)
    calibration = roles.calibration_images(data, size=size, channels=channels, count=calib_samples,
                                     seed=seed, normalization=norm, fit=fit, trained_on=trained_on)
    images, masks, where, _ = roles.parity_images(data, verify_data=verify_data,
                                                  trained_on=trained_on, size=size,
                                                  channels=channels, num_classes=num_classes,
                                                  count=verify_samples, seed=seed,
                                                  normalization=norm)
    if to == "onnx":
        from converters.onnx import onnx_bytes

        raw = onnx_bytes(model, size)
        report = {"model": str(model_path), "input_size": list(size), "format": "onnx",
                  "calibration": {"data": data, "samples": len(calibration),
                                  "images": roles.calibration_source(data, trained_on),
                              "source_images": roles.calibration_sources(
                                  data, trained_on, len(calibration))},
                  "images": where, "layers": onnx_layer_errors(raw, calibration, images)}
        if sensitivity:
            _add_sensitivity(report, raw, size, calibration, images, masks, where, loaded,
                             num_classes, "onnx", verify_data)
        return report
    converter = make_converter(model, size, "int8", calibration)
    from edgeseg.device.log import native_chatter_dropped

    with warnings.catch_warnings(), native_chatter_dropped():  # TensorFlow's notes (integer
        # conversion, tf.lite.Interpreter) and its native quantizer's
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
        warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=converter, debug_dataset=lambda: ([image[None]] for image in images))
        debugger.run()
        quantized = debugger.get_nondebug_quantized_model()
    table = io.StringIO()
    debugger.layer_statistics_dump(table)
    costs = {layer.name: layer.macs for layer in tflite_cost(quantized).layers}
    total = sum(costs.values()) or 1
    layers = []
    for row in csv.DictReader(io.StringIO(table.getvalue())):
        scale = float(row["scale"])
        rmse = float(np.sqrt(float(row["mean_squared_error"])))
        macs = costs.get(row["tensor_name"], 0)
        layers.append({"op": row["op_name"], "layer": layer_name(row["tensor_name"]),
                       "tensor": row["tensor_name"], "elements": int(float(row["num_elements"])),
                       "rmse": rmse, "max_abs_error": float(row["max_abs_error"]),
                       "scale": scale, "rmse_steps": rmse / scale if scale else None,
                       "macs": macs, "macs_share": macs / total})
    layers.sort(key=lambda layer: -(layer["rmse_steps"] or 0))
    report = {"model": str(model_path), "input_size": list(size),
              "calibration": {"data": data, "samples": len(calibration),
                              "images": roles.calibration_source(data, trained_on),
                              "source_images": roles.calibration_sources(
                                  data, trained_on, len(calibration))},
              "images": where, "layers": layers}
    if sensitivity:
        _add_sensitivity(report, model, size, calibration, images, masks, where, loaded,
                         num_classes, "tflite", verify_data)
    return report


def _add_sensitivity(report, model, size, calibration, images, masks, where, loaded,
                     num_classes, to, verify_data=None) -> None:
    from converters.selective import search

    if masks is None:
        raise ConfigError(f"the sensitivity is a Dice gain: it needs labelled images (found "
                          f"{where}): {roles.labels_hint(verify_data)}")
    probs = np.concatenate([loaded.predict(images[i:i + 8]) for i in range(0, len(images), 8)])
    found = search(model, size, calibration, images, masks, probs, max_dice_drop=1.0,
                   num_classes=num_classes, measure_all=True, to=to, echo=lambda line: None)
    report["dice_float"], report["dice_int8"] = found.dice_source, found.dice_int8
    report["sensitivity"] = [{k: s[k] for k in ("layer", "op", "macs", "dice", "gain")}
                             for s in found.sensitivity]


def onnx_layer_errors(float_bytes: bytes, calibration, images) -> list[dict]:
    """Per-node error of ONNX Runtime's int8 QDQ model against the float one on ``images``
    (ORT's ``qdq_loss_debug``: every node's output saved from both models, compared): each node
    with ``op``, ``layer`` (the node), ``tensor``, ``sqnr_db`` (signal to quantization noise of
    the int8 model's output against the float model's; lower is worse, about 6 dB a bit),
    ``lost_db`` (how much lower than its worst input's: the error the node itself adds; a graph
    input counts as exact), ``macs``, ``macs_share``; ranked by ``lost_db``, worst first.
    Errors accumulate through the graph, so the node where the SQNR falls, not the lowest one,
    is the culprit."""
    import tempfile
    from pathlib import Path

    import onnx
    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations,
        compute_activation_error,
        create_activation_matching,
        modify_model_output_intermediate_tensors,
    )

    from converters.onnx import OnnxQuantizer
    from edgeseg.device.flops import onnx_cost

    with OnnxQuantizer(float_bytes, calibration) as quantizer, \
            tempfile.TemporaryDirectory(prefix="edgeseg-qdq-") as tmp:
        qdq = Path(tmp) / "qdq.onnx"
        qdq.write_bytes(quantizer.quantize())
        prepared = onnx.load(str(quantizer.prepared))
        activations = {}
        for name, path in (("float", quantizer.prepared), ("qdq", qdq)):
            augmented = Path(tmp) / f"{name}-augmented.onnx"
            modify_model_output_intermediate_tensors(str(path), str(augmented))
            feeds = [{prepared.graph.input[0].name: np.asarray(image, np.float32)[None]}
                     for image in images]
            activations[name] = collect_activations(str(augmented), feeds)
    matching = create_activation_matching(activations["qdq"], activations["float"])
    errors = compute_activation_error(matching)
    sqnr = {tensor: float(e["xmodel_err"]) for tensor, e in errors.items() if "xmodel_err" in e}
    costs = {layer.name: layer.macs for layer in onnx_cost(prepared).layers}
    total = sum(costs.values()) or 1
    exact = 100.0  # a graph input or a weight: what the node reads is exact before it runs
    producer = {out: node for node in prepared.graph.node for out in node.output}
    reach: dict[str, float] = {}

    def upstream(tensor: str) -> float:
        """The SQNR a tensor arrives with: its own where measured, else its producer's inputs'
        (a fused op's intermediate is not saved), exact at graph inputs and weights."""
        if tensor in sqnr:
            return sqnr[tensor]
        if tensor not in reach:
            node = producer.get(tensor)
            reach[tensor] = exact if node is None else min(
                [upstream(i) for i in node.input if i] or [exact])
        return reach[tensor]

    layers = []
    for node in prepared.graph.node:
        measured = [sqnr[out] for out in node.output if out in sqnr]
        if not measured:
            continue
        before = min([upstream(i) for i in node.input if i] or [exact])
        macs = costs.get(node.name or node.output[0], 0)
        layers.append({"op": node.op_type, "layer": node.name or node.output[0],
                       "tensor": node.output[0], "sqnr_db": measured[0],
                       "lost_db": before - measured[0], "macs": macs, "macs_share": macs / total})
    layers.sort(key=lambda layer: -layer["lost_db"])
    return layers


def format_errors(report: dict, top: int = 15) -> str:
    """The ranking as a table for a terminal."""
    calibration = report["calibration"]
    cut = calibration.get("source_images", calibration["samples"])
    inputs = f"{calibration['samples']} images" if cut == calibration["samples"] else \
        f"{calibration['samples']} inputs cut from {cut} images"
    lines = [f"{report['model']}: int8 error per layer on {report['images']} (calibrated on "
             f"{inputs}: {calibration['images']})"]
    if report.get("format") == "onnx":
        lines.append(f"{'node':<36} {'op':<14} {'SQNR dB':>8} {'lost here':>10} {'MACs':>7}")
        for layer in report["layers"][:top]:
            lines.append(f"{layer['layer'][-36:]:<36} {layer['op'][:14]:<14} "
                         f"{layer['sqnr_db']:>8.1f} {layer['lost_db']:>10.1f} "
                         f"{layer['macs_share']:>6.1%}")
        lines.append("SQNR of each node's int8 output against the float model's (ONNX Runtime's "
                     "qdq_loss_debug; about 6 dB a bit), ranked by how much the node itself loses "
                     "(its SQNR below its worst input's; graph inputs count as exact).")
    else:
        lines.append(f"{'layer':<28} {'op':<18} {'RMSE (steps)':>12} {'max |err|':>10} "
                     f"{'MACs':>7}")
        for layer in report["layers"][:top]:
            steps = f"{layer['rmse_steps']:.2f}" if layer["rmse_steps"] is not None else "-"
            lines.append(f"{layer['layer'][:28]:<28} {layer['op'][:18]:<18} {steps:>12} "
                         f"{layer['max_abs_error']:>10.4f} {layer['macs_share']:>6.1%}")
        lines.append("RMSE in quantization steps of the layer's output: 0.29 is rounding alone; "
                     "layers far above it lose information (clipped ranges, outliers).")
    if "sensitivity" in report:
        total = sum(s["macs"] for s in report["sensitivity"]) or 1
        lines += ["", f"Sensitivity: Dice with each layer alone in float (float "
                      f"{report['dice_float']:.4f}, full int8 {report['dice_int8']:.4f})",
                  f"{'layer':<28} {'op':<18} {'Dice':>8} {'gain':>8} {'MACs':>7}"]
        for s in report["sensitivity"][:top]:
            lines.append(f"{s['layer'][:28]:<28} {s['op'][:18]:<18} {s['dice']:>8.4f} "
                         f"{s['gain']:>+8.4f} {s['macs'] / total:>6.1%}")
    return "\n".join(lines)


__all__ = ["format_errors", "onnx_layer_errors", "quant_errors"]
