"""The one thing the SDK needs from a WebSocket library: messages in, messages out, close.

`EgressStream` and `IngestSender` work over any `MessageSocket`. Two come with the SDK:
`WebsocketsSocket` over a `websockets` connection (server or client side) and
`AsgiSocket` over an ASGI WebSocket scope (uvicorn, hypercorn, Starlette, FastAPI...).
Another framework needs only these five members.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Protocol

from websockets.asyncio.connection import Connection
from websockets.exceptions import ConnectionClosed

from sluice_endpoint.errors import SenderClosed


class MessageSocket(Protocol):
    """One WebSocket connection, seen as whole messages."""

    async def recv(self) -> bytes | str | None:
        """The next message; None once the connection has closed."""
        ...

    async def send(self, message: bytes | str) -> None:
        """Sends one message (bytes: binary, str: text).

        Raises:
            SenderClosed: the connection has closed.
        """
        ...

    async def close(self, code: int = 1000, reason: str = "") -> None: ...

    @property
    def close_code(self) -> int | None:
        """The close code received from the peer (None before the close, or if none came)."""
        ...

    @property
    def close_reason(self) -> str: ...


class WebsocketsSocket:
    """A `websockets` connection (asyncio API, server or client side) as a `MessageSocket`."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    async def recv(self) -> bytes | str | None:
        try:
            return await self.connection.recv()
        except ConnectionClosed:
            return None

    async def send(self, message: bytes | str) -> None:
        try:
            await self.connection.send(message)
        except ConnectionClosed as exc:
            received = exc.rcvd
            raise SenderClosed(received.code if received else None) from None

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await self.connection.close(code, reason)

    @property
    def close_code(self) -> int | None:
        received = self.connection.protocol.close_rcvd
        return received.code if received is not None else None

    @property
    def close_reason(self) -> str:
        received = self.connection.protocol.close_rcvd
        return received.reason if received is not None else ""


AsgiReceive = Callable[[], Awaitable[MutableMapping[str, Any]]]
AsgiSend = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class AsgiSocket:
    """An accepted ASGI WebSocket connection as a `MessageSocket`.

    Args:
        receive: the ASGI `receive` callable of the connection.
        send: the ASGI `send` callable of the connection.
    """

    def __init__(self, receive: AsgiReceive, send: AsgiSend) -> None:
        self._receive = receive
        self._send = send
        self._close_code: int | None = None
        self._close_reason = ""
        self._closed = False

    async def recv(self) -> bytes | str | None:
        while not self._closed:
            event = await self._receive()
            if event["type"] == "websocket.receive":
                if event.get("bytes") is not None:
                    return bytes(event["bytes"])
                return str(event.get("text") or "")
            if event["type"] == "websocket.disconnect":
                self._closed = True
                self._close_code = int(event.get("code", 1005))
                self._close_reason = str(event.get("reason") or "")
        return None

    async def send(self, message: bytes | str) -> None:
        if self._closed:
            raise SenderClosed(self._close_code, self._close_reason)
        key = "bytes" if isinstance(message, bytes) else "text"
        try:
            await self._send({"type": "websocket.send", key: message})
        except OSError as exc:  # servers raise their own kinds once the client is gone
            self._closed = True
            raise SenderClosed(self._close_code, str(exc)) from None

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError):
            await self._send({"type": "websocket.close", "code": code, "reason": reason})

    @property
    def close_code(self) -> int | None:
        return self._close_code

    @property
    def close_reason(self) -> str:
        return self._close_reason
