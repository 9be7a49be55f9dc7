"""Pruning, clustering and quantization-aware training through tensorflow-model-optimization.

One concept per module: ``prune``, ``cluster``, ``quantize`` (QAT and its prune-/cluster-
preserving forms), ``selection`` (which kernels are touched), ``report`` (zeros and unique values),
``finetune`` (the short training every stage runs) and ``recipe`` (the chain and its card).
Importing this package imports TensorFlow and tfmot.
"""

from edgeseg.optimize.recipe import OptimizeResult, optimize, variant_name

__all__ = ["OptimizeResult", "optimize", "variant_name"]
