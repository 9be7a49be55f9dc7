"""The machine's limit: the single-core fp32 matrix-multiply rate, against which a model's achieved
GMAC/s is read.

A convolution is a matrix multiply (im2col, or the pointwise 1x1 that dominates a MobileNet), so
the best a runtime can do on one core is roughly what the best GEMM does. numpy's BLAS (OpenBLAS in
the wheels) is pinned to one thread by running it in a child process whose thread variables are
set before numpy starts its pool; the rate is the best of several square fp32 multiplies.

    >>> roofline = gemm_rate()  # doctest: +SKIP
    >>> roofline["gflops"]  # doctest: +SKIP
    141.3
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                     "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")

_CHILD = r"""
import json, sys, time
import numpy as np
n, repeats = int(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)
a = rng.random((n, n), dtype=np.float32)
b = rng.random((n, n), dtype=np.float32)
a @ b
times = []
for _ in range(repeats):
    t0 = time.perf_counter()
    a @ b
    times.append(time.perf_counter() - t0)
blas = "unknown"
try:
    blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"].get("name", "unknown")
except Exception:
    pass
print(json.dumps({"times": times, "blas": blas, "numpy": np.__version__}))
"""


def gemm_rate(n: int = 1024, repeats: int = 10) -> dict:
    """The single-thread fp32 GEMM rate of this machine.

    Returns ``{"gflops", "gmacs_per_s", "n", "repeats", "blas", "method"}``: the best of ``repeats``
    (n x n) @ (n x n) float32 products, 2 n^3 FLOPs each (one multiply and one add per MAC).
    """
    env = {**os.environ, **{name: "1" for name in _THREAD_VARIABLES}}
    done = subprocess.run([sys.executable, "-c", _CHILD, str(n), str(repeats)], env=env,
                          capture_output=True, text=True, check=True, timeout=600)
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    best = min(measured["times"])
    gflops = 2 * n ** 3 / best / 1e9
    return {"gflops": round(gflops, 2), "gmacs_per_s": round(gflops / 2, 2), "n": n,
            "repeats": repeats, "blas": measured["blas"], "numpy": measured["numpy"],
            "method": f"numpy float32 {n}x{n} matmul, one BLAS thread, best of {repeats}"}


def fraction(macs: int | None, p50_ms: float | None, roofline: dict) -> float | None:
    """A model's achieved FLOP rate (2 * MACs / latency) as a fraction of the GEMM rate."""
    if not macs or not p50_ms:
        return None
    return 2 * macs / (p50_ms / 1e3) / 1e9 / roofline["gflops"]


__all__ = ["fraction", "gemm_rate"]
