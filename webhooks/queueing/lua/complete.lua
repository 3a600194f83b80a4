#!lua flags=allow-oom
-- Record one tenant's attempt outcomes and release finished leases (webhooks/queueing/queue.py: complete).
-- Allowed over maxmemory: outcomes settle work, and settled work is what gives memory back.
-- KEYS[1] the tenant's key base. ARGV[1] now ms, ARGV[2] retention ms (how long a settled delivery
-- is kept), ARGV[3] breaker threshold (consecutive failures that open it), ARGV[4] first breaker
-- pause ms, ARGV[5] longest breaker pause ms, ARGV[6] disable an endpoint failing without a
-- success for this many ms (0: never), ARGV[7] operational summary window ms (0: operational
-- webhooks off for this tenant), ARGV[8] count F of finished leases, ARGV[9 .. 8+F] their
-- ids, then one JSON record per delivery: {id, l=lease, s=new status, n=attempt_count,
--   sn=series_attempts, ep=endpoint, a=attempt line (webhooks/queueing/history.py) or nil, due=next attempt
--   ms or nil, gone=bool, code=status code or nil, ok=1 when the attempt succeeded,
--   th=1 when the answer asks to slow down (502, 504, 429 without Retry-After), pause=ms until
--   which the whole endpoint waits (a Retry-After) or nil, err=why it died (s = dead) or nil,
--   back=1 when a worker hands the delivery back unsent (it is stopping, or the endpoint changed
--   since the lease read it): it goes to the head of its ready list, in the order given, no attempt}
-- An outcome is applied only while the delivery is still under the same lease: a lease that
-- expired and was reclaimed belongs to someone else now, and its stale outcome is dropped.
-- Every applied outcome gives its endpoint slot back. A failed attempt with a due time waits in
-- the endpoint's due zset, except on a FIFO endpoint, where it goes back to the head of the
-- ready list and pauses the endpoint until then, holding the deliveries behind it.
-- The breaker: `f` consecutive failures reaching the threshold open it (pause `bo` ms, doubling
-- up to the longest); the first request after a pause is the probe (`h` = half-open: one slot);
-- a success closes it and sends everything waiting in the due zset at once, at a cap that starts
-- again from SLOW_START and grows by one per success. Throttling (th=1) halves the cap and stamps
-- `th` (when), which stays until the cap has grown back: what endpoint health calls "throttled".
-- Operational webhooks (window > 0; webhooks/intake/operational.py): an endpoint disabled here, or one
-- answering again after its breaker opened (`od` = failing since, set when it opened or was
-- disabled), appends a notification to the outbox `ops`; a delivery dying adds to its endpoint's
-- summary in `opsdead` (due window ms after its first death). Both in this script, so a worker
-- dying right after loses none.
-- Returns {applied, activate, endpoints opened, endpoints disabled (flat id, reason), next wake ms
-- or -1 (a retry, a pause: the caller registers it, so the scheduler comes back in time),
-- ms at which operational notifications are due or -1 (the caller registers it in wh:opsdue)}.
local now = tonumber(ARGV[1])
local retention = tonumber(ARGV[2])
local threshold = tonumber(ARGV[3])
local base_pause = tonumber(ARGV[4])
local max_pause = tonumber(ARGV[5])
local disable_after = tonumber(ARGV[6])
local ops_window = tonumber(ARGV[7])
local nf = tonumber(ARGV[8])
local applied, opened = 0, 0
local n_ok, n_fail, n_dead, n_back = 0, 0, 0, 0
local disabled = {}
local handed_back = {}  -- {endpoint, delivery id} of deliveries handed back unsent
local ops_at = -1
local OPS_OUTBOX_MAX = 1000
local OPS_SAMPLES = 5

local function ops_due(at)
  if ops_at < 0 or at < ops_at then ops_at = at end
end

-- A notification for the outbox (`k` its kind), numbered by the tenant's sequence.
local function ops_note(kind, ep, fields)
  if ops_window <= 0 then return end
  fields.k, fields.ep, fields.at = kind, ep, now
  fields.n = redis.call('INCR', B .. 'opsn')
  redis.call('RPUSH', B .. 'ops', cjson.encode(fields))
  redis.call('LTRIM', B .. 'ops', -OPS_OUTBOX_MAX, -1)
  ops_due(now)
end

-- One more death in the endpoint's open summary window.
local function ops_dead(ep, id, code, err)
  if ops_window <= 0 then return end
  local raw = redis.call('HGET', B .. 'opsdead', ep)
  local s = raw and cjson.decode(raw) or {n = 0, first = now, ids = {}}
  s.n, s.last, s.code, s.err = s.n + 1, now, code, err
  if #s.ids < OPS_SAMPLES then s.ids[#s.ids + 1] = id end
  redis.call('HSET', B .. 'opsdead', ep, cjson.encode(s))
  ops_due(s.first + ops_window)
end

local function disable(ek, ep, reason)
  if redis.call('HGET', ek, 'disabled') == '1' or redis.call('HEXISTS', ek, 'doc') == 0 then return end
  redis.call('HSET', ek, 'disabled', '1', 'disabled_reason', reason, 'pz', '0')  -- disabled wins over paused
  redis.call('HINCRBY', ek, 'rev', 1)  -- workers holding its deliveries hand them back unsent
  redis.call('INCR', B .. 'epver')
  disabled[#disabled + 1] = ep
  disabled[#disabled + 1] = reason
  local f = redis.call('HMGET', ek, 'od', 'fs')
  local since = tonumber(f[1]) or tonumber(f[2]) or now
  if not f[1] then redis.call('HSET', ek, 'od', since) end
  ops_note('endpoint.disabled', ep, {reason = reason, since = since})
end

-- Everything waiting in the endpoint's due zset goes to its ready list now.
local function flush_due(ep)
  local dz = B .. 'due:' .. ep
  for _, id in ipairs(redis.call('ZRANGE', dz, 0, -1)) do
    local dk = B .. 'd:' .. id
    local st = redis.call('HGET', dk, 's')
    if st == 'retrying' or st == 'pending' then
      redis.call('HSET', dk, 's', 'pending', 'u', now)
      redis.call('HDEL', dk, 'na')
      redis.call('RPUSH', B .. 'r:' .. ep, id)
    end
  end
  redis.call('DEL', dz)
end

local function limit_of(f_mif, f_cap)
  local limit = tonumber(f_mif) or DEFAULT_MAX_IN_FLIGHT
  local cap = tonumber(f_cap)
  if cap and cap < limit then return cap, limit end
  return limit, limit
end

local function succeeded(ek, ep)
  local f = redis.call('HMGET', ek, 'h', 'mif', 'cap', 'od')
  redis.call('HDEL', ek, 'f', 'fs')
  if f[4] then  -- answering again after its breaker opened, or after being disabled
    redis.call('HDEL', ek, 'od')
    ops_note('endpoint.recovered', ep, {since = tonumber(f[4])})
  end
  if f[1] == '1' then  -- the probe answered: close, send what waits, and start slow again
    redis.call('HDEL', ek, 'h', 'bo')
    flush_due(ep)
    local _, limit = limit_of(f[2], f[3])
    if limit > SLOW_START then f[3] = tostring(SLOW_START - 1) end
  end
  if f[3] then  -- throttled: one more slot per success, back to max_in_flight
    local cap, limit = limit_of(f[2], f[3])
    if cap + 1 >= limit then redis.call('HDEL', ek, 'cap', 'th') else redis.call('HSET', ek, 'cap', cap + 1) end
  end
end

local function failed(ek, ep, throttle)
  local f = redis.call('HMGET', ek, 'f', 'fs', 'h', 'bo', 'pu', 'mif', 'cap')
  local fails = (tonumber(f[1]) or 0) + 1
  redis.call('HSET', ek, 'f', fails)
  local since = tonumber(f[2])
  if not since then since = now; redis.call('HSET', ek, 'fs', now) end
  if throttle == 1 then  -- `th`: lowered by throttling (not slow start), until the cap is back
    local cap = limit_of(f[6], f[7])
    redis.call('HSET', ek, 'cap', math.max(1, math.floor(cap / 2)), 'th', now)
  end
  local paused = f[5] and tonumber(f[5]) > now
  if (fails >= threshold or f[3] == '1') and not paused then
    local pause = base_pause
    if f[3] == '1' then pause = math.min(max_pause, (tonumber(f[4]) or base_pause) * 2) end
    redis.call('HSET', ek, 'h', '1', 'bo', pause, 'pu', now + pause)
    redis.call('HSETNX', ek, 'od', since)
    due_at(ep, now + pause)
    opened = opened + 1
  end
  if disable_after > 0 and now - since >= disable_after then
    disable(ek, ep, 'failing without a success for ' .. math.floor((now - since) / 1000) .. ' s')
  end
end

for i = 9 + nf, #ARGV do
  local r = cjson.decode(ARGV[i])
  local dk = B .. 'd:' .. r.id
  if redis.call('HGET', dk, 'l') == r.l then
    applied = applied + 1
    local ek = B .. 'ep:' .. r.ep
    redis.call('HDEL', dk, 'l')
    release_slot(ek)
    touch(r.ep)
    redis.call('HSET', dk, 's', r.s, 'n', r.n, 'u', now)
    if r.sn == r.n then redis.call('HDEL', dk, 'sn') else redis.call('HSET', dk, 'sn', r.sn) end
    if r.a then
      local prev = redis.call('HGET', dk, 'a')
      redis.call('HSET', dk, 'a', prev and (prev .. '\n' .. r.a) or r.a)
      if r.ok == 1 then
        n_ok = n_ok + 1
        succeeded(ek, r.ep)
      else
        n_fail = n_fail + 1
        if not r.gone then failed(ek, r.ep, r.th) end
      end
    end
    if r.pause then
      local pu = tonumber(redis.call('HGET', ek, 'pu') or '0')
      if r.pause > pu then redis.call('HSET', ek, 'pu', r.pause) end
      due_at(r.ep, r.pause)
    end
    if r.due then
      if redis.call('HGET', ek, 'fifo') == '1' then
        redis.call('LPUSH', B .. 'r:' .. r.ep, r.id)
        local pu = tonumber(redis.call('HGET', ek, 'pu') or '0')
        if r.due > pu then redis.call('HSET', ek, 'pu', r.due) end
      else
        redis.call('ZADD', B .. 'due:' .. r.ep, r.due, r.id)
      end
      due_at(r.ep, r.due)
      redis.call('HSET', dk, 'na', r.due)
    else
      redis.call('HDEL', dk, 'na')
    end
    if r.back == 1 then handed_back[#handed_back + 1] = {r.ep, r.id} end
    if r.s == 'dead' then
      redis.call('ZADD', B .. 'dead', now, r.id)
      redis.call('HSET', dk, 'da', now)
      n_dead = n_dead + 1
      ops_dead(r.ep, r.id, r.code, r.err)
    end
    if r.s == 'succeeded' or r.s == 'dead' then redis.call('PEXPIRE', dk, retention) end
    if r.gone then disable(ek, r.ep, 'receiver answered 410 Gone') end
  end
end
-- Handed back unsent: to the head of the ready list, keeping their order (last pushed first).
for j = #handed_back, 1, -1 do
  redis.call('LPUSH', B .. 'r:' .. handed_back[j][1], handed_back[j][2])
end
-- A finished lease is released. Any delivery still under it goes back to the head of its ready
-- list: its outcome was written by an earlier call whose effect was lost (a failover with
-- replication lag, a crash of Redis with everysec), so no delivery is left under a lease that no
-- longer exists.
for i = 9, 8 + nf do n_back = n_back + release_lease(ARGV[i], now) end
wake_touched(now)
local st = B .. 'stats'
if n_back > 0 then redis.call('HINCRBY', st, 'deliveries_reclaimed', n_back) end
if #handed_back > 0 then redis.call('HINCRBY', st, 'deliveries_handed_back', #handed_back) end
if n_ok > 0 then redis.call('HINCRBY', st, 'attempts_succeeded', n_ok) end
if n_fail > 0 then redis.call('HINCRBY', st, 'attempts_failed', n_fail) end
if n_dead > 0 then redis.call('HINCRBY', st, 'deliveries_dead', n_dead) end
return {applied, activation(), opened, disabled, next_wake(), ops_at}
