"""``edgeseg.runtime.load``: any model file edgeseg works with, behind one interface.

``.tflite`` and ``.onnx`` files run in the device runtimes (:mod:`edgeseg.device.runtime`:
LiteRT, ONNX Runtime); Keras models (``.keras``, ``.h5``, a SavedModel folder, whatever Keras
wrote them) run in TensorFlow through :mod:`edgeseg.keras_files`, which is imported only when
such a file is loaded. Every model is an :class:`~edgeseg.device.runtime.EdgeModel`: ``predict``
takes normalised float32 NHWC images and gives class probabilities.

    >>> from edgeseg import runtime
    >>> model = runtime.load("runs/nuclei/model.keras")  # doctest: +SKIP
    >>> probs = model.predict(images)  # (N, H, W, classes) float32  # doctest: +SKIP
"""

from __future__ import annotations

from edgeseg.device import runtime as device
from edgeseg.device.runtime import BACKENDS, EdgeModel, LiteRTModel, OnnxModel


def load(path, *, num_threads: int | None = None, unsafe: bool = False, trusted: bool = False,
         contract: dict | None = None, foreign_only: bool = False,
         custom_objects: dict | None = None) -> EdgeModel:
    """The model at ``path`` in the runtime its suffix names (a folder: a SavedModel).

    Args:
        num_threads: CPU threads for the runtime (default: its own choice; LiteRT: 1).
        unsafe: Keras only: allow models that carry code (Lambda layers).
        trusted: .tflite/.onnx: skip the verification and the child-process probe of
            :mod:`edgeseg.device.untrusted` (for files this process has just written).
        contract: I/O-contract keys put over the model's card (see
            :func:`edgeseg.device.card.with_overrides`).
        foreign_only: apply ``contract`` only when the file's card was not written by edgeseg.
        custom_objects: Keras only: the user's layer classes and functions by name
            (:func:`edgeseg.keras_files.custom_objects_from`, the CLI's ``--custom-objects``).
    """
    def keras(path, num_threads, *, contract, trusted):
        from edgeseg.keras_files import KerasModel  # TensorFlow: only for Keras models

        return KerasModel(path, num_threads, contract=contract, unsafe=unsafe,
                          custom_objects=custom_objects)

    backends = {suffix: keras for suffix in (*device.KERAS_SUFFIXES, device.FOLDER)}
    return device.load(path, num_threads=num_threads, trusted=trusted, contract=contract,
                       foreign_only=foreign_only, backends=backends)


__all__ = ["BACKENDS", "EdgeModel", "LiteRTModel", "OnnxModel", "load"]
