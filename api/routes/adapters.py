"""`/v1/apps/{appId}/adapters/websocket/...`: create, close and inspect adapters."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Response

from api.batch import batch_status
from api.deps import AppDep, ServiceDep
from api.models import (
    CloseFailed,
    CloseRequest,
    CloseResponse,
    CloseTrackResult,
    CreateFailed,
    CreateRequest,
    CreateResponse,
    CreateTrackResult,
)
from api.views import AdapterView
from sluice.errors import RateLimited, error_headers
from sluice.http.errors import ErrorBody
from sluice.http.openapi import (
    REDIS_DOWN,
    STATE_STORE_DOWN,
    TOO_LARGE,
    UNAUTHORIZED,
    UNKNOWN_APP,
    error,
    retry_after,
)

router = APIRouter(prefix="/v1/apps/{appId}/adapters/websocket", tags=["adapters"])


def _first_error(
    first: CreateTrackResult | CloseTrackResult | None, response: Response
) -> dict[str, str | None]:
    """The top-level `errorCode`/`errorDescription` of an answer where every item failed;
    its headers (`Retry-After`) go on `response`."""
    if first is None:
        return {}
    response.headers.update(error_headers(str(first.errorCode)))
    return {"errorCode": first.errorCode, "errorDescription": first.errorDescription}


@router.post(
    "/new",
    response_model=CreateResponse,
    response_model_exclude_none=True,
    response_description="At least one adapter was created; each item that failed "
    "carries `errorCode` and `errorDescription`.",
    responses={
        400: error(
            "The body is not JSON of the expected shape (`decoding_error`) or a field has a "
            "wrong value (`invalid_params`, naming the field), and nothing was created; or "
            "every item asked for a codec its source track cannot give (`invalid_params`).",
            ErrorBody | CreateFailed,
        ),
        401: UNAUTHORIZED,
        404: error(
            "Unknown app (`not_found_app_error`), or every item named an unknown session or "
            "track (`not_found_session_error`, `not_found_track_error`).",
            ErrorBody | CreateFailed,
        ),
        406: error("More than 4 tracks in one request (`invalid_params`); nothing was created."),
        413: TOO_LARGE,
        429: error(
            "The app sent creates faster than SLUICE_APP_CREATES_PER_S (`rate_limited`), or "
            "every item would exceed SLUICE_APP_MAX_ADAPTERS (`too_many_adapters`).",
            ErrorBody | CreateFailed,
            headers=retry_after(),
        ),
        500: error(
            "Every item failed inside Sluice (`internal_error`: e.g. the SFU could not be "
            "reached to publish an ingest track).",
            CreateFailed,
        ),
        503: error(
            "Every item failed at run time: no worker was free (`no_capacity`, with "
            "`Retry-After`), or the endpoint could not be used (`websocket_handshake_failed`, "
            f"`websocket_connection_timeout`, `websocket_endpoint_not_allowed`); or {REDIS_DOWN}.",
            ErrorBody | CreateFailed,
            headers=retry_after("`no_capacity`, `service_unavailable`"),
        ),
    },
    summary="Create WebSocket adapters (1-4 per request)",
)
async def create_adapters(
    body: CreateRequest, app_id: AppDep, service: ServiceDep, response: Response
) -> CreateResponse:
    """Each item becomes one adapter. The answer comes once every pipeline has connected
    to its endpoint or failed; items succeed or fail independently."""
    service.refuse_unkept_headers(list(body.tracks))
    try:
        await service.check_create_rate(app_id)
    except RateLimited as exc:
        service.count_refused(list(body.tracks), exc.error_code)
        raise
    results = list(await asyncio.gather(*(service.create(app_id, item) for item in body.tracks)))
    response.status_code, first = batch_status(results)
    return CreateResponse(tracks=results, **_first_error(first, response))


@router.post(
    "/close",
    response_model=CloseResponse,
    response_model_exclude_none=True,
    response_description="At least one adapter is closed (now or before); each item "
    "that failed carries `errorCode` and `errorDescription`.",
    responses={
        400: error(
            "The body is not JSON of the expected shape (`decoding_error`) or a field has a "
            "wrong value (`invalid_params`, naming the field); nothing was closed."
        ),
        401: UNAUTHORIZED,
        404: UNKNOWN_APP,
        406: error("More than 64 tracks in one request (`invalid_params`); nothing was closed."),
        413: TOO_LARGE,
        503: error(
            f"No item names an adapter of this app (`adapter_not_found`); or {REDIS_DOWN}.",
            ErrorBody | CloseFailed,
            headers=retry_after("`service_unavailable`"),
        ),
    },
    summary="Close WebSocket adapters (idempotent, 1-64 per request)",
)
async def close_adapters(
    body: CloseRequest, app_id: AppDep, service: ServiceDep, response: Response
) -> CloseResponse:
    """Stops each pipeline and closes its WebSocket with 1000. Closing a closed adapter
    succeeds; an id never created is `adapter_not_found`."""
    results = list(await asyncio.gather(*(service.close(app_id, t.adapterId) for t in body.tracks)))
    response.status_code, first = batch_status(results)
    return CloseResponse(tracks=results, **_first_error(first, response))


@router.get(
    "/{adapterId}",
    response_model=AdapterView,
    response_model_exclude_none=True,
    response_description="The adapter's record (closed ones are kept for "
    "SLUICE_CLOSED_RETENTION_S).",
    responses={
        401: UNAUTHORIZED,
        404: error(
            "Unknown app (`not_found_app_error`), or no adapter of this app has this id "
            "(`adapter_not_found`)."
        ),
        503: STATE_STORE_DOWN,
    },
    summary="Inspect one adapter: state, close reason and counters",
)
async def get_adapter(adapterId: str, app_id: AppDep, service: ServiceDep) -> AdapterView:
    return await service.view(app_id, adapterId)
