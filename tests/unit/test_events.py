"""Adapter events as the Lua transitions publish them, read back as types."""

from __future__ import annotations

import json

import pytest

from sluice.state.events import Claimed, Closed, Failed, StateChanged, parse_event
from sluice.state.records import AdapterState


@pytest.mark.parametrize(
    ("published", "parsed"),
    [
        ({"event": "claimed", "worker": "w1"}, Claimed("w1")),
        ({"event": "state", "state": "active"}, StateChanged(AdapterState.ACTIVE)),
        ({"event": "state", "state": "reconnecting"}, StateChanged(AdapterState.RECONNECTING)),
        (
            {"event": "failed", "errorCode": "no_capacity", "errorDescription": "busy"},
            Failed("no_capacity", "busy"),
        ),
        ({"event": "failed"}, Failed("internal_error", "")),
        ({"event": "closed", "reason": "worker_lost"}, Closed("worker_lost")),
    ],
)
def test_each_published_event_parses_to_its_type(published: object, parsed: object) -> None:
    assert parse_event(json.dumps(published).encode()) == parsed


@pytest.mark.parametrize(
    "data",
    [b"close", b"[]", b'{"event": "state", "state": "sleeping"}', b'{"event": "claimed"}', b""],
)
def test_anything_else_is_no_event(data: bytes) -> None:
    assert parse_event(data) is None


def test_the_lua_scripts_publish_only_events_that_parse() -> None:
    import re

    from sluice.state.scripts import NAMES, lua

    kinds = {m for name in NAMES for m in re.findall(r"event = '(\w+)'", lua(name))}
    assert kinds == {"claimed", "state", "failed", "closed"}
