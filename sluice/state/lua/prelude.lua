-- Runs before every script of this folder (`sluice.state.scripts` joins them). Key names
-- come from `sluice.state.keys`: @PREFIX@ is replaced by `keys.PREFIX` when loading.
local PREFIX = '@PREFIX@'
local function adapter_key(id) return PREFIX .. ':adapter:' .. id end
local function app_key(app, what) return PREFIX .. ':app:' .. app .. ':' .. what end
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
  c_skipped = true, c_underruns = true,
  c_concealed = true, c_lost = true, c_cleared_ms = true}
local function save_counters(key, argv, from, usage_ttl_s)
  local meta = redis.call('HMGET', key, 'direction', 'app_id')
  local dir, app = meta[1], meta[2]
  local position = false
  for i = from, #argv, 2 do
    local name, value = argv[i], argv[i + 1]
    if dir and (FOLDED[name] or string.sub(name, 1, 2) == 'h_') then
      local delta = tonumber(value) - tonumber(redis.call('HGET', key, name) or '0')
      if delta > 0 then
        redis.call('HINCRBY', PREFIX .. ':metrics', dir .. '|' .. name, delta)
        if name == 'c_bytes' and app then
          local usage = PREFIX .. ':usage:' .. app .. ':' .. math.floor(now_ms() / 3600000)
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
  if dir then redis.call('HINCRBY', PREFIX .. ':metrics', 'closes|' .. dir .. '|' .. reason, 1) end
end
-- A lifecycle event for the app's webhook (extension E7), written by the same script as
-- the transition it reports, so no crash can come between the two. Only adapters created
-- while their app had a webhook carry `webhooks`; `webhook_sequence` numbers an adapter's
-- events from 1, and the event holds the record as it is now. Dispatchers move events
-- from the stream to the delivery queue; the cap bounds it while no dispatcher runs.
local OUTBOX_MAX = 100000
local function emit_event(key, kind)
  if redis.call('HEXISTS', key, 'webhooks') == 0 then return end
  local sequence = redis.call('HINCRBY', key, 'webhook_sequence', 1)
  redis.call('XADD', PREFIX .. ':webhook_outbox', 'MAXLEN', '~', OUTBOX_MAX, '*',
    'type', kind, 'sequence', sequence, 'at_ms', now_ms(),
    'record', cjson.encode(redis.call('HGETALL', key)))
end
-- An adapter's sealed header values (E6) go with the adapter: closed, failed or withdrawn.
local function forget_headers(key) redis.call('DEL', key .. ':headers') end
-- An adapter stops counting against its app's limit once it is closed or gone.
local function not_live(record_key, id)
  local app = redis.call('HGET', record_key, 'app_id')
  if app then redis.call('SREM', app_key(app, 'live'), id) end
  return app
end
