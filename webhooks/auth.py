"""Tenant API keys: who a key belongs to, and the tenant's API rate limit, in one round trip.

Keys are stored only as SHA-256 hashes (they are long random strings, so a
plain hash is enough); lookup is by hash, so no comparison of secrets happens
in Python at all. The admin token is checked by the API with a constant-time
comparison before this is called.
"""

import hashlib
import importlib.resources

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from webhooks import keys
from webhooks.errors import LimitExceeded, Unauthorized

API_KEY_PREFIX = "whk_"
_SOURCE = importlib.resources.files("webhooks").joinpath("lua/auth.lua").read_text()
_scripts: dict[int, AsyncScript] = {}


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


async def authenticate(r: "Redis", key: str, *, rate_per_s: float, burst: float, now_ms: int) -> str:
    """The tenant id of an API key; :class:`Unauthorized` for an unknown or revoked key,
    :class:`LimitExceeded` (with ``retry_after_s``) when the tenant is over its rate."""
    if not key.startswith(API_KEY_PREFIX) or len(key) > 200:
        raise Unauthorized("unknown or revoked credentials")
    script = _scripts.get(id(r))
    if script is None:
        script = _scripts[id(r)] = r.register_script(_SOURCE)
    tenant_id, wait_ms = await script(
        keys=[], args=[keys.PREFIX, hash_api_key(key), now_ms, rate_per_s, burst or 2 * rate_per_s]
    )
    if not tenant_id:
        raise Unauthorized("unknown or revoked credentials")
    if int(wait_ms) > 0:
        raise LimitExceeded(
            f"rate limit: this tenant may make {rate_per_s:g} requests per second; "
            f"retry in {int(wait_ms) / 1000:.1f}s",
            retry_after_s=int(wait_ms) / 1000,
        )
    return str(tenant_id)
