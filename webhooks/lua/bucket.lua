-- A token bucket per tenant for the API (webhooks/ratelimit.py).
-- ARGV[1] key, ARGV[2] now ms, ARGV[3] tokens per second, ARGV[4] burst (bucket size), ARGV[5] cost.
-- Returns 0 when the request may go ahead (tokens taken), else the ms until enough tokens exist.
local key = ARGV[1]
local now = tonumber(ARGV[2])
local rate = tonumber(ARGV[3])
local burst = tonumber(ARGV[4])
local cost = tonumber(ARGV[5])
local f = redis.call('HMGET', key, 'tokens', 'at')
local tokens = tonumber(f[1]) or burst
local at = tonumber(f[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate / 1000)
local wait = 0
if tokens >= cost then
  tokens = tokens - cost
else
  wait = math.ceil((cost - tokens) * 1000 / rate)
end
redis.call('HSET', key, 'tokens', tostring(tokens), 'at', now)
redis.call('PEXPIRE', key, math.ceil(burst * 1000 / rate) + 1000)
return wait
