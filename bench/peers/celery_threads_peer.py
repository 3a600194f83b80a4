"""Tuned peer: webhooks the way a Python team writes them with Celery when the work is HTTP I/O.

Redis broker, one task per delivery, ``task_acks_late=True`` (a message is acknowledged after the task
ran, so a worker that dies does not lose it), ``task_ignore_result=True``, ``autoretry_for`` transport
errors and non-2xx answers with ``retry_backoff=True`` (1, 2, 4, ... s, jittered) up to 5 retries.
Each worker process runs the thread pool (``--pool threads --concurrency 64``) and shares one pooled
``httpx.Client`` (thread-safe, 64 keep-alive connections) among its threads.

Worker x N: ``celery -A bench.peers.celery_threads_peer worker --pool threads --concurrency 64
--without-gossip --without-mingle --without-heartbeat`` (the usual advice for a Redis broker: no
worker-to-worker chatter), with ``BENCH_REDIS_URL`` and ``BENCH_REQUEST_TIMEOUT_S``.

Producer: ``enqueue_many`` sends the same message as ``send_webhook.delay`` for many deliveries through
one pooled producer connection.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import httpx
from celery import Celery

from bench.common import secret_bytes, signed_headers

BROKER_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
TIMEOUT_S = float(os.environ.get("BENCH_REQUEST_TIMEOUT_S", "15"))
THREADS = 64

TASK_NAME = "bench.peers.celery_threads_peer.send_webhook"


class DeliveryFailed(Exception):
    """The receiver answered something other than 2xx."""


def make_app(broker_url: str) -> Celery:
    app = Celery("celery_threads_peer", broker=broker_url)
    app.conf.update(
        task_acks_late=True,
        task_ignore_result=True,
        worker_prefetch_multiplier=4,
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        worker_disable_rate_limits=True,
    )
    return app


app = make_app(BROKER_URL)

client = httpx.Client(
    timeout=TIMEOUT_S, limits=httpx.Limits(max_connections=THREADS, max_keepalive_connections=THREADS)
)


@app.task(  # type: ignore[untyped-decorator]
    name=TASK_NAME,
    autoretry_for=(httpx.HTTPError, DeliveryFailed),
    retry_backoff=True,
    retry_jitter=True,
    max_retries=5,
)
def send_webhook(url: str, secret: str, event_id: str, body: str) -> int:
    data = body.encode()
    resp = client.post(url, content=data, headers=signed_headers(secret_bytes(secret), event_id, data))
    if not resp.is_success:
        raise DeliveryFailed(f"{url} answered {resp.status_code}")
    return resp.status_code


def enqueue_many(producer_app: Celery, deliveries: Iterable[tuple[str, str, str, str]]) -> int:
    """``send_task`` per ``(url, secret, event_id, body)``, all through one acquired producer."""
    n = 0
    with producer_app.producer_or_acquire() as producer:
        for args in deliveries:
            producer_app.send_task(TASK_NAME, args=args, producer=producer)
            n += 1
    return n
