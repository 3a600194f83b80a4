#!lua flags=allow-oom
-- The small global writes that follow a tenant script (webhooks/queue.py: activate, wake_at,
-- lease's deactivation, the workers' rotation; webhooks/memory.py: publish). Allowed over maxmemory: they are what keeps
-- delivery going while Redis is full, and each adds a few bytes at most.
-- KEYS[1] the key. ARGV[1] the operation, then its arguments:
--   'push' members...        RPUSH onto the active list
--   'rotate'                 LMOVE head to tail of the active list: the next tenant of the round robin
--   'unlist' member          LREM count 1 (one entry) from the active list
--   'wake' ms member ...     ZADD LT (keeps the earliest wake time), pairs of score and member
--   'level' ttl_ms field value ...   HSET then PEXPIRE (the published memory level)
-- Returns what the command returned.
local op = ARGV[1]
if op == 'push' then return redis.call('RPUSH', KEYS[1], unpack(ARGV, 2)) end
if op == 'rotate' then return redis.call('LMOVE', KEYS[1], KEYS[1], 'LEFT', 'RIGHT') end
if op == 'unlist' then return redis.call('LREM', KEYS[1], 1, ARGV[2]) end
if op == 'wake' then return redis.call('ZADD', KEYS[1], 'LT', unpack(ARGV, 2)) end
if op == 'level' then
  redis.call('HSET', KEYS[1], unpack(ARGV, 3))
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return redis.error_reply('unknown operation ' .. op)
