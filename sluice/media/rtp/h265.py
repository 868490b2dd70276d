"""H.265 over RTP (RFC 7798): payload parsing, a packetizer and an access-unit assembler.

aiortc has no H.265 depacketizer; this module is the pure part of one. Bytes in, access
units out, no I/O:

- `parse_payload(payload)` reads one RTP payload: a single NAL unit, an aggregation
  packet (AP, type 48) or a fragmentation unit (FU, type 49). PACI packets (type 50)
  parse to nothing. DONL/DOND are never present: WebRTC signals no
  sprop-max-don-diff, so it is 0.
- `H265FrameAssembler.feed(...)` takes the RTP packets of one stream, reordered or not,
  and returns each complete access unit as Annex-B (00 00 00 01 before every NAL unit),
  which FFmpeg's `hevc` decoder accepts. After a loss it returns nothing until the next
  keyframe; `needs_keyframe` tells the caller to ask for one (PLI).
- `packetize(access_unit, ...)` cuts an Annex-B access unit into payloads: single NAL
  units when they fit, FUs when not, APs for runs of small units.

Every malformed payload raises `H265PayloadError` and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from sluice.errors import MediaError
from sluice.media.rtp.assembly import (
    MAX_FRAME_BYTES,
    MAX_PENDING_PACKETS,
    FrameAssemblerCore,
    Pending,
)

DEFAULT_MTU = 1200  # RTP payload bytes; what libwebrtc leaves after headers and SRTP
MIN_MTU = 4  # an FU needs its 3 header bytes and one byte of the NAL unit
START_CODE = b"\x00\x00\x00\x01"

NAL_VPS, NAL_SPS, NAL_PPS, NAL_AUD, NAL_PREFIX_SEI = 32, 33, 34, 35, 39
NAL_AP, NAL_FU, NAL_PACI = 48, 49, 50
IRAP_TYPES = range(16, 22)  # BLA, IDR, CRA and two reserved: decoding can start here
PARAMETER_SETS = frozenset({NAL_VPS, NAL_SPS, NAL_PPS})
# NAL types that may open an access unit (H.265 7.4.2.4.4), besides a picture's first slice.
_AU_OPENERS = frozenset({NAL_VPS, NAL_SPS, NAL_PPS, NAL_AUD, NAL_PREFIX_SEI, 41, 42, 43, 44})


class H265PayloadError(MediaError):
    """An RTP payload is not valid RFC 7798 H.265."""


class PayloadKind(StrEnum):
    """The packet types of RFC 7798 a payload can be."""

    SINGLE = "single"
    AGGREGATION = "aggregation"
    FRAGMENT = "fragment"
    PACI = "paci"


@dataclass(frozen=True, slots=True)
class H265Payload:
    """One parsed RTP payload.

    Attributes:
        kind: which RFC 7798 packet type it is.
        nal_units: the whole NAL units it carries (single NAL unit and AP), each with its
            two-byte header.
        fragment: for an FU, its part of the NAL unit; the first fragment starts with the
            NAL header rebuilt from the payload and FU headers.
        fragment_type: for an FU, the type of the fragmented NAL unit.
        fu_start: S, the FU holds the first fragment.
        fu_end: E, the FU holds the last fragment.
    """

    kind: PayloadKind
    nal_units: tuple[bytes, ...] = ()
    fragment: bytes = b""
    fragment_type: int | None = None
    fu_start: bool = False
    fu_end: bool = False

    def annex_b(self) -> bytes:
        """The payload's bytes in an Annex-B stream; the access unit is their join."""
        if self.kind is PayloadKind.FRAGMENT:
            return START_CODE + self.fragment if self.fu_start else self.fragment
        return b"".join(START_CODE + nal for nal in self.nal_units)

    def begins_access_unit(self) -> bool:
        """Whether its first NAL unit can only be the first of an access unit."""
        if self.kind is PayloadKind.FRAGMENT:
            return self.fu_start and _opens_access_unit(self.fragment)
        return bool(self.nal_units) and _opens_access_unit(self.nal_units[0])


def nal_type(nal: bytes) -> int:
    """The nal_unit_type of a NAL unit (or of an RTP payload header).

    Args:
        nal: at least the first byte of the unit.
    """
    return (nal[0] >> 1) & 0x3F


def parse_payload(payload: bytes) -> H265Payload:
    """Reads one RTP payload.

    Args:
        payload: the RTP payload (after the RTP header and any padding).

    Raises:
        H265PayloadError: truncated, F bit set, TID 0, a length running past the end,
            S and E both set, or a type RFC 7798 does not allow there.
    """
    _check_header(payload, "payload header")
    kind = nal_type(payload)
    if kind < NAL_AP:
        return H265Payload(PayloadKind.SINGLE, nal_units=(payload,))
    if kind == NAL_AP:
        units: list[bytes] = []
        pos = 2
        while pos < len(payload):
            if pos + 2 > len(payload):
                raise H265PayloadError("AP: truncated NAL unit size")
            size = int.from_bytes(payload[pos : pos + 2], "big")
            nal = payload[pos + 2 : pos + 2 + size]
            if len(nal) != size:
                raise H265PayloadError(f"AP: NAL unit of {size} bytes runs past the end")
            _check_header(nal, "AP: NAL unit")
            if nal_type(nal) >= NAL_AP:
                raise H265PayloadError(f"AP: cannot aggregate type {nal_type(nal)}")
            units.append(nal)
            pos += 2 + size
        if not units:
            raise H265PayloadError("AP without NAL units")
        return H265Payload(PayloadKind.AGGREGATION, nal_units=tuple(units))
    if kind == NAL_FU:
        if len(payload) < 4:
            raise H265PayloadError("FU: no FU header or no data")
        fu = payload[2]
        start, end, inner = bool(fu & 0x80), bool(fu & 0x40), fu & 0x3F
        if start and end:
            raise H265PayloadError("FU: S and E both set")
        if inner >= NAL_AP:
            raise H265PayloadError(f"FU: cannot fragment type {inner}")
        fragment = payload[3:]
        if start:
            fragment = bytes([(payload[0] & 0x81) | inner << 1, payload[1]]) + fragment
        return H265Payload(PayloadKind.FRAGMENT, (), fragment, inner, start, end)
    if kind == NAL_PACI:
        return H265Payload(PayloadKind.PACI)  # PACI extensions are not negotiated: skip
    raise H265PayloadError(f"payload type {kind} is not defined by RFC 7798")


def depayload(payload: bytes) -> bytes:
    """The Annex-B bytes of one payload, in the shape of aiortc's `h264_depayload`.

    Args:
        payload: one RTP payload.

    Raises:
        H265PayloadError: as `parse_payload`.
    """
    return parse_payload(payload).annex_b()


@dataclass(frozen=True, slots=True)
class H265AccessUnit:
    """One complete access unit.

    Attributes:
        data: Annex-B, 00 00 00 01 before every NAL unit.
        timestamp: the RTP timestamp shared by its packets.
        keyframe: it holds an IRAP picture (NAL types 16 to 21).
        has_parameter_sets: it holds a VPS, an SPS and a PPS.
        nal_types: the type of each NAL unit, in order.
    """

    data: bytes
    timestamp: int
    keyframe: bool
    has_parameter_sets: bool
    nal_types: tuple[int, ...]


class H265FrameAssembler(FrameAssemblerCore[H265Payload, H265AccessUnit]):
    """Collects the RTP packets of one H.265 stream into complete access units.

    An access unit is complete when its packets run without a gap from one whose first
    NAL unit opens an access unit (a parameter set, AUD, prefix SEI, or a slice with
    first_slice_segment_in_pic_flag) to one with the RTP marker bit, and its FUs each run
    from S to E. Packets may arrive in any order within an access unit; when a later one
    completes first, the earlier one is given up. A gap in sequence numbers between
    consecutive access units means a loss: from then on only a keyframe is returned, and
    only once a VPS, SPS and PPS have been seen. Padding-only packets (empty payload) fill
    gaps when they arrive in order.

    Args:
        max_frame_bytes: access units larger than this are dropped.
        max_pending_packets: when more packets wait, the oldest access units are dropped.

    Attributes:
        frames_dropped: access units given up (incomplete, malformed, too big, or
            waiting for a keyframe).
    """

    def __init__(
        self,
        *,
        max_frame_bytes: int = MAX_FRAME_BYTES,
        max_pending_packets: int = MAX_PENDING_PACKETS,
    ) -> None:
        super().__init__(max_frame_bytes=max_frame_bytes, max_pending_packets=max_pending_packets)
        self._have_parameter_sets = False

    def feed(
        self, payload: bytes, *, sequence_number: int, timestamp: int, marker: bool
    ) -> H265AccessUnit | None:
        """Adds one RTP packet; returns the access unit it completes, if any.

        Args:
            payload: the RTP payload.
            sequence_number: the RTP sequence number (16 bits).
            timestamp: the RTP timestamp.
            marker: the RTP marker bit (last packet of an access unit).

        Raises:
            H265PayloadError: the payload is malformed; it is not kept, and its access
                unit will be dropped as incomplete.
        """
        return self._add(payload, sequence_number, timestamp, marker)

    def _parse(self, payload: bytes) -> tuple[H265Payload, int]:
        return parse_payload(payload), len(payload)

    def _mark(self, pending: Pending[H265Payload], seq: int, parsed: H265Payload) -> None:
        if not parsed.begins_access_unit():
            return
        # Only an AUD, or a VPS when there is no AUD, is always first; an SPS, SEI or
        # first slice may have a VPS still on its way to precede it.
        if nal_type(parsed.fragment or parsed.nal_units[0]) in (NAL_AUD, NAL_VPS):
            pending.start = seq if pending.start is None else min(pending.start, seq)
        elif pending.weak_start is None or seq < pending.weak_start:
            pending.weak_start = seq

    def _starts(self, pending: Pending[H265Payload]) -> bool:
        if self._last_end is not None and pending.low == self._last_end + 1:
            return True  # right after the previous access unit
        if pending.low == pending.start:
            return True
        # Without an AUD or VPS it may still lack its start, but once parameter sets are
        # known an access unit without them decodes.
        return pending.low == pending.weak_start and self._have_parameter_sets

    def _accept(self, frame: H265AccessUnit, after_loss: bool) -> bool:
        if after_loss and not (
            frame.keyframe and (frame.has_parameter_sets or self._have_parameter_sets)
        ):
            return False
        self._have_parameter_sets |= frame.has_parameter_sets
        return True

    def _assemble(self, timestamp: int, packets: list[H265Payload]) -> H265AccessUnit | None:
        types: list[int] = []
        open_fu: int | None = None  # type of the NAL unit being reassembled
        for packet in packets:
            if packet.kind is PayloadKind.FRAGMENT:
                starts = open_fu is None and packet.fu_start
                continues = open_fu == packet.fragment_type and not packet.fu_start
                if not (starts or continues):
                    return None  # an FU lost its start, or a new one began unfinished
                if packet.fu_start:
                    types.append(nal_type(packet.fragment))
                open_fu = None if packet.fu_end else packet.fragment_type
            elif open_fu is not None:
                return None
            else:
                types += [nal_type(nal) for nal in packet.nal_units]
        data = b"".join(packet.annex_b() for packet in packets)
        if open_fu is not None or not types or len(data) > self.max_frame_bytes:
            return None
        return H265AccessUnit(
            data=data,
            timestamp=timestamp,
            keyframe=any(t in IRAP_TYPES for t in types),
            has_parameter_sets=PARAMETER_SETS.issubset(types),
            nal_types=tuple(types),
        )


def split_annex_b(stream: bytes) -> list[bytes]:
    """The NAL units of an Annex-B byte stream, without start codes or trailing zeros.

    Args:
        stream: 00 00 01 or 00 00 00 01 before each NAL unit.

    Raises:
        ValueError: no start code at all.
    """
    pos = stream.find(b"\x00\x00\x01")
    if pos < 0:
        raise ValueError("no Annex-B start code")
    units: list[bytes] = []
    while pos >= 0:
        following = stream.find(b"\x00\x00\x01", pos + 3)
        # Zeros before a start code are its 4th byte or trailing_zero_8bits: a NAL
        # unit itself never ends in 0x00.
        unit = stream[pos + 3 : following if following >= 0 else len(stream)].rstrip(b"\x00")
        if unit:
            units.append(unit)
        pos = following
    return units


def packetize(access_unit: bytes, *, mtu: int = DEFAULT_MTU, aggregate: bool = True) -> list[bytes]:
    """Cuts one Annex-B access unit into RTP payloads of at most `mtu` bytes.

    Args:
        access_unit: the encoder's output for one picture, Annex-B.
        mtu: the largest payload to return.
        aggregate: put runs of NAL units that fit together (typically VPS, SPS, PPS and
            SEI) into one AP.

    Raises:
        ValueError: `mtu` below `MIN_MTU`, no start code, or a NAL unit shorter than its
            header.
    """
    if mtu < MIN_MTU:
        raise ValueError(f"mtu must be at least {MIN_MTU}, got {mtu}")
    units = split_annex_b(access_unit)
    if any(len(unit) < 2 for unit in units):
        raise ValueError("NAL unit shorter than its two-byte header")
    payloads: list[bytes] = []
    run: list[bytes] = []  # NAL units waiting to go out in one AP
    for unit in units:
        if aggregate and _ap_size([*run, unit]) <= mtu:
            run.append(unit)
            continue
        payloads += _flush(run)
        if aggregate and _ap_size([unit]) <= mtu:
            run = [unit]
        elif len(unit) <= mtu:
            run = []
            payloads.append(unit)
        else:
            run = []
            payloads += _fragment(unit, mtu)
    return payloads + _flush(run)


def _ap_size(units: list[bytes]) -> int:
    return 2 + sum(2 + len(unit) for unit in units)


def _flush(run: list[bytes]) -> list[bytes]:
    """One AP for several units; one single-NAL-unit packet for one."""
    if len(run) < 2:
        return list(run)
    # RFC 7798 4.4.2: F is the OR, LayerId and TID the lowest of the aggregated units.
    forbidden = any(unit[0] & 0x80 for unit in run)
    layer = min((unit[0] & 1) << 5 | unit[1] >> 3 for unit in run)
    tid = min(unit[1] & 7 for unit in run)
    header = bytes([forbidden << 7 | NAL_AP << 1 | layer >> 5, (layer & 0x1F) << 3 | tid])
    return [header + b"".join(len(u).to_bytes(2, "big") + u for u in run)]


def _fragment(unit: bytes, mtu: int) -> list[bytes]:
    header = bytes([(unit[0] & 0x81) | NAL_FU << 1, unit[1]])
    body, room = unit[2:], mtu - 3
    chunks = [body[i : i + room] for i in range(0, len(body), room)]
    return [
        header + bytes([(i == 0) << 7 | (i == len(chunks) - 1) << 6 | nal_type(unit)]) + chunk
        for i, chunk in enumerate(chunks)
    ]


def _check_header(nal: bytes, what: str) -> None:
    if len(nal) < 2:
        raise H265PayloadError(f"{what}: shorter than the two-byte NAL header")
    if nal[0] & 0x80:
        raise H265PayloadError(f"{what}: forbidden_zero_bit set")
    if nal[1] & 7 == 0:
        raise H265PayloadError(f"{what}: nuh_temporal_id_plus1 is 0")


def _opens_access_unit(nal: bytes) -> bool:
    kind = nal_type(nal)
    if kind < 32:  # a slice: the picture's first one has first_slice_segment_in_pic_flag
        return len(nal) > 2 and bool(nal[2] & 0x80)
    return kind in _AU_OPENERS
