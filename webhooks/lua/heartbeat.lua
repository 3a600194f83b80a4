-- Extend live leases (webhooks/queue.py: heartbeat). ARGV[1] prefix, ARGV[2] new expiry ms,
-- ARGV[3..] lease ids. A lease that was already reclaimed is not brought back.
-- Returns the ids of the leases that are gone: their holder must not start what is left of them.
local gone = {}
for i = 3, #ARGV do
  if redis.call('ZSCORE', ARGV[1] .. 'q:leases', ARGV[i]) then
    redis.call('ZADD', ARGV[1] .. 'q:leases', ARGV[2], ARGV[i])
  else
    gone[#gone + 1] = ARGV[i]
  end
end
return gone
