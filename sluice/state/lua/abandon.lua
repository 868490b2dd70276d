-- An unclaimed create is withdrawn (no worker took it in time). KEYS: record, app index,
-- pending. ARGV: id.
if redis.call('HGET', KEYS[1], 'state') ~= 'connecting' then return 0 end
if redis.call('HEXISTS', KEYS[1], 'worker') == 1 then return 0 end
not_live(KEYS[1], ARGV[1])
forget_headers(KEYS[1])
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
return 1
