"""Ingest's Opus encoder: mono coding while the channels are equal, stereo as soon as not."""

from __future__ import annotations

import numpy as np
import pytest

from tests.integration.audio import dominant_frequency, mono_tone
from worker.pipelines.opus_encode import MONO_AFTER_FRAMES, OpusPcmEncoder
from worker.pipelines.opus_pcm import OpusPcmDecoder
from worker.protocol.pcm import FRAME_BYTES, FRAME_SAMPLES, SAMPLE_RATE

BITRATE = 96_000


def stereo(left: np.ndarray, right: np.ndarray) -> list[bytes]:
    pcm = np.column_stack([left, right]).astype("<i2").tobytes()
    return [pcm[i : i + FRAME_BYTES] for i in range(0, len(pcm) - FRAME_BYTES + 1, FRAME_BYTES)]


def is_stereo_packet(packet: bytes) -> bool:
    return bool(packet[0] & 0x04)  # RFC 6716 §3.1: the TOC byte's `s` bit


def decode(packets: list[bytes]) -> np.ndarray:
    decoder = OpusPcmDecoder()
    pcm = b"".join(b"".join(decoder.decode(p)) for p in packets)
    return np.frombuffer(pcm, dtype="<i2").reshape(-1, 2).astype(np.float64)


def test_equal_channels_are_coded_mono_and_come_back_on_both() -> None:
    tone = mono_tone(440.0, SAMPLE_RATE, 1.0)
    encoder = OpusPcmEncoder(BITRATE)
    packets = [encoder.encode(frame) for frame in stereo(tone, tone)]

    assert [is_stereo_packet(p) for p in packets[MONO_AFTER_FRAMES:]] == [False] * (
        len(packets) - MONO_AFTER_FRAMES
    )
    out = decode(packets)[SAMPLE_RATE // 4 :]
    assert np.array_equal(out[:, 0], out[:, 1])
    assert abs(dominant_frequency(out[:, 0]) - 440.0) < 5
    assert np.sqrt(np.mean(out[:, 0] ** 2)) == pytest.approx(12_000 / np.sqrt(2), rel=0.1)


def test_different_channels_are_coded_stereo_from_the_first_frame_that_differs() -> None:
    left, right = mono_tone(440.0, SAMPLE_RATE, 1.0), mono_tone(660.0, SAMPLE_RATE, 1.0)
    encoder = OpusPcmEncoder(BITRATE)
    same = [encoder.encode(frame) for frame in stereo(left, left)[:10]]
    differing = [encoder.encode(frame) for frame in stereo(left, right)]

    assert not is_stereo_packet(same[-1]) and encoder.mono is False
    assert all(is_stereo_packet(p) for p in differing)
    out = decode(same + differing)[-SAMPLE_RATE // 2 :]
    assert abs(dominant_frequency(out[:, 0]) - 440.0) < 5
    assert abs(dominant_frequency(out[:, 1]) - 660.0) < 5


def test_a_short_run_of_equal_frames_does_not_switch() -> None:
    left, right = mono_tone(440.0, SAMPLE_RATE, 0.5), mono_tone(660.0, SAMPLE_RATE, 0.5)
    frames = stereo(left, right)
    silence = bytes(FRAME_BYTES)
    encoder = OpusPcmEncoder(BITRATE)
    sequence = frames[:5] + [silence] * (MONO_AFTER_FRAMES - 1) + frames[5:10]

    packets = [encoder.encode(frame) for frame in sequence]

    assert all(is_stereo_packet(p) for p in packets)


def test_bitrate_is_the_target_on_average() -> None:
    tone = mono_tone(440.0, SAMPLE_RATE, 2.0)
    noise = np.random.default_rng(7).integers(-4_000, 4_000, len(tone))
    encoder = OpusPcmEncoder(BITRATE)
    packets = [encoder.encode(frame) for frame in stereo(tone + noise, tone - noise)]

    bits_per_second = 8 * sum(map(len, packets)) / (len(packets) * FRAME_SAMPLES / SAMPLE_RATE)
    assert 0.7 * BITRATE < bits_per_second < 1.2 * BITRATE


def test_a_frame_of_the_wrong_length_is_refused() -> None:
    with pytest.raises(ValueError, match="3840 bytes"):
        OpusPcmEncoder(BITRATE).encode(bytes(FRAME_BYTES - 4))


def test_the_encoder_bench_compares_every_encoder_on_a_short_source() -> None:
    from bench.opus_encoder import ENCODERS, measure, tone

    result = measure(tone(two_tones=False)[: 25 * FRAME_BYTES], repeats=1)

    assert set(result) == set(ENCODERS)
    assert result["libopus"]["stereo_packets_pct"] < 20  # coded mono after 3 frames
    assert result["libopus_stereo"]["stereo_packets_pct"] == 100
