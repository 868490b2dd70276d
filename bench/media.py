"""Test media for the benchmarks: quiet audio with clicks, a moving video pattern.

A click is one 20 ms frame of full-scale noise in otherwise quiet audio (a -40 dBFS
tone), so the first loud 20 ms frame after it is unmistakable even after Opus. Tracks
precompute what they can: the bench process shares two cores with the adapters it
measures.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from typing import Any

import av
import numpy as np
import numpy.typing as npt
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

RATE = 48_000
FRAME = 960  # samples per channel in 20 ms
FRAME_S = FRAME / RATE
QUIET_AMPLITUDE = 300
CLICK_THRESHOLD = 8_000  # peak sample value: the quiet tone never gets near it
REFRACTORY_S = 0.2  # Opus spreads a click over two frames: one detection per click


def quiet_frame(index: int) -> npt.NDArray[np.int16]:
    """20 ms of a quiet 440 Hz tone, stereo interleaved, shape (1, 1920)."""
    t = np.arange(index * FRAME, (index + 1) * FRAME) / RATE
    mono = np.sin(2 * np.pi * 440 * t) * QUIET_AMPLITUDE
    return np.repeat(mono, 2).astype(np.int16).reshape(1, -1)


def click_frame(seed: int = 0) -> npt.NDArray[np.int16]:
    """20 ms of full-scale white noise, stereo interleaved, shape (1, 1920)."""
    rng = np.random.default_rng(seed)
    return rng.integers(-32_000, 32_000, size=(1, 2 * FRAME), dtype=np.int16)


class ClickTrack(MediaStreamTrack):
    """Quiet audio with a click every `every_frames` frames once `armed` is set.

    `click_times` holds the `time.monotonic()` at which `recv()` returned each click
    frame: the reference for latency.
    """

    kind = "audio"

    def __init__(self, every_frames: int = 25) -> None:
        super().__init__()
        self.every_frames = every_frames
        self.armed = asyncio.Event()
        self.click_times: list[float] = []
        self._quiet = [quiet_frame(i) for i in range(50)]  # 1 s loop: 440 Hz fits exactly
        self._click = click_frame()
        self._n = 0
        self._start: float | None = None
        self._since_armed = 0

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        wait = self._start + self._n * FRAME_S - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        click = False
        if self.armed.is_set():
            click = self._since_armed % self.every_frames == 0
            self._since_armed += 1
        samples = self._click if click else self._quiet[self._n % 50]
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="stereo")
        frame.sample_rate = RATE
        frame.pts = self._n * FRAME
        frame.time_base = fractions.Fraction(1, RATE)
        self._n += 1
        if click:
            self.click_times.append(time.monotonic())
        return frame


class ClickDetector:
    """Finds click onsets in a stream of s16 PCM chunks; `times` holds when each was seen."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.chunks = 0
        self.flowing = asyncio.Event()  # a second of audio has arrived

    def feed(self, pcm: bytes | npt.NDArray[np.int16], now: float) -> bool:
        self.chunks += 1
        if self.chunks == 50:
            self.flowing.set()
        samples = np.frombuffer(pcm, dtype=np.int16) if isinstance(pcm, bytes) else pcm
        if samples.size == 0 or int(np.abs(samples).max()) < CLICK_THRESHOLD:
            return False
        if self.times and now - self.times[-1] < REFRACTORY_S:
            return False
        self.times.append(now)
        return True


def match_clicks(sent: list[float], seen: list[float], max_s: float = 0.45) -> dict[int, float]:
    """Pairs each detection with the latest click sent before it: {click index: seconds}.

    Clicks are 500 ms apart and latencies far below that, so the latest earlier click is
    the one detected. A click matched twice or a detection with no click within `max_s`
    (e.g. a loss) is left out.
    """
    latencies: dict[int, float] = {}
    for t in seen:
        index = int(np.searchsorted(sent, t, side="right")) - 1
        if index < 0 or index in latencies or t - sent[index] > max_s:
            continue
        latencies[index] = t - sent[index]
    return latencies


def match_latencies(sent: list[float], seen: list[float], max_s: float = 0.45) -> list[float]:
    """The latencies of `match_clicks`, in click order."""
    return list(match_clicks(sent, seen, max_s).values())


def per_click_ms(sent: list[float], seen: list[float], max_s: float = 0.45) -> list[float | None]:
    """Latency of every click sent, in ms (None: not detected), for the raw record."""
    matched = match_clicks(sent, seen, max_s)
    return [round(matched[i] * 1000, 2) if i in matched else None for i in range(len(sent))]


class PatternVideoTrack(MediaStreamTrack):
    """A textured still background with a moving bright block, 30 fps, real time.

    Frames are precomputed in yuv420p (one second's worth, looped), so producing one
    costs a copy; the encoder still has motion to code and decoders work every frame.
    """

    kind = "video"

    def __init__(self, width: int, height: int, fps: int = 30) -> None:
        super().__init__()
        self.fps = fps
        self.size = (width, height)
        self._images = _pattern_frames(width, height, fps)
        self._n = 0
        self._start: float | None = None

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        wait = self._start + self._n / self.fps - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        frame = av.VideoFrame.from_ndarray(self._images[self._n % self.fps], format="yuv420p")
        frame.pts = self._n * (90_000 // self.fps)
        frame.time_base = fractions.Fraction(1, 90_000)
        self._n += 1
        return frame


def _pattern_frames(width: int, height: int, count: int) -> list[npt.NDArray[np.uint8]]:
    rng = np.random.default_rng(1)
    y, x = np.mgrid[0:height, 0:width]
    luma = 96 + 64 * np.sin(x / 37.0) * np.cos(y / 23.0) + rng.normal(0, 6, (height, width))
    background = np.clip(luma, 0, 255).astype(np.uint8)
    chroma = np.full((height // 2, width), 128, dtype=np.uint8)  # U and V planes, stacked
    block = max(16, height // 6)
    frames = []
    for i in range(count):
        image = background.copy()
        left = int((width - block) * i / count)
        top = int((height - block) * (0.5 + 0.4 * np.sin(2 * np.pi * i / count)))
        image[top : top + block, left : left + block] = 235
        frames.append(np.vstack([image, chroma]))
    return frames


def opus_tone_packets(seconds: int = 1) -> list[bytes]:
    """`seconds` of a 440 Hz tone at about -12 dBFS encoded once as 20 ms Opus packets.

    The sine fits a second exactly, so the packets loop without a seam.
    """
    codec = av.CodecContext.create("libopus", "w")
    codec.sample_rate = RATE
    codec.layout = "stereo"
    codec.format = av.AudioFormat("s16")
    codec.bit_rate = 64_000
    t = np.arange(RATE * seconds) / RATE
    mono = (np.sin(2 * np.pi * 440 * t) * 8_000).astype(np.int16)
    stereo = np.repeat(mono, 2).reshape(1, -1)
    packets: list[bytes] = []
    for i in range(0, stereo.shape[1], 2 * FRAME):
        frame = av.AudioFrame.from_ndarray(
            stereo[:, i : i + 2 * FRAME], format="s16", layout="stereo"
        )
        frame.sample_rate = RATE
        frame.pts = i // 2
        frame.time_base = fractions.Fraction(1, RATE)
        packets += [bytes(p) for p in codec.encode(frame)]
    packets += [bytes(p) for p in codec.encode(None)]
    return packets[: 50 * seconds]


class OpusReplayTrack(MediaStreamTrack):
    """Pre-encoded Opus packets replayed in real time: publishing costs no encode.

    aiortc's sender packetizes an `av.Packet` it gets from `recv()` as is.
    """

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._packets = opus_tone_packets()
        self._n = 0
        self._start: float | None = None

    async def recv(self) -> av.Packet[Any]:
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        wait = self._start + self._n * FRAME_S - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        packet = av.Packet(self._packets[self._n % len(self._packets)])
        packet.pts = self._n * FRAME
        packet.time_base = fractions.Fraction(1, RATE)
        self._n += 1
        return packet
