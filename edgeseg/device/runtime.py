"""One interface over the runtimes a segmentation model runs in on a device: LiteRT, ONNX Runtime.

``load(path)`` picks the backend from the suffix: ``.tflite`` (ai_edge_litert, else tflite_runtime,
else tensorflow.lite: the first one installed), ``.onnx`` (onnxruntime); a caller may add
backends for other files (``backends``: :mod:`edgeseg.runtime` adds Keras models, on the host,
through :mod:`edgeseg.keras_files`). ``predict`` takes float32
NHWC images, normalised as the card says, and returns float32 NHWC class probabilities whatever
the file stores: quantized inputs and outputs are converted inside, an NCHW model (PyTorch's
exports) is transposed in and out, the segmentation output of a multi-output model is chosen,
logits get their sigmoid or softmax, and a model built for a batch of one is run one image at a
time. Importing this module imports neither TensorFlow nor a runtime; each backend imports its own
when a file is loaded.

    >>> from edgeseg import runtime
    >>> model = runtime.load("model_int8.tflite", num_threads=2)  # doctest: +SKIP
    >>> probs = model.predict(images)  # (N, H, W, classes) float32  # doctest: +SKIP
    >>> model.card["class_names"]  # doctest: +SKIP

Adding a runtime is one subclass of :class:`EdgeModel` (its raw input shape, outputs and run; the
contract is applied by the base class) and one entry in ``BACKENDS``.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import numpy as np

from edgeseg.device.errors import EdgesegError
from edgeseg.device.log import native_chatter_dropped
from edgeseg.device.untrusted import check_untrusted


class EdgeModel:
    """A loaded model: ``predict``, its input shape, class count, card and cost.

    The card's I/O contract is applied here, the same for every backend: an NCHW model gets its
    input transposed and its output transposed back, a multi-output model runs the output the card
    (or the only one that is an image of the input's size) selects, logits become probabilities.
    A backend implements ``_raw_input_shape``, ``_output_specs``, ``_run`` and, where its file
    tells, ``_output_ops`` (the op names that make an output, last first).
    """

    format = ""
    runtime = ""
    keep_edgeseg_cards = False  # True: a given contract applies only to files edgeseg did not make

    def __init__(self, path: Path, num_threads: int | None, contract: dict | None = None):
        self.path = Path(path)
        self.num_threads = num_threads
        self._contract = {k: v for k, v in (contract or {}).items() if v is not None}

    # --- what a backend provides ---------------------------------------------------------------
    @property
    def _raw_input_shape(self) -> tuple:
        """The input's shape in the file's own layout; None where any size is taken."""
        raise NotImplementedError

    @property
    def _output_specs(self) -> list[tuple[str, tuple]]:
        """(name, shape in the file's layout) of every output."""
        raise NotImplementedError

    def _run(self, images: np.ndarray, output: int) -> np.ndarray:
        """Output number ``output`` for a batch in the file's layout."""
        raise NotImplementedError

    def _output_ops(self, output: int) -> list[str]:
        return []

    def _embedded_card(self) -> dict:
        return {}

    def cost(self, input_size=None) -> tuple[int | None, int | None, float | None]:
        """(MACs, params, weight sparsity) read from the model itself; None where unknown."""
        return None, None, None

    def kernels(self) -> dict | None:
        """Which kernels run the model, as the runtime reports it (None where it cannot say)."""
        return None

    def own_params(self) -> int | None:
        """The parameter count as the model's card would state it, where it is cheap to read
        (to tell a card that belongs to another model); None where it is not."""
        return None

    # --- the contract --------------------------------------------------------------------------
    @functools.cached_property
    def card(self) -> dict:
        """The model card stored in the file, else the ``<file>.json`` beside it (a sidecar the
        user may write), else {}; contract keys given by the caller are put over it."""
        from edgeseg.device import card as cards

        card = self._embedded_card() or cards.read_card(self.path)
        if not self._contract or (self.keep_edgeseg_cards and card.get("schema") == cards.SCHEMA):
            return card
        return cards.with_overrides(card, **self._contract)

    @functools.cached_property
    def layout(self) -> str:
        """``NHWC`` or ``NCHW``: the card's, else detected from the input's shape."""
        from edgeseg.device import card as cards

        return cards.input_layout_of(self.card) or cards.detect_layout(self._raw_input_shape)

    def _nhwc(self, shape) -> tuple:
        shape = tuple(shape)
        if self.layout == "NCHW" and len(shape) == 4:
            return (shape[0], shape[2], shape[3], shape[1])
        return shape

    @functools.cached_property
    def output_index(self) -> int:
        """The output that holds the segmentation: the card's ``output`` (a name or an index),
        else the only one that is an image of the input's size."""
        specs = self._output_specs
        listed = ", ".join(f"{name} {list(shape)}" for name, shape in specs)
        wanted = self.card.get("output")
        if wanted is not None:  # a name first (PyTorch's exports name outputs "573"), else an index
            names = [str(name) for name, _ in specs]
            if str(wanted) in names:
                return names.index(str(wanted))
            if str(wanted).isdigit() and int(wanted) < len(specs):
                return int(wanted)
            raise EdgesegError(f"{self.path}: no output {wanted!r}; it has {listed}")
        if len(specs) == 1:
            return 0
        _, height, width, _ = self.input_shape
        images = [i for i, (_, shape) in enumerate(specs) if len(shape) == 4 and
                  self._nhwc(shape)[1:3] == (height, width)]
        if len(images) > 1 and height is None:  # any size: which outputs keep it, on a probe
            images = [i for i in images if self._keeps_size(i)]
        if len(images) == 1:
            return images[0]
        raise EdgesegError(f"{self.path}: {len(specs)} outputs ({listed}); choose the "
                           f"segmentation with --output NAME or INDEX")

    def _probe(self, output: int, side: int = 64):
        """Output ``output`` (NHWC) for one blank image of the model's fixed size, else
        ``side`` x ``side``; None when the runtime refuses it."""
        probes = self.__dict__.setdefault("_probes", {})
        if output not in probes:
            _, height, width, channels = self.input_shape
            probe = np.zeros((1, height or side, width or side, channels or 3), np.float32)
            try:
                out = np.asarray(self._run(probe.transpose(0, 3, 1, 2) if self.layout == "NCHW"
                                           else probe, output))
                probes[output] = self._nhwc(out.shape) if out.ndim == 4 else tuple(out.shape)
            except Exception:  # noqa: BLE001 - a runtime's own errors: no answer from it
                probes[output] = None
        return probes[output]

    def _keeps_size(self, output: int, side: int = 64) -> bool:
        """Whether output ``output`` of a model that takes any size is an image of the input's
        size (run once on a blank ``side`` x ``side`` image)."""
        shape = self._probe(output, side)
        return shape is not None and len(shape) == 4 and shape[1:3] == (side, side)

    @property
    def output_name(self) -> str:
        return self._output_specs[self.output_index][0]

    @functools.cached_property
    def output_kind(self) -> str | None:
        """``probabilities`` or ``logits``: the card's, else read from the graph; None when
        neither tells (then values outside [0, 1] decide, with a warning)."""
        from edgeseg.device.card import output_kind_of
        from edgeseg.device.postprocess import kind_from_ops

        return output_kind_of(self.card) or kind_from_ops(self._output_ops(self.output_index))

    @property
    def input_shape(self) -> tuple:
        """(batch, height, width, channels) whatever the file's layout; None where any size."""
        return self._nhwc(self._raw_input_shape)

    @property
    def num_classes(self) -> int:
        shape = self._output_specs[self.output_index][1]
        if len(shape) == 4 and self._nhwc(shape)[-1] is not None:
            return int(self._nhwc(shape)[-1])
        probed = self._probe(self.output_index)  # a symbolic class dimension: run it once
        if probed is None or len(probed) != 4:
            raise EdgesegError(f"{self.path}: output {self.output_name} has shape "
                               f"{list(probed or shape)}, not an image of class scores (N, H, W, "
                               f"classes or N, classes, H, W)")
        return int(probed[-1])

    def contract(self) -> dict:
        """The I/O contract this model is run by (for cards and reports)."""
        from edgeseg.device.card import input_fit_of, normalization_of

        return {"input_layout": self.layout, "input_shape": list(self.input_shape),
                "normalization": normalization_of(self.card).to_dict(),
                "input_fit": input_fit_of(self.card), "output": self.output_name,
                "output_kind": self.output_kind,
                "class_names": self.card.get("class_names")}

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Probabilities (N, H, W, classes) float32 for normalised images (N, H, W, C) float32."""
        from edgeseg.device.postprocess import looks_like_logits, to_probabilities

        given = np.asarray(images)
        images = np.asarray(images, np.float32)
        if images.ndim != 4:
            raise ValueError(f"predict takes a batch (N, H, W, C); got shape {images.shape}")
        _, height, width, channels = self.input_shape
        if channels is not None and images.shape[-1] != channels:
            nchw = " (an (N, C, H, W) array? predict takes (N, H, W, C): transpose it with " \
                   ".transpose(0, 2, 3, 1))" if images.shape[1] == channels else ""
            raise ValueError(f"{self.path.name} takes {channels} channel(s), got "
                             f"{images.shape[-1]}{nchw}")
        if not len(images):  # an empty batch: no images, no probabilities
            return np.zeros((0, *images.shape[1:3], self.num_classes), np.float32)
        if np.issubdtype(given.dtype, np.integer):
            self._said_raw_pixels(given)
        if (height, width) != (None, None) and images.shape[1:3] != (height, width):
            raise ValueError(f"{self.path.name} takes {height}x{width} images, got "
                             f"{images.shape[1]}x{images.shape[2]} (use edgeseg.device.tiling for "
                             f"others)")
        nchw = self.layout == "NCHW"
        try:
            raw = np.asarray(self._run(images.transpose(0, 3, 1, 2) if nchw else images,
                                       self.output_index))
        except EdgesegError:
            raise
        except Exception as error:  # noqa: BLE001 - each runtime raises its own kinds
            first = (str(error).strip().splitlines() or [type(error).__name__])[0][:160]
            raise EdgesegError(f"{self.path}: the runtime failed on a {images.shape[1]}x"
                               f"{images.shape[2]} input ({first}); a model that takes any size "
                               f"still needs sides its downsampling divides (e.g. multiples of "
                               f"32)") from None
        if raw.ndim != 4:
            raise EdgesegError(f"{self.path}: output {self.output_name} has shape "
                               f"{list(raw.shape)}, not an image (N, H, W, classes); choose "
                               f"another with --output")
        if nchw:
            raw = raw.transpose(0, 2, 3, 1)
        if raw.shape[1:3] != images.shape[1:3]:
            raise EdgesegError(
                f"{self.path}: the model maps {images.shape[1]}x{images.shape[2]} inputs to "
                f"{raw.shape[1]}x{raw.shape[2]} outputs; a segmentation must keep the input's "
                f"size (use a size its downsampling divides, e.g. a multiple of 32)")
        kind = self.output_kind
        if kind is None and looks_like_logits(raw):
            kind = self.__dict__["output_kind"] = "logits"  # settled: every later tile alike
            print(f"warning: {self.path}: its outputs leave [0, 1], read as logits (a "
                  f"sigmoid/softmax is applied); say so with --logits or the card's "
                  f"output_kind", file=sys.stderr)
        return to_probabilities(raw, kind)

    def _said_raw_pixels(self, images: np.ndarray) -> None:
        """Integer pixels where the card's normalisation maps them to other values: a warning
        (once), since the model is then fed what it never saw (0-255 for 0-1)."""
        from edgeseg.device.card import normalization_of
        from edgeseg.device.log import warn_once
        from edgeseg.device.preprocess import affine

        norm = normalization_of(self.card)
        scale, shift = affine(images[0], norm)
        if not (np.allclose(scale, 1) and np.allclose(shift, 0)):
            warn_once(f"{self.path.name}: predict got {images.dtype} pixels; it takes images "
                      f"normalised as the model's card says ({norm.describe()}): pass "
                      f"edgeseg.device.preprocess.normalize(image, "
                      f"edgeseg.device.card.normalization_of(model.card))")

    def settle_output_kind(self, size, seed: int = 0) -> str:
        """The output kind, settled for good: the card's or the graph's, else read from the
        outputs on two random images of ``size`` (logits when they leave [0, 1]), said on stderr.
        Converters call this before they write the kind into a card."""
        from edgeseg.device.postprocess import looks_like_logits

        if self.output_kind is not None:
            return self.output_kind
        channels = self.input_shape[-1] or 3
        probe = np.random.default_rng(seed).random((2, *size, channels), np.float32)
        raw = np.asarray(self._run(probe.transpose(0, 3, 1, 2) if self.layout == "NCHW"
                                   else probe, self.output_index))
        kind = self.__dict__["output_kind"] = \
            "logits" if looks_like_logits(raw) else "probabilities"
        print(f"note: {self.path}: output kind read from its values: {kind} (say it with "
              f"--logits or --probabilities)", file=sys.stderr)
        return kind

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.path} {self.input_shape} threads={self.num_threads}>"


def quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero = detail["quantization"]
    if not scale:
        return x.astype(detail["dtype"])
    info = np.iinfo(detail["dtype"])
    return np.clip(np.round(x / scale + zero), info.min, info.max).astype(detail["dtype"])


def dequantize(x: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero = detail["quantization"]
    if x.dtype == np.float32:
        return x
    if not scale:
        return x.astype(np.float32)
    return ((x.astype(np.float32) - zero) * scale).astype(np.float32)


def tflite_interpreter_class():
    """ai_edge_litert, else tflite_runtime (older boards), else tensorflow.lite."""
    try:
        from ai_edge_litert.interpreter import Interpreter
        return Interpreter, "litert"
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter
        return Interpreter, "tflite_runtime"
    except ImportError:
        pass
    try:
        import tensorflow as tf
        return tf.lite.Interpreter, "tensorflow.lite"
    except ImportError:
        raise EdgesegError("running a .tflite needs a TFLite runtime: pip install ai-edge-litert "
                           "(or tflite-runtime)") from None


class LiteRTModel(EdgeModel):
    """A .tflite file in LiteRT (XNNPACK on CPU, as the runtime applies it by default)."""

    format = "tflite"

    def __init__(self, path, num_threads=None, *, contract=None, delegates: bool = True,
                 trusted: bool = False):
        super().__init__(path, num_threads, contract)
        interpreter_class, self.runtime = tflite_interpreter_class()
        if not trusted:
            check_untrusted(self.path)
        kwargs = {"model_path": str(self.path), "num_threads": num_threads or 1}
        if not delegates:
            from ai_edge_litert.interpreter import OpResolverType

            kwargs["experimental_op_resolver_type"] = \
                OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        try:
            with native_chatter_dropped():  # LiteRT's note on its delegate, once per model
                self.interpreter = interpreter_class(**kwargs)
                self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as error:
            raise EdgesegError(f"{self.path}: LiteRT cannot load this model "
                               f"({str(error).splitlines()[0][:200]})") from None
        self._input = self.interpreter.get_input_details()[0]
        self._outputs = self.interpreter.get_output_details()

    @property
    def _raw_input_shape(self):
        return tuple(int(d) for d in self._input["shape"])

    @property
    def _output_specs(self):
        return [(detail["name"], tuple(int(d) for d in detail["shape"]))
                for detail in self._outputs]

    @property
    def input_dtype(self) -> str:
        return np.dtype(self._input["dtype"]).name

    @property
    def output_dtype(self) -> str:
        return np.dtype(self._outputs[self.output_index]["dtype"]).name

    @functools.cached_property
    def _file(self):
        from edgeseg.device.formats.tflite import read_tflite

        return read_tflite(self.path)

    def _embedded_card(self):
        from edgeseg.device.formats.tflite import (
            SCHEMA_MISSING,
            SchemaUnavailable,
            read_card,
        )
        from edgeseg.device.log import warn_once

        try:
            return read_card(self._file)
        except SchemaUnavailable:
            warn_once(f"{SCHEMA_MISSING}: the cards inside .tflite files are not read (the card "
                      f"beside each file, <file>.json, is)")
            return {}
        except EdgesegError as error:
            warn_once(f"{error}; ignored (the card beside the file, if any, is used)")
            return {}

    def kernels(self) -> dict | None:
        """``{"delegate": "XNNPACK" or None, "partitions", "delegated_ops", "ops"}``: the
        delegate's partitions as this interpreter applied them (none: LiteRT's builtin kernels
        run every op, e.g. where XNNPACK is unavailable for this CPU)."""
        from edgeseg.device.formats.tflite import SchemaUnavailable

        try:
            coverage = delegated_ops(self.interpreter, self._file)
        except (SchemaUnavailable, ValueError, RuntimeError, AttributeError):
            return None
        ops = len(self._file.ops)
        return {"delegate": "XNNPACK" if coverage["partitions"] else None,
                "partitions": coverage["partitions"],
                "delegated_ops": len(coverage["delegated"]), "ops": ops}

    def _output_ops(self, output):
        from edgeseg.device.formats.tflite import SchemaUnavailable

        try:
            producer = self._file.producer()
        except SchemaUnavailable:
            return []  # the values decide
        tensor = self._file.output_indices[output]
        names = []
        while tensor in producer and len(names) < 16:
            op = producer[tensor]
            names.append(op.name)
            inputs = [t for t in op.inputs if t >= 0 and not self._file.tensors[t].constant]
            if not inputs:
                break
            tensor = inputs[0]
        return names

    def own_params(self):
        from edgeseg.device import flops
        from edgeseg.device.formats.tflite import SchemaUnavailable

        try:
            return flops.tflite_cost(self._file).params
        except SchemaUnavailable:
            return None

    def cost(self, input_size=None):
        from edgeseg.device import flops
        from edgeseg.device.formats.tflite import SchemaUnavailable, weight_sparsity

        try:
            cost = flops.tflite_cost(self.path)
            return cost.macs, cost.params, weight_sparsity(self.path)
        except SchemaUnavailable:
            from edgeseg.device.formats.tflite import SCHEMA_MISSING
            from edgeseg.device.log import warn_once

            warn_once(f"{SCHEMA_MISSING}: MACs, params and sparsity of .tflite files are left "
                      f"out")
            return None, None, None

    def _run(self, images, output):
        detail = self._outputs[output]
        batch = self._raw_input_shape[0]
        outputs = []
        for start in range(0, len(images), batch):
            chunk = images[start:start + batch]
            short = batch - len(chunk)
            if short:  # a fixed batch: pad the last chunk, drop the padding after
                chunk = np.concatenate([chunk, np.zeros((short, *chunk.shape[1:]), np.float32)])
            self.interpreter.set_tensor(self._input["index"], quantize(chunk, self._input))
            self.interpreter.invoke()
            out = dequantize(self.interpreter.get_tensor(detail["index"]), detail)
            outputs.append(out[:batch - short])
        return np.concatenate(outputs)


def _onnxruntime():
    try:
        import onnxruntime as ort
    except ImportError:
        raise EdgesegError("running an .onnx needs onnxruntime (pip install onnxruntime)") from None
    return ort


def onnx_session(path, options):
    """An ONNX Runtime CPU session of ``path``; a file ORT refuses is one EdgesegError."""
    ort = _onnxruntime()
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # ORT raises its own exception types for bad files
        raise EdgesegError(f"{path}: ONNX Runtime cannot load this model "
                           f"({str(error).splitlines()[0][:200]})") from None


def onnx_session_options(num_threads=None):
    """ONNX Runtime session options as edgeseg runs every .onnx: quiet, ``num_threads`` intra-op,
    pool threads that sleep rather than spin between runs."""
    ort = _onnxruntime()

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if num_threads:
        options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = 1
    # ORT's pool threads spin for a while after each run by default: on a 2-core machine they take
    # the second core from whatever runs next (the harness's round robin measured LiteRT's 2-thread
    # fp32 at 5.0 ms next to spinning ORT sessions, 2.0 ms without them). They sleep instead.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options


def delegated_ops(interpreter, f) -> dict:
    """The partitions a LiteRT interpreter's delegate took, and the model's ops inside them
    (``f``: the file read by :func:`edgeseg.device.formats.tflite.read_tflite`)."""
    nodes = interpreter._get_ops_details()  # noqa: SLF001 - the only view of the partitions
    producer = f.producer()
    delegated: set[int] = set()
    for node in nodes[len(f.ops):]:  # delegate kernels come after the model's own nodes
        inputs = set(int(i) for i in node["inputs"])
        todo = [int(i) for i in node["outputs"]]
        while todo:
            op = producer.get(todo.pop())
            if op is None or op.index in delegated:
                continue
            delegated.add(op.index)
            todo.extend(i for i in op.inputs if i >= 0 and i not in inputs)
    return {"partitions": len(nodes) - len(f.ops), "delegated": delegated}


class OnnxModel(EdgeModel):
    """An .onnx file in ONNX Runtime's CPU execution provider."""

    format = "onnx"
    runtime = "onnxruntime"

    def __init__(self, path, num_threads=None, *, contract=None, trusted: bool = False):
        super().__init__(path, num_threads, contract)
        _onnxruntime()  # a missing runtime is said before the file is probed
        if not trusted:
            check_untrusted(self.path)
        self.session = onnx_session(self.path, onnx_session_options(num_threads))
        self._input = self.session.get_inputs()[0]
        self._outputs = self.session.get_outputs()

    @property
    def _raw_input_shape(self):
        return tuple(d if isinstance(d, int) else None for d in self._input.shape)

    @property
    def _output_specs(self):
        return [(o.name, tuple(d if isinstance(d, int) else None for d in o.shape))
                for o in self._outputs]

    def _embedded_card(self):
        from edgeseg.device.card import EMBEDDED_KEY, parse_embedded

        try:
            return parse_embedded(
                self.session.get_modelmeta().custom_metadata_map.get(EMBEDDED_KEY), self.path)
        except EdgesegError as error:
            from edgeseg.device.log import warn_once

            warn_once(f"{error}; ignored (the card beside the file, if any, is used)")
            return {}

    def _output_ops(self, output):
        try:
            import onnx
        except ImportError:  # a device with ONNX Runtime only: the values decide
            return []
        graph = onnx.load(str(self.path), load_external_data=False).graph
        producer = {name: node for node in graph.node for name in node.output}
        constants = {init.name for init in graph.initializer}
        name, names = self._outputs[output].name, []
        while name in producer and len(names) < 16:
            node = producer[name]
            names.append(node.op_type)
            inputs = [i for i in node.input if i and i not in constants and i in producer]
            if not inputs:
                break
            name = inputs[0]
        return names

    def kernels(self) -> dict:
        return {"providers": list(self.session.get_providers())}

    def cost(self, input_size=None):
        from edgeseg.device import flops
        from edgeseg.device.formats.onnx import weight_sparsity

        try:
            cost = flops.onnx_cost(self.path, input_size=input_size, layout=self.layout)
        except ImportError:  # onnx (not only onnxruntime) is needed to read the graph
            from edgeseg.device.log import warn_once

            warn_once("MACs and params of .onnx files are read with the onnx package, which is "
                      "not installed (pip install onnx): left out")
            return None, None, None
        except ValueError as error:  # a shape the inference cannot follow
            from edgeseg.device.log import warn_once

            warn_once(f"{self.path}: {error}")
            return None, None, weight_sparsity(self.path)
        return cost.macs, cost.params, weight_sparsity(self.path)

    def _run(self, images, output):
        name, feed = self._outputs[output].name, self._input.name
        batch = self._raw_input_shape[0]
        if batch is None:
            return self.session.run([name], {feed: images})[0]
        return np.concatenate([self.session.run([name], {feed: images[i:i + batch]})[0]
                               for i in range(0, len(images), batch)])


BACKENDS = {".tflite": LiteRTModel, ".onnx": OnnxModel}
KERAS_SUFFIXES = (".keras", ".h5")
FOLDER = "/"  # the key of ``backends`` for a model that is a folder (a SavedModel)


def _check_card_fits(model: EdgeModel) -> None:
    """A card beside (or inside) a file that describes another model is refused: its classes,
    channels or fixed size would mislead every command that trusts it."""
    card, problems = model.card, []
    classes = model.num_classes
    if isinstance(card.get("num_classes"), int) and card["num_classes"] != classes:
        problems.append(f"{card['num_classes']} class output(s), the model has {classes}")
    names = card.get("class_names")
    if isinstance(names, list) and names and len(names) not in (classes, 2 if classes == 1 else -1):
        problems.append(f"{len(names)} class names, the model has {classes} output class(es)")
    channels = model.input_shape[-1]
    if isinstance(card.get("channels"), int) and channels is not None and \
            card["channels"] != channels:
        problems.append(f"{card['channels']} input channel(s), the model takes {channels}")
    if isinstance(card.get("params"), int) and not problems:
        own = model.own_params()
        if own is not None and own != card["params"]:
            problems.append(f"{card['params']:,} parameters, the model has {own:,}")
    if problems:
        raise EdgesegError(f"{model.path}: its card says {'; '.join(problems)}: the card belongs "
                           f"to another model (fix or remove it)")


def load(path, *, num_threads: int | None = None, trusted: bool = False,
         contract: dict | None = None, foreign_only: bool = False,
         backends: dict | None = None) -> EdgeModel:
    """The model at ``path`` in the runtime its suffix names.

    Args:
        num_threads: CPU threads for the runtime (default: its own choice; LiteRT: 1).
        trusted: skip the verification and the child-process probe of
            :mod:`edgeseg.device.untrusted` (for files this process has just written or probed).
        contract: I/O-contract keys put over the model's card (see
            :func:`edgeseg.device.card.with_overrides`: ``normalize``, ``input_layout``,
            ``output``, ``output_kind``, ``input_fit``, ``class_names``).
        foreign_only: apply ``contract`` only when the file's card was not written by edgeseg
            (the harness benchmarks a user's file beside the files converted from it).
        backends: more backends, ``{suffix or FOLDER: open(path, num_threads, contract=...,
            trusted=...)}``, over :data:`BACKENDS` (:func:`edgeseg.runtime.load` adds Keras).
    """
    path = Path(path)
    if not path.exists():
        raise EdgesegError(f"{path}: no such model file")
    kind = FOLDER if path.is_dir() else path.suffix.lower()
    opener = {**BACKENDS, **(backends or {})}.get(kind)
    if opener is None:
        if kind == FOLDER and not (path / "saved_model.pb").is_file():
            raise EdgesegError(f"{path}: a folder, not a model file (nor a SavedModel: no "
                               f"saved_model.pb)")
        if kind == FOLDER or kind in KERAS_SUFFIXES:
            raise EdgesegError(f"{path}: a Keras model; this runtime runs .tflite and .onnx "
                               f"files: convert it (edgeseg convert), or benchmark it with "
                               f"edgeseg bench on a machine with edgeseg[train]")
        raise EdgesegError(f"{path}: unknown model format (expected .keras, .h5, .onnx, .tflite "
                           f"or a SavedModel folder)")
    model = opener(path, num_threads, contract=contract, trusted=trusted)
    model.keep_edgeseg_cards = foreign_only
    from edgeseg.device.card import normalization_of, size_of

    if len(model._raw_input_shape) != 4:
        raise EdgesegError(f"{path}: its input has shape {list(model._raw_input_shape)}; a "
                           f"segmentation model takes images (N, H, W, C), or (N, C, H, W)")
    try:
        normalization_of(model.card)  # a card that cannot be obeyed: said now, naming the file
        size_of(model.card)
        model.output_index  # noqa: B018 - several outputs and none chosen: said now
        model.num_classes  # noqa: B018 - an output that is not class scores: said now
        _check_card_fits(model)
    except EdgesegError as error:
        message = str(error)
        raise EdgesegError(message if message.startswith(str(path)) else f"{path}: {message}") \
            from None
    return model


__all__ = ["BACKENDS", "FOLDER", "EdgeModel", "LiteRTModel", "OnnxModel", "dequantize", "load",
           "quantize", "tflite_interpreter_class"]
