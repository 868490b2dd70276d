"""The JSON text messages of the extensions: egress events (E4), ingest control (E2).

Parsing is lenient where the contract allows growth (unknown events and fields are
ignored, so a newer Sluice does not break an older SDK) and strict about the types of
the fields it uses.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sluice_endpoint.formats import format_from_event
from sluice_endpoint.items import Gap, Start, Stop

MAX_MARK_NAME = 256


def _object(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _int(fields: dict[str, Any], name: str, default: int | None = None) -> int:
    value = fields.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name!r} must be an integer, got {value!r}")
    return value


def parse_egress_event(text: str, clock_rate: int) -> Start | Gap | Stop | None:
    """One text message on an egress connection; None for anything but the three events.

    Args:
        text: the message.
        clock_rate: `timestamp` units per second of the stream, for a `gap`.

    Raises:
        ValueError: a known event with a field of the wrong type.
    """
    fields = _object(text)
    if fields is None:
        return None
    event = fields.get("event")
    if event == "start":
        fmt = format_from_event(fields.get("format") or {})
        return Start(
            adapter_id=str(fields.get("adapterId", "")),
            session_id=str(fields.get("sessionId", "")),
            track_name=str(fields.get("trackName", "")),
            connection=_int(fields, "connection", 1),
            format=fmt,
            sequence_number=_int(fields, "sequenceNumber", 0),
            timestamp=_int(fields, "timestamp", 0),
        )
    if event == "gap":
        return Gap(
            from_timestamp=_int(fields, "fromTimestamp"),
            to_timestamp=_int(fields, "toTimestamp"),
            missing_packets=_int(fields, "droppedFrames", 0),
            clock_rate=clock_rate,
            reported_by="sluice",
        )
    if event == "stop":
        return Stop(reason=str(fields.get("reason", "")))
    return None


@dataclass(frozen=True, slots=True)
class Cleared:
    """Sluice's answer to `clear`: how much buffered audio it dropped."""

    dropped_ms: int


@dataclass(frozen=True, slots=True)
class MarkReached:
    """Sluice's answer to `mark`: its audio played out, or a `clear` dropped it.

    Attributes:
        name: the mark's name.
        cleared: True when a `clear` dropped the audio before the mark.
    """

    name: str
    cleared: bool


def parse_ingest_answer(text: str) -> Cleared | MarkReached | None:
    """One text message on an ingest connection; None for anything else.

    Raises:
        ValueError: a known answer with a field of the wrong type.
    """
    fields = _object(text)
    if fields is None:
        return None
    event = fields.get("event")
    if event == "cleared":
        return Cleared(_int(fields, "droppedMs", 0))
    if event == "mark":
        name, cleared = fields.get("name"), fields.get("cleared", False)
        if not isinstance(name, str) or not isinstance(cleared, bool):
            raise ValueError(f"malformed mark answer: {text[:200]!r}")
        return MarkReached(name, cleared)
    return None


def clear_message() -> str:
    return json.dumps({"event": "clear"})


def mark_message(name: str) -> str:
    """The `mark` message.

    Raises:
        ValueError: a name of 0 or more than 256 characters.
    """
    if not 1 <= len(name) <= MAX_MARK_NAME:
        raise ValueError(f"a mark name has 1-{MAX_MARK_NAME} characters, got {len(name)}")
    return json.dumps({"event": "mark", "name": name})
