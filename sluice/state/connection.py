"""Redis clients configured the same way in every process."""

from __future__ import annotations

import redis
import redis.asyncio as aioredis
import redis.asyncio.retry
from redis.backoff import NoBackoff
from redis.retry import Retry

from sluice.config import Settings


def async_client(settings: Settings) -> aioredis.Redis:
    """An asyncio client that fails fast: a dead Redis must become a 503, not a hang."""
    return aioredis.Redis.from_url(
        settings.redis_url,
        decode_responses=True,
        socket_connect_timeout=settings.redis_timeout_s,
        socket_timeout=settings.redis_timeout_s,
        retry=redis.asyncio.retry.Retry(NoBackoff(), 1),
        health_check_interval=30,
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
    )
