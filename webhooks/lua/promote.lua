-- Move deliveries whose time has come from the due zset to the ready list (webhooks/queue.py: promote).
-- ARGV[1] prefix, ARGV[2] now ms, ARGV[3] most to move. Returns the number moved.
local p = ARGV[1]
local ids = redis.call('ZRANGEBYSCORE', p .. 'q:due', '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
if #ids == 0 then return 0 end
redis.call('ZREM', p .. 'q:due', unpack(ids))
local n = 0
for _, id in ipairs(ids) do
  local dk = p .. 'dlv:' .. id
  local st = redis.call('HGET', dk, 'status')
  if st == 'retrying' or st == 'pending' then
    redis.call('HSET', dk, 'status', 'pending', 'updated_at', ARGV[2])
    redis.call('HDEL', dk, 'next_attempt_at')
    redis.call('RPUSH', p .. 'q:ready', id)
    n = n + 1
  end
end
return n
