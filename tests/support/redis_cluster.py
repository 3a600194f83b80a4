"""A real Redis Cluster on loopback for tests: N primaries (optionally one replica each), AOF on.

:class:`RedisCluster` starts ``redis-server --cluster-enabled yes`` nodes on free loopback ports
(each with its cluster bus port, port + 10000, free too), joins them with
``redis-cli --cluster create ... --cluster-yes``, and waits until every node reports
``cluster_state:ok`` with all 16384 slots assigned and every replica linked. It can SIGKILL a
primary and wait for a replica's promotion, restart a node, and stops every process it started
(removing its data folder when it made one itself).

In tests use the ``make_redis_cluster`` fixture (import it into a conftest): it skips, saying
why, when ``redis-server`` or ``redis-cli`` is not installed, and tears down every cluster it
made even when the test fails.
"""

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
import redis.cluster

from tests.support.redis_proc import RedisProc

BUS_OFFSET = 10000  # Redis Cluster's bus port is the client port + 10000
SLOTS = 16384


def binaries() -> tuple[str | None, str | None]:
    """The server and CLI binaries, or ``None`` for each that is not on the PATH."""
    return shutil.which("redis-server"), shutil.which("redis-cli")


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_cluster_port(taken: set[int]) -> int:
    """A loopback port whose bus port (port + 10000) is free as well; never 6379."""
    for _ in range(1000):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if (
            port + BUS_OFFSET < 65536
            and not {port, port + BUS_OFFSET} & taken
            and _bindable(port + BUS_OFFSET)
        ):
            return port
    raise RuntimeError("no free port pair for a cluster node")


@dataclass(frozen=True)
class Node:
    """One line of ``CLUSTER NODES``."""

    id: str
    port: int
    flags: frozenset[str]
    primary_id: str | None
    slots: tuple[str, ...]

    @property
    def is_primary(self) -> bool:
        return "master" in self.flags and "fail" not in self.flags

    @property
    def failed(self) -> bool:
        return "fail" in self.flags or "fail?" in self.flags


def parse_cluster_nodes(text: str) -> list[Node]:
    out = []
    for line in text.strip().splitlines():
        parts = line.split()
        addr = parts[1].split("@")[0]
        out.append(
            Node(
                id=parts[0],
                port=int(addr.rsplit(":", 1)[1]),
                flags=frozenset(parts[2].split(",")),
                primary_id=None if parts[3] == "-" else parts[3],
                slots=tuple(parts[8:]),
            )
        )
    return out


class RedisCluster:
    def __init__(
        self,
        base_dir: Path | None = None,
        primaries: int = 3,
        replicas: int = 0,
        node_timeout_ms: int = 1000,
    ) -> None:
        assert primaries >= 3, "Redis Cluster needs at least three primaries"
        assert replicas in (0, 1), "zero or one replica per primary"
        self._own_dir = base_dir is None
        self.base_dir = Path(tempfile.mkdtemp(prefix="redis-cluster-")) if base_dir is None else base_dir
        self.primaries = primaries
        self.replicas = replicas
        self.node_timeout_ms = node_timeout_ms
        self.procs: dict[int, RedisProc] = {}
        self._replicas_at_kill: dict[int, set[int]] = {}

    # -- addresses ---------------------------------------------------------------------------------

    @property
    def ports(self) -> list[int]:
        return list(self.procs)

    @property
    def nodes_setting(self) -> str:
        """``127.0.0.1:p1,127.0.0.1:p2,...``: the form of ``WEBHOOKS_REDIS_CLUSTER_NODES``."""
        return ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def client(self, **kwargs: object) -> "redis.cluster.RedisCluster":
        """A redis-py cluster client seeded with every node (the caller closes it)."""
        nodes = [redis.cluster.ClusterNode("127.0.0.1", p) for p in self.ports]
        return redis.cluster.RedisCluster(startup_nodes=nodes, **kwargs)  # type: ignore[arg-type]

    def node_client(self, port: int) -> "redis.Redis":
        return redis.Redis(port=port, socket_connect_timeout=1, socket_timeout=5, decode_responses=True)

    # -- life cycle --------------------------------------------------------------------------------

    def start(self, timeout_s: float = 60.0) -> "RedisCluster":
        server, cli = binaries()
        if server is None or cli is None:
            raise RuntimeError("redis-server and redis-cli are needed (apt-get install redis-server)")
        try:
            taken: set[int] = set()
            for _ in range(self.primaries * (1 + self.replicas)):
                port = free_cluster_port(taken)
                taken |= {port, port + BUS_OFFSET}
                self.procs[port] = RedisProc(self.base_dir / str(port), port, self._cluster_args()).start()
            nodes = [f"127.0.0.1:{p}" for p in self.ports]
            create = subprocess.run(
                [
                    cli,
                    "--cluster",
                    "create",
                    *nodes,
                    "--cluster-replicas",
                    str(self.replicas),
                    "--cluster-yes",
                ],
                capture_output=True,
                text=True,
                timeout=timeout_s,
            )
            if create.returncode != 0:
                raise RuntimeError(f"redis-cli --cluster create failed: {create.stdout}{create.stderr}")
            self.wait_healthy(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def _cluster_args(self) -> list[str]:
        return [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            str(self.node_timeout_ms),
            # A replica's first sync starts at once instead of after the default 5 s wait.
            "--repl-diskless-sync-delay",
            "0",
        ]

    def stop(self) -> None:
        """Stop every node this cluster started (SIGTERM, then SIGKILL) and remove its own folder."""
        for proc in self.procs.values():
            proc.stop()
        if self._own_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    # -- inspection --------------------------------------------------------------------------------

    def alive_ports(self) -> list[int]:
        return [p for p, proc in self.procs.items() if proc.proc is not None and proc.proc.poll() is None]

    def topology(self, via: int | None = None) -> list[Node]:
        """``CLUSTER NODES`` as seen from ``via`` (default: the first live node)."""
        port = via if via is not None else self.alive_ports()[0]
        with self.node_client(port) as c:
            return parse_cluster_nodes(str(c.execute_command("CLUSTER", "NODES")))

    def primary_ports(self) -> list[int]:
        return sorted(n.port for n in self.topology() if n.is_primary and n.slots)

    def replica_of(self, primary_port: int) -> list[int]:
        nodes = self.topology()
        primary = next(n for n in nodes if n.port == primary_port)
        return sorted(n.port for n in nodes if n.primary_id == primary.id)

    def _healthy(self) -> bool:
        """Every live node: state ok, all slots assigned, every node known; each is either a
        primary holding slots or a linked replica, and there are exactly ``primaries`` primaries
        (a restarted old primary counts only once it has turned into a replica); and all nodes
        agree on who replicates whom and who holds which slots."""
        expected = len(self.procs)
        holding = 0
        views: set[frozenset[tuple[int, str | None, tuple[str, ...]]]] = set()
        try:
            for port in self.alive_ports():
                with self.node_client(port) as c:
                    info = c.cluster("INFO")
                    if info["cluster_state"] != "ok" or int(info["cluster_slots_assigned"]) != SLOTS:
                        return False
                    if int(info["cluster_known_nodes"]) != expected:
                        return False
                    repl = c.info("replication")
                    nodes = parse_cluster_nodes(str(c.execute_command("CLUSTER", "NODES")))
                    views.add(frozenset((n.port, n.primary_id, n.slots) for n in nodes))
                    if repl["role"] == "master":
                        me = next(n for n in nodes if "myself" in n.flags)
                        if not me.slots:
                            return False
                        holding += 1
                    elif repl.get("master_link_status") != "up":
                        return False
        except redis.RedisError:
            return False
        return holding == self.primaries and len(views) == 1

    def wait_healthy(self, timeout_s: float = 60.0) -> None:
        """Until :meth:`_healthy` holds; fails the test after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while not self._healthy():
            if time.monotonic() > deadline:
                raise AssertionError(f"cluster not healthy after {timeout_s}s: {self.topology()}")
            time.sleep(0.05)

    # -- faults ------------------------------------------------------------------------------------

    def kill(self, port: int) -> None:
        """SIGKILL one node (no shutdown, no final AOF flush beyond the fsync policy)."""
        self.procs[port].kill()

    def kill_primary(self, port: int | None = None) -> int:
        """SIGKILL a primary (default: the first one that has a replica); returns its port.

        Its replicas at that moment are remembered for :meth:`wait_for_promotion`.
        """
        if port is None:
            port = next(p for p in self.primary_ports() if self.replica_of(p))
        self._replicas_at_kill[port] = set(self.replica_of(port))
        self.kill(port)
        return port

    def wait_for_promotion(self, dead_port: int, timeout_s: float = 30.0) -> int:
        """Until one of ``dead_port``'s replicas is a primary holding slots, the dead node is
        flagged failed, and every live node says ``cluster_state:ok``; returns the new primary.

        ``dead_port`` must have been killed with :meth:`kill_primary`. Fails after ``timeout_s``.
        """
        replicas = self._replicas_at_kill[dead_port]
        assert replicas, f"node {dead_port} had no replica to promote"
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                nodes = {n.port: n for n in self.topology()}
                promoted = [p for p in replicas if nodes[p].is_primary and nodes[p].slots]
                if promoted and nodes[dead_port].failed and self._state_ok_on_survivors():
                    return promoted[0]
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no replica of {dead_port} promoted within {timeout_s}s: {self.topology()}"
                )
            time.sleep(0.05)

    def _state_ok_on_survivors(self) -> bool:
        for port in self.alive_ports():
            with self.node_client(port) as c:
                if c.cluster("INFO")["cluster_state"] != "ok":
                    return False
        return True

    def restart(self, port: int, timeout_s: float = 30.0) -> None:
        """Start a killed node again on its own data; it rejoins (a former primary as a replica)."""
        self.procs[port].start(timeout_s)


@pytest.fixture
def make_redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., RedisCluster]]:
    """``make_redis_cluster(primaries=3, replicas=0, node_timeout_ms=1000)`` → a started cluster."""
    server, cli = binaries()
    clusters: list[RedisCluster] = []

    def make(primaries: int = 3, replicas: int = 0, node_timeout_ms: int = 1000) -> RedisCluster:
        if server is None or cli is None:
            pytest.skip("Redis Cluster tests need redis-server and redis-cli (apt-get install redis-server)")
        cluster = RedisCluster(tmp_path_factory.mktemp("redis-cluster"), primaries, replicas, node_timeout_ms)
        clusters.append(cluster)
        return cluster.start()

    yield make
    for cluster in clusters:
        cluster.stop()
