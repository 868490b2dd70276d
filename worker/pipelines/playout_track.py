"""An aiortc audio track that plays the ingest buffer out at exactly real time."""

from __future__ import annotations

import asyncio
from fractions import Fraction
from typing import Any

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import Packet

from worker.pipelines.opus_encode import OpusPcmEncoder
from worker.protocol.pacing import Pacer
from worker.protocol.pcm import SAMPLE_RATE
from worker.protocol.playout import PlayoutBuffer

TIME_BASE = Fraction(1, SAMPLE_RATE)
OPUS_BITRATE = 96_000  # what aiortc's own encoder uses: transparent for speech and music
# Behind by up to this much (the sender started late, the process stalled), frames due
# are sent at once so latency returns to normal; only beyond it does the pacer skip
# ahead, leaving the queued audio to play later. Bursting a second of audio is what
# receivers' jitter buffers are for; a second of added latency for the rest of the
# stream is not.
CATCH_UP_S = 1.0


class PlayoutTrack(MediaStreamTrack):
    """Yields one 20 ms frame per tick of a drift-free pacer; silence when empty.

    aiortc's sender pulls `recv()` in a loop and Opus-encodes what it gets, so pacing here
    is what makes a burst of text-to-speech audio come out at natural speed. The clock
    starts when the endpoint connects (`start_clock`), like a microphone switched on.

    Args:
        playout: the buffer the socket reader fills.
        room: set whenever the buffer has room, so the reader may read again.
        drained: set once the buffer is closed and everything in it was played.
        answers: set whenever the buffer has events (marks played) to send.
    """

    kind = "audio"

    def __init__(
        self,
        playout: PlayoutBuffer,
        room: asyncio.Event,
        drained: asyncio.Event,
        answers: asyncio.Event,
    ) -> None:
        super().__init__()
        self._playout = playout
        self._room = room
        self._drained = drained
        self._answers = answers
        self._pacer: Pacer | None = None
        self._encoder = OpusPcmEncoder(OPUS_BITRATE)

    @property
    def pacer(self) -> Pacer | None:
        return self._pacer

    def start_clock(self) -> None:
        """Starts real-time playout now (when the endpoint connects), if not started.

        The endpoint may start sending before the WebRTC sender first pulls a frame
        (DTLS still completing). Anchoring the clock at connect time makes that first
        pull catch up on the ticks already due, instead of leaving their audio queued for
        the life of the stream as added latency.
        """
        if self._pacer is None:
            self._pacer = Pacer(asyncio.get_running_loop().time(), max_lag_s=CATCH_UP_S)

    async def recv(self) -> Packet[Any]:
        """The next 20 ms as an Opus packet, at its tick.

        Encoding here, in the loop (~0.2 ms), and handing aiortc's sender a packet (which it
        only packetizes) costs less than its own per-frame encode on a thread pool, whose
        hand-off and GIL contention dominated an ingest adapter's CPU.
        """
        pcm, pts = await self._next_frame()
        packet = Packet(self._encoder.encode(pcm))
        packet.pts = pts
        packet.time_base = TIME_BASE
        return packet

    async def _next_frame(self) -> tuple[bytes, int]:
        """The next frame's PCM and its timestamp (48 kHz units), at its tick."""
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        if self._pacer is None:
            self._pacer = Pacer(loop.time(), max_lag_s=CATCH_UP_S)
        delay = self._pacer.next_delay(loop.time())
        if delay > 0:
            await asyncio.sleep(delay)
        tick = self._pacer.advance(loop.time())
        pcm = self._playout.pop()
        if self._playout.has_room():
            self._room.set()
        if self._playout.drained:
            self._drained.set()
        if self._playout.has_events:
            self._answers.set()
        return pcm, self._pacer.pts(tick)
