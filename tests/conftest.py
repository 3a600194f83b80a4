"""Shared fixtures: a real redis-server, a real HTTP receiver, the API, worker processes, tenants.

Every test gets a flushed Redis. Worker and scheduler processes are real
subprocesses (``python -m cli worker``) so that killing them is real too.
"""

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from api.app import ApiConfig
from tests.support.api_server import ApiServer
from tests.support.jobs import run_operations
from tests.support.receiver import Receiver
from tests.support.redis_proc import RedisProc
from webhooks.outbound.secretbox import SecretBox
from webhooks.runtime.connection import RedisTarget
from webhooks.stores.policy import Policy

ADMIN_TOKEN = "test-admin-token-0123456789abcdef"
SECRET_KEY = "test-secret-key-0123456789abcdef0123456789"
ROOT = Path(__file__).resolve().parent.parent
FAST_SCHEDULE = "0.2,0.2,0.2"


@pytest.fixture(scope="session")
def redis_proc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProc]:
    proc = RedisProc(tmp_path_factory.mktemp("redis")).start()
    yield proc
    proc.stop()


@pytest.fixture
def redis_url(redis_proc: RedisProc) -> str:
    client = redis.Redis.from_url(redis_proc.url)
    client.flushall()
    client.close()
    return redis_proc.url


@pytest.fixture
def run_jobs(redis_url: str) -> Callable[[], int]:
    """``run_jobs()``: run the queued operators' jobs (replays, tenant deletions) as a worker would."""
    return lambda: run_operations(redis_url)


@pytest.fixture
def rds(redis_url: str) -> Iterator["redis.Redis"]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver().start()
    yield rec
    rec.stop()


@pytest.fixture
def env(redis_url: str) -> dict[str, str]:
    """Environment for platform subprocesses: fast retries, short timeouts and leases."""
    return platform_env(WEBHOOKS_REDIS_URL=redis_url)


def platform_env(**redis: str) -> dict[str, str]:
    """The environment of platform subprocesses, with ``redis`` saying where Redis is."""
    out = {k: v for k, v in os.environ.items() if not k.startswith("WEBHOOKS_")}
    out.update(
        **redis,
        WEBHOOKS_ADMIN_TOKEN=ADMIN_TOKEN,
        WEBHOOKS_SECRET_KEY=SECRET_KEY,
        WEBHOOKS_ALLOW_PRIVATE_TARGETS="true",
        WEBHOOKS_RETRY_SCHEDULE=FAST_SCHEDULE,
        WEBHOOKS_REQUEST_TIMEOUT_S="3",
        WEBHOOKS_LEASE_TTL_S="2",
        # The fast schedule runs a failing delivery to its end in a second; the circuit breaker
        # would stretch that to minutes. Tests of the breaker set it themselves.
        WEBHOOKS_BREAKER_FAILURES="1000",
        WEBHOOKS_LOG_LEVEL="INFO",
        PYTHONPATH=str(ROOT),
    )
    return out


def api_config(redis: str | RedisTarget, **policy: Any) -> ApiConfig:
    return ApiConfig(
        target=RedisTarget(redis) if isinstance(redis, str) else redis,
        box=SecretBox(SECRET_KEY),
        policy=Policy(**{"allow_private_targets": True, **policy}),
        admin_token=ADMIN_TOKEN,
    )


class ApiServers:
    """API servers started by a test, each with a client; all stopped at teardown."""

    def __init__(self) -> None:
        self.servers: list[ApiServer] = []
        self.clients: list[httpx.Client] = []

    def start(self, config: ApiConfig) -> httpx.Client:
        self.servers.append(ApiServer(config).start())
        self.clients.append(httpx.Client(base_url=self.servers[-1].url, timeout=30))
        return self.clients[-1]

    def stop_all(self) -> None:
        for c in self.clients:
            c.close()
        for s in self.servers:
            s.stop()


@pytest.fixture(scope="session")
def api_server(redis_proc: RedisProc) -> Iterator[ApiServer]:
    """One API server for the session (it keeps no state besides Redis, which tests flush)."""
    server = ApiServer(api_config(redis_proc.url)).start()
    yield server
    server.stop()


@pytest.fixture
def api(api_server: ApiServer, redis_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_server.url, timeout=30) as client:
        yield client


@pytest.fixture
def make_api(redis_url: str) -> Iterator[Callable[..., httpx.Client]]:
    """An API server with its own policy (e.g. private targets refused), for the test's duration."""
    servers = ApiServers()
    yield lambda **policy: servers.start(api_config(redis_url, **policy))
    servers.stop_all()


@pytest.fixture
def admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@dataclass
class Tenant:
    id: str
    api_key: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


@pytest.fixture
def make_tenant(api: httpx.Client, admin: dict[str, str]) -> Callable[..., Tenant]:
    def make(name: str = "acme") -> Tenant:
        resp = api.post("/v1/tenants", json={"name": name}, headers=admin)
        assert resp.status_code == 201, resp.text
        body = resp.json()
        return Tenant(body["id"], body["api_key"])

    return make


@pytest.fixture
def tenant(make_tenant: Callable[..., Tenant]) -> Tenant:
    return make_tenant()


@pytest.fixture
def make_endpoint(api: httpx.Client, tenant: Tenant) -> Callable[..., dict[str, Any]]:
    def make(url: str, **fields: Any) -> dict[str, Any]:
        resp = api.post("/v1/endpoints", json={"url": url, **fields}, headers=tenant.auth)
        assert resp.status_code == 201, resp.text
        return dict(resp.json())

    return make


class Processes:
    """Platform subprocesses started by a test; all are killed at teardown."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = open(self.log_dir / f"{'-'.join(args)}-{len(self.procs)}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli", *args],
            env={**self.env, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,
        )
        log.close()
        self.procs.append(proc)
        return proc

    def worker(self, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        return self.start("worker", *extra, env=env)

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.log_dir.glob("*.log")))

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture
def procs(env: dict[str, str], tmp_path: Path) -> Iterator[Processes]:
    p = Processes(env, tmp_path)
    yield p
    p.stop_all()
