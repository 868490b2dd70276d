"""The SFU process's HTTP app: the sessions API under `/v1/apps/{appId}/sessions/`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from sfu import routes
from sfu.manager import SessionManager
from sluice import __version__
from sluice.body_limit import BodyLimitMiddleware
from sluice.config import Settings, get_settings
from sluice.http_errors import install_error_handlers
from sluice.redisconn import async_client


def create_app(settings: Settings | None = None) -> FastAPI:
    """Builds the SFU app; `settings` overrides the environment (tests)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        redis = async_client(settings)
        manager = SessionManager(settings, redis)
        app.state.sessions = manager
        await manager.start()
        try:
            yield
        finally:
            await manager.stop()
            await redis.aclose()

    app = FastAPI(
        title="Sluice SFU",
        version=__version__,
        summary="Sessions API (Cloudflare Realtime compatible subset): push and pull tracks.",
        lifespan=lifespan,
    )
    app.dependency_overrides[get_settings] = lambda: settings
    install_error_handlers(app)
    app.include_router(routes.router)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    return app
