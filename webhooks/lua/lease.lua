-- Take up to N ready deliveries under a new lease (see webhooks/queue.py: lease).
-- ARGV[1] prefix, ARGV[2] lease id, ARGV[3] N, ARGV[4] lease expiry ms, ARGV[5] now ms.
-- The ids move to the lease's list and the lease into the leases zset in the same step, so a
-- worker that dies at any point leaves them where the reclaimer finds them.
-- Returns {deliveries, events, endpoints, number of ids popped}:
--   deliveries: flat {id, tenant, event id, endpoint id, attempt_count, series_attempts, ...}
--   events: flat {tenant .. ':' .. event id, document or ''}
--   endpoints: flat {endpoint id, document or '', disabled flag}
local p = ARGV[1]
local lid = ARGV[2]
local ids = redis.call('LPOP', p .. 'q:ready', tonumber(ARGV[3]))
if not ids then return {{}, {}, {}, 0} end
redis.call('RPUSH', p .. 'q:lease:' .. lid, unpack(ids))
redis.call('ZADD', p .. 'q:leases', ARGV[4], lid)
local ds, es, eps = {}, {}, {}
local seen_e, seen_ep = {}, {}
for _, id in ipairs(ids) do
  local dk = p .. 'dlv:' .. id
  local f = redis.call('HMGET', dk, 'status', 'tenant_id', 'event_id', 'endpoint_id', 'attempt_count',
    'series_attempts')
  if f[1] == 'pending' then
    redis.call('HSET', dk, 'status', 'delivering', 'lease', lid, 'updated_at', ARGV[5])
    table.insert(ds, id)
    for j = 2, 6 do table.insert(ds, f[j]) end
    local ek = f[2] .. ':' .. f[3]
    if not seen_e[ek] then
      seen_e[ek] = true
      table.insert(es, ek)
      table.insert(es, redis.call('GET', p .. 'evt:' .. ek) or '')
    end
    if not seen_ep[f[4]] then
      seen_ep[f[4]] = true
      local epf = redis.call('HMGET', p .. 'ep:' .. f[4], 'doc', 'disabled')
      table.insert(eps, f[4])
      table.insert(eps, epf[1] or '')
      table.insert(eps, epf[2] or '0')
    end
  end
end
return {ds, es, eps, #ids}
