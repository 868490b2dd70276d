-- KEYS: record, events. ARGV: new state (active|reconnecting).
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'connecting' and state ~= 'active' and state ~= 'reconnecting' then return 0 end
if state ~= ARGV[1] then
  redis.call('HSET', KEYS[1], 'state', ARGV[1])
  redis.call('PUBLISH', KEYS[2], cjson.encode({event = 'state', state = ARGV[1]}))
  if ARGV[1] == 'reconnecting' then
    emit_event(KEYS[1], 'adapter.reconnecting')
  elseif state == 'reconnecting' then
    emit_event(KEYS[1], 'adapter.reconnected')  -- a re-dial or a resume succeeded
  else
    emit_event(KEYS[1], 'adapter.active')
  end
end
return 1
