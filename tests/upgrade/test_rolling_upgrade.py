"""A rolling upgrade of a running platform: the previous release's processes hand over to this one's.

The previous release is commit :data:`PREVIOUS` (the last before the data format was recorded),
checked out with ``git archive`` into a temporary folder and run with this interpreter and
``PYTHONPATH`` (and working directory) set to that folder: its dependencies are ours. An editable
install of this tree (``pip install -e``) puts a finder on ``sys.meta_path`` that would still
answer for a module the old tree lacks (``webhooks.queueing``), so the old processes start
through :data:`WITHOUT_EDITABLE`, which takes it off first; a check shows the old tree's modules,
and only those, are imported. On a Redis of the test's own:

1. the old API, two old workers (``--no-scheduler``) and an old scheduler; a tenant and an
   endpoint created through the old API, and a backlog of events posted through it to a loopback
   receiver that answers after :data:`RECEIVER_DELAY_S` (so work is leased and in flight);
2. once part of it is delivered, this version's API, two workers and scheduler start beside the
   old ones (they record the data format: 1, the old data's, which had no format key), while a
   producer posts through the new API;
3. the old processes get SIGTERM and must exit 0 (a worker hands back what it leased but did not
   send and lets its requests in flight finish); the producer keeps posting through the new API.

Every event posted reaches the receiver, and none twice (per ``webhook-id``): a duplicate could
only come from a request an old worker had on the wire and whose outcome it lost, which the SIGTERM
path does not allow. The figures are printed (``pytest -s``) and quoted in docs/upgrading.md.
"""

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.conftest import ADMIN_TOKEN, ROOT
from tests.support.paced_receiver import PacedReceiver
from tests.support.poll import poll
from tests.support.redis_proc import free_port
from webhooks import keys
from webhooks.queueing import dataformat

PREVIOUS = "900e4e7"
# ``python -c WITHOUT_EDITABLE <args>`` runs ``python -m cli <args>`` with no editable finder.
WITHOUT_EDITABLE = """
import faulthandler, runpy, signal, sys
faulthandler.register(signal.SIGUSR1, all_threads=True)  # the test asks a stuck process where it is
editable = lambda f: str(getattr(f, "__module__", "")).startswith("__editable__")
sys.meta_path[:] = [f for f in sys.meta_path if not editable(f)]
sys.path_hooks[:] = [h for h in sys.path_hooks if not editable(h)]
sys.path_importer_cache.clear()
sys.argv = ["webhooks", *sys.argv[1:]]
runpy.run_module("cli", run_name="__main__", alter_sys=True)
"""
RECEIVER_DELAY_S = 0.2
MAX_IN_FLIGHT = 10  # with the delay: about 50 deliveries/s
BACKLOG = 1000  # events posted through the old API before the switch: about 20 s of work
SWITCH_AT = 60  # deliveries seen before the new processes start
PRODUCER_BATCH, PRODUCER_EVERY_S = 5, 0.2
OLD_STOP_S = 75.0  # the longest an old process may take to exit after SIGTERM
AFTER_SIGTERM_S = 4.0  # posting through the new API goes on this long once the old processes are gone
SETTINGS = {
    "WEBHOOKS_LEASE_TTL_S": "30",  # no lease expires during the test: a duplicate would be the SIGTERM's
    "WEBHOOKS_REQUEST_TIMEOUT_S": "10",
    "WEBHOOKS_WORKER_CONCURRENCY": "10",
    "WEBHOOKS_TENANT_RATE_LIMIT_PER_S": "0",
    "WEBHOOKS_LOG_LEVEL": "INFO",
}


@pytest.fixture(scope="module")
def old_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", f"{PREVIOUS}^{{commit}}"]).returncode:
        pytest.skip(f"commit {PREVIOUS} is not in this checkout (a shallow clone, or no .git)")
    folder = tmp_path_factory.mktemp("previous")
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", PREVIOUS], check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return folder


class Platform:
    """One release's processes: ``python -m cli`` with its tree first on the path and as cwd."""

    def __init__(self, name: str, tree: Path, env: dict[str, str], log_dir: Path, *, isolated: bool) -> None:
        self.name, self.tree, self.log_dir = name, tree, log_dir
        self.launch = ["-c", WITHOUT_EDITABLE] if isolated else ["-m", "cli"]
        self.env = {**env, **SETTINGS, "PYTHONPATH": str(tree), "WEBHOOKS_DATA_DIR": str(log_dir / name)}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.api_url = ""

    def run_python(self, code: str) -> str:
        prelude = WITHOUT_EDITABLE.split("sys.argv")[0] if self.launch[0] == "-c" else ""
        argv = [sys.executable, "-c", prelude + code]
        done = subprocess.run(argv, env=self.env, cwd=self.tree, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def spawn(self, role: str, *args: str, env: dict[str, str] | None = None) -> None:
        with open(self.log_dir / f"{self.name}-{role}.log", "wb") as log:
            self.procs[role] = subprocess.Popen(
                [sys.executable, *self.launch, *args],
                env={**self.env, **(env or {})},
                cwd=self.tree,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def start(self) -> None:
        port = free_port()
        self.api_url = f"http://127.0.0.1:{port}"
        self.spawn("api", "api", env={"WEBHOOKS_API_HOST": "127.0.0.1", "WEBHOOKS_API_PORT": str(port)})
        for i in (1, 2):
            self.spawn(f"worker-{i}", "worker", "--no-scheduler")
        self.spawn("scheduler", "scheduler")
        poll(self._ready, timeout_s=60, what=f"the {self.name} API's /readyz")

    def _ready(self) -> bool:
        dead = {role: p.returncode for role, p in self.procs.items() if p.poll() is not None}
        assert not dead, f"{self.name} processes exited: {dead}; logs: {self.logs()}"
        try:
            return httpx.get(self.api_url + "/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def terminate(self, timeout_s: float = 30) -> dict[str, int]:
        for proc in self.procs.values():
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        codes = {}
        for role, proc in self.procs.items():
            try:
                codes[role] = proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                if self.launch[0] == "-c":
                    proc.send_signal(signal.SIGUSR1)  # its threads' stacks, into its log
                    time.sleep(1)
                stuck = f"{self.name} {role} still runs {timeout_s} s after SIGTERM"
                raise AssertionError(f"{stuck}: {self.logs()}") from None
        return codes

    def kill(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def logs(self) -> str:
        return "\n".join(
            f"==> {p.name}\n{p.read_text(errors='replace')[-6000:]}"
            for p in sorted(self.log_dir.glob(f"{self.name}-*.log"))
        )


class Producer:
    """Posts numbered events (their ids are the deliveries' ``webhook-id``) through one API."""

    def __init__(self, auth: dict[str, str]) -> None:
        self.auth = auth
        self.posted: list[str] = []
        self.stop = threading.Event()
        self.errors: list[str] = []

    def post(self, api_url: str, prefix: str, count: int) -> None:
        ids = [f"{prefix}-{len(self.posted) + i}" for i in range(count)]
        events = [{"id": i, "event_type": "upgrade.tick", "payload": {"id": i}} for i in ids]
        body = {"events": events}
        resp = httpx.post(api_url + "/v1/events/batch", json=body, headers=self.auth, timeout=30)
        assert resp.status_code == 202, resp.text
        self.posted.extend(ids)

    def run(self, api_url: str) -> threading.Thread:
        def loop() -> None:
            try:
                while not self.stop.wait(PRODUCER_EVERY_S):
                    self.post(api_url, "new", PRODUCER_BATCH)
            except Exception as exc:  # noqa: BLE001 - reported by the test
                self.errors.append(repr(exc))

        thread = threading.Thread(target=loop, name="producer", daemon=True)
        thread.start()
        return thread


@pytest.fixture
def platforms(old_tree: Path, env: dict[str, str], tmp_path: Path) -> Iterator[tuple[Platform, Platform]]:
    old = Platform("old", old_tree, env, tmp_path, isolated=True)
    new = Platform("new", ROOT, env, tmp_path, isolated=False)
    yield old, new
    old.kill()
    new.kill()


def test_the_previous_release_hands_over_to_this_one_with_every_event_delivered_once(
    platforms: tuple[Platform, Platform], rds: "redis.Redis"
) -> None:
    old, new = platforms
    where = old.run_python(
        "import importlib.util, api, cli.main, webhooks, workers\n"
        "print(webhooks.__file__, api.__file__, workers.__file__, cli.main.__file__)\n"
        "print(importlib.util.find_spec('webhooks.queueing'))\n"
        "print(sorted({m.__file__ for m in list(sys.modules.values()) if m.__name__.split('.')[0] in "
        "{'api', 'cli', 'webhooks', 'workers'} and getattr(m, '__file__', None)}))"
    ).split("\n")
    assert all(path.startswith(str(old.tree)) for path in where[0].split()), where
    assert where[1] == "None", "the previous release has no webhooks.queueing (nor its dataformat)"
    assert str(ROOT) + "/" not in where[2], "no module of this tree is imported"

    receiver = PacedReceiver("127.0.0.1", RECEIVER_DELAY_S).start()
    try:
        figures = run_upgrade(old, new, receiver, rds)
    finally:
        receiver.stop()
    print("\nrolling upgrade:", ", ".join(f"{k} {v}" for k, v in figures.items()))


def leased(rds: "redis.Redis", tenant_id: str) -> int:
    """Deliveries held under leases now (leased by a worker, not yet settled)."""
    lease_ids = rds.zrange(keys.leases(tenant_id), 0, -1)
    return sum(int(rds.llen(keys.lease(tenant_id, lease_id))) for lease_id in lease_ids)


def run_upgrade(old: Platform, new: Platform, receiver: PacedReceiver, rds: "redis.Redis") -> dict[str, Any]:
    began = time.monotonic()
    old.start()
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    tenant = httpx.post(old.api_url + "/v1/tenants", json={"name": "upgrade"}, headers=admin, timeout=30)
    assert tenant.status_code == 201, tenant.text
    tenant_id, auth = tenant.json()["id"], {"Authorization": f"Bearer {tenant.json()['api_key']}"}
    endpoint = httpx.post(
        old.api_url + "/v1/endpoints",
        json={"url": receiver.url("hook"), "max_in_flight": MAX_IN_FLIGHT},
        headers=auth,
        timeout=30,
    )
    assert endpoint.status_code == 201, endpoint.text
    producer = Producer(auth)
    for _ in range(BACKLOG // 100):
        producer.post(old.api_url, "old", 100)

    poll(lambda: receiver.count() >= SWITCH_AT, timeout_s=60, what="the old workers delivering")
    leased_at_switch = poll(lambda: leased(rds, tenant_id), timeout_s=10, what="work leased by old workers")
    # This release records the format as any of its processes starts: none of this code ran so far.
    assert not rds.exists(keys.DATA_FORMAT), "the previous release records no data format"

    switch_began = time.monotonic()
    new.start()
    assert rds.get(keys.DATA_FORMAT) == str(dataformat.UNVERSIONED), "the old data recorded as format 1"
    thread = producer.run(new.api_url)
    leased_at_sigterm = leased(rds, tenant_id)
    delivered_at_sigterm = receiver.count()
    # The previous release's workers may wait up to 60 s for RQ's pub/sub thread as they exit (the
    # work is handed back and the requests are done by then); this release bounds it to 1 s
    # (workers/process.py: DeliveryWorker.unsubscribe).
    codes = old.terminate(timeout_s=OLD_STOP_S)
    switch_s = time.monotonic() - switch_began
    # uvicorn ends a graceful shutdown by raising the signal it caught again: -SIGTERM, after its log
    # says the application shut down.
    assert codes == {"api": -signal.SIGTERM, "worker-1": 0, "worker-2": 0, "scheduler": 0}, old.logs()
    assert "Application shutdown complete" in (old.log_dir / "old-api.log").read_text()

    assert delivered_at_sigterm < BACKLOG, "a backlog is left for the new workers"
    time.sleep(AFTER_SIGTERM_S)  # the producer keeps posting through the new API, only new processes left
    producer.stop.set()
    thread.join(timeout=30)
    assert not producer.errors, producer.errors
    posted = set(producer.posted)
    poll(
        lambda: posted <= {a.webhook_id for a in receiver.snapshot()},
        timeout_s=120,
        what="every posted event at the receiver",
    )
    time.sleep(1.0)  # anything sent twice would arrive by now
    seen = Counter(a.webhook_id for a in receiver.snapshot())
    duplicates = sum(n - 1 for n in seen.values() if n > 1)
    figures = {
        "events": len(posted),
        "of which through the new API": sum(i.startswith("new-") for i in posted),
        "deliveries": sum(seen.values()),
        "duplicates": duplicates,
        "leased when the new processes started": leased_at_switch,
        "leased at SIGTERM (old and new workers)": leased_at_sigterm,
        "delivered before SIGTERM": delivered_at_sigterm,
        "switch s": round(switch_s, 1),
        "total s": round(time.monotonic() - began, 1),
    }
    assert set(seen) == posted, "the receiver saw exactly the posted events"
    assert duplicates == 0, (figures, [i for i, n in seen.items() if n > 1][:10])
    assert all(p.poll() is None for p in new.procs.values()), new.logs()
    return figures
