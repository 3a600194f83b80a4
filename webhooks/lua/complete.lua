-- Record attempt outcomes and release finished leases (see webhooks/queue.py: complete).
-- ARGV[1] prefix, ARGV[2] now ms, ARGV[3] retention ms (how long a settled delivery is kept),
-- ARGV[4] count F of finished leases, ARGV[5 .. 4+F] their ids,
-- then one JSON record per delivery: {id, l=lease, s=new status, n=attempt_count, sn=series_attempts,
--   a=attempt document or nil, due=next attempt ms or nil, t=tenant, ep=endpoint, gone=bool,
--   code=status code or nil, ok=1 when the attempt succeeded}
-- An outcome is applied only while the delivery is still under the same lease: a lease that
-- expired and was reclaimed belongs to someone else now, and its stale outcome is dropped.
-- Returns the number of outcomes applied.
local p = ARGV[1]
local now = ARGV[2]
local retention = tonumber(ARGV[3])
local nf = tonumber(ARGV[4])
local applied = 0
local n_ok, n_fail, n_dead = 0, 0, 0
for i = 5 + nf, #ARGV do
  local r = cjson.decode(ARGV[i])
  local dk = p .. 'dlv:' .. r.id
  if redis.call('HGET', dk, 'lease') == r.l then
    applied = applied + 1
    redis.call('HDEL', dk, 'lease')
    redis.call('HSET', dk, 'status', r.s, 'attempt_count', r.n, 'series_attempts', r.sn, 'updated_at', now)
    if r.a then
      redis.call('RPUSH', p .. 'dlv:' .. r.id .. ':att', r.a)
      redis.call('HSET', dk, 'last_attempt_at', now)
      if r.code then redis.call('HSET', dk, 'last_status_code', r.code) end
      if r.ok == 1 then n_ok = n_ok + 1 else n_fail = n_fail + 1 end
    end
    if r.due then
      redis.call('ZADD', p .. 'q:due', r.due, r.id)
      redis.call('HSET', dk, 'next_attempt_at', r.due)
    else
      redis.call('HDEL', dk, 'next_attempt_at')
    end
    if r.s == 'dead' then
      redis.call('ZADD', p .. 'dead', now, r.id)
      redis.call('ZADD', p .. 't:' .. r.t .. ':dead', now, r.id)
      redis.call('HSET', dk, 'dead_at', now)
      n_dead = n_dead + 1
    end
    if r.s == 'succeeded' or r.s == 'dead' then
      redis.call('PEXPIRE', dk, retention)
      redis.call('PEXPIRE', p .. 'dlv:' .. r.id .. ':att', retention)
    end
    if r.gone then
      redis.call('HSET', p .. 'ep:' .. r.ep, 'disabled', '1', 'disabled_reason', 'receiver answered 410 Gone')
      redis.call('INCR', p .. 't:' .. r.t .. ':epver')
    end
  end
end
-- A finished lease is released. Any delivery still under it goes back to the front of ready: its
-- outcome was written by an earlier call whose effect was lost (a failover with replication lag, a
-- crash of Redis with everysec), so no delivery is ever left under a lease that no longer exists.
local n_back = 0
for i = 5, 4 + nf do
  local lid = ARGV[i]
  local lk = p .. 'q:lease:' .. lid
  local held = redis.call('LRANGE', lk, 0, -1)
  for j = #held, 1, -1 do
    local dk = p .. 'dlv:' .. held[j]
    if redis.call('HGET', dk, 'lease') == lid then
      redis.call('HDEL', dk, 'lease')
      redis.call('HSET', dk, 'status', 'pending', 'updated_at', now)
      redis.call('LPUSH', p .. 'q:ready', held[j])
      n_back = n_back + 1
    end
  end
  redis.call('DEL', lk)
  redis.call('ZREM', p .. 'q:leases', lid)
end
if n_back > 0 then redis.call('HINCRBY', p .. 'stats', 'deliveries_reclaimed', n_back) end
if n_ok > 0 then redis.call('HINCRBY', p .. 'stats', 'attempts_succeeded', n_ok) end
if n_fail > 0 then redis.call('HINCRBY', p .. 'stats', 'attempts_failed', n_fail) end
if n_dead > 0 then redis.call('HINCRBY', p .. 'stats', 'deliveries_dead', n_dead) end
return applied
