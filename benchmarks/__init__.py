"""The on-device benchmark harness: needs only numpy and a runtime (no TensorFlow)."""
