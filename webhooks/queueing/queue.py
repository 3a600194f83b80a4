"""The delivery queue on Redis: the lease and outcome transitions (lease, heartbeat, complete,
requeue, rate slots). New events enter through :mod:`webhooks.queueing.arrivals`; the scheduler's
side (tick, sweep, retire, trim) is :mod:`webhooks.queueing.upkeep`; :mod:`webhooks.queueing.depths`
counts what waits.

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
- Failures wait in their endpoint's *due* zset; the scheduler's ``upkeep.tick`` of a tenant moves
  due deliveries back, lifts pauses that are over and returns the deliveries of expired leases
  (:mod:`webhooks.queueing.upkeep`, with trimming).
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
(``upkeep.repair``). Only the scheduler removes tenants from the active list (``upkeep.retire_idle``),
so removals cannot race one another. Deliveries are at least once: a reclaimed delivery may
already have reached its receiver.
"""

import math
from dataclasses import dataclass, field
from typing import Any

import orjson
from redis.asyncio import Redis

from webhooks import ids, keys
from webhooks.queueing.history import StoredEvent
from webhooks.queueing.scripts import PartlyApplied, ScriptCall, run_scripts, scripts

DEFAULT_RETENTION_MS = 30 * 86400 * 1000
ERROR_CHARS = 200  # the most of an error kept with a dead delivery's operational summary


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


async def replay_chunk(
    r: "Redis",
    tenant_id: str,
    replay_id: str,
    delivery_ids: list[str],
    *,
    cursor: str,
    next_cursor: str,
    last: bool,
    step_ms: int,
    now_ms: int,
    retention_ms: int,
    created_ms: int,
    ttl_ms: int,
) -> int:
    """One chunk of a replay's job (``lua/replay_chunk.lua``): requeue what is still dead of
    ``delivery_ids`` and move the job's cursor from ``cursor`` to ``next_cursor``, atomically. Returns
    how many were requeued, -1 when the stored cursor is not ``cursor`` (the chunk was applied), -2 when
    the replay was cancelled."""
    n, act, wake = await scripts(r).replay_chunk(
        keys=[keys.tenant_base(tenant_id)],
        args=[
            now_ms,
            replay_id,
            cursor,
            next_cursor,
            1 if last else 0,
            step_ms,
            retention_ms,
            created_ms,
            ttl_ms,
            *delivery_ids,
        ],
    )
    if int(act):
        await activate(r, [tenant_id])
    if int(wake) >= 0:
        await wake_at(r, {tenant_id: int(wake)})
    return int(n)


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
