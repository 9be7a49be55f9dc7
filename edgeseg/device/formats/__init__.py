"""Model files read without TensorFlow: .tflite flatbuffers and .onnx graphs, as plain data."""
