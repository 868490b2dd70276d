"""One adapter's state changes, announced on its Redis pub/sub channel, as typed events.

The Lua transitions (`lua/*.lua`) publish them as JSON (`{"event": "claimed", ...}`);
`parse_event` is the one place that reads that JSON, so a consumer matches on types,
never on strings.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from sluice.errors import ErrorCode
from sluice.state import keys
from sluice.state.records import AdapterState


@dataclass(frozen=True, slots=True)
class Claimed:
    """A worker took the adapter's job."""

    worker: str


@dataclass(frozen=True, slots=True)
class StateChanged:
    """The adapter went `active` or `reconnecting`."""

    state: AdapterState


@dataclass(frozen=True, slots=True)
class Failed:
    """The create failed; nothing of the adapter is left."""

    error_code: str
    error_description: str


@dataclass(frozen=True, slots=True)
class Closed:
    """The adapter closed (`reason` is a `CloseReason` value)."""

    reason: str


AdapterEvent = Claimed | StateChanged | Failed | Closed


def parse_event(data: str | bytes) -> AdapterEvent | None:
    """Decodes one message from an adapter's events channel; None if it is not an event."""
    try:
        raw = json.loads(data)
    except ValueError:
        return None
    if not isinstance(raw, dict):
        return None
    try:
        return _from_json(raw)
    except (KeyError, ValueError, TypeError):
        return None


def _from_json(raw: dict[str, Any]) -> AdapterEvent | None:
    match raw.get("event"):
        case "claimed":
            return Claimed(worker=str(raw["worker"]))
        case "state":
            return StateChanged(state=AdapterState(raw["state"]))
        case "failed":
            return Failed(
                error_code=str(raw.get("errorCode") or ErrorCode.INTERNAL_ERROR),
                error_description=str(raw.get("errorDescription", "")),
            )
        case "closed":
            return Closed(reason=str(raw["reason"]))
    return None


class AdapterEvents:
    """A subscription to one adapter's events. Subscribe *before* acting, then wait."""

    def __init__(self, pubsub: Any) -> None:
        self._pubsub = pubsub

    async def wait_for(
        self, kinds: tuple[type[AdapterEvent], ...], timeout_s: float
    ) -> AdapterEvent | None:
        """The next event of one of the types `kinds`, or None after `timeout_s`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while (remaining := deadline - loop.time()) > 0:
            message = await self._pubsub.get_message(
                ignore_subscribe_messages=True, timeout=remaining
            )
            if message is None or message.get("type") != "message":
                continue
            event = parse_event(message["data"])
            if isinstance(event, kinds):
                return event
        return None


@asynccontextmanager
async def subscribe(redis: Redis, adapter_id: str) -> AsyncIterator[AdapterEvents]:
    """Subscribes to an adapter's events channel for the duration of the block."""
    pubsub = redis.pubsub()
    try:
        await pubsub.subscribe(keys.adapter_events(adapter_id))
        yield AdapterEvents(pubsub)
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
