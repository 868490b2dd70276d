-- A create that failed leaves nothing behind. KEYS: record, heartbeats, app index, events.
-- ARGV: id, errorCode, errorDescription.
if redis.call('HGET', KEYS[1], 'state') ~= 'connecting' then return 0 end
not_live(KEYS[1], ARGV[1])
forget_headers(KEYS[1])
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('PUBLISH', KEYS[4], cjson.encode(
  {event = 'failed', errorCode = ARGV[2], errorDescription = ARGV[3]}))
return 1
