"""The wire `Packet`: exact bytes, the empty message, the size limit, fuzzed decoding."""

from __future__ import annotations

import resource
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.wire.packet import (
    MAX_MESSAGE_BYTES,
    UINT32_MOD,
    DecodedPacket,
    MessageTooBig,
    PacketDecodeError,
    PacketError,
    check_size,
    decode,
    encode,
)

uint32 = st.integers(min_value=0, max_value=UINT32_MOD - 1)


def varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


# --- encode -------------------------------------------------------------------------


def test_encode_exact_bytes() -> None:
    # field 1 varint, field 2 varint, field 5 length-delimited
    assert encode(1, 2, b"ab") == b"\x08\x01\x10\x02\x2a\x02ab"


def test_encode_multibyte_varints() -> None:
    assert encode(300, UINT32_MOD - 1, b"") == b"\x08\xac\x02\x10\xff\xff\xff\xff\x0f"


def test_encode_empty_packet_is_zero_length_message() -> None:
    assert encode(0, 0, b"") == b""


def test_encode_audio_frame_overhead() -> None:
    message = encode(123, 960, bytes(3840))
    assert len(message) == 2 + 3 + 3 + 3840  # tag+varint, tag+2-byte varint, tag+len


@pytest.mark.parametrize("value", [-1, UINT32_MOD])
def test_encode_refuses_numbers_outside_uint32(value: int) -> None:
    with pytest.raises(ValueError):
        encode(value, 0, b"")
    with pytest.raises(ValueError):
        encode(0, value, b"")


# --- decode -------------------------------------------------------------------------


def test_decode_exact_bytes() -> None:
    assert decode(b"\x08\x01\x10\x02\x2a\x02ab") == DecodedPacket(1, 2, b"ab")


def test_zero_length_message_is_an_empty_packet() -> None:
    assert decode(b"") == DecodedPacket(0, 0, b"")


def test_payload_only_packet() -> None:
    # What most ingest senders send: no sequence number, no timestamp.
    assert decode(b"\x2a\x03abc") == DecodedPacket(0, 0, b"abc")


def test_decode_accepts_buffers() -> None:
    data = b"\x2a\x03abc"
    assert decode(bytearray(data)).payload == b"abc"
    assert decode(memoryview(data)).payload == b"abc"


def test_unknown_fields_are_ignored() -> None:
    unknown = b"\x18\x07" + b"\x22\x02zz"  # field 3 varint, field 4 bytes
    assert decode(unknown + b"\x2a\x01a") == DecodedPacket(0, 0, b"a")


def test_last_payload_field_wins() -> None:
    assert decode(b"\x2a\x01a\x2a\x01b").payload == b"b"


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"\x08", id="varint-missing"),
        pytest.param(b"\x08\x80", id="varint-truncated"),
        pytest.param(b"\x2a\x05ab", id="payload-truncated"),
        pytest.param(b"\x2a", id="length-missing"),
        pytest.param(b"\x00", id="field-zero"),
        pytest.param(b"\xff", id="tag-truncated"),
        pytest.param(b"\x0c", id="stray-end-group"),
        pytest.param(b"\x08" + b"\x80" * 10 + b"\x01", id="varint-too-long"),
        pytest.param(b"\x0b" * 200, id="groups-nested-too-deep"),
        pytest.param(b"\x2a" + varint(2**31) + b"x", id="length-2GiB"),
        pytest.param(b"\x2a" + b"\xff" * 9 + b"\x01", id="length-2**64"),
    ],
)
def test_undecodable(data: bytes) -> None:
    with pytest.raises(PacketDecodeError) as info:
        decode(data)
    assert info.value.size == len(data)
    assert isinstance(info.value, PacketError)


def test_huge_length_prefixes_allocate_nothing() -> None:
    # A few bytes claiming gigabytes must fail on the length check, not after malloc.
    # ru_maxrss is the process high-water mark (KiB on Linux, bytes on macOS).
    scale = 1 if sys.platform == "darwin" else 1024
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
    for length in (2**28, 2**31, 2**32 - 1, 2**40):
        for _ in range(100):
            with pytest.raises(PacketDecodeError):
                decode(b"\x2a" + varint(length) + bytes(16))
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
    assert after - before < 64 * 2**20


@settings(max_examples=300)
@given(st.binary(max_size=256))
def test_fuzz_arbitrary_bytes(data: bytes) -> None:
    try:
        packet = decode(data)
    except PacketDecodeError:
        return
    assert 0 <= packet.sequence_number < UINT32_MOD
    assert 0 <= packet.timestamp < UINT32_MOD
    assert len(packet.payload) <= len(data)


@given(st.binary(min_size=1, max_size=64), st.data())
def test_fuzz_mutated_packets(payload: bytes, data: st.DataObject) -> None:
    # Random bytes rarely get past the first tag; corrupting a valid Packet reaches
    # deeper into the parser.
    message = bytearray(encode(7, 9, payload))
    index = data.draw(st.integers(0, len(message) - 1))
    message[index] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(message)))
    try:
        packet = decode(bytes(message[:cut]))
    except PacketDecodeError:
        return
    assert len(packet.payload) <= cut


@given(uint32, uint32, st.binary(max_size=4096))
def test_roundtrip(sequence_number: int, timestamp: int, payload: bytes) -> None:
    assert decode(encode(sequence_number, timestamp, payload)) == DecodedPacket(
        sequence_number, timestamp, payload
    )


# --- size limit ---------------------------------------------------------------------


def test_limit_is_32_kib_overhead_included() -> None:
    payload = bytes(MAX_MESSAGE_BYTES - 4)  # tag (1) + 3-byte length varint
    message = encode(0, 0, payload)
    assert len(message) == 32_768
    check_size(len(message))
    assert decode(message).payload == payload


def test_one_byte_over_the_limit_is_too_big() -> None:
    message = encode(0, 0, bytes(MAX_MESSAGE_BYTES - 3))
    assert len(message) == 32_769
    with pytest.raises(MessageTooBig) as info:
        check_size(len(message))
    assert (info.value.size, info.value.max_size) == (32_769, 32_768)
    assert isinstance(info.value, PacketError)
