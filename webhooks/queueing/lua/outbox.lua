#!lua flags=allow-oom
-- One tenant's operational notifications (webhooks/intake/operational.py). Allowed over maxmemory: it
-- only moves or removes what complete.lua recorded.
-- KEYS[1] the tenant's key base. ARGV[1] the mode:
-- 'take' ARGV[2] now ms, ARGV[3] summary window ms, ARGV[4] most: every endpoint summary in
--   `opsdead` whose window is over (first death + window <= now) is closed into the outbox `ops`
--   as a `delivery.dead` notification; returns {the first `most` outbox entries (JSON, oldest
--   first), ms at which the tenant is next due or -1}. Nothing leaves the outbox here: the caller
--   turns the entries into events (idempotent: their ids derive from the tenant and `n`), then acks.
-- 'ack' ARGV[2 ..] the numbers `n` of entries that became events: removes them from the outbox's
--   head (what another caller already removed is skipped). Returns how many it removed.
-- 'share' ARGV[2] now ms, ARGV[3] the tenant's limit in bytes, ARGV[4] the warning fraction: when
--   the tenant's stored bytes (`sb` in `B info`, webhooks/queueing/shares.py) reach the warning
--   fraction of its limit, or all of it, for the first time since they were last below the warning
--   fraction less 0.1 (`sl` in `B info`: 0, 80 or 100, the level told), appends a `tenant.storage`
--   notification. Returns 1 when it did (the caller marks the tenant due in wh:opsdue), else 0.
local mode = ARGV[1]
local outbox = B .. 'ops'

if mode == 'share' then
  local now, limit, warn = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
  local f = redis.call('HMGET', B .. 'info', 'sb', 'sl', 'id')
  if not f[3] or limit <= 0 then return 0 end
  local used, told = tonumber(f[1]) or 0, tonumber(f[2]) or 0
  local lvl = 0
  if used >= limit then lvl = 100 elseif used >= warn * limit then lvl = 80 end
  if lvl > told then
    local note = {k = 'tenant.storage', ep = '', at = now, used = used, limit = limit, level = lvl}
    note.n = redis.call('INCR', B .. 'opsn')
    redis.call('RPUSH', outbox, cjson.encode(note))
    redis.call('HSET', B .. 'info', 'sl', lvl)
    return 1
  end
  if told > 0 and used < (warn - 0.1) * limit then redis.call('HSET', B .. 'info', 'sl', 0) end
  return 0
end

if mode == 'ack' then
  local done = {}
  for i = 2, #ARGV do done[ARGV[i]] = true end
  local removed = 0
  while true do
    local head = redis.call('LINDEX', outbox, 0)
    if not head or not done[tostring(cjson.decode(head).n)] then break end
    redis.call('LPOP', outbox)
    removed = removed + 1
  end
  return removed
end

local now, window, most = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local summaries = B .. 'opsdead'
local next_due = -1
local flat = redis.call('HGETALL', summaries)
for i = 1, #flat, 2 do
  local ep, s = flat[i], cjson.decode(flat[i + 1])
  if s.first + window <= now then
    local note = {k = 'delivery.dead', ep = ep, at = now, count = s.n, first = s.first, last = s.last,
                  ids = s.ids, code = s.code, err = s.err, window = window}
    note.n = redis.call('INCR', B .. 'opsn')
    redis.call('RPUSH', outbox, cjson.encode(note))
    redis.call('HDEL', summaries, ep)
  elseif next_due < 0 or s.first + window < next_due then
    next_due = s.first + window
  end
end
local entries = redis.call('LRANGE', outbox, 0, most - 1)
if redis.call('LLEN', outbox) > most then next_due = now end
return {entries, next_due}
