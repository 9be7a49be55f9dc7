"""Saving Keras models atomically (loading them: :mod:`edgeseg.keras_files`).

HDF5 files (``.h5`` models, ``.weights.h5``) are built in memory and written by Python: the HDF5
library writing to a disk that fills up reports the failure from object destructors and can end
the process with a segmentation fault, where a Python write raises one ``OSError`` naming the
file. A ``.keras`` file is a zip that Python itself writes.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

from edgeseg.device.files import atomic_write_bytes


def save_model(model, path) -> Path:
    """Save a Keras model atomically (to a temporary name beside it, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".h5":
        import h5py

        buffer = io.BytesIO()
        with warnings.catch_warnings():  # HDF5 is chosen on purpose for QAT models (see optimize)
            warnings.filterwarnings("ignore", message="You are saving your model as an HDF5 file")
            with h5py.File(buffer, "w") as handle:
                model.save(handle)
        return atomic_write_bytes(path, buffer.getvalue())
    tmp = path.with_name(f".{path.stem}.partial{path.suffix}")
    try:
        model.save(str(tmp))
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as error:
        if error.filename is None or str(error.filename) == str(tmp):
            error.filename = str(path)  # the file the user asked for, not the scratch name
        raise
    finally:
        tmp.unlink(missing_ok=True)
    return path


class _Member:
    """What Keras' weight store writes into an archive, kept here instead (see weights_bytes)."""

    data = b""

    def writestr(self, name, data):
        self.data = data


def weights_bytes(model) -> bytes:
    """The bytes of ``model.save_weights("x.weights.h5")``, built in memory: Keras' own weight
    store, as it writes the weights inside a ``.keras`` archive."""
    from tf_keras.src.saving import saving_lib

    member = _Member()
    store = saving_lib.H5IOStore("model.weights.h5", archive=member, mode="w")
    saving_lib._save_state(model, weights_store=store, assets_store=None, inner_path="",
                           visited_trackables=set())
    store.close()
    return member.data


def save_weights(model, path) -> Path:
    """``model.save_weights(path)`` (a ``.weights.h5`` file), atomically and with a full disk said
    as one ``OSError`` naming ``path``."""
    return atomic_write_bytes(path, weights_bytes(model))


def is_quantization_aware(model) -> bool:
    """True for a tfmot QAT model (its layers wrapped with fake-quantization)."""
    return any(type(layer).__name__.startswith("Quantize") for layer in model.layers)
