-- KEYS: record, app index, pending, app live set, sealed headers, unanswered. ARGV: id,
-- pickup ms, max live (0: no limit), sealed header values ('' for none), answer ms (how
-- long the API replica may take to answer; 0: not watched), field/value pairs...
-- Returns 1 created, 0 id taken, -1 over the app's limit.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local limit = tonumber(ARGV[3])
if limit > 0 and redis.call('SCARD', KEYS[4]) >= limit then return -1 end
redis.call('SADD', KEYS[4], ARGV[1])
local now = now_ms()
set_pairs(KEYS[1], ARGV, 6)
if ARGV[4] ~= '' then redis.call('SET', KEYS[5], ARGV[4]) end
redis.call('HSET', KEYS[1], 'claim_deadline_ms', now + tonumber(ARGV[2]))
if tonumber(ARGV[5]) > 0 then redis.call('ZADD', KEYS[6], now + tonumber(ARGV[5]), ARGV[1]) end
redis.call('ZADD', KEYS[2], now, ARGV[1])
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[2]), ARGV[1])
-- Closed records expire on their own; their ids leave the app's index here, a few per
-- create, picked at random so that long-lived adapters cannot shield expired ones.
for _, old in ipairs(redis.call('ZRANDMEMBER', KEYS[2], 8)) do
  if redis.call('EXISTS', adapter_key(old)) == 0 then redis.call('ZREM', KEYS[2], old) end
end
return 1
