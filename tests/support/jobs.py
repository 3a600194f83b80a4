"""Run the operators' RQ jobs (replays, tenant deletions) in the test process, as a worker would:
an RQ ``SimpleWorker`` in burst mode on the operations queue, until it is empty."""

import redis
from rq import Queue, SimpleWorker

from webhooks import keys
from webhooks.runtime.connection import RedisTarget
from workers import operations


class _BurstWorker(SimpleWorker):
    """No pubsub channel (RQ's remote commands): stopping its thread waits out a read timeout."""

    def subscribe(self) -> None:
        pass

    def unsubscribe(self) -> None:
        pass


def run_operations(redis_url: str, retention_ms: int = 7 * 86400 * 1000) -> int:
    """Run every queued operation's job to its end; returns how many jobs were waiting."""
    operations.install(RedisTarget(url=redis_url), retention_ms)
    conn = redis.Redis.from_url(redis_url)
    try:
        queue = Queue(keys.RQ_OPERATIONS_QUEUE, connection=conn)
        waiting = queue.count
        _BurstWorker([queue], connection=conn).work(burst=True)
        return waiting
    finally:
        conn.close()
