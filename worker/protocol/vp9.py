"""VP9 over RTP (RFC 9628): payload descriptors, a packetizer and a frame assembler.

aiortc has no VP9 depacketizer; this module is the pure part of one. Bytes in, frames
out, no I/O:

- `parse_payload(payload)` splits one RTP payload into its `Vp9Descriptor` and VP9 bytes.
- `Vp9FrameAssembler.feed(...)` takes the RTP packets of one stream, reordered or not, and
  returns each complete picture as a `Vp9Frame` whose `data` FFmpeg's `vp9` decoder
  accepts. After a loss it returns nothing until the next keyframe; `needs_keyframe`
  tells the caller to ask for one (PLI).
- `packetize(frame, ...)` and `Vp9Packetizer` cut VP9 frames into payloads: non-flexible
  mode, 15-bit picture IDs, a scalability structure (SS) on keyframes.

Every malformed payload raises `Vp9PayloadError` and nothing else.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

MAX_FRAME_BYTES = 4 * 1024 * 1024  # a 4K keyframe is ~1 MiB; more is an attack or a bug
MAX_PENDING_PACKETS = 8192  # two MAX_FRAME_BYTES frames in 1 200-byte packets, with room
DEFAULT_MTU = 1200  # RTP payload bytes; what libwebrtc leaves after headers and SRTP
MIN_MTU = 12  # a keyframe's first descriptor (3 bytes, SS 8) and one byte of the frame
PICTURE_ID_MOD = 1 << 15
MAX_REFERENCES = 3  # RFC 9628: at most three P_DIFF per layer frame
MAX_SUPERFRAME_FRAMES = 8  # the superframe index counts frames in 3 bits
_SEQ_MOD = 1 << 16


class Vp9PayloadError(Exception):
    """An RTP payload, or the VP9 data in it, is malformed."""


@dataclass(frozen=True, slots=True)
class Vp9PictureGroupEntry:
    """One picture of the picture group (PG) in a scalability structure.

    Attributes:
        temporal_id: TID of the picture.
        switching_up: U, a temporal switching-up point.
        p_diffs: picture ID differences to the pictures it references (R of them).
    """

    temporal_id: int
    switching_up: bool = False
    p_diffs: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Vp9ScalabilityStructure:
    """The SS (V=1): spatial layers, their resolutions, and the picture group.

    Attributes:
        spatial_layers: N_S + 1, from 1 to 8.
        resolutions: (width, height) per spatial layer when Y=1, else None.
        picture_group: the PG entries when G=1, else None.
    """

    spatial_layers: int = 1
    resolutions: tuple[tuple[int, int], ...] | None = None
    picture_group: tuple[Vp9PictureGroupEntry, ...] | None = None


@dataclass(frozen=True, slots=True)
class Vp9Descriptor:
    """The payload descriptor at the head of every VP9 RTP payload.

    Attributes:
        start_of_frame: B, first packet of a layer frame.
        end_of_frame: E, last packet of a layer frame.
        inter_picture: P, the layer frame references an earlier picture (P=0 on the first
            packet of a keyframe).
        flexible: F, references are given as `p_diffs` instead of by a picture group.
        not_upper_reference: Z, upper spatial layers do not reference this frame.
        picture_id: 7- or 15-bit picture ID when I=1, else None.
        long_picture_id: M, the picture ID takes 15 bits.
        temporal_id: TID when layer indices are present (L=1), else None.
        switching_up: U, a temporal switching-up point.
        spatial_id: SID; 0 when L=0.
        inter_layer: D, the frame depends on the spatial layer below.
        tl0_pic_idx: TL0PICIDX in non-flexible mode with L=1, else None.
        p_diffs: picture ID differences to referenced pictures (flexible mode, P=1).
        scalability: the SS when V=1, else None.
    """

    start_of_frame: bool = True
    end_of_frame: bool = True
    inter_picture: bool = False
    flexible: bool = False
    not_upper_reference: bool = False
    picture_id: int | None = None
    long_picture_id: bool = True
    temporal_id: int | None = None
    switching_up: bool = False
    spatial_id: int = 0
    inter_layer: bool = False
    tl0_pic_idx: int | None = None
    p_diffs: tuple[int, ...] = ()
    scalability: Vp9ScalabilityStructure | None = None

    def __bytes__(self) -> bytes:
        """Serialises the descriptor; the inverse of `parse_payload`.

        Raises:
            ValueError: a field out of range, or a combination RFC 9628 cannot express.
        """
        layers = self.temporal_id is not None
        references = self.flexible and self.inter_picture
        if not 0 <= len(self.p_diffs) <= MAX_REFERENCES or (references != bool(self.p_diffs)):
            raise ValueError("p_diffs: 1 to 3 exactly when flexible and inter_picture")
        if layers and not self.flexible and self.tl0_pic_idx is None:
            raise ValueError("non-flexible layer indices need tl0_pic_idx")
        out = bytearray([_bits(
            self.picture_id is not None, self.inter_picture, layers, self.flexible,
            self.start_of_frame, self.end_of_frame, self.scalability is not None,
            self.not_upper_reference,
        )])  # fmt: skip
        if self.picture_id is not None:
            if self.long_picture_id:
                out += (0x8000 | _check(self.picture_id, 15)).to_bytes(2, "big")
            else:
                out.append(_check(self.picture_id, 7))
        if self.temporal_id is not None:
            out.append(
                _check(self.temporal_id, 3) << 5
                | self.switching_up << 4
                | _check(self.spatial_id, 3) << 1
                | self.inter_layer
            )
            if not self.flexible:
                out.append(_check(self.tl0_pic_idx or 0, 8))
        for i, p_diff in enumerate(self.p_diffs):
            out.append(_check(p_diff, 7) << 1 | (i < len(self.p_diffs) - 1))
        if self.scalability is not None:
            out += _serialise_ss(self.scalability)
        return bytes(out)


def parse_payload(payload: bytes) -> tuple[Vp9Descriptor, bytes]:
    """Splits one RTP payload into its descriptor and the VP9 bytes after it.

    Args:
        payload: the RTP payload (after the RTP header and any padding).

    Raises:
        Vp9PayloadError: the descriptor is truncated or inconsistent, or no VP9 data
            follows it.
    """
    reader = _Reader(payload)
    b = reader.byte()
    has_pid, p, has_layers, f, v = b & 0x80, b & 0x40, b & 0x20, b & 0x10, b & 0x02
    picture_id: int | None = None
    long_picture_id = True
    temporal_id: int | None = None
    switching_up = inter_layer = False
    spatial_id = 0
    tl0_pic_idx: int | None = None
    p_diffs: list[int] = []
    ss: Vp9ScalabilityStructure | None = None
    if has_pid:
        first = reader.byte()
        long_picture_id = bool(first & 0x80)
        picture_id = (first & 0x7F) << 8 | reader.byte() if long_picture_id else first
    if has_layers:
        lb = reader.byte()
        temporal_id, switching_up = lb >> 5, bool(lb & 0x10)
        spatial_id, inter_layer = (lb >> 1) & 7, bool(lb & 1)
        if not f:
            tl0_pic_idx = reader.byte()
    if f and p:
        while True:
            rb = reader.byte()
            p_diffs.append(rb >> 1)
            if not rb & 1:
                break
            if len(p_diffs) == MAX_REFERENCES:
                raise Vp9PayloadError("more than three P_DIFF")
    if v:
        ss = _parse_ss(reader)
    data = payload[reader.pos :]
    if not data:
        raise Vp9PayloadError("no VP9 data after the descriptor")
    descriptor = Vp9Descriptor(
        start_of_frame=bool(b & 0x08),
        end_of_frame=bool(b & 0x04),
        inter_picture=bool(p),
        flexible=bool(f),
        not_upper_reference=bool(b & 0x01),
        picture_id=picture_id,
        long_picture_id=long_picture_id,
        temporal_id=temporal_id,
        switching_up=switching_up,
        spatial_id=spatial_id,
        inter_layer=inter_layer,
        tl0_pic_idx=tl0_pic_idx,
        p_diffs=tuple(p_diffs),
        scalability=ss,
    )
    return descriptor, data


def depayload(payload: bytes) -> bytes:
    """The VP9 bytes of one payload, in the shape of aiortc's `vp8_depayload`.

    Args:
        payload: one RTP payload.

    Raises:
        Vp9PayloadError: as `parse_payload`.
    """
    return parse_payload(payload)[1]


@dataclass(frozen=True, slots=True)
class Vp9FrameHeader:
    """What the start of a VP9 uncompressed header says.

    Attributes:
        keyframe: frame_type is KEY_FRAME.
        show_existing_frame: the frame only re-shows a decoded one.
        width: frame width, read from keyframes only.
        height: frame height, read from keyframes only.
    """

    keyframe: bool
    show_existing_frame: bool = False
    width: int | None = None
    height: int | None = None


def parse_frame_header(frame: bytes) -> Vp9FrameHeader:
    """Reads frame type and, on keyframes, size from the uncompressed header.

    Args:
        frame: a VP9 frame or superframe (its first frame is read).

    Raises:
        Vp9PayloadError: not a VP9 frame, or the header is truncated.
    """
    bits = _BitReader(frame[:16])
    if bits.read(2) != 2:
        raise Vp9PayloadError("no VP9 frame marker")
    profile = bits.read(1) | bits.read(1) << 1
    if profile == 3:
        bits.read(1)  # reserved_zero
    if bits.read(1):
        return Vp9FrameHeader(keyframe=False, show_existing_frame=True)
    if bits.read(1):  # frame_type 1 is NON_KEY_FRAME
        return Vp9FrameHeader(keyframe=False)
    bits.read(2)  # show_frame, error_resilient_mode
    if bits.read(24) != 0x498342:
        raise Vp9PayloadError("keyframe without the VP9 sync code")
    if profile >= 2:
        bits.read(1)  # ten_or_twelve_bit
    rgb = bits.read(3) == 7  # color_space CS_RGB
    bits.read(0 if rgb else 1)  # color_range
    if profile in (1, 3):
        bits.read(1 if rgb else 3)  # [subsampling_x, subsampling_y,] reserved_zero
    width, height = bits.read(16) + 1, bits.read(16) + 1
    return Vp9FrameHeader(keyframe=True, width=width, height=height)


@dataclass(frozen=True, slots=True)
class Vp9Frame:
    """One complete picture, as the decoder wants it.

    Attributes:
        data: the VP9 frame; pictures of several spatial layers get a superframe index.
        timestamp: the RTP timestamp shared by its packets.
        keyframe: P=0 on the first packet and the header says KEY_FRAME.
        picture_id: from the first packet's descriptor, if any.
        width: the latest known width (SS or keyframe header), None before any.
        height: the latest known height, likewise.
    """

    data: bytes
    timestamp: int
    keyframe: bool
    picture_id: int | None
    width: int | None
    height: int | None


@dataclass(slots=True)
class _Pending:
    """Packets of one RTP timestamp not yet assembled, by unwrapped sequence number."""

    packets: dict[int, tuple[Vp9Descriptor, bytes]] = field(default_factory=dict)
    start: int | None = None
    end: int | None = None
    low: int = 0
    high: int = 0
    size: int = 0

    def complete(self) -> bool:
        return (
            self.start == self.low
            and self.end == self.high
            and len(self.packets) == self.high - self.low + 1
        )


class Vp9FrameAssembler:
    """Collects the RTP packets of one VP9 stream into complete pictures.

    A picture is complete when its packets run without a gap from a B=1 packet of spatial
    layer 0 to a packet with the RTP marker bit. Packets may arrive in any order within
    a picture; when a later picture completes first, the earlier one is given up. A gap
    in sequence numbers between consecutive pictures means a lost picture: from then on
    only a keyframe is returned. Padding-only packets (empty payload) fill gaps when
    they arrive in order.

    Args:
        max_frame_bytes: pictures larger than this are dropped.
        max_pending_packets: when more packets wait, the oldest pictures are dropped.

    Attributes:
        frames_dropped: pictures given up (incomplete, too big, or waiting for a keyframe).
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
        self._pending: dict[int, _Pending] = {}
        self._count = 0
        self._bytes = 0  # held at most twice max_frame_bytes: one picture and the next
        self._highest: int | None = None  # unwrapped sequence numbers
        self._last_end: int | None = None
        self._discarding: int | None = None  # timestamp of a picture dropped as too big
        self._need_keyframe = True
        self._size: tuple[int, int] | None = None

    @property
    def needs_keyframe(self) -> bool:
        """Whether only a keyframe can be returned next (at start and after a loss)."""
        return self._need_keyframe

    @property
    def pending_packets(self) -> int:
        """Packets held for pictures not yet complete; at most `max_pending_packets`."""
        return self._count

    def feed(
        self, payload: bytes, *, sequence_number: int, timestamp: int, marker: bool
    ) -> Vp9Frame | None:
        """Adds one RTP packet; returns the picture it completes, if any.

        Args:
            payload: the RTP payload.
            sequence_number: the RTP sequence number (16 bits).
            timestamp: the RTP timestamp.
            marker: the RTP marker bit (last packet of a picture).

        Raises:
            Vp9PayloadError: the payload is malformed; it is not kept, and its picture
                will be dropped as incomplete.
        """
        seq = self._unwrap(sequence_number)
        if not payload:
            if self._last_end is not None and seq == self._last_end + 1:
                self._last_end = seq
            return None
        descriptor, data = parse_payload(payload)
        if self._last_end is not None and seq <= self._last_end:
            return None  # a duplicate, or too late: its picture is gone
        if timestamp == self._discarding:
            return None
        pending = self._pending.setdefault(timestamp, _Pending(low=seq, high=seq))
        if seq in pending.packets:
            return None
        pending.packets[seq] = (descriptor, data)
        pending.low, pending.high = min(pending.low, seq), max(pending.high, seq)
        pending.size += len(data)
        self._count += 1
        self._bytes += len(data)
        if descriptor.start_of_frame and descriptor.spatial_id == 0:
            pending.start = seq if pending.start is None else min(pending.start, seq)
        if marker:
            pending.end = seq if pending.end is None else min(pending.end, seq)
        if pending.size > self.max_frame_bytes:
            self._drop(timestamp)
            self._discarding = timestamp  # the rest of it would only be dropped again
        while self._count > self.max_pending_packets or self._bytes > 2 * self.max_frame_bytes:
            self._drop(min(self._pending, key=lambda ts: self._pending[ts].low))
        if timestamp in self._pending and pending.complete():
            return self._complete(timestamp, pending)
        return None

    def _unwrap(self, sequence_number: int) -> int:
        if self._highest is None:
            self._highest = sequence_number % _SEQ_MOD
            return self._highest
        delta = (sequence_number - self._highest) % _SEQ_MOD
        seq = self._highest + (delta - _SEQ_MOD if delta >= _SEQ_MOD // 2 else delta)
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

    def _complete(self, timestamp: int, pending: _Pending) -> Vp9Frame | None:
        self._forget(timestamp)
        for ts, other in list(self._pending.items()):
            if other.low < pending.high:
                self._drop(ts)  # older and incomplete: lost
        if self._last_end is not None and pending.low != self._last_end + 1:
            self._need_keyframe = True
        self._last_end = pending.high
        self._discarding = None  # timestamps come round again after 13 hours
        frame = self._assemble(timestamp, [pending.packets[s] for s in sorted(pending.packets)])
        if frame is None or (self._need_keyframe and not frame.keyframe):
            self.frames_dropped += 1
            self._need_keyframe = True
            return None
        self._need_keyframe = False
        return frame

    def _assemble(
        self, timestamp: int, packets: list[tuple[Vp9Descriptor, bytes]]
    ) -> Vp9Frame | None:
        layers: list[bytearray] = []
        spatial_id = 0
        resolutions: tuple[tuple[int, int], ...] | None = None
        for descriptor, data in packets:
            if descriptor.start_of_frame:
                layers.append(bytearray())
                spatial_id = descriptor.spatial_id
            layers[-1] += data
            if descriptor.scalability is not None and descriptor.scalability.resolutions:
                resolutions = descriptor.scalability.resolutions
        picture = _superframe(layers)
        if picture is None or len(picture) > self.max_frame_bytes:
            return None
        first = packets[0][0]
        try:
            header = parse_frame_header(picture)
        except Vp9PayloadError:
            return None
        keyframe = not first.inter_picture and header.keyframe
        if resolutions is not None:  # the picture is as large as its top layer
            self._size = resolutions[min(spatial_id, len(resolutions) - 1)]
        elif keyframe and header.width is not None and header.height is not None:
            self._size = (header.width, header.height)
        width, height = self._size if self._size is not None else (None, None)
        return Vp9Frame(picture, timestamp, keyframe, first.picture_id, width, height)


def packetize(
    frame: bytes, *, picture_id: int, mtu: int = DEFAULT_MTU, keyframe: bool | None = None
) -> list[bytes]:
    """Cuts one VP9 frame into RTP payloads of at most `mtu` bytes.

    Non-flexible mode without layer indices; a keyframe's first packet carries an SS
    with one spatial layer, its resolution, and a one-picture group (libwebrtc's
    single-layer structure).

    Args:
        frame: one encoded VP9 frame (or superframe), as the encoder returned it.
        picture_id: the 15-bit picture ID of this frame; the caller increments it.
        mtu: the largest payload to return.
        keyframe: whether `frame` is a keyframe; None reads its header.

    Raises:
        ValueError: empty frame, or `mtu` below `MIN_MTU`.
    """
    if not frame:
        raise ValueError("empty VP9 frame")
    if mtu < MIN_MTU:
        raise ValueError(f"mtu must be at least {MIN_MTU}, got {mtu}")
    header: Vp9FrameHeader | None = None
    with contextlib.suppress(Vp9PayloadError):  # not ours to police: sent as a delta
        header = parse_frame_header(frame)
    if keyframe is None:
        keyframe = header is not None and header.keyframe
    ss: Vp9ScalabilityStructure | None = None
    if keyframe:
        resolutions = None
        if header is not None and header.width is not None and header.height is not None:
            resolutions = ((header.width, header.height),)
        ss = Vp9ScalabilityStructure(
            resolutions=resolutions,
            picture_group=(Vp9PictureGroupEntry(temporal_id=0, p_diffs=(1,)),),
        )
    payloads: list[bytes] = []
    pos = 0
    while pos < len(frame):
        first = pos == 0
        descriptor = Vp9Descriptor(
            start_of_frame=first,
            end_of_frame=False,
            inter_picture=not keyframe,
            picture_id=picture_id % PICTURE_ID_MOD,
            scalability=ss if first else None,
        )
        head = bytes(descriptor)
        room = mtu - len(head)
        if pos + room >= len(frame):
            head = bytes([head[0] | 0x04]) + head[1:]  # E: this is the last packet
        payloads.append(head + frame[pos : pos + room])
        pos += room
    return payloads


class Vp9Packetizer:
    """`packetize` with the picture ID kept across frames.

    Args:
        picture_id: the ID of the first frame; pass a random one, as senders should.
        mtu: the largest payload to return.
    """

    def __init__(self, picture_id: int = 0, mtu: int = DEFAULT_MTU) -> None:
        self.picture_id = picture_id % PICTURE_ID_MOD
        self.mtu = mtu

    def packetize(self, frame: bytes, *, keyframe: bool | None = None) -> list[bytes]:
        """Payloads of one frame; the picture ID moves on by one.

        Args:
            frame: one encoded VP9 frame.
            keyframe: as for `packetize`.

        Raises:
            ValueError: as `packetize`.
        """
        payloads = packetize(frame, picture_id=self.picture_id, mtu=self.mtu, keyframe=keyframe)
        self.picture_id = (self.picture_id + 1) % PICTURE_ID_MOD
        return payloads


def _superframe(layers: list[bytearray]) -> bytes | None:
    """Joins the layer frames of one picture, with a superframe index if several."""
    if len(layers) == 1:
        return bytes(layers[0])
    if len(layers) > MAX_SUPERFRAME_FRAMES:
        return None
    mag = max(1, (max(len(layer) for layer in layers).bit_length() + 7) // 8)
    if mag > 4:
        return None
    marker = 0xC0 | (mag - 1) << 3 | (len(layers) - 1)
    index = bytes([marker]) + b"".join(len(x).to_bytes(mag, "little") for x in layers)
    return b"".join(layers) + index + bytes([marker])


def _parse_ss(reader: _Reader) -> Vp9ScalabilityStructure:
    b = reader.byte()
    spatial_layers = (b >> 5) + 1
    resolutions: tuple[tuple[int, int], ...] | None = None
    group: tuple[Vp9PictureGroupEntry, ...] | None = None
    if b & 0x10:
        resolutions = tuple((reader.u16(), reader.u16()) for _ in range(spatial_layers))
    if b & 0x08:
        entries = []
        for _ in range(reader.byte()):
            e = reader.byte()
            p_diffs = tuple(reader.byte() for _ in range((e >> 2) & 3))
            entries.append(Vp9PictureGroupEntry(e >> 5, bool(e & 0x10), p_diffs))
        group = tuple(entries)
    return Vp9ScalabilityStructure(spatial_layers, resolutions, group)


def _serialise_ss(ss: Vp9ScalabilityStructure) -> bytes:
    if not 1 <= ss.spatial_layers <= 8:
        raise ValueError("1 to 8 spatial layers")
    if ss.resolutions is not None and len(ss.resolutions) != ss.spatial_layers:
        raise ValueError("one resolution per spatial layer")
    out = bytearray(
        [
            (ss.spatial_layers - 1) << 5
            | (ss.resolutions is not None) << 4
            | (ss.picture_group is not None) << 3
        ]
    )
    for width, height in ss.resolutions or ():
        out += _check(width, 16).to_bytes(2, "big") + _check(height, 16).to_bytes(2, "big")
    if ss.picture_group is not None:
        out.append(_check(len(ss.picture_group), 8))
        for entry in ss.picture_group:
            out.append(
                _check(entry.temporal_id, 3) << 5
                | entry.switching_up << 4
                | _check(len(entry.p_diffs), 2) << 2
            )
            out += bytes(_check(p, 8) for p in entry.p_diffs)
    return bytes(out)


class _Reader:
    """Reads bytes off a payload, raising `Vp9PayloadError` past its end."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise Vp9PayloadError(f"descriptor truncated at byte {self.pos}")
        self.pos += 1
        return self.data[self.pos - 1]

    def u16(self) -> int:
        return self.byte() << 8 | self.byte()


class _BitReader:
    """Reads big-endian bit fields, raising `Vp9PayloadError` past the end."""

    def __init__(self, data: bytes) -> None:
        self.value = int.from_bytes(data, "big")
        self.left = len(data) * 8

    def read(self, n: int) -> int:
        if n > self.left:
            raise Vp9PayloadError("VP9 frame header truncated")
        self.left -= n
        return (self.value >> self.left) & ((1 << n) - 1)


def _bits(*flags: bool) -> int:
    value = 0
    for flag in flags:
        value = value << 1 | flag
    return value


def _check(value: int, bits: int) -> int:
    if not 0 <= value < 1 << bits:
        raise ValueError(f"{value} does not fit in {bits} bits")
    return value
