#!lua flags=allow-oom
-- Give up the data-format migration lock (webhooks/queueing/dataformat.py: Lock.release).
-- KEYS[1] the data format's key base. ARGV[1] owner token.
-- Returns 1 when the owner held it (it is gone now), 0 when it did not (nothing changed).
local B = KEYS[1]
if redis.call('GET', B .. 'lock') == ARGV[1] then
  redis.call('DEL', B .. 'lock')
  return 1
end
return 0
