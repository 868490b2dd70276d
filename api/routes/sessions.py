"""The sessions API under the API's base URL, forwarded to the SFU node of the session.

One base URL configures a client: `/v1/apps/{appId}/sessions/...` arrives here and goes
to the SFU node `api.sfu_routing` picks (a new session's placement, or the node holding
the session; `settings.sfu_url` when no node is registered) unchanged — method, body,
query string, Authorization — and the node's status, JSON and auth/retry headers come
back unchanged. The node judges bodies itself, so these routes are described as the
SFU's (`sluice.http.sessions_docs`) but pass the raw request on. Bodies are small SDP
documents, so no streaming.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

import httpx
import structlog
from fastapi import APIRouter, Path, Request, Response, Security
from pydantic import BaseModel

from api.sfu_routing import node_url
from sluice.config import Settings
from sluice.errors import ErrorCode
from sluice.http import sessions_docs as docs
from sluice.http.auth import SettingsDep, bearer
from sluice.http.errors import error_response

log = structlog.get_logger("sluice.api")

SFU_TIMEOUT_S = 15.0  # negotiation includes ICE gathering on the SFU
_FORWARDED_HEADERS = ("authorization", "content-type", "accept")
_RETURNED_HEADERS = ("www-authenticate", "retry-after")

# The bodies these routes pass on unparsed; `api.main` adds their schemas to /openapi.json.
REQUEST_MODELS: tuple[type[BaseModel], ...] = tuple(
    route.body
    for route in (docs.NEW_SESSION, docs.NEW_TRACKS, docs.RENEGOTIATE, docs.CLOSE_TRACKS)
    if route.body is not None
)

# Bearer auth is declared here for the docs page and client generators; the SFU checks it.
router = APIRouter(
    prefix="/v1/apps/{appId}/sessions", tags=["sessions"], dependencies=[Security(bearer)]
)

AppId = Annotated[str, Path(description="The app, from SLUICE_APPS.")]
SessionId = Annotated[str, Path(description="A session of this app, from `sessions/new`.")]


@router.post("/new", **docs.NEW_SESSION.forwarded())
async def new_session(appId: AppId, request: Request, settings: SettingsDep) -> Response:
    return await _forward(request, settings, appId, "new", None)


@router.post("/{sessionId}/tracks/new", **docs.NEW_TRACKS.forwarded())
async def new_tracks(
    appId: AppId, sessionId: SessionId, request: Request, settings: SettingsDep
) -> Response:
    return await _forward(request, settings, appId, f"{_segment(sessionId)}/tracks/new", sessionId)


@router.put("/{sessionId}/renegotiate", **docs.RENEGOTIATE.forwarded())
async def renegotiate(
    appId: AppId, sessionId: SessionId, request: Request, settings: SettingsDep
) -> Response:
    return await _forward(request, settings, appId, f"{_segment(sessionId)}/renegotiate", sessionId)


@router.put("/{sessionId}/tracks/close", **docs.CLOSE_TRACKS.forwarded())
async def close_tracks(
    appId: AppId, sessionId: SessionId, request: Request, settings: SettingsDep
) -> Response:
    return await _forward(
        request, settings, appId, f"{_segment(sessionId)}/tracks/close", sessionId
    )


@router.get("/{sessionId}", **docs.GET_SESSION.forwarded())
async def get_session(
    appId: AppId, sessionId: SessionId, request: Request, settings: SettingsDep
) -> Response:
    return await _forward(request, settings, appId, _segment(sessionId), sessionId)


def _segment(value: str) -> str:
    """One path segment, quoted; `.` and `..` too, so that no URL normalisation on the way
    turns them into another route (the SFU then finds no such app or session)."""
    quoted = quote(value, safe="")
    return quoted.replace(".", "%2E") if quoted in (".", "..") else quoted


def sfu_client() -> httpx.AsyncClient:
    """The app's one client for every forwarded call (`app.state.sfu_client`, closed with
    the app): building a client loads the TLS trust store, ~0.1 s each time."""
    return httpx.AsyncClient(
        timeout=SFU_TIMEOUT_S, limits=httpx.Limits(max_connections=None), follow_redirects=False
    )


async def _forward(
    request: Request, settings: Settings, app_id: str, path: str, session_id: str | None
) -> Response:
    """Forwards to the node of `session_id` (None: where a new session goes)."""
    base = await node_url(request, app_id, session_id or "", settings)
    url = f"{base.rstrip('/')}/v1/apps/{_segment(app_id)}/sessions/{path}"
    headers = {k: v for k, v in request.headers.items() if k.lower() in _FORWARDED_HEADERS}
    client: httpx.AsyncClient = request.app.state.sfu_client
    try:
        answer = await client.request(
            request.method,
            url,
            params=request.query_params,
            content=await request.body(),
            headers=headers,
        )
    except httpx.TransportError as exc:
        log.error("sfu_unreachable", url=base, error=str(exc))
        return error_response(
            503, ErrorCode.SERVICE_UNAVAILABLE, "the SFU is unreachable; retry shortly"
        )
    return Response(
        content=answer.content,
        status_code=answer.status_code,
        media_type=answer.headers.get("content-type"),
        headers={k: v for k, v in answer.headers.items() if k.lower() in _RETURNED_HEADERS},
    )
