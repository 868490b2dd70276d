-- KEYS: record, heartbeats. ARGV: id, ttl ms, usage ttl s, worker, counters...
-- `worker` is the beating process ('': any). A process that no longer holds the record
-- (the reapers took it for lost and handed it back, or another process resumed it)
-- is told `taken`, and neither beats for it nor writes its counters.
-- Returns {state, close_requested}.
local state = redis.call('HGET', KEYS[1], 'state')
if not state then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return {'gone', '0'}
end
if ARGV[4] ~= '' and redis.call('HGET', KEYS[1], 'worker') ~= ARGV[4] then
  return {'taken', '0'}
end
if state == 'closed' then
  redis.call('ZREM', KEYS[2], ARGV[1])
  save_counters(KEYS[1], ARGV, 5, tonumber(ARGV[3]))
  return {state, '1'}
end
redis.call('ZADD', KEYS[2], now_ms() + tonumber(ARGV[2]), ARGV[1])
save_counters(KEYS[1], ARGV, 5, tonumber(ARGV[3]))
return {state, redis.call('HGET', KEYS[1], 'close_requested') or '0'}
