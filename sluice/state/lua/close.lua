-- KEYS: record, heartbeats, events. ARGV: id, reason, closed_at, retention s, usage ttl s,
-- counters... Returns 1 when this call closed it, 0 when it was closed already, -1 unknown.
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
redis.call('ZREM', PREFIX .. ':pending', ARGV[1])
redis.call('ZREM', PREFIX .. ':resuming', ARGV[1])
redis.call('PUBLISH', KEYS[3], cjson.encode({event = 'closed', reason = ARGV[2]}))
emit_event(KEYS[1], 'adapter.closed')
forget_headers(KEYS[1])
return 1
