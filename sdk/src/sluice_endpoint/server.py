"""`Endpoint`: accepts Sluice's dials, checks them, and hands you a stream or a sender.

    endpoint = Endpoint(token="s3cret")            # or signing_secret=... (E6)

    @endpoint.egress("/stt")                      # once per egress adapter
    async def stt(stream: EgressStream) -> None:
        async for item in stream: ...             # across Sluice's reconnects

    @endpoint.ingest("/tts")                      # once per ingest adapter
    async def tts(sender: IngestSender) -> None:
        await sender.send(pcm, sample_rate=24_000, channels=1)
        await sender.end()

    async with endpoint.serve("127.0.0.1", 9100):  # a websockets server, or:
        ...
    app = endpoint.asgi()                         # for uvicorn, Starlette, FastAPI

An egress handler runs once per stream, however many connections Sluice makes for it;
when it returns the connection is closed with 1000, which tells Sluice the endpoint is
done (the adapter closes, reason `endpoint_closed`). An ingest handler runs once per
connection; when it returns, the sender closes and Sluice plays out what it has.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from sluice_endpoint.dials import Dial, DialCheck
from sluice_endpoint.egress import DEFAULT_MAX_QUEUED, DEFAULT_RECONNECT_TIMEOUT_S, EgressStream
from sluice_endpoint.errors import DialRefused, SignatureError
from sluice_endpoint.formats import CLOUDFLARE_PCM, AudioFormat, MediaFormat
from sluice_endpoint.ingest import IngestSender
from sluice_endpoint.signatures import Secrets
from sluice_endpoint.sockets import MessageSocket, WebsocketsSocket

log = logging.getLogger("sluice_endpoint")

EgressHandler = Callable[[EgressStream], Awaitable[None]]
IngestHandler = Callable[[IngestSender], Awaitable[None]]
H = TypeVar("H", EgressHandler, IngestHandler)
# JPEG snapshots at source resolution outgrow websockets' 1 MiB default.
MAX_INCOMING_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class _Route:
    handler: EgressHandler | IngestHandler
    fmt: MediaFormat
    options: dict[str, Any]
    egress: bool


class Endpoint:
    """Routes Sluice's dials by URL path to your handlers.

    Args:
        token: require this token on every dial (`?token=` or `Authorization: Bearer`).
        signing_secret: require Sluice's signature (E6) made with this secret.
        public_url: the URL prefix of this server in the create items (see `DialCheck`).
        reconnect_timeout_s: how long an egress stream waits for Sluice to reconnect.
        max_queued: items an egress stream holds for a slow handler.
    """

    def __init__(
        self,
        *,
        token: str | None = None,
        signing_secret: Secrets | None = None,
        public_url: str | None = None,
        reconnect_timeout_s: float = DEFAULT_RECONNECT_TIMEOUT_S,
        max_queued: int = DEFAULT_MAX_QUEUED,
    ) -> None:
        self.check = DialCheck(token=token, signing_secret=signing_secret, public_url=public_url)
        self.reconnect_timeout_s = reconnect_timeout_s
        self.max_queued = max_queued
        self._routes: dict[str, _Route] = {}
        self._streams: dict[str, EgressStream] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def egress(self, path: str, fmt: MediaFormat = CLOUDFLARE_PCM) -> Callable[[H], H]:
        """Registers an egress handler for dials of `path` (the adapter's format: `fmt`)."""
        return self._route(path, fmt, egress=True)

    def ingest(
        self,
        path: str,
        fmt: AudioFormat = CLOUDFLARE_PCM,
        *,
        pace: bool = False,
        lead_s: float = 0.5,
        chunk_ms: float | None = None,
    ) -> Callable[[H], H]:
        """Registers an ingest handler for dials of `path`; options as `IngestSender`'s."""
        return self._route(path, fmt, egress=False, pace=pace, lead_s=lead_s, chunk_ms=chunk_ms)

    def _route(self, path: str, fmt: MediaFormat, egress: bool, **options: Any) -> Callable[[H], H]:
        if not path.startswith("/"):
            raise ValueError(f"a route path starts with '/', got {path!r}")

        def register(handler: H) -> H:
            self._routes[path] = _Route(handler, fmt, options, egress)
            return handler

        return register

    def accept(self, dial: Dial, now: float | None = None) -> None:
        """Decides on a dial before the WebSocket is accepted.

        Raises:
            DialRefused: 404 for a path without a handler, 401 for a failed check.
        """
        if dial.path not in self._routes:
            raise DialRefused(404, f"no endpoint at {dial.path}")
        try:
            self.check.check(dial, time.time() if now is None else now)
        except SignatureError as exc:
            raise DialRefused(401, str(exc)) from None

    async def handle(self, socket: MessageSocket, dial: Dial) -> None:
        """Serves one accepted connection until it closes (any framework calls this)."""
        route = self._routes[dial.path]
        if not route.egress:
            await self._serve_ingest(route, socket, dial)
            return
        key = dial.adapter_id or dial.target
        stream, first = self._streams.get(key), None
        if stream is not None and stream.end is None and dial.adapter_id is None:
            # Without an adapter id, only the first message tells a reconnect of this
            # stream's adapter from a new adapter dialling the same URL.
            first = await socket.recv()
            if first is None:
                return
            if stream.starts_new_stream(first):
                stream.give_up()  # its adapter is gone
                stream = None
        if stream is None or stream.end is not None:
            stream = self._new_stream(key, route, dial)
        try:
            await stream.attach(socket, first)
        finally:
            if stream.end is not None and self._streams.get(key) is stream:
                del self._streams[key]

    def _new_stream(self, key: str, route: _Route, dial: Dial) -> EgressStream:
        stream = EgressStream(
            route.fmt,
            adapter_id=dial.adapter_id,
            path=dial.target,
            max_queued=self.max_queued,
            reconnect_timeout_s=self.reconnect_timeout_s,
        )
        self._streams[key] = stream
        handler: Any = route.handler
        runner = self._run_egress(handler, stream, dial.path)
        task = asyncio.get_running_loop().create_task(runner)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return stream

    async def _run_egress(self, handler: EgressHandler, stream: EgressStream, path: str) -> None:
        # The path without its query: tokens live there, and logs never show them.
        log.info("egress stream started: %s, adapter %s", path, stream.adapter_id)
        try:
            await handler(stream)
        except Exception:
            log.exception("egress handler failed: %s, adapter %s", path, stream.adapter_id)
        finally:
            await stream.close()
            log.info(
                "egress stream ended: %s, adapter %s, %d connection(s), %s",
                path,
                stream.adapter_id,
                stream.connections,
                stream.end,
            )

    async def _serve_ingest(self, route: _Route, socket: MessageSocket, dial: Dial) -> None:
        assert isinstance(route.fmt, AudioFormat)
        handler: Any = route.handler
        sender = IngestSender(socket, route.fmt, **route.options)
        log.info("ingest connection opened: %s, adapter %s", dial.path, dial.adapter_id)
        try:
            await handler(sender)
        except Exception:
            log.exception("ingest handler failed: %s, adapter %s", dial.path, dial.adapter_id)
        finally:
            await sender.close()
            log.info(
                "ingest connection closed: %s, adapter %s, %d bytes sent, close code %s",
                dial.path,
                dial.adapter_id,
                sender.bytes_sent,
                sender.close_code,
            )

    async def aclose(self) -> None:
        """Cancels the egress handlers still running and waits for them."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    @contextlib.asynccontextmanager
    async def serve(
        self, host: str = "127.0.0.1", port: int = 0, **kwargs: Any
    ) -> AsyncIterator[Server]:
        """Serves this endpoint with websockets; yields the server (`url_of(server)`).

        Args:
            host: the address to listen on.
            port: the port (0: any free one).
            kwargs: passed to `websockets.asyncio.server.serve` (e.g. `ssl`).
        """
        scheme = "wss" if kwargs.get("ssl") else "ws"

        def dial_of(request: Request) -> Dial:
            headers: dict[str, str] = {}
            for name, value in request.headers.raw_items():
                headers.setdefault(name, value)
            return Dial(request.path, headers, scheme)

        async def process_request(
            connection: ServerConnection, request: Request
        ) -> Response | None:
            try:
                self.accept(dial_of(request))
            except DialRefused as exc:
                log.warning("refused a dial of %s: %s", dial_of(request).path, exc)
                return connection.respond(exc.status, f"{exc}\n")
            return None

        async def on_connection(connection: ServerConnection) -> None:
            assert connection.request is not None
            await self.handle(WebsocketsSocket(connection), dial_of(connection.request))

        kwargs.setdefault("max_size", MAX_INCOMING_BYTES)
        async with serve(
            on_connection, host, port, process_request=process_request, **kwargs
        ) as server:
            try:
                yield server
            finally:
                await self.aclose()

    def asgi(self) -> Any:
        """This endpoint as an ASGI application (see `sluice_endpoint.asgi`)."""
        from sluice_endpoint.asgi import asgi_app

        return asgi_app(self)


def url_of(server: Server, scheme: str = "ws") -> str:
    """`ws://host:port` of a running server (the real port when it was asked for 0)."""
    host, port = server.sockets[0].getsockname()[:2]
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"
