-- Authenticate a tenant API key and take tokens from the tenant's API bucket, in one round trip
-- (webhooks/auth.py). ARGV[1] prefix, ARGV[2] SHA-256 of the key, ARGV[3] now ms,
-- ARGV[4] tokens per second (0: no limit), ARGV[5] burst, ARGV[6] tokens wanted (at least 1).
-- Returns {tenant id or '' when the key is unknown or revoked, ms to wait (0: granted), tokens granted}.
-- Fewer tokens than wanted are granted when fewer are left; none only when not even one is.
local p = ARGV[1]
local found = redis.call('GET', p .. 'apikey:' .. ARGV[2])
if not found then return {'', 0, 0} end
local sep = string.find(found, ':', 1, true)
local tenant = string.sub(found, 1, sep - 1)
local key_id = string.sub(found, sep + 1)
if redis.call('HEXISTS', p .. 't:' .. tenant .. ':keys', key_id) == 0 then return {'', 0, 0} end
local rate = tonumber(ARGV[4])
local want = tonumber(ARGV[6])
if rate <= 0 then return {tenant, 0, want} end
local now = tonumber(ARGV[3])
local burst = tonumber(ARGV[5])
local bucket = p .. 't:' .. tenant .. ':bucket'
local f = redis.call('HMGET', bucket, 'tokens', 'at')
local tokens = tonumber(f[1]) or burst
local at = tonumber(f[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate / 1000)
local granted = math.min(want, math.floor(tokens))
local wait = 0
if granted >= 1 then tokens = tokens - granted else wait = math.ceil((1 - tokens) * 1000 / rate) end
redis.call('HSET', bucket, 'tokens', tostring(tokens), 'at', now)
redis.call('PEXPIRE', bucket, math.ceil(burst * 1000 / rate) + 1000)
return {tenant, wait, granted}
