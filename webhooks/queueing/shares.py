"""Per-tenant storage shares: what each tenant holds in Redis, and how much it may.

Every tenant's stored bytes (pending work, history, dead letters) are counted as they change, in
the scripts that change them, with no scan: ``sb`` in the tenant's info hash. ``lua/ingest.lua``
adds an event's record plus :data:`EVENT_BYTES` and :data:`DELIVERY_BYTES` per delivery,
``lua/complete.lua`` each attempt line, and ``lua/trim.lua`` takes away what it drops (an event
whose record already expired by retention at the tenant's average: its bytes left over the events
its index still lists). It is an approximation by record sizes, calibrated on ``python -m
bench.memory`` (784 bytes of Redis memory per settled 50-byte event with one delivery; the count
gives 785), not a measure of Redis' allocations.

A tenant may hold ``share`` x ``maxmemory`` bytes: its own ``share`` in its info hash when the
admin set one (``PATCH /v1/tenants/{id}``), else ``WEBHOOKS_TENANT_MAX_SHARE`` (0.25). At it, its
ingest is refused inside the ingest script (nothing written) with 429 ``tenant_storage_full``;
the scheduler trims its settled history before anybody else's, and tells the operator when it
reaches :data:`WARN_AT` and 1.0 of its share (operational webhook ``tenant.storage``).
"""

from dataclasses import dataclass
from typing import cast

from redis.asyncio import Redis

from webhooks import keys
from webhooks.errors import Invalid

EVENT_BYTES = 350  # an event's key, expiry and index entry, beyond its record (lua/_common.lua)
DELIVERY_BYTES = 320  # a delivery's hash and list entry, beyond its attempt lines (lua/_common.lua)
DEFAULT_MAX_SHARE = 0.25  # WEBHOOKS_TENANT_MAX_SHARE's default
WARN_AT = 0.8  # the operator is told when a tenant reaches this share of its share, and all of it
RETRY_AFTER_S = 5.0
TRIM_FROM = 0.95  # the scheduler trims a tenant's settled history from this fraction of its share
TRIM_TO = 0.85  # down to this one


@dataclass(frozen=True, slots=True)
class TenantUsage:
    """One tenant's stored bytes against its share of Redis' ``maxmemory`` (0: no limit)."""

    tenant_id: str
    used_bytes: int
    max_share: float
    own_share: bool  # the admin set this tenant's share
    max_bytes: int  # Redis' maxmemory
    told: int = 0  # the level the operator was last told of (0, 80, 100; lua/outbox.lua)

    @property
    def limit_bytes(self) -> int:
        return int(self.max_share * self.max_bytes)

    @property
    def fraction(self) -> float:
        """How much of its share it holds (0 without a limit)."""
        return self.used_bytes / self.limit_bytes if self.limit_bytes else 0.0


async def usage(
    r: "Redis", tenant_ids: list[str], max_bytes: int, default_share: float = DEFAULT_MAX_SHARE
) -> list[TenantUsage]:
    """Each tenant's counted bytes and share (one pipelined read)."""
    async with r.pipeline(transaction=False) as pipe:
        for t in tenant_ids:
            pipe.hmget(keys.tenant(t), ["sb", "share", "sl"])
        rows = cast(list[list[str | None]], await pipe.execute())
    return [
        TenantUsage(
            t,
            int(sb or 0),
            float(share) if share else default_share,
            share is not None,
            max_bytes,
            int(told or 0),
        )
        for t, (sb, share, told) in zip(tenant_ids, rows, strict=True)
    ]


def check_share(value: float) -> float:
    """A tenant's share of Redis' memory: more than 0, at most 1."""
    if not 0 < value <= 1:
        raise Invalid("max_share: a share of Redis' memory, more than 0 and at most 1")
    return value


async def set_share(r: "Redis", tenant_id: str, share: float | None) -> None:
    """The admin sets the tenant's own share (None: back to the default)."""
    if share is None:
        await r.hdel(keys.tenant(tenant_id), "share")
    else:
        await r.hset(keys.tenant(tenant_id), "share", repr(check_share(share)))
