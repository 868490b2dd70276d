"""Speech for the examples' tests: espeak-ng audio, a participant who speaks on cue, and
the recogniser run on the original audio (the baseline a bridge is held to)."""

from __future__ import annotations

import asyncio
import fractions
import os
import sys
import time
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
import soxr

from sluice_endpoint.examples.espeak import Speech
from sluice_endpoint.examples.speech import SAMPLE_RATE, Listener, Recogniser, Utterance
from tests.integration.audio import FRAME, RATE
from tests.sfu.media import PacedTrack

REPO = Path(__file__).resolve().parents[2]
LOUD = 3_000  # a sample louder than this is speech, not silence


async def espeak(text: str) -> tuple[npt.NDArray[np.int16], int]:
    """`text` spoken by the examples' voice: mono samples and their rate."""
    async with Speech(text) as speech:
        pcm = b"".join([chunk async for chunk in speech.chunks()])
        return np.frombuffer(pcm, "<i2"), speech.sample_rate


def resample(mono: npt.NDArray[np.int16], rate_in: int, rate_out: int) -> npt.NDArray[np.int16]:
    return np.asarray(soxr.resample(mono, rate_in, rate_out), dtype=np.int16)


def last_loud_s(mono: npt.NDArray[np.int16], rate: int) -> float:
    """Where the speech in `mono` ends (its last loud sample), in seconds."""
    return float(np.flatnonzero(np.abs(mono.astype(np.int32)) > LOUD)[-1] / rate)


def first_loud_s(mono: npt.NDArray[np.int16], rate: int) -> float:
    return float(np.flatnonzero(np.abs(mono.astype(np.int32)) > LOUD)[0] / rate)


def transcribe(recogniser: Recogniser, mono16k: npt.NDArray[np.int16]) -> list[Utterance]:
    """What the bridge's listener makes of 16 kHz audio fed as the bridge gets it."""
    listener = Listener(recogniser)
    pcm = bytes(SAMPLE_RATE) + mono16k.tobytes() + bytes(2 * SAMPLE_RATE)  # 0.5 s, 1 s quiet
    step = SAMPLE_RATE // 5  # 100 ms, as the bridge's Packets
    heard = [e for i in range(0, len(pcm), step) for e in listener.feed(pcm[i : i + step])]
    return [e for e in [*heard, *listener.flush()] if isinstance(e, Utterance)]


class SpeakingTrack(PacedTrack):
    """A participant's microphone: silence, and speech when `say` is called, in real time."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._queued = np.zeros(0, np.int16)  # 48 kHz mono, from sample `_n` on
        self._last_loud: list[tuple[int, asyncio.Future[float]]] = []

    def say(self, mono: npt.NDArray[np.int16], rate: int) -> asyncio.Future[float]:
        """Queues speech; the future gets the `time.monotonic()` at which the frame with
        its last loud sample was handed to the sender (the end of speech, as sent)."""
        samples = resample(mono, rate, RATE)
        if self._start is None:
            raise RuntimeError("the track is not being sent yet")
        self._queued = np.concatenate([self._queued, samples])
        last_loud = self._n + len(self._queued) - len(samples) + last_loud_s(samples, RATE) * RATE
        sent: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._last_loud.append((int(last_loud), sent))
        return sent

    async def recv(self) -> av.AudioFrame:
        await self._wait_turn(RATE)
        mono = np.zeros(FRAME, np.int16)
        take = self._queued[:FRAME]
        mono[: len(take)] = take
        self._queued = self._queued[len(take) :]
        stereo = np.repeat(mono, 2).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(stereo, format="s16", layout="stereo")
        frame.sample_rate, frame.pts = RATE, self._n
        frame.time_base = fractions.Fraction(1, RATE)
        self._n += FRAME
        now = time.monotonic()
        for sample, sent in self._last_loud:
            if sample < self._n and not sent.done():
                sent.set_result(now)
        self._last_loud = [(n, f) for n, f in self._last_loud if not f.done()]
        return frame


async def started(track: SpeakingTrack, timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while track._start is None:  # noqa: ASYNC110 (set by the sender's first recv)
            await asyncio.sleep(0.02)


def example_env() -> dict[str, str]:
    """The environment to run `python -m sluice_endpoint.examples...` from the checkout."""
    path = [str(REPO / "sdk" / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path)}


def example(name: str) -> list[str]:
    return [sys.executable, "-m", f"sluice_endpoint.examples.{name}"]
