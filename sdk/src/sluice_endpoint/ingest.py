"""`IngestSender`: audio to an ingest adapter, with barge-in (E2) and optional pacing.

    sender = IngestSender(WebsocketsSocket(connection))   # Endpoint hands you one
    await sender.send(pcm, sample_rate=24_000, channels=1)  # chunked, converted, sent
    done = await sender.mark("reply-1")                   # answered when it has played
    await sender.end()                                    # end of the utterance
    ...
    dropped_ms = await sender.clear()                     # the caller spoke: stop talking
    (await done.wait()).cleared                           # True: the clear dropped it

Marks and clears need Sluice's extension E2; Cloudflare skips them and never answers.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from sluice_endpoint.chunking import Chunker, Pacer
from sluice_endpoint.control import PlaybackControl
from sluice_endpoint.convert import Resampler, remix, to_format
from sluice_endpoint.errors import SenderClosed
from sluice_endpoint.events import (
    Cleared,
    MarkReached,
    clear_message,
    mark_message,
    parse_ingest_answer,
)
from sluice_endpoint.formats import CLOUDFLARE_PCM, AudioFormat
from sluice_endpoint.packet import MAX_MESSAGE_BYTES
from sluice_endpoint.sockets import MessageSocket

CLEAR_TIMEOUT_S = 5.0  # Sluice answers within 40 ms; Cloudflare never does


class Mark:
    """A mark sent after some audio; `wait()` returns once Sluice answers it."""

    def __init__(self, name: str, answer: asyncio.Future[MarkReached | Cleared]) -> None:
        self.name = name
        self._answer = answer

    def done(self) -> bool:
        return self._answer.done()

    async def wait(self) -> MarkReached:
        """Waits until the audio before the mark has played out (or a clear dropped it).

        Raises:
            SenderClosed: the connection closed first.
        """
        answer = await asyncio.shield(self._answer)
        assert isinstance(answer, MarkReached)
        return answer


class IngestSender:
    """Sends audio over one ingest connection.

    Args:
        socket: the connection Sluice dialled.
        fmt: the adapter's input format (`inputCodec` and the E1/E3 fields).
        pace: send no faster than real time plus `lead_s` (Sluice buffers up to 60 s
            and plays out in real time, so pacing is optional).
        lead_s: how far ahead of real time a paced sender runs.
        chunk_ms: audio per message (default: as much as fits in 32 KiB).
        max_message_bytes: the per-message limit, framing included.
    """

    def __init__(
        self,
        socket: MessageSocket,
        fmt: AudioFormat = CLOUDFLARE_PCM,
        *,
        pace: bool = False,
        lead_s: float = 0.5,
        chunk_ms: float | None = None,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
    ) -> None:
        self.socket = socket
        self.format = fmt
        self._chunker = Chunker(fmt, max_message_bytes, chunk_ms)
        self._pacer = Pacer(lead_s) if pace else None
        self._control = PlaybackControl()
        self._waiting: dict[int, asyncio.Future[MarkReached | Cleared]] = {}
        self._resampler: Resampler | None = None
        self._generation = 0  # bumped by clear(): a send() in progress stops
        self._reader: asyncio.Task[None] | None = None
        self._closed = asyncio.Event()
        self.close_code: int | None = None
        self.bytes_sent = 0  # message bytes, framing included
        self.messages_sent = 0

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    async def send(
        self, audio: Any, sample_rate: int | None = None, channels: int | None = None
    ) -> None:
        """Sends audio: bytes (s16le, or μ-law for a μ-law adapter) or a numpy array.

        Converted to the adapter's channels (and rate, with the `resample` extra) and cut
        into messages of at most 32 KiB. A `clear()` meanwhile stops what is left.

        Args:
            audio: the samples.
            sample_rate: their rate (default: the adapter's).
            channels: their channel count (default: the adapter's).

        Raises:
            FormatError: audio that does not fit the adapter's format.
            SenderClosed: the connection has closed.
        """
        self._start_reader()
        generation = self._generation
        pcm, rate, layout = to_format(audio, self.format, sample_rate, channels)
        if rate != self.format.sample_rate:
            resampler = self._resampler
            if resampler is None or (resampler.rate_in, resampler.channels) != (rate, layout):
                resampler = self._resampler = Resampler(rate, self.format.sample_rate, layout)
            pcm = resampler.process(pcm)
        await self._send_audio(remix(pcm, layout, self.format.channels), generation)

    async def end(self) -> None:
        """Ends the utterance: what was sent plays out (an empty Packet, §6)."""
        self._start_reader()
        if self._resampler is not None:
            resampler, self._resampler = self._resampler, None
            tail = remix(
                resampler.process(b"", last=True), resampler.channels, self.format.channels
            )
            await self._send_audio(tail, self._generation)
        await self._send(self._chunker.end_of_segment())

    async def clear(self, timeout_s: float | None = CLEAR_TIMEOUT_S) -> int:
        """Drops every buffered sample not yet played (E2); returns how many ms were dropped.

        A `send()` in progress stops. Marks behind the dropped audio are answered with
        `cleared: true` first.

        Raises:
            TimeoutError: no answer in `timeout_s` (an endpoint of a server without E2).
            SenderClosed: the connection closed first.
        """
        self._generation += 1
        self._resampler = None
        if self._pacer is not None:
            self._pacer.reset()
        answer = self._expect(self._control.clear_sent())
        await self._send(clear_message())
        async with asyncio.timeout(timeout_s):
            # Shielded: a late answer still settles this clear, not the next one.
            result = await asyncio.shield(answer)
        assert isinstance(result, Cleared)
        return result.dropped_ms

    async def mark(self, name: str) -> Mark:
        """Queues a mark behind the audio sent so far (E2).

        Raises:
            ValueError: a name of 0 or more than 256 characters.
            SenderClosed: the connection has closed.
        """
        message = mark_message(name)
        mark = Mark(name, self._expect(self._control.mark_sent(name)))
        await self._send(message)
        return mark

    async def wait_closed(self) -> int | None:
        """Waits until the connection closes (Sluice closed the adapter); its close code."""
        self._start_reader()
        await self._closed.wait()
        return self.close_code

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Closes the connection: Sluice plays out what it has, then ends the track."""
        with contextlib.suppress(Exception):
            await self.socket.close(code, reason)
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        self._fail_waiting()

    async def __aenter__(self) -> IngestSender:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def _send_audio(self, pcm: bytes, generation: int) -> None:
        loop = asyncio.get_running_loop()
        for chunk in self._chunker.chunks(pcm):
            if generation != self._generation:
                return  # cleared: the rest of this audio is not wanted any more
            if self._pacer is not None:
                await asyncio.sleep(self._pacer.delay(loop.time()))
                if generation != self._generation:
                    return
                self._pacer.sent(loop.time(), len(chunk) / self.format.bytes_per_second)
            await self._send(self._chunker.frame(chunk))

    async def _send(self, message: bytes | str) -> None:
        if self._closed.is_set():
            raise SenderClosed(self.close_code)
        await self.socket.send(message)
        self.messages_sent += 1
        self.bytes_sent += len(message)

    def _expect(self, ticket: int) -> asyncio.Future[MarkReached | Cleared]:
        if self._closed.is_set():
            raise SenderClosed(self.close_code)
        self._start_reader()
        future: asyncio.Future[MarkReached | Cleared] = asyncio.get_running_loop().create_future()
        self._waiting[ticket] = future
        return future

    def _start_reader(self) -> None:
        if self._reader is None:
            self._reader = asyncio.get_running_loop().create_task(self._read_answers())

    async def _read_answers(self) -> None:
        try:
            while (message := await self.socket.recv()) is not None:
                if not isinstance(message, str):
                    continue  # Sluice sends no media to an ingest endpoint
                try:
                    answer = parse_ingest_answer(message)
                except ValueError:
                    continue
                if answer is None:
                    continue
                ticket = self._control.answered(answer)
                future = self._waiting.pop(ticket, None) if ticket is not None else None
                if future is not None and not future.done():
                    future.set_result(answer)
        finally:
            self.close_code = self.socket.close_code
            self._closed.set()
            self._fail_waiting()

    def _fail_waiting(self) -> None:
        self._control.outstanding()
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(SenderClosed(self.close_code))
                future.exception()  # retrieved: no "never retrieved" warning if unawaited
        self._waiting.clear()
