"""The wire `Packet`, hand-written so that the SDK forces no protobuf version on anyone.

`message Packet { uint32 sequenceNumber = 1; uint32 timestamp = 2; bytes payload = 5; }`

`encode_packet` writes exactly the bytes the protobuf runtime writes (fields in number
order, zero values left out), and `decode_packet` accepts and refuses exactly what the
protobuf runtime (upb) accepts and refuses: unknown fields and groups are skipped, a
known field with another wire type is an unknown field, the last occurrence of a field
wins. The test suite checks both against the runtime, fuzzed.
"""

from __future__ import annotations

from dataclasses import dataclass

from sluice_endpoint.errors import PacketDecodeError

# websocket-adapter.md §6: per WebSocket message, protobuf overhead included.
MAX_MESSAGE_BYTES = 32_768
UINT32_MOD = 1 << 32

_SEQUENCE_NUMBER, _TIMESTAMP, _PAYLOAD = 1, 2, 5
_VARINT, _FIXED64, _LENGTH, _START_GROUP, _END_GROUP, _FIXED32 = 0, 1, 2, 3, 4, 5
# upb's limit on the nesting of unknown groups.
_MAX_DEPTH = 100

BytesLike = bytes | bytearray | memoryview


@dataclass(frozen=True, slots=True)
class Packet:
    """The three fields of one `Packet`.

    Attributes:
        sequence_number: uint32; +1 per Packet on egress audio.
        timestamp: uint32, in media clock units (the audio's sample rate, 90 kHz video).
        payload: the media; an empty payload on ingest ends a segment.
    """

    sequence_number: int
    timestamp: int
    payload: bytes


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_packet(sequence_number: int, timestamp: int, payload: BytesLike = b"") -> bytes:
    """Serialises one `Packet`, byte for byte as the protobuf runtime does.

    `encode_packet(0, 0, b"")` is `b""`: the zero-length message that ends a segment.

    Raises:
        ValueError: a number outside uint32.
    """
    for name, value in (("sequence_number", sequence_number), ("timestamp", timestamp)):
        if not 0 <= value < UINT32_MOD:
            raise ValueError(f"{name} must be a uint32, got {value}")
    parts: list[bytes] = []
    if sequence_number:
        parts += (b"\x08", _varint(sequence_number))
    if timestamp:
        parts += (b"\x10", _varint(timestamp))
    if payload:
        parts += (b"\x2a", _varint(len(payload)), bytes(payload))
    return b"".join(parts)


def packet_size(sequence_number: int, timestamp: int, payload_bytes: int) -> int:
    """The length of `encode_packet(...)` for a payload of `payload_bytes`, without building it."""
    size = 0
    if sequence_number:
        size += 1 + len(_varint(sequence_number))
    if timestamp:
        size += 1 + len(_varint(timestamp))
    if payload_bytes:
        size += 1 + len(_varint(payload_bytes)) + payload_bytes
    return size


class _Reader:
    """A cursor over the message; every read refuses to run past the end."""

    def __init__(self, data: BytesLike) -> None:
        # Indexing bytes is several times faster than indexing a memoryview.
        self.data = data if isinstance(data, bytes) else bytes(data)
        self.pos = 0

    def varint(self, max_bytes: int = 10) -> int:
        value = shift = 0
        for _ in range(max_bytes):
            if self.pos >= len(self.data):
                raise ValueError("truncated varint")
            byte = self.data[self.pos]
            self.pos += 1
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value & 0xFFFF_FFFF_FFFF_FFFF
            shift += 7
        raise ValueError("varint too long")

    def tag(self) -> tuple[int, int]:
        tag = self.varint(max_bytes=5)
        if tag >= UINT32_MOD:
            raise ValueError("tag too large")
        return tag >> 3, tag & 7

    def take(self, size: int) -> bytes:
        if size > len(self.data) - self.pos:
            raise ValueError("field runs past the end")
        chunk = self.data[self.pos : self.pos + size]
        self.pos += size
        return chunk

    def length(self) -> int:
        size = self.varint(max_bytes=5)
        if size >= 1 << 31:
            raise ValueError("length too large")
        return size

    def skip(self, field: int, wire_type: int, depth: int) -> None:
        """Skips the value of an unknown field (a whole group for a start-group tag)."""
        if wire_type == _VARINT:
            self.varint()
        elif wire_type == _FIXED64:
            self.take(8)
        elif wire_type == _FIXED32:
            self.take(4)
        elif wire_type == _LENGTH:
            self.take(self.length())
        elif wire_type == _START_GROUP:
            if depth >= _MAX_DEPTH:
                raise ValueError("groups nested too deeply")
            self._skip_group(field, depth + 1)
        else:
            raise ValueError(f"unexpected wire type {wire_type}")

    def _skip_group(self, field: int, depth: int) -> None:
        while True:
            inner, wire_type = self.tag()
            if wire_type == _END_GROUP:
                if inner != field:
                    raise ValueError("mismatched end of group")
                return
            self.skip(inner, wire_type, depth)


def decode_packet(data: BytesLike) -> Packet:
    """Parses one binary WebSocket message as a `Packet`.

    A zero-length message is a valid, empty `Packet`.

    Raises:
        PacketDecodeError: the bytes are not a `Packet`; the only error this raises.
    """
    reader = _Reader(data)
    sequence_number = timestamp = 0
    payload = b""
    try:
        while reader.pos < len(reader.data):
            field, wire_type = reader.tag()
            if field == 0 or wire_type == _END_GROUP:
                raise ValueError(f"invalid tag (field {field}, wire type {wire_type})")
            if field == _SEQUENCE_NUMBER and wire_type == _VARINT:
                sequence_number = reader.varint() & 0xFFFF_FFFF
            elif field == _TIMESTAMP and wire_type == _VARINT:
                timestamp = reader.varint() & 0xFFFF_FFFF
            elif field == _PAYLOAD and wire_type == _LENGTH:
                payload = reader.take(reader.length())
            else:
                reader.skip(field, wire_type, depth=0)
    except ValueError as exc:
        raise PacketDecodeError(len(reader.data), str(exc)) from None
    return Packet(sequence_number, timestamp, payload)
