"""The sessions API under the API's base URL, forwarded to the SFU node of the session.

One base URL configures a client: `/v1/apps/{appId}/sessions/...` arrives here and goes
unchanged — method, body, Authorization, status, JSON — to the node `api.sfu_routing`
picks (a new session's placement, or the node holding the session). The node judges
bodies itself. Bodies are small SDP documents, so no streaming.
"""

from __future__ import annotations

from urllib.parse import quote

import httpx
import structlog
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from api.sfu_routing import node_url
from sluice.errors import ErrorCode
from sluice.http.auth import SettingsDep

log = structlog.get_logger("sluice.api")

router = APIRouter()

SFU_TIMEOUT_S = 15.0  # negotiation includes ICE gathering on the SFU
_FORWARDED_HEADERS = ("authorization", "content-type", "accept")


async def forward_to_sfu(
    appId: str, path: str, request: Request, settings: SettingsDep
) -> Response:
    if any(part in (".", "..") for part in path.split("/")):
        return _error(404, ErrorCode.NOT_FOUND, "no such sessions route")
    base = await node_url(request, appId, path, settings)
    url = f"{base}/v1/apps/{quote(appId, safe='')}/sessions/{quote(path, safe='/')}"
    headers = {k: v for k, v in request.headers.items() if k.lower() in _FORWARDED_HEADERS}
    try:
        async with httpx.AsyncClient(timeout=SFU_TIMEOUT_S) as client:
            answer = await client.request(
                request.method,
                url,
                params=request.query_params,
                content=await request.body(),
                headers=headers,
            )
    except httpx.TransportError as exc:
        log.error("sfu_unreachable", url=base, error=str(exc))
        return _error(503, ErrorCode.SERVICE_UNAVAILABLE, "the SFU is unreachable; retry shortly")
    return Response(
        content=answer.content,
        status_code=answer.status_code,
        media_type=answer.headers.get("content-type"),
    )


# One route per method: OpenAPI needs a distinct operation id for each.
for _method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
    router.add_api_route(
        "/v1/apps/{appId}/sessions/{path:path}",
        forward_to_sfu,
        methods=[_method],
        operation_id=f"sessions_{_method.lower()}",
        tags=["sessions"],
        summary=f"Sessions API, {_method} (served by the SFU)",
        responses={503: {"description": "the SFU is unreachable (`service_unavailable`)"}},
    )


def _error(status: int, code: str, description: str) -> JSONResponse:
    return JSONResponse({"errorCode": code, "errorDescription": description}, status_code=status)
