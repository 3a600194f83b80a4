"""New events entering the queue: an event's record and its deliveries, stored with one script
per tenant (``lua/ingest.lua``) onto their endpoints' ready lists, then the tenant activated
(:func:`webhooks.queueing.queue.activate`). Idempotency and the routes-version check live in the
script; :class:`StaleRoutes` is its "the endpoints changed" answer.
"""

from dataclasses import dataclass

from redis.asyncio import Redis

from webhooks import keys
from webhooks.errors import TenantStorageFull
from webhooks.queueing.history import StoredEvent
from webhooks.queueing.queue import DEFAULT_RETENTION_MS, activate
from webhooks.queueing.scripts import ScriptCall, run_scripts, scripts
from webhooks.queueing.shares import DEFAULT_MAX_SHARE, RETRY_AFTER_S

IDEMPOTENCY_TTL_S = 24 * 3600


class StaleRoutes(Exception):
    """The endpoints of ``tenant_id`` changed after the events were routed; nothing was written."""

    def __init__(self, tenant_id: str) -> None:
        super().__init__(tenant_id)
        self.tenant_id = tenant_id


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
    max_bytes: int = 0,
    max_share: float = DEFAULT_MAX_SHARE,
) -> list[StoredEvent | Exception | None]:
    """Store events with their deliveries on their endpoints' ready lists: one script per tenant.

    Returns, per event, None when it was stored now, the stored event that its id or idempotency
    key already names (nothing new is queued for it), :class:`StaleRoutes` when its tenant's
    endpoints changed since routing, or :class:`TenantStorageFull` when its tenant holds its share
    (``max_share``, or its own, of ``max_bytes``: Redis' maxmemory, 0 for none) already (in both
    cases nothing of that tenant was written). Each tenant's events
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
        args: list[str | int] = [
            *(IDEMPOTENCY_TTL_S, retention_ms, first.routes_version or "", max_bytes, repr(max_share))
        ]
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
        if isinstance(reply, Exception) or reply[0] in ("stale", "over"):
            failed = (
                reply
                if isinstance(reply, Exception)
                else StaleRoutes(tenant_id)
                if reply[0] == "stale"
                else TenantStorageFull(int(reply[1]), int(reply[2]), RETRY_AFTER_S)
            )
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
