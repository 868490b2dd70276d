"""Waiting for one adapter's state changes, announced on its Redis pub/sub channel."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Container
from contextlib import asynccontextmanager
from typing import Any

from redis.asyncio import Redis

from sluice.state import keys
from sluice.state.store import parse_event


class AdapterEvents:
    """A subscription to one adapter's events. Subscribe *before* acting, then wait."""

    def __init__(self, pubsub: Any) -> None:
        self._pubsub = pubsub

    async def wait_for(self, kinds: Container[str], timeout_s: float) -> dict[str, Any] | None:
        """The next event whose `event` is in `kinds`, or None after `timeout_s`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while (remaining := deadline - loop.time()) > 0:
            message = await self._pubsub.get_message(
                ignore_subscribe_messages=True, timeout=remaining
            )
            if message is None or message.get("type") != "message":
                continue
            event = parse_event(message["data"])
            if event.get("event") in kinds:
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
