"""Which dead letters a filter selects (listing, replays, their counts)."""

from dataclasses import dataclass

from redis.asyncio import Redis

from webhooks import keys
from webhooks.errors import Invalid
from webhooks.queueing import history
from webhooks.queueing.scripts import scripts
from webhooks.stores import paging


@dataclass(frozen=True, slots=True)
class DeadFilter:
    """Which dead letters: ``status_code`` is the last attempt's response status, ``500``
    exactly, a class like ``5xx``, or ``none`` (no response: timeout, connection error)."""

    endpoint_id: str | None = None
    event_type: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    status_code: str | None = None

    def __post_init__(self) -> None:
        self.status_matches(None)  # a bad status_code is refused before anything is read

    def status_matches(self, code: int | None) -> bool:
        if self.status_code is None:
            return True
        spec = self.status_code.strip().lower()
        if spec == "none":
            return code is None
        if len(spec) == 3 and spec[0] in "12345" and spec[1:] == "xx":
            return code is not None and code // 100 == int(spec[0])
        if spec.isdigit() and 100 <= int(spec) <= 599:
            return code == int(spec)
        raise Invalid(f"status_code: a status (500), a class (5xx) or none, not {self.status_code!r}")


def dead_matches(tenant_id: str, delivery_id: str, h: dict[str, str], f: DeadFilter) -> bool:
    """Whether a delivery's hash is a dead letter ``f`` selects."""
    if h.get("s") != "dead":
        return False
    if f.endpoint_id and h["p"] != f.endpoint_id:
        return False
    if f.event_type and h.get("y") != f.event_type:
        return False
    if f.status_code is None:
        return True
    return f.status_matches(history.delivery(tenant_id, delivery_id, h).last_status_code)


COUNT_SLICE = 20000  # dead letters read per script call of a count (a few ms of Redis each)


async def count_dead(r: "Redis", tenant_id: str, f: DeadFilter, until_ms: int | None) -> int:
    """How many of the tenant's dead letters ``f`` selects, died by ``until_ms``: one ZCOUNT when
    only the time window filters; by endpoint or event type, ``lua/dead_count.lua`` over slices of
    the window (about 100,000 a second here); by status code, one read per dead letter in the window
    (the last attempt's status is packed in the delivery's history)."""
    low = "-inf" if f.since_ms is None else str(f.since_ms)
    high = "+inf" if until_ms is None else str(until_ms)
    if not (f.endpoint_id or f.event_type or f.status_code):
        return int(await r.zcount(keys.tenant_dead(tenant_id), low, high))
    n = 0
    if f.status_code is None:
        offset = 0
        while True:
            found, read = await scripts(r).dead_count(
                keys=[keys.tenant_base(tenant_id)],
                args=[low, high, offset, COUNT_SLICE, f.endpoint_id or "", f.event_type or ""],
            )
            n += int(found)
            offset += int(read)
            if int(read) < COUNT_SLICE:
                return n
    async for rows in paging.scored_scan(
        r, keys.tenant_dead(tenant_id), since_ms=f.since_ms, until_ms=until_ms, chunk=5000
    ):
        async with r.pipeline(transaction=False) as pipe:
            for member, _ in rows:
                pipe.hgetall(keys.delivery(tenant_id, member))
            found_rows = await pipe.execute()
        n += sum(dead_matches(tenant_id, m, h, f) for (m, _), h in zip(rows, found_rows, strict=True))
    return n
