"""``webhooks cluster move-slots`` on a real 3-primary cluster while the platform delivers.

Every slot of one primary moves to another while two workers deliver a backlog and a producer
keeps posting (each event retried, same id, until 202). Each slot's tenants are paused only
while their own slot moves (webhooks/queueing/reshard.py). Afterwards: the source holds no slot, no slot
is left open, no pause flag is left, every acknowledged event arrived, and the moved tenants
are served by their new primary.
"""

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import redis

from tests.cluster.conftest import Stack, cluster_env, new_tenant
from tests.cluster.producer import Producer
from tests.conftest import Processes
from tests.support.poll import poll
from tests.support.receiver import Receiver
from webhooks import keys
from webhooks.queueing import reshard

ROOT = Path(__file__).resolve().parents[2]
N_TENANTS = 9
BACKLOG = 300  # events per tenant posted before the move


def move_slots(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", "cluster", "move-slots", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )


def status(env: dict[str, str]) -> dict[str, object]:
    shown = subprocess.run(
        [sys.executable, "-m", "cli", "status", "--json"], env=env, capture_output=True, text=True, timeout=60
    )
    assert shown.returncode == 0, shown.stderr
    result: dict[str, object] = json.loads(shown.stdout)
    return result


def test_moving_every_slot_of_a_primary_while_delivering_loses_nothing_and_leaves_no_tenant_paused(
    own_stack: Callable[..., Stack],
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    cluster, target, api = own_stack()
    env = cluster_env(target)
    procs = Processes(env, tmp_path)
    try:
        with cluster.client(decode_responses=True) as rc:
            tenants = [new_tenant(api, f"t{i}") for i in range(N_TENANTS)]
            port_of = {t.id: rc.get_node_from_key(keys.tenant_base(t.id)).port for t in tenants}
        source_port = Counter(port_of.values()).most_common(1)[0][0]
        dest_port = next(p for p in cluster.ports if p != source_port)
        moved_tenants = {t for t, p in port_of.items() if p == source_port}
        for t in tenants:
            resp = api.post("/v1/endpoints", json={"url": receiver.url(f"ok/{t.id}")}, headers=t.auth)
            assert resp.status_code == 201, resp.text
            events = [{"event_type": "a.b", "payload": {"i": i}} for i in range(BACKLOG)]
            resp = api.post("/v1/events/batch", json={"events": events}, headers=t.auth)
            assert resp.status_code == 202, resp.text
        procs.worker()
        procs.worker()
        with Producer(api, tenants) as producer:
            poll(lambda: len(receiver.all()) >= 200, timeout_s=60, what="the workers delivering")
            before = len(receiver.all())
            done = move_slots(
                {**env, "WEBHOOKS_LOG_LEVEL": "WARNING"},
                *("--from", f"127.0.0.1:{source_port}", "--to", f"127.0.0.1:{dest_port}", "--json"),
            )
            assert done.returncode == 0, done.stdout + done.stderr
            poll(lambda: len(producer.acked) >= 60, timeout_s=60, what="events acknowledged after the move")
        summary = json.loads(done.stdout)
        total = N_TENANTS * BACKLOG + len(producer.acked)
        assert before < total / 2, "the move ran while most deliveries were still to come"
        assert summary["slots_moved"] >= 16384 // 3 - 1 and summary["tenants_paused"] >= len(moved_tenants)

        def delivered() -> int:
            return len({r.headers["webhook-id"] for r in receiver.all()})

        poll(lambda: delivered() >= total, timeout_s=120, interval_s=0.2, what=f"all {total} delivered")
        assert set(producer.acked) <= {r.headers["webhook-id"] for r in receiver.all()}

        node = redis.Redis(port=dest_port)
        try:
            layout = {n.port: n for n in reshard.primaries(node)}
        finally:
            node.close()
        # A primary left without slots becomes a replica of the one that took its last (Redis 7).
        assert source_port not in layout or layout[source_port].slots == [], "the source gave up every slot"
        assert not any(n.migrating or n.importing for n in layout.values()), "no slot left open"
        with cluster.client(decode_responses=True) as rc:
            assert not [t for t in port_of if rc.exists(keys.moving(t))], "no tenant left paused"
            assert {rc.get_node_from_key(keys.tenant_base(t)).port for t in moved_tenants} == {dest_port}
        duplicates = len(receiver.all()) - delivered()
        print(
            f"\nmoved {summary['slots_moved']} slots ({summary['keys_moved']} keys) "
            f"in {summary['seconds']} s "
            f"while delivering; {summary['tenants_paused']} tenants paused, median "
            f"{summary['median_pause_ms']} ms, longest {summary['longest_pause_ms']} ms; {total} events "
            f"delivered, {duplicates} twice; refused while posting: {dict(producer.refused)}"
        )
        assert duplicates <= 20, f"{duplicates} duplicates: leases should outlast a slot's pause"
    finally:
        procs.stop_all()


def test_a_move_that_died_half_way_keeps_its_tenants_paused_until_the_same_command_finishes_it(
    own_stack: Callable[..., Stack],
) -> None:
    cluster, target, api = own_stack()
    env = cluster_env(target)
    tenant = new_tenant(api, "stuck")
    event = {"event_type": "a.b", "payload": {}}
    assert api.post("/v1/events", json=event, headers=tenant.auth).status_code == 202
    with cluster.client(decode_responses=True) as rc:
        node = rc.get_node_from_key(keys.tenant_base(tenant.id))
        slot = rc.keyslot(keys.tenant_base(tenant.id))
    seed = redis.Redis(port=node.port)
    try:
        nodes = {n.port: n for n in reshard.primaries(seed)}
    finally:
        seed.close()
    source, dest = nodes[node.port], next(n for p, n in nodes.items() if p != node.port)
    # What a mover killed after step 2 leaves behind: flags on both sides, the slot open.
    clients = {p: redis.Redis(port=p) for p in nodes}
    try:
        clients[source.port].set(keys.moving(tenant.id), reshard.FLAG_VALUE)
        clients[dest.port].execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source.id)
        clients[dest.port].execute_command("ASKING")
        clients[dest.port].set(keys.moving(tenant.id), reshard.FLAG_VALUE)
        clients[source.port].execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dest.id)
    finally:
        for c in clients.values():
            c.close()
    paused = api.post("/v1/events", json=event, headers=tenant.auth)
    assert paused.status_code == 503 and paused.headers["retry-after"] == "1", paused.text
    assert status(env)["paused_tenants"] == [tenant.id], "webhooks status names the paused tenant"

    done = move_slots(env, "--from", source.address, "--to", dest.address, "--slots", "0", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "finishing 1 slots a previous move left half done" in done.stderr, done.stderr
    assert json.loads(done.stdout)["slots_moved"] == 1
    assert api.post("/v1/events", json=event, headers=tenant.auth).status_code == 202
    listed = api.get("/v1/events", headers=tenant.auth).json()["data"]
    assert len(listed) == 2, "the event from before the move is still there, and the new one"
    with cluster.client(decode_responses=True) as rc:
        assert rc.get_node_from_key(keys.tenant_base(tenant.id)).port == dest.port
        assert not rc.exists(keys.moving(tenant.id))
    assert status(env)["paused_tenants"] == []
