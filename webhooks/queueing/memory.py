"""The memory budget: how full Redis is, and what the platform does about it.

Everything lives in Redis memory, so memory is a budget the platform keeps by itself, with no
setting needed: the scheduler reads Redis' ``used_memory`` and ``maxmemory`` five times a second
and publishes a *level* in :data:`webhooks.keys.MEMORY`:

- ``ok``: below the high watermark (``high_share`` of ``maxmemory``, 70 % by default).
- ``trimming``: above it; settled history is dropped oldest first (``webhooks/queueing/lua/trim.lua``)
  until usage is back under the low watermark (10 points lower). Pending, in-flight and retrying
  work is never dropped, nor are dead letters unless the operator allows it.
- ``full``: above the high watermark with no settled history left to drop (pending work alone
  fills it), or above the hard watermark (20 points higher, at most 95 %: ingest outran the
  trimming), or at ``maxmemory`` itself. Ingest answers 503 ``storage_full`` with ``Retry-After``;
  reads, deliveries and outcome writes go on, and the level falls back by itself once the work
  drains below the high watermark less a margin.

Each API process also reads ``used_memory`` itself every 0.1 s (:class:`LevelCache`) and refuses
ingest above the hard watermark without waiting for the scheduler: batch ingest writes tens of MB
a second, so a level that is a second old would let a small Redis run into ``maxmemory``, where
Redis refuses the workers' outcome writes too.

On a Redis Cluster each primary has its own ``maxmemory``; the level follows the fullest primary
(the first to refuse writes). Trimming drops the oldest settled history over all tenants, not
the fullest primary's first: a primary whose tenants hold only recent history is trimmed later.

With ``maxmemory`` 0 (no limit) there is no budget to keep: the level stays ``ok`` and the
processes warn at start (see :func:`webhooks.runtime.connection.warn_if_not_durable`).
"""

import time
from dataclasses import dataclass
from typing import Any, cast

from redis.asyncio import Redis

from webhooks import keys
from webhooks.runtime.connection import is_cluster

LOW_GAP = 0.10  # trimming goes on until usage is this share of maxmemory below the high watermark
FULL_EXIT_GAP = 0.05  # "full" ends once usage is this share below the high watermark
PUBLISH_TTL_MS = 5000  # a level nobody refreshes (no scheduler) lapses
RETRY_AFTER_S = 5
DEFAULT_HIGH_SHARE = 0.7  # the ``memory_high_watermark`` setting's default


@dataclass(frozen=True, slots=True)
class Usage:
    used_bytes: int
    max_bytes: int  # 0: no limit

    @property
    def share(self) -> float:
        return self.used_bytes / self.max_bytes if self.max_bytes else 0.0


def hard_share(high_share: float) -> float:
    """Above this share ingest waits even while history is being trimmed: trimming fell behind."""
    return min(0.95, high_share + 0.2)


def at_hard(usage: Usage, hard: float) -> bool:
    """At ``maxmemory`` or at the hard watermark ``hard`` (a share of it): ingest must wait."""
    return usage.max_bytes > 0 and (usage.used_bytes >= usage.max_bytes or usage.share >= hard)


def level(usage: Usage, previous: str, *, high_share: float, history_left: bool) -> str:
    """The next level (pure): ``ok``, ``trimming`` or ``full``; see the module docstring."""
    if not usage.max_bytes:
        return "ok"
    share = usage.share
    if at_hard(usage, hard_share(high_share)):
        return "full"
    if previous == "full":
        if not history_left and share >= high_share - FULL_EXIT_GAP:
            return "full"
        if history_left and share >= hard_share(high_share) - FULL_EXIT_GAP:
            return "full"
    if share >= high_share:
        return "trimming" if history_left else "full"
    if previous == "trimming" and share >= high_share - LOW_GAP:
        return "trimming"
    return "ok"


async def usage(r: "Redis") -> Usage:
    """Redis memory use; on a Redis Cluster, the fullest primary's (the first to refuse writes)."""
    if is_cluster(r):
        per_node = await cast(Any, r).info("memory", target_nodes="primaries")
        found = [Usage(int(i.get("used_memory", 0)), int(i.get("maxmemory", 0))) for i in per_node.values()]
        return max(found, key=lambda u: (u.share, u.used_bytes))
    info = cast(dict[str, int], await r.info("memory"))
    return Usage(int(info.get("used_memory", 0)), int(info.get("maxmemory", 0)))


async def publish(r: "Redis", lvl: str, u: Usage, now_ms: int, *, high_share: float) -> None:
    """Write the level and the hard watermark for the API (it expires when the scheduler stops
    refreshing it); allowed while Redis is over maxmemory, when it matters most."""
    from webhooks.queueing.scripts import scripts

    fields: list[str | int | float] = [
        *("level", lvl, "used", u.used_bytes, "max", u.max_bytes, "at", now_ms),
        *("hard", round(hard_share(high_share), 4)),
    ]
    await scripts(r).global_(keys=[keys.MEMORY], args=["level", PUBLISH_TTL_MS, *fields])


class LevelCache:
    """Whether ingest must wait, as an API process sees it, re-read at most every ``ttl_s``.

    ``full`` when the scheduler published ``full``, or when this process' own reading of Redis'
    memory is at or above the hard watermark (the published one, else the default's): that reading
    is at most ``ttl_s`` old, the published level up to a scheduler period older.
    """

    def __init__(self, r: "Redis", ttl_s: float = 0.1) -> None:
        self.r = r
        self.ttl_s = ttl_s
        self._level = "ok"
        self._read_at = 0.0
        self.max_bytes = 0  # Redis' maxmemory as last read (0: none; per-tenant shares need it)

    async def level(self) -> str:
        if time.monotonic() - self._read_at >= self.ttl_s:
            self._read_at = time.monotonic()
            try:
                published = await self.r.hmget(keys.MEMORY, ["level", "hard"])
                own = await usage(self.r)
            except Exception:  # noqa: BLE001 - a read that fails says nothing about memory
                return self._level
            self.max_bytes = own.max_bytes
            hard = float(published[1] or hard_share(DEFAULT_HIGH_SHARE))
            self._level = "full" if at_hard(own, hard) else str(published[0] or "ok")
        return self._level

    def mark_full(self) -> None:
        """Redis itself refused a write for memory: hold ``full`` until the next read."""
        self._level = "full"
        self._read_at = time.monotonic()
