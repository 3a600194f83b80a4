"""Tuned peer: webhooks the way a Python team writes them with arq (asyncio jobs on Redis), tuned.

One arq job per delivery (``send_webhook(url, secret, event_id, body)``), ``max_jobs=256`` per worker
process, one ``httpx.AsyncClient`` per process over ``httpx_aiohttp.AiohttpTransport`` (the transport
our platform and bench/ceiling.py use; 256 pooled connections), uvloop. A failed attempt (transport
error or non-2xx answer) raises arq's ``Retry`` with an exponential backoff (2, 4, 8, 16 s) up to
``MAX_TRIES`` attempts; arq re-queues the job with that delay. Results are not kept (``keep_result=0``:
nothing reads them, and keeping them costs a Redis write and memory per delivery), per-job logging is
off, and the job timeout is the request timeout + 5 s, so a job whose worker died is picked up again
after ``timeout + 5 + 10`` s (arq's in-progress lock) instead of arq's default 300 + 10 s.

Worker: ``python -m bench.peers.arq_peer`` (``arq.worker.run_worker`` on uvloop; the stock ``arq
bench.peers.arq_peer.WorkerSettings`` CLI runs the same settings on the default asyncio loop), with
``BENCH_REDIS_URL`` and ``BENCH_REQUEST_TIMEOUT_S`` in the environment.

It runs in its own virtualenv (bench/peers/arq-requirements.txt; arq pins redis-py<6). The producer
is bench/peers/arq_jobs.py: arq's job format through one pipeline per 1,000 jobs; ``startup`` checks
that this arq still uses that format.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import os
import time
from typing import Any

import httpx
from arq import Retry
from arq.connections import RedisSettings
from arq.constants import default_queue_name, expires_extra_ms, job_key_prefix
from arq.jobs import serialize_job
from arq.worker import func, run_worker
from httpx_aiohttp import AiohttpTransport

from bench.peers import arq_jobs

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
TIMEOUT_S = float(os.environ.get("BENCH_REQUEST_TIMEOUT_S", "15"))
MAX_JOBS = 256
MAX_TRIES = 5
FUNCTION = arq_jobs.FUNCTION

log = logging.getLogger("arq_peer")


def _sign(secret: str, msg_id: str, timestamp: int, body: str) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{msg_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def backoff_s(job_try: int) -> float:
    """Delay before attempt ``job_try + 1``: 2, 4, 8, 16 s."""
    return float(2**job_try)


def check_job_format() -> None:
    """The producer writes arq's format without arq: fail loudly if this arq writes another one."""
    ours = (arq_jobs.JOB_KEY_PREFIX, arq_jobs.QUEUE_NAME, arq_jobs.EXPIRES_EXTRA_MS)
    if ours != (job_key_prefix, default_queue_name, expires_extra_ms):
        raise RuntimeError(f"arq's keys changed: {ours} != {(job_key_prefix, default_queue_name)}")
    sample = ("u", "s", "e", "b")
    if arq_jobs.job_bytes(FUNCTION, sample, 1) != serialize_job(FUNCTION, sample, {}, None, 1):
        raise RuntimeError("arq's job serialization changed: update bench/peers/arq_jobs.py")


async def startup(ctx: dict[str, Any]) -> None:
    check_job_format()
    limits = httpx.Limits(max_connections=MAX_JOBS, max_keepalive_connections=MAX_JOBS)
    ctx["http"] = httpx.AsyncClient(transport=AiohttpTransport(limits=limits), timeout=TIMEOUT_S)


async def shutdown(ctx: dict[str, Any]) -> None:
    await ctx["http"].aclose()


async def send_webhook(ctx: dict[str, Any], url: str, secret: str, event_id: str, body: str) -> int:
    """The job: sign, POST; a transport error or a non-2xx answer retries later (``Retry``)."""
    ts = int(time.time())
    headers = {
        "content-type": "application/json",
        "webhook-id": event_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": _sign(secret, event_id, ts, body),
    }
    job_try = int(ctx.get("job_try", 1))
    try:
        resp = await ctx["http"].post(url, content=body.encode(), headers=headers)
    except httpx.HTTPError as exc:
        raise Retry(defer=backoff_s(job_try)) from exc
    if not resp.is_success:
        raise Retry(defer=backoff_s(job_try))
    return int(resp.status_code)


class WorkerSettings:
    """What ``arq`` (CLI) and ``run_worker`` read."""

    functions = [func(send_webhook, name=FUNCTION, max_tries=MAX_TRIES, timeout=TIMEOUT_S + 5)]
    redis_settings = RedisSettings.from_dsn(REDIS_URL)
    on_startup = startup
    on_shutdown = shutdown
    max_jobs = MAX_JOBS
    job_timeout = TIMEOUT_S + 5
    keep_result = 0
    log_results = False


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:  # pragma: no cover
        pass
    run_worker(WorkerSettings)  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
