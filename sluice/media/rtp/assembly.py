"""The codec-independent core of an RTP frame assembler: packets in, whole frames out.

RTP carries a video frame as a run of packets sharing one timestamp, the last with the
marker bit. What makes a run complete is the same for every codec here: no gap in
sequence numbers, a packet that surely starts the frame, the marker packet. What differs
is how a payload is parsed, which packet starts a frame, how the parts are joined and
when a decoder can start; subclasses answer those through four small hooks.

Bounded by design: a frame past `max_frame_bytes` is dropped (and the rest of its
packets with it), and at most `max_pending_packets` packets or twice `max_frame_bytes`
bytes wait for incomplete frames, the oldest going first.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Generic, TypeVar

MAX_FRAME_BYTES = 4 * 1024 * 1024  # a 4K keyframe is ~1 MiB; more is an attack or a bug
MAX_PENDING_PACKETS = 8192  # two MAX_FRAME_BYTES frames in 1 200-byte packets, with room
SEQ_MOD = 1 << 16
MAX_MISORDER = 1000  # packets: further behind than this, a stream has restarted

P = TypeVar("P")  # one parsed payload
F = TypeVar("F")  # one assembled frame


@dataclass(slots=True)
class Pending(Generic[P]):
    """Packets of one RTP timestamp not yet assembled, by unwrapped sequence number.

    Attributes:
        start: the first packet known to open the frame.
        weak_start: the first packet that may open it, or may have one still before it.
        end: the first packet with the marker bit.
        low: the lowest sequence number held.
        high: the highest.
        size: bytes counted against `max_frame_bytes`.
    """

    packets: dict[int, P] = field(default_factory=dict)
    start: int | None = None
    weak_start: int | None = None
    end: int | None = None
    low: int = 0
    high: int = 0
    size: int = 0

    def gapless(self) -> bool:
        """Every packet from `low` to the marker packet is here."""
        return self.end == self.high and len(self.packets) == self.high - self.low + 1


class FrameAssemblerCore(ABC, Generic[P, F]):
    """Collects the RTP packets of one stream into complete frames.

    A frame is complete when its packets run without a gap from one that starts it
    (`_starts`) to one with the RTP marker bit. Packets may arrive in any order within a
    frame; when a later frame completes first, the earlier one is given up. A gap in
    sequence numbers between consecutive frames means a lost frame: from then on only a
    frame `_accept` says a decoder can start at is returned. Padding-only packets
    (empty payload) fill gaps when they arrive in order.

    Args:
        max_frame_bytes: frames larger than this are dropped.
        max_pending_packets: when more packets wait, the oldest frames are dropped.

    Attributes:
        frames_dropped: frames given up (incomplete, malformed, too big, or waiting for
            a keyframe).
    """

    def __init__(
        self,
        *,
        max_frame_bytes: int = MAX_FRAME_BYTES,
        max_pending_packets: int = MAX_PENDING_PACKETS,
    ) -> None:
        self.max_frame_bytes = max_frame_bytes
        self.max_pending_packets = max_pending_packets
        self.frames_dropped = 0
        self._pending: dict[int, Pending[P]] = {}
        self._count = 0
        self._bytes = 0  # held at most twice max_frame_bytes: one frame and the next
        self._highest: int | None = None  # unwrapped sequence numbers
        self._last_end: int | None = None
        self._discarding: int | None = None  # timestamp of a frame dropped as too big
        self._need_keyframe = True

    @property
    def needs_keyframe(self) -> bool:
        """Whether only a keyframe can be returned next (at start and after a loss)."""
        return self._need_keyframe

    @property
    def pending_packets(self) -> int:
        """Packets held for frames not yet complete; at most `max_pending_packets`."""
        return self._count

    # --- the codec's part -------------------------------------------------------------

    @abstractmethod
    def _parse(self, payload: bytes) -> tuple[P, int]:
        """The parsed payload and the bytes it adds to its frame; raises if malformed."""

    @abstractmethod
    def _mark(self, pending: Pending[P], seq: int, parsed: P) -> None:
        """Records in `pending.start` / `weak_start` whether `parsed` opens its frame."""

    @abstractmethod
    def _assemble(self, timestamp: int, packets: list[P]) -> F | None:
        """The frame of these packets (in order), or None if they do not make one."""

    @abstractmethod
    def _accept(self, frame: F, after_loss: bool) -> bool:
        """Whether to return `frame` (and note what it teaches, e.g. parameter sets).

        `after_loss`: nothing has been returned since the start or the last loss, so a
        decoder can only take a frame it can start at.
        """

    def _starts(self, pending: Pending[P]) -> bool:
        """Whether no packet of the frame can come before `pending.low`."""
        return pending.low == pending.start

    # --- the common part --------------------------------------------------------------

    def _add(self, payload: bytes, sequence_number: int, timestamp: int, marker: bool) -> F | None:
        """Adds one RTP packet; returns the frame it completes, if any.

        Raises:
            whatever `_parse` raises for a malformed payload; it is not kept, and its
            frame will be dropped as incomplete.
        """
        seq = self._unwrap(sequence_number)
        if self._highest is not None and seq < self._highest - MAX_MISORDER:
            self._restart()  # the sender restarted its numbering: start over
            seq = self._unwrap(sequence_number)
        if not payload:
            if self._last_end is not None and seq == self._last_end + 1:
                self._last_end = seq
            return None
        parsed, size = self._parse(payload)
        if self._last_end is not None and seq <= self._last_end:
            return None  # a duplicate, or too late: its frame is gone
        if timestamp == self._discarding:
            return None
        pending = self._pending.setdefault(timestamp, Pending(low=seq, high=seq))
        if seq in pending.packets:
            return None
        pending.packets[seq] = parsed
        pending.low, pending.high = min(pending.low, seq), max(pending.high, seq)
        pending.size += size
        self._count += 1
        self._bytes += size
        self._mark(pending, seq, parsed)
        if marker:
            pending.end = seq if pending.end is None else min(pending.end, seq)
        if pending.size > self.max_frame_bytes:
            self._drop(timestamp)
            self._discarding = timestamp  # the rest of it would only be dropped again
        while self._count > self.max_pending_packets or self._bytes > 2 * self.max_frame_bytes:
            self._drop(min(self._pending, key=lambda ts: self._pending[ts].low))
        if timestamp in self._pending and pending.gapless() and self._starts(pending):
            return self._complete(timestamp, pending)
        return None

    def _restart(self) -> None:
        self.frames_dropped += len(self._pending)
        self._pending.clear()
        self._count = self._bytes = 0
        self._highest = self._last_end = self._discarding = None
        self._need_keyframe = True

    def _unwrap(self, sequence_number: int) -> int:
        if self._highest is None:
            self._highest = sequence_number % SEQ_MOD
            return self._highest
        delta = (sequence_number - self._highest) % SEQ_MOD
        seq = self._highest + (delta - SEQ_MOD if delta >= SEQ_MOD // 2 else delta)
        self._highest = max(self._highest, seq)
        return seq

    def _forget(self, timestamp: int) -> None:
        pending = self._pending.pop(timestamp)
        self._count -= len(pending.packets)
        self._bytes -= pending.size

    def _drop(self, timestamp: int) -> None:
        self._forget(timestamp)
        self.frames_dropped += 1
        self._need_keyframe = True

    def _complete(self, timestamp: int, pending: Pending[P]) -> F | None:
        self._forget(timestamp)
        for ts, other in list(self._pending.items()):
            if other.low < pending.high:
                self._drop(ts)  # older and incomplete: lost
        if self._last_end is not None and pending.low != self._last_end + 1:
            self._need_keyframe = True
        self._last_end = pending.high
        self._discarding = None  # timestamps come round again after 13 hours
        frame = self._assemble(timestamp, [pending.packets[s] for s in sorted(pending.packets)])
        if frame is None or not self._accept(frame, self._need_keyframe):
            self.frames_dropped += 1
            self._need_keyframe = True
            return None
        self._need_keyframe = False
        return frame
