"""What waits in the queue, summed over every tenant: :func:`depths` (ready, due, overdue, leased,
dead, breakers open, the oldest ready delivery) and :func:`tenant_ids`. Reads only, pipelined.
"""

from dataclasses import dataclass, field

from redis.asyncio import Redis

from webhooks import ids, keys


async def tenant_ids(r: "Redis") -> list[str]:
    return [str(t) for t in await r.zrange(keys.TENANTS, 0, -1)]


@dataclass(slots=True)
class Depths:
    ready: int = 0
    due: int = 0
    overdue: int = 0  # due deliveries whose time has come (the scheduler is behind, or down)
    leases: int = 0
    leased: int = 0  # deliveries under a lease
    dead: int = 0
    active_tenants: int = 0
    oldest_ready_ms: int | None = None  # when the longest-waiting ready delivery was created or due
    first_due_ms: int | None = None
    breakers_open: int = 0  # endpoints whose circuit breaker is open or probing
    counters: dict[str, int] = field(default_factory=dict)


async def depths(r: "Redis", now_ms: int | None = None) -> Depths:
    """Queue depths summed over every tenant (pipelined passes over the tenants and their endpoints)."""
    tenants = await tenant_ids(r)
    out = Depths(active_tenants=int(await r.llen(keys.ACTIVE)))
    async with r.pipeline(transaction=False) as pipe:
        for t in tenants:
            pipe.zrange(keys.tenant_endpoints(t), 0, -1)
            pipe.zcard(keys.leases(t))
            pipe.zcard(keys.tenant_dead(t))
            pipe.hgetall(keys.stats(t))
        rows = await pipe.execute()
    endpoints: list[tuple[str, str]] = []
    for i, t in enumerate(tenants):
        eps, n_leases, n_dead, stats = rows[4 * i : 4 * i + 4]
        endpoints += [(t, e) for e in eps]
        out.leases += int(n_leases)
        out.dead += int(n_dead)
        for k, v in stats.items():
            out.counters[k] = out.counters.get(k, 0) + int(v)
    if endpoints:
        horizon = now_ms if now_ms is not None else "+inf"
        async with r.pipeline(transaction=False) as pipe:
            for t, e in endpoints:
                pipe.llen(keys.ready(t, e))
                pipe.zcard(keys.due(t, e))
                pipe.lindex(keys.ready(t, e), 0)
                pipe.zrange(keys.due(t, e), 0, 0, withscores=True)
                pipe.zcount(keys.due(t, e), "-inf", horizon)
                pipe.hget(keys.endpoint(t, e), "h")
            counts = await pipe.execute()
        heads = []
        for j, (t, _) in enumerate(endpoints):
            n_ready, n_due, head, first, overdue, half_open = counts[6 * j : 6 * j + 6]
            out.breakers_open += 1 if half_open == "1" else 0
            out.ready += int(n_ready)
            out.due += int(n_due)
            out.overdue += int(overdue) if now_ms is not None else 0
            if head:
                heads.append((t, str(head)))
            if first and (out.first_due_ms is None or first[0][1] < out.first_due_ms):
                out.first_due_ms = int(first[0][1])
        if heads:
            async with r.pipeline(transaction=False) as pipe:
                for t, d in heads:
                    pipe.hget(keys.delivery(t, d), "u")
                stamps = await pipe.execute()
            waited = [int(u) if u else ids.ms_of(d) for (_, d), u in zip(heads, stamps, strict=True)]
            out.oldest_ready_ms = min(waited)
    if tenants:
        async with r.pipeline(transaction=False) as pipe:
            for t in tenants:
                pipe.zrange(keys.leases(t), 0, 999)
            lease_lists = await pipe.execute()
        async with r.pipeline(transaction=False) as pipe:
            for t, lease_ids in zip(tenants, lease_lists, strict=True):
                for lease_id in lease_ids:
                    pipe.llen(keys.lease(t, lease_id))
            out.leased = sum(int(n) for n in await pipe.execute())
    return out
