-- Manual retry and dead-letter replay (webhooks/queue.py: retry_now, replay).
-- ARGV[1] prefix, ARGV[2] now ms, ARGV[3] mode: 'retry' (one attempt now, any state but
-- delivering) or 'replay' (dead only; a fresh retry series), ARGV[4] first due ms (0: ready now),
-- ARGV[5] spacing ms between successive deliveries (rate limit), ARGV[6] retention ms (the event
-- is kept that long again), ARGV[7..] delivery ids. A requeued delivery no longer expires.
-- Returns, per id, its status before the call ('' when missing); ids that were not requeued
-- keep their state.
local p = ARGV[1]
local now = ARGV[2]
local mode = ARGV[3]
local due = tonumber(ARGV[4])
local step = tonumber(ARGV[5])
local retention = tonumber(ARGV[6])
local out = {}
for i = 7, #ARGV do
  local id = ARGV[i]
  local dk = p .. 'dlv:' .. id
  local f = redis.call('HMGET', dk, 'status', 'tenant_id', 'event_id')
  local st = f[1] or ''
  table.insert(out, st)
  local go = false
  if mode == 'replay' then
    go = st == 'dead'
  else
    go = st ~= '' and st ~= 'delivering'
  end
  if go then
    local was_due = redis.call('ZREM', p .. 'q:due', id)
    if st == 'pending' and was_due == 0 then
      go = false  -- already on the ready list
    end
  end
  if go then
    if st == 'dead' then
      redis.call('ZREM', p .. 'dead', id)
      redis.call('ZREM', p .. 't:' .. f[2] .. ':dead', id)
      redis.call('HDEL', dk, 'dead_at')
    end
    if mode == 'replay' then redis.call('HSET', dk, 'series_attempts', 0) end
    redis.call('PERSIST', dk)
    redis.call('PERSIST', p .. 'dlv:' .. id .. ':att')
    redis.call('PEXPIRE', p .. 'evt:' .. f[2] .. ':' .. f[3], retention)
    redis.call('HSET', dk, 'status', 'pending', 'updated_at', now)
    if due > 0 then
      redis.call('ZADD', p .. 'q:due', due, id)
      redis.call('HSET', dk, 'next_attempt_at', due)
      due = due + step
    else
      redis.call('HDEL', dk, 'next_attempt_at')
      redis.call('RPUSH', p .. 'q:ready', id)
    end
  end
end
return out
