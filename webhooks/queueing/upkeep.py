"""The scheduler's side of the queue: :func:`tick` (reclaim expired leases, promote due deliveries,
lift pauses, end deliveries held past the retry schedule's span), :func:`retire_idle` and the
:func:`repair` sweep of the global active list, and
:func:`trim` (retention and the memory budget). Only the scheduler calls these; the transitions
workers make are in :mod:`webhooks.queueing.queue`. Each tenant's step is one Lua script
(``lua/tick.lua``, ``lua/trim.lua``); the global entries are written by separate idempotent calls.
"""

from dataclasses import dataclass, field

from redis.asyncio import Redis

from webhooks import keys
from webhooks.queueing import reshard
from webhooks.queueing.queue import DEFAULT_RETENTION_MS, activate, wake_at
from webhooks.queueing.scripts import PartlyApplied, ScriptCall, run_scripts, scripts


@dataclass(slots=True)
class Ticked:
    leases: int = 0
    reclaimed: int = 0
    promoted: int = 0
    tenants: int = 0
    paused: int = 0  # tenants whose slot is moving (webhooks/queueing/reshard.py): ticked again soon
    expired: int = 0  # deliveries held past the retry schedule's span, now dead
    ops_due: dict[str, int] = field(default_factory=dict)  # tenant -> ms its notifications are due


@dataclass(frozen=True, slots=True)
class HeldLimit:
    """How long a delivery may wait behind an open breaker or a throttle (``tick.lua``, step 3).

    ``span_ms`` is the retry schedule's span (the sum of its steps): a held delivery whose retry
    series began that long ago ends ``dead``, kept ``retention_ms`` as a dead letter, counted in
    its endpoint's ``delivery.dead`` summary when ``ops_window_ms`` > 0 (every tenant but
    ``ops_skip``, the operator tenant). ``span_ms`` 0: held deliveries wait without end.
    """

    span_ms: int = 0
    retention_ms: int = DEFAULT_RETENTION_MS
    ops_window_ms: int = 0
    ops_skip: str = ""


RETICK_MS = 100  # a tenant whose tick failed is visited again this much later


async def tick(
    r: "Redis", tenant_ids: list[str], now_ms: int, most: int = 1000, held: HeldLimit = HeldLimit()
) -> Ticked:
    """Visit tenants: reclaim expired leases, promote due deliveries, lift pauses, end deliveries
    held past ``held.span_ms``; set their next wake (and their operational notifications' due time).

    Each tenant's wake entry is removed before its script runs and re-added (keeping the earliest)
    after, so a wake time registered meanwhile by a worker is never lost. A tenant whose script
    failed is woken again ``RETICK_MS`` later (a paused one, its slot moving, is counted in
    ``paused``); when some failed for another reason, :class:`PartlyApplied` is raised once the
    others' results are written.
    """
    out = Ticked()
    if not tenant_ids:
        return out
    await r.zrem(keys.WAKE, *tenant_ids)
    script = scripts(r).tick
    calls: list[ScriptCall] = [
        (
            script,
            [keys.tenant_base(t)],
            [now_ms, most, held.span_ms, held.retention_ms, 0 if t == held.ops_skip else held.ops_window_ms],
        )
        for t in tenant_ids
    ]
    replies = await run_scripts(r, calls, errors_in_place=True)
    wakes: dict[str, int] = {}
    to_activate = []
    failed: dict[str, BaseException] = {}
    for tenant_id, reply in zip(tenant_ids, replies, strict=True):
        if isinstance(reply, BaseException):
            wakes[tenant_id] = now_ms + RETICK_MS
            if reshard.is_paused(reply):
                out.paused += 1
            else:
                failed[tenant_id] = reply
            continue
        n_leases, n_back, n_promoted, act, wake, _, n_expired, ops_at = reply
        out.expired += int(n_expired)
        if int(ops_at) >= 0:
            out.ops_due[tenant_id] = int(ops_at)
        out.leases += int(n_leases)
        out.reclaimed += int(n_back)
        out.promoted += int(n_promoted)
        if int(act):
            to_activate.append(tenant_id)
        if int(n_leases) >= most or int(n_promoted) >= most:
            wakes[tenant_id] = now_ms  # more to do: come back at once
        elif int(wake) >= 0:
            wakes[tenant_id] = int(wake)
    out.tenants = len(tenant_ids)
    await activate(r, to_activate)
    await wake_at(r, wakes)
    await wake_at(r, out.ops_due, keys.OPS_DUE)
    if failed:
        raise PartlyApplied(set(failed), next(iter(failed.values())), out)
    return out


async def retire_idle(r: "Redis", most: int = 500) -> int:
    """Take tenants reported idle off the active list, one entry each, if still not marked active.

    Every activation (``act`` 0 -> 1) pushes one entry after it. Reading ``act`` and removing an
    entry are two calls (the flag and the list live in different slots), and a report can be stale
    (two idle workers reported the same entry; the first report already removed it): an activation
    landing between the read and the removal could then lose its own entry. So after removing,
    ``act`` is read again, and a tenant marked active by then with no entry left is pushed back
    (:func:`_relist_active`). An activation after that second read pushes its own entry, so a
    tenant with work always keeps one; a surplus entry costs one empty visit and the sweep trims
    it. Returns the number retired.
    """
    idle = [str(t) for t in await r.spop(keys.IDLE, most) or []]
    if not idle:
        return 0
    async with r.pipeline(transaction=False) as pipe:
        for t in idle:
            pipe.hget(keys.tenant(t), "act")
        acts = await pipe.execute()
    retired = [t for t, act in zip(idle, acts, strict=True) if act != "1"]
    if retired:
        script = scripts(r).global_
        await run_scripts(r, [(script, [keys.ACTIVE], ["unlist", 1, t]) for t in retired])
        await _relist_active(r, retired)
    return len(retired)


async def _relist_active(r: "Redis", tenant_ids: list[str]) -> int:
    """Push back those of these tenants marked active that have no entry on the active list (after
    a removal that may have raced their activation); returns how many were pushed."""
    async with r.pipeline(transaction=False) as pipe:
        for t in tenant_ids:
            pipe.hget(keys.tenant(t), "act")
            pipe.lpos(keys.ACTIVE, t)
        rows = await pipe.execute()
    lost = [t for i, t in enumerate(tenant_ids) if rows[2 * i] == "1" and rows[2 * i + 1] is None]
    await activate(r, lost)
    return len(lost)


async def due_tenants(r: "Redis", now_ms: int, most: int = 200) -> list[str]:
    return [str(t) for t in await r.zrangebyscore(keys.WAKE, "-inf", now_ms, start=0, num=most)]


async def repair(r: "Redis", tenant_ids: list[str], now_ms: int, held: HeldLimit = HeldLimit()) -> int:
    """The sweep: tick these tenants, put back on the active list those marked active but absent,
    and leave one entry to those with more (the scheduler only: see :func:`retire_idle`).

    This is what repairs a crash between a tenant's script and the global call after it (a lost
    activation or wake time). Returns the number of tenants put back on the active list.
    """
    await tick(r, tenant_ids, now_ms, held=held)
    async with r.pipeline(transaction=False) as pipe:
        for tenant_id in tenant_ids:
            pipe.hget(keys.tenant(tenant_id), "act")
            pipe.lpos(keys.ACTIVE, tenant_id, count=0)
        rows = await pipe.execute()
    missing, extra, idle = [], [], []
    for i, t in enumerate(tenant_ids):
        act, found = rows[2 * i], rows[2 * i + 1] or []
        if act == "1" and not found:
            missing.append(t)
        elif act == "1" and len(found) > 1:
            extra.append((t, len(found) - 1))
        elif act != "1" and found:
            idle.append(t)
    await activate(r, missing)
    if extra or idle:
        script = scripts(r).global_
        calls: list[ScriptCall] = [(script, [keys.ACTIVE], ["unlist", n, t]) for t, n in extra]
        calls += [(script, [keys.IDLE], ["idle", t]) for t in idle]
        await run_scripts(r, calls)
        await _relist_active(r, [t for t, _ in extra])  # the removals may have raced a retirement
    return len(missing)


@dataclass(slots=True)
class Trimmed:
    events: int = 0
    scanned: int = 0
    exhausted: list[str] = field(default_factory=list)  # tenants whose scan stopped (fresh work, or the end)


async def trim(
    r: "Redis",
    tenant_ids: list[str],
    cutoff_ms: int,
    *,
    most: int = 0,
    allow_dead: bool = False,
    now_ms: int = 0,
    fresh_ms: int = 60_000,
) -> Trimmed:
    """Drop index entries older than ``cutoff_ms`` and, with ``most`` > 0, up to ``most`` settled events
    per tenant oldest first (see ``trim.lua``: pending work is never touched; the scan stops at
    work younger than ``fresh_ms``)."""
    out = Trimmed()
    if not tenant_ids:
        return out
    script = scripts(r).trim
    args: list[str | int] = [most, 1 if allow_dead else 0, cutoff_ms, now_ms, fresh_ms]
    replies = await run_scripts(r, [(script, [keys.tenant_base(t)], args) for t in tenant_ids])
    for tenant_id, (dropped, scanned, done) in zip(tenant_ids, replies, strict=True):
        out.events += int(dropped)
        out.scanned += int(scanned)
        if int(done):
            out.exhausted.append(tenant_id)
    return out
