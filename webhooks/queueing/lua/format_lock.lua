#!lua flags=allow-oom
-- Take or keep the data-format migration lock (webhooks/queueing/dataformat.py: Lock).
-- KEYS[1] the data format's key base (keys.DATA_FORMAT_BASE). ARGV[1] owner token, ARGV[2] TTL ms.
-- Returns 1 when the owner holds the lock afterwards (taken now, or renewed), 0 when another does.
local B = KEYS[1]
local lock = B .. 'lock'
local holder = redis.call('GET', lock)
if holder == ARGV[1] then
  redis.call('PEXPIRE', lock, ARGV[2])
  return 1
end
if holder then return 0 end
redis.call('SET', lock, ARGV[1], 'PX', ARGV[2])
return 1
