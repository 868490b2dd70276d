"""Egress audio: Opus decoded at the adapter's rate and channels, then cut into Packets.

The chain a real adapter runs: a 48 kHz stereo source encoded by libopus (as a browser
does), decoded by `OpusPcmDecoder` to the asked channels (libopus mixes) at
`decode_rate`, then `AudioConverter` (soxr, μ-law, `frameMs` Packets, timestamps).
"""

from __future__ import annotations

import fractions
import functools
import itertools
from collections.abc import Iterator

import av
import numpy as np
import numpy.typing as npt
import pytest

from worker.pipelines.opus_pcm import OpusPcmDecoder
from worker.protocol.audio_format import AudioConverter, AudioFormat, decode_rate
from worker.protocol.g711 import mulaw_decode

RATE = 48_000
OPUS_FRAME = 960  # 20 ms at 48 kHz
AMPLITUDE = 12_000


@functools.cache
def opus_packets(left_hz: float, right_hz: float, seconds: float) -> tuple[bytes, ...]:
    """A stereo tone as 20 ms Opus packets, from libopus at a browser's music bitrate."""
    codec = av.CodecContext.create("libopus", "w")
    codec.bit_rate, codec.format, codec.layout = 128_000, "s16", "stereo"
    codec.sample_rate, codec.time_base = RATE, fractions.Fraction(1, RATE)
    t = np.arange(int(seconds * RATE)) / RATE
    stereo = (
        np.column_stack([np.sin(2 * np.pi * left_hz * t), np.sin(2 * np.pi * right_hz * t)])
        * AMPLITUDE
    )
    pcm = stereo.round().astype(np.int16)
    out: list[bytes] = []
    for i in range(len(pcm) // OPUS_FRAME):
        chunk = pcm[i * OPUS_FRAME : (i + 1) * OPUS_FRAME].reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout="stereo")
        frame.sample_rate, frame.pts = RATE, i * OPUS_FRAME
        out += [bytes(p) for p in codec.encode(frame)]
    return tuple(out)


def decoded(fmt: AudioFormat, packets: tuple[bytes, ...]) -> Iterator[tuple[bytes, int]]:
    """(pcm, RTP timestamp) per packet, decoded as the pipeline decodes them."""
    decoder = OpusPcmDecoder(decode_rate(fmt), fmt.channels)
    for i, packet in enumerate(packets):
        (pcm,) = decoder.decode(packet)
        yield pcm, 1000 + i * OPUS_FRAME


def convert(fmt: AudioFormat, chunks: Iterator[tuple[bytes, int]]) -> list[tuple[int, bytes]]:
    converter = AudioConverter(fmt)
    return [packet for pcm, rtp in chunks for packet in converter.feed(pcm, rtp)]


def through_opus(
    fmt: AudioFormat, left_hz: float, right_hz: float, seconds: float
) -> list[tuple[int, bytes]]:
    return convert(fmt, decoded(fmt, opus_packets(left_hz, right_hz, seconds)))


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


# --- the decoder chain: rate, channels, band limit --------------------------------------


def test_48k_stereo_to_16k_mono_keeps_both_tones_at_half_level() -> None:
    fmt = AudioFormat("pcm", 16_000, 1, 20)
    mono = samples(fmt, through_opus(fmt, 440, 660, 2.0))[1600:, 0]
    # The mean of left and right: each tone at half its amplitude (Opus is lossy: 5 %).
    assert level_at(mono, 16_000, 440, 660) == pytest.approx(AMPLITUDE / 2, rel=0.05)
    assert level_at(mono, 16_000, 660, 440) == pytest.approx(AMPLITUDE / 2, rel=0.05)
    assert len(mono) + 1600 == pytest.approx(2.0 * 16_000, abs=fmt.frame_samples * 4)


@pytest.mark.parametrize(("rate", "codec"), [(8000, "pcm"), (16_000, "pcm"), (24_000, "mulaw")])
def test_a_tone_below_045_of_the_rate_keeps_its_frequency_and_level(rate: int, codec: str) -> None:
    fmt = AudioFormat(codec, rate, 1, 20)  # type: ignore[arg-type]
    hz = 0.45 * rate - 37  # just below the edge, off any bin
    mono = samples(fmt, through_opus(fmt, hz, hz, 2.0))[rate // 10 :, 0]
    assert peak_frequency(mono, rate) == pytest.approx(hz, rel=0.01)
    assert db(level_at(mono, rate, hz) / AMPLITUDE) > -1.0


@pytest.mark.parametrize("rate", [8000, 16_000, 24_000])
@pytest.mark.parametrize("above", [1.05, 1.3, 1.8])
def test_a_tone_above_the_new_nyquist_is_40_db_down(rate: int, above: float) -> None:
    fmt = AudioFormat("pcm", rate, 1, 20)
    hz = min(rate / 2 * above, 20_000)
    mono = samples(fmt, through_opus(fmt, hz, hz, 2.0))[rate // 10 :, 0]
    # Whatever is left, wherever it folded to.
    rms = float(np.sqrt(np.mean(mono**2)))
    assert db(rms * np.sqrt(2) / AMPLITUDE) < -40


def test_stereo_output_keeps_the_channels_apart() -> None:
    fmt = AudioFormat("pcm", 24_000, 2, 20)
    out = samples(fmt, through_opus(fmt, 440, 660, 1.0))[2400:]
    assert peak_frequency(out[:, 0], 24_000) == pytest.approx(440, abs=2)
    assert peak_frequency(out[:, 1], 24_000) == pytest.approx(660, abs=2)


def test_frame_edges_make_no_clicks() -> None:
    """Decoder and resampler keep their state across frames: a sine stays a sine."""
    fmt = AudioFormat("pcm", 16_000, 1, 20)
    steady = samples(fmt, through_opus(fmt, 1000, 1000, 1.0))[800:, 0]
    # A 1 kHz sine at 16 kHz moves at most 2 pi 1000 / 16000 x A per sample (+ codec noise).
    assert np.abs(np.diff(steady)).max() <= AMPLITUDE * 2 * np.pi * 1000 / 16_000 * 1.1


def test_48k_mono_is_the_mean_of_the_channels() -> None:
    fmt = AudioFormat("pcm", 48_000, 1, 20)
    mono = samples(fmt, through_opus(fmt, 440, 440, 1.0))[4800:, 0]
    assert level_at(mono, 48_000, 440) == pytest.approx(AMPLITUDE, rel=0.05)


def pcm_at(fmt: AudioFormat, hz: float, seconds: float) -> npt.NDArray[np.int16]:
    """A tone at the decoder's rate and the format's channels, as the decoder gives it."""
    rate = decode_rate(fmt)
    t = np.arange(int(seconds * rate)) / rate
    tone = (np.sin(2 * np.pi * hz * t) * AMPLITUDE).round().astype(np.int16)
    return np.repeat(tone.reshape(-1, 1), fmt.channels, axis=1)


def chunks_of(
    fmt: AudioFormat, pcm: npt.NDArray[np.int16], frame_48k: int = OPUS_FRAME
) -> Iterator[tuple[bytes, int]]:
    """`pcm` in Opus-frame chunks with their RTP timestamps (48 kHz units)."""
    step = frame_48k * decode_rate(fmt) // RATE
    for i, start in enumerate(range(0, len(pcm), step)):
        yield pcm[start : start + step].tobytes(), i * frame_48k


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
    packets = convert(fmt, chunks_of(fmt, pcm_at(fmt, 440, 2.0)))
    step = rate * frame_ms // 1000
    assert fmt.frame_bytes == step * channels * width
    assert {len(p) for _, p in packets} == {fmt.frame_bytes}
    assert [t for t, _ in packets] == [i * step for i in range(len(packets))]
    # Two seconds in, two seconds out, less what the resampler still holds.
    assert 2000 // frame_ms - 2 - 80 // frame_ms <= len(packets) <= 2000 // frame_ms


def test_16k_mono_100ms_is_3200_bytes_plus_1600_per_packet() -> None:
    fmt = AudioFormat("pcm", 16_000, 1, 100)
    packets = convert(fmt, chunks_of(fmt, pcm_at(fmt, 440, 1.0)))
    assert {len(p) for _, p in packets} == {3200}
    assert {b[0] - a[0] for a, b in itertools.pairwise(packets)} == {1600}


def test_mulaw_default_is_160_bytes_per_20_ms() -> None:
    fmt = AudioFormat.from_options("mulaw", {})
    assert (fmt.sample_rate, fmt.channels, fmt.frame_ms, fmt.frame_bytes) == (8000, 1, 20, 160)
    mono = samples(fmt, through_opus(fmt, 440, 440, 1.0))[800:, 0]
    assert peak_frequency(mono, 8000) == pytest.approx(440, abs=2)
    assert level_at(mono, 8000, 440) == pytest.approx(AMPLITUDE, rel=0.05)  # Opus, μ-law


def test_odd_opus_frame_sizes_still_give_whole_packets() -> None:
    fmt = AudioFormat("pcm", 16_000, 1, 20)
    converter = AudioConverter(fmt)
    tone = pcm_at(fmt, 440, 1.0)
    packets, rtp, start = [], 0, 0
    for size in itertools.cycle([480, 960, 2880, 1920]):  # 10, 20, 60, 40 ms Opus frames
        out = size // 2  # decoded at 24 kHz
        if start + out > len(tone):
            break
        packets += converter.feed(tone[start : start + out].tobytes(), rtp)
        start, rtp = start + out, rtp + size
    assert {len(p) for _, p in packets} == {640}
    assert [t for t, _ in packets] == [320 * i for i in range(len(packets))]


def test_a_source_gap_moves_the_timestamps_from_the_next_whole_packet() -> None:
    fmt = AudioFormat("pcm", 16_000, 1, 20)
    converter = AudioConverter(fmt)
    frame = pcm_at(fmt, 440, 0.02).tobytes()
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
    fmt = AudioFormat("pcm", 16_000, 1, 20)
    converter = AudioConverter(fmt)
    frame = pcm_at(fmt, 440, 0.02).tobytes()
    packets = []
    for rtp in [0, 960, 960, 1920, 960, 2880] + [960 * i for i in range(4, 40)]:
        packets += converter.feed(frame, rtp)
    stamps = [t for t, _ in packets]
    assert stamps == [320 * i for i in range(len(stamps))]


def test_rtp_wraparound_is_no_gap() -> None:
    fmt = AudioFormat("mulaw", 8000, 1, 20)
    converter = AudioConverter(fmt)
    frame = pcm_at(fmt, 440, 0.02).tobytes()
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
