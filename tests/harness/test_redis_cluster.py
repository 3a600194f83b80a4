"""The Redis Cluster harness itself: a healthy 3-primary cluster, keys across slots, a failover."""

import socket
from collections.abc import Callable

import pytest
import redis

from tests.support.redis_cluster import SLOTS, RedisCluster, binaries


def test_a_cluster_is_ok_serves_keys_in_every_slot_range_and_leaves_nothing_behind() -> None:
    if None in binaries():
        pytest.skip("needs redis-server and redis-cli on the PATH (apt-get install redis-server)")
    cluster = RedisCluster().start()  # its own temporary folder, removed by stop()
    try:
        assert len(cluster.primary_ports()) == 3
        for port in cluster.ports:
            with cluster.node_client(port) as c:
                info = c.cluster("INFO")
                assert info["cluster_state"] == "ok"
                assert int(info["cluster_slots_assigned"]) == SLOTS
        with cluster.client(decode_responses=True) as rc:
            keys = [f"key-{i}" for i in range(30)]
            for key in keys:
                rc.set(key, key.upper())
            assert [rc.get(k) for k in keys] == [k.upper() for k in keys]
            owners = {rc.get_node_from_key(k).port for k in keys}
            assert owners == set(cluster.primary_ports()), "30 keys land on every primary"
            # Keys sharing a hash tag share a slot, so one script may touch them all ...
            tagged = ["wh:{t:acme}:ready", "wh:{t:acme}:due"]
            assert len({rc.keyslot(k) for k in tagged}) == 1
            script = "redis.call('SET', KEYS[1], ARGV[1]); redis.call('SET', KEYS[2], ARGV[1]); return 2"
            assert rc.eval(script, 2, *tagged, "x") == 2
            assert rc.mget(tagged) == ["x", "x"]
            # ... and keys of two tenants do not (the cluster refuses such a script).
            with pytest.raises(redis.RedisClusterException):
                rc.eval(script, 2, "wh:{t:acme}:ready", "wh:{t:other}:ready", "x")
    finally:
        cluster.stop()
    assert not cluster.alive_ports()
    assert not cluster.base_dir.exists()
    for port in cluster.ports:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_killing_a_primary_promotes_its_replica_and_keeps_acknowledged_writes(
    make_redis_cluster: Callable[..., RedisCluster],
) -> None:
    cluster = make_redis_cluster(primaries=3, replicas=1)
    assert len(cluster.ports) == 6 and len(cluster.primary_ports()) == 3
    with cluster.client(decode_responses=True) as rc:
        victim = cluster.primary_ports()[0]
        key = next(k for k in (f"k{i}" for i in range(1000)) if rc.get_node_from_key(k).port == victim)
        rc.set(key, "before-failover")
        with cluster.node_client(victim) as c:
            assert c.execute_command("WAIT", 1, 5000) == 1, "the replica acknowledged the write"
    replicas = cluster.replica_of(victim)

    assert cluster.kill_primary(victim) == victim
    promoted = cluster.wait_for_promotion(victim)

    assert promoted in replicas
    assert promoted in cluster.primary_ports() and victim not in cluster.primary_ports()
    with cluster.client(decode_responses=True) as rc:
        assert rc.get_node_from_key(key).port == promoted
        assert rc.get(key) == "before-failover"
        rc.set(key, "after-failover")

    cluster.restart(victim)
    cluster.wait_healthy()
    assert cluster.replica_of(promoted) == [victim], "the old primary rejoins as the new one's replica"
