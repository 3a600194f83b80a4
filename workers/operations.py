"""The operators' jobs: replays (and recoveries, which are replays) and tenant deletions, run by RQ.

They are enqueued on ``keys.RQ_OPERATIONS_QUEUE`` by :mod:`webhooks.stores.jobqueue`, with the
resource's id as the job id, and do their work through :mod:`webhooks.stores.operations`, which keeps
their progress in Redis chunk by chunk: a job run again goes on where the last run stopped.

A job runs in a worker process's main thread on an event loop of its own (the delivery engine's loop
goes on in its thread meanwhile). While it works it keeps ``keys.operation_alive`` fresh (a few
seconds' TTL). :func:`sweep` (run every few seconds by every worker process, one at a time under a
lock) finds a started job whose key lapsed, its worker dead, and hands it to RQ's own handling of
abandoned jobs at once rather than when RQ's registry entry expires (the job's timeout plus a
minute) at its next maintenance (every 10 minutes): ``StartedJobRegistry.cleanup`` retries it while
retries are left and otherwise moves it to the failed registry. :func:`on_failure` marks the
resource ``failed`` with the reason once no retry is left.
"""

import asyncio
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

import redis
from redis.asyncio import Redis
from rq import Queue
from rq.job import Job
from rq.registry import StartedJobRegistry

from webhooks import keys
from webhooks.runtime.connection import RedisTarget, async_client
from webhooks.stores import operations, replays
from webhooks.timefmt import now_ms

log = logging.getLogger("webhooks.worker")

ALIVE_TTL_MS = 10_000  # a job not heard of for this long is taken for dead (a chunk takes milliseconds)
SWEEP_EVERY_S = 2.0
T = TypeVar("T")


class _Context:
    target: RedisTarget | None = None
    retention_ms: int = 7 * 86400 * 1000
    chunk: int = operations.CHUNK
    pause_s: float = 0.0


_context = _Context()


CHUNK_ENV = "WEBHOOKS_OPERATION_CHUNK"  # dead letters per chunk of a replay (default 500)
PAUSE_ENV = "WEBHOOKS_OPERATION_PAUSE_MS"  # a pause after each chunk: spreads a big job's load on Redis


def install(target: RedisTarget, retention_ms: int) -> None:
    """Where this process's operations' jobs find the platform's Redis (``webhooks worker`` calls
    it), and their pace (``WEBHOOKS_OPERATION_CHUNK``, ``WEBHOOKS_OPERATION_PAUSE_MS``)."""
    _context.target = target
    _context.retention_ms = retention_ms
    _context.chunk = max(1, int(os.environ.get(CHUNK_ENV) or operations.CHUNK))
    # Kept well inside the liveness TTL, or the sweeper would take a pausing job for a dead one.
    pause_s = float(os.environ.get(PAUSE_ENV) or 0) / 1000
    _context.pause_s = min(max(0.0, pause_s), ALIVE_TTL_MS / 1000 / 4)


def _run(job_id: str, work: Callable[["Redis", Callable[[], Awaitable[None]]], Awaitable[T]]) -> T:
    if _context.target is None:
        raise RuntimeError("operations' jobs need workers.operations.install(target, retention_ms) first")
    target = _context.target

    async def main() -> T:
        r = async_client(target)
        alive = keys.operation_alive(job_id)

        async def beat() -> None:
            await r.set(alive, 1, px=ALIVE_TTL_MS)
            if _context.pause_s:
                await asyncio.sleep(_context.pause_s)

        try:
            result = await work(r, beat)
            await r.delete(alive)
            return result
        finally:
            await r.aclose()

    return asyncio.run(main())


def run_replay(replay_id: str) -> int:
    """RQ job: scan and requeue what a replay selects (resumes where a dead run stopped)."""
    n = _run(
        replay_id,
        lambda r, beat: operations.run_replay(
            r, replay_id, _context.retention_ms, now_ms, beat, _context.chunk
        ),
    )
    log.info("replay %s: %d requeued", replay_id, n)
    return n


def run_tenant_deletion(tenant_id: str) -> int:
    """RQ job: delete every key of a deleted tenant (resumes where a dead run stopped)."""
    n = _run(tenant_id, lambda r, beat: operations.run_tenant_deletion(r, tenant_id, now_ms, beat))
    log.info("tenant %s deleted: %d keys", tenant_id, n)
    return n


def on_failure(job: Job, connection: Any, exc_type: Any, exc: BaseException, tb: Any) -> None:
    """RQ failure callback (each failure, a worker's death among them): once no retry is left,
    the resource says ``failed`` with the reason."""
    if job.retries_left:
        log.warning("operation %s failed (%s: %s); RQ retries it", job.id, type(exc).__name__, exc)
        return
    reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    log.error("operation %s failed for good: %s", job.id, reason)
    if _context.target is None:
        return
    target = _context.target

    async def mark() -> None:
        r = async_client(target)
        try:
            if job.func_name == operations_job("run_replay"):
                await replays.set_phase(r, job.id, "failed", reason)
            else:
                await operations.set_deletion_failed(r, job.id, reason)
        finally:
            await r.aclose()

    asyncio.run(mark())


def operations_job(name: str) -> str:
    return f"{__name__}.{name}"


def sweep(conn: "redis.Redis", data: "redis.Redis") -> int:
    """Hand the started operations' jobs whose worker died (their liveness key lapsed) to RQ's
    abandoned-job handling; returns how many. ``conn`` is RQ's Redis, ``data`` the platform's."""
    if not conn.set(keys.OPS_SWEEP_LOCK, 1, nx=True, px=int(SWEEP_EVERY_S * 1000)):
        return 0
    queue = Queue(keys.RQ_OPERATIONS_QUEUE, connection=conn)
    registry = StartedJobRegistry(queue=queue)
    now_s = time.time()
    dead: list[str] = []
    for raw in cast(list[bytes], conn.zrange(registry.key, 0, -1)):
        entry = raw.decode()
        job_id = StartedJobRegistry.parse_job_id(entry)
        job = Job.fetch(job_id, connection=conn) if conn.exists(Job.key_for(job_id)) else None
        started = job.started_at.timestamp() if job is not None and job.started_at else now_s
        if now_s - started < ALIVE_TTL_MS / 1000 or data.exists(keys.operation_alive(job_id)):
            continue
        dead.append(entry)
    if not dead:
        return 0
    conn.zadd(registry.key, {e: now_s - 1 for e in dead}, xx=True)  # expired: RQ's cleanup takes them
    registry.cleanup(timestamp=now_s)
    log.warning("operations: %d job(s) of dead workers handed back to RQ", len(dead))
    return len(dead)


def start_sweeper(conn: "redis.Redis", data: "redis.Redis") -> threading.Event:
    """Run :func:`sweep` every few seconds in a daemon thread until the returned event is set."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(SWEEP_EVERY_S):
            try:
                sweep(conn, data)
            except redis.RedisError as exc:
                log.warning("operations sweep: %s", type(exc).__name__)

    threading.Thread(target=loop, name="operations-sweep", daemon=True).start()
    return stop
