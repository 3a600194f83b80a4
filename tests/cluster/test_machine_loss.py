"""A Redis Cluster primary's *machine* lost under load, with and without ``WEBHOOKS_ACK_REPLICAS``
(issue 20; the Sentinel version is tests/faults/test_machine_loss.py).

Three primaries with one replica each (``cluster-node-timeout 1000``). One primary's replication
stream reaches its replica 0.4 s late: the primary announces a :class:`DelayProxy` in front of it
(``cluster-announce-port``; its bus port stays its own), so its replica re-points its replication
link at the proxy, which hands the stream on late. Client connections through the proxy are not
delayed. Producer threads post events with ids of their own to tenants on that primary (a refused
event is sent again with the same id); right after a 202 the primary is SIGKILLed and the proxy
drops what it still held, at one instant, as the loss of the machine would. The cluster promotes
the replica.

With ``WEBHOOKS_ACK_REPLICAS=1`` every event the API acknowledged is on the promoted replica (the
API reads it back: not 404) and is delivered. Without it, the events acknowledged within the lag
are gone (404): the second test, the same run, so that the first can fail.

The promoted replica has no replica of its own, so with the setting its tenants' writes answer
503 after the failover (docs/durability.md, "Availability"): the producer stops at the kill.
"""

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis

from tests.cluster.conftest import cluster_env, flush, new_tenant, target_of
from tests.conftest import Processes, Tenant
from tests.faults.cluster import DelayProxy
from tests.support.poll import poll
from tests.support.receiver import Receiver
from tests.support.redis_cluster import RedisCluster, parse_cluster_nodes
from tests.support.redis_proc import RedisProc, free_port
from webhooks import keys
from webhooks.runtime.replication import AckPolicy

DELAY_S = 0.4
TENANTS = 3  # on the primary that is lost
THREADS = 8
PAUSE_S = 0.05  # each thread's pause between events
ACKED_BEFORE_KILL = 100  # events acknowledged before the kill is armed
# The lag is 0.4 s each way of a GETACK: well within. Longer than a failover, so an answer waiting
# on the dead primary is refused by the failover, not by the timeout.
ACK = AckPolicy(replicas=1, timeout_ms=5000)


@dataclass
class Producer:
    """Threads posting events to ``tenants``, each refused one sent again with the same id until
    :meth:`stop`; keeps when each 202 came."""

    api: httpx.Client
    tenants: list[Tenant]
    acked: dict[str, tuple[Tenant, float]] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=dict)
    stopping: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(k,), daemon=True) for k in range(THREADS)]

    def _post(self, tenant: Tenant, event_id: str) -> bool:
        body = {"id": event_id, "event_type": "order.paid", "payload": {"id": event_id}}
        try:
            resp = self.api.post("/v1/events", json=body, headers=tenant.auth, timeout=15)
            outcome = str(resp.status_code)
        except httpx.HTTPError as exc:
            outcome = type(exc).__name__
        at = time.monotonic()
        with self.lock:
            if outcome == "202":
                self.acked[event_id] = (tenant, at)
            else:
                self.refused[outcome] = self.refused.get(outcome, 0) + 1
        return outcome == "202"

    def _run(self, k: int) -> None:
        i = 0
        while not self.stopping.is_set():
            tenant, event_id = self.tenants[(k + i) % len(self.tenants)], f"evt_{k}_{i}"
            while not self._post(tenant, event_id):
                if self.stopping.wait(0.05):
                    return
            i += 1
            self.stopping.wait(PAUSE_S)

    def start(self) -> "Producer":
        for t in self.threads:
            t.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        for t in self.threads:
            t.join(timeout=30)


@dataclass
class Outcome:
    acked: int  # every 202
    acked_before_kill: int
    missing: list[str]  # acknowledged, 404 on the promoted replica
    undelivered: set[str]  # acknowledged, held by the cluster, never delivered
    lag_s: float
    promoted_s: float
    refused: dict[str, int]

    def line(self, mode: str) -> str:
        return (
            f"\n{mode}: replication lag {self.lag_s:.2f}s; {self.acked} acknowledged "
            f"({self.acked_before_kill} before the kill), {len(self.missing)} missing from the promoted "
            f"replica, {len(self.undelivered)} held but not delivered; replica promoted "
            f"{self.promoted_s:.1f}s after the kill; refused: {self.refused}"
        )


def delay_replication(cluster: RedisCluster, primary: int, replica: int) -> DelayProxy:
    """Make ``primary``'s stream reach ``replica`` :data:`DELAY_S` late: the primary announces a
    proxy's port, and its replica follows the announced address."""
    proxy = DelayProxy(primary, DELAY_S).start()
    with cluster.node_client(primary) as p:
        p.config_set("cluster-announce-bus-port", primary + 10000)  # the bus stays direct
        p.config_set("cluster-announce-port", proxy.port)
    with cluster.node_client(replica) as r:
        # Its link is down from the kill only; 0: it may fail over however long that was.
        r.config_set("cluster-replica-validity-factor", 0)

        def through_proxy() -> bool:
            info = r.info("replication")
            return bool(info["master_port"] == proxy.port and info["master_link_status"] == "up")

        poll(through_proxy, timeout_s=20, what="the replica to replicate through the proxy")
    return proxy


def measure_lag(cluster: RedisCluster, primary: int, replica: int, tenant: Tenant) -> float:
    """Seconds between a write on the primary and its arrival on the replica."""
    probe = keys.tenant_base(tenant.id) + "lag-probe"
    with cluster.node_client(primary) as p, cluster.node_client(replica) as r:
        r.execute_command("READONLY")
        p.set(probe, "1", ex=60)
        start = time.monotonic()
        poll(lambda: r.exists(probe), timeout_s=10, interval_s=0.005, what="the probe on the replica")
        return time.monotonic() - start


def promoted(cluster: RedisCluster, replica: int) -> bool:
    """The replica is a primary holding slots, and every live node says ``cluster_state:ok``."""
    try:
        with cluster.node_client(replica) as r:
            me = next(
                n
                for n in parse_cluster_nodes(str(r.execute_command("CLUSTER", "NODES")))
                if "myself" in n.flags
            )
            if not (me.is_primary and me.slots):
                return False
        for port in cluster.alive_ports():
            with cluster.node_client(port) as c:
                if c.cluster("INFO")["cluster_state"] != "ok":
                    return False
    except redis.RedisError:
        return False
    return True


def machine_loss(
    cluster: RedisCluster, rq: RedisProc, receiver: Receiver, tmp_path: Path, ack: bool
) -> Outcome:
    flush(cluster, rq)
    target = target_of(cluster, rq)
    api_port = free_port()
    env = {
        **cluster_env(target),
        "WEBHOOKS_LEASE_TTL_S": "10",
        "WEBHOOKS_API_HOST": "127.0.0.1",
        "WEBHOOKS_API_PORT": str(api_port),
    }
    if ack:
        env.update(WEBHOOKS_ACK_REPLICAS=str(ACK.replicas), WEBHOOKS_ACK_TIMEOUT_MS=str(ACK.timeout_ms))
    # The API in a process of its own, as deployed: its cluster client sees the lost primary's
    # address change (announced port) and drop it, and closes what it held in its own process.
    procs = Processes(env, tmp_path)
    procs.start("api")
    api = httpx.Client(base_url=f"http://127.0.0.1:{api_port}", timeout=30)
    try:
        poll(lambda: _ready(api), timeout_s=60, interval_s=0.05, what="the API to answer /readyz")
        return _machine_loss(cluster, api, procs, receiver, ack)
    except BaseException:
        print(procs.logs()[-4000:])
        raise
    finally:
        procs.stop_all()
        api.close()


def _ready(api: httpx.Client) -> bool:
    try:
        return api.get("/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _machine_loss(
    cluster: RedisCluster, api: httpx.Client, procs: Processes, receiver: Receiver, ack: bool
) -> Outcome:
    by_primary: dict[int, list[Tenant]] = {}
    with cluster.client() as rc:
        for i in range(60):  # until one primary holds TENANTS of them
            t = new_tenant(api, f"t{i}")
            tenants = by_primary.setdefault(int(rc.get_node_from_key(keys.tenant_base(t.id)).port), [])
            tenants.append(t)
            if len(tenants) == TENANTS:
                break
    victim, tenants = next((p, ts) for p, ts in by_primary.items() if len(ts) == TENANTS)
    for t in tenants:
        resp = api.post("/v1/endpoints", json={"url": receiver.url(f"ok/{t.id}")}, headers=t.auth)
        assert resp.status_code == 201, resp.text
    (replica,) = cluster.replica_of(victim)
    proxy = delay_replication(cluster, victim, replica)
    try:
        lag_s = measure_lag(cluster, victim, replica, tenants[0])
        assert lag_s >= DELAY_S * 0.75, f"the replication stream is only {lag_s:.2f}s late"
        procs.worker()
        procs.worker()
        producer = Producer(api, tenants).start()
        try:
            poll(
                lambda: len(producer.acked) >= ACKED_BEFORE_KILL and len(receiver.all()) >= 20,
                timeout_s=40,
                what=f"{ACKED_BEFORE_KILL} events acknowledged and deliveries flowing",
            )
            # Right after a 202: the primary and the bytes still on their way die at one instant.
            seen = len(producer.acked)
            poll(lambda: len(producer.acked) > seen, timeout_s=10, interval_s=0.001, what="a 202")
            cluster.kill(victim)
            proxy.crash()
            killed_at = time.monotonic()
            poll(lambda: promoted(cluster, replica), timeout_s=30, interval_s=0.05, what="the promotion")
            promoted_s = time.monotonic() - killed_at
        finally:
            producer.stop()
        acked = dict(producer.acked)

        def held(event_id: str) -> int:
            return api.get(f"/v1/events/{event_id}", headers=acked[event_id][0].auth).status_code

        status: dict[str, int] = {}

        def all_read() -> bool:  # 503 while the API's cluster client catches up with the failover
            status.update({e: s for e in acked if e not in status and (s := held(e)) in (200, 404)})
            return len(status) == len(acked)

        poll(all_read, timeout_s=30, interval_s=0.2, what="every acknowledged event read back")
        missing = sorted(e for e, s in status.items() if s == 404)

        def undelivered() -> set[str]:
            got = {r.headers["webhook-id"] for r in receiver.all()}
            return {e for e, s in status.items() if s == 200} - got

        if ack:
            poll(lambda: not undelivered(), timeout_s=40, interval_s=0.2, what="every held event delivered")
        else:
            try:  # measured, not asserted: what the failover lost is the point here
                poll(lambda: not undelivered(), timeout_s=20, interval_s=0.2, what="held events delivered")
            except AssertionError:
                pass
        return Outcome(
            acked=len(acked),
            acked_before_kill=sum(1 for _, at in acked.values() if at <= killed_at),
            missing=missing,
            undelivered=undelivered(),
            lag_s=lag_s,
            promoted_s=promoted_s,
            refused=dict(producer.refused),
        )
    finally:
        proxy.crash()


def test_with_ack_replicas_no_acknowledged_event_is_lost_with_the_primary_machine(
    make_redis_cluster: Callable[..., RedisCluster],
    rq_redis: RedisProc,
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    cluster = make_redis_cluster(replicas=1, node_timeout_ms=1000)
    out = machine_loss(cluster, rq_redis, receiver, tmp_path, ack=True)
    print(out.line("WEBHOOKS_ACK_REPLICAS=1"))
    assert not out.missing, f"acknowledged events missing from the promoted replica: {out.missing[:10]}"
    assert not out.undelivered
    assert out.acked_before_kill >= ACKED_BEFORE_KILL


def test_without_ack_replicas_the_same_crash_loses_acknowledged_events(
    make_redis_cluster: Callable[..., RedisCluster],
    rq_redis: RedisProc,
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    cluster = make_redis_cluster(replicas=1, node_timeout_ms=1000)
    out = machine_loss(cluster, rq_redis, receiver, tmp_path, ack=False)
    print(out.line("WEBHOOKS_ACK_REPLICAS=0"))
    assert out.missing, "events acknowledged within the lag must be missing from the promoted replica"
