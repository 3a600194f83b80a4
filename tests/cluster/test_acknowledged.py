"""``WEBHOOKS_ACK_REPLICAS`` on a Redis Cluster (issue 20): the fence and ``WAIT`` go to the
primary of each tenant written (events) or to every primary (the other writes).

Three primaries with one replica each. An event is on its primary's replica when its 202 comes.
With one replica frozen (SIGSTOP: connected, acknowledging nothing), events of the tenants on
its primary answer 503 ``replication_timeout`` while the tenants of the other primaries are
answered 202, and an endpoint creation (whose keys may span primaries) answers 503; once the
replica runs again, the retry of the same event id answers 202 with the stored event.
"""

import signal
from collections.abc import Callable, Iterator

import httpx
import pytest
import redis

from tests.cluster.conftest import Stack, new_tenant
from tests.conftest import ApiServers, Tenant, api_config
from tests.support.redis_cluster import RedisCluster
from webhooks import keys
from webhooks.runtime.connection import RedisTarget
from webhooks.runtime.replication import AckPolicy

ACK = AckPolicy(replicas=1, timeout_ms=500)


@pytest.fixture
def acked_capi() -> Iterator[Callable[[RedisTarget], httpx.Client]]:
    servers = ApiServers()
    yield lambda target: servers.start(api_config(target, ack=ACK))
    servers.stop_all()


def _primary_of(rc: "redis.cluster.RedisCluster", tenant: Tenant) -> int:
    return int(rc.get_node_from_key(keys.tenant_base(tenant.id)).port)


def _on_replica(cluster: RedisCluster, primary: int, key: str) -> bool:
    (replica,) = cluster.replica_of(primary)
    with cluster.node_client(replica) as r:
        r.execute_command("READONLY")
        return bool(r.exists(key))


def _post(api: httpx.Client, tenant: Tenant, event_id: str) -> httpx.Response:
    return api.post(
        "/v1/events", json={"id": event_id, "event_type": "t.x", "payload": {}}, headers=tenant.auth
    )


def test_each_written_primary_waits_for_its_replica(
    own_stack: Callable[..., Stack], acked_capi: Callable[[RedisTarget], httpx.Client]
) -> None:
    cluster, target, _ = own_stack(replicas=1)
    api = acked_capi(target)
    with cluster.client() as rc:
        tenants: dict[int, Tenant] = {}
        for i in range(40):  # until two primaries hold a tenant each
            t = new_tenant(api, f"t{i}")
            tenants.setdefault(_primary_of(rc, t), t)
            if len(tenants) >= 2:
                break
    (frozen_primary, victim), (other_primary, bystander) = list(tenants.items())[:2]
    for primary, tenant in tenants.items():
        assert _post(api, tenant, "e1").status_code == 202
        assert _on_replica(cluster, primary, keys.event(tenant.id, "e1")), "202 before the replica had it"

    (replica,) = cluster.replica_of(frozen_primary)
    proc = cluster.procs[replica].proc
    assert proc is not None
    proc.send_signal(signal.SIGSTOP)
    try:
        refused = _post(api, victim, "e2")
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"] == "replication_timeout"
        assert "Retry-After" in refused.headers
        assert _post(api, bystander, "e2").status_code == 202, "another primary's tenant is not held up"
        endpoint = api.post("/v1/endpoints", json={"url": "http://127.0.0.1:9/x"}, headers=bystander.auth)
        assert endpoint.status_code == 503, endpoint.text
        assert endpoint.json()["error"] == "replication_timeout"
    finally:
        proc.send_signal(signal.SIGCONT)
    again = _post(api, victim, "e2")
    assert again.status_code == 202, again.text
    assert _on_replica(cluster, frozen_primary, keys.event(victim.id, "e2"))
    assert other_primary != frozen_primary
