"""`GET /v1/apps/{appId}/usage`: bytes an app's adapters moved, per UTC hour."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import WithJsonSchema

from api.views import UsageHour, UsageResponse
from sluice.errors import InvalidParams
from sluice.http.auth import AppDep
from sluice.http.openapi import STATE_STORE_DOWN, UNAUTHORIZED, UNKNOWN_APP, error
from sluice.state.usage import MAX_RANGE_HOURS, hour_start, hours_covering, read_usage

router = APIRouter(prefix="/v1/apps/{appId}", tags=["usage"])

DEFAULT_RANGE = timedelta(hours=24)

# What pydantic reads as a datetime, said in the schema: an ISO 8601 time or date (UTC
# when it names no zone), or a Unix time.
Moment = Annotated[
    datetime,
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "format": "date-time"},
                {"type": "string", "format": "date"},
                {"type": "number", "description": "Unix time"},
            ]
        }
    ),
]


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@router.get(
    "/usage",
    response_model=UsageResponse,
    response_description="The app's usage over whole UTC hours.",
    responses={
        400: error(
            "`from` or `to` is not a time, `from` is not before `to`, or the range is over "
            "31 days (`invalid_params`)."
        ),
        401: UNAUTHORIZED,
        404: UNKNOWN_APP,
        503: STATE_STORE_DOWN,
    },
    summary="Bytes the app's adapters moved, per UTC hour",
)
async def get_usage(
    app_id: AppDep,
    request: Request,
    start: Annotated[
        Moment | None, Query(alias="from", description="Default: 24 hours before `to`.")
    ] = None,
    end: Annotated[Moment | None, Query(alias="to", description="Exclusive; default: now.")] = None,
) -> UsageResponse:
    """Every hour overlapping [`from`, `to`) is counted whole: usage is kept per hour.
    Times without a zone are UTC. At most 31 days per request."""
    end = _utc(end) if end is not None else datetime.now(UTC)
    start = _utc(start) if start is not None else end - DEFAULT_RANGE
    if start >= end:
        raise InvalidParams("`from` must be before `to`")
    hours = hours_covering(start, end)
    if len(hours) > MAX_RANGE_HOURS:
        raise InvalidParams("at most 31 days per request: split longer ranges")
    used = await read_usage(request.app.state.redis, app_id, hours)
    return UsageResponse(
        appId=app_id,
        start=_iso(hour_start(hours.start)),
        end=_iso(hour_start(hours.stop)),
        egressBytes=sum(h.egress_bytes for h in used),
        ingestBytes=sum(h.ingest_bytes for h in used),
        hours=[
            UsageHour(hour=_iso(h.start), egressBytes=h.egress_bytes, ingestBytes=h.ingest_bytes)
            for h in used
        ],
    )
