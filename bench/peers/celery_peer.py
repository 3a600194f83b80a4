"""Peer 2: webhooks the way a Python team writes them with Celery and no platform.

Redis broker, ``task_acks_late=True``, ``worker_prefetch_multiplier=1``, one task per delivery with
``autoretry_for=(Exception,)`` and ``retry_backoff=True``, sync ``httpx.Client``, prefork pool.
Worker: ``celery -A bench.peers.celery_peer worker --pool prefork --concurrency N``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time

import httpx
from celery import Celery

BROKER_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
TIMEOUT_S = float(os.environ.get("BENCH_REQUEST_TIMEOUT_S", "15"))

TASK_NAME = "bench.peers.celery_peer.send_webhook"


def make_app(broker_url: str) -> Celery:
    app = Celery("celery_peer", broker=broker_url)
    app.conf.update(
        task_acks_late=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
    )
    return app


app = make_app(BROKER_URL)

client = httpx.Client(timeout=TIMEOUT_S)


def _sign(secret: str, msg_id: str, timestamp: int, body: str) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{msg_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


@app.task(  # type: ignore[untyped-decorator]
    name=TASK_NAME, autoretry_for=(Exception,), retry_backoff=True, max_retries=5
)
def send_webhook(url: str, secret: str, event_id: str, body: str) -> int:
    ts = int(time.time())
    resp = client.post(
        url,
        content=body.encode(),
        headers={
            "content-type": "application/json",
            "webhook-id": event_id,
            "webhook-timestamp": str(ts),
            "webhook-signature": _sign(secret, event_id, ts, body),
        },
    )
    resp.raise_for_status()
    return resp.status_code


def enqueue_delivery(url: str, secret: str, event_id: str, body: str) -> None:
    """What the application calls per delivery."""
    send_webhook.delay(url, secret, event_id, body)


def enqueue_with(producer_app: Celery, url: str, secret: str, event_id: str, body: str) -> None:
    """The same message as ``enqueue_delivery`` through another app instance (the harness changes brokers
    between runs; ``send_task`` puts the identical message on the ``celery`` queue)."""
    producer_app.send_task(TASK_NAME, args=(url, secret, event_id, body))
