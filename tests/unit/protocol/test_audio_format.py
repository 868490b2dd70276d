"""Egress audio conversion: decoded 48 kHz stereo in, Packets of the asked format out."""

from __future__ import annotations

import itertools

import numpy as np
import numpy.typing as npt
import pytest

from worker.protocol.audio_format import AudioConverter, AudioFormat
from worker.protocol.g711 import mulaw_decode

RATE = 48_000
OPUS_FRAME = 960  # 20 ms at 48 kHz


def stereo_tone(
    left_hz: float, right_hz: float, seconds: float, amplitude: float = 12_000
) -> npt.NDArray[np.int16]:
    t = np.arange(int(seconds * RATE)) / RATE
    left = np.sin(2 * np.pi * left_hz * t) * amplitude
    right = np.sin(2 * np.pi * right_hz * t) * amplitude
    return np.column_stack([left, right]).round().astype(np.int16)


def convert(
    fmt: AudioFormat, stereo: npt.NDArray[np.int16], chunk: int = OPUS_FRAME
) -> list[tuple[int, bytes]]:
    converter = AudioConverter(fmt)
    packets = []
    for start in range(0, len(stereo), chunk):
        packets += converter.feed(stereo[start : start + chunk].tobytes(), 1000 + start)
    return packets


def samples(fmt: AudioFormat, packets: list[tuple[int, bytes]]) -> npt.NDArray[np.float64]:
    payload = b"".join(p for _, p in packets)
    raw = mulaw_decode(payload) if fmt.codec == "mulaw" else np.frombuffer(payload, "<i2")
    return raw.astype(np.float64).reshape(-1, fmt.channels)


def level_at(signal: npt.NDArray[np.float64], rate: int, *hz: float) -> float:
    """Peak amplitude of the first `hz` component (least squares, every `hz` fitted)."""
    t = np.arange(len(signal)) / rate
    basis = np.column_stack([f(2 * np.pi * h * t) for h in hz for f in (np.sin, np.cos)])
    coefficients = np.linalg.lstsq(basis, signal, rcond=None)[0]
    return float(np.hypot(coefficients[0], coefficients[1]))


def peak_frequency(signal: npt.NDArray[np.float64], rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(len(signal))))
    return float(np.fft.rfftfreq(len(signal), 1 / rate)[int(np.argmax(spectrum))])


def db(ratio: float) -> float:
    return 20 * np.log10(max(ratio, 1e-12))


# --- the resampler chain --------------------------------------------------------------


def test_48k_stereo_to_16k_mono_keeps_both_tones_at_half_level() -> None:
    fmt = AudioFormat("pcm", 16_000, 1, 20)
    mono = samples(fmt, convert(fmt, stereo_tone(440, 660, 2.0)))[:, 0]
    steady = mono[1600:]  # past the resampler's start
    # The mean of left and right: each tone at half its 12 000 amplitude.
    assert level_at(steady, 16_000, 440, 660) == pytest.approx(6000, rel=0.01)
    assert level_at(steady, 16_000, 660, 440) == pytest.approx(6000, rel=0.01)
    assert len(mono) == pytest.approx(2.0 * 16_000, abs=fmt.frame_samples * 4)


@pytest.mark.parametrize(("rate", "codec"), [(8000, "pcm"), (16_000, "pcm"), (24_000, "mulaw")])
def test_a_tone_below_045_of_the_rate_keeps_its_frequency_and_level(rate: int, codec: str) -> None:
    fmt = AudioFormat(codec, rate, 1, 20)  # type: ignore[arg-type]
    hz = 0.45 * rate - 37  # just below the edge, off any bin
    mono = samples(fmt, convert(fmt, stereo_tone(hz, hz, 2.0)))[rate // 10 :, 0]
    assert peak_frequency(mono, rate) == pytest.approx(hz, rel=0.01)
    assert db(level_at(mono, rate, hz) / 12_000) > -1.0


@pytest.mark.parametrize("rate", [8000, 16_000, 24_000])
@pytest.mark.parametrize("above", [1.05, 1.3, 1.8])
def test_a_tone_above_the_new_nyquist_is_40_db_down(rate: int, above: float) -> None:
    fmt = AudioFormat("pcm", rate, 1, 20)
    hz = rate / 2 * above
    mono = samples(fmt, convert(fmt, stereo_tone(hz, hz, 2.0)))[rate // 10 :, 0]
    # Whatever is left, wherever it folded to.
    rms = float(np.sqrt(np.mean(mono**2)))
    assert db(rms * np.sqrt(2) / 12_000) < -40


def test_stereo_output_keeps_the_channels_apart() -> None:
    fmt = AudioFormat("pcm", 24_000, 2, 20)
    out = samples(fmt, convert(fmt, stereo_tone(440, 660, 1.0)))[2400:]
    assert peak_frequency(out[:, 0], 24_000) == pytest.approx(440, abs=2)
    assert peak_frequency(out[:, 1], 24_000) == pytest.approx(660, abs=2)


def test_frame_edges_make_no_clicks() -> None:
    """One resampler for the stream: the same output whatever the input's chunking."""
    fmt = AudioFormat("pcm", 16_000, 1, 20)
    tone = stereo_tone(1000, 1000, 1.0)
    in_frames = samples(fmt, convert(fmt, tone))[:, 0]
    odd_chunks = samples(fmt, convert(fmt, tone, chunk=331))[:, 0]
    common = min(len(in_frames), len(odd_chunks))
    assert np.abs(in_frames[:common] - odd_chunks[:common]).max() <= 2  # dither only
    # And a 1 kHz sine at 16 kHz moves at most 2 pi 1000 / 16000 x A per sample.
    steady = in_frames[800:]
    assert np.abs(np.diff(steady)).max() <= 12_000 * 2 * np.pi * 1000 / 16_000 * 1.02


def test_48k_mono_is_the_mean_without_a_resampler() -> None:
    fmt = AudioFormat("pcm", 48_000, 1, 20)
    stereo = np.array([[100, 300], [-5, 6], [32767, 32767], [-32768, -32767]] * 240, np.int16)
    converter = AudioConverter(fmt)
    assert converter._resampler is None
    ((_, payload),) = converter.feed(stereo.tobytes(), 0)
    mono = np.frombuffer(payload, "<i2")
    assert list(mono[:4]) == [200, 0, 32767, -32768]  # 0.5 and -32767.5 round down


# --- formats, framing and timestamps ---------------------------------------------------


@pytest.mark.parametrize("frame_ms", [20, 40, 60, 100])
@pytest.mark.parametrize(
    ("codec", "rate", "channels", "width"),
    [
        ("pcm", 16_000, 1, 2),
        ("pcm", 48_000, 2, 2),
        ("mulaw", 8000, 1, 1),
        ("pcm", 24_000, 2, 2),
        ("mulaw", 48_000, 2, 1),
    ],
)
def test_packets_are_frame_ms_long_and_stamped_in_output_samples(
    frame_ms: int, codec: str, rate: int, channels: int, width: int
) -> None:
    fmt = AudioFormat(codec, rate, channels, frame_ms)  # type: ignore[arg-type]
    packets = convert(fmt, stereo_tone(440, 660, 2.0))
    step = rate * frame_ms // 1000
    assert fmt.frame_bytes == step * channels * width
    assert {len(p) for _, p in packets} == {fmt.frame_bytes}
    assert [t for t, _ in packets] == [i * step for i in range(len(packets))]
    # Two seconds in, two seconds out, less what the resampler still holds.
    assert 2000 // frame_ms - 2 - 80 // frame_ms <= len(packets) <= 2000 // frame_ms


def test_16k_mono_100ms_is_3200_bytes_plus_1600_per_packet() -> None:
    fmt = AudioFormat("pcm", 16_000, 1, 100)
    packets = convert(fmt, stereo_tone(440, 660, 1.0))
    assert {len(p) for _, p in packets} == {3200}
    assert {b[0] - a[0] for a, b in itertools.pairwise(packets)} == {1600}


def test_mulaw_default_is_160_bytes_per_20_ms() -> None:
    fmt = AudioFormat.from_options("mulaw", {})
    assert (fmt.sample_rate, fmt.channels, fmt.frame_ms, fmt.frame_bytes) == (8000, 1, 20, 160)
    mono = samples(fmt, convert(fmt, stereo_tone(440, 440, 1.0)))[800:, 0]
    assert peak_frequency(mono, 8000) == pytest.approx(440, abs=2)
    assert level_at(mono, 8000, 440) == pytest.approx(12_000, rel=0.02)  # μ-law steps


def test_odd_opus_frame_sizes_still_give_whole_packets() -> None:
    fmt = AudioFormat("pcm", 16_000, 1, 20)
    converter = AudioConverter(fmt)
    tone = stereo_tone(440, 440, 1.0)
    packets, rtp, start = [], 0, 0
    for size in itertools.cycle([480, 960, 2880, 1920]):  # 10, 20, 60, 40 ms Opus frames
        if start + size > len(tone):
            break
        packets += converter.feed(tone[start : start + size].tobytes(), rtp)
        start, rtp = start + size, rtp + size
    assert {len(p) for _, p in packets} == {640}
    assert [t for t, _ in packets] == [320 * i for i in range(len(packets))]


def test_a_source_gap_moves_the_timestamps_from_the_next_whole_packet() -> None:
    fmt = AudioFormat("pcm", 16_000, 1, 20)
    converter = AudioConverter(fmt)
    frame = stereo_tone(440, 440, 0.02).tobytes()
    packets = []
    for i in range(50):
        packets += converter.feed(frame, i * OPUS_FRAME)
    before = len(packets)
    # 10 frames (200 ms) missing at the source, then the stream goes on.
    for i in range(60, 110):
        packets += converter.feed(frame, i * OPUS_FRAME)
    stamps = [t for t, _ in packets]
    steps = [b - a for a, b in itertools.pairwise(stamps)]
    assert sorted(set(steps)) == [320, 320 + 3200]  # one jump of 200 ms at 16 kHz
    assert steps.count(320 + 3200) == 1
    jump_at = steps.index(320 + 3200) + 1
    # The jump is where the audio after the gap starts: the resampler still held what
    # came before it, so it shows a Packet or two later than the feed.
    assert before <= jump_at <= before + 3
    assert stamps[-1] == 320 * (len(stamps) - 1) + 3200


def test_repeated_or_reordered_source_timestamps_make_no_jump() -> None:
    converter = AudioConverter(AudioFormat("pcm", 16_000, 1, 20))
    frame = stereo_tone(440, 440, 0.02).tobytes()
    packets = []
    for rtp in [0, 960, 960, 1920, 960, 2880] + [960 * i for i in range(4, 40)]:
        packets += converter.feed(frame, rtp)
    stamps = [t for t, _ in packets]
    assert stamps == [320 * i for i in range(len(stamps))]


def test_rtp_wraparound_is_no_gap() -> None:
    converter = AudioConverter(AudioFormat("mulaw", 8000, 1, 20))
    frame = stereo_tone(440, 440, 0.02).tobytes()
    packets = []
    for i in range(30):
        packets += converter.feed(frame, (2**32 - 5 * OPUS_FRAME + i * OPUS_FRAME) % 2**32)
    assert [t for t, _ in packets] == [160 * i for i in range(len(packets))]


def test_the_wire_default_is_recognised() -> None:
    assert AudioFormat.from_options("pcm", {}).is_wire_default
    explicit = {"sampleRate": 48_000, "channels": 2, "frameMs": 20}
    assert AudioFormat.from_options("pcm", explicit).is_wire_default
    assert not AudioFormat.from_options("pcm", {"frameMs": 40}).is_wire_default
    assert not AudioFormat.from_options("pcm", {"channels": 1}).is_wire_default
    mulaw_48k_stereo = {"sampleRate": 48_000, "channels": 2}
    assert not AudioFormat.from_options("mulaw", mulaw_48k_stereo).is_wire_default
    with pytest.raises(ValueError):
        AudioFormat.from_options("opus", {})
