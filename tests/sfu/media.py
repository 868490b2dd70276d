"""Media sources and checks for SFU tests: a tone, a solid colour, pre-encoded packets."""

from __future__ import annotations

import asyncio
import fractions
import time
from collections.abc import Sequence

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

SAMPLE_RATE = 48_000
SAMPLES = 960  # 20 ms
VIDEO_CLOCK = 90_000
FPS = 30


class PacedTrack(MediaStreamTrack):  # type: ignore[misc]
    """A live test source whose item `_n` is due at start + `_n` / rate, in real time.

    Subclasses advance `_n` (by samples or frames) and call `_wait_turn` first in `recv`.
    """

    def __init__(self) -> None:
        super().__init__()
        self._n = 0
        self._start: float | None = None

    async def _wait_turn(self, rate: float) -> None:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        wait = self._start + self._n / rate - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)


class ToneTrack(PacedTrack):
    """A continuous stereo sine at `freq_hz`, paced in real time."""

    kind = "audio"

    def __init__(self, freq_hz: float) -> None:
        super().__init__()
        self.freq_hz = freq_hz

    async def recv(self) -> av.AudioFrame:
        await self._wait_turn(SAMPLE_RATE)
        t = (np.arange(self._n, self._n + SAMPLES) / SAMPLE_RATE).astype(np.float64)
        mono = (np.sin(2 * np.pi * self.freq_hz * t) * 12_000).astype(np.int16)
        stereo = np.repeat(mono, 2).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(stereo, format="s16", layout="stereo")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self._n
        frame.time_base = fractions.Fraction(1, SAMPLE_RATE)
        self._n += SAMPLES
        return frame


class ColourTrack(PacedTrack):
    """Solid-colour frames (RGB) at 30 fps."""

    kind = "video"

    def __init__(self, rgb: tuple[int, int, int], size: tuple[int, int] = (320, 240)) -> None:
        super().__init__()
        w, h = size
        img = np.zeros((h, w, 3), dtype=np.uint8)
        img[:, :] = rgb
        self._image = img

    async def recv(self) -> av.VideoFrame:
        await self._wait_turn(FPS)
        frame = av.VideoFrame.from_ndarray(self._image, format="rgb24")
        frame.pts = self._n * (VIDEO_CLOCK // FPS)
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        self._n += 1
        return frame


class PacketLoopTrack(PacedTrack):
    """Replays pre-encoded packets in a loop, paced; the sender only packetizes them."""

    def __init__(self, kind: str, payloads: Sequence[bytes], step: int, clock: int) -> None:
        super().__init__()
        self.kind = kind
        self._payloads = list(payloads)
        self._step = step
        self._clock = clock

    async def recv(self) -> av.Packet:
        await self._wait_turn(self._clock / self._step)
        packet = av.Packet(self._payloads[self._n % len(self._payloads)])
        packet.pts = self._n * self._step
        packet.time_base = fractions.Fraction(1, self._clock)
        self._n += 1
        return packet


def encode_opus_tone(freq_hz: float, frames: int) -> list[bytes]:
    """`frames` Opus packets of 20 ms of a stereo tone."""
    codec = av.CodecContext.create("libopus", "w")
    codec.sample_rate = SAMPLE_RATE
    codec.layout = "stereo"
    codec.format = "s16"
    codec.bit_rate = 64_000
    codec.time_base = fractions.Fraction(1, SAMPLE_RATE)
    out: list[bytes] = []
    n = 0
    while len(out) < frames:
        t = np.arange(n, n + SAMPLES) / SAMPLE_RATE
        mono = (np.sin(2 * np.pi * freq_hz * t) * 12_000).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(
            np.repeat(mono, 2).reshape(1, -1), format="s16", layout="stereo"
        )
        frame.sample_rate = SAMPLE_RATE
        frame.pts = n
        n += SAMPLES
        out += [bytes(p) for p in codec.encode(frame)]
    return out[:frames]


def encode_vp8_colour(rgb: tuple[int, int, int], frames: int, gop: int) -> list[bytes]:
    """`frames` VP8 frames of a solid colour, a keyframe every `gop` frames."""
    codec = av.CodecContext.create("libvpx", "w")
    codec.width, codec.height = 320, 240
    codec.pix_fmt = "yuv420p"
    codec.time_base = fractions.Fraction(1, FPS)
    codec.bit_rate = 300_000
    codec.gop_size = gop
    codec.options = {"deadline": "realtime", "lag-in-frames": "0", "cpu-used": "8"}
    out: list[bytes] = []
    for i in range(frames):
        img = np.zeros((240, 320, 3), dtype=np.uint8)
        img[:, :] = rgb
        img[:16, i * 8 : i * 8 + 16] = 255  # a moving mark keeps every frame distinct
        frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
        frame.pts = i
        out += [bytes(p) for p in codec.encode(frame)]
    out += [bytes(p) for p in codec.encode(None)]
    return out[:frames]


def dominant_frequency(samples: np.ndarray, rate: int = SAMPLE_RATE) -> float:
    """The strongest frequency of a mono signal, in Hz."""
    window = samples.astype(np.float64) * np.hanning(len(samples))
    spectrum = np.abs(np.fft.rfft(window))
    spectrum[0] = 0
    return float(np.argmax(spectrum) * rate / len(samples))


async def collect_audio(track: MediaStreamTrack, seconds: float) -> np.ndarray:
    """Decoded mono (left channel) samples received for `seconds` of audio."""
    chunks: list[np.ndarray] = []
    needed = int(seconds * SAMPLE_RATE)
    got = 0
    while got < needed:
        frame = await track.recv()
        data = frame.to_ndarray().reshape(-1, len(frame.layout.channels))[:, 0]
        chunks.append(data)
        got += len(data)
    return np.concatenate(chunks)


def mean_rgb(frame: av.VideoFrame) -> tuple[float, float, float]:
    arr = frame.to_ndarray(format="rgb24").reshape(-1, 3).mean(axis=0)
    return float(arr[0]), float(arr[1]), float(arr[2])


def close_to(rgb: Sequence[float], expected: Sequence[int], tolerance: float = 40) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(rgb, expected, strict=True))
