"""The delivery queue: fair leasing, outcomes, retries, recovery and trimming, on Redis.

Shape of the state (keys in :mod:`webhooks.keys`; ``docs/architecture.md`` draws it):

- Each endpoint has a *ready* list of delivery ids in ingest order. An endpoint with ready work,
  a free slot (``max_in_flight`` across all workers) and no pause is on its tenant's *runnable*
  list; a tenant with a runnable endpoint is on the global *active* list.
- A worker rotates the active list (``LMOVE`` head to tail: round robin over tenants) and leases
  from that tenant (:func:`lease`): round robin over its runnable endpoints, each giving at most
  ``quantum`` deliveries and never more than its free slots. A lease is registered with an expiry
  in the same script; the worker extends it while it works (:func:`heartbeat`). The lease carries
  its endpoints' documents and revisions (``rev``, bumped by every endpoint write); the worker
  sends nothing on a copy whose revision moved (:func:`endpoint_revisions`, and
  :func:`take_send_slot`, which grants no rate-limit slot to a stale copy).
- :func:`complete` records outcomes only for deliveries still under the caller's lease, gives
  the endpoint slots back, and keeps the breaker and throttling state.
- Failures wait in their endpoint's *due* zset; the scheduler's :func:`tick` of a tenant moves
  due deliveries back, lifts pauses that are over and returns the deliveries of expired leases.
  The global *wake* zset says when each tenant needs a tick.

Fairness (deficit round robin with unit costs): every lease visit of a tenant grants it at most
``quantum_tenant`` deliveries, and tenants are visited in a cycle, so between two visits of a
backlogged tenant every other backlogged tenant is visited once: over any stretch in which both
keep work ready, the deliveries granted to two tenants differ by at most one quantum, whatever
either holds. Within a tenant the same argument holds over its endpoints with ``quantum``. Since
every delivery costs one unit, the deficit counter of DRR never carries over and is omitted.
A tenant whose endpoints are all at their ``max_in_flight`` is skipped, not waited for.

Every transition is one Lua script over the keys of one tenant (one Redis Cluster hash slot),
hence atomic: a process killed at any moment leaves each delivery in exactly one of a ready list,
a lease, a due zset, or a final state. The global active and wake entries are written by separate
idempotent calls after the script; a crash between the two is repaired by the scheduler's sweep
(:func:`repair`). Only the scheduler removes tenants from the active list (:func:`retire_idle`),
so removals cannot race one another. Deliveries are at least once: a reclaimed delivery may
already have reached its receiver.
"""

import math
from dataclasses import dataclass, field
from typing import Any

import orjson
from redis.asyncio import Redis

from webhooks import ids, keys
from webhooks.queueing import reshard
from webhooks.queueing.history import StoredEvent
from webhooks.queueing.scripts import PartlyApplied, ScriptCall, run_scripts, scripts

IDEMPOTENCY_TTL_S = 24 * 3600
DEFAULT_RETENTION_MS = 30 * 86400 * 1000
ERROR_CHARS = 200  # the most of an error kept with a dead delivery's operational summary


class StaleRoutes(Exception):
    """The endpoints of ``tenant_id`` changed after the events were routed; nothing was written."""

    def __init__(self, tenant_id: str) -> None:
        super().__init__(tenant_id)
        self.tenant_id = tenant_id


async def activate(r: "Redis", tenant_ids: list[str]) -> None:
    """Put tenants that a script marked active on the global active list (the second, separate call),
    each unless it is on it already. Pushing every activation instead let a tenant whose endpoint
    sat at its ``max_in_flight`` (deactivated by each lease, activated again by each outcome flush)
    gather hundreds of entries between two retirements, so the rotation visited it hundreds of times
    per visit of anyone else."""
    if tenant_ids:
        await scripts(r).global_(keys=[keys.ACTIVE], args=["push", *tenant_ids])


async def wake_at(r: "Redis", wakes: dict[str, int], key: str = keys.WAKE) -> None:
    """Ask the scheduler to tick these tenants by the given times (keeping any earlier time); with
    ``key`` = :data:`keys.OPS_DUE`, to emit their operational notifications by then."""
    if wakes:
        args: list[str | int] = ["wake"]
        for tenant_id, at_ms in wakes.items():
            args += [at_ms, tenant_id]
        await scripts(r).global_(keys=[key], args=args)


# -- ingest ---------------------------------------------------------------------------------------


# Not frozen: one is made per event or delivery on the hot path, and a frozen dataclass's
# __init__ costs about three times as much. Treated as immutable all the same.
@dataclass(slots=True)
class NewEvent:
    """An event ready to store: routed, its record (webhooks/queueing/history.py) built once."""

    tenant_id: str
    event_id: str
    event_type: str
    created_ms: int
    record: str
    idempotency_key: str
    deliveries: list[tuple[str, str]]  # (delivery id, endpoint id)
    routes_version: str | None = None  # the endpoint version routing used; checked at write time
    generated_id: bool = False  # the platform made the id up: no stored event can have it
    derived_ids: bool = False  # the event id and the delivery ids share one stem (webhooks.ids)


async def ingest(
    r: "Redis",
    events: list[NewEvent],
    retention_ms: int = DEFAULT_RETENTION_MS,
    *,
    errors_in_place: bool = False,
) -> list[StoredEvent | Exception | None]:
    """Store events with their deliveries on their endpoints' ready lists: one script per tenant.

    Returns, per event, None when it was stored now, the stored event that its id or idempotency
    key already names (nothing new is queued for it), or :class:`StaleRoutes` when its tenant's
    endpoints changed since routing (nothing of that tenant was written). Each tenant's events
    are stored all or none. When a tenant's script fails (a primary away, the tenant paused by a
    slot move, memory refused), nothing of that tenant is written and the other tenants of the
    call are stored and activated; the first such error is then raised, or with
    ``errors_in_place`` it is the reply of each of that tenant's events. An error of the whole
    call (Redis unreachable) is raised.
    """
    if not events:
        return []
    by_tenant: dict[str, list[int]] = {}
    for i, ev in enumerate(events):
        by_tenant.setdefault(ev.tenant_id, []).append(i)
    script = scripts(r).ingest
    calls: list[ScriptCall] = []
    for tenant_id, positions in by_tenant.items():
        first = events[positions[0]]
        args: list[str | int] = [IDEMPOTENCY_TTL_S, retention_ms, first.routes_version or ""]
        for i in positions:
            ev = events[i]
            fields = [
                ("!" if ev.generated_id else "") + ("~" if ev.derived_ids else "") + ev.event_id,
                ev.idempotency_key,
                ev.event_type,
                str(ev.created_ms),
                str(len(ev.deliveries)),
            ]
            for delivery_id, endpoint_id in ev.deliveries:
                fields += [delivery_id, endpoint_id]
            fields.append("")  # the head ends with a newline
            args += ["\n".join(fields), ev.record]
        calls.append((script, [keys.tenant_base(tenant_id)], args))
    replies = await run_scripts(r, calls, errors_in_place=True)
    out: list[StoredEvent | Exception | None] = [None] * len(events)
    to_activate = []
    for (tenant_id, positions), reply in zip(by_tenant.items(), replies, strict=True):
        if isinstance(reply, Exception) or reply[0] == "stale":
            failed = reply if isinstance(reply, Exception) else StaleRoutes(tenant_id)
            for i in positions:
                out[i] = failed
            continue
        if int(reply[0]):
            to_activate.append(tenant_id)
        existing = reply[1]
        for j in range(0, len(existing), 2):
            event_id, _, record = existing[j + 1].partition("\n")
            out[positions[int(existing[j]) - 1]] = StoredEvent(tenant_id, event_id, record)
    await activate(r, to_activate)
    first_error = next((x for x in replies if isinstance(x, Exception)), None)
    if first_error is not None and not errors_in_place:
        raise first_error
    return out


# -- leasing --------------------------------------------------------------------------------------


# Not frozen: one is made per event or delivery on the hot path, and a frozen dataclass's
# __init__ costs about three times as much. Treated as immutable all the same.
@dataclass(slots=True)
class LeasedDelivery:
    id: str
    tenant_id: str
    event_id: str
    endpoint_id: str
    attempt_count: int
    series_attempts: int


@dataclass(slots=True)
class Lease:
    id: str
    tenant_id: str
    deliveries: list[LeasedDelivery]
    events: dict[str, StoredEvent | None]  # event id -> record
    endpoints: dict[str, tuple[dict[str, Any] | None, bool]]  # id -> (document, disabled)
    # id -> the endpoint's revision when the documents were read (lua/lease.lua): a copy whose
    # revision has moved since is stale (endpoint_revisions, take_send_slot)
    revisions: dict[str, str] = field(default_factory=dict)


async def next_tenant(r: "Redis") -> str | None:
    """The next tenant in the round robin of tenants with work (rotated to the tail); None: none."""
    found = await scripts(r).global_(keys=[keys.ACTIVE], args=["rotate"])
    return None if found is None else str(found)


async def lease(r: "Redis", tenant_id: str, n: int, ttl_ms: int, now_ms: int, quantum: int = 64) -> Lease:
    """Take up to ``n`` of the tenant's deliveries under a new lease (possibly none).

    When the tenant has nothing runnable left it is reported idle (the scheduler, the only one
    that removes tenants from the active list, retires it), and the lease's expiry is registered
    as a wake time, so the scheduler reclaims it if we die.
    """
    lease_id = ids.new_id(ids.LEASE, now_ms)
    expiry = now_ms + ttl_ms
    ds, es, eps, deactivate = await scripts(r).lease(
        keys=[keys.tenant_base(tenant_id)], args=[lease_id, n, expiry, now_ms, quantum]
    )
    deliveries = [
        LeasedDelivery(ds[i], tenant_id, ds[i + 1], ds[i + 2], int(ds[i + 3] or 0), int(ds[i + 4] or 0))
        for i in range(0, len(ds), 5)
    ]
    events = {
        es[i]: (StoredEvent(tenant_id, es[i], es[i + 1]) if es[i + 1] else None) for i in range(0, len(es), 2)
    }
    endpoints = {
        eps[i]: ((orjson.loads(eps[i + 1]) if eps[i + 1] else None), eps[i + 2] == "1")
        for i in range(0, len(eps), 4)
    }
    revisions = {eps[i]: str(eps[i + 3]) for i in range(0, len(eps), 4)}
    script = scripts(r).global_
    calls: list[ScriptCall] = []
    if int(deactivate):
        calls.append((script, [keys.IDLE], ["idle", tenant_id]))
    if deliveries:
        calls.append((script, [keys.WAKE], ["wake", expiry, tenant_id]))
    await run_scripts(r, calls)
    return Lease(lease_id, tenant_id, deliveries, events, endpoints, revisions)


@dataclass(slots=True)
class Outcome:
    """What became of one leased delivery; see ``complete.lua`` for the fields' meaning."""

    delivery_id: str
    lease_id: str
    status: str
    attempt_count: int
    series_attempts: int
    tenant_id: str
    endpoint_id: str
    attempt: str | None = None  # an attempt line (webhooks.queueing.history.attempt_line)
    due_ms: int | None = None
    gone: bool = False
    status_code: int | None = None
    ok: bool = False
    throttle: bool = False
    pause_ms: int | None = None  # the whole endpoint waits until then (a Retry-After)
    back: bool = False  # handed back unsent (stopping, endpoint changed): head of the ready list
    error: str | None = None  # why it died (kept for operational summaries when status is dead)

    def record(self) -> str:
        rec: dict[str, Any] = {
            "id": self.delivery_id,
            "l": self.lease_id,
            "s": self.status,
            "n": self.attempt_count,
            "sn": self.series_attempts,
            "ep": self.endpoint_id,
            "ok": 1 if self.ok else 0,
            "th": 1 if self.throttle else 0,
        }
        if self.attempt is not None:
            rec["a"] = self.attempt
        if self.due_ms is not None:
            rec["due"] = self.due_ms
        if self.pause_ms is not None:
            rec["pause"] = self.pause_ms
        if self.gone:
            rec["gone"] = True
        if self.back:
            rec["back"] = 1
        if self.status_code is not None:
            rec["code"] = self.status_code
        if self.error is not None and self.status == "dead":
            rec["err"] = self.error[:ERROR_CHARS]
        return orjson.dumps(rec).decode()


@dataclass(frozen=True, slots=True)
class Breaker:
    """When an endpoint's circuit opens and how long it stays open (see ``complete.lua``)."""

    failures: int = 5
    pause_ms: int = 5000
    max_pause_ms: int = 30000
    disable_after_ms: int = 5 * 86400 * 1000


@dataclass(slots=True)
class Completed:
    applied: int = 0
    breakers_opened: int = 0
    disabled: list[tuple[str, str, str]] = field(default_factory=list)  # (tenant, endpoint, reason)
    ops_due: dict[str, int] = field(default_factory=dict)  # tenant -> ms its notifications are due


async def complete(
    r: "Redis",
    outcomes: list[Outcome],
    finished_leases: list[tuple[str, str]],
    now_ms: int,
    retention_ms: int = DEFAULT_RETENTION_MS,
    breaker: Breaker = Breaker(),
    ops_window_ms: int = 0,
    ops_skip: str = "",
) -> Completed:
    """Apply outcomes (only those whose lease still holds) and release finished ``(tenant, lease)``s.

    One script per tenant, pipelined; each is atomic. Settled deliveries expire ``retention_ms``
    later. Tenants that have runnable work again are put back on the active list. With
    ``ops_window_ms`` > 0 the scripts record operational notifications (``webhooks.intake.operational``)
    for every tenant but ``ops_skip`` (the operator tenant), and their due times go to
    :data:`keys.OPS_DUE`. When some tenants' scripts fail and others' are applied,
    :class:`PartlyApplied` names the failed tenants (to write again) and carries the
    :class:`Completed` of the rest.
    """
    by_tenant: dict[str, tuple[list[str], list[str]]] = {}
    for o in outcomes:
        by_tenant.setdefault(o.tenant_id, ([], []))[1].append(o.record())
    for tenant_id, lease_id in finished_leases:
        by_tenant.setdefault(tenant_id, ([], []))[0].append(lease_id)
    if not by_tenant:
        return Completed()
    script = scripts(r).complete
    head = [now_ms, retention_ms, breaker.failures, breaker.pause_ms, breaker.max_pause_ms]
    calls: list[ScriptCall] = []
    for tenant_id, (leases, records) in by_tenant.items():
        window = 0 if tenant_id == ops_skip else ops_window_ms
        args: list[str | int] = [*head, breaker.disable_after_ms, window, len(leases), *leases, *records]
        calls.append((script, [keys.tenant_base(tenant_id)], args))
    replies = await run_scripts(r, calls, errors_in_place=True)
    failed = {t: rep for t, rep in zip(by_tenant, replies, strict=True) if isinstance(rep, BaseException)}
    if len(failed) == len(by_tenant):
        raise next(iter(failed.values()))
    done = Completed()
    to_activate = []
    wakes: dict[str, int] = {}
    for tenant_id, reply in zip(by_tenant, replies, strict=True):
        if tenant_id in failed:
            continue
        applied, act, opened, disabled, wake, ops_at = reply
        if int(wake) >= 0:
            wakes[tenant_id] = int(wake)
        if int(ops_at) >= 0:
            done.ops_due[tenant_id] = int(ops_at)
        done.applied += int(applied)
        done.breakers_opened += int(opened)
        done.disabled += [(tenant_id, disabled[i], disabled[i + 1]) for i in range(0, len(disabled), 2)]
        if int(act):
            to_activate.append(tenant_id)
    await activate(r, to_activate)
    await wake_at(r, wakes)
    await wake_at(r, done.ops_due, keys.OPS_DUE)
    if failed:
        raise PartlyApplied(set(failed), next(iter(failed.values())), done)
    return done


async def heartbeat(r: "Redis", leases: list[tuple[str, str]], expiry_ms: int) -> list[str]:
    """Extend live ``(tenant, lease)``s to ``expiry_ms``; the ids of those already reclaimed (not revived).

    When some tenants' scripts fail, :class:`PartlyApplied` names them and carries the reclaimed
    ids among the others (whose leases were extended)."""
    by_tenant: dict[str, list[str]] = {}
    for tenant_id, lease_id in leases:
        by_tenant.setdefault(tenant_id, []).append(lease_id)
    if not by_tenant:
        return []
    script = scripts(r).heartbeat
    calls: list[ScriptCall] = [
        (script, [keys.tenant_base(t)], [expiry_ms, *lease_ids]) for t, lease_ids in by_tenant.items()
    ]
    replies = await run_scripts(r, calls, errors_in_place=True)
    failed = {t: rep for t, rep in zip(by_tenant, replies, strict=True) if isinstance(rep, BaseException)}
    gone = [str(x) for reply in replies if not isinstance(reply, BaseException) for x in reply]
    if failed:
        if len(failed) == len(by_tenant):
            raise next(iter(failed.values()))
        raise PartlyApplied(set(failed), next(iter(failed.values())), gone)
    return gone


# -- the scheduler's side ---------------------------------------------------------------------------


@dataclass(slots=True)
class Ticked:
    leases: int = 0
    reclaimed: int = 0
    promoted: int = 0
    tenants: int = 0
    paused: int = 0  # tenants whose slot is moving (webhooks/queueing/reshard.py): ticked again soon


RETICK_MS = 100  # a tenant whose tick failed is visited again this much later


async def tick(r: "Redis", tenant_ids: list[str], now_ms: int, most: int = 1000) -> Ticked:
    """Visit tenants: reclaim expired leases, promote due deliveries, lift pauses; set their next wake.

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
    calls: list[ScriptCall] = [(script, [keys.tenant_base(t)], [now_ms, most]) for t in tenant_ids]
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
        n_leases, n_back, n_promoted, act, wake, _ = reply
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


async def repair(r: "Redis", tenant_ids: list[str], now_ms: int) -> int:
    """The sweep: tick these tenants, put back on the active list those marked active but absent,
    and leave one entry to those with more (the scheduler only: see :func:`retire_idle`).

    This is what repairs a crash between a tenant's script and the global call after it (a lost
    activation or wake time). Returns the number of tenants put back on the active list.
    """
    await tick(r, tenant_ids, now_ms)
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


async def requeue(
    r: "Redis",
    tenant_id: str,
    delivery_ids: list[str],
    *,
    mode: str,
    now_ms: int,
    first_due_ms: int = 0,
    step_ms: int = 0,
    retention_ms: int = DEFAULT_RETENTION_MS,
) -> list[str]:
    """Manual retry (``mode='retry'``) or dead-letter replay (``'replay'``); statuses before, per id."""
    if not delivery_ids:
        return []
    statuses, act, wake = await scripts(r).requeue(
        keys=[keys.tenant_base(tenant_id)],
        args=[now_ms, mode, first_due_ms, step_ms, retention_ms, *delivery_ids],
    )
    if int(act):
        await activate(r, [tenant_id])
    if int(wake) >= 0:
        await wake_at(r, {tenant_id: int(wake)})
    return [str(s) for s in statuses]


def rate_window(per_s: float) -> tuple[int, int]:
    """``(window ms, sends per window)`` for a limit of ``per_s`` sends per second (fractions allowed)."""
    window_s = max(1, math.ceil(1 / per_s))
    return window_s * 1000, max(1, int(per_s * window_s))


STALE = -1  # take_send_slot: the endpoint changed since the caller's copy was read


async def take_send_slot(
    r: "Redis", tenant_id: str, endpoint_id: str, per_s: float, now_ms: int, revision: str | None = None
) -> int:
    """0 when a send to this endpoint fits its rate limit now; else the ms until the next window.
    With ``revision`` (the endpoint's when the caller read it, :attr:`Lease.revisions`): :data:`STALE`
    and no slot taken when the endpoint was changed since, in the same round trip."""
    window_ms, allowed = rate_window(per_s)
    args: list[str | int] = [endpoint_id, now_ms, window_ms, allowed]
    if revision is not None:
        args.append(revision)
    return int(await scripts(r).rate(keys=[keys.tenant_base(tenant_id)], args=args))


async def endpoint_revisions(r: "Redis", tenant_id: str, endpoint_ids: list[str]) -> dict[str, str]:
    """The current revision of each endpoint (field ``rev`` of its hash, bumped by every endpoint
    write; ``"0"`` before the first), in one round trip: a worker compares them with its lease's
    :attr:`Lease.revisions` to tell whether its copies are still current."""
    async with r.pipeline(transaction=False) as pipe:
        for endpoint_id in endpoint_ids:
            pipe.hget(keys.endpoint(tenant_id, endpoint_id), "rev")
        got = await pipe.execute()
    return {e: str(v or "0") for e, v in zip(endpoint_ids, got, strict=True)}


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
