"""Adapter state in Redis: every transition is one atomic Lua script.

Several API replicas, workers and reapers act on the same adapter concurrently; making
each transition a compare-and-set script means a close racing a create, a reap racing a
heartbeat, or two closes racing each other always resolve to one consistent outcome.
Scripts read the clock from Redis (`TIME`) so hosts with skewed clocks agree on deadlines.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from sluice import keys
from sluice.errors import QuotaExceeded
from sluice.state import COUNTER_NAMES, AdapterRecord, AdapterState, CloseReason, utc_now_iso

_NOW = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function set_pairs(key, argv, from)
  for i = from, #argv, 2 do redis.call('HSET', key, argv[i], argv[i + 1]) end
end
-- Saves a pipeline's counters into its record. The growth of each monotonic counter
-- (and of the loop-lag histogram buckets, `h_*`) since the last save is added to the
-- cluster-wide totals that /metrics reports, and the growth of `c_bytes` to the app's
-- usage of the current hour: the same numbers in the same script, so totals, usage and
-- records agree by construction, whichever process dies when.
local FOLDED = {c_packets = true, c_bytes = true, c_dropped = true, c_reconnects = true,
  c_skipped = true, c_underruns = true}
local function save_counters(key, argv, from, usage_ttl_s)
  local meta = redis.call('HMGET', key, 'direction', 'app_id')
  local dir, app = meta[1], meta[2]
  local position = false
  for i = from, #argv, 2 do
    local name, value = argv[i], argv[i + 1]
    if dir and (FOLDED[name] or string.sub(name, 1, 2) == 'h_') then
      local delta = tonumber(value) - tonumber(redis.call('HGET', key, name) or '0')
      if delta > 0 then
        redis.call('HINCRBY', 'sluice:metrics', dir .. '|' .. name, delta)
        if name == 'c_bytes' and app then
          local usage = 'sluice:usage:' .. app .. ':' .. math.floor(now_ms() / 3600000)
          redis.call('HINCRBY', usage, dir .. '_bytes', delta)
          redis.call('EXPIRE', usage, usage_ttl_s)
        end
      end
    end
    redis.call('HSET', key, name, value)
    position = position or string.sub(name, 1, 2) == 'p_'
  end
  -- When the position was saved, by the clock every host agrees on (for resuming).
  if position then redis.call('HSET', key, 'p_saved_ms', now_ms()) end
end
local function count_close(key, reason)
  local dir = redis.call('HGET', key, 'direction')
  if dir then redis.call('HINCRBY', 'sluice:metrics', 'closes|' .. dir .. '|' .. reason, 1) end
end
-- An adapter stops counting against its app's limit once it is closed or gone.
local function not_live(record_key, id)
  local app = redis.call('HGET', record_key, 'app_id')
  if app then redis.call('SREM', 'sluice:app:' .. app .. ':live', id) end
  return app
end
"""

# KEYS: record, app index, pending, app live set. ARGV: id, pickup ms, max live (0: no
# limit), field/value pairs... Returns 1 created, 0 id taken, -1 over the app's limit.
CREATE_LUA = (
    _NOW
    + """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local limit = tonumber(ARGV[3])
if limit > 0 and redis.call('SCARD', KEYS[4]) >= limit then return -1 end
redis.call('SADD', KEYS[4], ARGV[1])
local now = now_ms()
set_pairs(KEYS[1], ARGV, 4)
redis.call('HSET', KEYS[1], 'claim_deadline_ms', now + tonumber(ARGV[2]))
redis.call('ZADD', KEYS[2], now, ARGV[1])
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[2]), ARGV[1])
-- Closed records expire on their own; their ids leave the app's index here, a few per
-- create, picked at random so that long-lived adapters cannot shield expired ones.
for _, old in ipairs(redis.call('ZRANDMEMBER', KEYS[2], 8)) do
  if redis.call('EXISTS', 'sluice:adapter:' .. old) == 0 then redis.call('ZREM', KEYS[2], old) end
end
return 1
"""
)

# A new adapter (`connecting`) or one being resumed (`reconnecting`, its process lost) is
# taken by one worker before its deadline. KEYS: record, heartbeats, pending, events,
# resuming. ARGV: id, worker name, heartbeat ttl ms.
CLAIM_LUA = (
    _NOW
    + """
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'connecting' and state ~= 'reconnecting' then return 0 end
if redis.call('HEXISTS', KEYS[1], 'worker') == 1 then return 0 end
local now = now_ms()
local deadline = tonumber(redis.call('HGET', KEYS[1], 'claim_deadline_ms') or '0')
if now > deadline then return 0 end
redis.call('HSET', KEYS[1], 'worker', ARGV[2])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[5], ARGV[1])
redis.call('PUBLISH', KEYS[4], cjson.encode({event = 'claimed', worker = ARGV[2]}))
return 1
"""
)

# An unclaimed create is withdrawn (no worker took it in time). KEYS: record, app index,
# pending. ARGV: id.
ABANDON_LUA = (
    _NOW
    + """
if redis.call('HGET', KEYS[1], 'state') ~= 'connecting' then return 0 end
if redis.call('HEXISTS', KEYS[1], 'worker') == 1 then return 0 end
not_live(KEYS[1], ARGV[1])
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
return 1
"""
)

# KEYS: record, events. ARGV: new state (active|reconnecting).
SET_LIVE_STATE_LUA = """
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'connecting' and state ~= 'active' and state ~= 'reconnecting' then return 0 end
if state ~= ARGV[1] then
  redis.call('HSET', KEYS[1], 'state', ARGV[1])
  redis.call('PUBLISH', KEYS[2], cjson.encode({event = 'state', state = ARGV[1]}))
end
return 1
"""

# A create that failed leaves nothing behind. KEYS: record, heartbeats, app index, events.
# ARGV: id, errorCode, errorDescription.
FAIL_LUA = (
    _NOW
    + """
if redis.call('HGET', KEYS[1], 'state') ~= 'connecting' then return 0 end
not_live(KEYS[1], ARGV[1])
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('PUBLISH', KEYS[4], cjson.encode(
  {event = 'failed', errorCode = ARGV[2], errorDescription = ARGV[3]}))
return 1
"""
)

# KEYS: record, heartbeats, events. ARGV: id, reason, closed_at, retention s, usage ttl s,
# counters... Returns 1 when this call closed it, 0 when it was closed already, -1 unknown.
CLOSE_LUA = (
    _NOW
    + """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return -1 end
if state == 'closed' then
  -- A pipeline's final counters still count when the API closed the record first.
  if #ARGV > 5 then save_counters(KEYS[1], ARGV, 6, tonumber(ARGV[5])) end
  return 0
end
not_live(KEYS[1], ARGV[1])
save_counters(KEYS[1], ARGV, 6, tonumber(ARGV[5]))
count_close(KEYS[1], ARGV[2])
redis.call('HSET', KEYS[1], 'state', 'closed', 'close_reason', ARGV[2], 'closed_at', ARGV[3])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
redis.call('ZREM', KEYS[2], ARGV[1])
-- Closed while still waiting for a worker (new or resuming): nothing is pending any more.
redis.call('ZREM', 'sluice:pending', ARGV[1])
redis.call('ZREM', 'sluice:resuming', ARGV[1])
redis.call('PUBLISH', KEYS[3], cjson.encode({event = 'closed', reason = ARGV[2]}))
return 1
"""
)

# KEYS: record, heartbeats. ARGV: id, ttl ms, usage ttl s, counters...
# Returns {state, close_requested}.
HEARTBEAT_LUA = (
    _NOW
    + """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return {'gone', '0'}
end
if state == 'closed' then
  redis.call('ZREM', KEYS[2], ARGV[1])
  save_counters(KEYS[1], ARGV, 4, tonumber(ARGV[3]))
  return {state, '1'}
end
redis.call('ZADD', KEYS[2], now_ms() + tonumber(ARGV[2]), ARGV[1])
save_counters(KEYS[1], ARGV, 4, tonumber(ARGV[3]))
return {state, redis.call('HGET', KEYS[1], 'close_requested') or '0'}
"""
)

# Marks adapters whose heartbeat deadline passed as lost, and withdraws creates that no
# worker claimed before their deadline (their API replica died while waiting).
# A lost egress adapter is handed to another worker instead (up to a number of times):
# it goes `reconnecting` with no worker and a claim deadline, and the caller enqueues it;
# one that nobody claims by then is closed `worker_lost`.
# After a gap between passes longer than two intervals (Redis was frozen, restarted or
# unreachable, so every deadline ran out meanwhile), nothing is reaped for one heartbeat
# TTL: pipelines get the chance to beat again. The clock is Redis's, so the gap is seen
# even when the pass itself was queued behind the outage.
# KEYS: heartbeats, pending, reaper state, resuming. ARGV: closed_at, retention s, max per
# call, grace ms, reap interval ms, heartbeat ttl ms, max resumes, resume claim window ms.
# Returns {lost, withdrawn, resumed}.
REAP_LUA = (
    _NOW
    + """
local now = now_ms()
local lost, withdrawn, resumed = {}, {}, {}
local function close_lost(key, id)
  not_live(key, id)
  count_close(key, 'worker_lost')
  redis.call('HSET', key, 'state', 'closed', 'close_reason', 'worker_lost',
    'closed_at', ARGV[1])
  redis.call('EXPIRE', key, tonumber(ARGV[2]))
  redis.call('PUBLISH', key .. ':events', cjson.encode({event = 'closed', reason = 'worker_lost'}))
  table.insert(lost, id)
end
local last = tonumber(redis.call('HGET', KEYS[3], 'last_pass_ms') or '0')
redis.call('HSET', KEYS[3], 'last_pass_ms', now)
if now - last > 2 * tonumber(ARGV[5]) then
  redis.call('HSET', KEYS[3], 'quiet_until_ms', now + tonumber(ARGV[6]))
end
if now < tonumber(redis.call('HGET', KEYS[3], 'quiet_until_ms') or '0') then
  return {lost, withdrawn, resumed}
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, ARGV[3])) do
  redis.call('ZREM', KEYS[1], id)
  local key = 'sluice:adapter:' .. id
  local events = key .. ':events'
  local state = redis.call('HGET', key, 'state')
  if state == 'connecting' then
    local app = not_live(key, id)
    redis.call('DEL', key)
    if app then redis.call('ZREM', 'sluice:app:' .. app .. ':adapters', id) end
    redis.call('PUBLISH', events, cjson.encode({event = 'failed', errorCode = 'no_capacity',
      errorDescription = 'the worker process running this adapter was lost while connecting'}))
    table.insert(lost, id)
  elseif state and state ~= 'closed' then
    local resumes = tonumber(redis.call('HGET', key, 'resumes') or '0')
    if redis.call('HGET', key, 'direction') == 'egress' and resumes < tonumber(ARGV[7]) then
      redis.call('HDEL', key, 'worker')
      redis.call('HSET', key, 'state', 'reconnecting', 'resumes', resumes + 1,
        'claim_deadline_ms', now + tonumber(ARGV[8]))
      redis.call('ZADD', KEYS[4], now + tonumber(ARGV[8]), id)
      redis.call('HINCRBY', 'sluice:metrics', 'resumes|egress', 1)
      redis.call('PUBLISH', events, cjson.encode({event = 'state', state = 'reconnecting'}))
      table.insert(resumed, id)
    else
      close_lost(key, id)
    end
  end
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now, 'LIMIT', 0, ARGV[3])) do
  redis.call('ZREM', KEYS[4], id)
  local key = 'sluice:adapter:' .. id
  if redis.call('HGET', key, 'state') == 'reconnecting'
      and redis.call('HEXISTS', key, 'worker') == 0 then
    close_lost(key, id)
  end
end
local stale = now - tonumber(ARGV[4])
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', stale, 'LIMIT', 0, ARGV[3])) do
  redis.call('ZREM', KEYS[2], id)
  local key = 'sluice:adapter:' .. id
  if redis.call('HGET', key, 'state') == 'connecting'
      and redis.call('HEXISTS', key, 'worker') == 0 then
    local app = not_live(key, id)
    redis.call('DEL', key)
    if app then redis.call('ZREM', 'sluice:app:' .. app .. ':adapters', id) end
    table.insert(withdrawn, id)
  end
end
return {lost, withdrawn, resumed}
"""
)


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


class AdapterStore:
    """Typed access to adapter records; every write is one of the scripts above."""

    def __init__(
        self, redis: Redis, *, retention_s: int, usage_retention_s: int = 400 * 86_400
    ) -> None:
        self.redis = redis
        self.retention_s = retention_s
        self.usage_retention_s = usage_retention_s
        self._create = redis.register_script(CREATE_LUA)
        self._claim = redis.register_script(CLAIM_LUA)
        self._abandon = redis.register_script(ABANDON_LUA)
        self._set_live_state = redis.register_script(SET_LIVE_STATE_LUA)
        self._fail = redis.register_script(FAIL_LUA)
        self._close = redis.register_script(CLOSE_LUA)
        self._heartbeat = redis.register_script(HEARTBEAT_LUA)

    async def create(
        self, record: AdapterRecord, *, pickup_timeout_s: float, max_live: int = 0
    ) -> bool:
        """Writes a new `connecting` record.

        Args:
            max_live: the app's limit of adapters not yet closed (0: none).

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
            ],
            args=[record.adapter_id, int(pickup_timeout_s * 1000), max_live, *pairs],
        )
        if created == -1:
            raise QuotaExceeded(f"app {record.app_id!r} already runs {max_live} adapters")
        if not created:
            raise ValueError(f"adapter id {record.adapter_id} exists")
        return True

    async def load(self, adapter_id: str) -> AdapterRecord | None:
        raw = await self.redis.hgetall(keys.adapter(adapter_id))
        text = {_text(k): _text(v) for k, v in raw.items()}
        return AdapterRecord.from_hash(text) if text.get("adapter_id") else None

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

    async def restore(self, record: AdapterRecord, *, heartbeat_ttl_s: float) -> None:
        """Writes back the record of a running pipeline whose record vanished.

        A Redis restarted without persistence forgets every adapter; the pipelines still
        stream, so they put their records back rather than stop serving their users.
        """
        fields: dict[Any, Any] = record.to_hash()
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys.adapter(record.adapter_id), mapping=fields)
            pipe.zadd(keys.app_adapters(record.app_id), {record.adapter_id: 0})
            pipe.sadd(keys.app_live(record.app_id), record.adapter_id)
            await pipe.execute()
        await self.heartbeat(record.adapter_id, ttl_s=heartbeat_ttl_s)

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
    ) -> HeartbeatReply:
        state, requested = await self._heartbeat(
            keys=[keys.adapter(adapter_id), keys.HEARTBEATS],
            args=[
                adapter_id,
                int(ttl_s * 1000),
                self.usage_retention_s,
                *_counter_args(counters, extra),
            ],
        )
        return HeartbeatReply(state=_text(state), close_requested=_text(requested) == "1")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def parse_event(data: Any) -> dict[str, Any]:
    """Decodes one message from an adapter's events channel."""
    try:
        event = json.loads(_text(data))
    except ValueError:
        return {}
    return event if isinstance(event, dict) else {}
