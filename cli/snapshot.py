"""What ``webhooks status`` shows, gathered in one place: :func:`snapshot`.

Read-only: a few pipelined reads per tenant and endpoint (:func:`webhooks.queueing.depths.depths`), through
:mod:`webhooks.keys`.
"""

from dataclasses import dataclass, field
from typing import Any

import redis
from redis.asyncio import Redis
from rq import Queue
from rq.registry import FailedJobRegistry, StartedJobRegistry
from rq.utils import utcparse
from rq.worker import Worker
from rq.worker_registration import REDIS_WORKER_KEYS

from webhooks import keys
from webhooks.queueing import depths, memory, shares
from webhooks.stores import health


@dataclass(slots=True)
class WorkerStatus:
    name: str
    hostname: str
    pid: int | None
    state: str
    last_heartbeat_ms: int | None
    birth_ms: int | None


@dataclass(slots=True)
class RqQueueStatus:
    """One RQ queue as RQ's own keys have it: jobs waiting, running (started), failed for good."""

    name: str
    queued: int
    started: int
    failed: int


@dataclass(slots=True)
class EndpointStatus:
    """An endpoint that is not healthy (webhooks/stores/health.py)."""

    tenant_id: str
    endpoint_id: str
    url: str
    state: str
    consecutive_failures: int
    next_attempt_at: str | None
    ready: int
    retrying: int


@dataclass(slots=True)
class TenantStorageRow:
    tenant_id: str
    used_bytes: int
    limit_bytes: int | None  # None: Redis has no maxmemory
    max_share: float
    fraction: float | None


@dataclass(slots=True)
class PlatformStatus:
    now_ms: int
    redis_server: str  # "redis 7.0.15", "valkey 8.1.8"
    used_memory_bytes: int
    maxmemory_bytes: int  # 0: no limit
    workers: list[WorkerStatus] = field(default_factory=list)
    scheduler_leader: str | None = None  # the lock's value: "<pid>:<random>" of the active scheduler
    scheduler_lock_ttl_ms: int | None = None
    ready: int = 0
    oldest_ready_age_s: float | None = None
    leases: int = 0
    leased: int = 0  # deliveries under a lease (in flight, or settled and not yet released)
    retry_backlog: int = 0
    retries_overdue: int = 0
    next_retry_in_s: float | None = None
    dead_letters: int = 0
    breakers_open: int = 0  # endpoints whose circuit breaker is open or probing: their deliveries wait
    # paused by a slot move (webhooks/queueing/reshard.py)
    paused_tenants: list[str] = field(default_factory=list)
    drain_jobs: int | None = 0  # RQ jobs waiting on the RQ queue (None: RQ's Redis unreachable)
    endpoints_not_healthy: list[EndpointStatus] = field(default_factory=list)  # by tenant
    # RQ's queues: the delivery triggers (webhooks) and the operators' jobs (webhooks-operations)
    rq_queues: list[RqQueueStatus] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)
    # each tenant's stored bytes against its share of maxmemory (webhooks/queueing/shares.py), fullest first
    tenant_storage: list[TenantStorageRow] = field(default_factory=list)
    # Set when RQ has a Redis of its own (WEBHOOKS_RQ_REDIS_URL) and it did not answer: why. Then
    # workers, drain_jobs and rq_queues are unknown (empty, None); the rest is read as ever.
    rq_unreachable: str | None = None


def server_name(info: dict[str, Any]) -> str:
    """``valkey 8.1.8`` or ``redis 7.0.15`` from ``INFO server``."""
    if info.get("server_name") == "valkey" or "valkey_version" in info:
        return f"valkey {info.get('valkey_version', '?')}"
    return f"redis {info.get('redis_version', '?')}"


def _ms(value: str | None) -> int | None:
    return int(utcparse(value).timestamp() * 1000) if value else None


async def _workers(r: "Redis") -> list[WorkerStatus]:
    """RQ's registry of workers, read as ``rq.Worker.all`` reads it (same keys), on the async client."""
    names = sorted(str(k) for k in await r.smembers(REDIS_WORKER_KEYS))
    async with r.pipeline(transaction=False) as pipe:
        for key in names:
            pipe.hgetall(key)
        rows = await pipe.execute()
    out = []
    for key, h in zip(names, rows, strict=True):
        if not h:
            continue  # expired: RQ's own Worker.all drops it too
        out.append(
            WorkerStatus(
                name=key.removeprefix(Worker.redis_worker_namespace_prefix),
                hostname=h.get("hostname", ""),
                pid=int(h["pid"]) if h.get("pid") else None,
                state=h.get("state", "?"),
                last_heartbeat_ms=_ms(h.get("last_heartbeat")),
                birth_ms=_ms(h.get("birth")),
            )
        )
    return out


async def _rq_queues(r: "Redis") -> list[RqQueueStatus]:
    """Each of our RQ queues: its list's length and its started and failed registries' sizes (the
    keys RQ's ``Queue`` and registries use, read on the async client)."""
    names = (keys.RQ_QUEUE, keys.RQ_OPERATIONS_QUEUE)
    async with r.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.llen(Queue.redis_queue_namespace_prefix + name)
            pipe.zcard(StartedJobRegistry.key_template.format(name))
            pipe.zcard(FailedJobRegistry.key_template.format(name))
        rows = await pipe.execute()
    return [
        RqQueueStatus(name, int(rows[3 * i]), int(rows[3 * i + 1]), int(rows[3 * i + 2]))
        for i, name in enumerate(names)
    ]


async def snapshot(
    r: "Redis", now_ms: int, rq: "Redis | None" = None, tenant_max_share: float = shares.DEFAULT_MAX_SHARE
) -> PlatformStatus:
    """Workers, scheduler leader, queue depths and oldest age, retries, dead letters, open breakers,
    tenants paused by a slot move, endpoints not healthy, Redis memory.

    ``r`` decodes responses; ``rq`` is the Redis RQ lives on when it is another one (a cluster's
    ``WEBHOOKS_RQ_REDIS_URL``). Raises ``redis.RedisError`` when the platform's Redis cannot be
    read; when only ``rq`` cannot, says why in ``rq_unreachable`` and leaves RQ's side unknown. The queue
    figures are summed over every tenant by :func:`webhooks.queueing.depths.depths`; on a cluster the
    memory is the fullest primary's.
    """
    rq = rq or r
    d = await depths.depths(r, now_ms)
    server = await r.info("server")  # on a cluster: one node's (they run the same server)
    use = await memory.usage(r)
    async with r.pipeline(transaction=False) as pipe:
        pipe.get(keys.SCHEDULER_LOCK)
        pipe.pttl(keys.SCHEDULER_LOCK)
        leader, ttl = await pipe.execute()
    rq_unreachable: str | None = None
    workers: list[WorkerStatus] = []
    drain_jobs: int | None = None
    rq_queues: list[RqQueueStatus] = []
    try:
        drain_jobs = int(await rq.llen(Queue.redis_queue_namespace_prefix + keys.RQ_QUEUE))
        rq_queues = await _rq_queues(rq)
        workers = await _workers(rq)
    except redis.RedisError as exc:
        if rq is r:  # the platform's own Redis: the caller says it cannot read it
            raise
        rq_unreachable = f"{type(exc).__name__}: {exc}"
        drain_jobs = None
    tenants = await depths.tenant_ids(r)
    async with r.pipeline(transaction=False) as pipe:
        for t in tenants:
            pipe.exists(keys.moving(t))
        flags = await pipe.execute() if tenants else []
    sick = [
        EndpointStatus(t, e, url, h.state, h.consecutive_failures, h.next_attempt_at, h.ready, h.retrying)
        for t, e, url, h in await health.unhealthy(r, tenants, now_ms)
    ]
    stored = await shares.usage(r, tenants, use.max_bytes, tenant_max_share)
    stored.sort(key=lambda u: (-u.fraction, -u.used_bytes))
    return PlatformStatus(
        now_ms=now_ms,
        redis_server=server_name(server),
        used_memory_bytes=use.used_bytes,
        maxmemory_bytes=use.max_bytes,
        workers=workers,
        scheduler_leader=leader,
        scheduler_lock_ttl_ms=ttl if leader else None,
        ready=d.ready,
        oldest_ready_age_s=None
        if d.oldest_ready_ms is None
        else max(0.0, (now_ms - d.oldest_ready_ms) / 1000),
        leases=d.leases,
        leased=d.leased,
        retry_backlog=d.due,
        retries_overdue=d.overdue,
        next_retry_in_s=None if d.first_due_ms is None else (d.first_due_ms - now_ms) / 1000,
        dead_letters=d.dead,
        breakers_open=d.breakers_open,
        paused_tenants=[t for t, flagged in zip(tenants, flags, strict=True) if flagged],
        drain_jobs=drain_jobs,
        endpoints_not_healthy=sick,
        rq_queues=rq_queues,
        rq_unreachable=rq_unreachable,
        counters=d.counters,
        tenant_storage=[
            TenantStorageRow(
                u.tenant_id,
                u.used_bytes,
                u.limit_bytes or None,
                u.max_share,
                round(u.fraction, 4) if u.limit_bytes else None,
            )
            for u in stored
        ],
    )
