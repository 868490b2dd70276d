"""Which clear or mark an answer settles (E2), and the text messages both ways."""

from __future__ import annotations

import json

import pytest

from sluice_endpoint.control import PlaybackControl
from sluice_endpoint.events import (
    Cleared,
    MarkReached,
    clear_message,
    mark_message,
    parse_ingest_answer,
)


def test_messages_are_the_specs() -> None:
    assert json.loads(clear_message()) == {"event": "clear"}
    assert json.loads(mark_message("m-1")) == {"event": "mark", "name": "m-1"}
    for bad in ("", "x" * 257):
        with pytest.raises(ValueError):
            mark_message(bad)
    mark_message("x" * 256)


def test_answers_are_parsed() -> None:
    assert parse_ingest_answer('{"event":"cleared","droppedMs":340}') == Cleared(340)
    reached = parse_ingest_answer('{"event":"mark","name":"a","cleared":true}')
    assert reached == MarkReached("a", True)
    assert parse_ingest_answer('{"event":"hello"}') is None
    assert parse_ingest_answer("not json") is None
    with pytest.raises(ValueError):
        parse_ingest_answer('{"event":"mark","name":5}')


def test_answers_settle_the_oldest_outstanding_request() -> None:
    control = PlaybackControl()
    a1, b, a2 = control.mark_sent("a"), control.mark_sent("b"), control.mark_sent("a")
    clear = control.clear_sent()
    # A clear drops the audio of every mark still waiting: Sluice answers them first.
    assert control.answered(MarkReached("a", True)) == a1
    assert control.answered(MarkReached("b", True)) == b
    assert control.answered(MarkReached("a", True)) == a2
    assert control.answered(Cleared(120)) == clear
    assert control.answered(Cleared(0)) is None
    assert control.answered(MarkReached("a", False)) is None
    late = control.mark_sent("z")
    assert control.outstanding() == [late]
    assert control.outstanding() == []
