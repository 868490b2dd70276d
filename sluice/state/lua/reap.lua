-- Marks adapters whose heartbeat deadline passed as lost, and withdraws creates that no
-- worker claimed before their deadline (their API replica died while waiting).
-- A lost egress adapter is handed to another worker instead (up to a number of times):
-- it goes `reconnecting` with no worker and a claim deadline (its reconnect window: its
-- own `reconnectWindowS`, else the configured one), and the caller enqueues it; one that
-- nobody claims by then is closed `worker_lost`, and so is one whose window is 0 (it
-- asked never to be reconnected).
-- A create whose API replica never marked it answered by its deadline (plus the grace)
-- is closed `api_lost`: the replica died waiting, so nobody has the adapter's id and
-- nobody would ever close it. A running pipeline hears it at once (control channel).
-- After a gap between passes longer than two intervals (Redis was frozen, restarted or
-- unreachable, so every deadline ran out meanwhile), nothing is reaped for one heartbeat
-- TTL: pipelines get the chance to beat again. The clock is Redis's, so the gap is seen
-- even when the pass itself was queued behind the outage.
-- KEYS: heartbeats, pending, reaper state, resuming, unanswered. ARGV: closed_at,
-- retention s, max per call, grace ms, reap interval ms, heartbeat ttl ms, max resumes,
-- resume claim window ms. Returns {lost, withdrawn, resumed, abandoned}.
local now = now_ms()
local lost, withdrawn, resumed, abandoned = {}, {}, {}, {}
-- Every close a pass makes, as close.lua closes: the record, its counts, its listeners,
-- its webhook event, and its sealed header values, which go with the adapter.
local function close_reaped(key, id, reason)
  not_live(key, id)
  count_close(key, reason)
  redis.call('HSET', key, 'state', 'closed', 'close_reason', reason, 'closed_at', ARGV[1])
  redis.call('EXPIRE', key, tonumber(ARGV[2]))
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
  redis.call('ZREM', KEYS[4], id)
  redis.call('PUBLISH', key .. ':events', cjson.encode({event = 'closed', reason = reason}))
  emit_event(key, 'adapter.closed')
  forget_headers(key)
end
local function close_lost(key, id)
  close_reaped(key, id, 'worker_lost')
  table.insert(lost, id)
end
local function resume_window_ms(key)
  local options = redis.call('HGET', key, 'options')
  local window = options and cjson.decode(options).reconnectWindowS
  if type(window) == 'number' then return math.floor(window * 1000) end
  return tonumber(ARGV[8])
end
local last = tonumber(redis.call('HGET', KEYS[3], 'last_pass_ms') or '0')
redis.call('HSET', KEYS[3], 'last_pass_ms', now)
if now - last > 2 * tonumber(ARGV[5]) then
  redis.call('HSET', KEYS[3], 'quiet_until_ms', now + tonumber(ARGV[6]))
end
if now < tonumber(redis.call('HGET', KEYS[3], 'quiet_until_ms') or '0') then
  return {lost, withdrawn, resumed, abandoned}
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, ARGV[3])) do
  redis.call('ZREM', KEYS[1], id)
  local key = adapter_key(id)
  local events = key .. ':events'
  local state = redis.call('HGET', key, 'state')
  if state == 'connecting' then
    local app = not_live(key, id)
    forget_headers(key)
    redis.call('DEL', key)
    if app then redis.call('ZREM', app_key(app, 'adapters'), id) end
    redis.call('PUBLISH', events, cjson.encode({event = 'failed', errorCode = 'no_capacity',
      errorDescription = 'the worker process running this adapter was lost while connecting'}))
    table.insert(lost, id)
  elseif state and state ~= 'closed' then
    local resumes = tonumber(redis.call('HGET', key, 'resumes') or '0')
    local window = 0
    if redis.call('HGET', key, 'direction') == 'egress' and resumes < tonumber(ARGV[7]) then
      window = resume_window_ms(key)
    end
    if window > 0 then
      redis.call('HDEL', key, 'worker')
      redis.call('HSET', key, 'state', 'reconnecting', 'resumes', resumes + 1,
        'claim_deadline_ms', now + window)
      redis.call('ZADD', KEYS[4], now + window, id)
      redis.call('HINCRBY', PREFIX .. ':metrics', 'resumes|egress', 1)
      redis.call('PUBLISH', events, cjson.encode({event = 'state', state = 'reconnecting'}))
      emit_event(key, 'adapter.reconnecting')
      table.insert(resumed, id)
    else
      close_lost(key, id)
    end
  end
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now, 'LIMIT', 0, ARGV[3])) do
  redis.call('ZREM', KEYS[4], id)
  local key = adapter_key(id)
  if redis.call('HGET', key, 'state') == 'reconnecting'
      and redis.call('HEXISTS', key, 'worker') == 0 then
    close_lost(key, id)
  end
end
local stale = now - tonumber(ARGV[4])
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', stale, 'LIMIT', 0, ARGV[3])) do
  redis.call('ZREM', KEYS[2], id)
  local key = adapter_key(id)
  if redis.call('HGET', key, 'state') == 'connecting'
      and redis.call('HEXISTS', key, 'worker') == 0 then
    local app = not_live(key, id)
    forget_headers(key)
    redis.call('DEL', key)
    if app then redis.call('ZREM', app_key(app, 'adapters'), id) end
    table.insert(withdrawn, id)
  end
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', stale, 'LIMIT', 0, ARGV[3])) do
  redis.call('ZREM', KEYS[5], id)
  local key = adapter_key(id)
  local state = redis.call('HGET', key, 'state')
  if state and state ~= 'closed' then
    redis.call('HSET', key, 'close_requested', '1')
    close_reaped(key, id, 'api_lost')
    redis.call('PUBLISH', key .. ':control', 'api_lost')
    table.insert(abandoned, id)
  end
end
return {lost, withdrawn, resumed, abandoned}
