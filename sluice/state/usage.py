"""Hourly usage per app: bytes each app's adapters moved, as the store recorded it.

The store adds a pipeline's byte growth to `sluice:usage:{app}:{hour}` in the same script
that saves the adapter's own counters, so an app's usage is exactly the sum of its
adapters' `bytes` counters (the binary messages as they were on the wire: serialized
Packets, Protobuf framing included, or the media alone with raw framing; not text messages,
not the WebSocket frame headers). Hours are whole UTC hours, numbered since the epoch.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from redis.asyncio import Redis

from sluice.state import keys

HOUR_S = 3600
MAX_RANGE_HOURS = 31 * 24 + 1  # a billing month, whichever month, plus the partial hour


@dataclass(frozen=True, slots=True)
class HourUsage:
    hour: int  # hours since the epoch (UTC)
    egress_bytes: int
    ingest_bytes: int

    @property
    def start(self) -> datetime:
        return hour_start(self.hour)


def hour_of(moment: datetime) -> int:
    """The epoch hour a moment falls in; naive datetimes are taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp()) // HOUR_S


def hour_start(hour: int) -> datetime:
    return datetime.fromtimestamp(hour * HOUR_S, UTC)


def hours_covering(start: datetime, end: datetime) -> range:
    """The hours that overlap [start, end): partial hours at either end are included."""
    first = hour_of(start)
    last = hour_of(end - timedelta(microseconds=1)) if end > start else first - 1
    return range(first, last + 1)


async def read_usage(redis: Redis, app_id: str, hours: range) -> list[HourUsage]:
    """The hours in `hours` in which the app moved any bytes, oldest first."""
    if not hours:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for hour in hours:
            pipe.hmget(keys.usage(app_id, hour), "egress_bytes", "ingest_bytes")
        rows = await pipe.execute()
    used = []
    for hour, (egress, ingest) in zip(hours, rows, strict=True):
        if egress is not None or ingest is not None:
            used.append(HourUsage(hour, int(egress or 0), int(ingest or 0)))
    return used
