"""The arq peer's producer side: arq's job format, written through one pipeline per batch.

The harness runs with redis-py 8 and arq pins redis-py<6, so arq itself lives in the workers' own
virtualenv (bench/peers/arq-requirements.txt) and this module does not import it. It writes what
``ArqRedis.enqueue_job`` writes: the pickled job ``{"t", "f", "a", "k", "et"}`` under
``arq:job:<id>`` (expiring a day after its start time) and the id in the ``arq:queue`` sorted set,
scored by its start time (ms). The worker (bench/peers/arq_peer.py) checks these constants against
its arq at start, so a changed format fails the warm-up instead of silently measuring nothing.
Job ids are ``<event id>.<endpoint index>``; ``NX`` keeps a re-sent batch from enqueuing twice.
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Iterable
from typing import Any

JOB_KEY_PREFIX = "arq:job:"  # arq.constants.job_key_prefix
QUEUE_NAME = "arq:queue"  # arq.constants.default_queue_name
EXPIRES_EXTRA_MS = 86_400_000  # arq.constants.expires_extra_ms
FUNCTION = "send_webhook"


def job_bytes(function: str, args: tuple[Any, ...], enqueue_time_ms: int) -> bytes:
    """``arq.jobs.serialize_job(function, args, {}, None, enqueue_time_ms)``."""
    return pickle.dumps({"t": None, "f": function, "a": args, "k": {}, "et": enqueue_time_ms})


def enqueue_deliveries(redis: Any, deliveries: Iterable[tuple[str, str, str, str, str]]) -> int:
    """One job per ``(job_id, url, secret, event_id, body)``, all in one pipeline (sync redis-py)."""
    now_ms = int(time.time() * 1000)
    pipe = redis.pipeline(transaction=False)
    n = 0
    for job_id, url, secret, event_id, body in deliveries:
        job = job_bytes(FUNCTION, (url, secret, event_id, body), now_ms)
        pipe.set(JOB_KEY_PREFIX + job_id, job, px=EXPIRES_EXTRA_MS, nx=True)
        pipe.zadd(QUEUE_NAME, {job_id: now_ms}, nx=True)
        n += 1
    pipe.execute()
    return n
