"""Operational webhooks: the platform tells its operator about endpoints and dead letters.

With ``WEBHOOKS_OPERATIONAL_WEBHOOK_URL`` set, these event types go to that URL, signed with
``WEBHOOKS_OPERATIONAL_WEBHOOK_SECRET``:

- ``endpoint.disabled``: the engine disabled an endpoint (failing for ``WEBHOOKS_DISABLE_AFTER_S``
  without a success, or a 410 Gone), with the reason;
- ``endpoint.recovered``: an endpoint answered again after its circuit breaker opened or after the
  engine disabled it (and someone re-enabled it): its first success after the outage;
- ``delivery.dead``: a summary per tenant and endpoint of the deliveries that died there in one
  window (``WEBHOOKS_OPERATIONAL_SUMMARY_S``): count, first and last death, a few sample delivery
  ids, the last status code and error. An outage of one endpoint is one event per window, not
  one per dead delivery;
- ``endpoint.paused`` / ``endpoint.resumed``: someone paused or resumed an endpoint
  (``PATCH /v1/endpoints/{id} {"paused": ...}``; recorded by ``webhooks/stores/endpoints.py`` in
  the same transaction as the change).

They are delivered by the same engine as every other event: they are events of a reserved
**operator tenant** (:data:`OPERATOR_TENANT`) with one endpoint (:data:`OPERATOR_ENDPOINT`) at
that URL with that secret, which the scheduler creates or corrects at start (:func:`ensure`). So
they get the same retries, signing, breaker and durability, and their deliveries, dead letters and
replays are read and handled like any other's (the admin token with ``tenant_id``). The operator
tenant has no API key and is left out of ``GET /v1/tenants``; it cannot be deleted. Nothing is
recorded about the operator tenant itself: its dead letters would otherwise notify themselves.

Durability: the facts are recorded in the tenant's own keys by the script that makes them true
(``lua/complete.lua``: the outbox ``keys.ops_outbox`` and the summaries ``keys.ops_dead``), so a
worker dying right after loses none. The scheduler (:func:`emit_due`) closes summaries whose
window is over into the outbox, turns the outbox entries into events of the operator tenant
(their ids derive from the tenant and the entry's number, so emitting twice stores once), and only
then removes them from the outbox (``lua/outbox.lua``). When the URL is unset nothing is recorded.
"""

from dataclasses import dataclass, field
from typing import Any, cast

import orjson
from redis.asyncio import Redis

from webhooks import ids, keys
from webhooks.intake.ingest import EventIn, prepare
from webhooks.outbound.secretbox import SecretBox
from webhooks.outbound.signing import HMAC_SHA256
from webhooks.queueing import arrivals, queue
from webhooks.queueing.scripts import ScriptCall, run_scripts, scripts
from webhooks.timefmt import iso_from_ms

OPERATOR_TENANT = "ten_000000000000000000operator"
OPERATOR_ENDPOINT = "ep_000000000000000000operator"
OPERATOR_NAME = "operational webhooks"
ENDPOINT_DISABLED = "endpoint.disabled"
ENDPOINT_RECOVERED = "endpoint.recovered"
DELIVERY_DEAD = "delivery.dead"
ENDPOINT_PAUSED = "endpoint.paused"
ENDPOINT_RESUMED = "endpoint.resumed"
EVENT_TYPES = (ENDPOINT_DISABLED, ENDPOINT_RECOVERED, DELIVERY_DEAD, ENDPOINT_PAUSED, ENDPOINT_RESUMED)
OPS_OUTBOX_MAX = 1000  # lua/complete.lua keeps as many
MAX_IN_FLIGHT = 16
TENANTS_PER_PASS = 100
ENTRIES_PER_TENANT = 100
RETRY_AFTER_ERROR_MS = 1000
MAX_BODY_BYTES = 1 << 20
INGEST_CHUNK = 500


@dataclass(frozen=True, slots=True)
class Target:
    """Where operational webhooks go, and how often dead letters are summarised."""

    url: str
    secret: str = field(repr=False)  # whsec_...
    window_ms: int = 60_000


async def ensure(r: "Redis", box: SecretBox, target: Target, now_ms: int) -> bool:
    """Create or correct the operator tenant and its endpoint (idempotent); True when it wrote.

    The endpoint gets the target's URL and secret, enabled, with a fresh breaker; a restart so
    re-enables it after the engine disabled it.
    """
    ek = keys.endpoint(OPERATOR_TENANT, OPERATOR_ENDPOINT)
    raw = cast(dict[str, str], await r.hgetall(ek))
    old = orjson.loads(raw["doc"]) if "doc" in raw else None
    same = old is not None and old.get("url") == target.url and raw.get("disabled") == "0"
    if same and old is not None and box.open(old["secrets"][0]["s"]) == target.secret:
        return False
    doc: dict[str, Any] = {
        "id": OPERATOR_ENDPOINT,
        "tenant_id": OPERATOR_TENANT,
        "url": target.url,
        "description": "operational webhooks (WEBHOOKS_OPERATIONAL_WEBHOOK_URL)",
        "event_types": list(EVENT_TYPES),
        "headers": {},
        "rate_limit_per_s": None,
        "max_in_flight": MAX_IN_FLIGHT,
        "ordering": "parallel",
        "signing": HMAC_SHA256,
        "public_key": None,
        "secrets": [{"s": box.seal(target.secret), "exp": None}],
        "created_at": old["created_at"] if old else now_ms,
        "updated_at": now_ms,
    }
    async with r.pipeline(transaction=True) as pipe:
        pipe.hsetnx(keys.tenant(OPERATOR_TENANT), "created_at", now_ms)
        pipe.hset(keys.tenant(OPERATOR_TENANT), mapping={"id": OPERATOR_TENANT, "name": OPERATOR_NAME})
        fields = {"doc": orjson.dumps(doc), "disabled": "0", "disabled_reason": "", "mif": MAX_IN_FLIGHT}
        pipe.hset(ek, mapping=fields)  # type: ignore[arg-type]
        pipe.hdel(ek, "f", "fs", "od")
        pipe.hincrby(ek, "rev", 1)  # a worker's held copy of the old target is stale
        pipe.zadd(keys.tenant_endpoints(OPERATOR_TENANT), {OPERATOR_ENDPOINT: 0})
        pipe.incr(keys.endpoint_version(OPERATOR_TENANT))
        await pipe.execute()
    await r.zadd(keys.TENANTS, {OPERATOR_TENANT: 0})
    return True


def payload(tenant_id: str, entry: dict[str, Any], url: str | None) -> tuple[str, dict[str, Any]]:
    """The event type and payload of one outbox entry (``lua/complete.lua``, ``lua/outbox.lua``)."""
    kind = str(entry["k"])
    out: dict[str, Any] = {"tenant_id": tenant_id, "endpoint_id": entry["ep"], "url": url}
    if kind == ENDPOINT_DISABLED:
        out.update(
            reason=entry["reason"],
            failing_since=iso_from_ms(entry.get("since")),
            disabled_at=iso_from_ms(entry["at"]),
        )
    elif kind in (ENDPOINT_PAUSED, ENDPOINT_RESUMED):
        out["paused_at" if kind == ENDPOINT_PAUSED else "resumed_at"] = iso_from_ms(entry["at"])
    elif kind == ENDPOINT_RECOVERED:
        out.update(failing_since=iso_from_ms(entry.get("since")), recovered_at=iso_from_ms(entry["at"]))
    else:
        out.update(
            count=entry["count"],
            first_dead_at=iso_from_ms(entry["first"]),
            last_dead_at=iso_from_ms(entry["last"]),
            window_s=entry["window"] / 1000,
            sample_delivery_ids=list(entry.get("ids") or []),
            last_status_code=entry.get("code"),
            last_error=entry.get("err"),
        )
    return kind, out


def event_id_of(tenant_id: str, entry: dict[str, Any]) -> str:
    return ids.fixed_id(ids.EVENT, int(entry["at"]), f"{tenant_id}:{entry['n']}")


async def emit_due(
    r: "Redis", now_ms: int, window_ms: int, retention_ms: int = queue.DEFAULT_RETENTION_MS
) -> int:
    """Turn the notifications of tenants whose time has come into operator events; returns how many.

    A tenant's due entry is removed before its notifications are taken and its next due time added
    back after (keeping the earliest), so one registered meanwhile is never lost; on an error the
    tenants are put back to be tried again shortly, and what was stored already is stored once.
    """
    due = [str(t) for t in await r.zrangebyscore(keys.OPS_DUE, "-inf", now_ms, start=0, num=TENANTS_PER_PASS)]
    if not due:
        return 0
    await r.zrem(keys.OPS_DUE, *due)
    try:
        return await _emit(r, due, now_ms, window_ms, retention_ms)
    except Exception:
        await queue.wake_at(r, dict.fromkeys(due, now_ms + RETRY_AFTER_ERROR_MS), keys.OPS_DUE)
        raise


async def _emit(r: "Redis", due: list[str], now_ms: int, window_ms: int, retention_ms: int) -> int:
    script = scripts(r).outbox
    take: list[str | int] = ["take", now_ms, window_ms, ENTRIES_PER_TENANT]
    replies = await run_scripts(r, [(script, [keys.tenant_base(t)], take) for t in due])
    taken = [
        (t, [orjson.loads(e) for e in entries], int(next_due))
        for t, (entries, next_due) in zip(due, replies, strict=True)
    ]
    wanted = sorted({(t, e["ep"]) for t, entries, _ in taken for e in entries})
    async with r.pipeline(transaction=False) as pipe:
        for t, ep in wanted:
            pipe.hget(keys.endpoint(t, ep), "doc")
        docs = await pipe.execute()
    urls = {k: (orjson.loads(d)["url"] if d else None) for k, d in zip(wanted, docs, strict=True)}
    route = [(OPERATOR_ENDPOINT, False, None)]
    events = []
    for t, entries, _ in taken:
        for e in entries:
            kind, body = payload(t, e, urls[(t, e["ep"])])
            new = EventIn(kind, body, event_id_of(t, e))
            events.append(prepare(OPERATOR_TENANT, new, route, now_ms, MAX_BODY_BYTES))
    for i in range(0, len(events), INGEST_CHUNK):  # one script call each, on the operator's slot
        await arrivals.ingest(r, events[i : i + INGEST_CHUNK], retention_ms)
    acks: list[ScriptCall] = [
        (script, [keys.tenant_base(t)], ["ack", *[e["n"] for e in entries]])
        for t, entries, _ in taken
        if entries
    ]
    await run_scripts(r, acks)
    await queue.wake_at(r, {t: nd for t, _, nd in taken if nd >= 0}, keys.OPS_DUE)
    return len(events)


async def rescan(r: "Redis", tenant_ids: list[str], now_ms: int) -> int:
    """Mark due the tenants holding notifications (repairs a due time lost to a crash between a
    script and its global call, as the scheduler's sweep does for wake times); returns how many."""
    if not tenant_ids:
        return 0
    async with r.pipeline(transaction=False) as pipe:
        for t in tenant_ids:
            pipe.exists(keys.ops_outbox(t), keys.ops_dead(t))
        found = await pipe.execute()
    holding = [t for t, n in zip(tenant_ids, found, strict=True) if int(n)]
    await queue.wake_at(r, dict.fromkeys(holding, now_ms), keys.OPS_DUE)
    return len(holding)
