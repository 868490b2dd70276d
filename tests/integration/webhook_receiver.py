"""A real HTTP server on 127.0.0.1 standing in for an application's webhook endpoint.

Minimal HTTP/1.1 on asyncio streams, so a test controls every answer: a status per
request in turn, or none at all (a receiver that accepts and never answers).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Delivery:
    at: float  # time.time() when the body was in
    headers: dict[str, str]  # names lower-cased
    body: bytes

    @property
    def event(self) -> dict[str, Any]:
        loaded = json.loads(self.body)
        assert isinstance(loaded, dict)
        return loaded


@dataclass
class Receiver:
    port: int = 0
    statuses: list[int] = field(default_factory=list)  # answered in turn, then 200
    silent: bool = False  # read the request, never answer
    deliveries: list[Delivery] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    released: asyncio.Event = field(default_factory=asyncio.Event)  # silent requests end

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/sluice?token=hook-token"

    def events(self, adapter_id: str | None = None) -> list[dict[str, Any]]:
        """Each event once (first delivery of each id), in arrival order."""
        seen: dict[str, dict[str, Any]] = {}
        for delivery in self.deliveries:
            event = delivery.event
            if adapter_id is None or event["adapter"]["adapterId"] == adapter_id:
                seen.setdefault(event["id"], event)
        return list(seen.values())

    async def wait_for(self, count: int, timeout_s: float, adapter_id: str | None = None) -> None:
        """Until `count` distinct events (of `adapter_id`) have arrived."""
        await self._wait(lambda: len(self.events(adapter_id)) >= count, timeout_s)

    async def wait_deliveries(self, count: int, timeout_s: float) -> None:
        """Until `count` requests (retries included) have arrived."""
        await self._wait(lambda: len(self.deliveries) >= count, timeout_s)

    async def _wait(self, done: Callable[[], bool], timeout_s: float) -> None:
        async with asyncio.timeout(timeout_s):
            while not done():
                self.arrived.clear()
                await self.arrived.wait()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")[1:]
            headers = {}
            for line in lines:
                if ":" in line:
                    name, value = line.split(":", 1)
                    headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.deliveries.append(Delivery(time.time(), headers, body))
            self.arrived.set()
            if self.silent:
                await self.released.wait()
                return
            status = self.statuses.pop(0) if self.statuses else 200
            writer.write(f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n".encode())
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def receiver(port: int = 0, **options: Any) -> AsyncIterator[Receiver]:
    hooks = Receiver(**options)
    server = await asyncio.start_server(hooks._handle, "127.0.0.1", port)
    hooks.port = server.sockets[0].getsockname()[1]
    try:
        yield hooks
    finally:
        hooks.released.set()
        server.close()
        await server.wait_closed()
