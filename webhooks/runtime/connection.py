"""Redis clients (direct, through Sentinel, or on a Redis Cluster) and the start-up check of the
server's configuration.

On a Redis Cluster (``RedisTarget.cluster``) the data clients are redis-py's ``RedisCluster``
(sync and asyncio), which route each command to the primary of its key's hash slot and follow
failovers and slot moves. RQ cannot run on a cluster (its keys carry no hash tag), so its trigger
queue lives on a plain Redis of its own (``RedisTarget.rq_url``, or a Sentinel-managed primary:
``rq_sentinels`` and ``rq_master``): :func:`rq_client`. Every RQ client has connect and read
timeouts (``RQ_CONNECT_TIMEOUT_S``, ``RQ_SOCKET_TIMEOUT_S``), so a hung RQ Redis costs a caller
seconds, never forever; RQ's worker raises the read timeout of its own connection above its
blocking dequeue (see :mod:`workers.process`).
"""

import logging
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from redis.asyncio.retry import Retry as AsyncRetry
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry as SyncRetry
from redis.sentinel import Sentinel

log = logging.getLogger("webhooks")


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """Where Redis is: a URL, Sentinel addresses plus the master's name, or Redis Cluster nodes
    (then ``rq_url``, or ``rq_sentinels`` with ``rq_master``, names the Redis of RQ's trigger
    queue; either may be set without a cluster too)."""

    url: str
    sentinels: tuple[tuple[str, int], ...] = ()
    master: str | None = None
    cluster: tuple[tuple[str, int], ...] = ()
    rq_url: str | None = None
    rq_sentinels: tuple[tuple[str, int], ...] = ()
    rq_master: str | None = None

    @property
    def rq_apart(self) -> bool:
        """True when RQ's trigger queue lives on a Redis of its own, not the platform's."""
        return bool(self.rq_url or self.rq_sentinels)

    def describe(self) -> str:
        """Where Redis is, without the password a URL may carry."""
        if self.cluster:
            return f"redis cluster via {len(self.cluster)} seed nodes"
        if self.sentinels:
            return f"sentinel master {self.master!r} via {len(self.sentinels)} sentinels"
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.hostname or parts.path}{':' + str(parts.port) if parts.port else ''}"

    def describe_rq(self) -> str:
        """Where RQ's Redis is, without a password; the platform's own when RQ has none apart."""
        if self.rq_sentinels:
            return f"sentinel master {self.rq_master!r} via {len(self.rq_sentinels)} sentinels"
        if self.rq_url:
            return RedisTarget(self.rq_url).describe()
        return self.describe()


MAX_ASYNC_CONNECTIONS = 256


def _retries(*, async_: bool) -> dict[str, Any]:
    """Retry a command up to 3 times on a broken connection (a restart, a failover): the
    first command on each pooled connection after Redis came back would fail otherwise.
    Every script tolerates being run again after a lost reply (see webhooks/queueing/queue.py)."""
    backoff = ExponentialWithJitterBackoff(base=0.05, cap=1.0)
    retry = AsyncRetry(backoff, 3) if async_ else SyncRetry(backoff, 3)
    errors = [redis.ConnectionError, redis.TimeoutError]
    return {"retry": retry, "retry_on_error": errors}


def is_cluster(r: object) -> bool:
    """True for a Redis Cluster client (sync or asyncio)."""
    return isinstance(r, redis.asyncio.cluster.RedisCluster | redis.cluster.RedisCluster)


# Per node, the most connections an asyncio cluster client opens; past it a command fails
# (redis-py's cluster pool does not wait), so it is set well above what one process uses.
MAX_CLUSTER_CONNECTIONS = 2048


def _async_cluster(target: RedisTarget) -> "redis.asyncio.Redis":
    backoff = ExponentialWithJitterBackoff(base=0.05, cap=1.0)
    client = redis.asyncio.cluster.RedisCluster(
        startup_nodes=[redis.asyncio.cluster.ClusterNode(h, p) for h, p in target.cluster],
        decode_responses=True,
        socket_connect_timeout=5,
        max_connections=MAX_CLUSTER_CONNECTIONS,
        # A failover takes the cluster's node timeout plus an election: keep retrying meanwhile.
        retry=AsyncRetry(backoff, 10),
    )
    # The cluster client speaks the same commands; the code is typed against the plain client.
    return cast("redis.asyncio.Redis", client)


def _sync_cluster(target: RedisTarget, decode: bool) -> "redis.Redis":
    """Raises ``redis.ConnectionError`` when no seed node answers (the sync client connects at once)."""
    backoff = ExponentialWithJitterBackoff(base=0.05, cap=1.0)
    try:
        client = redis.cluster.RedisCluster(
            startup_nodes=[redis.cluster.ClusterNode(h, p) for h, p in target.cluster],  # type: ignore[no-untyped-call]
            decode_responses=decode,
            socket_connect_timeout=5,
            retry=SyncRetry(backoff, 10),
        )
    except redis.exceptions.RedisClusterException as exc:
        raise redis.ConnectionError(f"cannot reach the Redis Cluster at {target.describe()}: {exc}") from None
    return cast("redis.Redis", client)


def async_client(target: RedisTarget) -> "redis.asyncio.Redis":
    """An asyncio client with ``decode_responses=True``; through Sentinel, or on a cluster, it
    follows failovers."""
    if target.cluster:
        return _async_cluster(target)
    if target.sentinels:
        sentinel = AsyncSentinel(list(target.sentinels), socket_timeout=5)
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
    """A blocking client of the platform's data (a cluster client on a cluster)."""
    if target.cluster:
        return _sync_cluster(target, decode)
    if target.sentinels:
        sentinel = Sentinel(list(target.sentinels), socket_timeout=5)
        client = sentinel.master_for(
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


# RQ's Redis holds only triggers: a client of it gives up fast (a hung server must not hold a
# scheduler tick or a worker's fallback), and retries only a broken connection, not a timeout.
RQ_CONNECT_TIMEOUT_S = 2.0
RQ_SOCKET_TIMEOUT_S = 5.0


def _rq_kwargs(*, async_: bool, timeout_s: float | None = None) -> dict[str, Any]:
    backoff = ExponentialWithJitterBackoff(base=0.05, cap=1.0)
    retry = AsyncRetry(backoff, 2) if async_ else SyncRetry(backoff, 2)
    return {
        "socket_connect_timeout": timeout_s or RQ_CONNECT_TIMEOUT_S,
        "socket_timeout": timeout_s or RQ_SOCKET_TIMEOUT_S,
        "retry": retry,
        "retry_on_error": [redis.ConnectionError],
    }


def rq_client(target: RedisTarget, *, timeout_s: float | None = None) -> "redis.Redis":
    """The blocking client RQ's trigger queue lives on (``decode_responses=False``, as RQ needs):
    ``target.rq_url`` or the primary ``target.rq_sentinels`` name when set, else the platform's
    own Redis (never a cluster: the settings refuse a cluster without a Redis for RQ). Connect and
    read timeouts are ``RQ_CONNECT_TIMEOUT_S`` and ``RQ_SOCKET_TIMEOUT_S``, or both ``timeout_s``."""
    kw = _rq_kwargs(async_=False, timeout_s=timeout_s)
    if target.rq_sentinels or (target.sentinels and not target.rq_url):
        sentinels, master = (
            (target.rq_sentinels, target.rq_master)
            if target.rq_sentinels
            else (target.sentinels, target.master)
        )
        return cast(
            "redis.Redis", Sentinel(list(sentinels), **kw).master_for(master or "", health_check_interval=30)
        )
    if target.rq_url:
        return redis.Redis.from_url(target.rq_url, health_check_interval=30, **kw)
    if target.cluster:
        raise ValueError("RQ cannot run on a Redis Cluster: give the target an rq_url")
    return redis.Redis.from_url(target.url, health_check_interval=30, **kw)


def async_rq_client(target: RedisTarget) -> "redis.asyncio.Redis":
    """An asyncio client (decoding) of the Redis RQ lives on, for reading its registries."""
    if target.rq_sentinels:
        sentinel = AsyncSentinel(list(target.rq_sentinels), **_rq_kwargs(async_=True))
        client = sentinel.master_for(target.rq_master or "", decode_responses=True)
        return cast("redis.asyncio.Redis", client)
    if target.rq_url:
        return redis.asyncio.Redis.from_url(target.rq_url, decode_responses=True, **_rq_kwargs(async_=True))
    return async_client(target)


def config_values(r: "redis.Redis", name: str) -> list[str]:
    """A configuration value as every primary has it (one value on a plain Redis)."""
    if is_cluster(r):
        found = cast(
            dict[str, dict[str, str]],
            cast(Any, r).config_get(name, target_nodes=redis.cluster.RedisCluster.PRIMARIES),
        )
        return [str(v.get(name) or "") for v in found.values()]
    return [str(r.config_get(name).get(name) or "")]


def durability_problems(r: "redis.Redis") -> list[str]:
    """What in the server's configuration breaks the durability promise (empty when all is well);
    on a cluster, every primary is checked."""
    problems = []
    if any(v != "yes" for v in config_values(r, "appendonly")):
        problems.append("AOF is off (appendonly no): a Redis restart loses accepted events")
    for policy in sorted(set(config_values(r, "maxmemory-policy"))):
        if policy != "noeviction":
            problems.append(f"maxmemory-policy is {policy!r}, not 'noeviction': Redis may evict queued work")
    return problems


def warn_if_not_durable(r: "redis.Redis") -> list[str]:
    """Log each durability problem loudly; returns them. A server that hides CONFIG is reported too,
    and so is one that cannot be read right now (a cluster primary failing over as a process
    starts): the process goes on without the check rather than exit."""
    try:
        problems = durability_problems(r)
    except redis.ResponseError:
        problems = ["cannot read the Redis configuration (CONFIG GET refused): durability unchecked"]
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        problems = [f"cannot read the Redis configuration now ({type(exc).__name__}): durability unchecked"]
    for problem in problems:
        log.warning("DURABILITY WARNING: %s", problem)
    try:
        if any(int(v or 0) == 0 for v in config_values(r, "maxmemory")):
            log.warning(
                "MEMORY WARNING: maxmemory is 0 (no limit): the platform cannot keep its memory budget "
                "(trim settled history at 70%%, refuse new events when pending work fills it); "
                "set maxmemory in redis.conf"
            )
    except redis.RedisError:
        pass
    return problems
