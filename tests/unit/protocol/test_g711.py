"""G.711 μ-law against the standard's own table, for every one of the 65 536 inputs.

The reference below is built independently of the code under test: from G.711's
Table 2a (μ-law), written as the standard gives it, per segment, in 14-bit units (the
scale where full scale is 8159): the first decision value of each segment, its interval
width, and the decoder's output (the middle of each interval).
"""

from __future__ import annotations

import sys
import warnings

import numpy as np
import numpy.typing as npt
import pytest

from worker.protocol.g711 import mulaw_decode, mulaw_encode

# G.711 Table 2a, positive half: segment → (decision value it starts at, interval width).
# Segment 0's first interval is 0..1 (width 1, output 0); every other is the width given.
SEGMENTS = [(0, 2), (31, 4), (95, 8), (223, 16), (479, 32), (991, 64), (2015, 128), (4063, 256)]
ALL_INT16 = np.arange(-32768, 32768, dtype=np.int16)


def reference_thresholds() -> npt.NDArray[np.int64]:
    """The 127 decision values between the 128 magnitude levels (1, 3, ..., 31, 35, ...)."""
    thresholds = [1 + 2 * q for q in range(15)]  # segment 0: 1, 3, ..., 29
    for start, width in SEGMENTS[1:]:
        thresholds += [start + width * q for q in range(16)]  # 31, 35, ..., 7903
    return np.array(thresholds)


def reference_encode(samples: npt.NDArray[np.int16]) -> npt.NDArray[np.uint8]:
    # 16 to 14 bits as the classic reference does: an arithmetic shift.
    shifted = samples.astype(np.int64) >> 2
    level = np.searchsorted(reference_thresholds(), np.abs(shifted), side="right")
    # Code words: sign bit 1 for positive, and every bit inverted on the line.
    return np.where(shifted < 0, 0x7F - level, 0xFF - level).astype(np.uint8)


def reference_decode() -> npt.NDArray[np.int64]:
    outputs = [0] + [2 * q for q in range(1, 16)]  # segment 0: 0, 2, ..., 30
    for start, width in SEGMENTS[1:]:
        outputs += [start + width // 2 + width * q for q in range(16)]  # 33, 37, ...
    levels = np.array(outputs) * 4  # back to 16 bits
    codes = np.arange(256)
    level = np.where(codes >= 0x80, 0xFF - codes, 0x7F - codes)
    return np.where(codes >= 0x80, levels[level], -levels[level])


def test_every_input_encodes_as_the_g711_table_says() -> None:
    ours = np.frombuffer(mulaw_encode(ALL_INT16), dtype=np.uint8)
    assert np.array_equal(ours, reference_encode(ALL_INT16))


def test_every_code_decodes_as_the_g711_table_says() -> None:
    assert np.array_equal(mulaw_decode(bytes(range(256))), reference_decode())


def test_known_codes() -> None:
    samples = np.array([0, 1, 2, -1, -4, -5, 100, 32767, -32768], dtype=np.int16)
    assert mulaw_encode(samples).hex() == "ffff" + "ff7e7e7e" + "f2" + "8000"
    assert list(mulaw_decode(bytes([0xFF, 0x7F, 0x80, 0x00]))) == [0, 0, 32124, -32124]


def test_a_round_trip_stays_within_half_an_interval() -> None:
    decoded = mulaw_decode(mulaw_encode(ALL_INT16)).astype(np.int64)
    error = np.abs(decoded - ALL_INT16.clip(-32124, 32124))
    # The widest interval (segment 7) is 256 14-bit units: 1 024 in 16 bits.
    assert error.max() <= 512 + 4
    small = np.abs(ALL_INT16.astype(np.int64)) < 120
    assert error[small].max() <= 8  # fine steps near zero


def test_interleaved_channels_stay_interleaved() -> None:
    stereo = np.array([[100, -100], [32767, 0]], dtype=np.int16)
    assert mulaw_encode(stereo) == mulaw_encode(stereo.reshape(-1))
    assert len(mulaw_encode(stereo)) == 4


@pytest.mark.skipif(sys.version_info >= (3, 13), reason="audioop was removed in Python 3.13")
def test_same_as_audioop_where_it_still_exists() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop

    expected = audioop.lin2ulaw(ALL_INT16.astype("<i2").tobytes(), 2)
    assert mulaw_encode(ALL_INT16) == expected
    decoded = np.frombuffer(audioop.ulaw2lin(bytes(range(256)), 2), dtype="<i2")
    assert np.array_equal(mulaw_decode(bytes(range(256))), decoded)
