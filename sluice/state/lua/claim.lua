-- A new adapter (`connecting`) or one being resumed (`reconnecting`, its process lost) is
-- taken by one worker before its deadline. KEYS: record, heartbeats, pending, events,
-- resuming. ARGV: id, worker name, heartbeat ttl ms.
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
