"""An `Endpoint` as an ASGI application, for uvicorn, hypercorn, Starlette or FastAPI.

    app = endpoint.asgi()                     # uvicorn module:app
    fastapi_app.mount("/sluice", endpoint.asgi())

Route paths are matched below the mount point (`root_path`); a dial of
`wss://host/sluice/stt` reaches the route `/stt`. A refused dial gets its status (401,
404) where the server has the ASGI "WebSocket Denial Response" extension (uvicorn,
hypercorn), else it is closed before the handshake completes (403). Plain HTTP requests
get 404.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from sluice_endpoint.dials import Dial
from sluice_endpoint.errors import DialRefused
from sluice_endpoint.sockets import AsgiSocket

if TYPE_CHECKING:
    from sluice_endpoint.server import Endpoint

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
AsgiApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def dial_of(scope: Scope) -> Dial:
    """The dial an ASGI WebSocket scope describes."""
    root = str(scope.get("root_path") or "")
    path = str(scope.get("path") or "/")
    # Starlette's mounts keep the mount point in `path` (and in `root_path`); plain ASGI
    # servers leave it out. Either way the route is what follows the mount point.
    if root and path.startswith(root):
        path = path[len(root) :] or "/"
    query = bytes(scope.get("query_string") or b"").decode("latin-1")
    headers: dict[str, str] = {}
    for name, value in scope.get("headers") or []:
        headers.setdefault(name.decode("latin-1"), value.decode("latin-1"))
    target = f"{path}?{query}" if query else path
    return Dial(target, headers, str(scope.get("scheme") or "ws"), root)


async def refuse(scope: Scope, send: Send, refusal: DialRefused) -> None:
    """Answers a refused handshake with its HTTP status, where the server allows."""
    if "websocket.http.response" not in (scope.get("extensions") or {}):
        await send({"type": "websocket.close", "code": 1008})
        return
    body = f"{refusal}\n".encode()
    headers = [(b"content-type", b"text/plain; charset=utf-8")]
    start = {"type": "websocket.http.response.start", "status": refusal.status}
    await send({**start, "headers": headers})
    await send({"type": "websocket.http.response.body", "body": body})


def asgi_app(endpoint: Endpoint) -> AsgiApp:
    """The ASGI application serving `endpoint`."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await endpoint.aclose()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b"a WebSocket endpoint\n"})
            return
        if scope["type"] != "websocket":
            return
        if (await receive())["type"] != "websocket.connect":
            return
        dial = dial_of(scope)
        try:
            endpoint.accept(dial)
        except DialRefused as exc:
            await refuse(scope, send, exc)
            return
        await send({"type": "websocket.accept"})
        await endpoint.handle(AsgiSocket(receive, send), dial)

    return app
