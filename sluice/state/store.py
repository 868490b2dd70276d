"""Adapter state in Redis: every transition is one atomic Lua script.

Several API replicas, workers and reapers act on the same adapter concurrently; making
each transition a compare-and-set script means a close racing a create, a reap racing a
heartbeat, or two closes racing each other always resolve to one consistent outcome.
Scripts read the clock from Redis (`TIME`) so hosts with skewed clocks agree on deadlines.
Their sources, with what each takes and returns, are `lua/*.lua` (`sluice.state.scripts`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from sluice.errors import QuotaExceeded
from sluice.state import keys
from sluice.state.records import (
    COUNTER_NAMES,
    AdapterRecord,
    AdapterState,
    CloseReason,
    utc_now_iso,
)
from sluice.state.scripts import lua


def _counter_args(
    counters: dict[str, int] | None, extra: dict[str, int] | None = None
) -> list[str]:
    args: list[str] = []
    for name, value in (counters or {}).items():
        if name in COUNTER_NAMES:
            args += [f"c_{name}", str(value)]
    for name, value in (extra or {}).items():
        if name[:2] in ("h_", "p_"):
            args += [name, str(value)]
    return args


@dataclass(slots=True, frozen=True)
class HeartbeatReply:
    state: str
    close_requested: bool

    @property
    def should_stop(self) -> bool:
        return self.close_requested or self.state == AdapterState.CLOSED

    @property
    def record_lost(self) -> bool:
        """The record vanished while the pipeline ran (e.g. Redis restarted empty)."""
        return self.state == "gone"

    @property
    def superseded(self) -> bool:
        """The adapter is no longer this process's: its beats lapsed, the reapers took it
        for lost, and another process resumes it (or already has)."""
        return self.state == "taken"


class AdapterStore:
    """Typed access to adapter records; every write is one of the scripts above."""

    def __init__(
        self, redis: Redis, *, retention_s: int, usage_retention_s: int = 400 * 86_400
    ) -> None:
        self.redis = redis
        self.retention_s = retention_s
        self.usage_retention_s = usage_retention_s
        self._create = redis.register_script(lua("create"))
        self._claim = redis.register_script(lua("claim"))
        self._abandon = redis.register_script(lua("abandon"))
        self._set_live_state = redis.register_script(lua("set_live_state"))
        self._fail = redis.register_script(lua("fail"))
        self._close = redis.register_script(lua("close"))
        self._heartbeat = redis.register_script(lua("heartbeat"))

    async def create(
        self,
        record: AdapterRecord,
        *,
        pickup_timeout_s: float,
        max_live: int = 0,
        sealed_headers: str = "",
        answer_within_s: float = 0.0,
    ) -> bool:
        """Writes a new `connecting` record.

        Args:
            max_live: the app's limit of adapters not yet closed (0: none).
            sealed_headers: the item's header values, sealed (`sluice.state.sealed_headers`);
                kept apart from the record, and deleted with it.
            answer_within_s: the longest the creating API replica can take to answer; a
                create it has not marked `answered` by then (and a grace period) is
                closed `api_lost` by the reapers: its caller never got the id. 0: none.

        Raises:
            QuotaExceeded: the app already has `max_live` adapters.
            ValueError: the id exists already.
        """
        pairs: list[str] = []
        for name, value in record.to_hash().items():
            pairs += [name, value]
        created = await self._create(
            keys=[
                keys.adapter(record.adapter_id),
                keys.app_adapters(record.app_id),
                keys.PENDING,
                keys.app_live(record.app_id),
                keys.adapter_headers(record.adapter_id),
                keys.UNANSWERED,
            ],
            args=[
                record.adapter_id,
                int(pickup_timeout_s * 1000),
                max_live,
                sealed_headers,
                int(answer_within_s * 1000),
                *pairs,
            ],
        )
        if created == -1:
            raise QuotaExceeded(f"app {record.app_id!r} already runs {max_live} adapters")
        if not created:
            raise ValueError(f"adapter id {record.adapter_id} exists")
        return True

    async def answered(self, adapter_id: str) -> None:
        """Marks a create answered: its caller has the outcome, the reapers leave it be."""
        await self.redis.zrem(keys.UNANSWERED, adapter_id)

    async def load(self, adapter_id: str) -> AdapterRecord | None:
        raw = await self.redis.hgetall(keys.adapter(adapter_id))
        text = {_text(k): _text(v) for k, v in raw.items()}
        return AdapterRecord.from_hash(text) if text.get("adapter_id") else None

    async def sealed_headers(self, adapter_id: str) -> str | None:
        """The adapter's sealed header values; None if it has none (or they are gone)."""
        token = await self.redis.get(keys.adapter_headers(adapter_id))
        return None if token is None else _text(token)

    async def claim(self, adapter_id: str, worker: str, *, heartbeat_ttl_s: float) -> bool:
        claimed = await self._claim(
            keys=[
                keys.adapter(adapter_id),
                keys.HEARTBEATS,
                keys.PENDING,
                keys.adapter_events(adapter_id),
                keys.RESUMING,
            ],
            args=[adapter_id, worker, int(heartbeat_ttl_s * 1000)],
        )
        return bool(claimed)

    async def abandon(self, adapter_id: str, app_id: str) -> bool:
        """Withdraws a create no worker has claimed; False if a worker got it first."""
        done = await self._abandon(
            keys=[keys.adapter(adapter_id), keys.app_adapters(app_id), keys.PENDING],
            args=[adapter_id],
        )
        return bool(done)

    async def set_live_state(self, adapter_id: str, state: AdapterState) -> bool:
        done = await self._set_live_state(
            keys=[keys.adapter(adapter_id), keys.adapter_events(adapter_id)], args=[state.value]
        )
        return bool(done)

    async def fail(self, adapter_id: str, app_id: str, error_code: str, description: str) -> bool:
        done = await self._fail(
            keys=[
                keys.adapter(adapter_id),
                keys.HEARTBEATS,
                keys.app_adapters(app_id),
                keys.adapter_events(adapter_id),
            ],
            args=[adapter_id, error_code, description],
        )
        return bool(done)

    async def close(
        self,
        adapter_id: str,
        reason: CloseReason,
        counters: dict[str, int] | None = None,
        extra: dict[str, int] | None = None,
    ) -> int:
        """Closes the record: 1 closed now, 0 was closed already, -1 unknown id.

        A pipeline's final `counters` (and `extra`: `h_*` histogram buckets, `p_*` stream
        position) are saved even when the record was closed already, so the last second
        of traffic is never left uncounted.
        """
        result = await self._close(
            keys=[keys.adapter(adapter_id), keys.HEARTBEATS, keys.adapter_events(adapter_id)],
            args=[
                adapter_id,
                reason.value,
                utc_now_iso(),
                self.retention_s,
                self.usage_retention_s,
                *_counter_args(counters, extra),
            ],
        )
        return int(result)

    async def restore(
        self, record: AdapterRecord, *, heartbeat_ttl_s: float, sealed_headers: str | None = None
    ) -> None:
        """Writes back the record of a running pipeline whose record vanished.

        A Redis restarted without persistence forgets every adapter; the pipelines still
        stream, so they put their records back (and their sealed header values, which a
        resume would need) rather than stop serving their users.
        """
        fields: dict[Any, Any] = record.to_hash()
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys.adapter(record.adapter_id), mapping=fields)
            if sealed_headers:
                pipe.set(keys.adapter_headers(record.adapter_id), sealed_headers)
            pipe.zadd(keys.app_adapters(record.app_id), {record.adapter_id: 0})
            pipe.sadd(keys.app_live(record.app_id), record.adapter_id)
            await pipe.execute()
        await self.heartbeat(record.adapter_id, ttl_s=heartbeat_ttl_s, worker=record.worker or "")

    async def set_session(self, adapter_id: str, session_id: str) -> None:
        """Records the SFU session a pipeline made (ingest), while still `connecting`."""
        await self.redis.hset(keys.adapter(adapter_id), "session_id", session_id)

    async def request_close(self, adapter_id: str) -> None:
        """Asks the pipeline to close; it also sees the flag on its next heartbeat."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(keys.adapter(adapter_id), "close_requested", "1")
            pipe.publish(keys.adapter_control(adapter_id), "close")
            await pipe.execute()

    async def heartbeat(
        self,
        adapter_id: str,
        *,
        ttl_s: float,
        counters: dict[str, int] | None = None,
        extra: dict[str, int] | None = None,
        worker: str = "",
    ) -> HeartbeatReply:
        """Keeps the adapter alive and saves its counters.

        Args:
            worker: the beating process (`hostname:pid`); when given, a record held by
                another process (or by none) is not touched and the reply is `superseded`.
        """
        state, requested = await self._heartbeat(
            keys=[keys.adapter(adapter_id), keys.HEARTBEATS],
            args=[
                adapter_id,
                int(ttl_s * 1000),
                self.usage_retention_s,
                worker,
                *_counter_args(counters, extra),
            ],
        )
        return HeartbeatReply(state=_text(state), close_requested=_text(requested) == "1")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
