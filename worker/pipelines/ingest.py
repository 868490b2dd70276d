"""Ingest (WebSocket → WebRTC): the endpoint pushes PCM Packets, Sluice publishes Opus.

The socket reader decodes Packets (with `framing: raw`, E3, a binary message is the audio
itself; a zero-length one still ends a segment), converts their audio to 48 kHz stereo if
the endpoint sends another format, reassembles the byte stream into 20 ms frames and fills
the playout buffer; `PlayoutTrack` plays it out in real time into an aiortc sender that is
published into a new SFU session. When the buffer is full the reader stops reading, so TCP pushes
back on the endpoint and nothing is dropped.

Text messages may be `clear` and `mark` (barge-in, extensions.md E2): the reader acts on
them as it reads them, and a second task sends their answers as the playout produces them.
A `clear` cannot overtake audio the endpoint sent before it (one TCP stream), so what
matters while the buffer is full is how much audio waits in the sockets ahead of it:
Sluice's share is sized in time of the endpoint's format (`receive_buffer_bytes`).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from sluice.errors import ErrorCode
from sluice.media.calls_client import SessionsApiError, SessionsClient
from sluice.state.records import CloseReason
from sluice.tasks import first_completed
from sluice.wire.framing import framing_of, payload_of
from sluice.wire.packet import MAX_MESSAGE_BYTES, PacketDecodeError
from worker.pipelines.base import Pipeline, PipelineContext, SetupError, close_ws
from worker.pipelines.playout_track import PlayoutTrack
from worker.pipelines.sfu_link import (
    SfuTarget,
    choose_sfu,
    close_sessions_client,
    session_lost,
    sessions_client,
)
from worker.protocol.ingest_control import Mark, encode_event, parse_control
from worker.protocol.ingest_format import InputFormat, Intake
from worker.protocol.pcm import FRAME_DURATION_S
from worker.protocol.playout import PlayoutBuffer

# Without a cap, Linux autotunes a loopback/LAN receive buffer up to tens of MB, which
# would swallow minutes of audio before TCP ever pushed back on the endpoint. 256 KiB is
# 1.4 s of 48 kHz stereo PCM: enough window to burst far faster than real time over a
# long path. Other formats get the same time, not the same bytes (see below).
RECEIVE_BUFFER_BYTES = 256 * 1024
NATIVE_BYTES_PER_S = 48_000 * 4
MIN_RECEIVE_BUFFER_BYTES = 8 * 1024


def receive_buffer_bytes(fmt: InputFormat) -> int:
    """The socket receive buffer for `fmt`: as much audio time as 256 KiB of 48 kHz stereo.

    A fixed byte size would hold 32 s of 8 kHz μ-law: a `clear` sent while the playout
    buffer is full would wait behind all of it.

    Args:
        fmt: the endpoint's format.
    """
    scaled = RECEIVE_BUFFER_BYTES * fmt.bytes_per_s // NATIVE_BYTES_PER_S
    return max(MIN_RECEIVE_BUFFER_BYTES, scaled)


# After the last frame is popped, give the sender a few ticks to encode and send it
# before the track ends.
TAIL_S = 3 * FRAME_DURATION_S


class IngestPipeline(Pipeline):
    max_message_bytes = MAX_MESSAGE_BYTES  # spec §6: 32 768 allowed, one more is 1009
    # While the playout buffer is full, queued messages are audio a `clear` waits behind:
    # one 32 KiB message is 4 s of 8 kHz μ-law, so websockets may hold only a couple.
    max_queue_messages = 2

    def __init__(self, ctx: PipelineContext) -> None:
        super().__init__(ctx)
        self.format = InputFormat.of(ctx.record.codec, ctx.record.options)
        self.framing = framing_of(ctx.record.options)
        self.playout = PlayoutBuffer(ctx.settings.ingest_buffer_s)
        self.intake = Intake(self.format)
        self.room = asyncio.Event()
        self.room.set()
        self.drained = asyncio.Event()
        self.answers = asyncio.Event()  # the playout has events to send to the endpoint
        self.track = PlayoutTrack(self.playout, self.room, self.drained, self.answers)
        self._client: SessionsClient | None = None
        self._sfu: SfuTarget | None = None

    async def prepare(self) -> None:
        """Publishes the (silent until fed) Opus track into a new SFU session.

        The session goes on the node placement chooses, as a client's new session would.
        """
        record = self.ctx.record
        self._sfu = await choose_sfu(self.ctx)
        self.ctx.log.info("sfu_node_chosen", node_id=self._sfu.node_id, url=self._sfu.url)
        self._client = sessions_client(self.ctx, self._sfu)
        try:
            # The track returns Opus packets: its sender sends them as they come.
            session_id, _ = await self._client.publish(self.track, record.track_name, encoded=True)
        except (SessionsApiError, OSError) as exc:
            raise SetupError(
                ErrorCode.INTERNAL_ERROR, f"could not publish the track into the SFU: {exc}"
            ) from None
        self.session_id = session_id

    def on_connected(self) -> None:
        self.track.start_clock()  # spec §6: playout starts when the WebSocket connects

    async def run(self, ws: ClientConnection) -> CloseReason:
        sock = ws.transport.get_extra_info("socket")
        # OSError: the connection may already be gone (e.g. failed with 1009 while the
        # runner was reporting `active`); reading it below then says so.
        with contextlib.suppress(OSError):
            if sock is not None:
                sock.setsockopt(
                    socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer_bytes(self.format)
                )
        assert self._client is not None
        peer = self._client.peers[0]

        async def sfu_gone() -> CloseReason:
            node_id = self._sfu.node_id if self._sfu is not None else ""
            why = await session_lost(peer, self.ctx.redis, node_id)
            # The track is gone with the SFU session: nothing more to play into.
            self.ctx.log.warning("sfu_session_lost", why=why)
            return CloseReason.TRACK_ENDED

        try:
            # On a tie the SFU's loss wins: there is no track left to play a close into.
            reason = await first_completed(
                sfu_gone(), self._read(ws), self._answer(ws), log=self.ctx.log
            )
        finally:
            await close_ws(ws)
        if reason is CloseReason.ENDPOINT_CLOSED:
            # The endpoint is done: what it sent still plays out, then the track ends.
            for frame in self.intake.end_segment():
                self.playout.push(frame)
            self.playout.close()
            # Bounded: if the sender stopped pulling frames (the SFU went away), give up.
            budget = self.playout.depth_frames * FRAME_DURATION_S + 2.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.drained.wait(), budget)
            await asyncio.sleep(TAIL_S)
        return reason

    async def _read(self, ws: ClientConnection) -> CloseReason:
        counters = self.ctx.counters
        while True:
            await self.room.wait()
            try:
                message = await ws.recv()
            except ConnectionClosed as exc:
                if exc.sent is not None and exc.sent.code == 1009:
                    self.ctx.log.info("ingest_message_too_big", limit=MAX_MESSAGE_BYTES)
                    return CloseReason.MESSAGE_TOO_BIG
                return CloseReason.ENDPOINT_CLOSED
            if isinstance(message, str):
                self._control(message)
            else:
                try:
                    payload = payload_of(self.framing, message)
                except PacketDecodeError as exc:
                    self._skip(exc.reason)
                    continue
                counters["packets"] += 1
                counters["bytes"] += len(message)
                for frame in self.intake.feed(payload):
                    self.playout.push(frame)
                if not payload:
                    self.playout.mark_end_of_segment()
            counters["max_buffer_ms"] = self.playout.max_depth_frames * 20
            counters["underruns"] = self.playout.underruns
            if self.playout.has_room():
                self.room.set()  # a clear emptied it
            else:
                self.room.clear()

    def _control(self, text: str) -> None:
        """Acts on a `clear` or `mark` at once; any other text is skipped."""
        control = parse_control(text)
        if control is None:
            self._skip("text message")
            return
        if isinstance(control, Mark):
            # Everything sent before the mark must be able to play, so it must not wait
            # in the reassembler (or resampler) for audio that may never follow.
            for frame in self.intake.end_segment():
                self.playout.push(frame)
            self.playout.mark(control.name)
        else:
            dropped = self.playout.clear(held_elsewhere_s=self.intake.discard())
            self.ctx.counters["cleared_ms"] = self.playout.cleared_ms
            self.ctx.log.debug("ingest_cleared", dropped_frames=dropped)
        if self.playout.has_events:
            self.answers.set()

    async def _answer(self, ws: ClientConnection) -> CloseReason:
        """Sends the playout's events (marks played, clears answered) in order."""
        while True:
            await self.answers.wait()
            self.answers.clear()
            for event in self.playout.take_events():
                try:
                    await ws.send(encode_event(event))
                except ConnectionClosed:
                    # The reader sees the same close and says why the adapter ends.
                    await asyncio.get_running_loop().create_future()

    def _skip(self, why: str) -> None:
        self.ctx.counters["skipped"] += 1
        if self.ctx.counters["skipped"] <= 10:  # a stream of garbage must not flood the log
            self.ctx.log.info("ingest_message_skipped", reason=why)

    async def aclose(self) -> None:
        self.track.stop()
        await close_sessions_client(self._client, self.ctx.log)
