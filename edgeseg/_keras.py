"""The one place that decides which Keras edgeseg uses: Keras 2 (tf_keras).

tensorflow-model-optimization (tfmot) 0.8 rejects Keras 3 models, so every model edgeseg builds,
trains, prunes or quantizes is a tf_keras model. TensorFlow reads ``TF_USE_LEGACY_KERAS`` once, when
``tf.keras`` is first resolved, so the variable is set here, before TensorFlow is imported. Every
other module takes ``keras``, ``layers`` and ``tf`` from here and never imports keras another way.

Importing this module imports TensorFlow: only the training side (models, train, optimize,
converters) does so, never the device side (runtime, benchmarks).
"""

from __future__ import annotations

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"

from edgeseg.device.log import native_chatter_dropped, verbose  # noqa: E402

with native_chatter_dropped():  # TensorFlow's start-up lines (oneDNN, CUDA stubs), and its
    import tensorflow as tf  # noqa: E402  # devices found now (on a machine without a GPU,
    import tf_keras as keras  # noqa: E402  # a cuInit error line), not at a later, unfiltered op

    tf.config.list_physical_devices()

if not verbose():  # tf.function's retracing notes and the like: not the user's business
    tf.get_logger().setLevel("ERROR")

layers = keras.layers

if not keras.__version__.startswith("2."):  # pragma: no cover - guards a broken install
    raise ImportError(f"edgeseg needs Keras 2 (tf-keras), found keras {keras.__version__}")

__all__ = ["keras", "layers", "tf"]
