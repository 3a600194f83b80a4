#!lua flags=allow-oom
-- The scheduler's visit of one tenant (webhooks/queueing/queue.py: tick). Allowed over maxmemory.
-- KEYS[1] the tenant's key base. ARGV[1] now ms, ARGV[2] most leases and most deliveries per step.
-- 1. Expired leases (a dead or stalled worker's): the deliveries they still hold go back to the
--    head of their endpoint's ready list, in order, and give their slots back.
-- 2. Endpoints whose time has come (dueq): a pause that is over is lifted (a breaker stays
--    half-open until its probe answers); deliveries due by now move from the due zset to the
--    tail of the ready list.
-- 3. Endpoints that can run go on the runnable list.
-- Returns {leases reclaimed, deliveries reclaimed, deliveries promoted, activate, next wake ms or
-- -1, act flag}: the caller puts the tenant on the active list when activate is 1, and sets its
-- wake time (both in other slots).
local now = tonumber(ARGV[1])
local most = tonumber(ARGV[2])
local n_leases, n_back, n_promoted = 0, 0, 0
for _, lid in ipairs(redis.call('ZRANGEBYSCORE', B .. 'leases', '-inf', now, 'LIMIT', 0, most)) do
  n_back = n_back + release_lease(lid, now)
  n_leases = n_leases + 1
end

for _, ep in ipairs(redis.call('ZRANGEBYSCORE', B .. 'dueq', '-inf', now, 'LIMIT', 0, most)) do
  redis.call('ZREM', B .. 'dueq', ep)
  local ek = B .. 'ep:' .. ep
  local pu = tonumber(redis.call('HGET', ek, 'pu') or '0')
  if pu > now then
    due_at(ep, pu)
  elseif pu > 0 then
    redis.call('HDEL', ek, 'pu')
  end
  local dz = B .. 'due:' .. ep
  local ids = redis.call('ZRANGEBYSCORE', dz, '-inf', now, 'LIMIT', 0, most)
  if #ids > 0 then
    redis.call('ZREM', dz, unpack(ids))
    for _, id in ipairs(ids) do
      local dk = B .. 'd:' .. id
      local st = redis.call('HGET', dk, 's')
      if st == 'retrying' or st == 'pending' then
        redis.call('HSET', dk, 's', 'pending', 'u', now)
        redis.call('HDEL', dk, 'na')
        redis.call('RPUSH', B .. 'r:' .. ep, id)
        n_promoted = n_promoted + 1
      end
    end
  end
  local first = redis.call('ZRANGE', dz, 0, 0, 'WITHSCORES')
  if first[2] then due_at(ep, tonumber(first[2])) end
  touch(ep)
end

wake_touched(now)
if n_back > 0 then redis.call('HINCRBY', B .. 'stats', 'deliveries_reclaimed', n_back) end
return {n_leases, n_back, n_promoted, activation(), next_wake(), redis.call('HGET', B .. 'info', 'act') or '0'}
