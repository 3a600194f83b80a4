"""Fixtures of the Redis Cluster suite: a real 3-primary cluster on loopback, a plain Redis for RQ's
trigger queue, the API on the cluster, and platform processes started with
``WEBHOOKS_REDIS_CLUSTER_NODES`` and ``WEBHOOKS_RQ_REDIS_URL``.

The cluster (tests/support/redis_cluster.py) is started once per module and emptied before each
test; tests that kill nodes make their own with ``make_redis_cluster``. Everything skips, saying
why, when ``redis-server`` or ``redis-cli`` is missing or the server cannot run a cluster.
"""

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis.cluster

from tests.conftest import ADMIN_TOKEN, ApiServers, Processes, Tenant, api_config, platform_env
from tests.support.redis_cluster import RedisCluster, binaries, make_redis_cluster  # noqa: F401
from tests.support.redis_proc import RedisProc
from webhooks.runtime.connection import RedisTarget


def start_cluster(base: Path, replicas: int = 0) -> RedisCluster:
    if None in binaries():
        pytest.skip("Redis Cluster tests need redis-server and redis-cli (apt-get install redis-server)")
    cluster = RedisCluster(base, replicas=replicas)
    try:
        return cluster.start()
    except RuntimeError as exc:
        if "cluster" in str(exc).lower() and "create failed" in str(exc):
            pytest.skip(f"this redis-server cannot run a cluster: {exc}")
        raise


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    c = start_cluster(tmp_path_factory.mktemp("redis-cluster"))
    yield c
    c.stop()


@pytest.fixture(scope="module")
def rq_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProc]:
    proc = RedisProc(tmp_path_factory.mktemp("rq-redis")).start()
    yield proc
    proc.stop()


def target_of(cluster: RedisCluster, rq: RedisProc) -> RedisTarget:
    return RedisTarget("", cluster=tuple(("127.0.0.1", p) for p in cluster.ports), rq_url=rq.url)


def flush(cluster: RedisCluster, rq: RedisProc) -> None:
    with cluster.client() as c:
        c.flushall(target_nodes=redis.cluster.RedisCluster.PRIMARIES)
    plain = redis.Redis.from_url(rq.url)
    plain.flushall()
    plain.close()


@pytest.fixture
def target(cluster: RedisCluster, rq_redis: RedisProc) -> RedisTarget:
    flush(cluster, rq_redis)
    return target_of(cluster, rq_redis)


@pytest.fixture
def rc(cluster: RedisCluster, target: RedisTarget) -> Iterator["redis.cluster.RedisCluster"]:
    with cluster.client(decode_responses=True) as c:
        yield c


def cluster_env(target: RedisTarget) -> dict[str, str]:
    """Environment of platform subprocesses on the cluster (fast retries, short timeouts)."""
    return platform_env(
        WEBHOOKS_REDIS_CLUSTER_NODES=",".join(f"{h}:{p}" for h, p in target.cluster),
        WEBHOOKS_RQ_REDIS_URL=target.rq_url or "",
    )


@pytest.fixture
def cprocs(target: RedisTarget, tmp_path: Path) -> Iterator[Processes]:
    p = Processes(cluster_env(target), tmp_path)
    yield p
    p.stop_all()


@pytest.fixture
def make_capi() -> Iterator[Callable[[RedisTarget], httpx.Client]]:
    """The real API (uvicorn on loopback) on a cluster target; stopped at teardown."""
    servers = ApiServers()
    yield lambda target: servers.start(api_config(target))
    servers.stop_all()


@pytest.fixture
def capi(make_capi: Callable[[RedisTarget], httpx.Client], target: RedisTarget) -> httpx.Client:
    return make_capi(target)


ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def new_tenant(api: httpx.Client, name: str) -> Tenant:
    resp = api.post("/v1/tenants", json={"name": name}, headers=ADMIN)
    assert resp.status_code == 201, resp.text
    return Tenant(resp.json()["id"], resp.json()["api_key"])


Stack = tuple[RedisCluster, RedisTarget, httpx.Client]


@pytest.fixture
def own_stack(
    make_redis_cluster: Callable[..., RedisCluster],  # noqa: F811 - the fixture, by name
    rq_redis: RedisProc,
    make_capi: Callable[[RedisTarget], httpx.Client],
) -> Callable[..., Stack]:
    """``own_stack(replicas=0)``: a cluster of the test's own (for tests that kill nodes or move
    slots), the emptied RQ Redis, and the API on them; all torn down after the test."""

    def make(replicas: int = 0) -> Stack:
        cluster = make_redis_cluster(replicas=replicas)
        flush(cluster, rq_redis)
        target = target_of(cluster, rq_redis)
        return cluster, target, make_capi(target)

    return make
