"""`worker.ws_write.write_now` against a real websockets server on loopback.

Pins the websockets internals it relies on: a websockets upgrade that moved them fails
here (pyproject pins the major version).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from worker.ws_write import write_now

pytestmark = pytest.mark.timeout(20)


@contextlib.asynccontextmanager
async def serving() -> AsyncIterator[tuple[str, asyncio.Queue[bytes | str]]]:
    """A WebSocket server on loopback that queues every message it receives."""
    received: asyncio.Queue[bytes | str] = asyncio.Queue()

    async def handler(ws: ServerConnection) -> None:
        async for message in ws:
            received.put_nowait(message)

    async with serve(handler, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}", received


@pytest.fixture
async def pair() -> AsyncIterator[tuple[ClientConnection, asyncio.Queue[bytes | str]]]:
    # As worker.dial dials: without compression.
    async with serving() as (url, received), connect(url, compression=None) as ws:
        yield ws, received


def test_the_connection_has_what_write_now_reads() -> None:
    from websockets.asyncio.connection import Connection

    for name in ("send_data", "set_connection_exc", "pause_writing", "resume_writing"):
        assert callable(getattr(Connection, name, None)), name


async def test_a_message_is_written_at_once_and_arrives_whole(
    pair: tuple[ClientConnection, asyncio.Queue[bytes | str]],
) -> None:
    ws, received = pair
    assert ws.send_in_progress is None and ws.paused is False  # the attributes it reads
    for i in range(3):
        assert write_now(ws, bytes([i]) * 3840) is True
    messages = [await asyncio.wait_for(received.get(), 5) for _ in range(3)]
    assert messages == [bytes([i]) * 3840 for i in range(3)]
    await ws.send(b"after")  # the connection goes on as usual
    assert await asyncio.wait_for(received.get(), 5) == b"after"


@pytest.mark.parametrize("length", [0, 125, 126, 3840, 65535, 65536, 200_000])
async def test_its_frames_read_back_whole_at_every_length_encoding(
    pair: tuple[ClientConnection, asyncio.Queue[bytes | str]], length: int
) -> None:
    ws, received = pair
    message = bytes(i % 251 for i in range(length))
    assert not ws.protocol.extensions  # the frame is made here, not by the protocol
    assert write_now(ws, message) is True
    assert await asyncio.wait_for(received.get(), 5) == message


async def test_with_protocol_output_queued_the_protocol_frames_it_after_that(
    pair: tuple[ClientConnection, asyncio.Queue[bytes | str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    ws, received = pair
    framed: list[bytes] = []
    original = ws.protocol.send_binary

    def send_binary(data: bytes) -> None:
        framed.append(data)
        original(data)

    monkeypatch.setattr(ws.protocol, "send_binary", send_binary)
    ws.protocol.send_ping(b"queued")  # output the protocol made and nobody wrote yet
    assert write_now(ws, b"after the ping") is True
    assert framed == [b"after the ping"]
    assert await asyncio.wait_for(received.get(), 5) == b"after the ping"
    assert not ws.protocol.writes


async def test_with_compression_negotiated_the_protocol_frames_it() -> None:
    async with serving() as (url, received), connect(url) as ws:  # permessage-deflate
        assert ws.protocol.extensions
        assert write_now(ws, b"deflated" * 100) is True
        assert await asyncio.wait_for(received.get(), 5) == b"deflated" * 100


async def test_it_declines_under_flow_control_and_after_close(
    pair: tuple[ClientConnection, asyncio.Queue[bytes | str]],
) -> None:
    ws, received = pair
    ws.pause_writing()  # what the transport calls when its buffer is full
    assert write_now(ws, b"x") is False
    ws.resume_writing()
    assert write_now(ws, b"y") is True
    assert await asyncio.wait_for(received.get(), 5) == b"y"
    await ws.close()
    assert write_now(ws, b"z") is False
    with pytest.raises(ConnectionClosed):
        await ws.send(b"z")  # what the caller falls back to says why


async def test_a_failed_write_tears_the_connection_down(
    pair: tuple[ClientConnection, asyncio.Queue[bytes | str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    ws, _ = pair

    def broken(data: bytes) -> None:
        raise OSError("connection reset")

    monkeypatch.setattr(ws.transport, "write", broken)
    assert write_now(ws, b"lost") is None
    assert ws.transport.is_closing()
    with pytest.raises(ConnectionClosed):
        await ws.send(b"next")
