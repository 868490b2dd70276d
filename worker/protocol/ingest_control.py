"""The text messages of an ingest connection: `clear` and `mark` in, their answers out.

Sluice extension (extensions.md E2). An ingest endpoint may send a text message holding
one JSON object; `{"event": "clear"}` and `{"event": "mark", "name": "<1-256 chars>"}`
are understood, anything else is skipped (and counted) as text always was. Sluice sends
text only in answer to these, so an endpoint that never sends them never receives any.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from worker.protocol.playout import Cleared, MarkPlayed, PlayoutEvent

MAX_MARK_NAME = 256  # characters


@dataclass(frozen=True, slots=True)
class Clear:
    """Drop every buffered sample not yet played."""


@dataclass(frozen=True, slots=True)
class Mark:
    """Answer with `name` once the audio sent before it has been played."""

    name: str


Control = Clear | Mark


def parse_control(text: str) -> Control | None:
    """The control message `text` holds, or None when it is none (skip it).

    Args:
        text: one text message from the endpoint.
    """
    try:
        message = json.loads(text)
    except (ValueError, RecursionError):  # not JSON, or absurdly nested
        return None
    if not isinstance(message, dict):
        return None
    event = message.get("event")
    if event == "clear":
        return Clear()
    name = message.get("name")
    if event == "mark" and isinstance(name, str) and 1 <= len(name) <= MAX_MARK_NAME:
        return Mark(name)
    return None


def encode_event(event: PlayoutEvent) -> str:
    """The text message that answers with `event`.

    Args:
        event: from `PlayoutBuffer.take_events`.
    """
    match event:
        case MarkPlayed(name, cleared):
            body: dict[str, object] = {"event": "mark", "name": name, "cleared": cleared}
        case Cleared(dropped_ms):
            body = {"event": "cleared", "droppedMs": dropped_ms}
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))
