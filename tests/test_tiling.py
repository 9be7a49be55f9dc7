"""Sliding-window inference: tiles cover the image, overlap as asked, and blend back exactly."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeseg.device.tiling import blend_window, predict_tiled, tile_starts


@given(length=st.integers(1, 600), tile=st.integers(1, 128), data=st.data())
def test_tiles_cover_everything_with_the_overlap_asked_for(length, tile, data):
    overlap = data.draw(st.integers(0, tile - 1))
    starts = tile_starts(length, tile, overlap)
    assert starts[0] == 0 and starts == sorted(set(starts))
    if length <= tile:
        assert starts == [0]
        return
    assert starts[-1] + tile == length
    for a, b in zip(starts, starts[1:]):
        assert a + tile - b >= overlap  # neighbours share at least `overlap` pixels
        assert b > a


@settings(max_examples=60, deadline=None)
@given(height=st.integers(1, 150), width=st.integers(1, 150), tile=st.integers(4, 64),
       channels=st.integers(1, 3), data=st.data())
def test_an_identity_model_is_stitched_back_exactly(height, width, tile, channels, data):
    overlap = data.draw(st.integers(0, tile - 1))
    rng = np.random.default_rng(height * 1000 + width)
    image = rng.random((height, width, channels), dtype=np.float32)
    calls = []

    def identity(batch):
        calls.append(batch.shape)
        assert batch.shape[1:3] == (tile, tile)  # the model only ever sees its own size
        return batch

    out = predict_tiled(identity, image, (tile, tile), overlap=overlap, batch_size=3)
    assert out.dtype == np.float32 and out.shape == image.shape
    np.testing.assert_array_equal(out, image)


def test_overlapping_predictions_are_blended_by_the_window():
    image = np.zeros((10, 16, 1), np.float32)
    seen = []

    def constant_per_tile(batch):  # tile k predicts k: the blend shows the weights
        out = []
        for tile in batch:
            seen.append(len(seen))
            out.append(np.full(tile.shape, float(seen[-1]), np.float32))
        return np.stack(out)

    out = predict_tiled(constant_per_tile, image, (10, 10), overlap=4)
    assert seen == [0, 1]
    assert out[0, 0, 0] == 0.0 and out[0, -1, 0] == 1.0
    middle = out[5, 6:10, 0]  # the 4 shared columns go from mostly tile 0 to mostly tile 1
    assert np.all(np.diff(middle) > 0) and 0 < middle[0] < 0.5 < middle[-1] < 1


def test_window_is_positive_and_peaks_in_the_middle():
    w = blend_window(8, 8, 3)
    assert w.min() > 0 and w.max() == 1.0 and w[4, 4] == 1.0 and w[0, 0] < w[1, 1]


@pytest.mark.parametrize("length, tile, overlap", [(10, 0, 0), (10, 4, 4), (10, 4, -1)])
def test_bad_tiling_options(length, tile, overlap):
    with pytest.raises(ValueError):
        tile_starts(length, tile, overlap)
