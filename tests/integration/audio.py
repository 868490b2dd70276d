"""Making and checking test audio: tones in, frequency and duration out."""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import time
from typing import Any

import av
import numpy as np
import numpy.typing as npt
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from tests.integration.helpers import Stack
from tests.sfu.media import PacedTrack

RATE = 48_000
FRAME = 960  # samples per channel in 20 ms


def tone_pcm(freq_left: float, freq_right: float, seconds: float, amplitude: int = 12_000) -> bytes:
    """s16le stereo interleaved, 48 kHz."""
    t = np.arange(int(seconds * RATE)) / RATE
    left = np.sin(2 * np.pi * freq_left * t) * amplitude
    right = np.sin(2 * np.pi * freq_right * t) * amplitude
    return np.column_stack([left, right]).astype("<i2").tobytes()


def opus_tone_packets(seconds: float, freqs: tuple[float, float], *, fec: bool) -> list[bytes]:
    """A stereo tone as 20 ms Opus packets, with in-band FEC as a browser sends it or not."""
    codec = av.CodecContext.create("libopus", "w")
    codec.bit_rate, codec.format, codec.layout = 64_000, "s16", "stereo"
    codec.sample_rate, codec.time_base = RATE, fractions.Fraction(1, RATE)
    codec.options = {"application": "voip", "fec": "1" if fec else "0", "packet_loss": "10"}
    pcm = np.frombuffer(tone_pcm(*freqs, seconds), dtype="<i2").reshape(1, -1)
    out: list[bytes] = []
    for i in range(pcm.shape[1] // (2 * FRAME)):
        chunk = pcm[:, i * 2 * FRAME : (i + 1) * 2 * FRAME]
        frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout="stereo")
        frame.sample_rate, frame.pts = RATE, i * FRAME
        out += [bytes(p) for p in codec.encode(frame)]
    return out


def mono_tone(
    freq: float, rate: int, seconds: float, amplitude: int = 12_000
) -> npt.NDArray[np.int16]:
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * np.pi * freq * t) * amplitude).astype(np.int16)


def dominant_frequency(mono: npt.NDArray[np.float64], rate: int = RATE) -> float:
    spectrum = np.abs(np.fft.rfft(mono * np.hanning(len(mono))))
    return float(np.fft.rfftfreq(len(mono), 1 / rate)[int(np.argmax(spectrum))])


class StereoToneTrack(PacedTrack):
    """A live stereo tone (different frequencies left and right), paced in real time."""

    kind = "audio"

    def __init__(self, freq_left: float, freq_right: float) -> None:
        super().__init__()
        self.freqs = (freq_left, freq_right)

    async def recv(self) -> av.AudioFrame:
        await self._wait_turn(RATE)
        t = np.arange(self._n, self._n + FRAME) / RATE
        left, right = (np.sin(2 * np.pi * f * t) * 12_000 for f in self.freqs)
        interleaved = np.column_stack([left, right]).astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(interleaved, format="s16", layout="stereo")
        frame.sample_rate = RATE
        frame.pts = self._n
        frame.time_base = fractions.Fraction(1, RATE)
        self._n += FRAME
        return frame


def pcm_channels(payloads: list[bytes]) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    stereo = np.frombuffer(b"".join(payloads), dtype="<i2").reshape(-1, 2).astype(np.float64)
    return stereo[:, 0], stereo[:, 1]


class Recording:
    """Decoded audio of a subscribed track, with the arrival time of every frame."""

    def __init__(self) -> None:
        self.chunks: list[npt.NDArray[np.int16]] = []
        self.arrivals: list[float] = []
        self.pts: list[int] = []  # each frame's media timestamp (48 kHz RTP units)
        self.first_frame = asyncio.Event()

    async def record(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                samples = frame.to_ndarray().reshape(-1, len(frame.layout.channels))
                self.chunks.append(samples.astype(np.int16))
                self.arrivals.append(time.monotonic())
                self.pts.append(int(frame.pts or 0))
                self.first_frame.set()

    @property
    def stereo(self) -> npt.NDArray[np.int16]:
        return np.concatenate(self.chunks) if self.chunks else np.zeros((0, 2), np.int16)

    def loud_frames(self, threshold: float = 2_000) -> npt.NDArray[np.bool_]:
        """Per 20 ms block: is there sound (RMS over `threshold`)?"""
        left = self.stereo[:, 0].astype(np.float64)
        blocks = len(left) // FRAME
        rms = np.sqrt((left[: blocks * FRAME].reshape(blocks, FRAME) ** 2).mean(axis=1))
        return rms > threshold

    def sample_times(self) -> npt.NDArray[np.int64]:
        """Every recorded sample's place on the media timeline (samples at 48 kHz since
        the first frame), from the frames' RTP timestamps: a lost or late packet does not
        shift what follows it."""
        steps = np.diff(np.array(self.pts, dtype=np.int64)) % (1 << 32)  # RTP wraps
        starts = np.concatenate([[0], np.cumsum(steps)])
        return np.concatenate(
            [
                start + np.arange(len(chunk))
                for start, chunk in zip(starts, self.chunks, strict=True)
            ]
        )

    def loud_span_s(self, threshold: float = 3_000) -> tuple[float, float]:
        """Media time (s) of the first and last sample louder than `threshold`, left channel."""
        loud = np.flatnonzero(np.abs(self.stereo[:, 0].astype(np.int32)) > threshold)
        assert len(loud), "nothing loud was heard"
        times = self.sample_times()
        return times[loud[0]] / RATE, times[loud[-1]] / RATE

    def tone_span(self) -> tuple[int, int]:
        """First and last loud block (inclusive); (-1, -1) when silent throughout."""
        loud = np.flatnonzero(self.loud_frames())
        return (int(loud[0]), int(loud[-1])) if len(loud) else (-1, -1)


async def subscribe_to_ingest(
    stack: Stack, item: dict[str, Any], recording: Recording
) -> tuple[str, Any, asyncio.Task[None]]:
    """Creates the ingest adapter `item` and has `recording` tap its track from the SFU.

    Returns the adapter id, the sessions client (close it) and the recording task,
    once the track is live (silence flows).
    """
    async with stack.client() as client:
        resp = await client.post("/adapters/websocket/new", json={"tracks": [item]})
    assert resp.status_code == 200, resp.text
    track = resp.json()["tracks"][0]
    assert "adapterId" in track, track
    sessions = stack.sessions()
    remote = await sessions.pull(track["sessionId"], item["trackName"], kind="audio")
    task = asyncio.create_task(recording.record(remote))
    await asyncio.wait_for(recording.first_frame.wait(), 10)
    return track["adapterId"], sessions, task
