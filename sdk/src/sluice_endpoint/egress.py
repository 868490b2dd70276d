"""`EgressStream`: an async iterator over what Sluice sends, across its reconnects.

    stream = EgressStream()                       # Cloudflare's format: pcm 48 kHz stereo
    # for every connection Sluice makes for this adapter (Endpoint does this for you):
    await stream.attach(WebsocketsSocket(connection))
    # elsewhere:
    async for item in stream:
        match item:
            case AudioFrame(): ...                # item.data, item.array(), item.timestamp
            case Gap(): ...                       # item.duration_s of audio never arrived
    print(stream.end)                             # why it ended

The pumps (`attach`) decode and queue; the queue is bounded, so a slow consumer stops the
socket being read and Sluice's own backlog takes the strain (and reports what it drops
as a gap) instead of this process's memory.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Final

from sluice_endpoint.formats import CLOUDFLARE_PCM, AudioFormat, MediaFormat
from sluice_endpoint.items import StreamItem
from sluice_endpoint.sockets import MessageSocket
from sluice_endpoint.stream import CLOSE_NORMAL, EgressStreamState, StreamEnd

# Sluice re-dials for 5 s by default (up to 60 s per adapter, E8); a lost worker's adapter
# is resumed elsewhere after its heartbeat expires. Past this, the stream is over.
DEFAULT_RECONNECT_TIMEOUT_S = 30.0
DEFAULT_MAX_QUEUED = 500  # items; 10 s of 20 ms audio


class _Lost:
    """The current connection closed without ending the stream: a reconnect may follow."""

    def __init__(self, at: float) -> None:
        self.at = at


class _Ended:
    """The stream has ended; nothing follows."""


_ENDED: Final = _Ended()
_Queued = StreamItem | _Lost | _Ended


class EgressStream:
    """One egress stream (one adapter), possibly over several connections.

    Args:
        fmt: the adapter's format (`outputCodec` and E1/E3 fields); a `start` event
            (E4) overrides it.
        adapter_id: the adapter, if known.
        path: the URL path (with query) Sluice dialled, for the user's information.
        max_queued: items held for a slow consumer before the socket stops being read.
        reconnect_timeout_s: how long to wait for Sluice to come back after a lost
            connection before the stream ends incomplete.
    """

    def __init__(
        self,
        fmt: MediaFormat = CLOUDFLARE_PCM,
        *,
        adapter_id: str | None = None,
        path: str = "",
        max_queued: int = DEFAULT_MAX_QUEUED,
        reconnect_timeout_s: float = DEFAULT_RECONNECT_TIMEOUT_S,
    ) -> None:
        self.path = path
        self.reconnect_timeout_s = reconnect_timeout_s
        self._state = EgressStreamState(fmt, adapter_id)
        self._queue: asyncio.Queue[_Queued] = asyncio.Queue(max_queued)
        self._sockets: dict[int, MessageSocket] = {}
        self._deadline: float | None = None
        self._abandoned = False
        self._finished = False
        self.done = asyncio.Event()  # set once the stream has ended and been read to its end

    # What the stream knows, for the user.
    @property
    def format(self) -> MediaFormat:
        return self._state.format

    @property
    def audio_format(self) -> AudioFormat:
        """The format, for an audio stream (e.g. for `Gap.silence`).

        Raises:
            TypeError: the stream carries JPEG snapshots.
        """
        fmt = self._state.format
        if not isinstance(fmt, AudioFormat):
            raise TypeError("this stream carries JPEG snapshots, not audio")
        return fmt

    @property
    def adapter_id(self) -> str | None:
        return self._state.adapter_id

    @property
    def connections(self) -> int:
        """Connections Sluice has made for this stream (1 + reconnects)."""
        return self._state.connections

    @property
    def end(self) -> StreamEnd | None:
        """Why the stream ended; None while it goes on."""
        return self._state.end

    @property
    def repeats(self) -> int:
        """Packets dropped because they repeated delivered ones (re-sent on a reconnect)."""
        return self._state.repeats

    @property
    def skipped(self) -> int:
        """Messages ignored: undecodable, or text that is not an event."""
        return self._state.skipped

    def starts_new_stream(self, first_message: bytes | str) -> bool:
        """Whether a later connection's first message belongs to another adapter."""
        return self._state.starts_new_stream(first_message)

    async def attach(self, socket: MessageSocket, first_message: bytes | str | None = None) -> None:
        """Reads one of Sluice's connections into the stream until it closes.

        Args:
            socket: the connection; it becomes the one Sluice streams on now.
            first_message: a message already read from it (by `starts_new_stream`).
        """
        connection = self._state.connect()
        self._sockets[connection] = socket
        self._deadline = None
        try:
            message = first_message if first_message is not None else await socket.recv()
            while message is not None:
                for item in self._state.receive(connection, message):
                    await self._put(item)
                message = await socket.recv()
        finally:
            del self._sockets[connection]
        ended = self._state.disconnect(connection, socket.close_code, socket.close_reason)
        if ended is not None:
            await self._put(_ENDED)
        elif self._state.current is None:
            await self._put(_Lost(asyncio.get_running_loop().time()))

    def give_up(self) -> None:
        """Ends the stream as lost: its adapter will not come back (a new one took its URL)."""
        self._state.give_up()
        with contextlib.suppress(asyncio.QueueFull):  # a full queue wakes its reader anyway
            self._queue.put_nowait(_ENDED)

    async def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        """Ends the stream from this side: 1000 tells Sluice to close the adapter.

        Items still queued are dropped and iteration ends.
        """
        self._abandoned = True
        self._finish(self._state.end or StreamEnd("closed by the endpoint", code))
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(_ENDED)  # wakes a reader waiting in another task
        for socket in list(self._sockets.values()):
            with contextlib.suppress(Exception):
                await socket.close(code, reason)

    def __aiter__(self) -> EgressStream:
        return self

    async def __anext__(self) -> StreamItem:
        loop = asyncio.get_running_loop()
        while not self._finished:
            if self._queue.empty() and self._state.end is not None and not self._sockets:
                self._finish(self._state.end)
                break
            timeout = None
            if self._deadline is not None and self._state.current is None:
                timeout = max(0.0, self._deadline - loop.time())
            try:
                item = await asyncio.wait_for(self._queue.get(), timeout)
            except TimeoutError:
                if self._state.current is None:
                    self._finish(self._state.give_up())
                continue
            if isinstance(item, _Ended):
                self._finish(self._state.end or StreamEnd("", None))
            elif isinstance(item, _Lost):
                if self._state.current is None:
                    self._deadline = item.at + self.reconnect_timeout_s
            else:
                return item
        raise StopAsyncIteration

    def _finish(self, end: StreamEnd) -> None:
        if self._state.end is None:
            self._state.end = end
        self._finished = True
        self.done.set()

    async def _put(self, item: _Queued) -> None:
        if not self._abandoned:
            await self._queue.put(item)
