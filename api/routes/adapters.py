"""`/v1/apps/{appId}/adapters/websocket/...`: create, close and inspect adapters."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Response

from api.batch import batch_status
from api.deps import AppDep, ServiceDep
from api.models import (
    AdapterView,
    CloseRequest,
    CloseResponse,
    CloseTrackResult,
    CreateRequest,
    CreateResponse,
    CreateTrackResult,
    ErrorBody,
)
from sluice.errors import RateLimited

router = APIRouter(prefix="/v1/apps/{appId}/adapters/websocket", tags=["adapters"])


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    texts = {
        400: "The body is not JSON of the expected shape (`decoding_error`) or a field has a "
        "wrong value (`invalid_params`); nothing was created.",
        401: "Missing or wrong Bearer secret.",
        404: "Unknown app, or (create) every item named an unknown session or track.",
        406: "Too many tracks in one request.",
        429: "The app creates faster than `SLUICE_APP_CREATES_PER_S` (`rate_limited`), or "
        "every item is over `SLUICE_APP_MAX_ADAPTERS` (`too_many_adapters`).",
        413: "Body larger than 64 KiB.",
        503: "Every item failed at run time (endpoint, capacity, unknown adapter), or Redis "
        "is unreachable.",
    }
    return {status: {"model": ErrorBody, "description": texts[status]} for status in statuses}


def _first_error(first: CreateTrackResult | CloseTrackResult | None) -> dict[str, str | None]:
    """The top-level `errorCode`/`errorDescription` of an answer where every item failed."""
    if first is None:
        return {}
    return {"errorCode": first.errorCode, "errorDescription": first.errorDescription}


@router.post(
    "/new",
    response_model=CreateResponse,
    response_model_exclude_none=True,
    responses=_errors(400, 401, 404, 406, 413, 429, 503),
    summary="Create WebSocket adapters (1-4 per request)",
)
async def create_adapters(
    body: CreateRequest, app_id: AppDep, service: ServiceDep, response: Response
) -> CreateResponse:
    """Each item becomes one adapter. The answer comes once every pipeline has connected
    to its endpoint or failed; items succeed or fail independently."""
    try:
        await service.check_create_rate(app_id)
    except RateLimited as exc:
        service.count_refused(list(body.tracks), exc.error_code)
        raise
    results = list(await asyncio.gather(*(service.create(app_id, item) for item in body.tracks)))
    response.status_code, first = batch_status(results)
    return CreateResponse(tracks=results, **_first_error(first))


@router.post(
    "/close",
    response_model=CloseResponse,
    response_model_exclude_none=True,
    responses=_errors(400, 401, 404, 406, 413, 503),
    summary="Close WebSocket adapters (idempotent, 1-64 per request)",
)
async def close_adapters(
    body: CloseRequest, app_id: AppDep, service: ServiceDep, response: Response
) -> CloseResponse:
    """Stops each pipeline and closes its WebSocket with 1000. Closing a closed adapter
    succeeds; an id never created is `adapter_not_found`."""
    results = list(await asyncio.gather(*(service.close(app_id, t.adapterId) for t in body.tracks)))
    response.status_code, first = batch_status(results)
    return CloseResponse(tracks=results, **_first_error(first))


@router.get(
    "/{adapterId}",
    response_model=AdapterView,
    response_model_exclude_none=True,
    responses=_errors(401, 404, 503),
    summary="Inspect one adapter: state, close reason and counters",
)
async def get_adapter(adapterId: str, app_id: AppDep, service: ServiceDep) -> AdapterView:
    return await service.view(app_id, adapterId)
