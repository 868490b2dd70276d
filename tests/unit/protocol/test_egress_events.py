"""E4 stream events from the egress session: `start`, `gap`, `stop`, decided by calls and
`now` alone. No sockets, no sleeps."""

from __future__ import annotations

import json
from typing import Any

from sluice.state.records import CloseReason
from worker.protocol.egress_session import EgressSession, SessionState, StreamInfo
from worker.protocol.reconnect import Backlog, LatestOnly

T0 = 100.0
STEP = 320  # 16 kHz, 20 ms
FORMAT = {"codec": "pcm", "sampleRate": 16000, "channels": 1, "frameMs": 20, "framing": "packet"}
INFO = StreamInfo("a1", "s1", "mic", FORMAT, timestamp_step=STEP)


def packet(n: int) -> bytes:
    return b"P" + n.to_bytes(4, "big")


def produce(session: EgressSession, *numbers: int) -> None:
    for n in numbers:
        session.produce(packet(n), n, n * STEP)


def send_all(session: EgressSession) -> list[Any]:
    """What the endpoint receives: events as dicts, Packets as their numbers."""
    received: list[Any] = []
    while (message := session.next_message()) is not None:
        session.written()
        if isinstance(message, str):
            received.append(json.loads(message))
        else:
            received.append(int.from_bytes(message[1:], "big"))
    return received


def start(connection: int, sequence: int, timestamp: int) -> dict[str, Any]:
    return {
        "event": "start",
        "adapterId": "a1",
        "sessionId": "s1",
        "trackName": "mic",
        "connection": connection,
        "format": FORMAT,
        "sequenceNumber": sequence,
        "timestamp": timestamp,
    }


def lose_and_reconnect(session: EgressSession, lost_at: float, up_at: float) -> None:
    session.connection_lost(lost_at, None)
    assert session.redial_delay(lost_at) is not None
    session.connection_up(up_at)


def test_without_events_nothing_but_media_is_sent() -> None:
    session = EgressSession(Backlog(max_messages=2))
    session.connection_up(T0)
    produce(session, 0, 1, 2, 3)  # two dropped
    assert send_all(session) == [2, 3]
    lose_and_reconnect(session, T0 + 1, T0 + 2)
    produce(session, 4)
    assert send_all(session) == [4]
    assert session.closing(CloseReason.API_CLOSE) is None


def test_start_comes_first_on_every_connection_with_the_next_packets_numbers() -> None:
    session = EgressSession(Backlog(max_messages=100), events=INFO)
    session.connection_up(T0)
    # Nothing produced yet: the numbers the first Packet will have.
    assert send_all(session) == [start(1, 0, 0)]
    produce(session, 0, 1, 2)
    assert send_all(session) == [0, 1, 2]
    lose_and_reconnect(session, T0 + 1, T0 + 1.5)
    # Nothing waiting: the next Packet's numbers, one step on.
    assert send_all(session) == [start(2, 3, 3 * STEP)]
    produce(session, 3)
    assert session.next_message() == packet(3)  # taken, then the connection drops
    session.connection_lost(T0 + 2, 1006)
    produce(session, 4, 5)
    session.redial_delay(T0 + 2)
    session.connection_up(T0 + 3)
    # The Packet left in flight goes first, and `start` says so.
    assert send_all(session) == [start(3, 3, 3 * STEP), 3, 4, 5]
    assert session.counters["packets"] == 6  # events are not Packets
    assert session.counters["reconnects"] == 2


def test_a_start_not_yet_written_when_the_connection_drops_is_not_sent_again() -> None:
    session = EgressSession(Backlog(max_messages=100), events=INFO)
    session.connection_up(T0)
    assert json.loads(session.next_message() or "")["connection"] == 1
    session.connection_lost(T0 + 0.1, None)  # before it was written
    session.redial_delay(T0 + 0.1)
    session.connection_up(T0 + 0.5)
    produce(session, 0)
    assert send_all(session) == [start(2, 0, 0), 0]


def test_gap_goes_right_before_the_first_media_after_backlog_drops() -> None:
    session = EgressSession(Backlog(max_messages=3), events=INFO)
    session.connection_up(T0)
    produce(session, 0, 1)
    assert send_all(session) == [start(1, 0, 0), 0, 1]
    session.connection_lost(T0 + 1, None)
    produce(session, *range(2, 10))  # 8 while away, 3 kept: 2 .. 6 dropped
    session.redial_delay(T0 + 1)
    session.connection_up(T0 + 2)
    gap = {"event": "gap", "droppedFrames": 5, "fromTimestamp": 2 * STEP, "toTimestamp": 7 * STEP}
    assert send_all(session) == [start(2, 7, 7 * STEP), gap, 7, 8, 9]
    assert session.counters["dropped"] == 5
    produce(session, 10)
    assert send_all(session) == [10]  # told once


def test_a_slow_reader_gets_a_gap_without_any_reconnect() -> None:
    session = EgressSession(Backlog(max_messages=2), events=INFO)
    session.connection_up(T0)
    assert send_all(session) == [start(1, 0, 0)]
    produce(session, 0)
    assert session.next_message() == packet(0)  # being written, slowly
    produce(session, 1, 2, 3, 4)  # 1 and 2 dropped
    session.written()
    gap = {"event": "gap", "droppedFrames": 2, "fromTimestamp": STEP, "toTimestamp": 3 * STEP}
    assert send_all(session) == [gap, 3, 4]


def test_a_gap_whose_write_was_cut_short_goes_on_the_next_connection() -> None:
    session = EgressSession(Backlog(max_messages=1), events=INFO)
    session.connection_up(T0)
    send_all(session)
    produce(session, 0, 1)  # 0 dropped
    assert json.loads(session.next_message() or "")["event"] == "gap"
    lose_and_reconnect(session, T0 + 1, T0 + 2)
    gap = {"event": "gap", "droppedFrames": 1, "fromTimestamp": 0, "toTimestamp": STEP}
    assert send_all(session) == [start(2, 1, STEP), gap, 1]


def test_jpeg_latest_only_reports_the_pictures_replaced_while_away() -> None:
    info = StreamInfo("a1", "s1", "cam", {"codec": "jpeg", "fps": 1.0}, timestamp_step=90_000)
    session = EgressSession(LatestOnly(), events=info)
    session.connection_up(T0)
    session.connection_lost(T0 + 0.5, None)
    for n in range(3):
        session.produce(packet(n), n, n * 90_000)
    session.redial_delay(T0 + 0.5)
    session.connection_up(T0 + 3)
    received = send_all(session)
    assert [m["event"] for m in received[:2]] == ["start", "gap"]
    assert received[1] == {
        "event": "gap",
        "droppedFrames": 2,
        "fromTimestamp": 0,
        "toTimestamp": 180_000,
    }
    assert received[2:] == [2]


def test_a_resume_is_told_as_a_gap_from_the_lost_position() -> None:
    """Another worker picks up: the first connection's start, then the gap, then media."""
    info = StreamInfo("a1", "s1", "mic", FORMAT, timestamp_step=STEP, first_connection=3)
    session = EgressSession(
        Backlog(max_messages=100), events=info, first_sequence=120, first_timestamp=36_000
    )
    session.lost_from(100, 99 * STEP + STEP)  # the lost process saved next 100, ts of 99
    session.connection_up(T0)
    produce(session, 120)
    gap = {
        "event": "gap",
        "droppedFrames": 20,
        "fromTimestamp": 100 * STEP,
        "toTimestamp": 120 * STEP,
    }
    assert send_all(session) == [start(3, 120, 36_000), gap, 120]


def test_stop_is_given_with_the_first_reason() -> None:
    closed = EgressSession(Backlog(max_messages=4), events=INFO)
    closed.connection_up(T0)
    assert closed.closing(CloseReason.API_CLOSE) == '{"event":"stop","reason":"api_close"}'
    assert (closed.state, closed.close_reason) == (SessionState.ENDED, CloseReason.API_CLOSE)
    ended = EgressSession(Backlog(max_messages=4), events=INFO)
    ended.connection_up(T0)
    ended.track_ended()  # the session ended first: that reason is the one told
    assert json.loads(ended.closing(CloseReason.SHUTDOWN) or "") == {
        "event": "stop",
        "reason": "track_ended",
    }


def test_numbers_wrap_as_uint32() -> None:
    session = EgressSession(
        Backlog(max_messages=4), events=INFO, first_sequence=2**32 - 1, first_timestamp=2**32 - 10
    )
    session.produce(packet(0), 2**32 - 1, 2**32 - 10)
    session.connection_up(T0)
    assert send_all(session) == [start(1, 2**32 - 1, 2**32 - 10), 0]
    session.connection_lost(T0 + 1, None)
    session.redial_delay(T0 + 1)
    session.connection_up(T0 + 2)
    assert send_all(session) == [start(2, 0, STEP - 10)]
