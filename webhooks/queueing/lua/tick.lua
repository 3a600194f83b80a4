#!lua flags=allow-oom
-- The scheduler's visit of one tenant (webhooks/queueing/upkeep.py: tick). Allowed over maxmemory.
-- KEYS[1] the tenant's key base. ARGV[1] now ms, ARGV[2] most leases and most deliveries per step,
-- ARGV[3] span ms: the retry schedule's span, the longest a held delivery waits (0: without end),
-- ARGV[4] retention ms (how long a dead letter is kept), ARGV[5] operational summary window ms
-- (0: operational webhooks off for this tenant).
-- 1. Expired leases (a dead or stalled worker's): the deliveries they still hold go back to the
--    head of their endpoint's ready list, in order, and give their slots back.
-- 2. Endpoints whose time has come (dueq): a pause that is over is lifted (a breaker stays
--    half-open until its probe answers); deliveries due by now move from the due zset to the
--    tail of the ready list.
-- 3. Held deliveries end (span > 0): on an endpoint that holds its deliveries back (breaker open or
--    half-open, `h`; throttled, `th`; never a paused one, see `holding`), a delivery whose retry
--    series began (its first attempt; never attempted: its creation; replayed: its requeue) a span
--    ago or more ends `dead` with reason EXPIRED, as if its remaining attempts had failed (dead
--    letter, `delivery.dead` summary). Checked where they wait in order of that start: the head
--    of the ready list (the endpoint is due again at the head's end), and each due one. Behind an
--    open breaker a retry whose time comes joins the ready list only when that is empty (a probe
--    needs one); otherwise it waits in the due zset until its end, or until the probe's success
--    sends the whole zset (complete.lua: flush_due).
-- 4. Endpoints that can run go on the runnable list.
-- Returns {leases reclaimed, deliveries reclaimed, deliveries promoted, activate, next wake ms or
-- -1, act flag, deliveries ended, ms at which operational notifications are due or -1}: the caller
-- puts the tenant on the active list when activate is 1, and sets its wake times (other slots).
local now = tonumber(ARGV[1])
local most = tonumber(ARGV[2])
local span = tonumber(ARGV[3]) or 0
local retention = tonumber(ARGV[4]) or 0
local ops_window = tonumber(ARGV[5]) or 0
local n_leases, n_back, n_promoted, n_expired = 0, 0, 0, 0
local ops_at = -1
local EXPIRED = 'held behind an open circuit breaker or a throttle for the whole retry schedule ('
  .. math.floor(span / 1000) .. ' s)'
local ALPHABET = '0123456789abcdefghjkmnpqrstvwxyz'  -- webhooks/ids.py (Crockford base32)

for _, lid in ipairs(redis.call('ZRANGEBYSCORE', B .. 'leases', '-inf', now, 'LIMIT', 0, most)) do
  n_back = n_back + release_lease(lid, now)
  n_leases = n_leases + 1
end

-- Does the endpoint hold its deliveries back? Its breaker is open or half-open, or it is throttled;
-- but a paused endpoint (`pz` = 1 in its hash, written with "paused": true in its document by
-- PATCH /v1/endpoints/{id} {"paused": true}) holds them without end, so it never counts here.
local function holding(ek)
  local f = redis.call('HMGET', ek, 'h', 'th', 'pz')
  if f[1] ~= '1' and not f[2] then return false end
  if f[3] == '1' then return false end
  return f[1] == '1' and 'breaker' or 'throttle'
end

-- Creation ms of an id (webhooks/ids.py: 10 base32 characters of ms after the prefix).
local function created_ms(id)
  local p = string.find(id, '_', 1, true) or 0
  local v = 0
  for i = p + 1, p + 10 do
    v = v * 32 + (string.find(ALPHABET, string.sub(id, i, i), 1, true) or 1) - 1
  end
  return v
end

-- When a delivery's retry series began; f = HMGET of 's', 'a', 'n', 'sn', 'u', 'na'.
local function series_start(id, f)
  local n = tonumber(f[3]) or 0
  local sn = tonumber(f[4]) or n
  if sn > 0 then  -- its first attempt in the series: attempt line n - sn + 1 of `a`
    local k, i = n - sn + 1, 0
    for line in string.gmatch(f[2] or '', '[^\n]+') do
      i = i + 1
      if i == k then return tonumber(string.match(line, '^%[(%d+)')) or created_ms(id) end
    end
  end
  if n == 0 then return created_ms(id) end
  return tonumber(f[5]) or created_ms(id)  -- replayed, not attempted since: when it was requeued
end

local FIELDS = {'s', 'a', 'n', 'sn', 'u', 'na'}

local function expire(ep, id, dk)
  redis.call('HSET', dk, 's', 'dead', 'da', now, 'u', now, 'dr', EXPIRED)
  redis.call('HDEL', dk, 'na')
  redis.call('ZADD', B .. 'dead', now, id)
  redis.call('PEXPIRE', dk, retention)
  n_expired = n_expired + 1
  local at = ops_dead_summary(ep, id, nil, EXPIRED, now, ops_window)
  if at >= 0 and (ops_at < 0 or at < ops_at) then ops_at = at end
end

-- The held deliveries at the head of the ready list whose span is over end; the endpoint is due
-- again when the next one's is.
local function expire_ready(ep)
  local rk = B .. 'r:' .. ep
  for _ = 1, most do
    local id = redis.call('LINDEX', rk, 0)
    if not id then return end
    local dk = B .. 'd:' .. id
    local f = redis.call('HMGET', dk, unpack(FIELDS))
    if f[1] == 'pending' or f[1] == 'retrying' then
      if f[1] == 'retrying' and tonumber(f[6] or '0') > now then return end  -- a FIFO retry waiting for its time
      local ends = series_start(id, f) + span
      if ends > now then due_at(ep, ends); return end
      expire(ep, id, dk)
    end
    redis.call('LPOP', rk)  -- ended now, or a stale entry (lease.lua skips those too)
  end
  due_at(ep, now)  -- more than `most`: again at once
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
  local hold = span > 0 and holding(ek)
  if hold then expire_ready(ep) end
  local rk = B .. 'r:' .. ep
  local park = hold == 'breaker' and redis.call('LLEN', rk) > 0
  local dz = B .. 'due:' .. ep
  local ids = redis.call('ZRANGEBYSCORE', dz, '-inf', now, 'LIMIT', 0, most)
  if #ids > 0 then
    redis.call('ZREM', dz, unpack(ids))
    for _, id in ipairs(ids) do
      local dk = B .. 'd:' .. id
      local f = redis.call('HMGET', dk, unpack(FIELDS))
      if f[1] == 'retrying' or f[1] == 'pending' then
        local ends = hold and series_start(id, f) + span or 0
        if hold and ends <= now then
          expire(ep, id, dk)
        elseif park then  -- behind an open breaker: waits for the probe's success, or its end
          redis.call('ZADD', dz, ends, id)
        else
          redis.call('HSET', dk, 's', 'pending', 'u', now)
          redis.call('HDEL', dk, 'na')
          redis.call('RPUSH', rk, id)
          n_promoted = n_promoted + 1
        end
      end
    end
  end
  local first = redis.call('ZRANGE', dz, 0, 0, 'WITHSCORES')
  if first[2] then due_at(ep, tonumber(first[2])) end
  touch(ep)
end

wake_touched(now)
if n_back > 0 then redis.call('HINCRBY', B .. 'stats', 'deliveries_reclaimed', n_back) end
if n_expired > 0 then redis.call('HINCRBY', B .. 'stats', 'deliveries_dead', n_expired) end
return {n_leases, n_back, n_promoted, activation(), next_wake(), redis.call('HGET', B .. 'info', 'act') or '0',
  n_expired, ops_at}
