"""Wires the control plane's FastAPI app. Logic lives in the modules it wires."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api.metrics import ApiMetrics
from api.routes import adapters, health, operations, sessions, usage
from api.service import AdapterService
from api.sfu_routing import SfuRouter
from sluice import __version__
from sluice.config import Settings, get_settings
from sluice.http.body_limit import BodyLimitMiddleware
from sluice.http.errors import install_error_handlers
from sluice.http.openapi import new_app
from sluice.state.connection import async_client, sync_client
from sluice.state.store import AdapterStore


def create_app(settings: Settings | None = None) -> FastAPI:
    """Builds the API app; `settings` overrides the environment (tests)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        redis = async_client(settings)
        rq_redis = sync_client(settings)
        store = AdapterStore(
            redis,
            retention_s=settings.closed_retention_s,
            usage_retention_s=settings.usage_retention_days * 86_400,
        )
        app.state.redis = redis
        app.state.rq_redis = rq_redis
        app.state.service = AdapterService(settings, store, rq_redis, app.state.metrics)
        app.state.sfu_client = sessions.sfu_client()
        try:
            yield
        finally:
            await app.state.sfu_client.aclose()
            await redis.aclose()
            await app.state.sfu_router.aclose()
            rq_redis.close()

    app = new_app(
        settings=settings,
        title="Sluice",
        version=__version__,
        summary="Stream media between WebRTC tracks and WebSocket endpoints.",
        description=(
            "Every route lives under `/v1/apps/{appId}/` and takes "
            "`Authorization: Bearer <app secret>` (**Authorize** above). Errors are "
            '`{"errorCode": ..., "errorDescription": ...}`. The sessions API is served by '
            "the SFU behind this same base URL."
        ),
        lifespan=lifespan,
        request_models=sessions.REQUEST_MODELS,
    )
    app.state.metrics = ApiMetrics()
    app.state.sfu_router = SfuRouter(settings)
    install_error_handlers(app)
    app.include_router(adapters.router)
    app.include_router(health.router)
    app.include_router(sessions.router)
    app.include_router(usage.router)
    app.include_router(operations.router)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    return app
