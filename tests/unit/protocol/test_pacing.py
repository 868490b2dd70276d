"""The 20 ms pacer against a fake clock: deadlines, catch-up, skipping ahead, no drift."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.protocol.pacing import Pacer

MS = 0.001
START = 1000.0  # a monotonic clock is anything but zero


def test_deadlines_are_multiples_of_the_interval() -> None:
    pacer = Pacer(START)
    assert pacer.deadline(0) == START
    assert pacer.deadline(3) == pytest.approx(START + 0.060)
    assert pacer.deadline(30_000) == pytest.approx(START + 600.0, abs=1e-9)


def test_on_schedule() -> None:
    pacer = Pacer(START)
    assert pacer.next_delay(START) == 0.0
    assert pacer.advance(START) == 0
    assert pacer.next_delay(START + 5 * MS) == pytest.approx(15 * MS)
    assert pacer.advance(START + 20 * MS) == 1
    assert pacer.next_tick == 2
    assert (pacer.late_ticks, pacer.skipped_ticks, pacer.reanchors) == (0, 0, 0)


def test_before_start() -> None:
    pacer = Pacer(START + 0.5)
    assert pacer.next_delay(START) == pytest.approx(0.5)


def test_late_wakeup_delays_one_tick_not_the_next() -> None:
    pacer = Pacer(START)
    pacer.advance(START)
    assert pacer.advance(START + 35 * MS) == 1  # woke 15 ms late
    # The next deadline is still START + 40 ms, not 35 + 20.
    assert pacer.next_delay(START + 35 * MS) == pytest.approx(5 * MS)


def test_small_lag_is_caught_up_with_a_burst() -> None:
    pacer = Pacer(START)
    now = START + 70 * MS  # ticks 0..3 are due
    ticks = []
    while pacer.next_delay(now) == 0.0:
        ticks.append(pacer.advance(now))
    assert ticks == [0, 1, 2, 3]
    assert pacer.late_ticks == 3  # 0, 1 and 2 ran after the following tick was due
    assert pacer.skipped_ticks == 0
    assert pacer.next_delay(now) == pytest.approx(10 * MS)


def test_long_pause_skips_ahead_on_the_same_grid() -> None:
    pacer = Pacer(START)
    pacer.advance(START)
    now = START + 1.005  # paused for a second: ticks 1..50 are due
    assert pacer.advance(now) == 50
    assert pacer.skipped_ticks == 49
    assert pacer.reanchors == 1
    # No burst, and the phase is kept: the next tick is due at START + 1.020.
    assert pacer.next_delay(now) == pytest.approx(15 * MS)
    assert pacer.advance(START + 1.020) == 51
    assert pacer.skipped_ticks == 49


def test_lag_under_the_threshold_is_caught_up() -> None:
    pacer = Pacer(START, max_lag_s=0.2)
    assert pacer.advance(START + 0.199) == 0
    assert pacer.skipped_ticks == 0


def test_lag_just_past_the_threshold_skips() -> None:
    pacer = Pacer(START, max_lag_s=0.2)
    assert pacer.advance(START + 0.201) == 10
    assert pacer.skipped_ticks == 10


def test_early_call_takes_the_next_tick() -> None:
    pacer = Pacer(START)
    assert pacer.advance(START - 1 * MS) == 0
    assert pacer.advance(START) == 1  # early again: still one tick at a time


def test_timestamps() -> None:
    pacer = Pacer(START)
    assert pacer.clock_rate == 48_000
    assert [pacer.pts(tick) for tick in range(3)] == [0, 960, 1920]
    assert pacer.pts(50) == 48_000  # one second
    origin = 2**32 - 960
    assert [pacer.rtp_timestamp(tick, origin) for tick in range(3)] == [origin, 0, 960]


def test_video_clock() -> None:
    pacer = Pacer(START, interval_s=1.0, samples_per_tick=90_000)
    assert pacer.clock_rate == 90_000
    assert pacer.rtp_timestamp(47_722) == (47_722 * 90_000) % 2**32


def test_invalid() -> None:
    with pytest.raises(ValueError):
        Pacer(START, interval_s=0.0)
    with pytest.raises(ValueError):
        Pacer(START, interval_s=-0.02)
    with pytest.raises(ValueError):
        Pacer(START, max_lag_s=-1.0)
    with pytest.raises(ValueError):
        Pacer(START, samples_per_tick=-1)


def sleep_overshoot(rng: random.Random) -> float:
    """How late a sleep returns: 0-4 ms, one in fifty by up to 15 ms more."""
    late = rng.uniform(0, 4 * MS)
    if rng.random() < 0.02:
        late += rng.uniform(0, 15 * MS)
    return late


def test_ten_minutes_of_jitter_accumulate_no_drift() -> None:
    rng = random.Random(20)
    pacer = Pacer(START)
    now = START
    worst_lateness = 0.0
    for _ in range(30_000):  # ten minutes of 20 ms ticks
        now += pacer.next_delay(now) + sleep_overshoot(rng)
        tick = pacer.advance(now)
        worst_lateness = max(worst_lateness, now - pacer.deadline(tick))
    assert pacer.next_tick == 30_000
    assert (pacer.skipped_ticks, pacer.reanchors) == (0, 0)
    # The last tick ran within one jitter of its ideal time, 599.98 s after the start.
    assert pacer.deadline(29_999) == pytest.approx(START + 599.98, abs=1e-9)
    assert 0 <= now - pacer.deadline(29_999) < 20 * MS
    assert worst_lateness < 20 * MS


def test_rescheduling_from_the_last_wakeup_would_drift() -> None:
    # The same jitter with `next = now + 20 ms`: the contrast the pacer exists for.
    rng = random.Random(20)
    now = START
    for _ in range(30_000):
        now += 0.020 + sleep_overshoot(rng)
    assert now - (START + 600.0) > 30.0  # more than half a minute behind


@settings(deadline=None)
@given(
    st.floats(0, 1e6),
    st.lists(
        st.one_of(
            st.floats(0, 0.015),  # ordinary jitter
            st.floats(0, 5.0),  # a stall: GC, debugger, stopped container
            st.floats(-0.002, 0),  # a wake-up a little early
        ),
        min_size=1,
        max_size=300,
    ),
)
def test_deadlines_never_drift(start: float, jitters: list[float]) -> None:
    pacer = Pacer(start)
    now = start
    produced = 0
    for jitter in jitters:
        now = max(now, now + pacer.next_delay(now) + jitter)  # monotonic
        tick = pacer.advance(now)
        produced += 1
        # Never further behind the grid than the catch-up threshold or one interval...
        assert now - pacer.deadline(tick) <= max(pacer.max_lag_s, pacer.interval_s) + 1e-6
        # ...and never ahead of it by more than an early wake-up.
        assert pacer.deadline(tick) - now <= 0.002 + 1e-6
        # The grid itself is fixed: tick n is due at start + n * 20 ms, whatever happened.
        assert pacer.deadline(tick) == start + tick * 0.020
    assert produced + pacer.skipped_ticks == pacer.next_tick
