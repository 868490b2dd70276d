"""The examples' audio code, without a network: conversion, resampling, placement."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from examples.audio import (
    RATE,
    Timeline,
    dominant_frequency,
    float_to_pcm,
    level_dbfs,
    pcm_to_float,
    read_wav,
    resample,
    to_sluice_pcm,
    tone,
)
from examples.speak import CHUNK_BYTES, chunk_packets
from examples.stt_ready import STT_RATE, Meter, To16kMono
from sluice.wire.packet_pb2 import Packet


def stereo_pcm(freq_hz: float, seconds: float) -> bytes:
    return float_to_pcm(np.repeat(tone(freq_hz, seconds), 2, axis=1))


def test_1khz_becomes_16khz_mono_at_the_same_frequency() -> None:
    converter = To16kMono()
    pcm = converter.feed(stereo_pcm(1000, 1.0)) + converter.flush()
    out = pcm_to_float(pcm, channels=1)[:, 0]
    assert abs(len(out) - STT_RATE) <= 1
    assert abs(dominant_frequency(out, STT_RATE) - 1000) <= 1
    steady = out[1600:-1600]  # away from the fades and the filter's start
    assert abs(level_dbfs(steady) - level_dbfs(tone(1000, 1.0)[4800:-4800])) < 0.3


def test_12khz_does_not_alias_into_the_16khz_output() -> None:
    """Dropping samples alone would fold 12 kHz down to 4 kHz at full level."""
    out = pcm_to_float(To16kMono().feed(stereo_pcm(12_000, 1.0)), channels=1)[:, 0]
    naive = pcm_to_float(stereo_pcm(12_000, 1.0))[::3, 0]
    assert abs(dominant_frequency(naive, STT_RATE) - 4000) <= 1  # what aliasing looks like
    assert level_dbfs(naive) > -12
    assert level_dbfs(out) < -70


def test_conversion_in_odd_pieces_equals_one_piece() -> None:
    pcm = bytes(np.random.default_rng(1).integers(0, 256, RATE * 4, dtype=np.uint8))
    whole = To16kMono().feed(pcm)
    converter = To16kMono()
    sizes = [1, 3839, 3840, 7, 10_001]
    pieces, offset, i = [], 0, 0
    while offset < len(pcm):
        pieces.append(converter.feed(pcm[offset : offset + sizes[i % len(sizes)]]))
        offset += sizes[i % len(sizes)]
        i += 1
    assert b"".join(pieces) == whole


@pytest.mark.parametrize("rate", [8000, 22_050, 44_100, 48_000])
def test_any_wav_becomes_48khz_stereo(tmp_path: Path, rate: int) -> None:
    path = tmp_path / "in.wav"
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(float_to_pcm(tone(440, 1.0, rate)))
    pcm = to_sluice_pcm(*read_wav(path))
    stereo = pcm_to_float(pcm)
    assert len(stereo) == RATE
    assert np.array_equal(stereo[:, 0], stereo[:, 1])
    assert abs(dominant_frequency(stereo[:, 0], RATE) - 440) <= 1


def test_resampling_keeps_the_signal_in_place() -> None:
    """The filter's delay is taken out: a click stays where it was."""
    click = np.zeros((22_050, 1), np.float32)
    click[11_025] = 1.0
    out = resample(click, 22_050, RATE)
    assert abs(int(np.argmax(out[:, 0])) - RATE // 2) <= 1


def test_timeline_fills_jumps_with_silence_and_drops_repeats() -> None:
    timeline = Timeline()
    frame = bytes(3840)
    start = 4_294_967_296 - 960  # the uint32 timestamp wraps during the test
    assert timeline.place(start, frame) == (0, frame)
    assert timeline.place((start + 960) % 2**32, frame) == (0, frame)
    assert timeline.place((start + 5 * 960) % 2**32, frame) == (3 * 960, frame)  # 60 ms lost
    assert timeline.place((start + 5 * 960) % 2**32, frame) == (0, b"")  # a repeat
    assert timeline.written == 6 * 960


def test_utterance_packets() -> None:
    pcm = bytes(CHUNK_BYTES * 2 + 100)
    messages = chunk_packets(pcm)
    packets = [Packet.FromString(m) for m in messages]
    assert [len(p.payload) for p in packets] == [CHUNK_BYTES, CHUNK_BYTES, 100, 0]
    assert all(len(m) <= 32_768 for m in messages)
    assert messages[-1] == b""  # the empty Packet: end of segment
    assert [p.timestamp for p in packets[:3]] == [0, CHUNK_BYTES // 4, CHUNK_BYTES // 2]


def test_meter_shows_a_line_ten_times_a_second() -> None:
    meter = Meter("call")
    block = float_to_pcm(tone(440, 0.02, STT_RATE))  # 20 ms
    lines = [line for _ in range(50) if (line := meter.update(block))]
    assert len(lines) == 10
    assert "dBFS" in lines[-1] and "#" in lines[-1]
