"""Pre-encoded media for an aiortc sender: a track of `av.Packet`s it packs without encoding.

`RTCRtpSender` calls `encoder.pack(packet)` instead of encoding when its track's `recv()`
returns an `av.Packet`: the SFU forwards frames this way, never re-encoding them.
"""

from __future__ import annotations

import asyncio
from collections import deque
from fractions import Fraction
from typing import Any

import av
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
from av.packet import Packet


class PacketTrack(MediaStreamTrack):
    """A track whose `recv()` returns pre-encoded `av.Packet`s for a sender to `pack()`.

    Bounded: while its sender does not read (not connected yet) the oldest packets go.
    A packet may come with the sequence number its source sent it under; `sequence` is
    that of the packet `recv()` returned last (what `renumber_like_source` reads).

    Args:
        kind: "audio" or "video".
        max_queue: packets kept while nobody reads.
    """

    def __init__(self, kind: str, max_queue: int = 64) -> None:
        super().__init__()
        self.kind = kind
        self._queue: deque[tuple[Packet[Any], int | None]] = deque(maxlen=max_queue)
        self._wakeup = asyncio.Event()
        self._ended = False
        self.reading = False  # its sender has started pulling packets
        self.sequence: int | None = None  # source sequence number of the packet last read

    @property
    def full(self) -> bool:
        return len(self._queue) == self._queue.maxlen

    def push(self, packet: Packet[Any], sequence: int | None = None) -> None:
        if not self._ended:
            self._queue.append((packet, sequence))
            self._wakeup.set()

    def clear(self) -> None:
        self._queue.clear()

    def end(self) -> None:
        """Ends the track once queued packets are read."""
        self._ended = True
        self._wakeup.set()

    async def recv(self) -> Packet[Any]:
        self.reading = True
        while not self._queue:
            if self._ended or self.readyState != "live":
                raise MediaStreamError
            self._wakeup.clear()
            await self._wakeup.wait()
        packet, self.sequence = self._queue.popleft()
        return packet


def make_packet(data: bytes, pts: int, clock_rate: int) -> Packet[Any]:
    """An `av.Packet` a sender's `pack()` turns back into RTP with the right timestamp."""
    packet: Packet[Any] = av.Packet(data)
    packet.pts = pts
    packet.time_base = Fraction(1, clock_rate)
    return packet
