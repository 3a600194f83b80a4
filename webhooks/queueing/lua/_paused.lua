-- Prepended to every tenant script (webhooks/queueing/scripts.py), before anything the script reads or
-- writes. While the tenant's hash slot moves between Redis Cluster primaries
-- (webhooks/queueing/reshard.py) its `moving` flag is set, and the script answers the PAUSED error
-- having changed nothing: callers retry, as after any Redis error. Without the flag a script
-- could run on the importing primary and find only part of the tenant's keys there.
if redis.call('EXISTS', KEYS[1] .. 'moving') == 1 then
  return redis.error_reply('PAUSED the tenant is moving between Redis Cluster primaries; retry shortly')
end
