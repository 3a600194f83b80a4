#!lua flags=allow-oom
-- Give memory back: drop one tenant's settled history, oldest first (webhooks/queueing/queue.py: trim).
-- Allowed over maxmemory (it only deletes).
-- KEYS[1] the tenant's key base. ARGV[1] most events to look at, ARGV[2] 1 when dead letters may
-- go too, ARGV[3] retention cutoff ms (index entries older than it belong to expired records),
-- ARGV[4] now ms, ARGV[5] fresh ms: the scan stops at the first event still at work that is
-- younger than this (everything after it is younger still), and steps over older ones (a long
-- retry series).
-- An event goes, with its deliveries, only when every delivery is settled: succeeded (or expired),
-- or dead when ARGV[2] allows. Pending, delivering and retrying work is never touched. A cursor
-- (`tc` score, `tk` entries kept at that score) in the tenant's info hash carries the scan on
-- where it stopped, so events still at work are looked at once per pass, not at every call; a
-- pass that reaches the newest event starts the next one from the oldest again.
-- What goes leaves the tenant's stored bytes (`sb` in `B info`): an event dropped here
-- by its record, deliveries and attempts (as ingest.lua and complete.lua counted them); one whose
-- record already expired, or an index entry past the retention cutoff, by the tenant's average.
-- Returns {events dropped, events looked at, 1 when the scan stopped (at fresh work or the end)}.
local most = tonumber(ARGV[1])
local allow_dead = ARGV[2] == '1'
local cutoff = tonumber(ARGV[3])
local fresh_from = tonumber(ARGV[4]) - tonumber(ARGV[5])
local stopped = false
local ALPHA = '0123456789abcdefghjkmnpqrstvwxyz'
local info = B .. 'info'
local se = redis.call('ZCARD', B .. 'ev')  -- the tenant's stored events, before this call
local c = redis.call('HMGET', info, 'tc', 'tk')
local from, kept = tonumber(c[1]) or 0, tonumber(c[2]) or 0
if from < cutoff then from, kept = cutoff, 0 end
local rows = redis.call('ZRANGEBYSCORE', B .. 'ev', from, '+inf', 'WITHSCORES', 'LIMIT', kept, most)
local dropped = 0
local function member(stem, i)
  local width = 30 - #stem
  local s = ''
  for _ = 1, width do
    local r = i % 32
    s = string.sub(ALPHA, r + 1, r + 1) .. s
    i = math.floor(i / 32)
  end
  return stem .. s
end
local looked = 0
local freed, gone_unknown = 0, 0  -- bytes known to go; events gone whose cost is not known
for j = 1, #rows, 2 do
  local eid, score = rows[j], tonumber(rows[j + 1])
  looked = looked + 1
  if score ~= from then from, kept = score, 0 end
  local ek = B .. 'e:' .. eid
  local record = redis.call('GET', ek)
  local go, dead = true, {}
  local dks = {}
  if record then
    local header = cjson.decode(string.sub(record, 1, string.find(record, '\n', 1, true) - 1))
    local stem = header[3]
    if stem == '' then stem = 'dlv_' .. string.sub(eid, 5, 28) end
    for i = 0, header[4] - 1 do
      local did = member(stem, i)
      local st = redis.call('HGET', B .. 'd:' .. did, 's')
      if st == 'dead' and allow_dead then
        dead[#dead + 1] = did
      elseif st and st ~= 'succeeded' then
        go = false
        break
      end
      dks[#dks + 1] = B .. 'd:' .. did
    end
  end
  if go and record then
    freed = freed + #record + EVENT_BYTES
    for _, dk in ipairs(dks) do
      local a = redis.call('HSTRLEN', dk, 'a')
      freed = freed + DELIVERY_BYTES + (a > 0 and a + 1 or 0)
    end
  elseif go then
    gone_unknown = gone_unknown + 1
  end
  if go then
    redis.call('DEL', ek)
    for _, dk in ipairs(dks) do redis.call('DEL', dk) end
    for _, did in ipairs(dead) do redis.call('ZREM', B .. 'dead', did) end
    redis.call('ZREM', B .. 'ev', eid)
    dropped = dropped + 1
  elseif score >= fresh_from then
    stopped = true  -- fresh work: the rest of the index is fresher still
    break
  else
    kept = kept + 1
  end
end
local at_end = not stopped and #rows / 2 < most
if at_end then from, kept = 0, 0 end  -- the next pass starts again from the oldest
redis.call('HSET', info, 'tc', from, 'tk', kept)
local expired = redis.call('ZREMRANGEBYSCORE', B .. 'ev', '-inf', '(' .. cutoff)
redis.call('ZREMRANGEBYSCORE', B .. 'dead', '-inf', '(' .. cutoff)
local sf = redis.call('HGET', info, 'sb')
if sf and dropped + expired > 0 then
  local sb = tonumber(sf)
  local known = dropped - gone_unknown  -- events whose cost was counted above
  gone_unknown = gone_unknown + expired
  if gone_unknown > 0 and se > known then  -- the others at the average of what is left
    freed = freed + math.floor(gone_unknown * math.max(0, sb - freed) / (se - known))
  end
  redis.call('HSET', info, 'sb', math.max(0, sb - freed))
end
if redis.call('HLEN', info) == 2 and redis.call('HEXISTS', info, 'id') == 0 then
  redis.call('DEL', info)  -- a deleted tenant (only the cursor written above): leave no husk behind
end
return {dropped, looked, (stopped or at_end) and 1 or 0}
