"""An endpoint's health, read from the scheduling state the engine already keeps.

Nothing on the delivery path does extra work for it: the fields are those the Lua scripts keep in
the endpoint's hash (``keys.endpoint``: ``f`` consecutive failures, ``h`` breaker half-open after
it opened, ``pu`` paused until ms, ``cap`` with ``th`` lowered by throttling, ``if`` in flight,
``pz`` paused by an operator) plus the lengths of its ready list and due zset and the earliest
due time. :func:`read_state` queues those reads on a pipeline (one round trip for a page of
endpoints), :func:`health_of` is pure and takes an explicit ``now_ms``.

The state, first that applies: ``disabled``; ``paused`` (an operator paused it); ``circuit_open``
(the breaker opened: ``next_attempt_at`` is when the probe goes, or went if it is in flight);
``throttled`` (502, 504 or 429 halved its requests in flight, not yet grown back); ``failing``
(its last attempts failed, fewer than open the breaker); ``healthy``.
"""

from typing import TYPE_CHECKING, Any

import orjson

from webhooks import keys
from webhooks.models import EndpointHealth
from webhooks.timefmt import iso_from_ms

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.client import Pipeline

HEALTHY, FAILING, CIRCUIT_OPEN, THROTTLED, PAUSED, DISABLED = (
    "healthy",
    "failing",
    "circuit_open",
    "throttled",
    "paused",
    "disabled",
)
STATES = (HEALTHY, FAILING, CIRCUIT_OPEN, THROTTLED, PAUSED, DISABLED)
READS_PER_ENDPOINT = 3


def read_state(pipe: "Pipeline", tenant_id: str, endpoint_id: str) -> None:
    """Queue the reads :func:`health_of` needs besides the endpoint's hash (three commands)."""
    pipe.llen(keys.ready(tenant_id, endpoint_id))
    pipe.zcard(keys.due(tenant_id, endpoint_id))
    pipe.zrange(keys.due(tenant_id, endpoint_id), 0, 0, withscores=True)


def _int(value: Any) -> int:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return 0


def health_of(
    h: dict[str, str], ready: int, retrying: int, first_due: list[Any], now_ms: int
) -> EndpointHealth:
    """The health of an endpoint whose hash is ``h``, from the results of :func:`read_state`."""
    paused_until = _int(h.get("pu"))
    next_ms: int | None = paused_until if paused_until > now_ms else None
    if h.get("h") == "1":
        state = CIRCUIT_OPEN
        next_ms = paused_until or None  # the probe: due, or already on its way
    elif h.get("cap") and h.get("th"):
        state = THROTTLED
    elif _int(h.get("f")) > 0:
        state = FAILING
    else:
        state = HEALTHY
    if h.get("pz") == "1":
        state, next_ms = PAUSED, None
    if h.get("disabled") == "1":
        state, next_ms = DISABLED, None
    if next_ms is None and first_due and state not in (PAUSED, DISABLED):
        next_ms = int(first_due[0][1])
    return EndpointHealth(
        state=state,
        consecutive_failures=_int(h.get("f")),
        next_attempt_at=iso_from_ms(next_ms) if next_ms else None,
        in_flight=max(0, _int(h.get("if"))),
        ready=ready,
        retrying=retrying,
    )


async def unhealthy(
    r: "Redis", tenant_ids: list[str], now_ms: int
) -> list[tuple[str, str, str, EndpointHealth]]:
    """``(tenant, endpoint, url, health)`` of every endpoint of these tenants that is not healthy,
    by tenant (``webhooks status``): two pipelined passes, the endpoint lists then their state."""
    async with r.pipeline(transaction=False) as pipe:
        for t in tenant_ids:
            pipe.zrange(keys.tenant_endpoints(t), 0, -1)
        lists = await pipe.execute() if tenant_ids else []
    endpoints = [(t, str(e)) for t, eps in zip(tenant_ids, lists, strict=True) for e in eps]
    if not endpoints:
        return []
    async with r.pipeline(transaction=False) as pipe:
        for t, e in endpoints:
            pipe.hgetall(keys.endpoint(t, e))
            read_state(pipe, t, e)
        replies = await pipe.execute()
    out = []
    step = 1 + READS_PER_ENDPOINT
    for i, (t, e) in enumerate(endpoints):
        h, ready, retrying, first_due = replies[i * step : (i + 1) * step]
        if "doc" not in h:
            continue
        state = health_of(h, int(ready), int(retrying), first_due, now_ms)
        if state.state != HEALTHY:
            out.append((t, e, str(orjson.loads(h["doc"]).get("url", "")), state))
    return out
