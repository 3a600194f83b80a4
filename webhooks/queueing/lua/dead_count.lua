-- Count a tenant's dead letters a filter selects, one slice of its dead-letter zset at a time
-- (webhooks/stores/deadfilter.py: count_dead; read only, so a dry run answers fast).
-- KEYS[1] the tenant's key base. ARGV[1] lowest death ms ('-inf'), ARGV[2] highest ('+inf'),
-- ARGV[3] offset in that window, ARGV[4] slice length, ARGV[5] endpoint id ('' any), ARGV[6] event
-- type ('' any).
-- Returns {matching in the slice, dead letters read (fewer than ARGV[4]: the window is through)}.
local ids = redis.call('ZRANGE', B .. 'dead', ARGV[1], ARGV[2], 'BYSCORE', 'LIMIT', tonumber(ARGV[3]), tonumber(ARGV[4]))
local ep, ty = ARGV[5], ARGV[6]
local n = 0
for _, id in ipairs(ids) do
  local f = redis.call('HMGET', B .. 'd:' .. id, 's', 'p', 'y')
  if f[1] == 'dead' and (ep == '' or f[2] == ep) and (ty == '' or f[3] == ty) then n = n + 1 end
end
return {n, #ids}
