"""A round-robin HTTP reverse proxy for the chaos deployment's API replicas.

`python -m tests.chaos.proxy --port 8080 --upstream http://127.0.0.1:9001 --upstream ...`

Each request goes to the next replica in turn. A replica that refuses the connection (or
does not accept it within 5 s) is skipped and the request tried on the next: nothing of
it was sent, so it is safe to repeat, as nginx's `proxy_next_upstream error` does. One
that fails after the request went out answers 502: a create may be under way there.
`GET /_proxy/stats` counts the requests each replica answered.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

# Hop-by-hop headers (RFC 9110 §7.6.1) and what the client library sets itself.
_DROPPED = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
}


class RoundRobin:
    def __init__(self, upstreams: list[str]) -> None:
        self.upstreams = upstreams
        self._turn = itertools.cycle(range(len(upstreams)))
        self.answered: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        # No pooling limits of its own: a burst of creates must not queue here. Idle
        # connections are dropped well before uvicorn's 5 s keep-alive ends them: a
        # request on one the replica is closing fails as if the replica had died.
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(60, connect=5.0),
            limits=httpx.Limits(
                max_connections=None, max_keepalive_connections=200, keepalive_expiry=2.0
            ),
        )

    async def forward(self, request: Request) -> Response:
        body = await request.body()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _DROPPED}
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        first = next(self._turn)
        for i in range(len(self.upstreams)):
            upstream = self.upstreams[(first + i) % len(self.upstreams)]
            try:
                answer = await self.client.request(
                    request.method, upstream + target, content=body, headers=headers
                )
            except (httpx.ConnectError, httpx.ConnectTimeout):
                self.refused[upstream] += 1
                continue  # nothing was sent: the next replica may take it
            except httpx.HTTPError as exc:
                self.failed[upstream] += 1
                return JSONResponse(
                    {"error": f"upstream {upstream} failed: {type(exc).__name__}"}, status_code=502
                )
            self.answered[upstream] += 1
            out = {k: v for k, v in answer.headers.items() if k.lower() not in _DROPPED}
            out.pop("content-encoding", None)  # httpx decoded the body
            return Response(answer.content, status_code=answer.status_code, headers=out)
        return JSONResponse({"error": "no upstream accepted the connection"}, status_code=502)

    def stats(self) -> dict[str, Any]:
        return {
            "answered": dict(self.answered),
            "refused": dict(self.refused),
            "failed": dict(self.failed),
        }


def make_app(upstreams: list[str]) -> Starlette:
    proxy = RoundRobin([u.rstrip("/") for u in upstreams])

    async def stats(_: Request) -> Response:
        return JSONResponse(proxy.stats())

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        await proxy.client.aclose()

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
    return Starlette(
        routes=[
            Route("/_proxy/stats", stats, methods=["GET"]),
            Route("/{path:path}", proxy.forward, methods=methods),
        ],
        lifespan=lifespan,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", action="append", required=True)
    args = parser.parse_args()
    uvicorn.run(
        make_app(args.upstream), host="127.0.0.1", port=args.port, log_level="warning",
        backlog=2048,
    )  # fmt: skip


if __name__ == "__main__":
    main()
