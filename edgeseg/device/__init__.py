"""What a board needs: numpy, Pillow, click and a runtime (LiteRT or ONNX Runtime), never
TensorFlow. Nothing here imports a host-side module of edgeseg (tests/test_structure.py)."""
