-- Atomic ingest of events with their deliveries (see webhooks/queue.py: ingest).
-- ARGV[1] key prefix, ARGV[2] idempotency ttl in seconds, ARGV[3] retention ms (the event's time to live),
-- then per event, flat: tenant, event id ("!" first when the platform generated it, so it cannot
-- exist yet and is not looked up), idempotency key or "", event type, created ms,
-- the tenant's endpoint version the routing used or "" (no check), the event document,
-- the number N of deliveries, then N pairs of delivery id and endpoint id.
-- Returns, per event in order, "" when it was stored now, or the stored document of the event
-- that the id (or key) already names: nothing new is delivered for it.
-- When an event was routed with an endpoint version that is no longer current, nothing at all is
-- written and the reply is {"stale", tenant id}: the caller re-reads the endpoints and tries again.
local p = ARGV[1]
local ttl = tonumber(ARGV[2])
local retention = tonumber(ARGV[3])

-- First pass: where each event starts, and the routing versions (before anything is written).
local starts = {}
local i = 4
while i <= #ARGV do
  starts[#starts + 1] = i
  local version = ARGV[i + 5]
  if version ~= '' then
    local current = redis.call('GET', p .. 't:' .. ARGV[i] .. ':epver') or '0'
    if current ~= version then return {'stale', ARGV[i]} end
  end
  i = i + 8 + 2 * tonumber(ARGV[i + 7])
end

-- Index and queue writes are gathered and issued once per key at the end.
local out, ready, by_index = {}, {}, {}
local created = 0
local function index(key, id)
  local members = by_index[key]
  if not members then members = {}; by_index[key] = members end
  members[#members + 1] = 0
  members[#members + 1] = id
end
for _, s in ipairs(starts) do
  local tenant, event_id, key, event_type, created_ms = ARGV[s], ARGV[s + 1], ARGV[s + 2], ARGV[s + 3], ARGV[s + 4]
  local fresh = string.byte(event_id, 1) == 33  -- '!'
  if fresh then event_id = string.sub(event_id, 2) end
  local existing = false
  local ikey = nil
  if key ~= '' then
    ikey = p .. 't:' .. tenant .. ':idem:' .. key
    local prior = redis.call('GET', ikey)
    if prior then existing = redis.call('GET', p .. 'evt:' .. tenant .. ':' .. prior) end
  end
  local ekey = p .. 'evt:' .. tenant .. ':' .. event_id
  if not existing and not fresh then existing = redis.call('GET', ekey) end
  if existing then
    out[#out + 1] = existing
  else
    redis.call('SET', ekey, ARGV[s + 6], 'PX', retention)
    if ikey then redis.call('SET', ikey, event_id, 'EX', ttl) end
    local tenant_index = p .. 't:' .. tenant .. ':dlvs'
    for j = 0, tonumber(ARGV[s + 7]) - 1 do
      local did, ep = ARGV[s + 8 + 2 * j], ARGV[s + 9 + 2 * j]
      -- attempt_count, series_attempts and updated_at are absent until the first attempt (read as 0
      -- and created_at).
      redis.call('HSET', p .. 'dlv:' .. did, 'id', did, 'tenant_id', tenant, 'event_id', event_id,
        'endpoint_id', ep, 'event_type', event_type, 'status', 'pending', 'created_at', created_ms)
      index(tenant_index, did)
      index(p .. 'ep:' .. ep .. ':dlvs', did)
      ready[#ready + 1] = did
    end
    created = created + 1
    out[#out + 1] = ''
  end
end
local CHUNK = 4000  -- Lua's unpack() has a stack limit
for key, members in pairs(by_index) do
  for j = 1, #members, CHUNK do
    redis.call('ZADD', key, unpack(members, j, math.min(j + CHUNK - 1, #members)))
  end
end
for j = 1, #ready, CHUNK do
  redis.call('RPUSH', p .. 'q:ready', unpack(ready, j, math.min(j + CHUNK - 1, #ready)))
end
if created > 0 then redis.call('HINCRBY', p .. 'stats', 'events_accepted', created) end
return out
