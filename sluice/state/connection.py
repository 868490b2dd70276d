"""Redis clients configured the same way in every process."""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio as aioredis
import redis.asyncio.retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from sluice.config import Settings


def _driver_info() -> dict[str, Any]:
    """How our connections name the client to Redis (CLIENT SETINFO), worked out once.

    redis-py 7.2+ otherwise builds it per connection, reading the package's metadata
    from disk each time (~1 ms): four times in every pipeline's create, before `active`.
    Made at import, in the worker host before it forks, every pipeline shares it.
    Older redis-py read the version once, at import: nothing to do there.
    """
    driver_info = getattr(redis, "DriverInfo", None)
    return {} if driver_info is None else {"driver_info": driver_info()}


CLIENT_NAMING = _driver_info()


def async_client(settings: Settings) -> aioredis.Redis:
    """An asyncio client that fails fast: a dead Redis must become a 503, not a hang."""
    return aioredis.Redis.from_url(
        settings.redis_url,
        decode_responses=True,
        socket_connect_timeout=settings.redis_timeout_s,
        socket_timeout=settings.redis_timeout_s,
        retry=redis.asyncio.retry.Retry(NoBackoff(), 1),
        health_check_interval=30,
        **CLIENT_NAMING,
    )


def sync_client(settings: Settings, *, bounded_reads: bool = False) -> redis.Redis:
    """A blocking client for RQ (which needs bytes responses) and the reaper.

    Args:
        bounded_reads: every reply within `redis_timeout_s` (the reaper: a frozen Redis
            must not stall the supervisor's loop). RQ's workers wait on BLPOP for minutes,
            so their client must not time out reads.
    """
    return redis.Redis.from_url(
        settings.redis_url,
        socket_connect_timeout=settings.redis_timeout_s,
        socket_timeout=settings.redis_timeout_s if bounded_reads else None,
        retry=Retry(NoBackoff(), 1),
        **CLIENT_NAMING,
    )


def redis_connection_lost(exc: BaseException) -> bool:
    """Whether `exc` means the connection to Redis went away (retry later), not a bug.

    Besides redis-py's own errors: when Redis goes away while redis-py reconnects, its
    write can reach a transport uvloop has already closed, and uvloop raises
    `RuntimeError("unable to perform operation on <TCPTransport closed=True ...>; the
    handler is closed")` rather than a connection error.
    """
    if isinstance(exc, RedisError | OSError):
        return True
    return isinstance(exc, RuntimeError) and "handler is closed" in str(exc)
