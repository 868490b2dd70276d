"""Egress `sequenceNumber` and `timestamp`, from the source's RTP timestamps.

`sequenceNumber` counts Packets from 0, one per Packet produced, and keeps counting
across reconnects; `timestamp` is 0 for the first Packet and then the RTP distance from
it, so a real gap in the source shows as a jump. Both are uint32 and wrap.

Stamp when a Packet is produced, before it enters the backlog: a message the backlog
drops then leaves a gap in `sequenceNumber` with a regular `timestamp` step, while a gap
in the source is a `timestamp` jump with consecutive sequence numbers, so an endpoint can
tell our loss from the publisher's silence.
"""

from __future__ import annotations

from sluice.wire.packet import UINT32_MOD

AUDIO_CLOCK_RATE = 48_000  # Opus RTP clock; the wire's audio timestamp unit
VIDEO_CLOCK_RATE = 90_000  # video RTP clock; the wire's JPEG timestamp unit


class Stamper:
    """Numbers Packets and rebases RTP timestamps to the first one.

    The distance is taken modulo 2**32, which is exact across an RTP timestamp wrap
    (a source that starts near 2**32 and wraps to small values keeps counting up), for
    as long as a stream lasts less than 2**32 clock units (24.8 h at 48 kHz, 13.2 h at
    90 kHz); beyond that the wire field wraps too, as any uint32 does.

    Args:
        clock_rate: RTP clock of the source in Hz, kept for conversions.
        first_sequence: `sequenceNumber` of the first Packet; 0 for a new adapter, the
            count so far when another worker resumes one.
        first_timestamp: `timestamp` of the first Packet; 0 for a new adapter, where the
            lost pipeline's stream would be by now when another worker resumes one.

    Raises:
        ValueError: `clock_rate` is not positive, or `first_sequence` is not a uint32.
    """

    def __init__(
        self, clock_rate: int = AUDIO_CLOCK_RATE, first_sequence: int = 0, first_timestamp: int = 0
    ) -> None:
        if clock_rate <= 0:
            raise ValueError(f"clock_rate must be positive, got {clock_rate}")
        if not 0 <= first_sequence < UINT32_MOD:
            raise ValueError(f"first_sequence must be a uint32, got {first_sequence}")
        if not 0 <= first_timestamp < UINT32_MOD:
            raise ValueError(f"first_timestamp must be a uint32, got {first_timestamp}")
        self.clock_rate = clock_rate
        self._first_rtp: int | None = None
        self._next_sequence = first_sequence
        self._origin = first_timestamp
        self.last_timestamp = first_timestamp  # of the newest Packet stamped

    @property
    def started(self) -> bool:
        """Whether a first Packet has been stamped."""
        return self._first_rtp is not None

    @property
    def next_sequence_number(self) -> int:
        """`sequenceNumber` of the next Packet."""
        return self._next_sequence

    def stamp(self, rtp_timestamp: int) -> tuple[int, int]:
        """`(sequenceNumber, timestamp)` for the next Packet.

        Args:
            rtp_timestamp: the source frame's RTP timestamp (a decoded frame's `pts`);
                reduced modulo 2**32 first, so an unwrapped value works too.
        """
        rtp = rtp_timestamp % UINT32_MOD
        if self._first_rtp is None:
            self._first_rtp = rtp
        sequence = self._next_sequence
        self._next_sequence = (sequence + 1) % UINT32_MOD
        self.last_timestamp = (self._origin + rtp - self._first_rtp) % UINT32_MOD
        return sequence, self.last_timestamp

    def seconds(self, timestamp: int) -> float:
        """A wire `timestamp` in seconds since the first Packet (for logs).

        Args:
            timestamp: a value returned by `stamp`.
        """
        return timestamp / self.clock_rate
