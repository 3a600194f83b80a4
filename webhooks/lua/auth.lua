-- Authenticate a tenant API key and take a token from the tenant's API bucket, in one round trip
-- (webhooks/auth.py). ARGV[1] prefix, ARGV[2] SHA-256 of the key, ARGV[3] now ms,
-- ARGV[4] tokens per second (0: no limit), ARGV[5] burst.
-- Returns {tenant id or '' when the key is unknown or revoked, ms to wait (0: go ahead)}.
local p = ARGV[1]
local found = redis.call('GET', p .. 'apikey:' .. ARGV[2])
if not found then return {'', 0} end
local sep = string.find(found, ':', 1, true)
local tenant = string.sub(found, 1, sep - 1)
local key_id = string.sub(found, sep + 1)
if redis.call('HEXISTS', p .. 't:' .. tenant .. ':keys', key_id) == 0 then return {'', 0} end
local rate = tonumber(ARGV[4])
if rate <= 0 then return {tenant, 0} end
local now = tonumber(ARGV[3])
local burst = tonumber(ARGV[5])
local bucket = p .. 't:' .. tenant .. ':bucket'
local f = redis.call('HMGET', bucket, 'tokens', 'at')
local tokens = tonumber(f[1]) or burst
local at = tonumber(f[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate / 1000)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = math.ceil((1 - tokens) * 1000 / rate) end
redis.call('HSET', bucket, 'tokens', tostring(tokens), 'at', now)
redis.call('PEXPIRE', bucket, math.ceil(burst * 1000 / rate) + 1000)
return {tenant, wait}
