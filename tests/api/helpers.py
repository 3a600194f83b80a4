"""Helpers for the API tests: drive deliveries without a worker, read all of Redis, post events.

Deliveries are moved with the queue's own transitions (:mod:`webhooks.queueing.queue`: lease, complete,
promote) on an asyncio client of the test's real Redis, exactly as a worker would record them.
"""

import time
from collections.abc import Iterable, Mapping
from typing import Any

import httpx
import redis
from redis.asyncio import Redis as AsyncRedis

from tests.support.outcomes import outcome_of
from webhooks import keys
from webhooks.queueing import depths, queue, upkeep

# kind -> (new status, status code of the attempt, error of the attempt)
OUTCOMES: dict[str, tuple[str, int | None, str | None]] = {
    "succeeded": ("succeeded", 200, None),
    "retrying": ("retrying", 500, None),
    "timeout": ("retrying", None, "timeout: no complete answer within 3s"),
    "dead": ("dead", 500, None),
    "dead_timeout": ("dead", None, "timeout: no complete answer within 3s"),
    "gone": ("dead", 410, None),
}
RETRY_IN_MS = 60_000


def now_ms() -> int:
    return int(time.time() * 1000)


async def _lease_everything(r: AsyncRedis, at_ms: int) -> list[queue.Lease]:
    """Lease every ready delivery of every tenant, as workers would (no endpoint cap in the way)."""
    for tenant_id in await depths.tenant_ids(r):
        for endpoint_id in await r.zrange(keys.tenant_endpoints(tenant_id), 0, -1):
            await r.hset(keys.endpoint(tenant_id, endpoint_id), "mif", 1_000_000)
            await r.hdel(keys.endpoint(tenant_id, endpoint_id), "cap")  # no slow start either
    leases = []
    empty = 0  # leases in a row that found nothing: a whole rotation of them means all is leased
    while (tenant_id := await queue.next_tenant(r)) is not None:
        lease = await queue.lease(r, tenant_id, 100_000, ttl_ms=600_000, now_ms=at_ms, quantum=100_000)
        if lease.deliveries:
            leases.append(lease)
            empty = 0
        else:
            empty += 1
            if empty >= await r.llen(keys.ACTIVE):
                break
    await upkeep.retire_idle(r)  # as the scheduler would
    return leases


async def settle_async(redis_url: str, outcomes: Mapping[str, str], at_ms: int) -> int:
    """Give the named deliveries these outcomes; every other ready delivery goes back as it was."""
    r = AsyncRedis.from_url(redis_url, decode_responses=True)
    try:
        leases = await _lease_everything(r, at_ms)
        leased = {d.id for lease in leases for d in lease.deliveries}
        missing = set(outcomes) - leased
        assert not missing, f"not on a ready list: {sorted(missing)}"
        records = []
        for lease in leases:
            for d in lease.deliveries:
                kind = outcomes.get(d.id)
                if kind is None:  # not ours to settle: released with the lease, back to its ready list
                    continue
                status, code, error = OUTCOMES[kind]
                excerpt = None if code is None else '{"received": true}'
                records.append(
                    outcome_of(
                        lease.id,
                        d,
                        status,
                        code,
                        at_ms=at_ms,
                        duration_ms=12,
                        error=error,
                        excerpt=excerpt,
                        due_ms=at_ms + RETRY_IN_MS if status == "retrying" else None,
                        gone=kind == "gone",
                    )
                )
        done = await queue.complete(r, records, [(lease.tenant_id, lease.id) for lease in leases], at_ms)
        return done.applied
    finally:
        await r.aclose()


async def lease_async(redis_url: str, at_ms: int) -> list[str]:
    r = AsyncRedis.from_url(redis_url, decode_responses=True)
    try:
        return [d.id for lease in await _lease_everything(r, at_ms) for d in lease.deliveries]
    finally:
        await r.aclose()


def redis_text(rds: "redis.Redis") -> str:
    """Every key and every value of every type in Redis, as one text, to grep for secrets."""
    parts: list[str] = []
    for key in rds.keys("*"):
        parts.append(key)
        kind = rds.type(key)
        if kind == "string":
            parts.append(str(rds.get(key)))
        elif kind == "hash":
            for k, v in rds.hgetall(key).items():
                parts += [k, v]
        elif kind == "list":
            parts += rds.lrange(key, 0, -1)
        elif kind == "set":
            parts += list(rds.smembers(key))
        elif kind == "zset":
            parts += [m for m, _ in rds.zrange(key, 0, -1, withscores=True)]
        elif kind == "stream":
            parts += [str(e) for e in rds.xrange(key)]
        else:
            parts.append(f"<{kind}>")
    return "\n".join(parts)


def post_event(
    api: httpx.Client,
    auth: Mapping[str, str],
    event_type: str = "invoice.paid",
    payload: Any = None,
    **fields: Any,
) -> dict[str, Any]:
    body = {"event_type": event_type, "payload": {"n": 1} if payload is None else payload, **fields}
    resp = api.post("/v1/events", json=body, headers=dict(auth))
    assert resp.status_code == 202, resp.text
    return dict(resp.json())


def delivery_ids(events: Iterable[Mapping[str, Any]]) -> list[str]:
    return [d["id"] for e in events for d in e["deliveries"]]


def assert_error(resp: httpx.Response, status: int, *needles: str) -> dict[str, Any]:
    """The answer is ``status`` with the JSON error shape, and its message mentions every needle."""
    assert resp.status_code == status, f"{resp.status_code}: {resp.text}"
    assert resp.headers["content-type"].startswith("application/json")
    body = dict(resp.json())
    assert isinstance(body.get("error"), str) and body["error"], body
    assert isinstance(body.get("message"), str) and body["message"].strip(), body
    for needle in needles:
        assert needle in body["message"], f"{needle!r} not in {body['message']!r}"
    return body


def ready_ids(rds: "redis.Redis") -> list[str]:
    """Every delivery id on any endpoint's ready list (all tenants)."""
    return [d for key in sorted(rds.keys("wh:{t:*}:r:*")) for d in rds.lrange(key, 0, -1)]


def due_ids(rds: "redis.Redis") -> list[tuple[str, float]]:
    """Every ``(delivery id, due ms)`` waiting in any endpoint's due zset (all tenants)."""
    return sorted(
        (d, sc) for key in rds.keys("wh:{t:*}:due:*") for d, sc in rds.zrange(key, 0, -1, withscores=True)
    )


def dead_ids(rds: "redis.Redis") -> list[str]:
    """Every delivery id in any tenant's dead letters."""
    return sorted(d for key in rds.keys("wh:{t:*}:dead") for d in rds.zrange(key, 0, -1))
