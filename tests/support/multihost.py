"""The platform spread over the hosts of a :class:`tests.support.netns.NetnsLab`, and load to run on it.

Layout of one :class:`MultiHost` (a lab of ``2 + worker hosts`` hosts, with the root leg)::

    host 0  redis-server bound to its lab address (AOF on, everysec)
    host 1  `webhooks api` and the one `webhooks scheduler`
    host 2… `webhooks worker --no-scheduler`, one per host, started by :meth:`MultiHost.start_worker`
    root    the test process: a :class:`tests.support.paced_receiver.PacedReceiver` on the root leg,
            and the API and Redis clients

Every platform process reaches Redis and the receiver over the lab's switch only, so cutting a
worker host (:meth:`NetnsLab.cut`) cuts it off from both, as pulling its cable would. Each
worker runs at most ``concurrency`` requests at once (``WEBHOOKS_WORKER_CONCURRENCY``): against a
receiver that answers in a fixed time that, not the CPU, bounds a host's throughput, so the two
shared cores of this machine do not hide how throughput grows with hosts.

:class:`Load` sends numbered events in batches; :func:`warm_up` sends until given hosts deliver;
:func:`run_throughput` adds worker hosts one at a time and :func:`measure_rate` reads each step's
rate off the receiver's log. Every process logs to ``<log_dir>/<name>.log`` (``redis``, ``api``,
``scheduler``, ``worker-<host>``): in a test, its ``tmp_path``. ``bench/multihost.py`` runs the
same measurement outside pytest.
"""

import itertools
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis

from tests.support.netns import Host, NetnsLab
from tests.support.paced_receiver import Arrival, PacedReceiver
from tests.support.servers import server_binary

ROOT = Path(__file__).resolve().parent.parent.parent
REDIS_PORT = 6390  # each host has its own network stack: nothing else listens on this one
API_PORT = 8000
ADMIN_TOKEN = "multihost-admin-token-0123456789"
SECRET_KEY = "multihost-secret-key-0123456789abcdef0123456789"
BATCH = 1000  # the API's largest batch


def wait_until(fn: Callable[[], object], timeout_s: float, what: str, procs: list[Any]) -> None:
    deadline = time.monotonic() + timeout_s
    while not fn():
        dead = [p.args for p in procs if p.poll() is not None]
        if dead:
            raise AssertionError(f"waiting for {what}: a process exited: {dead}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.05)


@dataclass
class MultiHost:
    lab: NetnsLab
    log_dir: Path
    concurrency: int = 20
    lease_ttl_s: float = 10.0
    workers: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def redis_host(self) -> Host:
        return self.lab.hosts[0]

    @property
    def api_host(self) -> Host:
        return self.lab.hosts[1]

    @property
    def worker_hosts(self) -> list[Host]:
        return self.lab.hosts[2:]

    @property
    def redis_url(self) -> str:
        return f"redis://{self.redis_host.address}:{REDIS_PORT}/0"

    @property
    def api_url(self) -> str:
        return f"http://{self.api_host.address}:{API_PORT}"

    def env(self) -> dict[str, str]:
        return {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "PYTHONPATH": str(ROOT),
            "WEBHOOKS_REDIS_URL": self.redis_url,
            "WEBHOOKS_ADMIN_TOKEN": ADMIN_TOKEN,
            "WEBHOOKS_SECRET_KEY": SECRET_KEY,
            "WEBHOOKS_ALLOW_PRIVATE_TARGETS": "true",
            "WEBHOOKS_WORKER_CONCURRENCY": str(self.concurrency),
            "WEBHOOKS_LEASE_TTL_S": str(self.lease_ttl_s),
            "WEBHOOKS_REQUEST_TIMEOUT_S": "5",
            "WEBHOOKS_TENANT_RATE_LIMIT_PER_S": "0",
            "WEBHOOKS_API_HOST": self.api_host.address,
            "WEBHOOKS_API_PORT": str(API_PORT),
            "WEBHOOKS_DATA_DIR": str(self.log_dir / "data"),
            "WEBHOOKS_LOG_LEVEL": "WARNING",
        }

    def _spawn(self, host: Host, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        with open(self.log_dir / f"{name}.log", "wb") as log:
            return self.lab.popen(host, argv, env=self.env(), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)

    def _cli(self, host: Host, name: str, *args: str) -> subprocess.Popen[bytes]:
        return self._spawn(host, name, [sys.executable, "-m", "cli", *args])

    def start(self) -> "MultiHost":
        """Redis, then the API and the scheduler; returns once the API answers ``/readyz``."""
        data = self.log_dir / "redis"
        data.mkdir(parents=True, exist_ok=True)
        redis_proc = self._spawn(
            self.redis_host,
            "redis",
            [
                server_binary().path,
                "--bind", self.redis_host.address, "--port", str(REDIS_PORT), "--protected-mode", "no",
                "--dir", str(data), "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
                "--maxmemory-policy", "noeviction",
            ],
        )  # fmt: skip
        wait_until(self._redis_up, 20, "redis-server on the Redis host", [redis_proc])
        api = self._cli(self.api_host, "api", "api")
        wait_until(self._api_ready, 60, "the API on the API host: GET /readyz", [api])
        self._cli(self.api_host, "scheduler", "scheduler")
        return self

    def _redis_up(self) -> bool:
        try:
            with self.redis() as client:
                return bool(client.ping())
        except redis.RedisError:
            return False

    def _api_ready(self) -> bool:
        try:
            return httpx.get(self.api_url + "/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def redis(self) -> "redis.Redis":
        return redis.Redis.from_url(self.redis_url, socket_timeout=5, decode_responses=True)

    def start_worker(self, host: Host) -> subprocess.Popen[bytes]:
        proc = self._cli(host, f"worker-{host.index}", "worker", "--no-scheduler")
        self.workers[host.index] = proc
        return proc


class Load:
    """A tenant with one endpoint at ``url``; :meth:`send` posts numbered events to it in batches."""

    def __init__(self, api_url: str, url: str) -> None:
        self.client = httpx.Client(base_url=api_url, timeout=60)
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        tenant = self.client.post("/v1/tenants", json={"name": "multihost"}, headers=admin)
        assert tenant.status_code == 201, tenant.text
        self.auth = {"Authorization": f"Bearer {tenant.json()['api_key']}"}
        endpoint = self.client.post(
            "/v1/endpoints", json={"url": url, "max_in_flight": 10000}, headers=self.auth
        )
        assert endpoint.status_code == 201, endpoint.text
        self.tenant_id = str(tenant.json()["id"])
        self.endpoint_id = str(endpoint.json()["id"])

    def send(self, prefix: str, count: int) -> list[str]:
        """Events ``<prefix>-0`` … ``<prefix>-<count-1>``, accepted durably; returns their ids."""
        ids = [f"{prefix}-{i}" for i in range(count)]
        for start in range(0, count, BATCH):
            events = [
                {"id": i, "event_type": "load.tick", "payload": {"n": i}} for i in ids[start : start + BATCH]
            ]
            resp = self.client.post("/v1/events/batch", json={"events": events}, headers=self.auth)
            assert resp.status_code == 202, resp.text
        return ids

    def close(self) -> None:
        self.client.close()


def first_arrivals(arrivals: list[Arrival], ids: set[str]) -> dict[str, Arrival]:
    """The first arrival of each of ``ids`` that has arrived."""
    out: dict[str, Arrival] = {}
    for a in arrivals:
        if a.webhook_id in ids and a.webhook_id not in out:
            out[a.webhook_id] = a
    return out


def measure_rate(arrivals: list[Arrival], ids: list[str], trim: float = 0.15) -> float:
    """Deliveries/s of ``ids`` in steady state: first arrivals between the ``trim`` and ``1 - trim``
    quantiles of their times, so the ramp-up at the start and the drain at the end count for nothing."""
    times = sorted(a.at for a in first_arrivals(arrivals, set(ids)).values())
    assert len(times) == len(ids), f"{len(ids) - len(times)} of {len(ids)} events not delivered yet"
    lo, hi = int(len(times) * trim), int(len(times) * (1 - trim))
    return (hi - lo) / (times[hi] - times[lo])


def all_arrived(receiver: PacedReceiver, ids: list[str]) -> Callable[[], bool]:
    wanted = set(ids)
    return lambda: len(first_arrivals(receiver.snapshot(), wanted)) == len(wanted)


def heard_from(receiver: PacedReceiver, hosts: list[Host]) -> Callable[[], bool]:
    addresses = {h.address for h in hosts}
    return lambda: addresses <= {a.peer for a in receiver.snapshot()}


def warm_up(
    platform: MultiHost, receiver: PacedReceiver, load: Load, hosts: list[Host], timeout_s: float = 60.0
) -> None:
    """Send small batches until each of ``hosts`` has delivered (a worker takes a moment to start)."""
    procs = list(platform.workers.values())
    deadline = time.monotonic() + timeout_s
    for attempt in itertools.count():
        ids = load.send(f"warm{len(procs)}-{attempt}", 2 * platform.concurrency * len(procs))
        wait_until(all_arrived(receiver, ids), timeout_s, "a warm-up batch delivered", procs)
        if heard_from(receiver, hosts)():
            return
        assert time.monotonic() < deadline, f"no delivery from {[h.index for h in hosts]} in {timeout_s}s"
        time.sleep(0.2)


def run_throughput(
    platform: MultiHost,
    receiver: PacedReceiver,
    load: Load,
    seconds_per_step: float = 8.0,
    timeout_s: float = 60.0,
) -> dict[int, float]:
    """Deliveries/s with 1, 2, … worker hosts: each step starts one more worker, checks that it
    delivers, then sends a backlog of about ``seconds_per_step`` of work at the expected rate and
    measures how fast it drains. Returns {worker hosts: deliveries/s}."""
    rates: dict[int, float] = {}
    for n, host in enumerate(platform.worker_hosts, start=1):
        platform.start_worker(host)
        procs = list(platform.workers.values())
        warm_up(platform, receiver, load, [host], timeout_s)
        ids = load.send(f"step{n}", step_size(platform, receiver, n, seconds_per_step))
        wait_until(all_arrived(receiver, ids), timeout_s, f"the backlog of step {n} delivered", procs)
        rates[n] = measure_rate(receiver.snapshot(), ids)
    return rates


def step_size(platform: MultiHost, receiver: PacedReceiver, hosts: int, seconds: float) -> int:
    """How many events ``hosts`` worker hosts deliver in ``seconds`` at their concurrency bound."""
    return int(platform.concurrency / receiver.delay_s * hosts * seconds)
