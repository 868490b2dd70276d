"""The hand-written Packet codec against the protobuf runtime, byte for byte, fuzzed."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from sluice.wire.packet_pb2 import Packet as ProtoPacket
from sluice_endpoint.errors import PacketDecodeError
from sluice_endpoint.packet import decode_packet, encode_packet, packet_size
from tests.unit.protocol.test_packet import varint

uint32 = st.integers(0, 2**32 - 1)
payloads = st.binary(max_size=300) | st.integers(0, 40_000).map(bytes)


def reference(data: bytes) -> tuple[int, int, bytes] | None:
    message = ProtoPacket()
    try:
        message.ParseFromString(data)
    except Exception:
        return None
    return message.sequenceNumber, message.timestamp, message.payload


def ours(data: bytes) -> tuple[int, int, bytes] | None:
    try:
        packet = decode_packet(data)
    except PacketDecodeError:
        return None
    return packet.sequence_number, packet.timestamp, packet.payload


@given(uint32, uint32, payloads)
@example(0, 0, b"")
@example(2**32 - 1, 2**32 - 1, b"\x00" * 32_764)
def test_encode_is_the_runtimes_bytes(sequence_number: int, timestamp: int, payload: bytes) -> None:
    expected = ProtoPacket(
        sequenceNumber=sequence_number, timestamp=timestamp, payload=payload
    ).SerializeToString()
    assert encode_packet(sequence_number, timestamp, payload) == expected
    assert packet_size(sequence_number, timestamp, len(payload)) == len(expected)
    assert ours(expected) == (sequence_number, timestamp, payload)


def test_encode_refuses_numbers_outside_uint32() -> None:
    for bad in (-1, 2**32):
        try:
            encode_packet(bad, 0, b"")
        except ValueError:
            continue
        raise AssertionError(f"{bad} was encoded")


# Bytes that are tags and varint parts of this message, so random input hits real paths:
# the three fields, wrong wire types, groups, field 0, continuation bytes.
TAG_BYTES = [0x08, 0x10, 0x2A, 0x0B, 0x0C, 0x13, 0x14, 0x00, 0x80, 0xFF, 0x01, 0x02, 0x09]
TAG_BYTES += [0x0D, 0x0E, 0x0F, 0x2B, 0x2C, 0x2D, 0x7F, 0x05, 0x0A, 0x12, 0xF8]
wire_like = st.lists(st.sampled_from(TAG_BYTES) | st.integers(0, 255), max_size=40).map(bytes)


@settings(max_examples=800)
@given(st.binary(max_size=64) | wire_like)
@example(b"\x0b" * 100 + b"\x0c" * 100)  # 100 nested unknown groups: accepted
@example(b"\x0b" * 101 + b"\x0c" * 101)  # 101: refused
@example(b"\x2a\x81\x80\x80\x80\x80\x00a")  # a length in 6 bytes: refused
@example(b"\x08" + b"\xff" * 9 + b"\x02")  # a 10-byte varint: accepted, truncated
@example(b"\x0b\x00\x00\x0c")  # field 0 inside an unknown group: accepted
def test_decode_accepts_and_refuses_what_the_runtime_does(data: bytes) -> None:
    assert ours(data) == reference(data)


def field(number: int, wire_type: int) -> bytes:
    return varint((number << 3) | wire_type)


# Well-formed messages with repeated known fields, unknown fields of every wire type, and
# known field numbers with the wrong wire type (the runtime keeps those as unknown).
field_number = st.sampled_from([1, 2, 3, 5, 6, 15, 16, 2047, 2**29 - 1])
value_of = {
    0: st.integers(0, 2**64 - 1).map(varint),
    1: st.binary(min_size=8, max_size=8),
    2: st.binary(max_size=20).map(lambda b: varint(len(b)) + b),
    5: st.binary(min_size=4, max_size=4),
}
one_field = st.one_of(*[st.tuples(field_number, st.just(wt), v) for wt, v in value_of.items()]).map(
    lambda f: field(f[0], f[1]) + f[2]
)
group = st.tuples(field_number, st.lists(one_field, max_size=3)).map(
    lambda g: field(g[0], 3) + b"".join(g[1]) + field(g[0], 4)
)


@settings(max_examples=300)
@given(st.lists(one_field | group, max_size=8).map(b"".join))
def test_decode_of_well_formed_messages_matches(data: bytes) -> None:
    assert ours(data) == reference(data)
    assert ours(data) is not None


def test_a_zero_length_message_is_the_empty_packet() -> None:
    assert encode_packet(0, 0, b"") == b""
    assert ours(b"") == (0, 0, b"")


def test_decode_takes_any_buffer() -> None:
    message = encode_packet(7, 960, b"abc")
    assert ours(message) == ours(bytes(bytearray(message)))
    assert decode_packet(memoryview(message)).payload == b"abc"
