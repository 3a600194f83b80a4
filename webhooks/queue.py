"""The delivery queue: ingest, leases, outcomes, retries and recovery, on Redis.

Shape of the state (keys in :mod:`webhooks.keys`):

- ``ready``: a list of delivery ids to attempt now; ingest appends to it.
- a *lease* takes ids from ``ready`` into its own list and registers itself in
  the ``leases`` zset with an expiry, in one script; the worker holding it
  extends the expiry while it works (:func:`heartbeat`).
- :func:`complete` records outcomes only for deliveries still under the
  caller's lease, and releases finished leases.
- failures wait in the ``due`` zset until :func:`promote` moves them back.
- :func:`reclaim` returns the deliveries of expired leases (a dead worker's)
  to the front of ``ready``.

Every transition is one Lua script, hence atomic: a process killed at any
moment leaves each delivery in exactly one of ready, a lease, due, or a final
state. Deliveries are at least once: a reclaimed delivery may already have
reached its receiver.
"""

import importlib.resources
import math
from dataclasses import dataclass, field
from typing import Any, cast

import orjson
from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from webhooks import ids, keys

IDEMPOTENCY_TTL_S = 24 * 3600
DEFAULT_RETENTION_MS = 30 * 86400 * 1000


def _script_source(name: str) -> str:
    return importlib.resources.files("webhooks").joinpath(f"lua/{name}.lua").read_text()


class Scripts:
    """The Lua scripts, registered on one client (EVALSHA with automatic reload)."""

    def __init__(self, r: "Redis") -> None:
        self.ingest: AsyncScript = r.register_script(_script_source("ingest"))
        self.lease: AsyncScript = r.register_script(_script_source("lease"))
        self.complete: AsyncScript = r.register_script(_script_source("complete"))
        self.reclaim: AsyncScript = r.register_script(_script_source("reclaim"))
        self.promote: AsyncScript = r.register_script(_script_source("promote"))
        self.requeue: AsyncScript = r.register_script(_script_source("requeue"))
        self.rate: AsyncScript = r.register_script(_script_source("rate"))
        self.heartbeat: AsyncScript = r.register_script(_script_source("heartbeat"))


_scripts: dict[int, Scripts] = {}


def scripts(r: "Redis") -> Scripts:
    found = _scripts.get(id(r))
    if found is None:
        found = _scripts[id(r)] = Scripts(r)
    return found


class StaleRoutes(Exception):
    """The endpoints of ``tenant_id`` changed after the events were routed; nothing was written."""

    def __init__(self, tenant_id: str) -> None:
        super().__init__(tenant_id)
        self.tenant_id = tenant_id


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event ready to store: routed, its body serialized once."""

    tenant_id: str
    event_id: str
    event_type: str
    created_ms: int
    body: str
    idempotency_key: str
    deliveries: list[tuple[str, str]]  # (delivery id, endpoint id)
    routes_version: str | None = None  # the endpoint version routing used; checked at write time
    generated_id: bool = False  # the platform made the id up: no stored event can have it

    def document(self) -> str:
        return orjson.dumps(
            {
                "id": self.event_id,
                "tenant_id": self.tenant_id,
                "event_type": self.event_type,
                "created_at": self.created_ms,
                "body": self.body,
                "deliveries": self.deliveries,
            }
        ).decode()


async def ingest(
    r: "Redis", events: list[NewEvent], retention_ms: int = DEFAULT_RETENTION_MS
) -> list[dict[str, Any] | None]:
    """Store events with their deliveries on ``ready``, all in one transaction.

    Returns, per event, None when it was stored now, or the stored document of
    the event its id or idempotency key already names (nothing new is queued
    for it). Either every event is stored or, on a Redis error, none.
    """
    if not events:
        return []
    args: list[str | int] = [keys.PREFIX, IDEMPOTENCY_TTL_S, retention_ms]
    for ev in events:
        args += [
            ev.tenant_id,
            "!" + ev.event_id if ev.generated_id else ev.event_id,
            ev.idempotency_key,
            ev.event_type,
            ev.created_ms,
            ev.routes_version or "",
            ev.document(),
            len(ev.deliveries),
        ]
        for delivery_id, endpoint_id in ev.deliveries:
            args += [delivery_id, endpoint_id]
    raw = await scripts(r).ingest(keys=[], args=args)
    if raw and raw[0] == "stale":  # normal entries are "" or a JSON document
        raise StaleRoutes(raw[1])
    return [orjson.loads(item) if item else None for item in raw]


@dataclass(frozen=True, slots=True)
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
    deliveries: list[LeasedDelivery]
    events: dict[str, dict[str, Any] | None]  # "tenant:event" -> document
    endpoints: dict[str, tuple[dict[str, Any] | None, bool]]  # id -> (document, disabled)
    taken: int = 0  # ids popped from ready, including stale ones that were skipped


async def lease(r: "Redis", n: int, ttl_ms: int, now_ms: int) -> Lease | None:
    """Take up to ``n`` ready deliveries under a new lease; None when ``ready`` is empty."""
    lease_id = ids.new_id(ids.LEASE, now_ms)
    ds, es, eps, taken = await scripts(r).lease(
        keys=[], args=[keys.PREFIX, lease_id, n, now_ms + ttl_ms, now_ms]
    )
    if not taken:
        return None
    deliveries = [
        LeasedDelivery(ds[i], ds[i + 1], ds[i + 2], ds[i + 3], int(ds[i + 4] or 0), int(ds[i + 5] or 0))
        for i in range(0, len(ds), 6)
    ]
    events = {es[i]: (orjson.loads(es[i + 1]) if es[i + 1] else None) for i in range(0, len(es), 2)}
    endpoints = {
        eps[i]: ((orjson.loads(eps[i + 1]) if eps[i + 1] else None), eps[i + 2] == "1")
        for i in range(0, len(eps), 3)
    }
    return Lease(lease_id, deliveries, events, endpoints, int(taken))


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
    attempt: dict[str, Any] | None = None
    due_ms: int | None = None
    gone: bool = False
    status_code: int | None = None
    ok: bool = False

    def record(self) -> str:
        rec: dict[str, Any] = {
            "id": self.delivery_id,
            "l": self.lease_id,
            "s": self.status,
            "n": self.attempt_count,
            "sn": self.series_attempts,
            "t": self.tenant_id,
            "ep": self.endpoint_id,
            "ok": 1 if self.ok else 0,
        }
        if self.attempt is not None:
            rec["a"] = orjson.dumps(self.attempt).decode()
        if self.due_ms is not None:
            rec["due"] = self.due_ms
        if self.gone:
            rec["gone"] = True
        if self.status_code is not None:
            rec["code"] = self.status_code
        return orjson.dumps(rec).decode()


async def complete(
    r: "Redis",
    outcomes: list[Outcome],
    finished_leases: list[str],
    now_ms: int,
    retention_ms: int = DEFAULT_RETENTION_MS,
) -> int:
    """Apply outcomes (only those whose lease still holds) and release finished leases, atomically.

    Settled deliveries (succeeded, dead) expire ``retention_ms`` later.
    """
    args: list[str | int] = [keys.PREFIX, now_ms, retention_ms, len(finished_leases), *finished_leases]
    args.extend(o.record() for o in outcomes)
    return int(await scripts(r).complete(keys=[], args=args))


async def heartbeat(r: "Redis", lease_ids: list[str], expiry_ms: int) -> list[str]:
    """Extend live leases to ``expiry_ms``; returns the ids of those already reclaimed (not revived)."""
    if not lease_ids:
        return []
    return [str(x) for x in await scripts(r).heartbeat(keys=[], args=[keys.PREFIX, expiry_ms, *lease_ids])]


async def reclaim(r: "Redis", now_ms: int, max_leases: int = 100) -> tuple[int, int]:
    """Return expired leases' deliveries to ready; ``(leases, deliveries)`` reclaimed."""
    n_leases, n_deliveries = await scripts(r).reclaim(keys=[], args=[keys.PREFIX, now_ms, max_leases])
    return int(n_leases), int(n_deliveries)


async def promote(r: "Redis", now_ms: int, max_items: int = 1000) -> int:
    """Move deliveries that are due by ``now_ms`` back to ready; the number moved."""
    return int(await scripts(r).promote(keys=[], args=[keys.PREFIX, now_ms, max_items]))


async def requeue(
    r: "Redis",
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
    out = await scripts(r).requeue(
        keys=[], args=[keys.PREFIX, now_ms, mode, first_due_ms, step_ms, retention_ms, *delivery_ids]
    )
    return [str(s) for s in out]


def rate_window(per_s: float) -> tuple[int, int]:
    """``(window ms, sends per window)`` for a limit of ``per_s`` sends per second (fractions allowed)."""
    window_s = max(1, math.ceil(1 / per_s))
    return window_s * 1000, max(1, int(per_s * window_s))


async def take_send_slot(r: "Redis", endpoint_id: str, per_s: float, now_ms: int) -> int:
    """0 when a send to this endpoint fits its rate limit now; else the ms until the next window."""
    window_ms, allowed = rate_window(per_s)
    return int(await scripts(r).rate(keys=[], args=[keys.PREFIX, endpoint_id, now_ms, window_ms, allowed]))


async def trim(r: "Redis", cutoff_ms: int) -> int:
    """Drop index entries older than ``cutoff_ms`` (their objects have expired); the number dropped.

    Dead-letter sets are trimmed by the time of death, delivery indexes by the time
    of creation encoded in the ids. A delivery that is still active keeps its own
    record (requeued ones do not expire) and stays reachable by id.
    """
    floor = "(" + ids.floor_id(ids.DELIVERY, cutoff_ms)
    tenant_ids = cast(list[str], await r.zrange(keys.TENANTS, 0, -1))
    async with r.pipeline(transaction=False) as pipe:
        pipe.zremrangebyscore(keys.DEAD_ALL, "-inf", f"({cutoff_ms}")
        for tenant_id in tenant_ids:
            pipe.zremrangebyscore(keys.tenant_dead(tenant_id), "-inf", f"({cutoff_ms}")
            pipe.zremrangebylex(keys.tenant_deliveries(tenant_id), "-", floor)
            pipe.zrange(keys.tenant_endpoints(tenant_id), 0, -1)
        results = await pipe.execute()
    dropped = int(results[0])
    endpoint_ids: list[str] = []
    for i in range(len(tenant_ids)):
        dropped += int(results[1 + 3 * i]) + int(results[2 + 3 * i])
        endpoint_ids.extend(results[3 + 3 * i])
    if endpoint_ids:
        async with r.pipeline(transaction=False) as pipe:
            for endpoint_id in endpoint_ids:
                pipe.zremrangebylex(keys.endpoint_deliveries(endpoint_id), "-", floor)
            dropped += sum(int(n) for n in await pipe.execute())
    return dropped


@dataclass(slots=True)
class Depths:
    ready: int = 0
    due: int = 0
    leases: int = 0
    dead: int = 0
    counters: dict[str, int] = field(default_factory=dict)


async def depths(r: "Redis") -> Depths:
    async with r.pipeline(transaction=False) as pipe:
        pipe.llen(keys.READY)
        pipe.zcard(keys.DUE)
        pipe.zcard(keys.LEASES)
        pipe.zcard(keys.DEAD_ALL)
        pipe.hgetall(keys.STATS)
        ready, due, leases, dead, stats = await pipe.execute()
    return Depths(ready, due, leases, dead, {k: int(v) for k, v in stats.items()})
