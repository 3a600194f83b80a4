"""API keys: by hash only, a shared token bucket, few round trips, revocation that takes effect."""

import asyncio

import pytest
import redis
import redis.asyncio

from webhooks import keys
from webhooks.errors import LimitExceeded, Unauthorized
from webhooks.stores.auth import Authenticator, hash_api_key

NOW = 1_800_000_000_000
KEY = "whk_" + "k" * 43


def register(rds: "redis.Redis", key: str = KEY, tenant: str = "ten_1") -> None:
    rds.set(keys.api_key(hash_api_key(key)), f"{tenant}:key_1")
    rds.hset(keys.tenant_api_keys(tenant), "key_1", "{}")


def script_calls(rds: "redis.Redis") -> int:
    stats = rds.info("commandstats")
    return sum(v["calls"] for k, v in stats.items() if k in ("cmdstat_evalsha", "cmdstat_eval"))


def test_concurrent_requests_share_one_refill(ar, loop, rds) -> None:  # type: ignore[no-untyped-def]
    register(rds)
    auth = Authenticator(ar, rate_per_s=1000, burst=2000)
    rds.config_resetstat()

    async def many() -> list[str]:
        return await asyncio.gather(*(auth.tenant_for(KEY, NOW) for _ in range(200)))

    assert set(loop.run_until_complete(many())) == {"ten_1"}
    assert script_calls(rds) <= 8, "200 requests, 50 tokens per refill"


def test_the_bucket_is_shared_and_answers_when_to_come_back(ar, loop, rds) -> None:  # type: ignore[no-untyped-def]
    register(rds)
    first, second = Authenticator(ar, rate_per_s=1, burst=3), Authenticator(ar, rate_per_s=1, burst=3)
    loop.run_until_complete(first.tenant_for(KEY, NOW))
    loop.run_until_complete(second.tenant_for(KEY, NOW))
    loop.run_until_complete(first.tenant_for(KEY, NOW))
    with pytest.raises(LimitExceeded) as err:
        loop.run_until_complete(second.tenant_for(KEY, NOW))
    assert err.value.retry_after_s is not None and 0 < err.value.retry_after_s <= 1


def test_unknown_and_revoked_keys_are_refused(ar, loop, rds) -> None:  # type: ignore[no-untyped-def]
    register(rds)
    auth = Authenticator(ar, rate_per_s=0, burst=0)
    assert loop.run_until_complete(auth.tenant_for(KEY, NOW)) == "ten_1"
    with pytest.raises(Unauthorized):
        loop.run_until_complete(auth.tenant_for("whk_" + "x" * 43, NOW))
    rds.delete(keys.api_key(hash_api_key(KEY)))
    auth.forget(hash_api_key(KEY))  # what the store does when it revokes a key
    with pytest.raises(Unauthorized):
        loop.run_until_complete(auth.tenant_for(KEY, NOW))
