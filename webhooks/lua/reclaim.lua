-- Return the deliveries of expired leases to the front of the ready list (webhooks/queue.py: reclaim).
-- ARGV[1] prefix, ARGV[2] now ms, ARGV[3] most leases to reclaim in this call.
-- Only deliveries still held by the expired lease move; those already recorded stay as they are.
-- Returns {leases reclaimed, deliveries returned}.
local p = ARGV[1]
local lids = redis.call('ZRANGEBYSCORE', p .. 'q:leases', '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
local n = 0
for _, lid in ipairs(lids) do
  local lk = p .. 'q:lease:' .. lid
  local ids = redis.call('LRANGE', lk, 0, -1)
  for j = #ids, 1, -1 do
    local dk = p .. 'dlv:' .. ids[j]
    if redis.call('HGET', dk, 'lease') == lid then
      redis.call('HDEL', dk, 'lease')
      redis.call('HSET', dk, 'status', 'pending', 'updated_at', ARGV[2])
      redis.call('LPUSH', p .. 'q:ready', ids[j])
      n = n + 1
    end
  end
  redis.call('DEL', lk)
  redis.call('ZREM', p .. 'q:leases', lid)
end
if n > 0 then redis.call('HINCRBY', p .. 'stats', 'deliveries_reclaimed', n) end
return {#lids, n}
