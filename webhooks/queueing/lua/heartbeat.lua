#!lua flags=allow-oom
-- Extend a tenant's live leases (webhooks/queueing/queue.py: heartbeat). KEYS[1] the tenant's key base,
-- ARGV[1] new expiry ms, ARGV[2..] lease ids. A lease that was already reclaimed is not brought back.
-- Returns the ids of the leases that are gone: their holder must not start what is left of them.
local gone = {}
for i = 2, #ARGV do
  if redis.call('ZSCORE', B .. 'leases', ARGV[i]) then
    redis.call('ZADD', B .. 'leases', ARGV[1], ARGV[i])
  else
    gone[#gone + 1] = ARGV[i]
  end
end
return gone
