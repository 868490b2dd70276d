"""Encoded-frame logic without I/O: RTP packets in, whole encoded frames out.

aiortc's `JitterBuffer` releases a frame only when a packet of the *next* frame arrives
(plus `prefetch` frames), which costs 20 ms per audio hop and a frame interval per video
hop even on a perfect network. A forwarder wants the opposite: release a frame the moment
its last packet is in, and wait only when a packet is actually missing — for at most
`hold_frames` newer frames, so a NACK retransmission can still fill the hole.

Audio packets are whole frames and are never held: each goes out as it arrives, a late
one too (within `LATE_WINDOW` packets), so whoever receives them puts late ones in place
(the SFU's subscribers in their jitter buffers, the egress pipeline in its reorder window).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from sluice.media.keyframes import KeyframeRequests
from sluice.media.rtp import h265, vp9

SEQ_MOD = 1 << 16
TS_MOD = 1 << 32
H264_NAL_IDR = 5
H264_NAL_SPS = 7
H264_NAL_AUD = 9
H264_STAP_A = 24
MAX_MISORDER = 1000  # packets: further behind than this, a stream has restarted
LATE_WINDOW = 64  # audio packets: one later than this behind the newest is of no use (1.3 s)


def seq_distance(a: int, b: int) -> int:
    """How far `a` is ahead of `b` in 16-bit sequence space, in [-32768, 32767]."""
    d = (a - b) % SEQ_MOD
    return d - SEQ_MOD if d >= SEQ_MOD // 2 else d


@dataclass(slots=True)
class AssembledFrame:
    timestamp: int  # RTP timestamp, as sent by the publisher
    data: bytes  # the depayloaded encoded frame (what a decoder eats)
    first_seq: int
    after_gap: bool = False  # packets were given up between the previous frame and this one


@dataclass(slots=True)
class _Pkt:
    timestamp: int
    marker: bool
    data: bytes


class FrameAssembler:
    """Reassembles depayloaded RTP packets into frames as early as possible.

    Args:
        single_packet_frames: every packet is a whole frame (Opus and the other audio
            codecs aiortc carries); video frames end at the marker bit or where the
            timestamp changes.
        hold_frames: how many newer complete frames may wait behind a missing packet
            before it is given up on. 0 never waits (lowest latency); waiting happens only
            when something is missing. A video packet later than that is dropped; an
            audio packet is still delivered, late, if it is not a duplicate.
        capacity: packets kept at most; past that the hole is given up on.
    """

    def __init__(
        self, *, single_packet_frames: bool, hold_frames: int = 0, capacity: int = 512
    ) -> None:
        self._single = single_packet_frames
        self._hold = hold_frames
        self._capacity = capacity
        self._pending: dict[int, _Pkt] = {}
        self._next: int | None = None  # sequence number the next frame starts at
        self._synced = single_packet_frames  # video: a frame start has been seen
        self._after_gap = False  # the next frame follows packets given up on
        self._recent = [-1] * LATE_WINDOW  # audio: sequence numbers delivered, by seq % size
        self.lost = False  # set when a gap was given up on; the caller resets it

    @property
    def synced(self) -> bool:
        """Whether a frame start has been found (video starts mid-stream otherwise)."""
        return self._synced

    def add(
        self, seq: int, timestamp: int, marker: bool, data: bytes, starts_frame: bool = False
    ) -> list[AssembledFrame]:
        """Feeds one packet; returns the frames it completed, oldest first.

        Args:
            starts_frame: the payload says this packet begins a frame (see
                `starts_frame()`); only consulted until the first frame start is found.
        """
        if not self._synced:
            if starts_frame:
                self._synced = True
            else:
                # The first packets may be the tail of a frame; one starts after a marker.
                if marker:
                    self._synced = True
                    self._next = (seq + 1) % SEQ_MOD
                return []
        if self._next is None:
            self._next = seq
        elif (behind := seq_distance(seq, self._next)) < 0:
            if self._single and behind >= -LATE_WINDOW:
                return self._late(seq, timestamp, data)
            if behind >= -MAX_MISORDER:
                return []  # late: its frame was released or given up already
            # Far behind: the sender restarted its numbering. Start over rather than drop
            # everything until the numbers catch up (tens of thousands of packets).
            # A restarted sender most likely starts on a frame; if not, the decoder's
            # error and the keyframe asked for (`lost`) repair it.
            self._pending.clear()
            self._next = None
            self.lost = self._after_gap = True
            return self.add(seq, timestamp, marker, data, starts_frame)
        if seq in self._pending:
            return []  # a duplicate
        self._pending[seq] = _Pkt(timestamp, marker, data)
        frames = self._drain()
        if self._pending and self._gap_is_hopeless():
            self._skip_gap()
            self.lost = self._after_gap = True
            frames += self._drain()
        return frames

    def _late(self, seq: int, timestamp: int, data: bytes) -> list[AssembledFrame]:
        """An audio packet behind the newest: delivered unless it already was."""
        slot = seq % LATE_WINDOW
        if self._recent[slot] == seq:
            return []
        self._recent[slot] = seq
        return [AssembledFrame(timestamp, data, seq)]

    def _drain(self) -> list[AssembledFrame]:
        frames: list[AssembledFrame] = []
        while True:
            frame = self._take_frame()
            if frame is None:
                return frames
            frames.append(frame)

    def _take_frame(self) -> AssembledFrame | None:
        start = self._next
        assert start is not None
        first = self._pending.get(start)
        if first is None:
            return None
        after_gap, self._after_gap = self._after_gap, False
        if self._single:
            del self._pending[start]
            self._next = (start + 1) % SEQ_MOD
            self._recent[start % LATE_WINDOW] = start
            return AssembledFrame(first.timestamp, first.data, start, after_gap)
        seqs = [start]
        pkt = first
        while not pkt.marker:
            following = self._pending.get((seqs[-1] + 1) % SEQ_MOD)
            if following is None:
                self._after_gap = after_gap
                return None  # incomplete so far
            if following.timestamp != pkt.timestamp:
                break  # the marker packet never came, but the next frame has begun
            seqs.append((seqs[-1] + 1) % SEQ_MOD)
            pkt = following
        data = b"".join(self._pending.pop(s).data for s in seqs)
        self._next = (seqs[-1] + 1) % SEQ_MOD
        return AssembledFrame(first.timestamp, data, start, after_gap)

    def _gap_is_hopeless(self) -> bool:
        if len(self._pending) >= self._capacity:
            return True
        if self._single:
            return len(self._pending) > self._hold
        waiting = sum(1 for p in self._pending.values() if p.marker)
        return waiting > self._hold

    def _skip_gap(self) -> None:
        assert self._next is not None
        base = self._next
        ordered = sorted(self._pending, key=lambda s: seq_distance(s, base))
        if self._single:
            self._next = ordered[0]
            return
        # A frame surely starts right after a marker packet: resume at the first one.
        for seq in ordered:
            if self._pending[seq].marker:
                target = (seq + 1) % SEQ_MOD
                break
        else:
            target = (ordered[-1] + 1) % SEQ_MOD
        for seq in ordered:
            if seq_distance(seq, target) < 0:
                del self._pending[seq]
        self._next = target


class TimestampUnwrapper:
    """Turns 32-bit RTP timestamps into a monotonic count from the first one seen."""

    def __init__(self) -> None:
        self._origin: int | None = None
        self._last = 0
        self._cycles = 0

    def unwrap(self, timestamp: int) -> int:
        if self._origin is None:
            self._origin = self._last = timestamp
        elif timestamp < self._last and self._last - timestamp > TS_MOD // 2:
            self._cycles += TS_MOD
        elif timestamp > self._last and timestamp - self._last > TS_MOD // 2:
            self._cycles -= TS_MOD  # a reordered frame from before a wrap
        self._last = timestamp
        return max(0, timestamp + self._cycles - self._origin)


def is_keyframe(codec_name: str, data: bytes) -> bool:
    """Whether a decoder can start at this encoded frame.

    Args:
        codec_name: the codec's name as in SDP (`opus`, `VP8`, `H264`, ...).
        data: the depayloaded frame.
    """
    name = codec_name.upper()
    if name == "VP8":
        # RFC 6386 section 9.1: bit 0 of the frame tag is 0 for a key frame.
        return len(data) > 0 and data[0] & 0x01 == 0
    if name == "H264":
        return any(t in (H264_NAL_IDR, H264_NAL_SPS) for t in h264_nal_types(data))
    if name == "VP9":
        try:
            return vp9.parse_frame_header(data).keyframe
        except vp9.Vp9PayloadError:
            return False
    if name == "H265":
        try:
            units = h265.split_annex_b(data)
        except ValueError:
            return False
        return any(h265.nal_type(unit) in h265.IRAP_TYPES for unit in units)
    return True  # audio frames stand alone


def h264_nal_types(data: bytes) -> list[int]:
    """NAL unit types of an Annex B byte stream (aiortc depayloads H264 into one)."""
    types: list[int] = []
    pos = data.find(b"\x00\x00\x01")
    while pos != -1 and pos + 3 < len(data):
        types.append(data[pos + 3] & 0x1F)
        pos = data.find(b"\x00\x00\x01", pos + 3)
    return types


def starts_frame(codec_name: str, payload: bytes) -> bool:
    """Whether an RTP payload (before depayloading) surely begins a frame.

    VP8 (RFC 7741): the S bit with partition 0. H264 (RFC 6184): a parameter set or an
    access unit delimiter first, alone or first in a STAP-A — how encoders open a
    keyframe. Anything else answers False, and the assembler waits for a marker.
    """
    if not payload:
        return False
    name = codec_name.upper()
    if name == "VP8":
        return bool(payload[0] & 0x10) and payload[0] & 0x0F == 0
    if name == "H264":
        nal = payload[0] & 0x1F
        if nal == H264_STAP_A and len(payload) > 3:
            nal = payload[3] & 0x1F
        return nal in (H264_NAL_SPS, H264_NAL_AUD)
    return True


class Assembled(Protocol):
    """A whole frame from a `sluice.media.rtp` assembler (`Vp9Frame`, `H265AccessUnit`)."""

    @property
    def data(self) -> bytes: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def keyframe(self) -> bool: ...


class PayloadAssembler(Protocol):
    """A `sluice.media.rtp` frame assembler: raw RTP payloads in, whole frames out."""

    @property
    def frames_dropped(self) -> int: ...
    @property
    def needs_keyframe(self) -> bool: ...
    def feed(
        self, payload: bytes, *, sequence_number: int, timestamp: int, marker: bool
    ) -> Assembled | None: ...


class PayloadFrameAssembler:
    """Drives a payload-level assembler (VP9, H265) and decides when to ask for a keyframe.

    These codecs need their RTP payloads parsed to find frame edges and keyframes, which
    `FrameAssembler` never does. Their assemblers release a frame the moment it is
    complete and, after a loss, only a keyframe; so a lost frame asks for one at once,
    and again as `requests` paces it while none has come (the PLI or the keyframe may
    be lost).

    Args:
        assembler: a fresh `sluice.media.rtp` assembler.
        payload_error: what it raises for a malformed payload (the packet is skipped).
        requests: the keyframe requests of the stream (shared with whoever else asks).
    """

    def __init__(
        self,
        assembler: PayloadAssembler,
        payload_error: type[Exception],
        requests: KeyframeRequests | None = None,
    ) -> None:
        self._assembler = assembler
        self._error = payload_error
        self.requests = requests if requests is not None else KeyframeRequests()
        self._dropped = 0
        self.malformed = 0

    def add(self, seq: int, timestamp: int, marker: bool, payload: bytes) -> list[Assembled]:
        """Feeds one packet's raw RTP payload; returns the frame it completed, if any."""
        try:
            frame = self._assembler.feed(
                payload, sequence_number=seq, timestamp=timestamp, marker=marker
            )
        except self._error:
            self.malformed += 1  # its frame cannot complete: counted as lost later
            return []
        if frame is None:
            return []
        if frame.keyframe:
            self.requests.got_keyframe()
        return [frame]

    def keyframe_due(self, now: float) -> bool:
        """Whether to ask the publisher for a keyframe now (call after each `add`)."""
        if self._assembler.frames_dropped > self._dropped:
            self.requests.want()
        self._dropped = self._assembler.frames_dropped
        return self.requests.due(now)
