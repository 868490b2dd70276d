"""Framing (E3): a `Packet` per message, or the media alone; what the session counts."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sluice.wire.framing import Framing, frame, framing_of, payload_of
from sluice.wire.packet import PacketDecodeError, decode, encode
from worker.protocol.egress_session import EgressSession, StreamInfo
from worker.protocol.reconnect import Backlog

media = st.binary(max_size=4096)
uint32 = st.integers(min_value=0, max_value=(1 << 32) - 1)


def test_a_record_without_framing_is_packet() -> None:
    assert framing_of({}) is Framing.PACKET  # a record from before E3
    assert framing_of({"framing": "packet"}) is Framing.PACKET
    assert framing_of({"framing": "raw"}) is Framing.RAW
    with pytest.raises(ValueError):
        framing_of({"framing": "protobuf"})


@given(uint32, uint32, media)
def test_packet_framing_is_the_packet_byte_for_byte(
    sequence: int, timestamp: int, payload: bytes
) -> None:
    message = frame(Framing.PACKET, sequence, timestamp, payload)
    assert message == encode(sequence, timestamp, payload)
    assert payload_of(Framing.PACKET, message) == payload


@given(uint32, uint32, media)
def test_raw_framing_is_the_payload_alone(sequence: int, timestamp: int, payload: bytes) -> None:
    message = frame(Framing.RAW, sequence, timestamp, payload)
    assert message == payload
    assert payload_of(Framing.RAW, message) == payload
    assert payload_of(Framing.RAW, bytearray(message)) == payload


def test_a_zero_length_message_ends_a_segment_either_way() -> None:
    assert payload_of(Framing.PACKET, b"") == b""
    assert payload_of(Framing.RAW, b"") == b""


def test_raw_takes_every_byte_a_packet_decoder_would_refuse() -> None:
    garbage = b"\xff\xff\xff\xff"  # not a Packet
    with pytest.raises(PacketDecodeError):
        payload_of(Framing.PACKET, garbage)
    assert payload_of(Framing.RAW, garbage) == garbage
    # And audio that happens to parse as a Packet is still audio, whole.
    looks_like_a_packet = encode(7, 960, b"\x01\x02")
    assert decode(looks_like_a_packet).payload == b"\x01\x02"
    assert payload_of(Framing.RAW, looks_like_a_packet) == looks_like_a_packet


def test_the_session_counts_what_is_written_and_events_keep_the_numbers() -> None:
    """Raw messages carry no numbers; `bytes` counts what went out, and `start` and
    `gap` still say where the stream is."""
    info = StreamInfo("a", "s", "t", {"codec": "pcm", "framing": "raw"}, timestamp_step=320)
    session = EgressSession(Backlog(max_messages=2), events=info)
    payloads = [bytes([n]) * 640 for n in range(4)]
    for n, payload in enumerate(payloads):  # 4 into a backlog of 2: the first two drop
        session.produce(frame(Framing.RAW, n, n * 320, payload), n, n * 320)
    session.connection_up(0.0)
    sent: list[bytes | str] = []
    while (message := session.next_message()) is not None:
        sent.append(message)
        session.written()
    start, gap = json.loads(str(sent[0])), json.loads(str(sent[1]))
    assert start["format"] == {"codec": "pcm", "framing": "raw"}
    assert (start["sequenceNumber"], start["timestamp"]) == (2, 640)
    assert gap == {"event": "gap", "droppedFrames": 2, "fromTimestamp": 0, "toTimestamp": 640}
    assert sent[2:] == payloads[2:]
    assert session.counters == {"packets": 2, "bytes": 1280, "dropped": 2, "reconnects": 0}
