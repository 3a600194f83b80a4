#!lua flags=allow-oom
-- The small global writes that follow a tenant script (webhooks/queueing/queue.py: activate, wake_at,
-- lease's deactivation, the workers' rotation; webhooks/queueing/memory.py: publish). Allowed over maxmemory:
-- they are what keeps delivery going while Redis is full, and each adds a few bytes at most.
-- KEYS[1] the key. ARGV[1] the operation, then its arguments:
--   'push' members...        RPUSH onto the active list each member not on it yet (LPOS): one
--                            entry per tenant, however often it is activated
--   'rotate'                 LMOVE head to tail of the active list: the next tenant of the round robin
--   'idle' member            SADD to the idle set (a tenant a lease found with nothing runnable)
--   'unlist' count member    LREM that many entries of the member from the active list (the
--                            scheduler only: it is the one remover, see webhooks/queueing/queue.py)
--   'wake' ms member ...     ZADD LT (keeps the earliest wake time), pairs of score and member
--                            (the wake index, or wh:opsdue: when operational notifications are due)
--   'level' ttl_ms field value ...   HSET then PEXPIRE (the published memory level)
-- Returns what the command returned.
local op = ARGV[1]
if op == 'push' then
  local pushed = 0
  for i = 2, #ARGV do
    if not redis.call('LPOS', KEYS[1], ARGV[i]) then
      redis.call('RPUSH', KEYS[1], ARGV[i])
      pushed = pushed + 1
    end
  end
  return pushed
end
if op == 'rotate' then return redis.call('LMOVE', KEYS[1], KEYS[1], 'LEFT', 'RIGHT') end
if op == 'idle' then return redis.call('SADD', KEYS[1], ARGV[2]) end
if op == 'unlist' then return redis.call('LREM', KEYS[1], ARGV[2], ARGV[3]) end
if op == 'wake' then return redis.call('ZADD', KEYS[1], 'LT', unpack(ARGV, 2)) end
if op == 'level' then
  redis.call('HSET', KEYS[1], unpack(ARGV, 3))
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return redis.error_reply('unknown operation ' .. op)
