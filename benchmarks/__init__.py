"""The on-device benchmark harness: needs only numpy and a runtime (no TensorFlow).

    python -m benchmarks model_fp32.tflite model_int8.tflite --threads 1,2 --json bench.json

``benchmarks.harness.bench`` is the library entry point; ``edgeseg bench`` runs the same harness
from the host, where Keras models can be benchmarked too.
"""
