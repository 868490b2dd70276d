"""`GET /metrics`: Prometheus exposition of this replica and of the cluster (see api.metrics).

Unauthenticated, like every Prometheus target: serve it on a private network only (the
sample reverse-proxy configuration does not forward it).
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from api.metrics import read_cluster, render
from api.webhook_metrics import read_backlog, render_webhooks
from sluice.http.auth import SettingsDep

router = APIRouter(tags=["operations"])


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request, settings: SettingsDep) -> Response:
    state = request.app.state
    snapshot = await read_cluster(state.redis, state.rq_redis, settings.queue_name)
    backlog = await read_backlog(state.redis, state.rq_redis, settings.webhook_queue_name)
    body = render(state.metrics, snapshot) + render_webhooks(backlog, snapshot.totals)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
