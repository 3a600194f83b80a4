"""Peer 1: webhooks the way a Python team writes them with RQ and no platform.

One RQ job per delivery (``send_webhook(url, secret, event_id, body)``), ``Retry`` for the backoff,
Standard Webhooks signing by hand and a module-level sync ``httpx.Client``; a non-2xx answer raises,
so RQ retries the job. Workers are the stock ``rq worker`` CLI (``--with-scheduler`` so that the
``Retry`` intervals fire), either the default fork-per-job ``Worker`` or ``SimpleWorker``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
from collections.abc import Iterable

import httpx
from rq import Queue, Retry
from rq.job import Job

QUEUE_NAME = "webhooks"
TIMEOUT_S = float(os.environ.get("BENCH_REQUEST_TIMEOUT_S", "15"))
RETRY = Retry(max=3, interval=[5, 300, 1800])

client = httpx.Client(timeout=TIMEOUT_S)


def _sign(secret: str, msg_id: str, timestamp: int, body: str) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{msg_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def send_webhook(url: str, secret: str, event_id: str, body: str) -> int:
    """The job: sign, POST, raise on anything but 2xx (RQ then retries per ``RETRY``)."""
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


def enqueue_delivery(queue: Queue, url: str, secret: str, event_id: str, body: str) -> Job:
    return queue.enqueue(send_webhook, url, secret, event_id, body, retry=RETRY, job_timeout=60)


def enqueue_deliveries(queue: Queue, deliveries: Iterable[tuple[str, str, str, str]]) -> int:
    """Still one job per delivery, but enqueued through one pipeline per call (kinder to the peer)."""
    datas = [Queue.prepare_data(send_webhook, args=d, retry=RETRY, timeout=60) for d in deliveries]
    queue.enqueue_many(datas)
    return len(datas)
