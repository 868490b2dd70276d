"""Egress `sequenceNumber` / `timestamp` from RTP timestamps, wrap-around included."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.protocol.stamping import AUDIO_CLOCK_RATE, VIDEO_CLOCK_RATE, Stamper

WRAP = 2**32


def test_first_packet_is_zero_zero() -> None:
    stamper = Stamper()
    assert not stamper.started
    assert stamper.stamp(123_456_789) == (0, 0)
    assert stamper.started


def test_audio_frames_step_by_960() -> None:
    stamper = Stamper(AUDIO_CLOCK_RATE)
    stamps = [stamper.stamp(7_000 + 960 * n) for n in range(4)]
    assert stamps == [(0, 0), (1, 960), (2, 1920), (3, 2880)]


def test_a_gap_in_the_source_is_a_timestamp_jump() -> None:
    stamper = Stamper()
    stamper.stamp(1_000)
    stamper.stamp(1_960)
    # The publisher stopped sending for 2 s; sequence numbers stay consecutive.
    assert stamper.stamp(1_960 + 960 + 96_000) == (2, 97_920)
    assert stamper.seconds(97_920) == pytest.approx(2.04)


def test_rtp_timestamp_wrap_around() -> None:
    stamper = Stamper()
    first = WRAP - 1_920
    assert [stamper.stamp((first + 960 * n) % WRAP) for n in range(4)] == [
        (0, 0),
        (1, 960),
        (2, 1920),  # the RTP timestamp wrapped to 0 here
        (3, 2880),
    ]


def test_unwrapped_pts_work_too() -> None:
    stamper = Stamper()
    stamper.stamp(WRAP - 960)
    assert stamper.stamp(WRAP) == (1, 960)  # a pts counted past 2**32


def test_video_timestamps_in_90khz() -> None:
    stamper = Stamper(VIDEO_CLOCK_RATE)
    first = WRAP - 45_000
    # One JPEG per second: 90 000 apart, across the wrap.
    stamps = [stamper.stamp((first + 90_000 * n) % WRAP) for n in range(3)]
    assert stamps == [(0, 0), (1, 90_000), (2, 180_000)]
    assert stamper.seconds(180_000) == 2.0


def test_sequence_number_keeps_counting_and_wraps() -> None:
    stamper = Stamper(first_sequence=WRAP - 2)
    assert [stamper.stamp(0)[0] for _ in range(3)] == [WRAP - 2, WRAP - 1, 0]
    assert stamper.next_sequence_number == 1


@pytest.mark.parametrize(
    "kwargs", [{"clock_rate": 0}, {"first_sequence": -1}, {"first_sequence": WRAP}]
)
def test_invalid(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        Stamper(**kwargs)


@given(
    st.integers(0, WRAP - 1),
    st.lists(st.integers(0, 2**24), max_size=100),
)
def test_timestamp_is_the_rtp_distance_from_the_first(first: int, steps: list[int]) -> None:
    stamper = Stamper()
    elapsed = list(itertools.accumulate(steps, initial=0))
    for n, distance in enumerate(elapsed):
        sequence, timestamp = stamper.stamp((first + distance) % WRAP)
        assert sequence == n
        assert timestamp == distance % WRAP
        assert 0 <= timestamp < WRAP
