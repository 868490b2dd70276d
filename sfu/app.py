"""The SFU process's HTTP app: the sessions API under `/v1/apps/{appId}/sessions/`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from sfu import metrics, routes
from sfu.manager import SessionManager
from sluice import __version__
from sluice.config import Settings, get_settings
from sluice.http.body_limit import BodyLimitMiddleware
from sluice.http.errors import install_error_handlers
from sluice.http.openapi import new_app
from sluice.http.probes import run_check
from sluice.media.aiortc_internals import register_codecs
from sluice.state.connection import async_client


def create_app(settings: Settings | None = None) -> FastAPI:
    """Builds the SFU app; `settings` overrides the environment (tests)."""
    settings = settings or get_settings()
    register_codecs()  # every peer connection of this process must agree on the codecs

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        redis = async_client(settings)
        manager = SessionManager(settings, redis)
        app.state.redis = redis
        app.state.sessions = manager
        app.state.metrics = metrics.new_registry(manager)
        await manager.start()
        try:
            yield
        finally:
            await manager.stop()
            await redis.aclose()

    app = new_app(
        title="Sluice SFU",
        version=__version__,
        summary="Sessions API (Cloudflare Realtime compatible subset): push and pull tracks.",
        lifespan=lifespan,
    )
    app.dependency_overrides[get_settings] = lambda: settings
    install_error_handlers(app)
    app.include_router(routes.router)
    app.include_router(metrics.router)

    @app.get("/healthz", tags=["health"], summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["health"],
        summary="Redis (the track registry) answers",
        responses={503: {"description": "not ready: `checks` says why"}},
    )
    async def readyz(request: Request) -> JSONResponse:
        """Ready when Redis answers PING within 1 s.

        Without Redis media keeps flowing, but the track registry, which the API checks
        egress requests against, cannot be written: no new egress can start from here.
        """
        redis_ok = await run_check(request.app.state.redis.ping())
        if redis_ok is not True:
            return _unready(redis_ok)
        return JSONResponse({"status": "ready", "checks": {"redis": "ok"}})

    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    return app


def _unready(redis_error: str) -> JSONResponse:
    return JSONResponse({"status": "unready", "checks": {"redis": redis_error}}, 503)
