-- Atomic ingest of events with their deliveries (see webhooks/queue.py: ingest).
-- ARGV[1] key prefix, ARGV[2] idempotency ttl in seconds, ARGV[3] retention ms (the event's time to live),
-- ARGV[4..] one JSON record per event:
--   {t=tenant, id=event id, k=idempotency key or "", e=event document, ty=event type, c=created ms,
--    d={{delivery id, endpoint id}, ...}, v=the tenant's endpoint version the routing used (optional)}
-- Returns, per event in order, "" when it was stored now, or the stored document of the event
-- that the id (or key) already names: nothing new is delivered for it.
-- When an event was routed with an endpoint version that is no longer current, nothing at all is
-- written and the reply is {"stale", tenant id}: the caller re-reads the endpoints and tries again.
local p = ARGV[1]
local ttl = tonumber(ARGV[2])
local retention = tonumber(ARGV[3])
local out = {}
local created = 0
local records = {}
for i = 4, #ARGV do
  local r = cjson.decode(ARGV[i])
  if r.v then
    local current = redis.call('GET', p .. 't:' .. r.t .. ':epver') or '0'
    if current ~= r.v then return {'stale', r.t} end
  end
  records[#records + 1] = r
end
for _, r in ipairs(records) do
  local existing = false
  local ikey = nil
  if r.k ~= '' then
    ikey = p .. 't:' .. r.t .. ':idem:' .. r.k
    local prior = redis.call('GET', ikey)
    if prior then existing = redis.call('GET', p .. 'evt:' .. r.t .. ':' .. prior) end
  end
  local ekey = p .. 'evt:' .. r.t .. ':' .. r.id
  if not existing then existing = redis.call('GET', ekey) end
  if existing then
    table.insert(out, existing)
  else
    redis.call('SET', ekey, r.e, 'PX', retention)
    if ikey then redis.call('SET', ikey, r.id, 'EX', ttl) end
    for _, d in ipairs(r.d) do
      local did, ep = d[1], d[2]
      redis.call('HSET', p .. 'dlv:' .. did, 'id', did, 'tenant_id', r.t, 'event_id', r.id,
        'endpoint_id', ep, 'event_type', r.ty, 'status', 'pending', 'attempt_count', 0,
        'series_attempts', 0, 'created_at', r.c, 'updated_at', r.c)
      redis.call('ZADD', p .. 't:' .. r.t .. ':dlvs', 0, did)
      redis.call('ZADD', p .. 'ep:' .. ep .. ':dlvs', 0, did)
      redis.call('RPUSH', p .. 'q:ready', did)
    end
    created = created + 1
    table.insert(out, '')
  end
end
if created > 0 then redis.call('HINCRBY', p .. 'stats', 'events_accepted', created) end
return out
