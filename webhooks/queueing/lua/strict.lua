-- Turn a tenant's strict event-type mode on or off (webhooks/stores/catalogue.py: set_strict), in
-- one step with the endpoint-version bump that makes ingest read the catalogue again.
-- KEYS[1] the tenant's key base. ARGV[1] '1' (strict) or '0'.
-- Returns 1, or 0 when the tenant's hash does not exist (it is never re-created here).
if redis.call('EXISTS', B .. 'info') == 0 then return 0 end
redis.call('HSET', B .. 'info', 'strict_event_types', ARGV[1])
redis.call('INCR', B .. 'epver')
return 1
