"""Where a resumed egress stream starts: never reusing a number the lost one can have used."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sluice.wire.packet import UINT32_MOD
from worker.protocol.resume import resume_point
from worker.protocol.stamping import Stamper


def test_an_outage_shows_in_both_fields() -> None:
    point = resume_point(
        saved_next_sequence=100,
        saved_timestamp=96_000,
        elapsed_ms=3_000,
        clock_rate=48_000,
        packet_interval_ms=20,
    )
    assert point.first_sequence == 100 + 150 + 1
    assert point.first_timestamp == 96_000 + 144_000
    stamper = Stamper(48_000, point.first_sequence, point.first_timestamp)
    assert stamper.stamp(555) == (251, 240_000)
    assert stamper.stamp(555 + 960) == (252, 240_960)


@given(
    saved=st.integers(0, UINT32_MOD - 1),
    produced_after_save=st.integers(0, 500),
    extra_ms=st.integers(0, 5_000),
)
def test_no_number_the_lost_pipeline_used_comes_again(
    saved: int, produced_after_save: int, extra_ms: int
) -> None:
    # It produced Packets at most every 20 ms after its save, then died; we resume later.
    elapsed_ms = produced_after_save * 20 + extra_ms
    point = resume_point(
        saved_next_sequence=saved,
        saved_timestamp=0,
        elapsed_ms=elapsed_ms,
        clock_rate=48_000,
        packet_interval_ms=20,
    )
    used = {(saved + i) % UINT32_MOD for i in range(produced_after_save)}
    assert point.first_sequence not in used
    distance = (point.first_sequence - saved) % UINT32_MOD
    assert distance >= produced_after_save  # moved past them, never back


def test_a_clock_step_back_does_not_go_back() -> None:
    point = resume_point(
        saved_next_sequence=5,
        saved_timestamp=10,
        elapsed_ms=-40,
        clock_rate=48_000,
        packet_interval_ms=20,
    )
    assert (point.first_sequence, point.first_timestamp) == (6, 10)
