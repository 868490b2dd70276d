"""The RTP sequence numbers a forwarder sends for a single-packet-frame (audio) stream.

Each subscriber's sender numbers its packets from a random start of its own. Numbering
them one by one in the order they leave would hide the publisher's losses (a gap closes
up) and turn a late packet into a new one whose timestamp goes backwards. Instead each
outgoing number is the source's number moved by one constant: a gap stays a gap and a
late packet keeps its place, so the subscriber's jitter buffer can do its job. Only a
source that restarts its numbering (a jump of more than `MAX_MISORDER`) moves the
constant, so that the outgoing numbers carry on from the highest sent.
"""

from __future__ import annotations

from sluice.media.frames import MAX_MISORDER, SEQ_MOD, seq_distance


class SequenceMap:
    """Maps source sequence numbers to a sender's: `(source + offset) % 2**16` (pure)."""

    def __init__(self) -> None:
        self._offset: int | None = None
        self._highest = 0  # the highest source number mapped so far

    def outgoing(self, source: int, sender_next: int) -> int:
        """The number to send a packet under.

        Args:
            source: the packet's sequence number as the publisher sent it.
            sender_next: the number the sender would have used; the first packet keeps it
                (so the sender's random start is kept).
        """
        if self._offset is None:
            self._offset = (sender_next - source) % SEQ_MOD
            self._highest = source
        else:
            ahead = seq_distance(source, self._highest)
            if abs(ahead) > MAX_MISORDER:
                # A restarted source: carry on right after the highest number sent.
                last_out = (self._highest + self._offset) % SEQ_MOD
                self._offset = (last_out + 1 - source) % SEQ_MOD
                self._highest = source
            elif ahead > 0:
                self._highest = source
        return (source + self._offset) % SEQ_MOD
