"""Tenant API keys and the per-tenant API rate limit.

Keys are stored only as SHA-256 hashes (they are long random strings, so a
plain hash is enough); lookup is by hash, so no secret is compared in Python.
The admin token is checked by the API, in constant time, before this is used.

The rate limit is a token bucket in Redis shared by every API process: the
key's hash names its tenant (a global lookup), then ``lua/auth.lua`` checks
the key and takes tokens in the tenant's own slot. So that
the hot path does not pay a round trip per request, an :class:`Authenticator`
takes a few tokens at a time into a local pocket (at most 5 % of the burst,
kept for at most a second) and remembers which tenant a key belongs to while it
spends them. Every refill checks the key again, so a revoked key stops working
in this process at once (see :meth:`Authenticator.forget`) and in others within
``CACHE_TTL_S``.

Answering a read must not need a write: when Redis refuses the bucket's write
for lack of memory, the key is checked with reads alone and the tokens come
from a local bucket at the same rate (per process, until Redis has room again).
"""

import asyncio
import hashlib
import time
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import OutOfMemoryError

from webhooks import keys
from webhooks.errors import LimitExceeded, Unauthorized
from webhooks.queueing.scripts import scripts

API_KEY_PREFIX = "whk_"
CACHE_TTL_S = 1.0
MAX_CACHED_KEYS = 100_000


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(slots=True)
class _Pocket:
    tenant_id: str
    tokens: int
    expires: float  # time.monotonic()


class Authenticator:
    def __init__(self, r: "Redis", *, rate_per_s: float, burst: float) -> None:
        self.r = r
        self.rate_per_s = rate_per_s
        self.burst = burst or 2 * rate_per_s
        # Unlimited: one check per CACHE_TTL_S; limited: a few tokens per round trip.
        self.chunk = 1_000_000 if rate_per_s <= 0 else max(1, min(50, int(self.burst * 0.05)))
        self._pockets: dict[str, _Pocket] = {}
        self._refills: dict[str, asyncio.Future[None]] = {}
        self._local: dict[str, tuple[float, float]] = {}  # tenant -> (tokens, at s): the OOM fallback

    def forget(self, key_hash: str) -> None:
        """Drop what this process remembers of a key (call it when the key is revoked)."""
        self._pockets.pop(key_hash, None)

    async def tenant_for(self, key: str, now_ms: int) -> str:
        """The tenant id of an API key, one request's token taken.

        Raises :class:`Unauthorized` for an unknown or revoked key and
        :class:`LimitExceeded` (with ``retry_after_s``) when the tenant is over its rate.
        Concurrent requests with an empty pocket share one refill.
        """
        if not key.startswith(API_KEY_PREFIX) or len(key) > 200:
            raise Unauthorized("unknown or revoked credentials")
        key_hash = hash_api_key(key)
        while True:
            pocket = self._pockets.get(key_hash)
            if pocket is not None and pocket.tokens > 0 and pocket.expires > time.monotonic():
                pocket.tokens -= 1
                return pocket.tenant_id
            refill = self._refills.get(key_hash)
            if refill is None:
                refill = self._refills[key_hash] = asyncio.ensure_future(self._refill(key_hash, now_ms))
                refill.add_done_callback(lambda _: self._refills.pop(key_hash, None))
            await asyncio.shield(refill)  # raises Unauthorized / LimitExceeded for every waiter

    async def _refill(self, key_hash: str, now_ms: int) -> None:
        found = await self.r.get(keys.api_key(key_hash))
        tenant_id, _, key_id = str(found or "").partition(":")
        known, wait_ms, granted = 0, 0, 0
        if key_id:
            try:
                known, wait_ms, granted = await scripts(self.r).auth(
                    keys=[keys.tenant_base(tenant_id)],
                    args=[key_id, now_ms, self.rate_per_s, self.burst, self.chunk],
                )
            except OutOfMemoryError:
                known = int(bool(await self.r.hexists(keys.tenant_api_keys(tenant_id), key_id)))
                wait_ms, granted = self._local_tokens(tenant_id)
        if not int(known):
            self.forget(key_hash)
            raise Unauthorized("unknown or revoked credentials")
        if int(wait_ms) > 0:
            raise LimitExceeded(
                f"rate limit: this tenant may make {self.rate_per_s:g} requests per second; "
                f"retry in {int(wait_ms)} ms",
                retry_after_s=int(wait_ms) / 1000,
            )
        if len(self._pockets) >= MAX_CACHED_KEYS:
            self._pockets.clear()
        self._pockets[key_hash] = _Pocket(str(tenant_id), int(granted), time.monotonic() + CACHE_TTL_S)

    def _local_tokens(self, tenant_id: str) -> tuple[int, int]:
        """``(ms to wait, tokens granted)`` from this process's own bucket for the tenant."""
        if self.rate_per_s <= 0:
            return 0, self.chunk
        now = time.monotonic()
        tokens, at = self._local.get(tenant_id, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate_per_s)
        granted = min(self.chunk, int(tokens))
        if granted < 1:
            self._local[tenant_id] = (tokens, now)
            return int((1 - tokens) * 1000 / self.rate_per_s) + 1, 0
        self._local[tenant_id] = (tokens - granted, now)
        return 0, granted
