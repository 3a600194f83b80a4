-- Atomic ingest of one tenant's events with their deliveries (webhooks/queueing/queue.py: ingest).
-- KEYS[1] the tenant's key base. ARGV[1] idempotency ttl in seconds, ARGV[2] retention ms (the
-- event's time to live), ARGV[3] the endpoint version the routing used, or "" (no check), ARGV[4]
-- Redis' maxmemory in bytes (0: no budget, no share), ARGV[5] the share of it a tenant may hold
-- (its own `share` in `B info` when the admin set one), then two
-- arguments per event: its head, newline-terminated fields,
--   event id ("!" first when the platform generated it, so it cannot exist yet and is not looked
--   up; then "~" when the delivery ids derive from it, so deliveries need not store it),
--   idempotency key or "", event type, created ms, the number N of deliveries, then N pairs of
--   delivery id and endpoint id
-- (no field can hold a newline: ids, event types and idempotency keys are validated printable
-- text), then the event record (webhooks/queueing/history.py), stored as it comes. Few, large arguments keep
-- the client's command encoding and Redis' argument parsing cheap; the record is never copied.
-- Deliveries join their endpoint's ready list; endpoints that can run join the tenant's runnable list.
-- Returns {activate, existing}: activate is 1 when the caller must put the tenant on the global
-- active list; existing is flat, {position, "<event id>\n<stored record>", ...}, for each event
-- (its 1-based position among the call's events) whose id or key names an event stored before:
-- nothing new is delivered for it. Events not named there were stored now. When the routing
-- version is no longer current nothing at all is written and the reply is {"stale"}: the caller
-- re-reads the endpoints and tries again. When the tenant's stored bytes (`sb` in `B info`, kept
-- here, in complete.lua and trim.lua) are at its share already, nothing is written and the reply is
-- {"over", stored bytes, limit bytes}.
local ttl = ARGV[1]  -- both passed on as they came: a Lua number would be formatted back per call
local retention = ARGV[2]
if ARGV[3] ~= '' and (redis.call('GET', B .. 'epver') or '0') ~= ARGV[3] then return {'stale'} end
local max_bytes = tonumber(ARGV[4])
if max_bytes > 0 then
  local f = redis.call('HMGET', B .. 'info', 'sb', 'share')
  local limit = math.floor((tonumber(f[2]) or tonumber(ARGV[5])) * max_bytes)
  if (tonumber(f[1]) or 0) >= limit then return {'over', f[1] or '0', limit} end
end

local out, queued, order, index = {}, {}, {}, {}
local created, now, bytes = 0, 0, 0
local match, sub = string.match, string.sub
local HEAD = '^([^\n]*)\n([^\n]*)\n([^\n]*)\n([^\n]*)\n([^\n]*)\n()'
local PAIR = '^([^\n]*)\n([^\n]*)\n()'
for i = 6, #ARGV, 2 do
  local arg = ARGV[i]
  local event_id, key, event_type, created_ms, count, pos = match(arg, HEAD)
  local n = tonumber(count)
  local fresh = string.byte(event_id, 1) == 33  -- '!'
  if fresh then event_id = sub(event_id, 2) end
  local derived = string.byte(event_id, 1) == 126  -- '~'
  if derived then event_id = sub(event_id, 2) end
  local existing, existing_id = false, event_id
  local ikey = nil
  if key ~= '' then
    ikey = B .. 'idem:' .. key
    local prior = redis.call('GET', ikey)
    if prior then
      existing = redis.call('GET', B .. 'e:' .. prior)
      existing_id = prior
    end
  end
  if not existing and not fresh then
    existing = redis.call('GET', B .. 'e:' .. event_id)
    existing_id = event_id
  end
  if existing then
    out[#out + 1] = (i - 4) / 2
    out[#out + 1] = existing_id .. '\n' .. existing
  else
    local dids, eps = {}, {}
    for j = 1, n do
      dids[j], eps[j], pos = match(arg, PAIR, pos)
    end
    redis.call('SET', B .. 'e:' .. event_id, ARGV[i + 1], 'PX', retention)
    if ikey then redis.call('SET', ikey, event_id, 'EX', ttl) end
    index[#index + 1] = created_ms
    index[#index + 1] = event_id
    for j = 1, n do
      local did, ep = dids[j], eps[j]
      if derived then
        redis.call('HSET', B .. 'd:' .. did, 'p', ep, 'y', event_type, 's', 'pending')
      else
        redis.call('HSET', B .. 'd:' .. did, 'e', event_id, 'p', ep, 'y', event_type, 's', 'pending')
      end
      local q = queued[ep]
      if not q then q = {}; queued[ep] = q; order[#order + 1] = ep end
      q[#q + 1] = did
    end
    created = created + 1
    bytes = bytes + #ARGV[i + 1] + EVENT_BYTES + n * DELIVERY_BYTES
    now = tonumber(created_ms)
  end
end
local CHUNK = 4000  -- Lua's unpack() has a stack limit
for j = 1, #index, CHUNK do
  redis.call('ZADD', B .. 'ev', unpack(index, j, math.min(j + CHUNK - 1, #index)))
end
for _, ep in ipairs(order) do
  local q = queued[ep]
  for j = 1, #q, CHUNK do
    redis.call('RPUSH', B .. 'r:' .. ep, unpack(q, j, math.min(j + CHUNK - 1, #q)))
  end
  wake_endpoint(ep, now)
end
if created > 0 then
  redis.call('HINCRBY', B .. 'stats', 'events_accepted', created)
  redis.call('HINCRBY', B .. 'info', 'sb', bytes)
end
return {activation(), out}
