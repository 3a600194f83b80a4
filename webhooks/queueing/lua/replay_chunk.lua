-- One chunk of a replay's job in one tenant: requeue the chunk's dead deliveries and move the job's
-- cursor, together (webhooks/queueing/queue.py: replay_chunk; webhooks/stores/operations.py).
-- A chunk applied twice (its job died after this script, before it knew) is refused by the cursor
-- check, so no dead letter is requeued twice by one replay and none is skipped.
-- KEYS[1] the tenant's key base. ARGV[1] now ms, ARGV[2] replay id, ARGV[3] the cursor this chunk
-- starts at ('' at the start), ARGV[4] the cursor after it, ARGV[5] 1 when it is the tenant's last
-- chunk, ARGV[6] spacing ms between deliveries (0: ready now, else paced from the stored `due`, or
-- from ARGV[1] at the first), ARGV[7] retention ms, ARGV[8] the replay's created ms, ARGV[9] TTL ms
-- of the replay's keys, ARGV[10..] delivery ids (only those still dead are requeued).
-- Progress lives in B rpp:<replay> (c cursor, fin, due, n requeued, x 1 once cancelled); what was requeued is appended
-- to B rp:<replay> (the replay's members) and the replay is indexed in B replays.
-- Returns {requeued in this call (-1: the cursor had moved on, -2: the replay was cancelled; either
-- way nothing done), activate, next wake ms or -1}.
local now = tonumber(ARGV[1])
local rid = ARGV[2]
local pk = B .. 'rpp:' .. rid
local mk = B .. 'rp:' .. rid
local prog = redis.call('HMGET', pk, 'c', 'fin', 'due', 'x')
if prog[4] == '1' then return {-2, 0, -1} end
if prog[2] == '1' or (prog[1] or '') ~= ARGV[3] then return {-1, 0, -1} end
local step = tonumber(ARGV[6])
local due = 0
if step > 0 then due = tonumber(prog[3] or now) end
local retention = tonumber(ARGV[7])
local ttl = tonumber(ARGV[9])
local n = 0
for i = 10, #ARGV do
  local id = ARGV[i]
  local dk = B .. 'd:' .. id
  local f = redis.call('HMGET', dk, 's', 'e', 'p')
  if f[1] == 'dead' then
    local e = event_of(id, f[2])
    redis.call('ZREM', B .. 'due:' .. f[3], id)
    redis.call('ZREM', B .. 'dead', id)
    redis.call('HDEL', dk, 'da', 'dr')
    redis.call('HSET', dk, 'sn', 0)
    due = put_back(dk, id, f[3], e, due, step, retention, now)
    redis.call('RPUSH', mk, id)
    n = n + 1
  end
end
redis.call('HSET', pk, 'c', ARGV[4], 'due', due)
redis.call('HINCRBY', pk, 'n', n)
if ARGV[5] == '1' then redis.call('HSET', pk, 'fin', '1') end
redis.call('PEXPIRE', pk, ttl)
if n > 0 then
  redis.call('PEXPIRE', mk, ttl)
  redis.call('ZADD', B .. 'replays', tonumber(ARGV[8]), rid)
end
wake_touched(now)
return {n, activation(), next_wake()}
