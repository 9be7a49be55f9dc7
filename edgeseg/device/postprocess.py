"""A model's raw output -> class probabilities, and what kind of output a graph ends in (numpy).

Segmentation models end in probabilities (a sigmoid for one channel, a softmax over classes) or in
the scores before them (logits: PyTorch models usually leave the activation to their loss).
edgeseg scores, tiles and blends probabilities, so logits get the activation here, on the device,
as the card's ``output_kind`` says. A file without a card has its kind read from its graph: the op
that makes the output, looked through ops that do not change what the values mean (resizes,
transposes, quantize/dequantize).

    >>> to_probabilities(np.zeros((1, 2, 2, 1), np.float32), "logits")[0, 0, 0, 0]
    0.5
"""

from __future__ import annotations

import numpy as np

# Ops (TFLite builtin names, ONNX op types, Keras layer classes) that end a graph in probabilities
ACTIVATIONS = {"LOGISTIC", "SOFTMAX", "Sigmoid", "Softmax", "sigmoid", "softmax"}
# Ops that end it in scores: linear maps with no activation after them
LINEAR = {"CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV", "FULLY_CONNECTED", "ADD", "MUL",
          "Conv", "ConvTranspose", "Gemm", "MatMul", "Add", "Mul", "BatchNormalization",
          "Conv2D", "Conv2DTranspose", "SeparableConv2D", "DepthwiseConv2D", "Dense"}
# Ops looked through: they move, resize or (de)quantize values without changing what they mean
PASS_THROUGH = {"DEQUANTIZE", "QUANTIZE", "RESHAPE", "TRANSPOSE", "RESIZE_BILINEAR",
                "RESIZE_NEAREST_NEIGHBOR", "DequantizeLinear", "QuantizeLinear", "Reshape",
                "Transpose", "Resize", "Upsample", "Identity", "Cast", "Squeeze", "Unsqueeze",
                "Flatten", "Permute", "UpSampling2D", "Resizing", "Cropping2D", "ZeroPadding2D",
                "Dropout", "InputLayer"}


def kind_from_ops(ops) -> str | None:
    """``probabilities``/``logits`` from the ops that make an output, last first (an iterable of
    op names, walked until one decides), or None when the graph does not tell."""
    for name in ops:
        if name in PASS_THROUGH:
            continue
        if name in ACTIVATIONS:
            return "probabilities"
        if name in LINEAR:
            return "logits"
        return None
    return None


def to_probabilities(output: np.ndarray, kind: str | None) -> np.ndarray:
    """Class probabilities (..., K) float32 from a model's output (..., K) of ``kind``:
    ``logits`` get a sigmoid (K == 1) or a softmax over K; probabilities pass unchanged."""
    output = np.asarray(output, np.float32)
    if kind != "logits":
        return output
    if output.shape[-1] == 1:
        return (0.5 * (1.0 + np.tanh(0.5 * output))).astype(np.float32)  # sigmoid, no overflow
    shifted = np.exp(output - output.max(axis=-1, keepdims=True))
    return (shifted / shifted.sum(axis=-1, keepdims=True)).astype(np.float32)


def looks_like_logits(output: np.ndarray) -> bool:
    """Whether values outside [0, 1] show that an output of unknown kind holds scores."""
    output = np.asarray(output)
    return bool(output.size) and (float(output.min()) < -1e-3 or float(output.max()) > 1 + 1e-3)


__all__ = ["kind_from_ops", "looks_like_logits", "to_probabilities"]
