"""VP9 over RTP (RFC 9628), the payload: descriptors, their parsing, the frame header.

Pure, bytes in and out. `parse_payload(payload)` splits one RTP payload into its
`Vp9Descriptor` and VP9 bytes; `bytes(descriptor)` is its inverse;
`parse_frame_header(frame)` reads frame type and keyframe size from a VP9 frame.
`sluice.media.rtp.vp9` builds the assembler and packetizer on these.

Every malformed payload raises `Vp9PayloadError` and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass

from sluice.errors import MediaError

MAX_REFERENCES = 3  # RFC 9628: at most three P_DIFF per layer frame


class Vp9PayloadError(MediaError):
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
