#!lua flags=allow-oom
-- Take up to N deliveries of one tenant under a new lease, round robin over the tenant's runnable
-- endpoints (webhooks/queueing/queue.py: lease). Allowed when Redis is over maxmemory: delivering pending
-- work is how memory comes back.
-- KEYS[1] the tenant's key base. ARGV[1] lease id, ARGV[2] N, ARGV[3] lease expiry ms,
-- ARGV[4] now ms, ARGV[5] quantum: the most one endpoint gives per visit.
-- An endpoint gives at most its free slots (max in flight across all workers, less those already
-- in flight), so nothing leased has to be handed back for lack of room. A paused endpoint (retry
-- wait of a FIFO endpoint, Retry-After, open breaker) leaves the runnable list; the scheduler's
-- tick puts it back when the pause ends. An endpoint paused by an operator (`pz` = 1) gives
-- nothing and leaves the list too; resuming makes it due, and the tick puts it back.
-- The ids move to the lease's list and the lease into the tenant's leases zset in the same step,
-- so a worker that dies at any point leaves them where the scheduler's reclaim finds them.
-- Returns {deliveries, events, endpoints, deactivate}:
--   deliveries: flat {id, event id, endpoint id, attempt_count, series_attempts, ...}
--   events: flat {event id, record or ''}; endpoints: flat {endpoint id, document or '', disabled,
--   revision}: the revision (field `rev`, bumped by every endpoint write in the same step) lets the
--   worker tell later whether its copy is still current (webhooks/queueing/queue.py: endpoint_revisions,
--   lua/rate.lua).
--   deactivate: 1 when nothing is runnable any more (`act` cleared; the caller removes the tenant
--   from the active list once).
local lid = ARGV[1]
local budget = tonumber(ARGV[2])
local now = tonumber(ARGV[4])
local quantum = tonumber(ARGV[5])
local ds, es, eps, held = {}, {}, {}, {}
local seen_e, seen_ep = {}, {}
local guard = budget + redis.call('LLEN', B .. 'rr') + 1
while budget > 0 and guard > 0 do
  guard = guard - 1
  local ep = redis.call('LPOP', B .. 'rr')
  if not ep then break end
  local ek = B .. 'ep:' .. ep
  redis.call('HSET', ek, 'q', '0')
  local k = math.min(budget, quantum, free_slots(ek))
  local hold = redis.call('HMGET', ek, 'pu', 'pz')
  if tonumber(hold[1] or '0') <= now and hold[2] ~= '1' and k > 0 then
    local got = 0
    for _, id in ipairs(redis.call('LPOP', B .. 'r:' .. ep, k) or {}) do
      local dk = B .. 'd:' .. id
      local f = redis.call('HMGET', dk, 's', 'e', 'n', 'sn')
      if f[1] == 'pending' or f[1] == 'retrying' then  -- anything else is a stale entry: skip it
        f[2] = event_of(id, f[2])
        redis.call('HSET', dk, 's', 'delivering', 'l', lid, 'u', now)
        ds[#ds + 1] = id
        ds[#ds + 1] = f[2]
        ds[#ds + 1] = ep
        ds[#ds + 1] = f[3] or '0'
        ds[#ds + 1] = f[4] or f[3] or '0'
        held[#held + 1] = id
        got = got + 1
        if not seen_e[f[2]] then
          seen_e[f[2]] = true
          es[#es + 1] = f[2]
          es[#es + 1] = redis.call('GET', B .. 'e:' .. f[2]) or ''
        end
      end
    end
    if got > 0 then
      redis.call('HINCRBY', ek, 'if', got)
      budget = budget - got
      if not seen_ep[ep] then
        seen_ep[ep] = true
        local epf = redis.call('HMGET', ek, 'doc', 'disabled', 'rev')
        eps[#eps + 1] = ep
        eps[#eps + 1] = epf[1] or ''
        eps[#eps + 1] = epf[2] or '0'
        eps[#eps + 1] = epf[3] or '0'
      end
    end
  end
  wake_endpoint(ep, now)
end
if #held > 0 then
  redis.call('RPUSH', B .. 'lease:' .. lid, unpack(held))
  redis.call('ZADD', B .. 'leases', ARGV[3], lid)
  redis.call('HINCRBY', B .. 'stats', 'deliveries_leased', #held)
end
local deactivate = 0
if redis.call('LLEN', B .. 'rr') == 0 then
  redis.call('HSET', B .. 'info', 'act', '0')
  deactivate = 1
end
return {ds, es, eps, deactivate}
