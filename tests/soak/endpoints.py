"""The soak's WebSocket endpoints: egress ones that drop now and then, ingest pushers."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from sluice.wire.packet import encode
from sluice.wire.packet_pb2 import Packet
from tests.integration.audio import tone_pcm
from tests.soak.plan import CHUNK, CHUNK_S, RECONNECT_WAIT_S

# --- endpoints ----------------------------------------------------------------------


class EgressEndpoint:
    """One egress adapter's endpoint: counts what arrives, drops the connection on demand.

    Arrivals are deduplicated by `sequenceNumber` (a send cut by a drop is re-sent on the
    next connection) in a bitmap, so a 30-minute run keeps no payloads.
    """

    def __init__(self, index: int) -> None:
        self.index = index
        self.seen = bytearray()
        self.unique = self.unique_bytes = self.duplicates = self.undecodable = 0
        self.max_sequence = -1
        self.connections = 0
        self.drops: list[str] = []
        self.refusing = False
        self.current: ServerConnection | None = None
        self.server: Server | None = None
        self.port = 0
        self._arrived = asyncio.Event()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/egress/{self.index}"

    async def listen(self) -> None:
        self.server = await serve(
            self._handler, "127.0.0.1", self.port, process_request=self._process_request
        )
        self.port = self.server.sockets[0].getsockname()[1]

    async def _process_request(self, ws: ServerConnection, _: Request) -> Response | None:
        return ws.respond(503, "away\n") if self.refusing else None

    async def _handler(self, ws: ServerConnection) -> None:
        self.connections += 1
        self.current = ws
        self._arrived.set()
        with contextlib.suppress(ConnectionClosed):
            async for message in ws:
                self._count(message)

    def _count(self, message: bytes | str) -> None:
        if isinstance(message, str):
            self.undecodable += 1
            return
        sequence = Packet.FromString(message).sequenceNumber
        if sequence >= len(self.seen):
            self.seen.extend(bytes(sequence + 1 - len(self.seen) + 4096))
        if self.seen[sequence]:
            self.duplicates += 1
            return
        self.seen[sequence] = 1
        self.unique += 1
        self.unique_bytes += len(message)
        self.max_sequence = max(self.max_sequence, sequence)

    async def drop(self, mode: str, outage_s: float) -> bool:
        """Drops the connection, stays away `outage_s`; True once the adapter re-dialled."""
        before = self.connections
        self.refusing = True  # re-dials meanwhile get a 503
        if mode == "restart":  # the server goes: 1001 to its connection, then no listener
            assert self.server is not None
            self.server.close()
            await self.server.wait_closed()
        elif self.current is not None and mode == "1001":
            await self.current.close(1001, "going away")
        elif self.current is not None:
            self.current.transport.abort()
        self.drops.append(mode)
        await asyncio.sleep(outage_s)
        if mode == "restart":
            await self.listen()
        self.refusing = False
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(RECONNECT_WAIT_S):
                while self.connections == before:
                    self._arrived.clear()
                    await self._arrived.wait()
        return self.connections > before

    def summary(self) -> dict[str, Any]:
        return {
            "produced_seen": self.max_sequence + 1,
            "unique": self.unique,
            "unique_bytes": self.unique_bytes,
            "duplicates": self.duplicates,
            "undecodable": self.undecodable,
            "connections": self.connections,
            "drops": self.drops,
        }


@dataclass
class Generation:
    """One ingest adapter of a slot, from create to its final record."""

    slot: int
    number: int
    end: str  # how it is ended: one of INGEST_ENDS
    adapter_id: str = ""
    pid: int = 0
    sent_packets: int = 0
    sent_bytes: int = 0
    record: dict[str, Any] = field(default_factory=dict)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    ws: ServerConnection | None = None
    pushing: asyncio.Task[None] | None = None

    def summary(self) -> dict[str, Any]:
        keep = ("slot", "number", "end", "adapter_id", "pid", "sent_packets", "sent_bytes")
        return {k: getattr(self, k) for k in keep} | {"record": self.record}


class IngestEndpoints:
    """One server for every ingest slot; the path says which generation connected."""

    def __init__(self) -> None:
        self.generations: dict[str, Generation] = {}
        self.server: Server | None = None
        ring = tone_pcm(440, 660, 12 * CHUNK_S)
        self.chunks = [ring[i : i + CHUNK] for i in range(0, len(ring), CHUNK)]

    async def listen(self) -> None:
        self.server = await serve(self._handler, "127.0.0.1", 0)

    def url(self, gen: Generation) -> str:
        assert self.server is not None
        path = f"/ingest/{gen.slot}/{gen.number}"
        self.generations[path] = gen
        return f"ws://127.0.0.1:{self.server.sockets[0].getsockname()[1]}{path}"

    async def _handler(self, ws: ServerConnection) -> None:
        gen = self.generations[ws.request.path if ws.request else ""]
        gen.ws = ws
        gen.pushing = asyncio.create_task(self._push(gen, ws))
        await ws.wait_closed()
        gen.stop.set()
        await gen.pushing

    async def _push(self, gen: Generation, ws: ServerConnection) -> None:
        """Paced: chunk k leaves at start + k chunk durations, until told to stop."""
        loop = asyncio.get_running_loop()
        start, k = loop.time(), 0
        with contextlib.suppress(ConnectionClosed):
            while not gen.stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(gen.stop.wait(), start + k * CHUNK_S - loop.time())
                if gen.stop.is_set():
                    break
                message = encode(k, k * CHUNK // 4, self.chunks[k % len(self.chunks)])
                await ws.send(message)
                gen.sent_packets += 1
                gen.sent_bytes += len(message)
                k += 1
