"""Constants shared by the tests and their fixtures (tests/ is on sys.path under pytest)."""

MODES = [("tflite", "none"), ("tflite", "fp16"), ("tflite", "dynamic"), ("tflite", "int8"),
         ("tflite", "int16x8"), ("onnx", "none"), ("onnx", "fp16"), ("onnx", "int8")]
