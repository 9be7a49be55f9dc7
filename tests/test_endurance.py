"""benchmarks.studies.endurance at a small scale: predict keeps its memory bound; no growth over a
run.

The full measurement (8192x8192, 10,000 inferences) is `python -m benchmarks.studies.endurance
MODEL`.
"""

import numpy as np


def test_predict_on_a_big_image_stays_within_its_memory_bound(converted):
    from benchmarks.studies.endurance import measure_predict

    path, _ = converted[("tflite", "int8")]
    result = measure_predict(path, 2048)
    assert result["within_bound"], result
    assert result["peak_rss_mb"] < result["whole_image_float_mb"]


def test_repeated_inference_does_not_grow_resident_memory(converted):
    from benchmarks.studies.endurance import measure_rss

    path, _ = converted[("tflite", "int8")]
    result = measure_rss(path, 1000, every=250)
    assert len(result["samples"]) == 5
    assert result["growth_mb"] < 8, result


def test_streamed_labels_equal_the_whole_image_blend():
    from edgeseg.device.metrics import labels_from_probs
    from edgeseg.device.tiling import predict_labels, predict_tiled

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (300, 170, 1), np.uint8)
    weights = rng.random((1, 1, 1, 3)).astype(np.float32)

    def model(batch):  # a per-pixel "model" whose tiles disagree nowhere
        return np.concatenate([batch, batch ** 2, 1 - batch], axis=-1) * weights

    whole = labels_from_probs(predict_tiled(model, image.astype(np.float32) / 255, (64, 64), 16)[None])[0]
    streamed = predict_labels(model, image, (64, 64), 16, affine=(np.float32(1 / 255), 0.0))
    np.testing.assert_array_equal(streamed, whole)
