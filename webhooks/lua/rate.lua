-- One send slot of an endpoint's rate limit (webhooks/queue.py: take_send_slot).
-- Fixed windows of W ms allowing N sends each, shared by every worker.
-- ARGV[1] key prefix, ARGV[2] endpoint id, ARGV[3] now ms, ARGV[4] window ms W, ARGV[5] sends per window N.
-- Returns 0 when the caller may send now, else the ms to wait until the next window.
local w = tonumber(ARGV[4])
local now = tonumber(ARGV[3])
local window = math.floor(now / w)
local key = ARGV[1] .. 'rl:' .. ARGV[2] .. ':' .. window
local n = redis.call('INCR', key)
if n == 1 then redis.call('PEXPIRE', key, w * 2) end
if n <= tonumber(ARGV[5]) then return 0 end
return (window + 1) * w - now
