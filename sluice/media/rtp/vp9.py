"""VP9 over RTP (RFC 9628): a frame assembler and a packetizer.

aiortc has no VP9 depacketizer; this module is the pure part of one. Bytes in, frames
out, no I/O:

- `parse_payload(payload)` (from `sluice.media.rtp.vp9_payload`) splits one RTP payload into its
  `Vp9Descriptor` and VP9 bytes.
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
from dataclasses import dataclass

from sluice.media.rtp.assembly import (
    MAX_FRAME_BYTES,
    MAX_PENDING_PACKETS,
    FrameAssemblerCore,
    Pending,
)
from sluice.media.rtp.vp9_payload import (
    MAX_REFERENCES,
    Vp9Descriptor,
    Vp9FrameHeader,
    Vp9PayloadError,
    Vp9PictureGroupEntry,
    Vp9ScalabilityStructure,
    depayload,
    parse_frame_header,
    parse_payload,
)

__all__ = [
    "DEFAULT_MTU",
    "MAX_FRAME_BYTES",
    "MAX_PENDING_PACKETS",
    "MAX_REFERENCES",
    "MIN_MTU",
    "PICTURE_ID_MOD",
    "Vp9Descriptor",
    "Vp9Frame",
    "Vp9FrameAssembler",
    "Vp9FrameHeader",
    "Vp9Packetizer",
    "Vp9PayloadError",
    "Vp9PictureGroupEntry",
    "Vp9ScalabilityStructure",
    "depayload",
    "packetize",
    "parse_frame_header",
    "parse_payload",
]

DEFAULT_MTU = 1200  # RTP payload bytes; what libwebrtc leaves after headers and SRTP
MIN_MTU = 12  # a keyframe's first descriptor (3 bytes, SS 8) and one byte of the frame
PICTURE_ID_MOD = 1 << 15
MAX_SUPERFRAME_FRAMES = 8  # the superframe index counts frames in 3 bits

_Packet = tuple[Vp9Descriptor, bytes]


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


class Vp9FrameAssembler(FrameAssemblerCore[_Packet, Vp9Frame]):
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
        super().__init__(max_frame_bytes=max_frame_bytes, max_pending_packets=max_pending_packets)
        self._size: tuple[int, int] | None = None

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
        return self._add(payload, sequence_number, timestamp, marker)

    def _parse(self, payload: bytes) -> tuple[_Packet, int]:
        descriptor, data = parse_payload(payload)
        return (descriptor, data), len(data)

    def _mark(self, pending: Pending[_Packet], seq: int, parsed: _Packet) -> None:
        descriptor = parsed[0]
        if descriptor.start_of_frame and descriptor.spatial_id == 0:
            pending.start = seq if pending.start is None else min(pending.start, seq)

    def _accept(self, frame: Vp9Frame, after_loss: bool) -> bool:
        return frame.keyframe or not after_loss

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
