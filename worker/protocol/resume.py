"""Where an egress stream picks up when another worker resumes a lost pipeline.

The lost pipeline saved its position (next `sequenceNumber`, newest `timestamp`) with
each heartbeat; it may have produced more Packets after that save before it died, and
their numbers are unknown. Continuing from the saved number could reuse one for other
media, so the resumed stream skips every number the lost one can have used: as many as
Packets it could produce in the time since the save, plus one. The `timestamp` moves on
by that same real time, so the outage shows as a jump in both, and sequence numbers never
repeat or go back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sluice.wire.packet import UINT32_MOD


@dataclass(frozen=True, slots=True)
class ResumePoint:
    first_sequence: int
    first_timestamp: int
    # The lost pipeline's position at its last save: what followed it is lost media.
    saved_next_sequence: int = 0
    saved_timestamp: int = 0


def resume_point(
    *,
    saved_next_sequence: int,
    saved_timestamp: int,
    elapsed_ms: int,
    clock_rate: int,
    packet_interval_ms: float,
) -> ResumePoint:
    """The first `sequenceNumber` and `timestamp` of the resumed stream.

    Args:
        saved_next_sequence: the lost pipeline's next `sequenceNumber` at its last save.
        saved_timestamp: its newest Packet's `timestamp` at that save.
        elapsed_ms: from that save to now (Redis clock both, so hosts agree).
        clock_rate: wire timestamp units per second.
        packet_interval_ms: the shortest time between two Packets of this stream.
    """
    elapsed_ms = max(0, elapsed_ms)
    may_have_used = math.ceil(elapsed_ms / packet_interval_ms) + 1
    return ResumePoint(
        first_sequence=(saved_next_sequence + may_have_used) % UINT32_MOD,
        first_timestamp=(saved_timestamp + elapsed_ms * clock_rate // 1000) % UINT32_MOD,
        saved_next_sequence=saved_next_sequence,
        saved_timestamp=saved_timestamp,
    )
