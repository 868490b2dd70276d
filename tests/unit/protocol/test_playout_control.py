"""Barge-in in the playout core: `clear` and `mark`, with time passed in as 20 ms ticks."""

from __future__ import annotations

import json

import pytest

from worker.protocol.ingest_control import Clear, Mark, encode_event, parse_control
from worker.protocol.pcm import FRAME_BYTES, SILENCE
from worker.protocol.playout import Cleared, MarkPlayed, PlayoutBuffer, PlayoutEvent

TICK_MS = 20


def frame(tag: int) -> bytes:
    return bytes([tag]) * FRAME_BYTES


def push(buffer: PlayoutBuffer, count: int, tag: int = 1) -> None:
    for _ in range(count):
        buffer.push(frame(tag))


def play(buffer: PlayoutBuffer, ms: int) -> list[tuple[int, PlayoutEvent]]:
    """Runs the track for `ms`; each event with the time (ms from now) it came out at."""
    out = []
    for tick in range(ms // TICK_MS):
        buffer.pop()
        out += [(tick * TICK_MS, event) for event in buffer.take_events()]
    return out


def played(name: str) -> MarkPlayed:
    return MarkPlayed(name, cleared=False)


def dropped(name: str) -> MarkPlayed:
    return MarkPlayed(name, cleared=True)


# --- marks --------------------------------------------------------------------------


def test_a_mark_with_nothing_buffered_is_answered_at_once() -> None:
    buffer = PlayoutBuffer()
    buffer.mark("idle")
    assert buffer.has_events
    assert buffer.take_events() == [played("idle")]
    assert not buffer.has_events and buffer.take_events() == []


def test_marks_come_back_in_order_when_their_audio_has_played() -> None:
    buffer = PlayoutBuffer()
    push(buffer, 3)  # 60 ms
    buffer.mark("a")
    push(buffer, 2)  # 40 ms more
    buffer.mark("b")
    buffer.mark("c")  # nothing between: due with "b"
    assert not buffer.has_events
    # Frame 1 plays 0-20 ms, ..., frame 3 40-60 ms: "a" comes out at the 60 ms tick, the
    # first after its audio; "b" and "c" at 100 ms.
    assert play(buffer, 200) == [(60, played("a")), (100, played("b")), (100, played("c"))]


def test_a_mark_behind_a_waiting_one_keeps_its_place() -> None:
    buffer = PlayoutBuffer()
    push(buffer, 1)
    buffer.mark("a")
    buffer.pop()  # the frame plays; "a" is due at the next tick
    buffer.mark("b")  # nothing buffered, but "a" is still waiting: no overtaking
    assert not buffer.has_events
    assert play(buffer, 20) == [(0, played("a")), (0, played("b"))]


def test_a_mark_ends_the_segment() -> None:
    buffer = PlayoutBuffer()
    push(buffer, 2)
    buffer.mark("end of sentence")
    play(buffer, 200)  # running dry after a mark is the endpoint waiting, not an underrun
    assert buffer.underruns == 0


# --- clear --------------------------------------------------------------------------


def test_clear_drops_the_queue_and_says_how_much() -> None:
    buffer = PlayoutBuffer()
    push(buffer, 500)  # 10 s
    play(buffer, 1_000)
    assert buffer.clear() == 450
    assert buffer.take_events() == [Cleared(dropped_ms=9_000)]
    assert buffer.depth_frames == 0 and buffer.has_room()
    assert buffer.pop() == SILENCE  # the next tick is silence ...
    buffer.push(frame(7))
    assert buffer.pop() == frame(7)  # ... or the next audio sent
    assert (buffer.cleared_frames, buffer.cleared_ms) == (450, 9_000)


def test_clear_sends_dropped_marks_first_and_played_ones_as_played() -> None:
    buffer = PlayoutBuffer()
    push(buffer, 2)
    buffer.mark("said")  # after 40 ms of audio
    push(buffer, 3)
    buffer.mark("half")  # after 100 ms
    push(buffer, 3)
    buffer.mark("never")  # after 160 ms
    events = play(buffer, 80)  # frames 1-4 popped: "said" came out at 40 ms
    assert events == [(40, played("said"))]
    buffer.clear()
    assert buffer.take_events() == [dropped("half"), dropped("never"), Cleared(80)]
    assert play(buffer, 200) == []  # nothing left to come


def test_a_mark_whose_audio_is_playing_at_the_clear_counts_as_played() -> None:
    buffer = PlayoutBuffer()
    push(buffer, 2)
    buffer.mark("a")
    push(buffer, 5)
    buffer.mark("b")
    buffer.pop()
    buffer.pop()  # the last frame before "a" is on the track right now
    buffer.clear()
    assert buffer.take_events() == [played("a"), dropped("b"), Cleared(100)]


def test_clear_counts_what_the_reassembler_held_and_accumulates() -> None:
    buffer = PlayoutBuffer()
    push(buffer, 3)
    buffer.clear(held_elsewhere_s=0.0125)
    buffer.clear()  # nothing queued: still answered
    assert buffer.take_events() == [Cleared(dropped_ms=72), Cleared(dropped_ms=0)]
    assert buffer.cleared_ms == 72


def test_after_a_clear_running_dry_is_no_underrun() -> None:
    buffer = PlayoutBuffer()
    push(buffer, 10)
    play(buffer, 40)
    buffer.clear()
    play(buffer, 100)
    assert buffer.underruns == 0


def test_marks_after_a_clear_count_from_the_new_audio() -> None:
    buffer = PlayoutBuffer()
    push(buffer, 10)
    buffer.clear()
    buffer.take_events()
    push(buffer, 2)
    buffer.mark("new")
    assert play(buffer, 100) == [(40, played("new"))]


# --- the messages -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "control"),
    [
        ('{"event": "clear"}', Clear()),
        ('{"event":"clear","streamSid":"MZ1"}', Clear()),  # other fields are ignored
        ('{"event": "mark", "name": "greeting"}', Mark("greeting")),
        ('{"event": "mark", "name": "' + "é" * 256 + '"}', Mark("é" * 256)),  # characters
    ],
)
def test_control_messages(text: str, control: Clear | Mark) -> None:
    assert parse_control(text) == control


@pytest.mark.parametrize(
    "text",
    [
        "hello",
        "",
        "[]",
        '"clear"',
        '{"event": "Clear"}',
        '{"event": "media"}',
        '{"event": "mark"}',
        '{"event": "mark", "name": ""}',
        '{"event": "mark", "name": 7}',
        '{"event": "mark", "name": "' + "x" * 257 + '"}',
        "[" * 100_000,  # nested beyond the parser's recursion limit
    ],
)
def test_anything_else_is_not_a_control_message(text: str) -> None:
    assert parse_control(text) is None


def test_answers_are_json_objects() -> None:
    assert json.loads(encode_event(played("a"))) == {"event": "mark", "name": "a", "cleared": False}
    assert json.loads(encode_event(dropped("b"))) == {"event": "mark", "name": "b", "cleared": True}
    assert json.loads(encode_event(Cleared(9_000))) == {"event": "cleared", "droppedMs": 9_000}
    assert encode_event(played("é")) == '{"event":"mark","name":"é","cleared":false}'
