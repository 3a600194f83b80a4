"""Helpers for the API tests: drive deliveries without a worker, read all of Redis, post events.

Deliveries are moved with the queue's own transitions (:mod:`webhooks.queue`: lease, complete,
promote) on an asyncio client of the test's real Redis, exactly as a worker would record them.
"""

import time
from collections.abc import Iterable, Mapping
from typing import Any

import httpx
import redis
from redis.asyncio import Redis as AsyncRedis

from webhooks import queue
from webhooks.timefmt import iso_from_ms

READY = "wh:q:ready"
DUE = "wh:q:due"
DEAD = "wh:dead"

# kind -> (new status, status code of the attempt, error of the attempt)
OUTCOMES: dict[str, tuple[str, int | None, str | None]] = {
    "succeeded": ("succeeded", 200, None),
    "retrying": ("retrying", 500, None),
    "timeout": ("retrying", None, "timeout: no complete answer within 3s"),
    "dead": ("dead", 500, None),
    "gone": ("dead", 410, None),
}
RETRY_IN_MS = 60_000


def now_ms() -> int:
    return int(time.time() * 1000)


async def settle_async(redis_url: str, outcomes: Mapping[str, str], at_ms: int) -> int:
    r = AsyncRedis.from_url(redis_url, decode_responses=True)
    try:
        lease = await queue.lease(r, 100_000, ttl_ms=600_000, now_ms=at_ms)
        assert lease is not None, "nothing on the ready list to settle"
        leased = {d.id for d in lease.deliveries}
        missing = set(outcomes) - leased
        assert not missing, f"not on the ready list: {sorted(missing)}"
        records = []
        leftovers = 0
        for d in lease.deliveries:
            base = (d.id, lease.id)
            owner = (d.tenant_id, d.endpoint_id)
            kind = outcomes.get(d.id)
            if kind is None:  # not ours to settle: hand it back (due now, then promoted to ready)
                records.append(
                    queue.Outcome(*base, "pending", d.attempt_count, d.series_attempts, *owner, due_ms=at_ms)
                )
                leftovers += 1
                continue
            status, code, error = OUTCOMES[kind]
            records.append(
                queue.Outcome(
                    *base,
                    status,
                    d.attempt_count + 1,
                    d.series_attempts + 1,
                    *owner,
                    attempt={
                        "number": d.attempt_count + 1,
                        "at": iso_from_ms(at_ms),
                        "status_code": code,
                        "duration_ms": 12,
                        "error": error,
                        "response_excerpt": None if code is None else '{"received": true}',
                    },
                    due_ms=at_ms + RETRY_IN_MS if status == "retrying" else None,
                    gone=kind == "gone",
                    status_code=code,
                    ok=status == "succeeded",
                )
            )
        applied = await queue.complete(r, records, [lease.id], at_ms)
        if leftovers:
            await queue.promote(r, at_ms, leftovers)
        return applied - leftovers
    finally:
        await r.aclose()


async def lease_async(redis_url: str, at_ms: int) -> list[str]:
    r = AsyncRedis.from_url(redis_url, decode_responses=True)
    try:
        lease = await queue.lease(r, 100_000, ttl_ms=600_000, now_ms=at_ms)
        return [] if lease is None else [d.id for d in lease.deliveries]
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
