-- One send slot of an endpoint's rate limit (webhooks/queueing/queue.py: take_send_slot).
-- Fixed windows of W ms allowing N sends each, shared by every worker.
-- KEYS[1] the tenant's key base. ARGV[1] endpoint id, ARGV[2] now ms, ARGV[3] window ms W,
-- ARGV[4] sends per window N, ARGV[5] (optional) the endpoint revision the caller's copy of the
-- endpoint was read at (field `rev`, bumped by every endpoint write).
-- Returns 0 when the caller may send now, else the ms to wait; -1 (nothing taken) when the
-- endpoint's revision is no longer ARGV[5]: the caller's copy is stale and must not be sent with.
if ARGV[5] and (redis.call('HGET', B .. 'ep:' .. ARGV[1], 'rev') or '0') ~= ARGV[5] then return -1 end
local w = tonumber(ARGV[3])
local now = tonumber(ARGV[2])
local window = math.floor(now / w)
local key = B .. 'rl:' .. ARGV[1] .. ':' .. window
local n = redis.call('INCR', key)
if n == 1 then redis.call('PEXPIRE', key, w * 2) end
if n <= tonumber(ARGV[4]) then return 0 end
return (window + 1) * w - now
