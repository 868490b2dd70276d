"""The ingest playout buffer: silence, underruns, back-pressure, draining."""

from __future__ import annotations

import pytest

from worker.protocol.pcm import FRAME_BYTES, SILENCE
from worker.protocol.playout import PlayoutBuffer, PlayoutClosed


def frame(tag: int) -> bytes:
    return bytes([tag]) * FRAME_BYTES


def test_default_capacity_is_60_seconds() -> None:
    buffer = PlayoutBuffer()
    assert buffer.capacity_frames == 3000
    assert buffer.room_frames == 3000
    assert buffer.has_room()


def test_frames_play_in_order() -> None:
    buffer = PlayoutBuffer()
    for tag in (1, 2, 3):
        buffer.push(frame(tag))
    assert buffer.depth_frames == 3
    assert [buffer.pop() for _ in range(3)] == [frame(1), frame(2), frame(3)]
    assert buffer.played_frames == 3


def test_idle_buffer_plays_silence_without_underrun() -> None:
    buffer = PlayoutBuffer()
    assert [buffer.pop() for _ in range(5)] == [SILENCE] * 5
    assert buffer.underruns == 0
    assert buffer.silence_frames == 5


def test_running_dry_mid_segment_is_one_underrun() -> None:
    buffer = PlayoutBuffer()
    buffer.push(frame(1))
    assert buffer.pop() == frame(1)
    assert buffer.pop() == SILENCE
    assert buffer.pop() == SILENCE
    assert (buffer.underruns, buffer.underrun_frames) == (1, 2)
    buffer.push(frame(2))
    assert buffer.pop() == frame(2)
    assert buffer.pop() == SILENCE
    assert (buffer.underruns, buffer.underrun_frames) == (2, 3)


def test_silence_after_end_of_segment_is_no_underrun() -> None:
    buffer = PlayoutBuffer()
    buffer.push(frame(1))
    buffer.push(frame(2))
    buffer.mark_end_of_segment()
    assert [buffer.pop() for _ in range(4)] == [frame(1), frame(2), SILENCE, SILENCE]
    assert buffer.underruns == 0


def test_next_segment_arriving_late_is_an_underrun_only_once_it_started() -> None:
    buffer = PlayoutBuffer()
    buffer.push(frame(1))
    buffer.mark_end_of_segment()
    buffer.push(frame(2))  # next segment already queued behind the marker
    assert [buffer.pop() for _ in range(3)] == [frame(1), frame(2), SILENCE]
    assert buffer.underruns == 1


def test_back_pressure() -> None:
    buffer = PlayoutBuffer(capacity_s=0.1)  # 5 frames
    assert buffer.capacity_frames == 5
    for tag in range(4):
        buffer.push(frame(tag))
    assert buffer.has_room()
    assert buffer.room_frames == 1
    buffer.push(frame(4))
    assert not buffer.has_room()
    assert buffer.room_frames == 0
    buffer.pop()
    assert buffer.has_room()


def test_push_past_capacity_is_kept_not_dropped() -> None:
    # One message can complete several frames after the reader checked has_room().
    buffer = PlayoutBuffer(capacity_s=0.04)
    for tag in range(5):
        buffer.push(frame(tag))
    assert buffer.depth_frames == 5
    assert buffer.room_frames == 0
    assert buffer.max_depth_frames == 5
    assert [buffer.pop() for _ in range(5)] == [frame(tag) for tag in range(5)]
    assert buffer.max_depth_frames == 5


def test_drained_after_close_and_play_out() -> None:
    buffer = PlayoutBuffer()
    buffer.push(frame(1))
    assert not buffer.drained
    buffer.close()
    buffer.close()
    assert buffer.closed
    assert not buffer.drained  # audio still to play
    assert buffer.pop() == frame(1)
    assert buffer.drained
    assert buffer.pop() == SILENCE
    assert buffer.underruns == 0  # close ends the segment


def test_push_after_close() -> None:
    buffer = PlayoutBuffer()
    buffer.close()
    with pytest.raises(PlayoutClosed):
        buffer.push(frame(1))


@pytest.mark.parametrize("size", [0, 1, FRAME_BYTES - 1, FRAME_BYTES + 1])
def test_push_refuses_partial_frames(size: int) -> None:
    with pytest.raises(ValueError):
        PlayoutBuffer().push(bytes(size))


@pytest.mark.parametrize("capacity_s", [0.0, -1.0, float("nan")])
def test_capacity_must_be_positive(capacity_s: float) -> None:
    with pytest.raises(ValueError):
        PlayoutBuffer(capacity_s=capacity_s)
