"""One interface over the runtimes a segmentation model runs in: LiteRT, ONNX Runtime, Keras.

``load(path)`` picks the backend from the suffix: ``.tflite`` (ai_edge_litert, else tflite_runtime,
else tensorflow.lite: the first one installed), ``.onnx`` (onnxruntime), ``.keras``/``.h5``/a
SavedModel folder (TensorFlow). ``predict`` takes float32 NHWC images in [0, 1] and returns float32
NHWC class probabilities whatever the file stores: quantized inputs and outputs are converted
inside, and a model built for a batch of one is run one image at a time. Importing this module
imports neither TensorFlow nor a runtime; each backend imports its own when a file is loaded.

    >>> from edgeseg import runtime
    >>> model = runtime.load("model_int8.tflite", num_threads=2)  # doctest: +SKIP
    >>> probs = model.predict(images)  # (N, H, W, classes) float32  # doctest: +SKIP
    >>> model.card["class_names"]  # doctest: +SKIP

Adding a runtime is one subclass of :class:`EdgeModel` and one entry in ``BACKENDS``.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np

from edgeseg.errors import EdgesegError
from edgeseg.safety import check_untrusted


class EdgeModel:
    """A loaded model: ``predict``, its input shape, class count and card."""

    format = ""
    runtime = ""

    def __init__(self, path: Path, num_threads: int | None):
        self.path = Path(path)
        self.num_threads = num_threads

    @property
    def input_shape(self) -> tuple:
        """(batch, height, width, channels); None where the model takes any size."""
        raise NotImplementedError

    @property
    def num_classes(self) -> int:
        raise NotImplementedError

    @functools.cached_property
    def card(self) -> dict:
        """The model card stored in the file, else the ``<file>.json`` beside it, else {}."""
        from edgeseg import card as cards

        return self._embedded_card() or cards.read_card(self.path)

    def _embedded_card(self) -> dict:
        return {}

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Probabilities (N, H, W, classes) float32 for images (N, H, W, C) float32 in [0, 1]."""
        images = np.asarray(images, np.float32)
        if images.ndim != 4:
            raise ValueError(f"predict takes a batch (N, H, W, C); got shape {images.shape}")
        _, height, width, channels = self.input_shape
        if channels is not None and images.shape[-1] != channels:
            raise ValueError(f"{self.path.name} takes {channels} channel(s), got {images.shape[-1]}")
        if (height, width) != (None, None) and images.shape[1:3] != (height, width):
            raise ValueError(f"{self.path.name} takes {height}x{width} images, got "
                             f"{images.shape[1]}x{images.shape[2]} (use edgeseg.tiling for others)")
        return self._predict(images)

    def _predict(self, images: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.path} {self.input_shape} threads={self.num_threads}>"


def _quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero = detail["quantization"]
    if not scale:
        return x.astype(detail["dtype"])
    info = np.iinfo(detail["dtype"])
    return np.clip(np.round(x / scale + zero), info.min, info.max).astype(detail["dtype"])


def _dequantize(x: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero = detail["quantization"]
    if x.dtype == np.float32:
        return x
    if not scale:
        return x.astype(np.float32)
    return ((x.astype(np.float32) - zero) * scale).astype(np.float32)


def _tflite_interpreter_class():
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

    def __init__(self, path, num_threads=None, *, delegates: bool = True, trusted: bool = False):
        super().__init__(path, num_threads)
        interpreter_class, self.runtime = _tflite_interpreter_class()
        if not trusted:
            check_untrusted(self.path)
        kwargs = {"model_path": str(self.path), "num_threads": num_threads or 1}
        if not delegates:
            from ai_edge_litert.interpreter import OpResolverType

            kwargs["experimental_op_resolver_type"] = \
                OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        try:
            self.interpreter = interpreter_class(**kwargs)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as error:
            raise EdgesegError(f"{self.path}: LiteRT cannot load this model "
                               f"({str(error).splitlines()[0][:200]})") from None
        self._input = self.interpreter.get_input_details()[0]
        self._output = self.interpreter.get_output_details()[0]

    @property
    def input_shape(self):
        return tuple(int(d) for d in self._input["shape"])

    @property
    def num_classes(self):
        return int(self._output["shape"][-1])

    @property
    def input_dtype(self) -> str:
        return np.dtype(self._input["dtype"]).name

    @property
    def output_dtype(self) -> str:
        return np.dtype(self._output["dtype"]).name

    def _embedded_card(self):
        from edgeseg.formats.tflite import read_card

        try:
            return read_card(self.path)
        except EdgesegError:
            return {}

    def _predict(self, images):
        batch = self.input_shape[0]
        outputs = []
        for start in range(0, len(images), batch):
            chunk = images[start:start + batch]
            short = batch - len(chunk)
            if short:  # a fixed batch: pad the last chunk, drop the padding after
                chunk = np.concatenate([chunk, np.zeros((short, *chunk.shape[1:]), np.float32)])
            self.interpreter.set_tensor(self._input["index"], _quantize(chunk, self._input))
            self.interpreter.invoke()
            out = _dequantize(self.interpreter.get_tensor(self._output["index"]), self._output)
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


class OnnxModel(EdgeModel):
    """An .onnx file in ONNX Runtime's CPU execution provider."""

    format = "onnx"
    runtime = "onnxruntime"

    def __init__(self, path, num_threads=None, *, trusted: bool = False):
        super().__init__(path, num_threads)
        _onnxruntime()  # a missing runtime is said before the file is probed
        if not trusted:
            check_untrusted(self.path)
        self.session = onnx_session(self.path, onnx_session_options(num_threads))
        self._input = self.session.get_inputs()[0]
        self._output = self.session.get_outputs()[0]

    @property
    def input_shape(self):
        return tuple(d if isinstance(d, int) else None for d in self._input.shape)

    @property
    def num_classes(self):
        return int(self._output.shape[-1])

    def _embedded_card(self):
        from edgeseg.card import EMBEDDED_KEY

        raw = self.session.get_modelmeta().custom_metadata_map.get(EMBEDDED_KEY)
        try:
            return json.loads(raw) if raw else {}
        except json.JSONDecodeError:
            return {}

    def _predict(self, images):
        batch = self.input_shape[0]
        if batch is None:
            return self.session.run([self._output.name], {self._input.name: images})[0]
        return np.concatenate([
            self.session.run([self._output.name], {self._input.name: images[i:i + batch]})[0]
            for i in range(0, len(images), batch)])


class KerasModel(EdgeModel):
    """A Keras model (TensorFlow), always in inference mode."""

    format = "keras"
    runtime = "keras"

    def __init__(self, path, num_threads=None, *, unsafe: bool = False):
        super().__init__(path, num_threads)
        from edgeseg._keras import tf
        from edgeseg.models.saving import load_model

        if num_threads:
            try:
                tf.config.threading.set_intra_op_parallelism_threads(num_threads)
                tf.config.threading.set_inter_op_parallelism_threads(1)
            except RuntimeError:
                pass  # TensorFlow already started: its thread pools are fixed for this process
        self.model = load_model(self.path, unsafe=unsafe)
        self._forward = tf.function(lambda x: self.model(x, training=False), reduce_retracing=True)

    @property
    def input_shape(self):
        return (None, *self.model.input_shape[1:])

    @property
    def num_classes(self):
        return int(self.model.output_shape[-1])

    def _predict(self, images):
        return np.asarray(self._forward(images), np.float32)


BACKENDS = {".tflite": LiteRTModel, ".onnx": OnnxModel, ".keras": KerasModel, ".h5": KerasModel}


def load(path, *, num_threads: int | None = None, unsafe: bool = False,
         trusted: bool = False) -> EdgeModel:
    """The model at ``path`` in the runtime its suffix names (a folder: a SavedModel, Keras).

    Args:
        num_threads: CPU threads for the runtime (default: its own choice; LiteRT: 1).
        unsafe: Keras only: allow models that carry code (Lambda layers).
        trusted: .tflite/.onnx: skip the verification and the child-process probe of
            :mod:`edgeseg.safety` (for files this process has just written or probed).
    """
    path = Path(path)
    if not path.exists():
        raise EdgesegError(f"{path}: no such model file")
    backend = KerasModel if path.is_dir() else BACKENDS.get(path.suffix.lower())
    if backend is None:
        raise EdgesegError(f"{path}: unknown model format (expected "
                           f"{', '.join(sorted(BACKENDS))} or a SavedModel folder)")
    if backend is KerasModel:
        model = backend(path, num_threads, unsafe=unsafe)
    else:
        model = backend(path, num_threads, trusted=trusted)
    from edgeseg.card import normalization_of

    try:
        normalization_of(model.card)  # a card that cannot be obeyed: said now, naming the file
    except EdgesegError as error:
        raise EdgesegError(f"{path}: {error}") from None
    return model


__all__ = ["BACKENDS", "EdgeModel", "KerasModel", "LiteRTModel", "OnnxModel", "load"]
