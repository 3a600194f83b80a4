"""A fake migration of format 1 to 2, registered only by the tests (webhooks/queueing/dataformat.py has none).

It walks the tenant list (``wh:tenants``, lex order) in chunks of :data:`CHUNK`, as a real one
would (a cursor that works on a Redis Cluster too, unlike SCAN), and rewrites each tenant's key
``wh:{t:<id>}:fake`` from ``v=old`` to ``v=new``, counting each rewrite in the key's field ``n``
(in one script, so a kill cannot split the two). A rewritten key is skipped: a chunk run again
after a crash changes nothing.

``python -m tests.upgrade.fake_migration <redis url> <s per chunk> <lock TTL ms>`` runs
:func:`webhooks.queueing.dataformat.ensure` with it (format 2 current), as a starting process would.
"""

import sys
import time

import redis

from webhooks import keys
from webhooks.queueing import dataformat

CHUNK = 10
REWRITE = """
if redis.call('HGET', KEYS[1], 'v') == 'old' then
  redis.call('HSET', KEYS[1], 'v', 'new')
  redis.call('HINCRBY', KEYS[1], 'n', 1)
  return 1
end
return 0
"""


def fake_key(tenant_id: str) -> str:
    return keys.tenant_base(tenant_id) + "fake"


def seed(r: "redis.Redis", n: int) -> list[str]:
    ids = [f"t{i:04d}" for i in range(n)]
    for tenant_id in ids:
        r.zadd(keys.TENANTS, {tenant_id: 0})
        r.hset(fake_key(tenant_id), mapping={"v": "old", "n": 0})
    return ids


def migration(delay_s: float = 0.0, cursors: list[str] | None = None) -> dataformat.Migration:
    def step(r: "redis.Redis", cursor: str) -> str | None:
        if cursors is not None:
            cursors.append(cursor)
        start = f"({cursor}" if cursor else "-"
        ids = [str(t) for t in r.zrange(keys.TENANTS, start, "+", bylex=True, offset=0, num=CHUNK)]
        rewrite = r.register_script(REWRITE)
        for tenant_id in ids:
            rewrite(keys=[fake_key(tenant_id)])
        time.sleep(delay_s)
        return ids[-1] if len(ids) == CHUNK else None

    return dataformat.Migration(1, "fake: v=old becomes v=new", step)


def main() -> None:
    url, delay_s, ttl_ms = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    r = redis.Redis.from_url(url, decode_responses=True)
    print(dataformat.ensure(r, current=2, migrations={1: migration(delay_s)}, lock_ttl_ms=ttl_ms), flush=True)


if __name__ == "__main__":
    main()
