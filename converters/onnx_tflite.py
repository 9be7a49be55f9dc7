"""A user's .onnx (a PyTorch export) -> a .tflite in any TFLite mode, verified against ONNX Runtime.

onnx2tf, the field's ONNX -> TFLite tool, runs in an environment of its own
(:mod:`converters.tools`: it pins TensorFlow 2.19) and writes an NHWC SavedModel and a float32
.tflite at the size asked (batch 1). The float32 file is onnx2tf's; every other mode is converted
from its SavedModel here, by edgeseg's TFLite converter, calibrated on edgeseg's calibration
images. Parity runs the .tflite against the .onnx through ONNX Runtime, as every conversion is
checked against its source, and the card names the tool and its versions.

    >>> onnx_to_tflite("unet.onnx", "unet_int8.tflite",
    ...                ConvertConfig(quant="int8", calib="data/cells"))  # doctest: +SKIP
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

from converters.config import ConvertConfig, ConvertResult, variant_of
from converters.tflite import ConversionError
from converters.tflite_source import input_type
from converters.write import write_checked
from edgeseg.device import card as cards
from edgeseg.device.data import roles
from edgeseg.device.errors import ConfigError
from edgeseg.device.log import progress

# run as -c source: from its own folder, converters/onnx.py would shadow the onnx package
WORKER = Path(__file__).with_name("onnx2tf_worker.py")
# onnx2tf's sample images, read from its working folder (else it downloads them)
SAMPLES = "calibration_image_sample_data_20x128x128x3_float32.npy"


def onnx_to_tflite(model_path, out, cfg: ConvertConfig) -> ConvertResult:
    """``model_path`` (.onnx) converted by onnx2tf, then to ``cfg.quant`` here; written to
    ``out`` with its card once parity against the .onnx holds."""
    import numpy as np

    from converters.onnx_source import read_user_onnx
    from converters.tflite import tflite_bytes
    from converters.tools import tool_python
    from edgeseg import runtime

    model_path, out = Path(model_path), Path(out)
    if cfg.fallback:
        raise ConfigError(f"{model_path}: --fallback for an .onnx searches through ONNX Runtime: "
                          f"--to onnx --quant int8 --fallback")
    python, record = tool_python("onnx2tf")  # said before the model is read
    calibrated = cfg.quant in ("int8", "int16x8")
    user = read_user_onnx(model_path, cfg, calibrated)
    source, source_card, size, channels = user.source, user.card, user.size, user.channels
    data, trained_on = user.data, user.trained_on
    kind = source.settle_output_kind(size, cfg.seed)
    calibration = None
    if calibrated:
        calibration = roles.calibration_images(data, size=size, channels=channels,
                                               count=cfg.calib_samples, seed=cfg.seed,
                                               normalization=user.normalization, fit=user.fit,
                                               trained_on=trained_on)

    shape = (1, channels, *size) if source.layout == "NCHW" else (1, *size, channels)
    quantizer = None  # set when ai-edge-quantizer made the file instead of TensorFlow
    progress(f"converting {model_path.name} with onnx2tf "
             f"{record['versions'].get('onnx2tf')} at {size[0]}x{size[1]} (its own environment)")
    with tempfile.TemporaryDirectory(prefix="edgeseg-onnx2tf-") as scratch:
        scratch = Path(scratch)
        rng = np.random.default_rng(cfg.seed)  # onnx2tf's own checks run on these
        np.save(scratch / SAMPLES, rng.random((20, 128, 128, 3), dtype=np.float32))
        static, name = _static_copy(model_path, shape, scratch)
        done = subprocess.run([str(python), "-c", WORKER.read_text(), str(static),
                               str(scratch / "saved"), f"{name}:{','.join(map(str, shape))}",
                               source.layout], cwd=scratch, capture_output=True, text=True)
        if done.returncode != 0:
            raise ConversionError(_failure(model_path, record, done.stdout + done.stderr))
        made = scratch / "saved" / f"{static.stem}_float32.tflite"
        if cfg.quant == "none" and cfg.io == "float" and not cfg.per_tensor:
            raw = made.read_bytes()
        else:  # edgeseg's converter, from onnx2tf's SavedModel
            saved = runtime.load(scratch / "saved")
            raw = tflite_bytes(saved.selected, size, cfg.quant, calibration, cfg.io,
                               cfg.per_tensor)
            why = _unloadable(raw)
            if why and _requantizable(cfg):  # e.g. XNNPACK refuses the SMP U-Net's int8 file
                from converters.flatbuffer import for_quantizer
                from converters.tflite_source import quantize_tflite, quantizer_version

                quantizer = quantizer_version()
                print(f"note: {model_path.name}: LiteRT cannot load TensorFlow's {cfg.quant} "
                      f"file ({why}); quantizing onnx2tf's float32 file with ai-edge-quantizer "
                      f"{quantizer} instead", file=sys.stderr)
                raw = quantize_tflite(model_path, for_quantizer(made.read_bytes())[0],
                                      cfg.quant, quantizer, calibration)

    card = cards.make_card(
        format="tflite", variant=variant_of(source_card.get("variant"), cfg.quant, False),
        input_size=list(size), channels=channels, num_classes=source.num_classes,
        class_names=source_card.get("class_names"),
        **{**cards.contract(source_card), "output_kind": kind},
        source={"model": str(model_path), "variant": source_card.get("variant"),
                "metrics": source_card.get("metrics"), "input_layout": source.layout},
        recipe={"stage": "convert", "to": "tflite", "quant": cfg.quant,
                "io": cfg.io if quantizer is None else input_type(raw),
                "per_tensor": cfg.per_tensor, "from": "onnx",
                "tool": {"name": "onnx2tf", **record["versions"],
                         **({"quantizer": f"ai-edge-quantizer {quantizer}"} if quantizer
                            else {})}},
        calibration=None if calibration is None else {
            "data": data, "samples": len(calibration), "seed": cfg.seed, "method": "minmax",
            "per_tensor": cfg.per_tensor,
            "images": roles.calibration_source(data, trained_on),
            "source_images": roles.calibration_sources(data, trained_on, len(calibration))})
    return write_checked(out, "tflite", raw, card, source, size, cfg, data, trained_on)


def _unloadable(raw: bytes) -> str | None:
    """Why LiteRT (with XNNPACK, as every runtime here loads it) cannot prepare ``raw``, or None."""
    from ai_edge_litert.interpreter import Interpreter

    try:
        Interpreter(model_content=raw).allocate_tensors()
    except (RuntimeError, ValueError) as error:
        return " ".join(str(error).split())[:200]
    return None


def _requantizable(cfg: ConvertConfig) -> bool:
    """Whether ai-edge-quantizer can make this mode from onnx2tf's float32 file instead."""
    from converters.tflite_source import RECIPES, quantizer_version

    return cfg.quant in RECIPES and cfg.io in ("float", "int8") and not cfg.per_tensor and \
        quantizer_version() is not None


def _static_copy(model_path: Path, shape, scratch: Path) -> tuple[Path, str]:
    """(The file, its input's name.) The model with its input fixed at ``shape`` and the shape
    arithmetic a dynamic export carries (Shape, Gather, Concat feeding Resize and Reshape)
    folded into constants by ONNX Runtime's basic graph optimizations (constant folding, exact
    rewrites only): onnx2tf stops at a Shape node of a dynamic export even with its input shape
    overwritten."""
    import onnx
    import onnxruntime as ort

    proto = onnx.load(str(model_path))  # external data read from beside the model
    graph_input = next(i for i in proto.graph.input
                       if i.name not in {init.name for init in proto.graph.initializer})
    for dim, value in zip(graph_input.type.tensor_type.shape.dim, shape):
        dim.ClearField("dim_param")
        dim.dim_value = value
    for output in proto.graph.output:  # inferred again from the fixed input
        for dim in output.type.tensor_type.shape.dim:
            dim.ClearField("dim_param")
    del proto.graph.value_info[:]
    fixed = scratch / "fixed.onnx"
    onnx.save(proto, str(fixed))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(scratch / "model.onnx")
    ort.InferenceSession(str(fixed), options, providers=["CPUExecutionProvider"])
    return scratch / "model.onnx", graph_input.name


def _failure(model_path: Path, record: dict, log: str) -> str:
    """One line from onnx2tf's log: the node it stopped at, its op type, and the reason."""
    import onnx

    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in log.splitlines()]
    node = next((line.split("onnx_op_name:", 1)[1].strip() for line in lines
                 if "onnx_op_name:" in line), None)
    reason = None
    for i, line in enumerate(lines):
        if "Exception encountered when calling layer" in line:  # Keras: the cause follows
            reason = next((rest for rest in lines[i + 1:] if rest), None)
            break
        if re.match(r"^[\w.]*(Error|Exception): ", line) and reason is None:
            reason = line
    reason = (reason or "no reason given").split(" for '{{node")[0][:240]
    version = record["versions"].get("onnx2tf")
    try:
        nodes = list(onnx.load(str(model_path), load_external_data=False).graph.node)
    except Exception:  # noqa: BLE001 - onnx2tf's own reason is the message; the op is extra
        nodes = []
    missing = re.search(r"No module named 'onnx2tf\.ops\.(\w+)'", log)
    if missing:  # onnx2tf imports a converter per op type: it has none for this one
        op = missing.group(1)
        first = next((n for n in nodes if n.op_type == op), None)
        domain = (first.domain or "ai.onnx") if first else None
        where = f" (node {first.name or '?'}, domain {domain})" if first else ""
        fix = "export it as standard ONNX ops" if domain not in (None, "ai.onnx") else \
            "export with another opset or without it"
        return (f"{model_path}: onnx2tf {version} has no converter for the {op} op{where}; "
                f"{fix}, or --to onnx (ONNX Runtime runs it)")
    if node is None:
        return f"{model_path}: onnx2tf {version} failed: {reason}"
    op = next((n.op_type for n in nodes if n.name == node), "?")
    return (f"{model_path}: onnx2tf {version} could not convert node {node} ({op}): {reason}; "
            f"try a fixed-size export or other --input-size sides, or --to onnx (ONNX Runtime)")


__all__ = ["onnx_to_tflite"]
