"""The child side of :func:`edgeseg.device.untrusted.probe_in_child`: open a model file with its
runtime and run it once on zeros, in a process of its own.

    python -m edgeseg.device.probe model.tflite  # 0: ran; 3: refused (one line); a signal: crashed
"""

from __future__ import annotations

import sys

from edgeseg.device.errors import EdgesegError


def probe(path: str) -> int:
    """Open ``path`` with its runtime and run one inference on zeros: 0 when it ran, 3 for a
    clean refusal (its one line on standard output)."""
    import numpy as np

    from edgeseg.device.runtime import load

    try:
        model = load(path, trusted=True)
        shape = [d if d is not None else 32 for d in model.input_shape]
        model.predict(np.zeros(shape, np.float32))
    except EdgesegError as error:
        print(error)
        return 3
    except Exception as error:  # noqa: BLE001 - any runtime exception is a clean refusal here
        print(f"{path}: the runtime cannot run this model ({type(error).__name__}: "
              f"{str(error).splitlines()[0][:160] if str(error) else ''})")
        return 3
    return 0



if __name__ == "__main__":
    sys.exit(probe(sys.argv[1]))
