#!lua flags=allow-oom
-- Record the data format unless one is recorded already (webhooks/queueing/dataformat.py: record_initial);
-- allow-oom, so a Redis at its maxmemory (full of pending work) still gets its one small key.
-- KEYS[1] the data format's key base. ARGV[1] the format to record when none is.
-- Returns the format recorded afterwards (a string): ARGV[1], or the one found.
local B = KEYS[1]
local found = redis.call('GET', B .. 'version')
if found then return found end
redis.call('SET', B .. 'version', ARGV[1])
return ARGV[1]
