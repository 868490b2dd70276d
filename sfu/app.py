"""One SFU node's HTTP app: the sessions API under `/v1/apps/{appId}/sessions/`.

Each `sluice sfu` node process serves one of these on its own port and registers in the
node directory in Redis (`sfu.node`), where the API finds it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from sfu import metrics, routes
from sfu.manager import SessionManager
from sfu.node import Node
from sluice import __version__
from sluice.config import Settings, get_settings
from sluice.http.body_limit import BodyLimitMiddleware
from sluice.http.errors import install_error_handlers
from sluice.http.openapi import new_app
from sluice.http.probes import run_check
from sluice.media.aiortc_internals import register_codecs
from sluice.state.connection import async_client
from sluice.state.sfu_nodes import NodeLoad
from sluice.tasks import cancel_and_wait


def create_app(settings: Settings | None = None) -> FastAPI:
    """Builds the SFU app; `settings` overrides the environment (tests)."""
    settings = settings or get_settings()
    register_codecs()  # every peer connection of this process must agree on the codecs

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        redis = async_client(settings)
        manager: SessionManager | None = None
        node = Node(
            settings,
            redis,
            lambda: manager.load() if manager else NodeLoad(),
            on_forgotten=lambda: manager.rewrite_registry() if manager else None,
        )
        manager = SessionManager(settings, redis, node.id)
        app.state.redis = redis
        app.state.sessions = manager
        app.state.node = node
        app.state.metrics = metrics.new_registry(manager)
        await manager.start()
        # Registered before serving, so `/readyz` is truthful from the first request;
        # an unreachable Redis only delays startup by the check timeout.
        await run_check(node.beat())
        heartbeat = asyncio.create_task(node.heartbeat(), name="sfu_node_heartbeat")
        try:
            yield
        finally:
            # Out of the directory first: no new session is placed here while closing.
            await cancel_and_wait([heartbeat], log=node.log)
            await node.leave()
            await manager.stop()
            await redis.aclose()

    app = new_app(
        settings=settings,
        title="Sluice SFU",
        version=__version__,
        summary="Sessions API (Cloudflare Realtime compatible subset): push and pull tracks.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.include_router(routes.router)
    app.include_router(metrics.router)

    @app.get("/healthz", tags=["health"], summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["health"],
        summary="Redis answers and this node is in the node directory",
        responses={503: {"description": "not ready: `checks` says why"}},
    )
    async def readyz(request: Request) -> JSONResponse:
        """Ready when Redis answers PING within 1 s and the last heartbeat reached it.

        Without Redis media keeps flowing, but the track registry, which the API checks
        egress requests against, cannot be written, and the API cannot route new
        sessions here: no new session or egress can start on this node.
        """
        redis_ok = await run_check(request.app.state.redis.ping())
        if redis_ok is not True:
            return _unready(redis_ok)
        node: Node = request.app.state.node
        if not node.registered:
            checks = {"redis": "ok", "directory": f"node {node.id} is not registered yet"}
            return JSONResponse({"status": "unready", "checks": checks}, 503)
        return JSONResponse({"status": "ready", "checks": {"redis": "ok"}})

    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    return app


def _unready(redis_error: str) -> JSONResponse:
    return JSONResponse({"status": "unready", "checks": {"redis": redis_error}}, 503)
