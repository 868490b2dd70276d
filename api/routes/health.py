"""Liveness and readiness probes for load balancers and orchestrators."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Redis is reachable", responses={503: {"description": "not ready"}})
async def readyz(request: Request) -> JSONResponse:
    try:
        await request.app.state.redis.ping()
    except Exception as exc:  # any failure to reach Redis means "not ready"
        return JSONResponse({"status": "unready", "redis": str(exc)}, status_code=503)
    return JSONResponse({"status": "ready"})
