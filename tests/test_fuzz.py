"""Fuzzing the loaders and decoders with hypothesis: random bytes and mutated valid files.

Every input must end in a loaded model / decoded array or in an EdgesegError (one line, naming the
file) — never a crash of this process, a hang, or another exception. The native runtimes only ever
see a file in a child process first (edgeseg.device.untrusted), so a runtime crash shows up as a
refusal.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from edgeseg.device.errors import EdgesegError

FUZZ = settings(max_examples=25, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow, HealthCheck.data_too_large])


@st.composite
def mutations(draw, valid: bytes):
    """A valid file with bytes flipped, a run overwritten, a cut, or bytes inserted."""
    data = bytearray(valid)
    kind = draw(st.sampled_from(["flip", "overwrite", "truncate", "insert", "random"]))
    if kind == "random":
        return draw(st.binary(min_size=0, max_size=4096))
    if kind == "truncate":
        return bytes(data[: draw(st.integers(0, len(data) - 1))])
    if kind == "insert":
        at = draw(st.integers(0, len(data)))
        return bytes(data[:at] + draw(st.binary(min_size=1, max_size=64)) + data[at:])
    count = draw(st.integers(1, 40 if kind == "flip" else 4))
    for _ in range(count):
        at = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        else:
            chunk = draw(st.binary(min_size=1, max_size=32))
            data[at:at + len(chunk)] = chunk
    return bytes(data)


def _one_line(error: Exception, path: Path) -> None:
    message = str(error)
    assert "\n" not in message and str(path) in message, message


def _fuzz_model(tmp_path, valid: bytes, suffix: str, data):
    from edgeseg import runtime

    blob = data.draw(mutations(valid))
    path = tmp_path / f"fuzzed{suffix}"
    path.write_bytes(blob)
    try:
        model = runtime.load(path)
    except EdgesegError as error:
        _one_line(error, path)
        return "refused"
    shape = [d if d is not None else 32 for d in model.input_shape]
    try:  # what loaded must also run (the child ran it once) or refuse cleanly
        model.predict(np.zeros(shape, np.float32))
    except EdgesegError as error:
        _one_line(error, path)
        return "refused"
    return "loaded"


@pytest.mark.parametrize("to,quant", [("tflite", "none"), ("tflite", "int8"), ("onnx", "none")])
def test_fuzzed_model_files_load_or_are_refused(converted, tmp_path, to, quant):
    valid = converted[(to, quant)][0].read_bytes()
    outcomes = []

    @FUZZ
    @given(data=st.data())
    def run(data):
        outcomes.append(_fuzz_model(tmp_path, valid, f".{to}", data))

    run()
    assert "refused" in outcomes  # the fuzzing reached the checks


def test_fuzzed_flatbuffers_never_crash_the_python_reader(converted, tmp_path):
    """read_tflite (used by inspect, flops, the card) parses in Python: any bytes, a clean error."""
    from edgeseg.device.formats.tflite import read_tflite

    valid = converted[("tflite", "int8")][0].read_bytes()

    @settings(max_examples=150, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                     HealthCheck.data_too_large])
    @given(data=st.data())
    def run(data):
        path = tmp_path / "fuzzed.tflite"
        path.write_bytes(data.draw(mutations(valid)))
        try:
            read_tflite(path)
        except EdgesegError as error:
            _one_line(error, path)

    run()


def _encoded(fmt: str) -> bytes:
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (48, 40), np.uint8)).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt,suffix", [("PNG", ".png"), ("JPEG", ".jpg"), ("TIFF", ".tif"),
                                        ("BMP", ".bmp")])
def test_fuzzed_images_decode_or_are_refused(tmp_path, fmt, suffix):
    from edgeseg.device.data.folders import read_image

    valid = _encoded(fmt)

    @settings(max_examples=60, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(data=st.data(), channels=st.sampled_from([1, 3]))
    def run(data, channels):
        path = tmp_path / f"fuzzed{suffix}"
        path.write_bytes(data.draw(mutations(valid)))
        try:
            image = read_image(path, channels)
        except EdgesegError as error:
            _one_line(error, path)
            return
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[-1] == channels

    run()


def test_fuzzed_masks_decode_or_are_refused(tmp_path):
    from edgeseg.device.data.folders import Sample, read_mask

    valid = _encoded("PNG")

    @settings(max_examples=60, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(data=st.data(), layout=st.sampled_from(["generic", "carvana", "oxford", "voc"]))
    def run(data, layout):
        path = tmp_path / "fuzzed_mask.png"
        path.write_bytes(data.draw(mutations(valid)))
        try:
            mask = read_mask(Sample(path, (path,)), layout)
        except EdgesegError as error:
            _one_line(error, path)
            return
        assert mask.dtype == np.uint8 and mask.ndim == 2

    run()
