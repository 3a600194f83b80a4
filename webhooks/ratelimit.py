"""Per-tenant API rate limit: a token bucket in Redis, shared by every API process.

:func:`take` raises :class:`LimitExceeded` with ``retry_after_s`` when the
tenant's bucket is empty; the API answers 429 with ``Retry-After``. A request
costs one token; a batch costs one token per 100 events (rounded up), so batching
stays the efficient path it is meant to be.
"""

import importlib.resources
import math

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from webhooks import keys
from webhooks.errors import LimitExceeded

_SOURCE = importlib.resources.files("webhooks").joinpath("lua/bucket.lua").read_text()
_scripts: dict[int, AsyncScript] = {}


def batch_cost(n_events: int) -> int:
    return max(1, math.ceil(n_events / 100))


async def take(r: "Redis", tenant_id: str, *, per_s: float, burst: float, now_ms: int, cost: int = 1) -> None:
    """Take ``cost`` tokens from the tenant's bucket or raise :class:`LimitExceeded`."""
    script = _scripts.get(id(r))
    if script is None:
        script = _scripts[id(r)] = r.register_script(_SOURCE)
    wait_ms = int(await script(keys=[], args=[keys.rate_bucket(tenant_id), now_ms, per_s, burst, cost]))
    if wait_ms > 0:
        raise LimitExceeded(
            f"rate limit: this tenant may make {per_s:g} requests per second (bursts of {burst:g}); "
            f"retry in {wait_ms / 1000:.1f}s",
            retry_after_s=wait_ms / 1000,
        )
