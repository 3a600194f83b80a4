"""The data format on a real Redis Cluster (webhooks/queueing/dataformat.py): its keys share one slot, it is
recorded and migrated through the cluster client, and a process started with the cluster settings
reads it (and refuses a newer one)."""

import subprocess
import sys
from typing import cast

import redis
import redis.cluster

from tests.cluster.conftest import cluster_env
from tests.conftest import ROOT
from tests.upgrade.fake_migration import fake_key, migration, seed
from webhooks import keys
from webhooks.queueing import dataformat
from webhooks.runtime.connection import RedisTarget


def test_the_format_keys_share_a_slot_and_a_migration_runs_through_the_cluster_client(
    rc: "redis.cluster.RedisCluster",
) -> None:
    slots = {rc.keyslot(k) for k in (keys.DATA_FORMAT, keys.DATA_FORMAT_LOCK, keys.DATA_FORMAT_PROGRESS)}
    assert len(slots) == 1, "one slot: the lock and progress scripts touch one slot"
    r = cast("redis.Redis", rc)
    assert dataformat.ensure(r) == dataformat.CURRENT

    rc.delete(keys.DATA_FORMAT)
    ids = seed(r, 45)  # tenants in many slots, on every primary
    assert len({rc.keyslot(fake_key(t)) for t in ids}) > 10
    cursors: list[str] = []
    assert dataformat.ensure(r, current=2, migrations={1: migration(0.0, cursors)}, lock_ttl_ms=5000) == 2
    assert len(cursors) == 5, "45 tenants in chunks of 10"
    assert all(rc.hmget(fake_key(t), ["v", "n"]) == ["new", "1"] for t in ids)
    assert rc.get(keys.DATA_FORMAT) == "2"
    assert not rc.exists(keys.DATA_FORMAT_LOCK) and not rc.exists(keys.DATA_FORMAT_PROGRESS)


def test_a_worker_on_the_cluster_refuses_a_newer_format(
    rc: "redis.cluster.RedisCluster", target: RedisTarget
) -> None:
    newer = dataformat.CURRENT + 1
    rc.set(keys.DATA_FORMAT, str(newer))
    done = subprocess.run(
        [sys.executable, "-m", "cli", "worker"],
        env={**cluster_env(target), "WEBHOOKS_LOG_LEVEL": "ERROR"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith(f"webhooks: the data in Redis is format {newer}, newer than this version knows")
    ), done.stderr
