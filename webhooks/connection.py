"""Redis clients, direct or through Sentinel, and the start-up check of the server's configuration."""

import logging
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit

import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry as SyncRetry
from redis.sentinel import Sentinel

log = logging.getLogger("webhooks")


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """Where Redis is: a URL, or Sentinel addresses plus the master's name."""

    url: str
    sentinels: tuple[tuple[str, int], ...] = ()
    master: str | None = None

    def describe(self) -> str:
        """Where Redis is, without the password a URL may carry."""
        if self.sentinels:
            return f"sentinel master {self.master!r} via {len(self.sentinels)} sentinels"
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.hostname or parts.path}{':' + str(parts.port) if parts.port else ''}"


MAX_ASYNC_CONNECTIONS = 256


def _retries(*, async_: bool) -> dict[str, Any]:
    """Retry a command up to 3 times on a broken connection (a restart, a failover): the
    first command on each pooled connection after Redis came back would fail otherwise.
    Every script tolerates being run again after a lost reply (see webhooks/queue.py)."""
    backoff = ExponentialWithJitterBackoff(base=0.05, cap=1.0)
    retry = AsyncRetry(backoff, 3) if async_ else SyncRetry(backoff, 3)
    errors = [redis.ConnectionError, redis.TimeoutError]
    return {"retry": retry, "retry_on_error": errors}


def async_client(target: RedisTarget) -> "redis.asyncio.Redis":
    """An asyncio client with ``decode_responses=True``; through Sentinel it follows failovers."""
    if target.sentinels:
        sentinel = AsyncSentinel(list(target.sentinels), socket_timeout=5)  # type: ignore[no-untyped-call]
        client = sentinel.master_for(
            target.master or "",
            decode_responses=True,
            socket_connect_timeout=5,
            health_check_interval=30,
            max_connections=MAX_ASYNC_CONNECTIONS,
            **_retries(async_=True),
        )
        return cast("redis.asyncio.Redis", client)
    # A blocking pool: a burst of concurrent requests waits for a connection instead of failing.
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        target.url,
        decode_responses=True,
        socket_connect_timeout=5,
        health_check_interval=30,
        max_connections=MAX_ASYNC_CONNECTIONS,
        timeout=10,
        **_retries(async_=True),
    )
    return redis.asyncio.Redis.from_pool(pool)


def sync_client(target: RedisTarget, *, decode: bool = True) -> "redis.Redis":
    """A blocking client; RQ needs ``decode=False``."""
    if target.sentinels:
        sentinel = Sentinel(list(target.sentinels), socket_timeout=5)  # type: ignore[no-untyped-call]
        client = sentinel.master_for(  # type: ignore[no-untyped-call]
            target.master or "",
            decode_responses=decode,
            socket_connect_timeout=5,
            health_check_interval=30,
            **_retries(async_=False),
        )
        return cast("redis.Redis", client)
    return redis.Redis.from_url(
        target.url,
        decode_responses=decode,
        socket_connect_timeout=5,
        health_check_interval=30,
        **_retries(async_=False),
    )


def durability_problems(r: "redis.Redis") -> list[str]:
    """What in the server's configuration breaks the durability promise (empty when all is well)."""
    problems = []
    aof = r.config_get("appendonly").get("appendonly")
    if aof != "yes":
        problems.append("AOF is off (appendonly no): a Redis restart loses accepted events")
    policy = r.config_get("maxmemory-policy").get("maxmemory-policy")
    if policy != "noeviction":
        problems.append(f"maxmemory-policy is {policy!r}, not 'noeviction': Redis may evict queued work")
    return problems


def warn_if_not_durable(r: "redis.Redis") -> list[str]:
    """Log each durability problem loudly; returns them. A server that hides CONFIG is reported too."""
    try:
        problems = durability_problems(r)
    except redis.ResponseError:
        problems = ["cannot read the Redis configuration (CONFIG GET refused): durability unchecked"]
    for problem in problems:
        log.warning("DURABILITY WARNING: %s", problem)
    try:
        if int(r.config_get("maxmemory").get("maxmemory", 0) or 0) == 0:
            log.warning(
                "MEMORY WARNING: maxmemory is 0 (no limit): the platform cannot keep its memory budget "
                "(trim settled history at 70%%, refuse new events when pending work fills it); "
                "set maxmemory in redis.conf"
            )
    except redis.ResponseError:
        pass
    return problems
