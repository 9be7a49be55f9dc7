"""Rewrite a .tflite flatbuffer: embed the model card, share repeated vectors, shorten tensor names.

What the converter writes carries overhead that no runtime reads: every per-channel quantized
tensor stores its own vector of int64 zero points (all 0 for symmetric weights) and tensor names
such as ``mobile_unet/enc1_b0_pw_relu6/Relu6;mobile_unet/enc1_b0_pw_bn/FusedBatchNormV3;...``.
:func:`rewrite` stores each distinct vector once and references it from every tensor that uses it
(flatbuffers allow that; readers see the same values), and keeps the first, layer-named part of
each name. Weights, scales, shapes and ops are unchanged, so the rewritten model computes exactly
what the original does (the converters' parity check runs on the rewritten file).
"""

from __future__ import annotations

import json

import flatbuffers
import numpy as np

from edgeseg.device.formats.tflite import CARD_KEY, schema

_IDENTIFIER = b"TFL3"


class _SharingBuilder(flatbuffers.Builder):
    """A Builder that writes each distinct numpy vector once and keeps buffer data 16-byte aligned."""

    def __init__(self, size: int, share: bool = True):
        super().__init__(size)
        self._written: dict[tuple, int] = {}
        self._share = share

    def CreateNumpyVector(self, x):  # noqa: N802 - flatbuffers' name
        x = np.ascontiguousarray(x)
        key = (x.dtype.str, x.shape, x.tobytes()) if self._share else (id(x), len(self._written))
        if key not in self._written:
            if x.dtype == np.uint8 and x.size >= 16:
                self._written[key] = self._aligned_bytes(x)  # schema: Buffer.data force_align 16
            else:
                self._written[key] = super().CreateNumpyVector(x)
        return self._written[key]

    def _aligned_bytes(self, x: np.ndarray) -> int:
        self.StartVector(1, x.size, 16)
        self.head = self.head - x.size
        self.Bytes[self.Head():self.Head() + x.size] = x.tobytes()
        self.vectorNumElems = x.size
        return self.EndVector()


def _short_name(name: str, prefix: str) -> str:
    """``model/enc1_b0_pw_relu6/Relu6;model/enc1_b0_pw_bn/...`` -> ``enc1_b0_pw_relu6/Relu6``."""
    first = name.split(";")[0]
    return first[len(prefix):] if prefix and first.startswith(prefix) else first


def rewrite(tflite: bytes, card: dict | None = None, *, compact: bool = True) -> bytes:
    """The same model with ``card`` as JSON metadata (``edgeseg.device.card``) and, if ``compact``,
    the shared vectors and short names described above."""
    fb = schema()
    model = fb.ModelT.InitFromPackedBuf(bytearray(tflite), 0)
    if compact:
        for graph in model.subgraphs or []:
            io = set(graph.inputs.tolist() if graph.inputs is not None else []) | \
                set(graph.outputs.tolist() if graph.outputs is not None else [])
            names = [t.name.decode() if isinstance(t.name, bytes) else (t.name or "")
                     for t in graph.tensors]
            heads = {n.split("/")[0] for n in names if "/" in n}
            prefix = f"{heads.pop()}/" if len(heads) == 1 else ""
            seen: dict[str, int] = {}
            for index, (tensor, name) in enumerate(zip(graph.tensors, names)):
                if index in io:
                    continue  # signature-visible names stay as they are
                short = _short_name(name, prefix)
                seen[short] = seen.get(short, 0) + 1
                tensor.name = short if seen[short] == 1 else f"{short}:{seen[short] - 1}"
    if card is not None:
        payload = json.dumps(card, sort_keys=True).encode()
        model.metadata = [m for m in (model.metadata or [])
                          if (m.name.decode() if isinstance(m.name, bytes) else m.name) != CARD_KEY]
        buffer = fb.BufferT()
        buffer.data = np.frombuffer(payload, np.uint8)
        model.buffers.append(buffer)
        entry = fb.MetadataT()
        entry.name = CARD_KEY
        entry.buffer = len(model.buffers) - 1
        model.metadata.append(entry)
    builder = _SharingBuilder(len(tflite) + 1024, share=compact)
    builder.Finish(model.Pack(builder), file_identifier=_IDENTIFIER)
    return bytes(builder.Output())


__all__ = ["rewrite"]
