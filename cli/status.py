"""``webhooks status``: workers, scheduler leader, queues, dead letters, endpoints that are not
healthy (paused, circuit open with the probe's time, throttled, failing, disabled), Redis memory.

What it shows the API does not serve (RQ's worker registry, leases, the scheduler's lock, Redis
memory), so it reads Redis itself: the one found by :func:`cli.platform_info.operator_target`
(explicit settings, else the ``platform.json`` of a running ``webhooks up``); on a Redis
Cluster, RQ's registry from RQ's own Redis (``WEBHOOKS_RQ_REDIS_URL``). It checks that Redis
answers and says so on stderr with a non-zero exit when it does not. When only RQ's own Redis does
not answer, it shows everything else, says so (stderr, and a section in place of RQ's workers and
queues; ``rq_unreachable`` in ``--json``) and exits 0: deliveries go on without RQ meanwhile.
"""

import argparse
import asyncio
import dataclasses
import time

import redis

from cli.output import Out
from cli.platform_info import operator_target
from cli.snapshot import PlatformStatus, snapshot
from webhooks.errors import StorageError
from webhooks.runtime.connection import async_client, async_rq_client
from webhooks.settings import Settings
from webhooks.timefmt import iso_from_ms

RQ_DOWN_MEANS = (
    "RQ's workers, queues and jobs are unknown meanwhile. Deliveries go on: each worker drains the "
    "queue itself while RQ's Redis does not answer, and the scheduler keeps "
    "promoting retries and reclaiming leases. Replays, endpoint recoveries and tenant deletions "
    "are RQ jobs: those queued or running wait until RQ's Redis answers again, and new ones cannot "
    "be queued meanwhile."
)
STORAGE_ROWS = 20  # the fullest tenants shown (--json lists every one)


def _age(ms: int | None, now: int) -> str | None:
    return None if ms is None else f"{max(0.0, (now - ms) / 1000):.1f}s ago"


def _mib(n: int) -> str:
    return f"{n / 1048576:.1f} MiB"


def _breakers(n: int) -> str:
    return f"{n} endpoint{'s' if n > 1 else ''} (their deliveries wait for a probe)" if n else "0"


async def read_status(s: Settings) -> PlatformStatus:
    target, source = operator_target(s)
    r = async_client(target)
    try:
        try:
            await r.ping()
        except redis.RedisError as exc:
            raise StorageError(
                f"cannot reach Redis at {target.describe()} (from {source}): {type(exc).__name__}"
            ) from None
        # On a Redis Cluster, RQ's registry of workers is on its own Redis (WEBHOOKS_RQ_REDIS_URL).
        rq = async_rq_client(target) if target.rq_apart else None
        try:
            st = await snapshot(r, int(time.time() * 1000), rq, s.tenant_max_share)
            if st.rq_unreachable:
                st.rq_unreachable = f"{target.describe_rq()} does not answer ({st.rq_unreachable})"
            return st
        finally:
            if rq is not None:
                await rq.aclose()
    finally:
        await r.aclose()


def cmd_status(s: Settings, args: argparse.Namespace) -> int:
    st = asyncio.run(read_status(s))
    out = Out(args.json)
    if st.rq_unreachable:
        out.note(f"RQ's Redis is unreachable: {st.rq_unreachable}. {RQ_DOWN_MEANS}")
    if out.json_mode:
        out.json(dataclasses.asdict(st))
        return 0
    now = st.now_ms
    if st.rq_unreachable:
        out.fields(
            "RQ's Redis: UNREACHABLE",
            [("where", st.rq_unreachable), ("what it means", RQ_DOWN_MEANS)],
        )
    else:
        out.table(
            f"workers ({len(st.workers)} registered with RQ)",
            ["name", "host", "pid", "state", "last heartbeat", "started"],
            [
                (w.name, w.hostname, w.pid, w.state, _age(w.last_heartbeat_ms, now), iso_from_ms(w.birth_ms))
                for w in st.workers
            ],
        )
    leader = st.scheduler_leader
    out.fields(
        "scheduler",
        [
            (
                "leader",
                f"pid {leader.split(':')[0]} (lock {leader}, {st.scheduler_lock_ttl_ms} ms left)"
                if leader
                else "none: retries and reclaims wait",
            )
        ],
    )
    oldest = f"{st.oldest_ready_age_s:.1f}s" if st.oldest_ready_age_s is not None else None
    nxt = f"in {st.next_retry_in_s:.1f}s" if st.next_retry_in_s is not None else None
    maxmem = _mib(st.maxmemory_bytes) if st.maxmemory_bytes else "no limit"
    out.fields(
        "queues",
        [
            ("ready", f"{st.ready} (oldest waiting {oldest or '-'})"),
            ("in flight", f"{st.leased} deliveries under {st.leases} leases"),
            ("retry backlog", f"{st.retry_backlog} ({st.retries_overdue} due now, next {nxt or '-'})"),
            ("dead letters", st.dead_letters),
            ("breakers open", _breakers(st.breakers_open)),
            (
                "drain jobs",
                f"{st.drain_jobs} queued for workers"
                if st.drain_jobs is not None
                else "unknown (RQ's Redis is unreachable)",
            ),
        ],
    )
    out.table(
        f"endpoints not healthy ({len(st.endpoints_not_healthy)})",
        ["tenant", "endpoint", "state", "failures", "next attempt", "ready", "retrying", "url"],
        [
            (
                e.tenant_id,
                e.endpoint_id,
                e.state,
                e.consecutive_failures,
                e.next_attempt_at,
                e.ready,
                e.retrying,
                e.url,
            )
            for e in st.endpoints_not_healthy
        ],
    )
    if not st.rq_unreachable:
        out.table(
            "RQ queues (webhooks: delivery triggers; webhooks-operations: replays, tenant deletions)",
            ["queue", "queued", "started", "failed"],
            [(q.name, q.queued, q.started, q.failed) for q in st.rq_queues],
        )
    if st.paused_tenants:
        out.note(
            f"{len(st.paused_tenants)} tenants are paused by a slot move that did not finish"
            f" ({', '.join(st.paused_tenants[:5])}): run the same `webhooks cluster move-slots` again"
        )
    out.fields(
        "redis",
        [("server", st.redis_server), ("memory", f"{_mib(st.used_memory_bytes)} used of {maxmem}")],
    )
    out.table(
        "tenant storage (pending work, history, dead letters; counted by record sizes) against each share",
        ["tenant", "stored", "share", "of its share"],
        [
            (
                t.tenant_id,
                _mib(t.used_bytes),
                f"{t.max_share:g} ({_mib(t.limit_bytes)})"
                if t.limit_bytes
                else f"{t.max_share:g} (no limit)",
                f"{100 * t.fraction:.0f}%" if t.fraction is not None else "-",
            )
            for t in st.tenant_storage[:STORAGE_ROWS]
        ],
    )
    return 0
