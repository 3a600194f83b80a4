"""Process entry points: ``webhooks worker`` and ``webhooks scheduler``.

A worker is an RQ :class:`~rq.SimpleWorker` on two queues: the operators' jobs
(``webhooks-operations``: replays, tenant deletions, :mod:`workers.operations`) first, then
``webhooks``, whose jobs each drain many deliveries on the process's persistent event loop. By
default a worker also runs a scheduler in a thread; the scheduler lock lets one act at a time.

RQ's queue lives where :func:`webhooks.runtime.connection.rq_client` says: the platform's Redis, or,
on a Redis Cluster, the plain Redis of ``WEBHOOKS_RQ_REDIS_URL``. Its jobs are triggers, and the
operators' resumable jobs (their progress is in the platform's Redis).
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
from webhooks.outbound.secretbox import SecretBox
from webhooks.runtime import gcpolicy
from webhooks.runtime.connection import RedisTarget, async_client, rq_client, sync_client, warn_if_not_durable
from workers import jobs, observe, operations, runtime
from workers.engine import EngineConfig
from workers.scheduler import Scheduler, SchedulerConfig

log = logging.getLogger("webhooks.worker")


class DeliveryWorker(SimpleWorker):
    """At the first SIGINT/SIGTERM: stops leasing, hands back what is leased but unsent, finishes
    what is in flight (within the request timeout), then exits."""

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        try:
            runtime.current().engine.request_stop()
        except RuntimeError:
            pass
        super().request_stop(signum, frame)  # type: ignore[no-untyped-call]


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
    wait_for_redis(conn, "worker")
    if target.cluster or target.rq_url:
        data = data_client_when_up(target, "worker")
        warn_if_not_durable(data)
        data.close()
    else:
        warn_if_not_durable(conn)
    served = observe.serve_metrics(metrics_port, metrics_host, target, per_endpoint=per_endpoint_metrics)
    rt = runtime.build(target, box, config, allow_private=allow_private, proxy_url=proxy_url)
    runtime.install(rt)
    observe.watch_engine(rt.engine)
    gcpolicy.tune()  # the engine is built: what the process holds for its life is out of the collector's way
    operations.install(target, config.retention_ms)  # the operators' jobs (replays, tenant deletions)
    stop_sweeper = operations.start_sweeper(conn, data_client_when_up(target, "worker"))
    stop_scheduler = None
    if with_scheduler:
        _, stop_scheduler = _scheduler_thread(
            target,
            scheduler_config or SchedulerConfig(config.request_timeout_s, config.retention_ms),
        )
    level = logging.getLevelName(logging.getLogger().level)
    try:
        while True:
            queues = [Queue(name, connection=conn) for name in (keys.RQ_OPERATIONS_QUEUE, keys.RQ_QUEUE)]
            worker = DeliveryWorker(queues, connection=conn)
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
                rt.run(rt.engine.drain(jobs.DRAIN_BUDGET_S / 6))
                continue
            # RQ's loop also ends when Redis fails outside a dequeue (it logs "unhandled
            # exception, quitting"). Unless a stop was asked for, wait for Redis and go on.
            log.warning("the worker loop ended without a stop request; waiting for Redis to start again")
            wait_for_redis(conn, "worker")
    finally:
        stop_sweeper.set()
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
    warn_if_not_durable(conn)
    conn.close()
    if target.rq_url:
        rq = rq_client(target)
        wait_for_redis(rq, "scheduler")
        rq.close()
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
