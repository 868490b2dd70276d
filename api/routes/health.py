"""Liveness and readiness probes for load balancers and orchestrators."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from rq import Queue, Worker

from api.views import Readiness
from sluice.http.auth import SettingsDep
from sluice.http.probes import CHECK_TIMEOUT_S, run_check
from sluice.state import sfu_nodes

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is alive", response_description='`{"status": "ok"}`')
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Redis, a worker and an SFU node are reachable",
    response_model=Readiness,
    response_description="Ready: creates can succeed.",
    responses={
        503: {"model": Readiness, "description": "Not ready: `checks` says which part is missing."}
    },
)
async def readyz(request: Request, settings: SettingsDep) -> JSONResponse:
    """Ready when creates can succeed: Redis answers, at least one worker process is
    registered for the queue, and an SFU node is in the directory (with none, the SFU at
    `SLUICE_SFU_URL` answers). Each check takes at most 1 s."""
    redis = request.app.state.redis
    redis_ok, workers, sfu_nodes_up = await asyncio.gather(
        run_check(redis.ping()),
        run_check(
            asyncio.to_thread(_count_workers, request.app.state.rq_redis, settings.queue_name)
        ),
        run_check(_sfu_nodes(redis, settings.sfu_url)),
    )
    sfu_ok = isinstance(sfu_nodes_up, int)
    checks: dict[str, Any] = {
        "redis": "ok" if redis_ok is True else redis_ok,
        "workers": workers,
        "sfu": "ok" if sfu_ok else sfu_nodes_up,
    }
    ready = redis_ok is True and isinstance(workers, int) and workers > 0 and sfu_ok
    if isinstance(workers, int) and workers == 0:
        checks["workers"] = "no worker process is registered for the queue"
    body = {"status": "ready" if ready else "unready", "checks": checks}
    return JSONResponse(body, status_code=200 if ready else 503)


def _count_workers(rq_redis: Any, queue_name: str) -> int:
    return len(Worker.all(queue=Queue(queue_name, connection=rq_redis)))


async def _sfu_nodes(redis: Any, sfu_url: str) -> int:
    """The number of live SFU nodes; with none, 0 if the SFU at `sfu_url` answers.

    Raises:
        RuntimeError: no node is registered and `sfu_url` does not answer 200.
    """
    if nodes := await sfu_nodes.live_nodes(redis):
        return len(nodes)
    async with httpx.AsyncClient(timeout=CHECK_TIMEOUT_S) as client:
        answer = await client.get(f"{sfu_url.rstrip('/')}/healthz")
    if answer.status_code != 200:
        raise RuntimeError(f"SFU answered {answer.status_code}")
    return 0
