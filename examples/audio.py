"""Audio helpers for the examples: WAV in (stdlib `wave`), resampling (soxr), tones, checks.

Sluice's PCM is signed 16-bit little-endian, 48 kHz, two channels interleaved (L, R).
Here audio is a float32 array of shape (samples, channels) in [-1, 1] unless said otherwise.
`Resampler` streams through soxr, a well-kept band-limited resampler.
`Timeline` places egress Packets by their timestamps (no asyncio, no I/O).
"""

from __future__ import annotations

import math
import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt
import soxr

RATE = 48_000
CHANNELS = 2
FRAME_SAMPLES = 960  # 20 ms at 48 kHz: one egress Packet
BYTES_PER_FRAME = 4  # one stereo s16le sample pair

Audio = npt.NDArray[np.float32]


def pcm_to_float(pcm: bytes, channels: int = CHANNELS) -> Audio:
    """s16le interleaved → (samples, channels) float32; a trailing partial sample is cut."""
    usable = len(pcm) - len(pcm) % (2 * channels)
    ints = np.frombuffer(pcm[:usable], dtype="<i2").reshape(-1, channels)
    return (ints.astype(np.float32) / 32768.0).astype(np.float32)


def float_to_pcm(audio: npt.NDArray[np.floating]) -> bytes:
    """(samples, channels) float → s16le interleaved, clipped."""
    scaled = np.clip(np.round(np.asarray(audio) * 32768.0), -32768, 32767)
    return scaled.astype("<i2").tobytes()


def read_wav(path: Path) -> tuple[Audio, int]:
    """A PCM WAV file (8, 16, 24 or 32-bit integer samples) as float and its rate.

    Raises:
        ValueError: not a WAV file of integer PCM (`wave` raises `wave.Error`, a subclass).
    """
    with wave.open(str(path), "rb") as wav:
        rate, channels, width = wav.getframerate(), wav.getnchannels(), wav.getsampwidth()
        raw = wav.readframes(wav.getnframes())
    if width == 1:  # 8-bit WAV is unsigned
        ints = np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0
    elif width == 3:  # no numpy dtype: widen each little-endian 24-bit sample to 32 bits
        padded = np.zeros((len(raw) // 3, 4), dtype=np.uint8)
        padded[:, 1:] = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3)
        ints = padded.view("<i4").reshape(-1).astype(np.float32) / 256.0
    elif width in (2, 4):
        ints = np.frombuffer(raw, dtype=f"<i{width}").astype(np.float32)
    else:
        raise ValueError(f"{path}: unsupported sample width {width}")
    full_scale = float(1 << (8 * min(width, 3) - 1)) if width != 4 else float(1 << 31)
    return (ints / full_scale).reshape(-1, channels).astype(np.float32), rate


def to_stereo(audio: Audio) -> Audio:
    """Mono is duplicated; more than two channels keep the first two (front L, R)."""
    if audio.shape[1] == 1:
        return np.repeat(audio, 2, axis=1)
    return audio[:, :2]


def to_sluice_pcm(audio: Audio, rate: int) -> bytes:
    """Any rate and layout → what an ingest adapter takes: 48 kHz stereo s16le."""
    return float_to_pcm(resample(to_stereo(audio), rate, RATE))


def tone(freq_hz: float, seconds: float, rate: int = RATE, level: float = 0.4) -> Audio:
    """A mono sine, with 5 ms fades so it starts and stops without clicks."""
    t = np.arange(int(seconds * rate)) / rate
    signal = level * np.sin(2 * np.pi * freq_hz * t)
    fade = min(len(t) // 2, int(0.005 * rate))
    if fade:
        ramp = np.linspace(0.0, 1.0, fade)
        signal[:fade] *= ramp
        signal[-fade:] *= ramp[::-1]
    return signal.astype(np.float32).reshape(-1, 1)


def mulaw_encode(samples: npt.NDArray[np.int16]) -> bytes:
    """s16 samples as G.711 μ-law bytes, one per sample (the classic encoder, as in Sun's
    g711.c: bias 0x84, clipped at 32 635), what telephony endpoints send."""
    x = samples.astype(np.int32)
    sign = np.where(x < 0, 0x80, 0)
    magnitude = np.minimum(np.abs(x), 32_635) + 0x84
    exponent = np.clip(np.floor(np.log2(magnitude)).astype(np.int32) - 7, 0, 7)
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    codes: npt.NDArray[np.uint8] = (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8)
    return codes.tobytes()


def write_wav(path: Path, audio: Audio, rate: int) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(audio.shape[1])
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(float_to_pcm(audio))


def level_dbfs(samples: npt.NDArray[np.floating]) -> float:
    """RMS level in dB relative to full scale; -120 for silence."""
    if samples.size == 0:
        return -120.0
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    return max(-120.0, 20 * math.log10(rms)) if rms > 0 else -120.0


def dominant_frequency(mono: npt.NDArray[np.floating], rate: int) -> float:
    """The strongest frequency, to about rate/len Hz."""
    spectrum = np.abs(np.fft.rfft(np.asarray(mono, np.float64) * np.hanning(len(mono))))
    return float(np.fft.rfftfreq(len(mono), 1 / rate)[int(np.argmax(spectrum))])


def sound_span(
    mono: npt.NDArray[np.floating], rate: int, threshold_dbfs: float = -40.0
) -> tuple[float, float] | None:
    """Start and end (seconds) of the first and last loud 20 ms block; None if all silent."""
    block = rate // 50
    blocks = len(mono) // block
    if blocks == 0:
        return None
    chunks = np.asarray(mono[: blocks * block], np.float64).reshape(blocks, block)
    rms = np.sqrt(np.mean(np.square(chunks), axis=1))
    loud = np.flatnonzero(rms > 10 ** (threshold_dbfs / 20))
    if len(loud) == 0:
        return None
    return float(loud[0] * block / rate), float((loud[-1] + 1) * block / rate)


class Resampler:
    """Streaming resampling: feed blocks of any size, get what is ready.

    soxr's band-limited resampler keeps its filter state across blocks, so block edges
    make no clicks and going down (48 kHz to 16 kHz) folds nothing above the new Nyquist
    frequency back in.

    Args:
        rate_in: input sample rate in Hz.
        rate_out: output sample rate in Hz.
        channels: channels per sample.
    """

    def __init__(self, rate_in: int, rate_out: int, channels: int = 1) -> None:
        self._stream = soxr.ResampleStream(rate_in, rate_out, channels, dtype="float32")
        self._channels = channels

    def process(self, block: Audio) -> Audio:
        """Takes (samples, channels) input, returns every output sample now computable."""
        samples = np.ascontiguousarray(block, dtype=np.float32)
        out: Audio = self._stream.resample_chunk(samples)
        return out.reshape(-1, samples.shape[1])

    def flush(self) -> Audio:
        """The output soxr still holds back (its filter's delay): the stream's end."""
        out: Audio = self._stream.resample_chunk(
            np.zeros((0, self._channels), np.float32), last=True
        )
        return out.reshape(-1, self._channels)


def resample(audio: Audio, rate_in: int, rate_out: int) -> Audio:
    """A whole signal at another rate, same length in seconds, filter delay removed."""
    if rate_in == rate_out:
        return audio
    out = soxr.resample(np.ascontiguousarray(audio, dtype=np.float32), rate_in, rate_out)
    return np.asarray(out, dtype=np.float32).reshape(-1, audio.shape[1])


class Timeline:
    """Where egress audio goes in a recording, so that it keeps wall time.

    `timestamp` counts 48 kHz samples from the adapter's first Packet and keeps counting
    across reconnects, so a jump (a gap in the source, or audio the adapter had to drop)
    becomes that much silence, and audio already written (a repeat) is dropped.
    """

    def __init__(self) -> None:
        self._first: int | None = None
        self._last = 0  # the previous timestamp, as sent (uint32)
        self._position = 0  # the previous timestamp, unwrapped, relative to the first
        self.written = 0  # sample frames written so far

    def place(self, timestamp: int, payload: bytes) -> tuple[int, bytes]:
        """Returns (silent sample frames to write first, the part of `payload` to write)."""
        if self._first is None:
            self._first = self._last = timestamp
        step = (timestamp - self._last) % (1 << 32)
        if step >= 1 << 31:  # an older timestamp, not a 24-hour jump forward
            step -= 1 << 32
        self._last = timestamp
        self._position += step
        frames = len(payload) // BYTES_PER_FRAME
        overlap = max(0, self.written - self._position)
        if overlap >= frames:
            return 0, b""
        silence = max(0, self._position - self.written)
        kept = payload[overlap * BYTES_PER_FRAME : frames * BYTES_PER_FRAME]
        self.written += silence + len(kept) // BYTES_PER_FRAME
        return silence, kept
