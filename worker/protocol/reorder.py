"""Egress audio in order, with what the network lost concealed (spec §7); pure.

The receiver tap hands over Opus packets as they arrive, late ones included. This puts
them in sequence-number order and decides what a hole becomes:

- a packet merely late waits in a small window: while at most `hold` newer packets have
  come, and for at most `max_wait_s` (latency is paid only when something is missing,
  and only up to then). `hold` adapts: 0 while the network only loses (a loss is
  concealed as soon as the next packet is in), one more each time a packet arrives after
  its hole was given up (up to `hold_packets`), one less after `calm_s` without that;
- a hole given up on of at most `conceal_max_samples` (100 ms) is concealed: one
  `Conceal` per lost frame, the last of them from the next packet's in-band FEC when it
  carries some, the others by packet-loss concealment; so the timestamps carry on;
- a longer hole is lost: counted, and the next packet's timestamp jumps, as a gap in
  the source does.

A gap in timestamps with no gap in sequence numbers is the source's (DTX, a pause) and is
left alone. A jump of over `MAX_MISORDER` sequence numbers is a restarted source.
"""

from __future__ import annotations

from dataclasses import dataclass

from worker.protocol.opus_packet import has_fec, packet_samples

SEQ_MOD = 1 << 16
TS_MOD = 1 << 32
MAX_MISORDER = 1000
HOLD_PACKETS = 2  # 40 ms of 20 ms packets: ±20 ms of jitter reorders by up to two
MAX_WAIT_S = 0.06
CALM_S = 60.0
CONCEAL_MAX_SAMPLES = 4_800  # 100 ms at 48 kHz
DEFAULT_FRAME_SAMPLES = 960


def seq_distance(a: int, b: int) -> int:
    """How far `a` is ahead of `b` in 16-bit sequence space, in [-32768, 32767]."""
    d = (a - b) % SEQ_MOD
    return d - SEQ_MOD if d >= SEQ_MOD // 2 else d


@dataclass(frozen=True, slots=True)
class Decode:
    """Decode this packet."""

    timestamp: int  # RTP
    data: bytes


@dataclass(frozen=True, slots=True)
class Conceal:
    """Make up `samples` of audio at `timestamp`: from `fec` (the next packet, decoded
    for its in-band FEC) when given, else by packet-loss concealment."""

    timestamp: int
    samples: int
    fec: bytes | None = None


Play = Decode | Conceal


@dataclass(slots=True)
class ReorderCounts:
    reordered: int = 0  # arrived after a newer packet and were put in place
    late: int = 0  # arrived after their hole was given up on: dropped
    duplicates: int = 0
    concealed: int = 0  # frames made up (fec + plc)
    fec: int = 0  # of those, rebuilt from in-band FEC
    lost: int = 0  # frames in holes too long to conceal: the timestamp jumps


@dataclass(slots=True)
class _Held:
    timestamp: int
    data: bytes
    arrived: float


class AudioReorder:
    """Packets in (any order), what to play out (in order).

    Args:
        hold_packets: the most newer packets that may wait behind a hole before it is
            given up (the window grows to this on a network that reorders).
        max_wait_s: the longest a packet waits behind a hole.
        conceal_max_samples: the longest hole concealed (48 kHz samples).
        calm_s: the window shrinks by one after this long without a late packet.
        start_hold: the window to start with.
    """

    def __init__(
        self,
        hold_packets: int = HOLD_PACKETS,
        max_wait_s: float = MAX_WAIT_S,
        conceal_max_samples: int = CONCEAL_MAX_SAMPLES,
        calm_s: float = CALM_S,
        start_hold: int = 0,
    ) -> None:
        self._hold_max = hold_packets
        self._hold = min(start_hold, hold_packets)
        self._calm_s = calm_s
        self._last_late = 0.0
        self._max_wait_s = max_wait_s
        self._conceal_max = conceal_max_samples
        self._held: dict[int, _Held] = {}
        self._next: int | None = None  # the sequence number due next
        self._last_ts = 0  # RTP timestamp of the last packet played
        self._last_samples = DEFAULT_FRAME_SAMPLES  # its duration
        self.counts = ReorderCounts()

    @property
    def hold(self) -> int:
        """Newer packets that may wait behind a hole now."""
        return self._hold

    def push(self, seq: int, timestamp: int, data: bytes, now: float) -> list[Play]:
        """Feeds one packet as it arrives; returns what can be played now, in order."""
        if self._next is None:
            self._next = seq
        ahead = seq_distance(seq, self._next)
        if ahead < -MAX_MISORDER or ahead > MAX_MISORDER:
            out = self._flush()  # a restarted source: what is held, then start over
            self._next = seq
            return out + self.push(seq, timestamp, data, now)
        if ahead < 0:
            self.counts.late += 1
            self._hold = min(self._hold_max, self._hold + 1)  # this network reorders
            self._last_late = now
            return []
        if self._hold and now - self._last_late > self._calm_s:
            self._hold -= 1
            self._last_late = now
        if seq in self._held:
            self.counts.duplicates += 1
            return []
        if any(seq_distance(s, seq) > 0 for s in self._held):
            self.counts.reordered += 1  # a newer one came first
        self._held[seq] = _Held(timestamp, data, now)
        return self._release(now)

    def expire(self, now: float) -> list[Play]:
        """What a hole waited on too long lets through (call at `deadline()`)."""
        return self._release(now)

    def deadline(self) -> float | None:
        """When `expire` will have something to do, if packets wait behind a hole."""
        if not self._held:
            return None
        return min(h.arrived for h in self._held.values()) + self._max_wait_s

    def _release(self, now: float) -> list[Play]:
        if not self._held:
            return []
        out = self._in_order()
        while self._held and self._hopeless(now):
            out += self._give_up()
            out += self._in_order()
        return out

    def _hopeless(self, now: float) -> bool:
        if len(self._held) > self._hold:
            return True
        return min(h.arrived for h in self._held.values()) + self._max_wait_s <= now

    def _in_order(self) -> list[Play]:
        out: list[Play] = []
        assert self._next is not None
        while (held := self._held.pop(self._next, None)) is not None:
            out.append(self._play(held))
            self._next = (self._next + 1) % SEQ_MOD
        return out

    def _play(self, held: _Held) -> Decode:
        self._last_ts = held.timestamp
        self._last_samples = packet_samples(held.data) or self._last_samples
        return Decode(held.timestamp, held.data)

    def _give_up(self) -> list[Play]:
        """The hole at `_next` is not coming: conceal it or let the timestamp jump."""
        assert self._next is not None
        base = self._next
        following = min(self._held, key=lambda s: seq_distance(s, base))
        missing = seq_distance(following, base)
        after = self._held[following]
        self._next = following
        span = (after.timestamp - self._last_ts - self._last_samples) % TS_MOD
        if span == 0 or span > self._conceal_max or span > TS_MOD // 2:
            self.counts.lost += missing
            return []
        # Frames of the last one's length; the last may be short if the timestamps say so.
        # `after` is played next, so the last frame is the one its FEC data rebuilds.
        frame = self._last_samples
        frames = -(-span // frame)
        fec = after.data if has_fec(after.data) else None
        out: list[Play] = [
            Conceal(
                (self._last_ts + self._last_samples + i * frame) % TS_MOD,
                min(frame, span - i * frame),
                fec if i == frames - 1 else None,
            )
            for i in range(frames)
        ]
        self.counts.concealed += frames
        self.counts.fec += fec is not None
        return out

    def _flush(self) -> list[Play]:
        out: list[Play] = []
        while self._held:
            out += self._in_order()
            if self._held:
                assert self._next is not None
                base = self._next
                self._next = min(self._held, key=lambda s: seq_distance(s, base))
        return out
