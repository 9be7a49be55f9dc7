"""Rows for targets that cannot run here, beside the measured ones: the harness's ``targets=``.

Each .tflite of a bench gets a row per target (see :mod:`edgeseg.device.targets`), with the Dice of
the exact file that target runs, on the bench's own images:

- **Ethos-U** (Vela): the NPU runs the same int8 .tflite, so the row carries the Dice that LiteRT
  measured for that file in this bench (``dice_source`` says so; the NPU itself is not run).
  Float files are left out (Vela takes int8), and that is said.
- **Cortex-M** (TFLite Micro): TFLM runs the file on this host, one image at a time, through the
  same tiling and normalisation as every runtime; its Dice is its own, and ``agreement_litert`` /
  ``max_abs_diff_litert`` compare its masks and probabilities with LiteRT's on the same images.

Needs numpy, and Vela / tflite-micro for their targets (no TensorFlow).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeseg.device import metrics
from edgeseg.device.errors import EdgesegError
from edgeseg.device.scoring import score_labels
from edgeseg.device.tiling import predict_image


def target_rows(targets, models: dict, pairs: list, labels: dict, scores: dict,
                reference_path: Path, overlap: int = 32, contract: dict | None = None,
                echo=print) -> list[dict]:
    """The target rows of a bench: ``models`` {path: EdgeModel} as loaded by the harness,
    ``pairs`` its (image, mask) samples, ``labels``/``scores`` its predictions and scores."""
    from edgeseg.device.targets import CORTEX_M, estimate, parse_targets

    names = parse_targets(targets)
    truth = [mask for _, mask in pairs]
    flat_truth = np.concatenate([m.ravel() for m in truth])
    reference_flat = np.concatenate([l.ravel() for l in labels[reference_path]])
    rows = []
    for path, model in models.items():
        if model.format != "tflite":
            if model.format == "onnx":
                echo(f"targets: {path.name} left out: they take .tflite files")
            continue
        for name in names:
            try:
                row = estimate(path, [name], contract=contract)[0]
            except EdgesegError as error:
                if "Vela takes fully int8" not in str(error):
                    raise
                echo(f"{name}: {path.name} left out: Vela takes int8 (or int16x8) files only")
                continue
            litert = scores[path]
            if name == CORTEX_M[0]:
                if row["runs"]:
                    row.update(_tflm_scores(path, model, pairs, labels[path], flat_truth,
                                            reference_flat, overlap, contract))
                    row["dice_delta"] = metrics.difference(row["dice"],
                                                           scores[reference_path]["dice"])
            else:
                row.update(dice=litert["dice"], dice_per_class=litert["dice_per_class"],
                           iou=litert["iou"],
                           dice_delta=metrics.difference(litert["dice"],
                                                         scores[reference_path]["dice"]),
                           dice_source="LiteRT on the same .tflite (the NPU runs this file; "
                                       "not run on an NPU here)")
            rows.append(row)
    return rows


def _tflm_scores(path, model, pairs, litert_labels, flat_truth, reference_flat, overlap,
                 contract) -> dict:
    """TFLM's own Dice on the bench's images, and how its output compares with LiteRT's."""
    from edgeseg.device.targets.tflm import TFLMModel

    micro = TFLMModel(path, contract=contract, trusted=True)
    labels, worst = [], 0.0
    for image, _ in pairs:
        probs = predict_image(micro, image, overlap)
        worst = max(worst, float(np.abs(probs - predict_image(model, image, overlap)).max()))
        labels.append(metrics.labels_from_probs(probs[None])[0])
    flat = np.concatenate([l.ravel() for l in labels])
    litert = np.concatenate([l.ravel() for l in litert_labels])
    s = score_labels(labels, [mask for _, mask in pairs], model.num_classes)
    return {"dice": s["dice"], "dice_per_class": s["dice_per_class"], "iou": s["iou"],
            "agreement": metrics.agreement(flat, reference_flat, flat_truth),
            "agreement_litert": metrics.agreement(flat, litert, flat_truth),
            "max_abs_diff_litert": worst, "dice_source": "TFLite Micro on this host"}


__all__ = ["target_rows"]
