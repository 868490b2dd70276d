"""The egress session: calls in, decisions out, time passed as `now`. No sockets, no sleeps."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.state.records import CloseReason
from worker.protocol.egress_session import EgressSession, SessionState
from worker.protocol.reconnect import Backlog, LatestOnly

T0 = 500.0


def msg(n: int) -> bytes:
    return n.to_bytes(4, "big")


def number(message: bytes) -> int:
    return int.from_bytes(message[:4], "big")


def connected(backlog: Backlog | None = None, window_s: float = 5.0) -> EgressSession:
    """A session whose first connection is up at T0."""
    if backlog is None:
        backlog = Backlog(max_messages=100)
    session = EgressSession(backlog, window_s=window_s)
    session.connection_up(T0)
    return session


def send_all(session: EgressSession) -> list[int]:
    """What a sender writes until the session has nothing more for it."""
    sent = []
    while (message := session.next_message()) is not None:
        session.written()
        sent.append(number(message))
    return sent


def reconnect(session: EgressSession, lost_at: float, up_at: float) -> None:
    """Loses the connection at `lost_at`; the first re-dial succeeds at `up_at`."""
    session.connection_lost(lost_at, None)
    assert session.state is SessionState.RECONNECTING
    delay = session.redial_delay(lost_at)
    assert delay is not None and lost_at + delay <= up_at
    session.connection_up(up_at)


def adds_up(session: EgressSession, produced: int) -> bool:
    c = session.counters
    return produced == c["packets"] + c["dropped"] + session.pending


# --- closes -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "state", "reason"),
    [
        (1000, SessionState.ENDED, CloseReason.ENDPOINT_CLOSED),  # it said it is done
        (1001, SessionState.RECONNECTING, None),  # going away: a restart
        (1011, SessionState.RECONNECTING, None),
        (4000, SessionState.RECONNECTING, None),
        (None, SessionState.RECONNECTING, None),  # lost without a close frame
    ],
)
def test_what_a_close_code_means(
    code: int | None, state: SessionState, reason: CloseReason | None
) -> None:
    session = connected()
    session.connection_lost(T0 + 1, code)
    assert (session.state, session.close_reason) == (state, reason)


def test_a_1000_close_ends_endpoint_closed_without_a_redial() -> None:
    session = connected()
    session.produce(msg(1), 1, 1)
    session.connection_lost(T0 + 1, 1000)
    assert session.close_reason is CloseReason.ENDPOINT_CLOSED
    assert session.redial_delay(T0 + 1) is None
    assert session.next_message() is None
    assert session.expires_at is None
    assert session.counters["reconnects"] == 0


@pytest.mark.parametrize("code", [1000, 1001, None])
def test_a_loss_reported_while_not_connected_changes_nothing(code: int | None) -> None:
    # Before the first connection is up (the runner dials that one).
    fresh = EgressSession(Backlog(max_messages=4))
    fresh.connection_lost(T0, code)
    assert fresh.state is SessionState.CONNECTING
    # After the session ended: the first reason stands.
    ended = connected()
    ended.track_ended()
    ended.connection_lost(T0 + 1, code)
    assert (ended.state, ended.close_reason) == (SessionState.ENDED, CloseReason.TRACK_ENDED)
    # While re-dialling, about the connection already given up: the window stays put.
    lost = connected()
    lost.connection_lost(T0 + 1, None)
    lost.connection_lost(T0 + 3, code)
    assert (lost.state, lost.expires_at) == (SessionState.RECONNECTING, T0 + 6)


# --- sending and reconnecting ---------------------------------------------------------


def test_nothing_is_sent_before_the_first_connection() -> None:
    session = EgressSession(Backlog(max_messages=4))
    session.produce(msg(1), 1, 1)
    assert session.state is SessionState.CONNECTING
    assert session.next_message() is None
    session.connection_up(T0)
    assert send_all(session) == [1]
    assert session.counters["reconnects"] == 0  # the first connection is no reconnect


def test_a_message_stays_in_flight_until_written() -> None:
    session = connected()
    session.produce(msg(1), 1, 1)
    session.produce(msg(2), 2, 2)
    assert session.next_message() == msg(1)
    assert session.next_message() == msg(1)  # the send was cut short: the same one again
    session.written()
    assert session.next_message() == msg(2)
    session.written()
    assert session.next_message() is None
    assert (session.counters["packets"], session.counters["bytes"]) == (2, 8)


def test_a_reconnect_loses_nothing() -> None:
    session = connected()
    for n in range(5):
        session.produce(msg(n), n, n)
    assert session.next_message() == msg(0)
    session.written()
    assert session.next_message() == msg(1)  # in flight when the connection drops
    session.connection_lost(T0 + 1.0, None)
    assert session.next_message() is None  # no connection: nothing to send
    for n in range(5, 8):
        session.produce(msg(n), n, n)  # the media goes on while away
    assert adds_up(session, produced=8)
    assert session.redial_delay(T0 + 1.0) == pytest.approx(0.1)
    session.connection_up(T0 + 1.6)
    # The in-flight message first, then the backlog in order, then live.
    assert send_all(session) == [1, 2, 3, 4, 5, 6, 7]
    session.produce(msg(8), 8, 8)
    assert send_all(session) == [8]
    assert session.counters == {"packets": 9, "bytes": 36, "dropped": 0, "reconnects": 1}
    assert adds_up(session, produced=9)
    assert session.last_outage_s == pytest.approx(0.6)
    assert session.attempts == 1


def test_an_overflow_while_away_drops_the_oldest_and_counters_add_up() -> None:
    session = connected(Backlog(max_messages=3))
    session.produce(msg(0), 0, 0)
    assert session.next_message() == msg(0)  # in flight
    session.connection_lost(T0 + 1, 1006)
    dropped = [session.produce(msg(n), n, n) for n in range(1, 7)]
    assert dropped == [0, 0, 0, 1, 1, 1]
    assert session.counters["dropped"] == 3
    assert session.pending == 4  # three in the backlog, one in flight
    assert adds_up(session, produced=7)
    reconnect(session, T0 + 1, T0 + 2)
    assert send_all(session) == [0, 4, 5, 6]
    assert session.counters["packets"] + session.counters["dropped"] == 7
    assert adds_up(session, produced=7)


def test_latest_only_sends_the_newest_picture_after_a_reconnect() -> None:
    session = connected(LatestOnly())
    session.connection_lost(T0 + 1, None)
    for n in range(3):
        session.produce(msg(n), n, n)  # three snapshots while away
    reconnect(session, T0 + 1, T0 + 3)
    assert send_all(session) == [2]
    assert session.counters["dropped"] == 2


def test_two_outages_count_two_reconnects() -> None:
    session = connected()
    reconnect(session, T0 + 1, T0 + 2)
    reconnect(session, T0 + 10, T0 + 10.5)
    assert session.counters["reconnects"] == 2
    assert session.last_outage_s == pytest.approx(0.5)


def test_counters_are_the_adapters_and_count_on() -> None:
    counters = {"packets": 10, "bytes": 40, "dropped": 2, "reconnects": 1, "skipped": 7}
    session = EgressSession(Backlog(max_messages=1), counters=counters)
    session.connection_up(T0)
    session.produce(msg(1), 1, 1)
    session.produce(msg(2), 2, 2)
    assert send_all(session) == [2]
    reconnect(session, T0 + 1, T0 + 2)
    assert counters == {"packets": 11, "bytes": 44, "dropped": 3, "reconnects": 2, "skipped": 7}


def test_written_without_a_message_in_flight_is_a_bug() -> None:
    with pytest.raises(RuntimeError):
        connected().written()


# --- the window -----------------------------------------------------------------------


def test_window_expiry_ends_endpoint_unavailable() -> None:
    session = connected()
    session.produce(msg(1), 1, 1)
    session.connection_lost(T0, None)
    assert session.expires_at == T0 + 5
    assert session.dial_timeout(T0 + 4.0) == pytest.approx(1.0)
    now, attempts = T0, []
    while (delay := session.redial_delay(now)) is not None:
        now += delay
        attempts.append(round(now - T0, 6))  # every dial fails at once
    # The backoff, the last attempt pulled in to leave it 100 ms before the deadline.
    assert attempts == pytest.approx([0.1, 0.3, 0.7, 1.5, 2.5, 3.5, 4.5, 4.9])
    assert session.attempts == 8
    assert (session.state, session.close_reason) == (
        SessionState.ENDED,
        CloseReason.ENDPOINT_UNAVAILABLE,
    )
    assert session.expires_at is None
    assert session.dial_timeout(now) == 0.0
    assert session.redial_delay(now) is None
    session.connection_up(now)  # a dial that finished anyway: too late
    assert session.state is SessionState.ENDED
    assert session.next_message() is None
    assert session.counters["reconnects"] == 0


def test_slow_dials_stay_inside_the_window() -> None:
    session = connected(window_s=2.0)
    session.connection_lost(T0, None)
    now, attempts = T0, []
    while (delay := session.redial_delay(now)) is not None:
        now += delay
        attempts.append(now)
        now += min(0.7, session.dial_timeout(now))  # each dial times out after 0.7 s
    assert attempts == pytest.approx([T0 + 0.1, T0 + 1.0, T0 + 1.9])
    assert session.close_reason is CloseReason.ENDPOINT_UNAVAILABLE


def test_the_window_is_configurable_and_a_zero_window_gives_up_at_once() -> None:
    long = connected(window_s=30.0)
    long.connection_lost(T0, None)
    assert long.expires_at == T0 + 30.0
    zero = connected(window_s=0.0)
    zero.connection_lost(T0, None)
    assert zero.redial_delay(T0) is None
    assert zero.close_reason is CloseReason.ENDPOINT_UNAVAILABLE


def test_a_new_outage_gets_a_fresh_window() -> None:
    session = connected()
    session.connection_lost(T0, None)
    for _ in range(3):
        session.redial_delay(T0)
    session.connection_up(T0 + 1)
    session.connection_lost(T0 + 20, None)
    assert session.expires_at == T0 + 25
    assert session.redial_delay(T0 + 20) == pytest.approx(0.1)  # the backoff restarts
    assert session.attempts == 1


# --- ends -----------------------------------------------------------------------------


def test_the_track_end_and_a_media_failure_end_the_session() -> None:
    track = connected()
    track.track_ended()
    assert (track.state, track.close_reason) == (SessionState.ENDED, CloseReason.TRACK_ENDED)
    media = connected()
    media.connection_lost(T0, None)
    media.media_failed()  # during an outage: no more re-dials
    assert media.close_reason is CloseReason.INTERNAL_ERROR
    assert media.redial_delay(T0) is None


def test_the_first_reason_stands() -> None:
    session = connected()
    session.track_ended()
    session.media_failed()
    session.connection_lost(T0, 1000)
    assert session.close_reason is CloseReason.TRACK_ENDED


# --- properties -----------------------------------------------------------------------

events = st.lists(
    st.one_of(
        st.tuples(st.just("produce"), st.just(0.0)),
        st.tuples(st.just("send"), st.just(0.0)),
        st.tuples(st.just("take"), st.just(0.0)),  # a send cut short by the loss
        st.tuples(st.just("lose"), st.sampled_from([0.0, 1000.0, 1001.0, 1006.0])),
        st.tuples(st.just("redial"), st.floats(0, 3)),  # a failed dial taking this long
        st.tuples(st.just("up"), st.just(0.0)),
    ),
    max_size=300,
)


@settings(deadline=None)
@given(st.integers(1, 20), events)
def test_every_message_is_sent_once_in_order_dropped_or_pending(
    bound: int, script: list[tuple[str, float]]
) -> None:
    session = connected(Backlog(max_messages=bound))
    now, produced, sent = T0, 0, []
    for event, value in script:
        if session.state is SessionState.ENDED:
            break
        if event == "produce":
            session.produce(msg(produced), produced, produced)
            produced += 1
        elif event == "send" and (message := session.next_message()) is not None:
            session.written()
            sent.append(number(message))
        elif event == "take":
            session.next_message()
        elif event == "lose":
            session.connection_lost(now, int(value) or None)
        elif event == "redial" and (deadline := session.expires_at) is not None:
            if (delay := session.redial_delay(now)) is not None:
                now += delay
                assert now <= deadline - 0.1 + 1e-6  # every attempt starts in the window
                now += min(value, session.dial_timeout(now))
        elif event == "up" and session.state is SessionState.RECONNECTING:
            session.connection_up(now)
        assert adds_up(session, produced)
        assert session.pending <= bound + 1  # the backlog's bound, and one in flight
    assert sent == sorted(set(sent))  # in order, never twice
    assert session.counters["packets"] == len(sent)
