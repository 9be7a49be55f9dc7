"""Keras -> .tflite (every quantization mode) and -> .onnx, with parity checks against the source."""
