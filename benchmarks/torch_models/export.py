"""PyTorch models exported to .onnx as their users export them (run in a PyTorch environment:
this file imports torch, torchvision and segmentation_models_pytorch, never edgeseg).

    python benchmarks/torch_models/export.py --data cells/ --out torch_models/

writes, with ``models.json`` describing each (its input size, classes, the exporter and the
versions):

- ``smp_unet.onnx`` + ``smp_unet.onnx.data``: a segmentation_models_pytorch U-Net (ResNet-18
  encoder, ``encoder_weights=None``, one logit) trained briefly on ``--data`` (a folder of
  ``images/`` and ``masks/`` as ``edgeseg data synth`` writes it; grey images repeated to RGB,
  pixels / 255), exported with SMP's documented call (``torch.onnx.export`` with a dynamic
  batch), whose weights go to an external data file;
- ``lraspp.onnx`` (fixed 64x64) and ``lraspp_dynamic.onnx`` (dynamic height and width):
  torchvision's LR-ASPP on MobileNetV3-Large (``weights=None``, 2 classes, trained briefly on
  ``--data`` with cross-entropy), the ``out`` head.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def read_folder(folder: Path):
    """(images (N, 3, H, W) float32 in [0, 1], masks (N, H, W) int64) of a synth folder."""
    images, masks = [], []
    for path in sorted((folder / "images").glob("*.png")):
        grey = np.asarray(Image.open(path).convert("L"), np.float32) / 255.0
        images.append(np.repeat(grey[None], 3, axis=0))
        masks.append(np.asarray(Image.open(folder / "masks" / path.name), np.int64))
    return torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(masks))


def train_unet(images, masks, steps: int, seed: int):
    import segmentation_models_pytorch as smp

    torch.manual_seed(seed)
    model = smp.Unet("resnet18", encoder_weights=None, in_channels=3, classes=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    dice = smp.losses.DiceLoss("binary", from_logits=True)
    bce = torch.nn.BCEWithLogitsLoss()
    rng = np.random.default_rng(seed)
    model.train()
    for _ in range(steps):
        batch = torch.from_numpy(rng.choice(len(images), 8, replace=False))
        x, y = images[batch], (masks[batch] == 1).float()[:, None]
        logits = model(x)
        loss = dice(logits, y) + bce(logits, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    return model, float(loss)


def train_lraspp(model, images, masks, steps: int, seed: int):
    """torchvision's LR-ASPP (2 classes) trained briefly with cross-entropy (unlabelled 255
    ignored), so its Dice means something."""
    torch.manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    loss_of = torch.nn.CrossEntropyLoss(ignore_index=255)
    rng = np.random.default_rng(seed)
    model.train()
    for _ in range(steps):
        batch = torch.from_numpy(rng.choice(len(images), 8, replace=False))
        loss = loss_of(model(images[batch]), masks[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    # BatchNorm's running statistics lag after a few steps: measured again over the data, as
    # the cumulative mean of every batch (the weights stay as trained)
    batch_norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for norm in batch_norms:
        norm.reset_running_stats()
        norm.momentum = None
    with torch.no_grad():
        for start in range(0, len(images) - 7, 8):
            model(images[start:start + 8])
    model.eval()
    return model, float(loss)


class OutHead(torch.nn.Module):
    """torchvision's segmentation models return a dict; their users export its ``out``."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x)["out"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    import segmentation_models_pytorch as smp
    import torchvision

    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    images, masks = read_folder(args.data)
    size = int(images.shape[-1])
    started = time.perf_counter()
    unet, loss = train_unet(images, masks, args.steps, args.seed)
    trained = time.perf_counter() - started
    versions = {"torch": torch.__version__, "torchvision": torchvision.__version__,
                "segmentation_models_pytorch": smp.__version__}
    described = {}

    # SMP's documented export: a dynamic batch, names "input" and "output"
    sample = torch.ones([1, 3, size, size])
    with torch.no_grad():
        torch.onnx.export(unet, sample, str(args.out / "smp_unet.onnx"),
                          input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": {0: "batch_size"},
                                        "output": {0: "batch_size"}})
    described["smp_unet.onnx"] = {
        "input_size": [size, size], "channels": 3, "classes": 1, "output_kind": "logits",
        "normalization": "scale", "trained_on": str(args.data), "steps": args.steps,
        "final_loss": loss, "train_seconds": round(trained, 1)}

    lraspp = OutHead(torchvision.models.segmentation.lraspp_mobilenet_v3_large(
        weights=None, weights_backbone=None, num_classes=2))
    started = time.perf_counter()
    lraspp, lraspp_loss = train_lraspp(lraspp, images, masks, args.steps, args.seed)
    lraspp_trained = time.perf_counter() - started
    with torch.no_grad():
        torch.onnx.export(lraspp, torch.ones([1, 3, 64, 64]), str(args.out / "lraspp.onnx"),
                          input_names=["input"], output_names=["out"])
        torch.onnx.export(lraspp, torch.ones([1, 3, 64, 64]),
                          str(args.out / "lraspp_dynamic.onnx"), input_names=["input"],
                          output_names=["out"],
                          dynamic_axes={"input": {0: "batch", 2: "height", 3: "width"},
                                        "out": {0: "batch", 2: "height", 3: "width"}})
    for name, fixed in (("lraspp.onnx", True), ("lraspp_dynamic.onnx", False)):
        described[name] = {"input_size": [64, 64] if fixed else None, "channels": 3,
                           "classes": 2, "output_kind": "logits", "normalization": "scale",
                           "trained_on": str(args.data), "steps": args.steps,
                           "final_loss": lraspp_loss, "train_seconds": round(lraspp_trained, 1)}
    (args.out / "models.json").write_text(json.dumps({"versions": versions,
                                                      "models": described}, indent=2))
    print(json.dumps({"versions": versions, "files": sorted(p.name for p in args.out.iterdir())}))


if __name__ == "__main__":
    main()
