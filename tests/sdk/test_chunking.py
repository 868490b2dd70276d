"""Ingest messages never exceed 32 KiB, whatever the size, framing and format."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sluice.wire.packet_pb2 import Packet as ProtoPacket
from sluice_endpoint.chunking import Chunker, Pacer, max_payload
from sluice_endpoint.convert import Resampler, remix, to_format
from sluice_endpoint.errors import FormatError
from sluice_endpoint.formats import AudioFormat
from sluice_endpoint.packet import MAX_MESSAGE_BYTES

formats = st.builds(
    AudioFormat,
    codec=st.sampled_from(["pcm", "mulaw"]),
    sample_rate=st.sampled_from([8000, 16000, 22050, 24000, 44100, 48000]),
    channels=st.sampled_from([1, 2]),
    framing=st.sampled_from(["packet", "raw"]),
)


@settings(max_examples=200, deadline=None)
@given(
    size=st.integers(0, 70_000),
    fmt=formats,
    limit=st.integers(8, 64) | st.integers(64, MAX_MESSAGE_BYTES),
    chunk_ms=st.none() | st.floats(0.5, 1000),
)
@example(size=32_764, fmt=AudioFormat(), limit=MAX_MESSAGE_BYTES, chunk_ms=None)
@example(size=32_768, fmt=AudioFormat(framing="raw"), limit=MAX_MESSAGE_BYTES, chunk_ms=None)
@example(size=1_000_000, fmt=AudioFormat(), limit=MAX_MESSAGE_BYTES, chunk_ms=None)
def test_no_message_exceeds_the_limit_and_nothing_is_lost(
    size: int, fmt: AudioFormat, limit: int, chunk_ms: float | None
) -> None:
    audio = bytes(range(256)) * (size // 256) + bytes(size % 256)
    chunker = Chunker(fmt, limit, chunk_ms)
    messages = chunker.messages(audio)
    assert all(0 < len(m) <= limit for m in messages)
    if fmt.framing == "raw":
        payloads = messages
    else:  # the protobuf runtime reads them back
        payloads = [ProtoPacket.FromString(m).payload for m in messages]
    assert b"".join(payloads) == audio
    # Whole samples in every message but the last (the limit allowing).
    if chunker.payload_bytes >= fmt.bytes_per_sample:
        assert all(len(p) % fmt.bytes_per_sample == 0 for p in payloads[:-1])


def test_the_largest_message_is_exactly_32_KiB() -> None:
    fmt = AudioFormat()
    (message,) = Chunker(fmt).messages(bytes(max_payload(MAX_MESSAGE_BYTES, "packet")))
    assert len(message) == MAX_MESSAGE_BYTES
    assert max_payload(MAX_MESSAGE_BYTES, "raw") == MAX_MESSAGE_BYTES
    with pytest.raises(ValueError):
        Chunker(fmt, MAX_MESSAGE_BYTES + 1)


def test_end_of_segment_is_the_zero_length_message() -> None:
    assert Chunker(AudioFormat()).end_of_segment() == b""
    assert ProtoPacket.FromString(b"").payload == b""


def test_pacer_keeps_the_lead() -> None:
    pacer = Pacer(lead_s=0.5)
    assert pacer.delay(100.0) == 0.0
    pacer.sent(100.0, 0.4)
    assert pacer.delay(100.0) == 0.0
    pacer.sent(100.0, 0.4)  # 0.8 s buffered: wait until only 0.5 s is left
    assert pacer.delay(100.0) == pytest.approx(0.3)
    assert pacer.delay(100.5) == 0.0
    pacer.sent(110.0, 0.2)  # idle in between: playout went on with silence
    assert pacer.delay(110.0) == 0.0
    pacer.reset()
    assert pacer.delay(0.0) == 0.0


def test_mono_is_duplicated_and_stereo_averaged() -> None:
    mono = np.array([1, -2, 300], dtype="<i2").tobytes()
    stereo = remix(mono, 1, 2)
    assert np.frombuffer(stereo, "<i2").tolist() == [1, 1, -2, -2, 300, 300]
    back = np.array([2, 4, -3, -5], dtype="<i2").tobytes()
    assert np.frombuffer(remix(back, 2, 1), "<i2").tolist() == [3, -4]
    with pytest.raises(FormatError):
        remix(b"\x00" * 3, 2, 1)


def test_arrays_and_formats() -> None:
    fmt = AudioFormat()
    floats = np.array([[0.5], [-1.0]], dtype=np.float32)
    pcm, rate, channels = to_format(floats, fmt, 48_000, 1)
    assert (np.frombuffer(pcm, "<i2").tolist(), rate, channels) == ([16384, -32768], 48_000, 1)
    with pytest.raises(FormatError):
        to_format(np.zeros((4, 3), np.int16), fmt, None, 2)
    with pytest.raises(FormatError):
        to_format(b"\xff" * 10, AudioFormat("mulaw", 8000, 1), 16_000, 1)
    mulaw = AudioFormat("mulaw", 8000, 1)
    assert to_format(b"\xff" * 10, mulaw, None, None) == (b"\xff" * 10, 8000, 1)


def test_resampling_streams_a_tone_at_its_frequency() -> None:
    rate_in, rate_out = 24_000, 48_000
    t = np.arange(rate_in) / rate_in
    tone = (np.sin(2 * np.pi * 440 * t) * 10_000).astype("<i2").tobytes()
    resampler = Resampler(rate_in, rate_out, 1)
    blocks = [tone[i : i + 4_800] for i in range(0, len(tone), 4_800)]
    out = b"".join(resampler.process(b) for b in blocks) + resampler.process(b"", last=True)
    samples = np.frombuffer(out, "<i2").astype(np.float64)
    assert abs(len(samples) - rate_out) <= 2
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    peak = np.fft.rfftfreq(len(samples), 1 / rate_out)[int(np.argmax(spectrum))]
    assert abs(peak - 440) < 2
