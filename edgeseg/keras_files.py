"""Keras models as their users saved them: tf-keras, Keras 3, SavedModel folders, custom layers.

TensorFlow 2.21 gives two Kerases: ``import keras`` is Keras 3 (what most users' models are saved
with), ``tf_keras`` is Keras 2 (what tfmot needs, and what edgeseg trains with). A file says which
one wrote it (``metadata.json`` in a ``.keras`` zip, the ``keras_version`` attribute of an
``.h5``); each is loaded by its own Keras, in one process. A SavedModel folder is loaded with
tf-keras when it holds Keras metadata, else as a plain TensorFlow SavedModel (``model.export``,
``tf.saved_model.save``) through its serving signature. The result is a :class:`KerasSource`: one
callable with an input shape and named outputs that the converters and :class:`KerasModel` use
whatever wrote the file.

Custom layers: ``custom_objects_from(["my_layers.py"])`` (or ``"package.module:attr"``; the
CLI's ``--custom-objects``) imports the user's code and returns every class and function it
defines, as a value the loaders take (``custom_objects=``). That code is the user's own, named
explicitly; a model that carries code of its own (a Lambda layer) still needs ``unsafe``.

This is the one place Keras model files are read: :func:`load_keras` (any flavour, for
conversion and inference), :func:`load_tf_keras` (a tf-keras file, edgeseg's own QAT models
included) and :func:`load_for_training` (tfmot's tf-keras only); :class:`KerasModel` is their
:class:`~edgeseg.device.runtime.EdgeModel`.

    >>> source = load_keras("unet.keras")  # doctest: +SKIP
    >>> source.flavour, source.output_names  # doctest: +SKIP
    ('keras3', ['mask'])
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import json
import sys
import zipfile
from pathlib import Path

import numpy as np

from edgeseg.device.errors import EdgesegError
from edgeseg.device.runtime import EdgeModel

FLAVOURS = ("tf_keras", "keras3", "savedmodel")


# --- custom objects ---------------------------------------------------------------------------
class CustomObjects(dict):
    """The user's Keras classes and functions by name, and the ``specs`` they came from (so a
    command it printed can name them again)."""

    def __init__(self, objects=(), specs=()):
        super().__init__(objects)
        self.specs = tuple(specs)


def custom_objects_from(specs) -> CustomObjects:
    """The classes and functions the user's code named by ``specs`` defines (each ``FILE.py``,
    ``module:attr`` or ``module``), by name, later specs over earlier ones: what the loaders'
    ``custom_objects`` take. A module's ``custom_objects`` (or ``CUSTOM_OBJECTS``) dict is used
    as it is when it has one."""
    objects = CustomObjects(specs=specs)
    for spec in specs:
        objects.update(import_custom_objects(spec))
    return objects


@functools.lru_cache(maxsize=None)
def import_custom_objects(spec: str) -> dict[str, object]:
    """The classes and functions of the user's code named by one ``spec`` (imported once per
    process: a file's classes register themselves with Keras when it runs)."""
    module, attr = _import(spec)
    if attr:
        try:
            value = getattr(module, attr)
        except AttributeError:
            raise EdgesegError(f"--custom-objects {spec}: {module.__name__} has no {attr!r}") \
                from None
        objects = dict(value) if isinstance(value, dict) else {attr: value}
    else:
        objects = getattr(module, "custom_objects", None) or \
            getattr(module, "CUSTOM_OBJECTS", None) or {
                name: value for name, value in vars(module).items()
                if (inspect.isclass(value) or inspect.isfunction(value))
                and getattr(value, "__module__", None) == module.__name__}
    if not objects:
        raise EdgesegError(f"--custom-objects {spec}: defines no class or function")
    return objects


def _import(spec: str):
    """(module, attribute or None) for ``FILE.py``, ``module:attr`` or ``module``."""
    path = Path(spec)
    try:
        if spec.endswith(".py") or path.is_file():
            if not path.is_file():
                raise EdgesegError(f"--custom-objects {spec}: no such file")
            name = f"edgeseg_custom_{abs(hash(str(path.resolve())))}"
            loader_spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(loader_spec)
            sys.modules[name] = module
            sys.path.insert(0, str(path.resolve().parent))  # its own imports of its neighbours
            try:
                loader_spec.loader.exec_module(module)
            finally:
                sys.path.remove(str(path.resolve().parent))
            return module, None
        name, _, attr = spec.partition(":")
        return importlib.import_module(name), attr or None
    except EdgesegError:
        raise
    except Exception as error:  # noqa: BLE001 - the user's code may raise anything
        raise EdgesegError(f"--custom-objects {spec}: importing it failed ({type(error).__name__}: "
                           f"{str(error).splitlines()[0][:160] if str(error) else ''})") from None


# --- which Keras wrote a file -----------------------------------------------------------------
def flavour(path) -> str:
    """``tf_keras``, ``keras3`` or ``savedmodel`` (a plain TensorFlow SavedModel folder)."""
    path = Path(path)
    if path.is_dir():
        if not (path / "saved_model.pb").exists():
            raise EdgesegError(f"{path}: a folder that is not a SavedModel (no saved_model.pb)")
        return "tf_keras" if (path / "keras_metadata.pb").exists() else "savedmodel"
    version = _saved_version(path)
    return "keras3" if version.startswith("3") else "tf_keras"


def _saved_version(path: Path) -> str:
    """The keras_version a .keras or .h5 file records ('' when it does not say)."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                return str(json.loads(archive.read("metadata.json")).get("keras_version", ""))
        import h5py

        with h5py.File(path, "r") as handle:
            version = handle.attrs.get("keras_version", "")
        return version.decode() if isinstance(version, bytes) else str(version)
    except (OSError, KeyError, ValueError):
        return ""  # not a Keras file: the loader says so clearly


def _model_config(path: Path) -> dict | None:
    """The architecture a .keras or .h5 file stores, as JSON, without building it."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                return json.loads(archive.read("config.json"))
        import h5py

        with h5py.File(path, "r") as handle:
            config = handle.attrs.get("model_config")
        if config is None:
            return None
        return json.loads(config.decode() if isinstance(config, bytes) else config)
    except (OSError, KeyError, ValueError):
        return None


def _classes(node, found: list[str]) -> list[str]:
    """Every layer class name in a Keras config tree, in order."""
    if isinstance(node, dict):
        name = node.get("class_name")
        if isinstance(name, str) and isinstance(node.get("config"), dict):
            found.append(node.get("registered_name") or name)
        for value in node.values():
            _classes(value, found)
    elif isinstance(node, list):
        for value in node:
            _classes(value, found)
    return found


def _unknown_class(path: Path, keras_module, custom_objects: dict,
                   known_scope=None) -> str | None:
    """The first class the file's config names that neither Keras nor the custom objects know.
    ``known_scope(names)``: the names a loading scope supplies, given the file's class names."""
    config = _model_config(path)
    if config is None:
        return None
    names = _classes(config, [])
    known = set(custom_objects) | set(known_scope(names) if known_scope else ())
    for name in names:
        short = name.split(">")[-1]
        if short.startswith("__") or short in known or name in known:
            continue
        if any(hasattr(module, short) for module in (keras_module.layers, keras_module.models,
                                                     keras_module.initializers,
                                                     keras_module.regularizers,
                                                     keras_module.constraints)):
            continue
        if short in ("Functional", "Sequential", "Model", "DTypePolicy", "FloatDTypePolicy",
                     "Policy", "InputSpec"):
            continue
        try:
            if keras_module.saving.get_registered_object(name) is not None:
                continue
        except Exception:  # noqa: BLE001 - older Kerases lack the lookup
            pass
        return short
    return None


# --- loading -----------------------------------------------------------------------------------
def carries_code(path: Path) -> bool:
    """Whether a .keras/.h5 file's architecture holds a Lambda layer (code loading would run)."""
    config = _model_config(path)
    return config is not None and any(name == "Lambda" for name in _classes(config, []))


def code_refused(path: Path) -> EdgesegError:
    return EdgesegError(f"{path}: the model carries Python code (a Lambda layer) that loading "
                        f"would run; pass --unsafe only if you trust where it came from")


def load_keras(path, *, unsafe: bool = False,
               custom_objects: dict | None = None) -> "KerasSource":
    """The model in ``path`` (.keras, .h5 or a SavedModel folder), whatever Keras wrote it."""
    path = Path(path)
    if not path.exists():
        raise EdgesegError(f"{path}: no such model file")
    kind = flavour(path)
    if kind == "tf_keras":
        return KerasSource(path, load_tf_keras(path, unsafe=unsafe,
                                               custom_objects=custom_objects), kind)
    if kind == "keras3":
        return KerasSource(path, _load_keras3(path, unsafe, custom_objects or {}), kind)
    return KerasSource(path, _SavedModel(path), kind)


def load_tf_keras(path, *, unsafe: bool = False, custom_objects: dict | None = None):
    """A tf-keras model file (edgeseg's own, quantization-aware ones included, or a user's).

    Safe mode: a model that carries code (a Lambda layer) is refused unless ``unsafe``.
    ``custom_objects``: the user's classes (:func:`custom_objects_from`).
    """
    from edgeseg._keras import keras
    from edgeseg.losses import DiceMetric  # noqa: F401 - registers the zoo's custom objects
    from edgeseg.models import blocks  # noqa: F401
    from edgeseg.optimize.quantize import quantize_names, quantize_scope

    path = Path(path)
    if not path.exists():
        raise EdgesegError(f"{path}: no such model file")
    if not unsafe and carries_code(path):
        # Keras' safe_mode covers the .keras format only; a legacy .h5 would run the code
        raise code_refused(path)
    users = custom_objects or {}
    try:  # the user's objects in the inner scope: theirs win over a zoo class of the same name
        with quantize_scope(), keras.utils.custom_object_scope(users):
            return keras.models.load_model(str(path), compile=False, safe_mode=not unsafe,
                                           custom_objects=users or None)
    except (ValueError, TypeError) as error:
        raise load_error(path, error, keras, "tf-keras", users,
                         known_scope=quantize_names) from None
    except (OSError, KeyError) as error:
        raise EdgesegError(f"{path}: not a Keras model file ({type(error).__name__})") from None


def _load_keras3(path: Path, unsafe: bool, custom_objects: dict):
    import keras

    from edgeseg._keras import tf  # noqa: F401 - sets TF_USE_LEGACY_KERAS before TensorFlow

    if not unsafe and carries_code(path):
        raise code_refused(path)
    try:
        return keras.saving.load_model(str(path), compile=False, safe_mode=not unsafe,
                                       custom_objects=custom_objects)
    except Exception as error:  # noqa: BLE001 - Keras raises TypeError/ValueError and more
        raise load_error(path, error, keras, "Keras 3", custom_objects) from None


def load_error(path: Path, error: Exception, keras_module, label: str, custom_objects: dict,
               known_scope=None) -> EdgesegError:
    """One line for a Keras model that does not load: the class that is missing and the option
    that supplies it, code that needs --unsafe, or the loader's first line. ``known_scope``: see
    :func:`_unknown_class`."""
    message = str(error)
    if "Lambda" in message or "safe_mode" in message:
        return code_refused(path)
    missing = _unknown_class(path, keras_module, custom_objects, known_scope)
    if missing:
        given = " (the --custom-objects given do not define it)" if custom_objects else ""
        return EdgesegError(f"{path}: the model uses the class {missing!r}, which {label} does "
                            f"not know{given}; give the code that defines it with "
                            f"--custom-objects FILE.py (or module:attr)")
    first = message.splitlines()[0][:200] if message else type(error).__name__
    return EdgesegError(f"{path}: cannot load this {label} model ({first})")



class _SavedModel:
    """A plain TensorFlow SavedModel, called through its serving signature like a Keras model."""

    def __init__(self, path: Path):
        from edgeseg._keras import tf

        try:
            loaded = tf.saved_model.load(str(path))
        except Exception as error:  # noqa: BLE001 - TensorFlow's many error types
            raise EdgesegError(f"{path}: cannot load this SavedModel "
                               f"({str(error).splitlines()[0][:200]})") from None
        signatures = dict(loaded.signatures)
        if not signatures:
            raise EdgesegError(f"{path}: the SavedModel has no serving signature")
        key = "serving_default" if "serving_default" in signatures else sorted(signatures)[0]
        self._loaded, self._function = loaded, signatures[key]
        inputs = self._function.structured_input_signature[1]
        if len(inputs) != 1:
            raise EdgesegError(f"{path}: the SavedModel's signature {key!r} takes "
                               f"{len(inputs)} inputs; a segmentation model takes one image")
        (self._input_name, spec), = inputs.items()
        self.input_shape = tuple(spec.shape.as_list())
        outputs = self._function.structured_outputs
        self.output_names = sorted(outputs)
        self.output_shapes = [tuple(outputs[n].shape.as_list()) for n in self.output_names]
        self.name = path.name
        self.layers = []

    def __call__(self, images, training=False):
        outputs = self._function(**{self._input_name: images})
        return [outputs[name] for name in self.output_names]

    def output_ops(self, index: int) -> list[str]:
        """Nothing: the serving signature calls the model as one function the graph does not
        open, so a SavedModel's output kind is read from its values."""
        return []


class KerasSource:
    """A loaded model of any Keras flavour as one callable: ``source(images)`` gives the selected
    output (see :meth:`select`) in inference mode; ``input_shape``, ``output_names``,
    ``output_shapes``, ``name`` and ``layers`` describe it (``layers`` is empty for a plain
    SavedModel). The converters take it where they take a tf-keras model."""

    def __init__(self, path: Path, model, flavour_: str):
        self.path, self.model, self.flavour = Path(path), model, flavour_
        self.index = 0
        try:
            self._describe(model)
        except (AttributeError, ValueError, TypeError):  # a subclassed model: no graph to read
            raise EdgesegError(f"{path}: a subclassed Keras model whose inputs and outputs are "
                               f"unknown; save it as a functional model, or with "
                               f"model.export(DIR) and give DIR") from None
        inputs = getattr(model, "inputs", None)
        if inputs is not None and len(inputs) != 1:
            raise EdgesegError(f"{path}: the model takes {len(inputs)} inputs; a segmentation "
                               f"model takes one image")
        if len(self.input_shape) != 4:
            raise EdgesegError(f"{path}: the model takes input of shape {list(self.input_shape)}; "
                               f"a segmentation model takes images (batch, height, width, "
                               f"channels)")

    def _describe(self, model) -> None:
        if isinstance(model, _SavedModel):
            self.output_names, self.output_shapes = model.output_names, model.output_shapes
        else:
            structure = getattr(model, "output", None)
            if isinstance(structure, dict):  # named outputs: by their keys, in a fixed order
                self.output_names = sorted(structure)
                self.output_shapes = [tuple(structure[k].shape) for k in self.output_names]
            else:
                outputs = model.outputs
                names = list(getattr(model, "output_names", None) or [])
                self.output_names = names if len(names) == len(outputs) else \
                    [f"output_{i}" for i in range(len(outputs))]
                self.output_shapes = [tuple(o.shape) for o in outputs]
        shape = model.input_shape
        if isinstance(shape, dict) and len(shape) == 1:
            shape = next(iter(shape.values()))
        self.input_shape = tuple(shape[0] if isinstance(shape, list) else shape)

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def layers(self) -> list:
        return list(self.model.layers)

    @property
    def output_shape(self) -> tuple:
        return self.output_shapes[self.index]

    def select(self, index: int) -> "KerasSource":
        self.index = index
        return self

    def raw(self, images, training=False):
        outputs = self.model(images, training=False)
        if isinstance(outputs, dict):
            return [outputs[name] for name in self.output_names]
        return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]

    def __call__(self, images, training=False):
        outputs = self.raw(images)
        return outputs[self.index]

    def output_ops(self, index: int) -> list[str]:
        """What makes output ``index``, last first: activations by name, layers by class."""
        if isinstance(self.model, _SavedModel):
            return self.model.output_ops(index)
        layers = list(self.model.layers)
        name = self.output_names[index]
        start = next((i for i, layer in enumerate(layers) if layer.name == name), len(layers) - 1)
        names = []
        for layer in reversed(layers[:start + 1]):
            activation = getattr(getattr(layer, "activation", None), "__name__", None)
            if activation not in (None, "linear"):
                names.append(activation)
                break
            names.append(type(layer).__name__)
            if names[-1] not in _PASS_LAYERS:
                break
        return names

    def is_quantization_aware(self) -> bool:
        return any(type(layer).__name__.startswith("Quantize") for layer in self.layers)


_PASS_LAYERS = {"UpSampling2D", "Resizing", "Reshape", "Permute", "Cropping2D", "Dropout",
                "ZeroPadding2D"}


PREPROCESSING_LAYERS = ("Rescaling", "Normalization")


def preprocessing_layer(layers) -> str | None:
    """The class name of a rescaling or normalising layer that comes before any layer with
    weights (looking into nested models), else None."""
    for layer in layers:
        name = type(layer).__name__
        if name in PREPROCESSING_LAYERS:
            return name
        if getattr(layer, "layers", None):  # a nested model (a backbone): its first layers
            return preprocessing_layer(layer.layers)
        if layer.weights:
            return None
    return None


class KerasModel(EdgeModel):
    """A Keras model of any flavour (TensorFlow), always in inference mode."""

    format = "keras"
    runtime = "keras"

    def __init__(self, path, num_threads=None, *, contract=None, unsafe: bool = False,
                 custom_objects: dict | None = None):
        super().__init__(path, num_threads, contract)
        from edgeseg._keras import tf

        if num_threads:
            try:
                tf.config.threading.set_intra_op_parallelism_threads(num_threads)
                tf.config.threading.set_inter_op_parallelism_threads(1)
            except RuntimeError:  # TensorFlow already started: its pools are fixed for good
                from edgeseg.device.log import warn_once

                current = tf.config.threading.get_intra_op_parallelism_threads()
                pool = f"{current} thread(s)" if current else "default thread pool"
                warn_once(f"Keras models in this process run on TensorFlow's {pool} (fixed when "
                          f"it started); a thread count of {num_threads} does not apply to them")
        self.source = load_keras(self.path, unsafe=unsafe, custom_objects=custom_objects)
        self.model = self.source.model
        self.runtime = "keras" if self.source.flavour == "tf_keras" else self.source.flavour
        self._forwards: dict[int, object] = {}

    @property
    def _raw_input_shape(self):
        return (None, *self.source.input_shape[1:])

    @property
    def _output_specs(self):
        return list(zip(self.source.output_names, self.source.output_shapes))

    def _output_ops(self, output):
        return self.source.output_ops(output)

    @functools.cached_property
    def selected(self) -> KerasSource:
        """The source with the contract's output selected: what the converters convert."""
        return self.source.select(self.output_index)

    def _embedded_card(self):
        """A Keras file holds no card; one without a card beside it whose first layers rescale or
        normalise (``Rescaling``, ``Normalization``: keras.applications' preprocessing) takes raw
        pixels, and that is said once."""
        from edgeseg.device import card as cards

        if cards.read_card(self.path):
            return {}
        layer = preprocessing_layer(self.source.layers)
        if layer is None:
            return {}
        from edgeseg.device.log import warn_once

        warn_once(f"{self.path.name} starts with a {layer} layer: fed raw pixel values (0-255 for "
                  f"8-bit images; --normalize overrides)")
        return {"normalization": cards.Normalization("none").to_dict()}

    def own_params(self):
        if self.source.flavour == "savedmodel" or self.source.is_quantization_aware():
            return None  # a QAT model's card states its float source's count
        return int(self.model.count_params())

    def cost(self, input_size=None):
        from edgeseg.device import flops

        kernels = [w for layer in self.source.layers for w in layer.weights
                   if w.name.split("/")[-1].split(":")[0] in ("kernel", "depthwise_kernel")]
        values = np.concatenate([np.ravel(np.asarray(w)) for w in kernels]) if kernels \
            else np.zeros(0)
        sparsity = float((values == 0).mean()) if values.size else None
        if self.source.flavour != "tf_keras" or len(self.source.output_names) > 1:
            from edgeseg.device.log import warn_once

            warn_once(f"{self.path.name}: MACs are counted on tf_keras models with one output "
                      f"and on converted files, not on this {self.source.flavour} model: the "
                      f".tflite or .onnx converted from it has them")
            return None, self.own_params(), sparsity
        fixed = None not in self.source.input_shape[1:3]
        cost = flops.keras_cost(self.model, input_size=None if fixed else input_size)
        return cost.macs, cost.params, sparsity

    def _run(self, images, output):
        from edgeseg._keras import tf

        if output not in self._forwards:
            self._forwards[output] = tf.function(
                lambda x: self.source.raw(x)[output], reduce_retracing=True)
        return np.asarray(self._forwards[output](images), np.float32)


def keras_predictor(model):
    """A Keras model as a ``predict`` callable, always in inference mode (BatchNorm's moving
    statistics). One graph for every call (traced again only for a new input shape, then with
    that dimension left open): eager calls cost 8x more, the most for QAT models."""
    from edgeseg._keras import tf

    forward = tf.function(lambda batch: model(batch, training=False), reduce_retracing=True)
    return lambda batch: np.asarray(forward(batch))


class KerasInMemory:
    """A Keras model object with the part of the EdgeModel interface that scoring uses
    (``input_shape``, ``num_classes``, ``card``, ``predict`` in inference mode)."""

    format = runtime = "keras"

    def __init__(self, model, card: dict):
        self.model, self.card = model, card
        self.predict = keras_predictor(model)

    @property
    def input_shape(self) -> tuple:
        return (None, *self.model.input_shape[1:])

    @property
    def num_classes(self) -> int:
        return int(self.model.output_shape[-1])


def load_for_training(path, *, unsafe: bool = False, custom_objects: dict | None = None):
    """A tf-keras model for tfmot (prune, QAT, cluster); a Keras 3 or plain SavedModel file is
    one line that says why not and what to do."""
    path = Path(path)
    kind = flavour(path) if path.exists() else "tf_keras"
    if kind != "tf_keras":
        what = "a Keras 3 model" if kind == "keras3" else "a plain TensorFlow SavedModel"
        raise EdgesegError(
            f"{path}: {what}: pruning, QAT and clustering use tensorflow-model-optimization, "
            f"which works on tf-keras (Keras 2) models only; convert, eval and bench work on it "
            f"as it is (post-training quantization: edgeseg convert --quant int8), or rebuild it "
            f"with tf_keras layers and copy its weights to optimize it")
    return load_tf_keras(path, unsafe=unsafe, custom_objects=custom_objects)


__all__ = ["FLAVOURS", "CustomObjects", "KerasInMemory", "KerasModel", "KerasSource", "carries_code", "code_refused",
           "custom_objects_from", "flavour", "import_custom_objects", "keras_predictor",
           "load_error", "load_for_training", "load_keras", "load_tf_keras",
           "preprocessing_layer"]
