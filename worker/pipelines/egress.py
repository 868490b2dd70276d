"""Egress (WebRTC → WebSocket): what every egress pipeline shares.

The pipeline pulls the track from the SFU with the receiver tapped (encoded frames as
they complete, no jitter buffer: latency first). The media half (`egress_audio`,
`egress_opus`, `egress_jpeg`) turns frames into Packets, framed as the adapter asks (a
protobuf `Packet`, or with `framing: raw` the payload alone), and hands them to the
adapter's `EgressSession`, which queues them in a bounded backlog. One sender task writes what the
session says to send next into the current connection, so a slow or absent endpoint
never blocks decoding, and memory stays bounded.

When the connection is lost, or the endpoint closes with anything but 1000, the pipeline
re-dials as the session's reconnect window paces it while the backlog keeps what it
holds (audio: drop-oldest, video: the latest JPEG); on reconnect the message that was in
flight goes first, then the backlog in order, then live again. What to send, when to
re-dial and why the adapter ended are the session's decisions; this module only moves
bytes and waits.
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
from websockets.protocol import State

from sluice.errors import ErrorCode
from sluice.media.calls_client import SessionsApiError, SessionsClient
from sluice.media.types import EncodedFrame
from sluice.state.records import AdapterRecord, AdapterState, CloseReason
from sluice.tasks import first_completed
from sluice.wire.framing import frame, framing_of
from sluice.wire.packet import UINT32_MOD
from worker.dial import DialError
from worker.pipelines.base import Pipeline, PipelineContext, SetupError, close_ws
from worker.pipelines.sfu_link import (
    SfuTarget,
    choose_sfu,
    close_sessions_client,
    session_lost,
    sessions_client,
)
from worker.protocol.egress_session import EgressSession, Outgoing, SessionState, StreamInfo
from worker.protocol.reconnect import Backlog
from worker.protocol.stamping import Stamper
from worker.ws_write import write_now

_SETUP_ERRORS = {
    "not_found_session_error": ErrorCode.NOT_FOUND_SESSION,
    "not_found_track_error": ErrorCode.NOT_FOUND_TRACK,
}


def reconnect_window_s(ctx: PipelineContext) -> float:
    """The adapter's reconnect window (E8): its own, else the configured one."""
    return float(ctx.record.options.get("reconnectWindowS", ctx.settings.reconnect_window_s))


class EgressPipeline(Pipeline):
    """Pull, reconnect and send; subclasses produce the Packets."""

    kind: str  # of the pulled track: "audio" | "video"
    clock_rate: int  # of the wire `timestamp`
    packet_interval_ms: float  # the shortest time between two Packets

    @classmethod
    def timing(cls, record: AdapterRecord) -> tuple[int, float]:
        """`(clock_rate, packet_interval_ms)` of this adapter's stream (its format's)."""
        return cls.clock_rate, cls.packet_interval_ms

    def stream_format(self) -> dict[str, Any]:
        """The `format` of the E4 `start` event, framing aside."""
        return {"codec": self.ctx.record.codec}

    def timestamp_step(self) -> int:
        """Wire `timestamp` units from one Packet to the next (at the regular pace)."""
        return round(self.clock_rate * self.packet_interval_ms / 1000)

    def __init__(self, ctx: PipelineContext, backlog: Backlog[Outgoing]) -> None:
        super().__init__(ctx)
        record = ctx.record
        self.clock_rate, self.packet_interval_ms = self.timing(record)
        self.framing = framing_of(record.options)
        resume = ctx.resume
        first_sequence, first_timestamp = (
            (resume.first_sequence, resume.first_timestamp) if resume is not None else (0, 0)
        )
        events = None
        if record.options.get("events"):
            events = StreamInfo(
                adapter_id=record.adapter_id,
                session_id=record.session_id,
                track_name=record.track_name,
                format={**self.stream_format(), "framing": self.framing.value},
                timestamp_step=self.timestamp_step(),
                first_connection=1 + ctx.counters["reconnects"] + record.resumes,
            )
        self.session = EgressSession(
            backlog,
            window_s=reconnect_window_s(ctx),
            counters=ctx.counters,
            events=events,
            first_sequence=first_sequence,
            first_timestamp=first_timestamp,
        )
        if resume is not None:
            # What the lost process produced after its last save never reached us.
            after_saved = (resume.saved_timestamp + self.timestamp_step()) % UINT32_MOD
            self.session.lost_from(resume.saved_next_sequence, after_saved)
        self._ready = asyncio.Event()  # something was produced: the sender may have work
        # The connection the sender waits on `_ready` for, nothing in flight: `_emit`
        # writes to it at once instead of waking the sender (a task switch per Packet).
        self._parked: ClientConnection | None = None
        self._client: SessionsClient | None = None
        self._sfu: SfuTarget | None = None
        self._remote: MediaStreamTrack | None = None
        self._current: ClientConnection | None = None  # the endpoint connection, if open
        self.stamper = Stamper(self.clock_rate, first_sequence, first_timestamp)

    def position(self) -> dict[str, int]:
        return {"p_seq": self.stamper.next_sequence_number, "p_ts": self.stamper.last_timestamp}

    async def prepare(self) -> None:
        """Pulls the track from the SFU, tapped before any media can flow.

        The pipeline's session goes on the node of the source session: no cascade.
        """
        record = self.ctx.record
        self._sfu = await choose_sfu(self.ctx, near_session=record.session_id)
        self.ctx.log.info("sfu_node_chosen", node_id=self._sfu.node_id, url=self._sfu.url)
        self._client = sessions_client(self.ctx, self._sfu)
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

    def _emit(self, sequence: int, timestamp: int, payload: bytes) -> None:
        """Queues one Packet for the endpoint (drop-oldest when the backlog is full).

        With raw framing (E3) the message is the payload alone; the numbers still place
        it in the stream (backlog, events, a resume).
        """
        message = frame(self.framing, sequence, timestamp, payload)
        self.session.produce(message, sequence, timestamp)
        if self._parked is None or self._write_ready(self._parked) is not True:
            self._ready.set()  # the sender takes over

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
        session = self.session
        session.connection_up(asyncio.get_running_loop().time())
        self._current = ws
        try:
            # A pipeline ends when any of its tasks ends: never stream on half-dead. Each
            # of them ends the session first, and the first reason given stands.
            await first_completed(
                self._until_media_stops(),
                self._until_track_ends(),
                self._stream(),
                log=self.ctx.log,
            )
        finally:
            if self._current is not None:
                # Cancelled: the runner stopped us (closed via the API, shut down).
                stop = session.closing(self.ctx.stop_reason() or CloseReason.SHUTDOWN)
                if stop is not None:
                    await self._send_last(self._current, stop)
                # 1000 however it ended (closed via the API, shut down, failed); the
                # reason text says when the source is gone.
                gone = session.close_reason is CloseReason.TRACK_ENDED
                await close_ws(self._current, 1000, "track ended" if gone else "")
        assert session.close_reason is not None
        return session.close_reason

    async def _send_last(self, ws: ClientConnection, message: str) -> None:
        """Sends a last text message before closing, if the connection still takes it."""
        if ws.state is not State.OPEN:
            return  # the endpoint closed first: nobody to tell
        with contextlib.suppress(ConnectionClosed, OSError, TimeoutError):
            async with asyncio.timeout(ws.close_timeout or 1.0):
                await ws.send(message)

    async def _until_media_stops(self) -> None:
        error: Exception | None = None
        try:
            await self._run_media()
        except Exception as exc:
            error = exc
        self.ctx.log.error("media_task_failed", error=repr(error), exc_info=error)
        self.session.media_failed()

    async def _until_track_ends(self) -> None:
        await self._track_ended()
        self.session.track_ended()

    async def _stream(self) -> None:
        """Sends over the connection, re-dialling each time it is lost, until the end."""
        session, loop = self.session, asyncio.get_running_loop()
        while (ws := self._current) is not None:
            await first_completed(self._send(ws), self._drain(ws), log=self.ctx.log)
            received = ws.protocol.close_rcvd
            code = received.code if received is not None else None
            session.connection_lost(loop.time(), code)
            if session.state is SessionState.ENDED:
                self.ctx.log.info("endpoint_closed", code=code)
                return
            self.ctx.log.info("endpoint_lost", code=code)
            ws.transport.abort()
            self._current = None
            await self._redial()

    async def _redial(self) -> None:
        """Re-dials as the session paces it into `_current`, left None if the window ran out."""
        session, loop = self.session, asyncio.get_running_loop()
        announced = False  # a zero window gives up at once, never `reconnecting`
        while (delay := session.redial_delay(loop.time())) is not None:
            if not announced:
                await self.ctx.set_state(AdapterState.RECONNECTING)
                announced = True
            await asyncio.sleep(delay)
            try:
                async with asyncio.timeout(session.dial_timeout(loop.time())):
                    # Kept at once: if the pipeline ends while the state is announced,
                    # `run` still closes this connection.
                    self._current = await self.ctx.redial()
            except (DialError, TimeoutError):
                continue
            session.connection_up(loop.time())
            await self.ctx.set_state(AdapterState.ACTIVE)
            self.ctx.log.info(
                "endpoint_reconnected",
                attempts=session.attempts,
                outage_ms=round((session.last_outage_s or 0.0) * 1000),
            )
            return
        self.ctx.log.info("endpoint_unavailable", window_s=session.window_s)

    async def _send(self, ws: ClientConnection) -> None:
        session = self.session
        while True:
            ready = self._write_ready(ws)
            if ready is None:
                return  # the connection failed; `_stream` reads why from it
            if ready:
                self._ready.clear()
                self._parked = ws
                try:
                    await self._ready.wait()
                finally:
                    self._parked = None
                continue
            message = session.next_message()
            assert message is not None  # `_write_ready` stopped at it
            try:
                await ws.send(message)
            except ConnectionClosed:
                return
            if self._unconfirmed(ws):
                return
            session.written()

    def _write_ready(self, ws: ClientConnection) -> bool | None:
        """Writes what is ready to send while nothing stands in the way (`write_now`).

        Returns True when nothing is left to send; False when the next message needs
        the sender's `await ws.send` (a text event, flow control); None when the
        connection failed (what was not confirmed stays in flight).
        """
        session = self.session
        while (message := session.next_message()) is not None:
            written = write_now(ws, message) if isinstance(message, bytes) else False
            if not written:
                return written
            if self._unconfirmed(ws):
                return None
            session.written()
        return True

    def _unconfirmed(self, ws: ClientConnection) -> bool:
        if not ws.transport.is_closing():
            return False
        # The write failed inside the transport (the peer reset the connection):
        # websockets returns as if it was sent. Keep it in flight for the next
        # connection, at least once rather than a gap.
        self.ctx.log.info("send_unconfirmed")
        return True

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
            node_id = self._sfu.node_id if self._sfu is not None else ""
            why = await session_lost(peer, self.ctx.redis, node_id)
            self.ctx.log.warning("sfu_session_lost", why=why)

        peer = self._client.peers[0]
        await first_completed(sfu_gone(), receiver_ended(), log=self.ctx.log)

    async def aclose(self) -> None:
        await close_sessions_client(self._client, self.ctx.log)
