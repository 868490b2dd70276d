"""Ingest input formats: μ-law against G.711, resampling to 48 kHz stereo, carry-over."""

from __future__ import annotations

import itertools

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from examples.audio import mulaw_encode
from worker.protocol.ingest_format import (
    MULAW_TABLE,
    InputConverter,
    InputFormat,
    Intake,
    mulaw_decode,
)
from worker.protocol.pcm import FRAME_BYTES, SAMPLE_RATE

# --- μ-law ---------------------------------------------------------------------------

# ITU-T G.711 Table 2a (μ-law), as the standard gives it: per segment, the decision value
# where it starts and its step size on the 14-bit scale (0 to 8159). Each code's decoder
# output is the middle of its interval; the first interval of segment 0 decodes to 0.
G711_SEGMENTS = [(-1, 2), (31, 4), (95, 8), (223, 16), (479, 32), (991, 64), (2015, 128)]
G711_SEGMENTS.append((4063, 256))


def g711_reference(byte: int) -> int:
    """The decoder output G.711 gives for a transmitted μ-law byte, scaled to s16."""
    positive = bool(byte & 0x80)  # polarity bit: 1 is positive; the other 7 bits are inverted
    segment = 7 - ((byte >> 4) & 0x07)
    interval = 15 - (byte & 0x0F)
    start, step = G711_SEGMENTS[segment]
    value = 0 if segment == 0 and interval == 0 else start + step // 2 + interval * step
    return (value if positive else -value) * 4  # 14-bit → 16-bit: two zero bits below


def test_mulaw_decodes_every_byte_as_g711_says() -> None:
    expected = [g711_reference(byte) for byte in range(256)]
    assert MULAW_TABLE.tolist() == expected
    assert mulaw_decode(bytes(range(256))).tolist() == expected


def test_mulaw_landmarks() -> None:
    # 0xFF and 0x7F are the two zeros, 0x80 and 0x00 the extremes (±8031 times 4).
    assert mulaw_decode(b"\xff\x7f\x80\x00").tolist() == [0, 0, 32_124, -32_124]
    positive = MULAW_TABLE[0x80:][::-1]  # 0xFF (zero) up to 0x80 (largest)
    assert (np.diff(positive.astype(np.int32)) > 0).all()
    assert (MULAW_TABLE[:0x80] == -MULAW_TABLE[0x80:]).all()  # symmetric polarity


def test_the_examples_encoder_is_within_a_step() -> None:
    samples = np.arange(-32_000, 32_000, 3, dtype=np.int16)
    decoded = mulaw_decode(mulaw_encode(samples)).astype(np.int32)
    ranked = np.sort(MULAW_TABLE.astype(np.int32))
    step_here = np.diff(ranked)[np.clip(np.searchsorted(ranked, samples) - 1, 0, 254)]
    assert (np.abs(decoded - samples) <= step_here).all()


# --- conversion ----------------------------------------------------------------------


def tone(freq: float, rate: int, seconds: float, amplitude: float = 10_000.0) -> npt.NDArray:
    t = np.arange(int(rate * seconds)) / rate
    return np.sin(2 * np.pi * freq * t) * amplitude


def stereo(wire: bytes) -> npt.NDArray[np.float64]:
    return np.frombuffer(wire, "<i2").reshape(-1, 2).astype(np.float64)


def dominant(samples: npt.NDArray[np.float64], rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])


def rms(samples: npt.NDArray[np.float64]) -> float:
    return float(np.sqrt(np.mean(samples**2)))


def convert_all(fmt: InputFormat, data: bytes, chunk: int) -> bytes:
    converter = InputConverter(fmt)
    parts = [converter.convert(data[i : i + chunk]) for i in range(0, len(data), chunk)]
    return b"".join(parts) + converter.flush()


def test_24k_mono_becomes_48k_stereo_at_the_same_pitch_and_level() -> None:
    source = tone(440, 24_000, 2.0)
    data = source.astype("<i2").tobytes()
    out = stereo(convert_all(InputFormat("pcm", 24_000, 1), data, 4_801))
    assert len(out) == 2 * len(source)  # the duration is kept, to the sample
    assert (out[:, 0] == out[:, 1]).all()  # mono on both channels
    middle = out[24_000:72_000, 0]  # away from the stream's start and end
    assert abs(dominant(middle, SAMPLE_RATE) - 440) <= 440 * 0.01
    assert abs(20 * np.log10(rms(middle) / rms(source))) < 0.1  # level kept (± 0.1 dB)


def test_upsampling_is_band_limited_not_interpolated() -> None:
    # A 10 kHz tone at 24 kHz: its image at 14 kHz must not reach the track. Linear
    # interpolation would leave it about 10 dB down; the resampler puts it out of sight.
    out = stereo(
        convert_all(
            InputFormat("pcm", 24_000, 1), tone(10_000, 24_000, 1.0).astype("<i2").tobytes(), 960
        )
    )
    left = out[4_800:43_200, 0]
    spectrum = np.abs(np.fft.rfft(left * np.hanning(len(left))))
    freqs = np.fft.rfftfreq(len(left), 1 / SAMPLE_RATE)
    wanted = spectrum[np.abs(freqs - 10_000) < 100].max()
    image = spectrum[freqs > 12_500].max()
    assert 20 * np.log10(wanted / image) > 60


def test_8k_mulaw_mono_is_heard_at_48k_at_its_pitch() -> None:
    source = tone(1_000, 8_000, 1.0, amplitude=8_000)
    codes = mulaw_encode(source.astype(np.int16))
    out = stereo(convert_all(InputFormat("mulaw", 8_000, 1), codes, 160))
    assert len(out) == 48_000
    middle = out[12_000:36_000, 0]
    assert abs(dominant(middle, SAMPLE_RATE) - 1_000) <= 10
    assert abs(20 * np.log10(rms(middle) / rms(source))) < 0.3  # μ-law's own error included


@pytest.mark.parametrize(("rate", "channels"), [(16_000, 2), (22_050, 1), (44_100, 2)])
def test_every_rate_keeps_pitch_and_length(rate: int, channels: int) -> None:
    source = np.repeat(tone(997, rate, 1.0), channels)
    out = stereo(
        convert_all(InputFormat("pcm", rate, channels), source.astype("<i2").tobytes(), 3_333)
    )
    assert abs(len(out) - SAMPLE_RATE) <= 1
    assert abs(dominant(out[12_000:36_000, 1], SAMPLE_RATE) - 997) <= 10


def test_48k_mono_is_duplicated_exactly_and_48k_stereo_mulaw_only_decoded() -> None:
    mono = np.arange(-500, 500, dtype="<i2")
    out = stereo(convert_all(InputFormat("pcm", 48_000, 1), mono.tobytes(), 7))
    assert (out[:, 0] == mono).all() and (out[:, 1] == mono).all()
    codes = bytes(range(256))
    out = stereo(convert_all(InputFormat("mulaw", 48_000, 2), codes, 5))
    assert out.reshape(-1).tolist() == MULAW_TABLE.tolist()


@settings(max_examples=40, deadline=None)
@given(cuts=st.lists(st.integers(0, 9_600), max_size=12))
def test_any_split_of_the_stream_gives_the_same_audio(cuts: list[int]) -> None:
    """Samples split across messages are carried over and the filter state too: where the
    endpoint cuts its messages changes nothing (no click at a boundary, no lost byte)."""
    fmt = InputFormat("pcm", 24_000, 2)
    data = np.repeat(tone(523, 24_000, 0.2), 2).astype("<i2").tobytes()
    whole = convert_all(fmt, data, len(data))
    converter = InputConverter(fmt)
    bounds = [0, *sorted(cuts), len(data)]
    parts = [converter.convert(data[a:b]) for a, b in itertools.pairwise(bounds)]
    assert b"".join(parts) + converter.flush() == whole


def test_a_reset_forgets_the_held_audio() -> None:
    fmt = InputFormat("pcm", 16_000, 1)
    converter = InputConverter(fmt)
    converter.convert(tone(300, 16_000, 0.5).astype("<i2").tobytes() + b"\x01")  # + half a sample
    converter.reset()
    assert converter.flush() == b""  # nothing held any more
    fresh = tone(300, 16_000, 0.5).astype("<i2").tobytes()
    assert convert_all(fmt, fresh, len(fresh)) == converter.convert(fresh) + converter.flush()


# --- intake: conversion + reassembly -------------------------------------------------


def test_native_pcm_goes_through_untouched() -> None:
    intake = Intake(InputFormat())
    data = bytes(range(256)) * 30  # 7 680 bytes: exactly two frames
    assert intake.feed(data) == [data[:FRAME_BYTES], data[FRAME_BYTES:]]


def test_end_of_segment_plays_everything_held_padded_to_a_frame() -> None:
    intake = Intake(InputFormat("pcm", 24_000, 1))
    source = tone(440, 24_000, 0.5).astype("<i2").tobytes()  # 500 ms: 25 frames at 48 kHz
    frames = intake.feed(source)
    assert len(frames) < 25  # the resampler holds some back while more may come
    frames += intake.feed(b"")  # end of segment
    assert len(frames) == 25
    assert intake.end_segment() == []  # nothing left


def test_discard_reports_the_partial_frame_it_dropped() -> None:
    intake = Intake(InputFormat())
    assert intake.feed(bytes(FRAME_BYTES + 1_920)) == [bytes(FRAME_BYTES)]
    assert intake.discard() == pytest.approx(0.010)  # half a frame: 10 ms
    assert intake.end_segment() == []


def test_discard_counts_what_the_resampler_still_owed() -> None:
    intake = Intake(InputFormat("pcm", 24_000, 1))
    source = tone(440, 24_000, 0.5).astype("<i2").tobytes()  # 500 ms
    frames = intake.feed(source)
    assert len(frames) * 0.020 + intake.discard() == pytest.approx(0.5, abs=1e-6)
    assert intake.end_segment() == []


def test_formats_and_defaults() -> None:
    assert InputFormat.of("pcm", {}) == InputFormat("pcm", 48_000, 2)
    assert InputFormat.of("mulaw", {}) == InputFormat("mulaw", 8_000, 1)
    assert InputFormat.of("pcm", {"sampleRate": 24_000, "channels": 1}).bytes_per_s == 48_000
    assert InputFormat().native and not InputFormat("pcm", 48_000, 1).native
    with pytest.raises(ValueError, match="codec"):
        InputFormat("opus")
    with pytest.raises(ValueError, match="channels"):
        InputFormat("pcm", 48_000, 3)
