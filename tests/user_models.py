"""Models nobody at edgeseg wrote: built the way a user would, to push through edgeseg's CLI.

edgeseg builds and trains its own models in tf_keras (see ``edgeseg._keras``); its users bring
whatever they have. This module makes a small zoo of such files, with plain Keras 3 (``import
keras``), tf_keras and ``onnx.helper``, none of it through edgeseg's model code:

    ============================  ==========================  =====================================
    key                           file                        what
    ============================  ==========================  =====================================
    keras3_unet / keras3_unet_h5  unet_k3.keras / unet_k3.h5  a trained Keras 3 U-Net, sigmoid out
    keras3_logits                 logits_k3.keras             the same, pre-activation output
    keras3_wide                   wide_k3.keras               the same, fixed (144, 256, 1) input
    keras3_two_full               two_full_k3.keras           "mask" + "edges": two full-res outputs
    keras3_aux                    aux_k3.keras                [aux (half res), seg]: one full-res
    tfkeras_custom / ..._h5       custom_tfk.keras / .h5      the U-Net in tf_keras + a custom layer
    custom_objects_file           my_layers.py                that layer's code (the user's file)
    keras3_plain                  plain_k3.keras              a trained 3-conv net, no BatchNorm
    onnx_nchw                     plain_nchw.onnx             that net by hand in ONNX, NCHW
    onnx_nchw_logits              plain_nchw_logits.onnx      the same without the final Sigmoid
    onnx_nchw_fixed               plain_nchw_fixed.onnx       the same, fixed [1, 1, 64, 64]
    heldout                       heldout.npz                 held-out "images" (16, 64, 64, 1)
                                                              float32, "masks" (16, 64, 64) uint8
    ============================  ==========================  =====================================

Data is edgeseg's built-in ``synthetic-nuclei`` (grey, 1 channel; images are the 8-bit samples
/ 255, masks 0/1), trained on indices from 0 and held out from ``VAL_OFFSET`` (where ``edgeseg
eval`` draws its samples), so no model has seen an image it is scored on. On 2 cores the whole
build takes ~15 s (TensorFlow already imported): held-out Dice ~0.96 for the U-Net and ~0.91 for
the plain net, the same to the bit from run to run on one machine.

Both Keras live in one process: ``edgeseg._keras`` sets ``TF_USE_LEGACY_KERAS=1`` (so
``tf.keras`` is tf_keras), while ``import keras`` still gives Keras 3. The custom layer's
registration with tf_keras is undone after the build (see ``_import_user_file``), so a test that
loads ``custom_tfk.keras`` in-process still has to hand edgeseg ``my_layers.py``.
"""

from __future__ import annotations

import importlib.util
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np

# isort: off
import edgeseg._keras  # noqa: F401  (first: sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgeseg.device.data.datasets import builtin
from edgeseg.device.data.roles import VAL_OFFSET

import keras  # noqa: E402  (Keras 3, whatever TF_USE_LEGACY_KERAS says)
import tf_keras  # noqa: E402
# isort: on

if not keras.__version__.startswith("3"):  # pragma: no cover - guards a broken install
    raise ImportError(f"tests/user_models.py needs Keras 3 as `keras`, found {keras.__version__}")

DATASET = "synthetic-nuclei"
SEED = 0
SIZE = 64  # training and held-out tile size
N_TRAIN = 512  # training samples, indices [0, N_TRAIN)
N_HELDOUT = 16  # held-out samples saved for cross-checks, indices from VAL_OFFSET
WIDE_SHAPE = (144, 256, 1)  # the fixed, non-square input of "keras3_wide"

UNET_EPOCHS = 8
PLAIN_EPOCHS = 10
BATCH = 16
OPSET = 17
IR_VERSION = 8  # the IR version that goes with opset 17; every onnxruntime >= 1.10 reads it

# The user's own code: a custom layer, in a file of its own (written to root/my_layers.py).
MY_LAYERS = '''"""A user's custom layers (not part of edgeseg)."""

import tf_keras


@tf_keras.saving.register_keras_serializable(package="my_layers")
class Scale(tf_keras.layers.Layer):
    """Multiplies its input by one learned scalar (initially ``initial``)."""

    def __init__(self, initial=1.0, **kwargs):
        super().__init__(**kwargs)
        self.initial = float(initial)

    def build(self, input_shape):
        self.scale = self.add_weight(name="scale", shape=(),
                                     initializer=tf_keras.initializers.Constant(self.initial))
        super().build(input_shape)

    def call(self, inputs):
        return inputs * self.scale

    def get_config(self):
        return {**super().get_config(), "initial": self.initial}
'''


def build_user_models(root: Path) -> dict[str, Path]:
    """Build, train and save every user model into ``root``; returns {key: path} (see module doc)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(SEED)  # python, numpy and TF's global seed (tf_keras uses it too)
    paths: dict[str, Path] = {}

    x_train, y_train = nuclei(N_TRAIN, SIZE, start=0)
    x_held, y_held = nuclei(N_HELDOUT, SIZE, start=VAL_OFFSET)
    paths["heldout"] = root / "heldout.npz"
    np.savez(paths["heldout"], images=x_held, masks=y_held,
             index=np.arange(VAL_OFFSET, VAL_OFFSET + N_HELDOUT))

    unet = unet_model(keras, (None, None, 1))
    train(unet, x_train, y_train, epochs=UNET_EPOCHS, lr=1e-2)
    paths.update(_save_keras3_variants(unet, root))

    paths.update(_save_tfkeras_custom(unet, root))

    plain = plain_model()
    train(plain, x_train, y_train, epochs=PLAIN_EPOCHS, lr=1e-2)
    paths["keras3_plain"] = _save(plain, root / "plain_k3.keras")
    for key, name, sigmoid, fixed in [("onnx_nchw", "plain_nchw.onnx", True, False),
                                      ("onnx_nchw_logits", "plain_nchw_logits.onnx", False, False),
                                      ("onnx_nchw_fixed", "plain_nchw_fixed.onnx", True, True)]:
        paths[key] = root / name
        onnx_save(plain_to_onnx(plain, sigmoid=sigmoid, fixed=fixed), paths[key])
    return paths


# -- data -------------------------------------------------------------------------------------------


def nuclei(count: int, size: int, start: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` built-in nuclei samples from index ``start``: images (N, H, W, 1) float32 in [0, 1]
    (the 8-bit sample / 255, as edgeseg reads it) and masks (N, H, W) uint8 0/1."""
    data = builtin(DATASET, count, size, SEED, start=start)
    images = np.stack(data.images).astype(np.float32) / 255.0
    return images, np.stack(data.masks)


# -- Keras 3 models ---------------------------------------------------------------------------------


def unet_model(k, input_shape, *, scale_layer=None):
    """The small U-Net, in Keras 3 (``k = keras``) or tf_keras (``k = tf_keras``): same layers,
    same names, in the same order, so weights copy across by name.

    Two levels down (8, 16 filters) to a 32-filter bottleneck; up once with UpSampling2D and once
    with Conv2DTranspose, skips concatenated; a 1x1 conv "logits_conv" then a separate sigmoid
    "probs". ``scale_layer``: a layer inserted between the two (the tf_keras custom model).
    """
    L = k.layers

    def block(x, filters, name):  # Conv 3x3 + BN + ReLU
        x = L.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv")(x)
        x = L.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
        return L.ReLU(name=f"{name}_relu")(x)

    image = L.Input(shape=input_shape, name="image")
    enc1 = block(image, 8, "enc1")  # full
    enc2 = block(L.MaxPooling2D(name="pool1")(enc1), 16, "enc2")  # 1/2
    bottom = block(L.MaxPooling2D(name="pool2")(enc2), 32, "bottom")  # 1/4
    up2 = L.UpSampling2D(name="up2")(bottom)  # 1/2
    dec2 = block(L.Concatenate(name="cat2")([up2, enc2]), 16, "dec2")
    up1 = L.Conv2DTranspose(8, 2, strides=2, name="up1")(dec2)  # full
    dec1 = block(L.Concatenate(name="cat1")([up1, enc1]), 8, "dec1")
    logits = L.Conv2D(1, 1, name="logits_conv")(dec1)
    if scale_layer is not None:
        logits = scale_layer(logits)
    probs = L.Activation("sigmoid", name="probs")(logits)
    return k.Model(image, probs, name="unet")


def plain_model():
    """A plain conv net (no BatchNorm), the kind that exports cleanly to any format."""
    L = keras.layers
    image = L.Input(shape=(None, None, 1), name="image")
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(image)
    x = L.Conv2D(8, 3, padding="same", dilation_rate=2, activation="relu", name="conv2")(x)
    logits = L.Conv2D(1, 1, name="logits_conv")(x)
    probs = L.Activation("sigmoid", name="probs")(logits)
    return keras.Model(image, probs, name="plain")


def train(model, images, masks, *, epochs: int, lr: float) -> None:
    """Adam + binary cross-entropy, the plain way (model.fit on numpy arrays)."""
    model.compile(optimizer=keras.optimizers.Adam(lr), loss="binary_crossentropy")
    model.fit(images, masks[..., None].astype(np.float32), batch_size=BATCH, epochs=epochs,
              shuffle=True, verbose=0)


def _save(model, path: Path) -> Path:
    with warnings.catch_warnings():  # .h5 is deliberate here: a legacy file, as users still have
        warnings.filterwarnings("ignore", "You are saving your model as an HDF5 file")
        model.save(path)
    return path


def _save_keras3_variants(unet, root: Path) -> dict[str, Path]:
    """The trained U-Net and the variants made from it (sharing its layers, hence its weights)."""
    paths = {"keras3_unet": _save(unet, root / "unet_k3.keras"),
             "keras3_unet_h5": _save(unet, root / "unet_k3.h5")}  # Keras 3's legacy h5 writer
    L = keras.layers
    image = unet.input
    logits = unet.get_layer("logits_conv").output
    dec1 = unet.get_layer("dec1_relu").output  # last decoder features (full resolution)
    dec2 = unet.get_layer("dec2_relu").output  # half resolution

    # Pre-activation output: what many users export (the loss applies the sigmoid).
    paths["keras3_logits"] = _save(keras.Model(image, logits, name="unet_logits"),
                                   root / "logits_k3.keras")

    # The same layers at a fixed, non-square input size.
    wide = unet_model(keras, WIDE_SHAPE)
    wide.set_weights(unet.get_weights())
    paths["keras3_wide"] = _save(wide, root / "wide_k3.keras")

    # Ambiguous: two outputs both at the input's size; which one is the segmentation?
    mask = L.Activation("sigmoid", name="mask")(logits)
    edges = L.Conv2D(1, 1, activation="sigmoid", name="edges")(dec1)  # untrained head
    paths["keras3_two_full"] = _save(keras.Model(image, [mask, edges], name="unet_two_full"),
                                     root / "two_full_k3.keras")

    # Unambiguous: a deep-supervision head at half resolution, listed first; only the
    # segmentation has the input's spatial size.
    aux = L.Conv2D(1, 1, activation="sigmoid", name="aux")(dec2)  # untrained head
    paths["keras3_aux"] = _save(keras.Model(image, [aux, unet.output], name="unet_aux"),
                                root / "aux_k3.keras")

    # Preprocessing inside: the trained U-Net behind Rescaling(1/255), so it takes 0-255 pixels
    # (as keras.applications models with include_preprocessing do).
    raw = keras.Input((None, None, 1), name="raw_pixels")
    rescaled = unet(L.Rescaling(1 / 255, name="rescale")(raw))
    paths["keras3_rescaled"] = _save(keras.Model(raw, rescaled, name="unet_rescaled"),
                                     root / "rescaled_k3.keras")
    return paths


# -- tf_keras with a custom layer -------------------------------------------------------------------


def _save_tfkeras_custom(unet, root: Path) -> dict[str, Path]:
    """The U-Net rebuilt in tf_keras with the user's ``Scale`` layer before the sigmoid, weights
    copied layer by layer from the Keras 3 model."""
    layers_file = root / "my_layers.py"
    layers_file.write_text(MY_LAYERS)
    with _import_user_file(layers_file) as my_layers:
        model = unet_model(tf_keras, (None, None, 1), scale_layer=my_layers.Scale(name="scale"))
        for layer in unet.layers:
            if layer.weights:  # same order in both Keras (BN: gamma, beta, mean, variance)
                model.get_layer(layer.name).set_weights(layer.get_weights())
        paths = {"tfkeras_custom": _save(model, root / "custom_tfk.keras"),
                 "tfkeras_custom_h5": _save(model, root / "custom_tfk.h5")}
    paths["custom_objects_file"] = layers_file
    return paths


@contextmanager
def _import_user_file(path: Path):
    """Import a user's .py by path as a module (as ``--custom-objects my_layers.py`` would), and on
    exit undo what importing it did to tf_keras: drop the classes it registered.

    tf_keras finds a saved custom class ("my_layers>Scale") in its global registry, which the
    file's ``register_keras_serializable`` fills as it is imported. The module is kept out of
    ``sys.modules`` and the registry is cleaned, so for the rest of the process (the test session)
    loading the saved files needs ``my_layers.py`` again, as it does in a fresh process.
    """
    registry = tf_keras.saving.get_custom_objects()  # the global dict itself
    before = set(registry)
    spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        for name in set(registry) - before:
            del registry[name]


# -- ONNX by hand -----------------------------------------------------------------------------------


def plain_to_onnx(plain, *, sigmoid: bool = True, fixed: bool = False):
    """The plain Keras net as an NCHW ONNX graph, written with ``onnx.helper`` the way a PyTorch
    export looks: input "input" and output "output", [batch, 1, height, width] (or [1, 1, 64, 64]
    with ``fixed``); Conv weights OIHW (Keras keeps HWIO), explicit pads and dilations."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    dims = [1, 1, SIZE, SIZE] if fixed else ["batch", 1, "height", "width"]
    convs = [("conv1", True), ("conv2", True), ("logits_conv", False)]  # (layer, ReLU after)
    nodes, weights = [], []
    x = "input"
    for name, relu in convs:
        layer = plain.get_layer(name)
        kernel, bias = (np.asarray(w, np.float32) for w in layer.get_weights())
        kh, kw = kernel.shape[:2]
        dilation = layer.dilation_rate[0]
        pad = dilation * (kh - 1) // 2  # "same" for an odd kernel at stride 1
        weights += [numpy_helper.from_array(kernel.transpose(3, 2, 0, 1).copy(), f"{name}.weight"),
                    numpy_helper.from_array(bias, f"{name}.bias")]
        last = name == convs[-1][0]
        y = "output" if last and not sigmoid else name
        nodes.append(helper.make_node("Conv", [x, f"{name}.weight", f"{name}.bias"], [y],
                                      name=name, kernel_shape=[kh, kw], strides=[1, 1],
                                      dilations=[dilation, dilation], pads=[pad, pad, pad, pad]))
        x = y
        if relu:
            nodes.append(helper.make_node("Relu", [x], [f"{name}.relu"], name=f"{name}.relu"))
            x = f"{name}.relu"
    if sigmoid:
        nodes.append(helper.make_node("Sigmoid", [x], ["output"], name="sigmoid"))

    graph = helper.make_graph(
        nodes, "plain_nchw",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, dims)],
        initializer=weights)
    model = helper.make_model(graph, producer_name="user-script",
                              opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def onnx_save(model, path: Path) -> Path:
    import onnx

    onnx.save(model, str(path))
    return path


if __name__ == "__main__":  # build into a folder and time it: python tests/user_models.py DIR
    import sys

    out = Path(sys.argv[1] if len(sys.argv) > 1 else "user-models")
    start = time.perf_counter()
    built = build_user_models(out)
    print(f"built in {time.perf_counter() - start:.1f} s")
    for key, path in built.items():
        print(f"{key:20s} {path}")
