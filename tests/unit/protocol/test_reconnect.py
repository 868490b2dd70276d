"""Egress reconnect parts: backoff, the window, the bounded backlogs.

How a closed connection is handled (1000 ends, anything else re-dials) and the in-flight
message kept across a reconnect are the session's: `test_egress_session`.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.protocol.pcm import FRAME_BYTES
from worker.protocol.reconnect import Backlog, Backoff, LatestOnly, ReconnectWindow

T0 = 500.0


# --- backoff ------------------------------------------------------------------------


def test_backoff_doubles_up_to_one_second() -> None:
    backoff = Backoff()
    delays = [backoff.delay(attempt) for attempt in range(7)]
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0])


def test_backoff_survives_a_long_outage() -> None:
    assert Backoff().delay(10_000) == 1.0


def test_backoff_jitter_is_injected() -> None:
    seen: list[float] = []

    def half(delay: float) -> float:
        seen.append(delay)
        return delay / 2

    backoff = Backoff(jitter=half)
    assert [backoff.delay(a) for a in range(3)] == pytest.approx([0.05, 0.1, 0.2])
    assert seen == pytest.approx([0.1, 0.2, 0.4])


def test_backoff_jitter_never_negative() -> None:
    assert Backoff(jitter=lambda d: d - 5).delay(0) == 0.0


def test_backoff_invalid() -> None:
    with pytest.raises(ValueError):
        Backoff(initial_s=-0.1)
    with pytest.raises(ValueError):
        Backoff(max_s=-1.0)
    with pytest.raises(ValueError):
        Backoff(factor=0.5)


# --- reconnect window ---------------------------------------------------------------


def attempt_times(window: ReconnectWindow, now: float, dial_s: float) -> list[float]:
    """When attempts start if every dial fails after `dial_s` (capped by the window)."""
    times = []
    while (delay := window.next_delay(now)) is not None:
        now += delay
        times.append(now)
        now += min(dial_s, window.remaining(now))
    assert window.remaining(now) <= window.min_attempt_s + 1e-9
    return times


def test_attempts_follow_the_backoff_until_the_window_ends() -> None:
    window = ReconnectWindow(T0)
    times = attempt_times(window, T0, dial_s=0.0)
    offsets = [t - T0 for t in times]
    # The last attempt is pulled in to leave it 100 ms before the 5 s deadline.
    assert offsets == pytest.approx([0.1, 0.3, 0.7, 1.5, 2.5, 3.5, 4.5, 4.9])
    assert window.attempts == 8


def test_slow_dials_stay_inside_the_window() -> None:
    window = ReconnectWindow(T0, window_s=2.0)
    times = attempt_times(window, T0, dial_s=0.7)
    assert times == pytest.approx([T0 + 0.1, T0 + 1.0, T0 + 1.9])


def test_window_is_configurable() -> None:
    window = ReconnectWindow(T0, window_s=30.0)
    assert window.deadline == T0 + 30.0
    assert len(attempt_times(window, T0, dial_s=0.0)) > 28


def test_remaining_and_giving_up() -> None:
    # Expiry as the session sees it (ending endpoint_unavailable): test_egress_session.
    window = ReconnectWindow(T0)
    assert window.remaining(T0 + 4.0) == pytest.approx(1.0)
    assert window.remaining(T0 + 4.999) > 0
    assert window.remaining(T0 + 5.0) == 0.0
    assert window.remaining(T0 + 6.0) == 0.0
    assert window.next_delay(T0 + 6.0) is None


def test_first_attempt_waits_the_first_backoff() -> None:
    window = ReconnectWindow(T0)
    assert window.next_delay(T0) == pytest.approx(0.1)
    assert window.attempts == 1


def test_zero_window_gives_up_at_once() -> None:
    assert ReconnectWindow(T0, window_s=0.0).next_delay(T0) is None


def test_window_invalid() -> None:
    with pytest.raises(ValueError):
        ReconnectWindow(T0, window_s=-1.0)


# --- backlog ------------------------------------------------------------------------


def msg(n: int, size: int = 4) -> bytes:
    return n.to_bytes(4, "big") + bytes(size - 4)


def drain(backlog: Backlog) -> list[bytes]:
    """Pops every message, oldest first (each counted as delivered)."""
    messages = []
    while (message := backlog.pop()) is not None:
        messages.append(message)
    return messages


def test_audio_backlog_holds_the_whole_window() -> None:
    assert Backlog.for_audio().max_messages == 250
    assert Backlog.for_audio(10.0).max_messages == 500


def test_drop_oldest_by_count() -> None:
    backlog = Backlog(max_messages=3)
    assert [backlog.append(msg(n)) for n in range(5)] == [0, 0, 0, 1, 1]
    assert drain(backlog) == [msg(2), msg(3), msg(4)]
    assert (backlog.appended, backlog.dropped, backlog.delivered) == (5, 2, 3)
    assert len(backlog) == 0
    assert backlog.size_bytes == 0


def test_drop_oldest_by_bytes() -> None:
    backlog = Backlog(max_bytes=10)
    backlog.append(msg(1, 4))
    backlog.append(msg(2, 4))
    assert backlog.append(msg(3, 6)) == 1  # 14 bytes: the oldest goes
    assert backlog.size_bytes == 10
    assert drain(backlog) == [msg(2, 4), msg(3, 6)]


def test_both_bounds() -> None:
    backlog = Backlog(max_messages=2, max_bytes=100)
    for n in range(3):
        backlog.append(msg(n, 10))
    assert len(backlog) == 2
    assert backlog.append(msg(3, 95)) == 2
    assert drain(backlog) == [msg(3, 95)]


def test_message_bigger_than_the_byte_bound_is_dropped_alone() -> None:
    backlog = Backlog(max_bytes=10)
    backlog.append(msg(1, 8))
    assert backlog.append(msg(2, 11)) == 1
    assert drain(backlog) == [msg(1, 8)]
    assert backlog.dropped == 1


def test_pop_takes_the_oldest_and_counts_it_delivered() -> None:
    # A failed send staying first in line is the session's in-flight message now.
    backlog = Backlog(max_messages=4)
    backlog.append(msg(1))
    backlog.append(msg(2))
    assert backlog.pop() == msg(1)
    assert backlog.pop() == msg(2)
    assert backlog.pop() is None
    assert backlog.delivered == 2


@pytest.mark.parametrize(
    "kwargs", [{}, {"max_messages": 0}, {"max_bytes": 0}, {"max_messages": None}]
)
def test_backlog_needs_a_bound(kwargs: dict[str, int | None]) -> None:
    with pytest.raises(ValueError):
        Backlog(**kwargs)


def test_latest_only_keeps_the_newest_picture() -> None:
    pictures = LatestOnly()
    assert pictures.append(b"jpeg-1") == 0
    assert pictures.append(b"jpeg-2") == 1
    assert pictures.append(b"jpeg-3") == 1
    assert drain(pictures) == [b"jpeg-3"]
    assert pictures.dropped == 2
    assert drain(pictures) == []


def test_outage_within_the_window_loses_no_audio() -> None:
    backlog = Backlog.for_audio()
    for n in range(250):  # 5 s of 20 ms frames while disconnected
        backlog.append(msg(n, FRAME_BYTES))
    flushed = drain(backlog)
    assert flushed == [msg(n, FRAME_BYTES) for n in range(250)]
    assert backlog.dropped == 0


def test_longer_outage_keeps_the_latest_audio() -> None:
    backlog = Backlog.for_audio()
    for n in range(300):
        backlog.append(msg(n, FRAME_BYTES))
    assert drain(backlog) == [msg(n, FRAME_BYTES) for n in range(50, 300)]
    assert backlog.dropped == 50
    assert backlog.size_bytes == 0


def test_slow_consumer_drops_oldest_and_never_blocks_the_producer() -> None:
    # The endpoint takes 60 ms per send while frames arrive every 20 ms.
    backlog = Backlog(max_messages=10)
    sent: list[bytes] = []
    for tick in range(300):
        backlog.append(msg(tick))
        assert len(backlog) <= 10
        if tick % 3 == 0 and (message := backlog.pop()) is not None:
            sent.append(message)
    sent.extend(drain(backlog))
    numbers = [int.from_bytes(m[:4], "big") for m in sent]
    assert numbers == sorted(numbers)  # order kept
    assert numbers[-10:] == list(range(290, 300))  # the newest survive
    assert backlog.dropped + len(sent) == 300


# --- properties ---------------------------------------------------------------------

operations = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.integers(0, 64)),
        st.tuples(st.just("pop"), st.just(0)),
        st.tuples(st.just("drain"), st.just(0)),
    ),
    max_size=200,
)


@settings(deadline=None)
@given(
    st.one_of(st.none(), st.integers(1, 20)),
    st.one_of(st.none(), st.integers(1, 200)),
    operations,
)
def test_backlog_bounds_and_accounting(
    max_messages: int | None, max_bytes: int | None, ops: list[tuple[str, int]]
) -> None:
    if max_messages is None and max_bytes is None:
        max_messages = 5
    backlog = Backlog(max_messages=max_messages, max_bytes=max_bytes)
    produced = 0
    delivered: list[int] = []
    for op, size in ops:
        if op == "append":
            # Message number in the first bytes, so order can be checked.
            backlog.append(produced.to_bytes(4, "big") + bytes(size))
            produced += 1
        elif op == "pop":
            if (message := backlog.pop()) is not None:
                delivered.append(int.from_bytes(message[:4], "big"))
        else:
            delivered.extend(int.from_bytes(m[:4], "big") for m in drain(backlog))
        if max_messages is not None:
            assert len(backlog) <= max_messages
        if max_bytes is not None:
            assert backlog.size_bytes <= max_bytes
        assert backlog.dropped + backlog.delivered + len(backlog) == produced
    delivered.extend(int.from_bytes(m[:4], "big") for m in drain(backlog))
    assert backlog.dropped + len(delivered) == produced
    assert delivered == sorted(set(delivered))  # in order, never twice


@settings(deadline=None)
@given(st.floats(0, 1e6), st.floats(0, 60), st.lists(st.floats(0, 3), max_size=100))
def test_window_never_outlives_its_deadline(
    lost_at: float, window_s: float, dial_times: list[float]
) -> None:
    window = ReconnectWindow(lost_at, window_s=window_s)
    now = lost_at
    for dial_s in [*dial_times, *[0.0] * 200]:
        delay = window.next_delay(now)
        if delay is None:
            break
        assert delay >= 0
        now += delay
        assert now <= window.deadline - window.min_attempt_s + 1e-6
        now += min(dial_s, window.remaining(now))
    else:
        pytest.fail("the window never gave up")
