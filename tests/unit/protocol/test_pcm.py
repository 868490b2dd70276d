"""PCM constants, the reassembler's carry-over and flush, and the stereo conversion."""

from __future__ import annotations

import numpy as np
import pytest

from worker.protocol.pcm import (
    BYTES_PER_SAMPLE,
    FRAME_BYTES,
    FRAME_DURATION_S,
    FRAME_SAMPLES,
    SAMPLE_RATE,
    SILENCE,
    PcmReassembler,
    frames_for,
    to_stereo_s16le,
)


def ramp(n: int, start: int = 0) -> bytes:
    """Distinct-looking bytes, so a reordering or a lost byte shows."""
    return bytes((start + i) % 251 for i in range(n))


def test_constants() -> None:
    assert FRAME_SAMPLES == SAMPLE_RATE * FRAME_DURATION_S == 960
    assert FRAME_BYTES == FRAME_SAMPLES * BYTES_PER_SAMPLE == 3840
    assert len(SILENCE) == 3840
    assert not any(SILENCE)


@pytest.mark.parametrize(
    ("seconds", "frames"), [(60.0, 3000), (5.0, 250), (0.02, 1), (0.021, 2), (0.001, 1)]
)
def test_frames_for(seconds: float, frames: int) -> None:
    assert frames_for(seconds) == frames


# --- reassembler --------------------------------------------------------------------


def test_remainder_is_carried_over() -> None:
    reassembler = PcmReassembler()
    assert reassembler.feed(bytes(5000)) == [bytes(3840)]
    assert reassembler.pending_bytes == 1160
    assert reassembler.feed(bytes(2680)) == [bytes(3840)]
    assert reassembler.pending_bytes == 0


def test_split_inside_a_sample() -> None:
    data = ramp(FRAME_BYTES)
    reassembler = PcmReassembler()
    assert reassembler.feed(data[:1]) == []  # half of the left channel's first sample
    assert reassembler.feed(data[1:3]) == []
    assert reassembler.feed(data[3:]) == [data]


def test_one_message_many_frames() -> None:
    data = ramp(32_764)  # the largest payload that fits a 32 KiB message
    reassembler = PcmReassembler()
    frames = reassembler.feed(data)
    assert len(frames) == 8
    assert b"".join(frames) == data[: 8 * FRAME_BYTES]
    assert reassembler.pending_bytes == 32_764 - 8 * FRAME_BYTES


def test_feed_accepts_buffers() -> None:
    reassembler = PcmReassembler()
    assert reassembler.feed(memoryview(ramp(3000))) == []
    assert reassembler.feed(bytearray(ramp(840, 3000))) == [ramp(3840)]


def test_end_of_segment_pads_partial_frame_with_silence() -> None:
    reassembler = PcmReassembler()
    reassembler.feed(ramp(1001))
    assert reassembler.feed(b"") == [ramp(1001) + bytes(FRAME_BYTES - 1001)]
    assert reassembler.pending_bytes == 0
    assert reassembler.padded_bytes == FRAME_BYTES - 1001
    assert reassembler.bytes_in == 1001


def test_end_of_segment_on_frame_boundary_adds_nothing() -> None:
    reassembler = PcmReassembler()
    assert reassembler.feed(bytes(FRAME_BYTES)) == [bytes(FRAME_BYTES)]
    assert reassembler.feed(b"") == []
    assert reassembler.feed(b"") == []
    assert reassembler.padded_bytes == 0


def test_next_segment_starts_on_a_fresh_frame() -> None:
    reassembler = PcmReassembler()
    reassembler.feed(ramp(3))  # the marker cuts a sample in half
    assert reassembler.feed(b"") == [ramp(3) + bytes(FRAME_BYTES - 3)]
    assert reassembler.feed(ramp(FRAME_BYTES, 7)) == [ramp(FRAME_BYTES, 7)]


def test_flush_for_endpoint_close() -> None:
    reassembler = PcmReassembler()
    assert reassembler.flush() is None
    reassembler.feed(ramp(10))
    assert reassembler.flush() == ramp(10) + bytes(FRAME_BYTES - 10)
    assert reassembler.flush() is None


# --- stereo conversion --------------------------------------------------------------


def test_mono_is_duplicated_to_both_channels() -> None:
    mono = np.array([1, -2, 3], dtype=np.int16)
    expected = np.array([1, 1, -2, -2, 3, 3], dtype="<i2").tobytes()
    assert to_stereo_s16le(mono, channels=1) == expected
    assert to_stereo_s16le(mono.reshape(1, -1), channels=1) == expected


def test_packed_stereo_is_passed_through() -> None:
    packed = np.array([[1, 2, 3, 4]], dtype=np.int16)  # L R L R, PyAV's s16 layout
    assert to_stereo_s16le(packed, channels=2) == packed.astype("<i2").tobytes()
    assert to_stereo_s16le(packed.reshape(-1), channels=2) == packed.astype("<i2").tobytes()


def test_planar_stereo_is_interleaved() -> None:
    planar = np.array([[1, 3], [2, 4]], dtype=np.int16)  # PyAV's s16p: one row per channel
    assert to_stereo_s16le(planar, channels=2) == np.array([1, 2, 3, 4], "<i2").tobytes()


def test_output_is_little_endian_at_full_scale() -> None:
    mono = np.array([0x0102, -32768, 32767], dtype=np.int16)
    out = to_stereo_s16le(mono, channels=1)
    assert out == b"\x02\x01\x02\x01\x00\x80\x00\x80\xff\x7f\xff\x7f"


def test_a_20ms_mono_frame_becomes_one_wire_frame() -> None:
    mono = np.zeros((1, FRAME_SAMPLES), dtype=np.int16)
    assert len(to_stereo_s16le(mono, channels=1)) == FRAME_BYTES


@pytest.mark.parametrize(
    ("samples", "channels"),
    [
        pytest.param(np.zeros(4, dtype=np.float32), 2, id="float"),
        pytest.param(np.zeros(4, dtype=np.int32), 2, id="int32"),
        pytest.param(np.zeros((3, 4), dtype=np.int16), 3, id="three-channels"),
        pytest.param(np.zeros((3, 4), dtype=np.int16), 2, id="shape-mismatch"),
        pytest.param(np.zeros((1, 3), dtype=np.int16), 2, id="odd-packed-stereo"),
        pytest.param(np.zeros((1, 2, 2), dtype=np.int16), 2, id="3-d"),
    ],
)
def test_stereo_conversion_refuses(samples: np.typing.NDArray[np.int16], channels: int) -> None:
    with pytest.raises(ValueError):
        to_stereo_s16le(samples, channels=channels)
