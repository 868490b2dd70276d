"""The demo page's built-in endpoints: a viewer for egress and a speaker for ingest.

Development mode only: `sluice.cli.apps` includes this router only when `settings.dev`, so in
production the paths do not exist (HTTP 404; a WebSocket handshake is refused).

- `WS /demo/viewer/{viewerId}/in?kind=pcm|jpeg`: an ordinary endpoint that Sluice's
  egress pipelines dial. JPEG payloads are relayed as they are; PCM becomes an RMS level
  in dBFS, at most every `LEVEL_INTERVAL_S`.
- `WS /demo/viewer/{viewerId}/out`: the page's side. Binary messages are JPEGs, text
  messages are JSON: `{"type": "level", "dbfs": -23.4}` and
  `{"type": "endpoint", "kind": "jpeg", "state": "connected"|"disconnected"}`.
- `WS /demo/speak`: an ingest endpoint that says `demo_clip()` now and then.
- `GET /demo/endpoints?viewer=…`: the URLs above as the *worker* must dial them.

Everything lives in this process's memory (no Redis): with several API processes the
`in` and `out` sockets of one viewer could land on different ones; `sluice dev` runs one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Annotated, Literal

import anyio
import numpy as np
import structlog
from fastapi import APIRouter, Query, Request, WebSocket, WebSocketDisconnect
from starlette.requests import HTTPConnection

from sluice.demo.speech import chunk_packets, clip_seconds, demo_clip
from sluice.errors import InvalidParams
from sluice.http.auth import SettingsDep
from sluice.wire.packet import PacketDecodeError, decode

log = structlog.get_logger("sluice.api.demo")

router = APIRouter(prefix="/demo", include_in_schema=False)

SILENCE_DBFS = -120.0
LEVEL_INTERVAL_S = 0.1  # at most ten level messages a second per viewer
SUBSCRIBER_BUFFER = 32  # messages a slow page may fall behind before the oldest go
MAX_VIEWERS = 32  # viewer ids alive at once: a runaway page cannot grow the dict forever
FIRST_WORDS_AFTER_S = 1.0  # time for the page to subscribe before the first sentence
PAUSE_S = 1.5  # between two sentences
SPEAK_FOR_S = 60.0  # then the speaker hangs up and the ingest adapter ends by itself
VIEWER_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
CLOSE_NORMAL, CLOSE_POLICY, CLOSE_TRY_AGAIN_LATER = 1000, 1008, 1013

Message = bytes | str


# --- pure parts: no sockets, no asyncio -------------------------------------------


def level_dbfs(pcm: bytes) -> float:
    """RMS level of s16le samples in dB relative to full scale; `SILENCE_DBFS` for none.

    A full-scale sine is -3 dBFS; a full-scale square wave 0 dBFS.
    """
    samples = np.frombuffer(pcm[: len(pcm) - len(pcm) % 2], dtype="<i2")
    if samples.size == 0:
        return SILENCE_DBFS
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) / 32768.0
    return max(SILENCE_DBFS, 20 * math.log10(rms)) if rms > 0 else SILENCE_DBFS


class LevelMeter:
    """Averages PCM power over windows of `interval_s`; one level per window.

    Args:
        interval_s: the shortest time between two levels.
    """

    def __init__(self, interval_s: float = LEVEL_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self._power = 0.0  # sum of squared samples since the last level
        self._count = 0
        self._since: float | None = None

    def feed(self, pcm: bytes, now: float) -> float | None:
        """Adds `pcm`; returns the window's level in dBFS once `interval_s` has passed."""
        samples = np.frombuffer(pcm[: len(pcm) - len(pcm) % 2], dtype="<i2")
        self._power += float(np.sum(np.square(samples, dtype=np.float64)))
        self._count += samples.size
        if self._since is None:
            self._since = now
        if now - self._since < self.interval_s:
            return None
        rms = math.sqrt(self._power / self._count) / 32768.0 if self._count else 0.0
        self._power, self._count, self._since = 0.0, 0, now
        return max(SILENCE_DBFS, 20 * math.log10(rms)) if rms > 0 else SILENCE_DBFS


class Subscriber:
    """One page's outbox: bounded, and when full the oldest message goes.

    Args:
        limit: messages held at most.
        wake: called after every push (the socket side sets an `asyncio.Event`).
    """

    def __init__(
        self, limit: int = SUBSCRIBER_BUFFER, wake: Callable[[], None] | None = None
    ) -> None:
        self._messages: deque[Message] = deque(maxlen=limit)
        self._wake = wake
        self.dropped = 0

    def push(self, message: Message) -> None:
        if len(self._messages) == self._messages.maxlen:
            self.dropped += 1  # deque(maxlen) drops the oldest on append
        self._messages.append(message)
        if self._wake is not None:
            self._wake()

    def drain(self) -> list[Message]:
        messages = list(self._messages)
        self._messages.clear()
        return messages


@dataclass
class FanOut:
    """What one viewer id's endpoints publish, copied to each of its pages."""

    subscribers: set[Subscriber] = field(default_factory=set)
    users: int = 0  # open sockets, `in` and `out`: the entry goes when none is left

    def publish(self, message: Message) -> None:
        for subscriber in self.subscribers:
            subscriber.push(message)


class ViewerFull(Exception):
    """`MAX_VIEWERS` viewer ids are in use."""


class ViewerHub:
    """viewerId → `FanOut`, an entry only while one of its sockets is open."""

    def __init__(self, max_viewers: int = MAX_VIEWERS) -> None:
        self.max_viewers = max_viewers
        self._viewers: dict[str, FanOut] = {}

    def __len__(self) -> int:
        return len(self._viewers)

    @contextlib.contextmanager
    def use(self, viewer_id: str) -> Iterator[FanOut]:
        """The viewer's fan-out for as long as a socket uses it.

        Raises:
            ViewerFull: `viewer_id` is new and `max_viewers` are in use.
        """
        fanout = self._viewers.get(viewer_id)
        if fanout is None:
            if len(self._viewers) >= self.max_viewers:
                raise ViewerFull(f"{self.max_viewers} demo viewers are open")
            fanout = self._viewers[viewer_id] = FanOut()
        fanout.users += 1
        try:
            yield fanout
        finally:
            fanout.users -= 1
            if fanout.users == 0:
                del self._viewers[viewer_id]


# --- I/O -------------------------------------------------------------------------


def endpoint_base(conn: HTTPConnection, public_url: str) -> str:
    """`ws://host:port` of the socket this request arrived on, as the worker dials it.

    The API's own address, not the page's Host header: the page may say `localhost`
    (which can resolve to ::1, where the API does not listen) or a proxy's name, while
    in development the worker runs on this machine and reaches the API where it listens.
    `public_url` is only the fallback (a Unix socket has no address): it defaults to
    port 8080 whatever port the API was started on.
    """
    server = conn.scope.get("server")
    if not server or server[1] is None:
        return re.sub(r"^http", "ws", public_url.rstrip("/"))
    host, port = str(server[0]), int(server[1])
    return f"ws://[{host}]:{port}" if ":" in host else f"ws://{host}:{port}"


def _hub(conn: HTTPConnection) -> ViewerHub:
    state = conn.app.state
    if not hasattr(state, "demo_viewers"):
        state.demo_viewers = ViewerHub()
    hub: ViewerHub = state.demo_viewers
    return hub


@router.get("/endpoints")
async def endpoints(
    request: Request, settings: SettingsDep, viewer: Annotated[str, Query()]
) -> dict[str, str]:
    """The endpoint URLs for the page's adapter requests.

    Raises:
        InvalidParams: `viewer` is not 1-64 letters, digits, `-` or `_`.
    """
    if not VIEWER_ID.fullmatch(viewer):
        raise InvalidParams("viewer must be 1-64 letters, digits, '-' or '_'")
    base = endpoint_base(request, settings.public_url)
    return {
        "pcm": f"{base}/demo/viewer/{viewer}/in?kind=pcm",
        "jpeg": f"{base}/demo/viewer/{viewer}/in?kind=jpeg",
        "speak": f"{base}/demo/speak",
    }


def _ignore(_: bytes) -> None:
    """Sluice sends an ingest endpoint nothing; a page sends its viewer nothing."""


async def _until_disconnect(ws: WebSocket, on_bytes: Callable[[bytes], None]) -> None:
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return
        data = message.get("bytes")
        if data is not None:
            on_bytes(data)


@router.websocket("/viewer/{viewer_id}/in")
async def viewer_in(
    ws: WebSocket, viewer_id: str, kind: Annotated[Literal["pcm", "jpeg"], Query()] = "pcm"
) -> None:
    """Where an egress pipeline sends Packets; relayed to the viewer's pages."""
    if not VIEWER_ID.fullmatch(viewer_id):
        await ws.close(CLOSE_POLICY)
        return
    loop = asyncio.get_running_loop()
    meter = LevelMeter(LEVEL_INTERVAL_S)
    try:
        with _hub(ws).use(viewer_id) as fanout:
            await ws.accept()

            def relay(data: bytes) -> None:
                try:
                    packet = decode(data)
                except PacketDecodeError:
                    return
                if kind == "jpeg":
                    if packet.payload:
                        fanout.publish(packet.payload)
                    return
                level = meter.feed(packet.payload, loop.time())
                if level is not None:
                    fanout.publish(json.dumps({"type": "level", "dbfs": round(level, 1)}))

            fanout.publish(_endpoint_event(kind, "connected"))
            try:
                await _until_disconnect(ws, relay)
            finally:
                fanout.publish(_endpoint_event(kind, "disconnected"))
    except ViewerFull:
        await ws.close(CLOSE_TRY_AGAIN_LATER)


def _endpoint_event(kind: str, state: str) -> str:
    return json.dumps({"type": "endpoint", "kind": kind, "state": state})


@router.websocket("/viewer/{viewer_id}/out")
async def viewer_out(ws: WebSocket, viewer_id: str) -> None:
    """The page's feed: JPEGs as binary messages, levels and events as JSON text."""
    if not VIEWER_ID.fullmatch(viewer_id):
        await ws.close(CLOSE_POLICY)
        return
    ready = asyncio.Event()
    subscriber = Subscriber(wake=ready.set)

    async def send() -> None:
        while True:
            await ready.wait()
            ready.clear()
            for message in subscriber.drain():
                if isinstance(message, bytes):
                    await ws.send_bytes(message)
                else:
                    await ws.send_text(message)

    try:
        with _hub(ws).use(viewer_id) as fanout:
            # Subscribed before the handshake completes: once the page sees `open`,
            # nothing an adapter sends can be missed.
            fanout.subscribers.add(subscriber)
            try:
                await ws.accept()
                await _first_to_end(lambda: _until_disconnect(ws, _ignore), send)
            except* WebSocketDisconnect:
                pass  # the page went away mid-send
            finally:
                fanout.subscribers.discard(subscriber)
    except ViewerFull:
        await ws.close(CLOSE_TRY_AGAIN_LATER)


@router.websocket("/speak")
async def speak(ws: WebSocket) -> None:
    """An ingest endpoint: `demo_clip()` every few seconds, then it hangs up."""
    await ws.accept()
    pcm = await asyncio.to_thread(demo_clip)  # espeak-ng the first time; cached after
    loop = asyncio.get_running_loop()

    async def talk() -> None:
        start = loop.time()
        speak_at, sequence, said = start + FIRST_WORDS_AFTER_S, 0, 0
        while speak_at < start + SPEAK_FOR_S:
            await asyncio.sleep(max(0.0, speak_at - loop.time()))
            messages = chunk_packets(pcm, sequence)
            sequence += len(messages) - 1
            for message in messages:  # unpaced, as TTS services send: Sluice buffers it
                await ws.send_bytes(message)
            said += 1
            speak_at += clip_seconds(pcm) + PAUSE_S
        log.info("demo_speaker_done", sentences=said)
        await ws.close(CLOSE_NORMAL)

    try:
        await _first_to_end(lambda: _until_disconnect(ws, _ignore), talk)
    except* WebSocketDisconnect:
        pass  # Sluice closed the adapter mid-sentence


async def _first_to_end(*jobs: Callable[[], Awaitable[None]]) -> None:
    """Runs the jobs until one returns; the others are cancelled and awaited.

    An anyio task group, not `asyncio.wait`: Starlette runs endpoints inside anyio cancel
    scopes, and a scope's cancellation arriving during the cleanup `gather` is not
    absorbed by the scope. A job's exception arrives wrapped in an `ExceptionGroup`.
    """
    async with anyio.create_task_group() as group:

        async def run(job: Callable[[], Awaitable[None]]) -> None:
            await job()
            group.cancel_scope.cancel()

        for job in jobs:
            group.start_soon(run, job)
