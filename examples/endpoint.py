"""What every example endpoint shares: the WebSocket server, Packets, and streams.

Sluice dials your endpoint in both directions, so an endpoint is a WebSocket *server*.
Each binary message is one protobuf `Packet` (`proto/packet.proto`; `sluice.wire.packet`
encodes and decodes it). An egress adapter that loses its connection re-dials the same
URL and carries on counting, so `EgressEndpoint` keys what it receives by the URL path:
a reconnect continues the stream of that path, and a new adapter on the same path (its
first Packet has sequence number and timestamp 0) starts a new one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import re
import signal
import sys
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from sluice.wire import packet as wire
from sluice.wire.packet import DecodedPacket as Packet

log = logging.getLogger("examples")
# The API of `make run` (development mode: app `demo`, secret `demo`).
DEFAULT_API = "http://127.0.0.1:8080/v1/apps/demo"
# JPEGs of large pictures are bigger than websockets' 1 MiB default.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
CLOSE_NORMAL = 1000

StreamT = TypeVar("StreamT")


class Endpoint(ABC):
    """One example endpoint: `handle` runs once per connection Sluice makes."""

    @abstractmethod
    async def handle(self, ws: ServerConnection) -> None: ...

    def close(self) -> None:  # noqa: B027 (a hook; most endpoints hold nothing)
        """Called once the server has stopped: finish files and the like."""


def base_parser(name: str, description: str | None, port: int) -> argparse.ArgumentParser:
    """The options every example takes; `name` is the example's module, e.g. `record`."""
    parser = argparse.ArgumentParser(
        prog=f"python -m examples.{name}",
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=port, help="port to listen on (0: any)")
    return parser


def encode(sequence_number: int, timestamp: int, payload: bytes) -> bytes:
    """One `Packet` as a message; `encode(0, 0, b"")` is the empty end-of-segment Packet."""
    return wire.encode(sequence_number % wire.UINT32_MOD, timestamp % wire.UINT32_MOD, payload)


async def packets(ws: ServerConnection) -> AsyncIterator[Packet]:
    """The Packets of one connection, until it closes; text and garbage are skipped."""
    with contextlib.suppress(ConnectionClosed):
        async for message in ws:
            if isinstance(message, str):
                continue
            try:
                yield wire.decode(message)
            except wire.PacketDecodeError:
                log.info(f"skipped an undecodable message ({len(message)} bytes)")


def stream_key(ws: ServerConnection) -> str:
    """A file-name-safe name for the URL path Sluice dialled: `/calls/42?t=x` → `calls-42`."""
    path = urlsplit(ws.request.path if ws.request else "/").path
    return re.sub(r"[^A-Za-z0-9_.]+", "-", path).strip("-.") or "stream"


@dataclass
class _Open(Generic[StreamT]):
    stream: StreamT
    current: ServerConnection
    packets: int = 0


class EgressEndpoint(Endpoint, Generic[StreamT]):
    """Receives egress Packets; one stream per URL path, continued across reconnects."""

    def __init__(self) -> None:
        self._open: dict[str, _Open[StreamT]] = {}
        self.ended = asyncio.Event()  # set whenever a stream has finished

    @abstractmethod
    def start(self, key: str, first: Packet) -> StreamT:
        """A new stream begins with `first` (which `receive` gets next)."""

    @abstractmethod
    def receive(self, stream: StreamT, packet: Packet) -> None: ...

    @abstractmethod
    def finish(self, stream: StreamT) -> None:
        """The stream is over: the adapter closed (1000) or the server stops."""

    async def handle(self, ws: ServerConnection) -> None:
        key = stream_key(ws)
        state = self._open.get(key)
        if state is not None:
            state.current = ws  # a reconnect: the old connection no longer counts
            log.info(f"[{key}] reconnected, appending")
        try:
            async for packet in packets(ws):
                if state is None or (
                    state.packets and packet.sequence_number == 0 and packet.timestamp == 0
                ):
                    if state is not None:  # a new adapter on the same path
                        self.finish(state.stream)
                        self.ended.set()
                    state = self._open[key] = _Open(self.start(key, packet), ws)
                state.packets += 1
                self.receive(state.stream, packet)
        finally:
            # 1000 from Sluice means the adapter closed: nothing more will come.
            if ws.close_code == CLOSE_NORMAL and state is not None and state.current is ws:
                self.finish(state.stream)
                del self._open[key]
                self.ended.set()

    def close(self) -> None:
        for state in self._open.values():
            self.finish(state.stream)
            self.ended.set()
        self._open.clear()


@contextlib.asynccontextmanager
async def open_server(endpoint: Endpoint, host: str, port: int) -> AsyncIterator[str]:
    """Serves `endpoint`; yields its base URL (`ws://host:port`, the real port when 0)."""
    async with serve(endpoint.handle, host, port, max_size=MAX_MESSAGE_BYTES) as server:
        bound = server.sockets[0].getsockname()
        yield f"ws://{host}:{bound[1]}"
    endpoint.close()


def run(endpoint: Endpoint, host: str, port: int, item: dict[str, Any], path: str) -> int:
    """Serves until Ctrl+C or SIGTERM, after printing how to point an adapter here.

    Args:
        item: the adapter request item to show, without its `endpoint`.
        path: the URL path to suggest (any path works).
    """

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("websockets").setLevel(logging.WARNING)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with open_server(endpoint, host, port) as url:
            body = json.dumps({"tracks": [{**item, "endpoint": url + path}]})
            print(
                f"listening on {url}{path}; with `make run` going, attach it with\n"
                f"  curl -s {DEFAULT_API}/adapters/websocket/new \\\n"
                f"    -H 'Authorization: Bearer demo' -d '{body}'\n",
                file=sys.stderr,
                flush=True,
            )
            await stop.wait()

    asyncio.run(main())
    return 0
