"""A stopping worker leaves its pub/sub channel at once (workers/process.py: DeliveryWorker.unsubscribe).

RQ's pub/sub thread, once it has read the UNSUBSCRIBE reply, waits up to 60 s for a new
subscription; redis-py 8.2's ``stop()`` joins it without a bound, so RQ's own unsubscribe could
hold a stopping worker that long. The race is set up here on purpose: the thread is left waiting.
"""

import time

import redis
from rq import Queue

from tests.support.poll import poll
from webhooks import keys
from workers.process import UNSUBSCRIBE_WAIT_S, DeliveryWorker


def test_unsubscribe_returns_within_its_bound_while_the_pubsub_thread_waits_for_a_subscription(
    redis_url: str,
) -> None:
    conn = redis.Redis.from_url(redis_url)
    worker = DeliveryWorker([Queue(keys.RQ_QUEUE, connection=conn)], connection=conn)
    worker.subscribe()  # type: ignore[no-untyped-call]
    poll(lambda: worker.pubsub.subscribed, what="the worker subscribed to its channel")
    worker.pubsub.unsubscribe()
    poll(lambda: not worker.pubsub.subscribed, what="the thread read the UNSUBSCRIBE reply")
    time.sleep(0.2)  # it now waits (up to 60 s) for a subscription
    assert worker.pubsub_thread.is_alive()
    started = time.monotonic()
    worker.unsubscribe()
    took_s = time.monotonic() - started
    assert took_s < UNSUBSCRIBE_WAIT_S + 1.0, f"unsubscribing took {took_s:.1f} s"
    conn.close()
