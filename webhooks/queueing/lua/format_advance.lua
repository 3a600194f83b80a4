#!lua flags=allow-oom
-- Record one chunk of a data-format migration (webhooks/queueing/dataformat.py: migrate), fenced by the lock:
-- nothing is written unless the caller still holds it and the stored format is the migration's source.
-- KEYS[1] the data format's key base. ARGV[1] owner token, ARGV[2] lock TTL ms, ARGV[3] the source
-- format N, ARGV[4] the cursor to resume from, ARGV[5] 1 when the migration is done (the format
-- becomes N + 1 and its progress is dropped), else 0 (the cursor is kept, the lock renewed).
-- Returns 1 when recorded, 0 when the lock is another's (or gone), -1 when the format is not N.
local B = KEYS[1]
if redis.call('GET', B .. 'lock') ~= ARGV[1] then return 0 end
if redis.call('GET', B .. 'version') ~= ARGV[3] then return -1 end
if ARGV[5] == '1' then
  redis.call('SET', B .. 'version', tostring(tonumber(ARGV[3]) + 1))
  redis.call('HDEL', B .. 'progress', ARGV[3])
else
  redis.call('HSET', B .. 'progress', ARGV[3], ARGV[4])
end
redis.call('PEXPIRE', B .. 'lock', ARGV[2])
return 1
