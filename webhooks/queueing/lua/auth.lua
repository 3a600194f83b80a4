-- Check a tenant API key and take tokens from the tenant's API bucket in one round trip
-- (webhooks/stores/auth.py, after it found the key's tenant by its hash).
-- KEYS[1] the tenant's key base. ARGV[1] key id, ARGV[2] now ms, ARGV[3] tokens per second
-- (0: no limit), ARGV[4] burst, ARGV[5] tokens wanted (at least 1).
-- Returns {1 or 0 (unknown or revoked key), ms to wait (0: granted), tokens granted}.
-- Fewer tokens than wanted are granted when fewer are left; none only when not even one is.
if redis.call('HEXISTS', B .. 'keys', ARGV[1]) == 0 then return {0, 0, 0} end
local rate = tonumber(ARGV[3])
local want = tonumber(ARGV[5])
if rate <= 0 then return {1, 0, want} end
local now = tonumber(ARGV[2])
local burst = tonumber(ARGV[4])
local bucket = B .. 'bucket'
local f = redis.call('HMGET', bucket, 'tokens', 'at')
local tokens = tonumber(f[1]) or burst
local at = tonumber(f[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate / 1000)
local granted = math.min(want, math.floor(tokens))
local wait = 0
if granted >= 1 then tokens = tokens - granted else wait = math.ceil((1 - tokens) * 1000 / rate) end
redis.call('HSET', bucket, 'tokens', tostring(tokens), 'at', now)
redis.call('PEXPIRE', bucket, math.ceil(burst * 1000 / rate) + 1000)
return {1, wait, granted}
