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


def _inline(model, tflite: bytes) -> None:
    """Buffers stored after the flatbuffer (``offset``/``size``, as ai-edge-quantizer and other
    writers place large weights) moved into the flatbuffer: the object API packs the tables
    only, so the bytes behind the offsets would be lost."""
    for buffer in model.buffers or []:
        if getattr(buffer, "offset", 0) and buffer.offset > 1:
            end = buffer.offset + buffer.size
            buffer.data = np.frombuffer(tflite[buffer.offset:end], np.uint8)
            buffer.offset = buffer.size = 0


def rewrite(tflite: bytes, card: dict | None = None, *, compact: bool = True) -> bytes:
    """The same model with ``card`` as JSON metadata (``edgeseg.device.card``) and, if ``compact``,
    the shared vectors and short names described above."""
    fb = schema()
    model = fb.ModelT.InitFromPackedBuf(bytearray(tflite), 0)
    _inline(model, tflite)
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


def for_quantizer(tflite: bytes, signature: str = "serving_default") -> tuple[bytes, int]:
    """(The model as ai-edge-quantizer takes it, how many float16 weights were widened.)

    Float16 weights behind DEQUANTIZE ops (a float16 .tflite, MediaPipe's models) become float32
    constants, exactly (every float16 is a float32), and the ops and float16 tensors go; a model
    without a SignatureDef (the quantizer calibrates through one) gets ``signature`` over its
    inputs and outputs. Everything else is unchanged."""
    fb = schema()
    model = fb.ModelT.InitFromPackedBuf(bytearray(tflite), 0)
    _inline(model, tflite)
    widened, gone = 0, []
    for graph in model.subgraphs or []:
        kept, replaced = [], set()
        for op in graph.operators or []:
            code = model.operatorCodes[op.opcodeIndex]
            builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
            source = graph.tensors[op.inputs[0]] if builtin == fb.BuiltinOperator.DEQUANTIZE \
                else None
            data = model.buffers[source.buffer].data if source is not None else None
            if source is None or source.type != fb.TensorType.FLOAT16 or data is None or \
                    not len(data):
                kept.append(op)
                continue
            weights = fb.BufferT()
            weights.data = np.frombuffer(
                np.frombuffer(bytes(data), np.float16).astype("<f4").tobytes(), np.uint8)
            model.buffers.append(weights)
            graph.tensors[op.outputs[0]].buffer = len(model.buffers) - 1
            replaced.add(int(op.inputs[0]))
            widened += 1
        graph.operators = kept
        gone.append(replaced - _read(model, graph, len(gone)))  # another op may still read one
    _drop_tensors(model, gone)
    if not model.signatureDefs and model.subgraphs:
        graph = model.subgraphs[0]

        def maps(indices):
            out = []
            for index in indices:
                entry = fb.TensorMapT()
                name = graph.tensors[index].name
                entry.name = name.decode() if isinstance(name, bytes) else name
                entry.tensorIndex = int(index)
                out.append(entry)
            return out

        defined = fb.SignatureDefT()
        defined.signatureKey, defined.subgraphIndex = signature, 0
        defined.inputs, defined.outputs = maps(graph.inputs), maps(graph.outputs)
        model.signatureDefs = [defined]
    builder = _SharingBuilder(len(tflite) * 2 + 1024, share=False)
    builder.Finish(model.Pack(builder), file_identifier=_IDENTIFIER)
    return bytes(builder.Output()), widened


def integer_weights(tflite: bytes) -> int:
    """How many constant tensors of ``tflite`` hold integer weights (int8, uint8, int16, int4):
    a model some quantizer has been through already."""
    fb = schema()
    model = fb.ModelT.InitFromPackedBuf(bytearray(tflite), 0)
    kinds = {fb.TensorType.INT8, fb.TensorType.UINT8, fb.TensorType.INT16,
             getattr(fb.TensorType, "INT4", -1)}
    return sum(1 for graph in model.subgraphs or [] for tensor in graph.tensors or []
               if tensor.type in kinds and tensor.buffer and
               model.buffers[tensor.buffer].data is not None and
               len(model.buffers[tensor.buffer].data))


def _read(model, graph, index: int) -> set[int]:
    """The tensors of subgraph ``index`` that an op, the subgraph or a signature reads."""
    read = {int(i) for op in graph.operators or [] for i in
            [*(op.inputs if op.inputs is not None else []),
             *(op.intermediates if op.intermediates is not None else [])] if i >= 0}
    read |= {int(i) for i in [*(graph.inputs if graph.inputs is not None else []),
                              *(graph.outputs if graph.outputs is not None else [])]}
    for signature in model.signatureDefs or []:
        if signature.subgraphIndex == index:
            read |= {e.tensorIndex for e in (signature.inputs or []) + (signature.outputs or [])}
    return read


def _drop_tensors(model, gone: list[set[int]]) -> None:
    """Remove the tensors ``gone[i]`` (nothing reads them any more) from subgraph ``i``,
    renumbering the rest, and empty the buffers no other tensor (of any subgraph) or metadata
    entry holds."""
    graphs = model.subgraphs or []
    held = {t.buffer for index, graph in enumerate(graphs)
            for number, t in enumerate(graph.tensors or []) if number not in gone[index]}
    held |= {entry.buffer for entry in model.metadata or []}
    for index, graph in enumerate(graphs):
        if not gone[index]:
            continue
        for number in gone[index]:
            if graph.tensors[number].buffer and graph.tensors[number].buffer not in held:
                model.buffers[graph.tensors[number].buffer].data = None
        order = [i for i in range(len(graph.tensors)) if i not in gone[index]]
        new = {old: position for position, old in enumerate(order)}
        renumber = lambda indices: None if indices is None else np.array(  # noqa: E731
            [new[int(i)] if i >= 0 else int(i) for i in indices], np.int32)
        graph.tensors = [graph.tensors[i] for i in order]
        for op in graph.operators:
            op.inputs, op.outputs = renumber(op.inputs), renumber(op.outputs)
            if op.intermediates is not None:
                op.intermediates = renumber(op.intermediates)
        graph.inputs, graph.outputs = renumber(graph.inputs), renumber(graph.outputs)
        for signature in model.signatureDefs or []:
            if signature.subgraphIndex == index:
                for entry in (signature.inputs or []) + (signature.outputs or []):
                    entry.tensorIndex = new[entry.tensorIndex]


__all__ = ["for_quantizer", "integer_weights", "rewrite"]
