-- Manual retry and dead-letter replay of one tenant's deliveries (webhooks/queueing/queue.py: requeue).
-- KEYS[1] the tenant's key base. ARGV[1] now ms, ARGV[2] mode: 'retry' (one attempt now, any
-- state but delivering) or 'replay' (dead only; a fresh retry series), ARGV[3] first due ms (0:
-- ready now), ARGV[4] spacing ms between successive deliveries (a paced replay), ARGV[5] retention
-- ms (the event is kept that long again), ARGV[6..] delivery ids. A requeued delivery no longer
-- expires. A FIFO endpoint's delivery waiting for its retry is already at the head of its ready
-- list: a retry lifts the endpoint's pause instead.
-- Returns {statuses before the call per id ('' when missing), activate, next wake ms or -1}.
local now = tonumber(ARGV[1])
local mode = ARGV[2]
local due = tonumber(ARGV[3])
local step = tonumber(ARGV[4])
local retention = tonumber(ARGV[5])
local out = {}
for i = 6, #ARGV do
  local id = ARGV[i]
  local dk = B .. 'd:' .. id
  local f = redis.call('HMGET', dk, 's', 'e', 'p')
  f[2] = event_of(id, f[2])
  local st = f[1] or ''
  out[#out + 1] = st
  local go = false
  if mode == 'cancel' then
    if st == 'pending' or st == 'retrying' then
      redis.call('ZREM', B .. 'due:' .. f[3], id)
      redis.call('HSET', dk, 's', 'dead', 'da', now, 'u', now)
      redis.call('HDEL', dk, 'na')
      redis.call('ZADD', B .. 'dead', now, id)
      redis.call('PEXPIRE', dk, retention)
    end
  elseif mode == 'replay' then
    go = st == 'dead'
  else
    go = st ~= '' and st ~= 'delivering'
  end
  if go then
    local ek = B .. 'ep:' .. f[3]
    local was_due = redis.call('ZREM', B .. 'due:' .. f[3], id)
    if st == 'pending' and was_due == 0 then go = false end  -- already on the ready list
    if st == 'retrying' and was_due == 0 and redis.call('HGET', ek, 'fifo') == '1' then
      redis.call('HDEL', ek, 'pu')
      redis.call('HSET', dk, 's', 'pending', 'u', now)
      redis.call('HDEL', dk, 'na')
      touch(f[3])
      go = false
    end
  end
  if go then
    if st == 'dead' then
      redis.call('ZREM', B .. 'dead', id)
      redis.call('HDEL', dk, 'da', 'dr')
    end
    if mode == 'replay' then redis.call('HSET', dk, 'sn', 0) end
    due = put_back(dk, id, f[3], f[2], due, step, retention, now)
  end
end
wake_touched(now)
return {out, activation(), next_wake()}
