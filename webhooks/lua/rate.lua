-- One send slot of an endpoint's rate limit (webhooks/queue.py: take_send_slot).
-- Fixed windows of W ms allowing N sends each, shared by every worker.
-- KEYS[1] the tenant's key base. ARGV[1] endpoint id, ARGV[2] now ms, ARGV[3] window ms W,
-- ARGV[4] sends per window N. Returns 0 when the caller may send now, else the ms to wait.
local w = tonumber(ARGV[3])
local now = tonumber(ARGV[2])
local window = math.floor(now / w)
local key = B .. 'rl:' .. ARGV[1] .. ':' .. window
local n = redis.call('INCR', key)
if n == 1 then redis.call('PEXPIRE', key, w * 2) end
if n <= tonumber(ARGV[4]) then return 0 end
return (window + 1) * w - now
