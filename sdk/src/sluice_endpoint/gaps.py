"""Gap tracking for egress audio: no I/O, no clock.

Sluice counts `sequenceNumber` up by one per Packet, across reconnects, and `timestamp` in
samples of the audio it sends, so the next Packet's numbers are known in advance. A
Packet further on than expected means audio is missing: Packets the endpoint never got
(the sequence number jumped; a reconnect backlog that overflowed, a worker that died)
or a pause in the source (only the timestamp jumped). A Packet behind the expected one
repeats what was already delivered (a message re-sent after a reconnect) and is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

from sluice_endpoint.items import Gap

UINT32_MOD = 1 << 32
_HALF = UINT32_MOD // 2


def forward_distance(expected: int, got: int) -> int:
    """How far `got` is ahead of `expected` on a uint32 circle; negative when behind."""
    step = (got - expected) % UINT32_MOD
    return step - UINT32_MOD if step >= _HALF else step


@dataclass(frozen=True, slots=True)
class Observation:
    """What the tracker made of one Packet.

    Attributes:
        repeat: the Packet repeats one already delivered: drop it.
        gap: what is missing right before it, if anything.
    """

    repeat: bool = False
    gap: Gap | None = None


class GapTracker:
    """Follows one stream's Packets and reports gaps and repeats.

    Args:
        clock_rate: `timestamp` units per second (the audio's sample rate; Opus 48000).
    """

    def __init__(self, clock_rate: int) -> None:
        self.clock_rate = clock_rate
        self._next: tuple[int, int] | None = None  # (sequence number, timestamp) expected
        self._excused = False
        self.repeats = 0  # Packets dropped as repeats
        self.gaps = 0  # gaps reported

    def excuse_next(self) -> None:
        """Sluice already reported the next jump (a `gap` event): do not report it again."""
        self._excused = True

    def observe(self, sequence_number: int, timestamp: int, duration: int) -> Observation:
        """Takes the next Packet of the stream, `duration` clock units long."""
        after = ((sequence_number + 1) % UINT32_MOD, (timestamp + duration) % UINT32_MOD)
        if self._next is None:
            self._next = after
            self._excused = False
            return Observation()
        next_sequence, next_timestamp = self._next
        skipped = forward_distance(next_sequence, sequence_number)
        if skipped < 0:
            self.repeats += 1
            return Observation(repeat=True)
        self._next = after
        excused, self._excused = self._excused, False
        if excused or (skipped == 0 and forward_distance(next_timestamp, timestamp) <= 0):
            return Observation()
        self.gaps += 1
        return Observation(gap=Gap(next_timestamp, timestamp, skipped, self.clock_rate))
