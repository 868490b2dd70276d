"""Egress (WebRTC → WebSocket): what every egress pipeline shares.

The pipeline pulls the track from the SFU with the receiver tapped (encoded frames as
they complete, no jitter buffer: latency first). The media half (`egress_audio`,
`egress_jpeg`) turns frames into Packets and appends them to a bounded backlog. One
sender task drains the backlog into the current connection, so a slow or absent
endpoint never blocks decoding, and memory stays bounded.

When the connection is lost, or the endpoint closes with anything but 1000, the pipeline
re-dials within the reconnect window while the backlog keeps what it holds (audio:
drop-oldest, video: the latest JPEG); on reconnect it flushes the backlog in order and
goes live again.
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import abstractmethod
from collections.abc import Coroutine
from typing import Any

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from sluice.errors import ErrorCode
from sluice.media.calls_client import SessionsApiError, SessionsClient
from sluice.media.types import EncodedFrame
from sluice.state.records import AdapterState, CloseReason
from sluice.tasks import first_completed
from worker.dial import DialError
from worker.pipelines.base import Pipeline, PipelineContext, SetupError, close_ws
from worker.pipelines.sfu_link import close_sessions_client, session_lost, sessions_client
from worker.protocol.reconnect import Backlog, CloseAction, ReconnectWindow, on_close
from worker.protocol.stamping import Stamper

_SETUP_ERRORS = {
    "not_found_session_error": ErrorCode.NOT_FOUND_SESSION,
    "not_found_track_error": ErrorCode.NOT_FOUND_TRACK,
}


class EgressPipeline(Pipeline):
    """Pull, reconnect and send; subclasses produce the Packets."""

    kind: str  # of the pulled track: "audio" | "video"
    clock_rate: int  # of the wire `timestamp`
    packet_interval_ms: float  # the shortest time between two Packets

    def __init__(self, ctx: PipelineContext, backlog: Backlog) -> None:
        super().__init__(ctx)
        self.backlog = backlog
        self._ready = asyncio.Event()  # the backlog has something to send
        self._in_flight: bytes | None = None  # taken from the backlog, not yet sent
        self._client: SessionsClient | None = None
        self._remote: MediaStreamTrack | None = None
        self._current: ClientConnection | None = None  # the endpoint connection, if open
        resume = ctx.resume
        self.stamper = (
            Stamper(self.clock_rate, resume.first_sequence, resume.first_timestamp)
            if resume is not None
            else Stamper(self.clock_rate)
        )

    def position(self) -> dict[str, int]:
        return {"p_seq": self.stamper.next_sequence_number, "p_ts": self.stamper.last_timestamp}

    async def prepare(self) -> None:
        """Pulls the track from the SFU, tapped before any media can flow."""
        record = self.ctx.record
        self._client = sessions_client(self.ctx)
        try:
            self._remote = await self._client.pull(
                record.session_id, record.track_name, kind=self.kind, on_frame=self._on_frame
            )
        except SessionsApiError as exc:
            code = _SETUP_ERRORS.get(exc.error_code, ErrorCode.INTERNAL_ERROR)
            raise SetupError(code, exc.description) from None
        except OSError as exc:
            raise SetupError(ErrorCode.INTERNAL_ERROR, f"the SFU is unreachable: {exc}") from None

    @abstractmethod
    def _on_frame(self, frame: EncodedFrame) -> None:
        """Called in the event loop with every complete encoded frame of the track."""

    def _emit(self, message: bytes) -> None:
        """Queues one Packet for the endpoint (drop-oldest when the backlog is full)."""
        self.ctx.counters["dropped"] += self.backlog.append(message)
        self._ready.set()

    def _media_tasks(self) -> list[Coroutine[Any, Any, None]]:
        """Extra work that lives as long as the stream (e.g. a snapshot timer)."""
        return []

    async def _run_media(self) -> None:
        """Runs the media tasks; returns (or raises) only when one of them stops."""
        if coros := self._media_tasks():
            await first_completed(*coros, log=self.ctx.log)
        else:
            await asyncio.Event().wait()

    async def run(self, ws: ClientConnection) -> CloseReason:
        self._current = ws
        reason: CloseReason | None = None
        try:
            # A pipeline ends when any of its tasks ends: never stream on half-dead. On a
            # tie, a media failure counts before the track's end before the endpoint.
            reason = await first_completed(
                self._until_media_stops(),
                self._until_track_ends(),
                self._connections(),
                log=self.ctx.log,
            )
            return reason
        finally:
            if self._current is not None:
                # 1000 however it ended (closed via the API, shut down, failed); the
                # reason text says when the source is gone.
                why = "track ended" if reason is CloseReason.TRACK_ENDED else ""
                await close_ws(self._current, 1000, why)

    async def _until_media_stops(self) -> CloseReason:
        error: Exception | None = None
        try:
            await self._run_media()
        except Exception as exc:
            error = exc
        self.ctx.log.error("media_task_failed", error=repr(error), exc_info=error)
        return CloseReason.INTERNAL_ERROR

    async def _until_track_ends(self) -> CloseReason:
        await self._track_ended()
        return CloseReason.TRACK_ENDED

    async def _connections(self) -> CloseReason:
        """Streams over the connection, re-dialling each time it is lost."""
        while (ws := self._current) is not None:
            outcome = await self._serve(ws)
            if outcome is not None:
                return outcome
            self._current = None
            await self._reconnect()
        return CloseReason.ENDPOINT_UNAVAILABLE

    async def _serve(self, ws: ClientConnection) -> CloseReason | None:
        """Streams over one connection; None when it was lost and should be re-dialled."""
        await first_completed(self._send(ws), self._drain(ws), log=self.ctx.log)
        received = ws.protocol.close_rcvd
        code = received.code if received is not None else None
        if on_close(code, current=True) is CloseAction.END:
            self.ctx.log.info("endpoint_closed", code=code)
            return CloseReason.ENDPOINT_CLOSED
        self.ctx.log.info("endpoint_lost", code=code)
        ws.transport.abort()
        return None

    async def _reconnect(self) -> None:
        """Re-dials within the window into `_current`; leaves it None if the window ran out."""
        await self.ctx.set_state(AdapterState.RECONNECTING)
        loop = asyncio.get_running_loop()
        window = ReconnectWindow(loop.time(), window_s=self.ctx.settings.reconnect_window_s)
        while (delay := window.next_delay(loop.time())) is not None:
            await asyncio.sleep(delay)
            try:
                async with asyncio.timeout(window.remaining(loop.time())):
                    # Kept at once: if the pipeline ends while the state is announced,
                    # `run` still closes this connection.
                    self._current = await self.ctx.redial()
            except (DialError, TimeoutError):
                continue
            self.ctx.counters["reconnects"] += 1
            await self.ctx.set_state(AdapterState.ACTIVE)
            self.ctx.log.info("endpoint_reconnected", attempts=window.attempts)
            return
        self.ctx.log.info("endpoint_unavailable", window_s=self.ctx.settings.reconnect_window_s)

    async def _send(self, ws: ClientConnection) -> None:
        counters = self.ctx.counters
        while True:
            if self._in_flight is None:
                self._in_flight = self.backlog.pop()
            if self._in_flight is None:
                self._ready.clear()
                await self._ready.wait()
                continue
            # Kept until sent: a message whose send fails goes first on the next
            # connection (at-least-once across a reconnect rather than a gap).
            try:
                await ws.send(self._in_flight)
            except ConnectionClosed:
                return  # `_serve` reads why from the connection
            counters["packets"] += 1
            counters["bytes"] += len(self._in_flight)
            self._in_flight = None

    async def _drain(self, ws: ClientConnection) -> None:
        """Reads and ignores what the endpoint sends (spec §7); returns when it closes."""
        with contextlib.suppress(ConnectionClosed):
            async for _ in ws:
                pass

    async def _track_ended(self) -> None:
        """Returns when the source ends: the publisher left, or the SFU went away."""
        assert self._remote is not None and self._client is not None
        remote = self._remote

        async def receiver_ended() -> None:
            with contextlib.suppress(MediaStreamError):
                while True:
                    await remote.recv()

        async def sfu_gone() -> None:
            why = await session_lost(peer)
            self.ctx.log.warning("sfu_session_lost", why=why)

        peer = self._client.peers[0]
        await first_completed(sfu_gone(), receiver_ended(), log=self.ctx.log)

    async def aclose(self) -> None:
        await close_sessions_client(self._client, self.ctx.log)
