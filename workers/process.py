"""Process entry points: ``webhooks worker`` and ``webhooks scheduler``.

A worker is an RQ :class:`~rq.SimpleWorker` on two queues: the operators' jobs
(``webhooks-operations``: replays, tenant deletions, :mod:`workers.operations`) first, then
``webhooks``, whose jobs each drain many deliveries on the process's persistent event loop. By
default a worker also runs a scheduler in a thread; the scheduler lock lets one act at a time.

Before anything else each checks the data format in Redis
(:func:`webhooks.queueing.dataformat.ensure`): data newer than this code stops the process with
one line; older data is migrated first.

RQ's queue lives where :func:`webhooks.runtime.connection.rq_client` says: the platform's Redis, or
a Redis of its own (``WEBHOOKS_RQ_REDIS_URL``, or a Sentinel-managed primary named by
``WEBHOOKS_RQ_REDIS_SENTINELS``; a cluster needs one). Its jobs are the delivery triggers (with a
Redis of its own, a worker keeps delivering while that Redis is unreachable, :mod:`workers.fallback`,
and its RQ loop starts again once it answers) and the operators' resumable jobs, whose progress is
in the platform's Redis (they wait while RQ's Redis is unreachable). RQ's worker keeps its
registration for ``RQ_WORKER_TTL_S`` and so blocks in a dequeue at most ``RQ_WORKER_TTL_S - 15`` s,
with a read timeout 10 s longer: the longest a hung RQ Redis holds the RQ loop.
"""

import asyncio
import logging
import signal
import threading
import time
from types import FrameType
from typing import Any

import redis
from rq import Queue, SimpleWorker

from webhooks import keys
from webhooks.outbound import retry
from webhooks.outbound.secretbox import SecretBox
from webhooks.queueing import dataformat
from webhooks.runtime import gcpolicy
from webhooks.runtime.connection import RedisTarget, async_client, rq_client, sync_client, warn_if_not_durable
from workers import fallback, jobs, observe, operations, runtime
from workers.engine import EngineConfig
from workers.scheduler import Scheduler, SchedulerConfig

log = logging.getLogger("webhooks.worker")
UNSUBSCRIBE_WAIT_S = 1.0

RQ_WORKER_TTL_S = 30


class DeliveryWorker(SimpleWorker):
    """At the first SIGINT/SIGTERM: stops leasing, hands back what is leased but unsent, finishes
    what is in flight (within the request timeout), then exits."""

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        try:
            runtime.current().engine.request_stop()
        except RuntimeError:
            pass
        super().request_stop(signum, frame)  # type: ignore[no-untyped-call]

    def unsubscribe(self) -> None:
        """RQ's own, with the wait for its pub/sub thread bounded. That thread waits up to 60 s for a
        subscription (RQ's ``sleep_time``) once the UNSUBSCRIBE reply is read, and redis-py 8.2's
        ``stop()`` joins it without a bound: a stopping worker hung there for up to 60 s (past
        the deployments' stop timeouts) in about one SIGTERM in seven. The thread is a daemon."""
        if self.pubsub_thread:
            log.info("Worker %s: unsubscribing from channel %s", self.name, self.pubsub_channel_name)
            self.pubsub.unsubscribe()
            self.pubsub_thread.stop(timeout=UNSUBSCRIBE_WAIT_S)
            self.pubsub.close()


def _scheduler_thread(target: RedisTarget, config: SchedulerConfig) -> tuple[threading.Thread, Any]:
    holder: dict[str, Any] = {}
    ready = threading.Event()

    def main() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        sched = Scheduler(async_client(target), rq_client(target), config)
        holder["sched"], holder["loop"] = sched, loop
        ready.set()
        loop.run_until_complete(sched.run())
        loop.run_until_complete(sched.r.aclose())
        loop.close()

    thread = threading.Thread(target=main, name="scheduler", daemon=True)
    thread.start()
    ready.wait()

    def stop() -> None:
        holder["loop"].call_soon_threadsafe(holder["sched"].stop.set)
        thread.join(timeout=5)

    return thread, stop


def run_worker(
    target: RedisTarget,
    box: SecretBox,
    config: EngineConfig,
    *,
    allow_private: bool,
    with_scheduler: bool = True,
    burst: bool = False,
    scheduler_config: SchedulerConfig | None = None,
    proxy_url: str | None = None,
    metrics_port: int = 0,
    metrics_host: str = "127.0.0.1",
    per_endpoint_metrics: bool = False,
) -> None:
    conn = rq_client(target)
    data = data_client_when_up(target, "worker")  # RQ's own Redis, when apart, need not answer
    try:
        dataformat.ensure(data)  # refuses data newer than this code; migrates older data first
        warn_if_not_durable(data)
    finally:
        data.close()
    served = observe.serve_metrics(metrics_port, metrics_host, target, per_endpoint=per_endpoint_metrics)
    rt = runtime.build(target, box, config, allow_private=allow_private, proxy_url=proxy_url)
    runtime.install(rt)
    observe.watch_engine(rt.engine)
    gcpolicy.tune()  # the engine is built: what the process holds for its life is out of the collector's way
    operations.install(target, config.retention_ms)  # the operators' jobs (replays, tenant deletions)
    stop_sweeper = operations.start_sweeper(conn, data_client_when_up(target, "worker"))
    # With RQ on a Redis of its own, deliver without RQ's jobs while that Redis does not answer.
    watch = (
        fallback.RqWatch(rq_client(target, timeout_s=fallback.PING_TIMEOUT_S), rt).start()
        if target.rq_apart
        else None
    )
    stop_scheduler = None
    if with_scheduler:
        _, stop_scheduler = _scheduler_thread(
            target,
            scheduler_config
            or SchedulerConfig(
                config.request_timeout_s, config.retention_ms, retry_span_ms=retry.span_ms(config.schedule)
            ),
        )
    level = logging.getLevelName(logging.getLogger().level)
    try:
        while True:
            wait_for_redis(conn, "worker")
            queues = [Queue(name, connection=conn) for name in (keys.RQ_OPERATIONS_QUEUE, keys.RQ_QUEUE)]
            worker = DeliveryWorker(queues, connection=conn, worker_ttl=RQ_WORKER_TTL_S)
            try:
                worker.work(burst=burst, logging_level=level)
            except redis.RedisError as exc:
                log.warning("the worker loop stopped on a Redis error (%s); carrying on", type(exc).__name__)
            if burst or worker._stop_requested or rt.engine.stopping:
                break
            if redis_full(conn):
                # Redis is over maxmemory: RQ cannot take a job (its dequeue and heartbeats are
                # writes) but our scripts still run (allow-oom). Deliver without a job meanwhile, so
                # pending work keeps going out and memory comes back; then try RQ again.
                log.warning("Redis is full: RQ cannot run jobs; delivering without one meanwhile")
                rt.drain(jobs.DRAIN_BUDGET_S / 6)
                continue
            # RQ's loop also ends when Redis fails or times out (it logs "unhandled exception,
            # quitting" or "Redis connection timeout"). Unless a stop was asked for, wait for RQ's
            # Redis (at the top of the loop) and go on; the watch delivers meanwhile.
            log.warning("the worker loop ended without a stop request; waiting for RQ's Redis to answer")
    finally:
        stop_sweeper.set()
        if watch:
            watch.close()
        if stop_scheduler:
            stop_scheduler()
        rt.close()
        if served:
            served.close()


def redis_full(conn: "redis.Redis") -> bool:
    """True when Redis answers but is at its maxmemory (it refuses writes that add memory)."""
    try:
        info = conn.info("memory")
    except redis.RedisError:
        return False
    limit = int(info.get("maxmemory", 0) or 0)
    return bool(limit) and int(info.get("used_memory", 0)) >= limit


def wait_for_redis(conn: "redis.Redis", who: str) -> None:
    """Block until Redis answers PING (backing off up to 5 s, logging now and then)."""
    delay_s, waited_s, logged_at = 0.1, 0.0, -10.0
    while True:
        try:
            if conn.ping():
                return
        except redis.RedisError as exc:
            if waited_s - logged_at >= 10:
                log.warning("%s: Redis is not reachable (%s); waiting", who, type(exc).__name__)
                logged_at = waited_s
        time.sleep(delay_s)
        waited_s += delay_s
        delay_s = min(delay_s * 2, 5.0)


def data_client_when_up(target: RedisTarget, who: str) -> "redis.Redis":
    """A client of the platform's data once it answers; a cluster client can only be made once a
    seed node answers, so its making is retried too (backing off up to 5 s)."""
    delay_s = 0.1
    while True:
        try:
            conn = sync_client(target)
            break
        except redis.RedisError as exc:
            log.warning("%s: Redis is not reachable (%s); waiting", who, type(exc).__name__)
            time.sleep(delay_s)
            delay_s = min(delay_s * 2, 5.0)
    wait_for_redis(conn, who)
    return conn


def run_scheduler(
    target: RedisTarget,
    config: SchedulerConfig,
    metrics_port: int = 0,
    metrics_host: str = "127.0.0.1",
) -> None:
    conn = data_client_when_up(target, "scheduler")
    try:
        dataformat.ensure(conn)
        warn_if_not_durable(conn)
    finally:
        conn.close()
    # RQ's Redis need not answer now: the scheduler keeps promoting retries and reclaiming leases
    # without it and enqueues triggers again once it does.
    served = observe.serve_metrics(metrics_port, metrics_host, target)

    async def main() -> None:
        sched = Scheduler(async_client(target), rq_client(target), config)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, sched.stop.set)
        try:
            await sched.run()
        finally:
            await sched.r.aclose()

    try:
        asyncio.run(main())
    finally:
        if served:
            served.close()
