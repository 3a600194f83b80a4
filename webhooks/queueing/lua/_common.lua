-- Shared by every tenant script (webhooks/queueing/scripts.py prepends it, after a script's shebang line).
-- KEYS[1] is the tenant's key base, "wh:{t:<tenant id>}:": every key a script touches starts
-- with it, so a script stays inside one Redis Cluster hash slot.
local B = KEYS[1]
local DEFAULT_MAX_IN_FLIGHT = 1024  -- webhooks/queueing/scripts.py defines both (a test compares)
local SLOW_START = 16  -- requests in flight a new or recovering endpoint starts with (`cap`), +1 per success
-- The tenant's stored bytes, `sb` in `B info`: an approximation by record
-- sizes (webhooks/queueing/shares.py keeps copies, a test compares). An event costs its record plus
-- EVENT_BYTES (key, expiry, index entry), each of its deliveries DELIVERY_BYTES, each attempt its line.
local EVENT_BYTES, DELIVERY_BYTES = 350, 320

-- Requests the endpoint may still start now, across all workers: its max_in_flight, lowered by
-- throttling (`cap`), 1 for FIFO endpoints and half-open breakers, less those in flight.
local function free_slots(ek)
  local f = redis.call('HMGET', ek, 'if', 'mif', 'cap', 'fifo', 'h')
  local limit = tonumber(f[2]) or DEFAULT_MAX_IN_FLIGHT
  local cap = tonumber(f[3])
  if cap and cap < limit then limit = cap end
  if f[4] == '1' or f[5] == '1' then limit = 1 end
  return limit - (tonumber(f[1]) or 0)
end

-- Put the endpoint on the tenant's runnable list when it has ready work, a free slot and no pause
-- (`pu` a pause until then: retry wait, Retry-After, open breaker; `pz` = 1 paused by an operator
-- until resumed, webhooks/stores/endpoints.py).
local function wake_endpoint(ep, now)
  local ek = B .. 'ep:' .. ep
  local f = redis.call('HMGET', ek, 'q', 'pu', 'pz')
  if f[1] == '1' or f[3] == '1' then return end
  if f[2] and tonumber(f[2]) > now then return end
  if redis.call('LLEN', B .. 'r:' .. ep) == 0 then return end
  if free_slots(ek) <= 0 then return end
  redis.call('HSET', ek, 'q', '1')
  redis.call('RPUSH', B .. 'rr', ep)
end

-- A finished request gives its slot back.
local function release_slot(ek)
  if redis.call('HINCRBY', ek, 'if', -1) < 0 then redis.call('HSET', ek, 'if', 0) end
end

-- Endpoints a script changed, in order: each gets one wake_endpoint at the end.
local touched, touched_order = {}, {}
local function touch(ep)
  if not touched[ep] then touched[ep] = true; touched_order[#touched_order + 1] = ep end
end
local function wake_touched(now)
  for _, ep in ipairs(touched_order) do wake_endpoint(ep, now) end
end

-- A lease ends: the deliveries it still holds go back to the head of their ready lists, in order,
-- and give their slots back; the lease is removed. Returns how many went back.
local function release_lease(lid, now)
  local lk = B .. 'lease:' .. lid
  local held = redis.call('LRANGE', lk, 0, -1)
  local n = 0
  for j = #held, 1, -1 do
    local dk = B .. 'd:' .. held[j]
    if redis.call('HGET', dk, 'l') == lid then
      local ep = redis.call('HGET', dk, 'p')
      redis.call('HDEL', dk, 'l')
      redis.call('HSET', dk, 's', 'pending', 'u', now)
      redis.call('LPUSH', B .. 'r:' .. ep, held[j])
      release_slot(B .. 'ep:' .. ep)
      touch(ep)
      n = n + 1
    end
  end
  redis.call('DEL', lk)
  redis.call('ZREM', B .. 'leases', lid)
  return n
end

-- 1 when the tenant has runnable work but is not marked active: the caller must then RPUSH it
-- onto the global active list (a separate call: that list lives in another slot).
local function activation()
  if redis.call('LLEN', B .. 'rr') == 0 then return 0 end
  if redis.call('HGET', B .. 'info', 'act') == '1' then return 0 end
  redis.call('HSET', B .. 'info', 'act', '1')
  return 1
end

-- When the scheduler must next visit the tenant (a lease expiry, a due delivery, a pause end); -1: never.
local function next_wake()
  local a = redis.call('ZRANGE', B .. 'leases', 0, 0, 'WITHSCORES')
  local b = redis.call('ZRANGE', B .. 'dueq', 0, 0, 'WITHSCORES')
  local w = -1
  if a[2] then w = tonumber(a[2]) end
  if b[2] and (w < 0 or tonumber(b[2]) < w) then w = tonumber(b[2]) end
  return w
end

-- Schedule a visit of the endpoint at `at` ms (keeps the earliest).
local function due_at(ep, at)
  redis.call('ZADD', B .. 'dueq', 'LT', at, ep)
end

-- The event id of a delivery: its `e` field, or, when absent, the one its id derives from
-- (webhooks/ids.py: event_id_of_stem).
local function event_of(did, e)
  if e then return e end
  return 'evt_' .. string.sub(did, 5, 28) .. 'zz'
end

-- One more death in the endpoint's open `delivery.dead` summary (`opsdead`, operational webhooks,
-- webhooks/intake/operational.py) when they are on (window ms > 0). Returns the ms at which the
-- summary is due (the caller registers it in wh:opsdue), or -1.
local OPS_SAMPLES = 5
local function ops_dead_summary(ep, id, code, err, now, window)
  if window <= 0 then return -1 end
  local raw = redis.call('HGET', B .. 'opsdead', ep)
  local s = raw and cjson.decode(raw) or {n = 0, first = now, ids = {}}
  s.n, s.last, s.code, s.err = s.n + 1, now, code, err
  if #s.ids < OPS_SAMPLES then s.ids[#s.ids + 1] = id end
  redis.call('HSET', B .. 'opsdead', ep, cjson.encode(s))
  return s.first + window
end

-- A dead or waiting delivery back to work (requeue.lua, replay_chunk.lua): pending, no expiry, its
-- event `e` kept for `retention` ms; due at `due` (a paced replay; the next one `step` later) or,
-- with `due` 0, at the tail of endpoint `ep`'s ready list. Returns the next one's due time.
local function put_back(dk, id, ep, e, due, step, retention, now)
  redis.call('PERSIST', dk)
  redis.call('PEXPIRE', B .. 'e:' .. e, retention)
  redis.call('HSET', dk, 's', 'pending', 'u', now)
  if due > 0 then
    redis.call('ZADD', B .. 'due:' .. ep, due, id)
    due_at(ep, due)
    redis.call('HSET', dk, 'na', due)
    return due + step
  end
  redis.call('HDEL', dk, 'na')
  redis.call('RPUSH', B .. 'r:' .. ep, id)
  touch(ep)
  return due
end
