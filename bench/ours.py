"""Our platform, driven exactly as docs/CONTRACT says: the ``webhooks`` CLI and the HTTP API.

``start`` launches a private redis-server (AOF on), then ``webhooks api``, ``webhooks worker`` x N and
``webhooks scheduler`` with ``WEBHOOKS_REDIS_URL``, ``WEBHOOKS_ADMIN_TOKEN``,
``WEBHOOKS_ALLOW_PRIVATE_TARGETS=true`` and ``WEBHOOKS_API_PORT``, and waits for ``GET /readyz``.
``set_endpoints`` creates a fresh tenant (admin token) and its endpoints (tenant key);
``submit`` posts ``/v1/events/batch`` (1,000 per request); ``submit_paced`` posts ``/v1/events``.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench.common import Proc, RedisServer, free_port, wait_until
from bench.systems import Endpoint, Event, System, kill_group, tree_pids

BATCH = 1000


def webhooks_command() -> list[str]:
    """The ``webhooks`` console script next to this interpreter, else ``python -m cli``."""
    script = Path(sys.executable).parent / "webhooks"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "cli"]


class ApiError(RuntimeError):
    pass


class OurPlatform(System):
    name = "ours"

    def __init__(self) -> None:
        self.redis: RedisServer | None = None
        self.api: Proc | None = None
        self.workers: list[Proc] = []
        self.scheduler: Proc | None = None
        self.admin_token = secrets.token_urlsafe(24)
        self.secret_key = secrets.token_urlsafe(48)
        self.api_port = 0
        self.base = ""
        self.client: httpx.Client | None = None
        self.tenant_key = ""
        self.tenant_id = ""
        self.endpoints: list[Endpoint] = []
        self.data_dir = ""
        self.n_workers = 0
        self.timeout_s = 15.0
        self.notes = "webhooks api + worker xN + scheduler (CLI), events via /v1/events[/batch]"
        self.extra_env: dict[str, str] = {}  # settings a scenario adds (e.g. WEBHOOKS_API_WORKERS)

    # ------------------------------------------------------------------ processes

    def env(self) -> dict[str, str]:
        assert self.redis is not None
        return {
            "WEBHOOKS_REDIS_URL": self.redis.url,
            "WEBHOOKS_ADMIN_TOKEN": self.admin_token,
            "WEBHOOKS_ALLOW_PRIVATE_TARGETS": "true",
            "WEBHOOKS_API_HOST": "127.0.0.1",
            "WEBHOOKS_API_PORT": str(self.api_port),
            "WEBHOOKS_REQUEST_TIMEOUT_S": str(int(self.timeout_s)),
            "WEBHOOKS_DATA_DIR": self.data_dir,
            # As `webhooks up` runs it: endpoint secrets encrypted at rest. Logs at WARNING like the peers.
            "WEBHOOKS_SECRET_KEY": self.secret_key,
            "WEBHOOKS_LOG_LEVEL": "WARNING",
            # The per-tenant API rate limit (default 1,000 requests/s) is a quota, not a capacity: keep the
            # limiter in the path but out of the way, or (d) measures the quota. Not a contract setting.
            "WEBHOOKS_TENANT_RATE_LIMIT_PER_S": "1000000",
            **self.extra_env,
        }

    def start(self, workers: int, timeout_s: float, scheduler: bool = True) -> None:
        cmd = webhooks_command()
        self.timeout_s = timeout_s
        self.n_workers = workers
        self.data_dir = tempfile.mkdtemp(prefix="bench-ours-")
        self.redis = RedisServer("ours")
        self.api_port = free_port()
        self.base = f"http://127.0.0.1:{self.api_port}"
        env = self.env()
        self.api = Proc("ours-api", [*cmd, "api"], env=env)
        self.client = httpx.Client(base_url=self.base, timeout=60.0)
        try:
            wait_until(self._ready, 60, "ours: GET /readyz 200", interval=0.2, procs=[self.api])
        except Exception as exc:
            raise RuntimeError(f"{exc}; api log: {self.api.tail(4)!r}") from exc
        for i in range(workers):
            self.workers.append(Proc(f"ours-worker-{i}", [*cmd, "worker"], env=env))
        if scheduler:
            self.scheduler = Proc("ours-scheduler", [*cmd, "scheduler"], env=env)

    def _ready(self) -> bool:
        assert self.client is not None
        return self.client.get("/readyz", timeout=2.0).status_code == 200

    def all_procs(self) -> list[Proc]:
        procs = [p for p in (self.api, self.scheduler) if p is not None]
        return procs + self.workers

    def worker_pids(self) -> list[int]:
        return tree_pids(self.workers)

    def api_pids(self) -> list[int]:
        if self.api is None:
            return []
        with contextlib.suppress(psutil.Error):
            return [self.api.pid, *(c.pid for c in psutil.Process(self.api.pid).children(recursive=True))]
        return [self.api.pid]

    def kill_worker(self) -> float:
        return kill_group(self.workers[0])

    def describe_failure(self) -> str:
        dead = [p for p in self.all_procs() if not p.alive()]
        return "; ".join(f"{p.name} exited {p.popen.returncode}: {p.tail(3)!r}" for p in dead)

    def stop(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
        for p in self.all_procs():  # api and scheduler first, then the workers
            p.stop()
        self.workers, self.scheduler, self.api = [], None, None
        if self.redis is not None:
            self.redis.stop()
            self.redis = None
        if self.data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    # ------------------------------------------------------------------ API

    def _call(self, method: str, path: str, token: str, expect: tuple[int, ...], **kw: Any) -> Any:
        assert self.client is not None
        resp = self.client.request(method, path, headers={"authorization": f"Bearer {token}"}, **kw)
        if resp.status_code not in expect:
            raise ApiError(f"{method} {path} -> {resp.status_code} (expected {expect}): {resp.text[:300]}")
        return resp.json() if resp.content else None

    def set_endpoints(self, urls: list[str]) -> list[Endpoint]:
        tenant = self._call(
            "POST",
            "/v1/tenants",
            self.admin_token,
            (200, 201),
            json={"name": f"bench-{uuid.uuid4().hex[:8]}"},
        )
        self.tenant_key, self.tenant_id = tenant["api_key"], tenant["id"]
        self.endpoints = []
        for url in urls:
            ep = self._call("POST", "/v1/endpoints", self.tenant_key, (200, 201), json={"url": url})
            self.endpoints.append(Endpoint(url=url, secret=ep["secret"], id=ep["id"]))
        return self.endpoints

    @staticmethod
    def _event_json(event: Event) -> dict[str, Any]:
        return {"event_type": event.event_type, "payload": event.payload}

    def submit(self, events: list[Event]) -> None:
        for i in range(0, len(events), BATCH):
            chunk = [self._event_json(e) for e in events[i : i + BATCH]]
            self._call("POST", "/v1/events/batch", self.tenant_key, (200, 201, 202), json={"events": chunk})

    def submit_paced(self, events: list[Event], rate: float) -> float:
        t0 = time.time()
        for i, event in enumerate(events):
            delay = t0 + i / rate - time.time()
            if delay > 0:
                time.sleep(delay)
            event.payload["sent_at"] = time.time()
            self._call("POST", "/v1/events", self.tenant_key, (200, 201, 202), json=self._event_json(event))
        return time.time()

    def count_deliveries(self, status: str, limit: int = 1000, max_pages: int = 5) -> int | None:
        """How many deliveries are in ``status`` (capped at limit * max_pages); None when the API says no."""
        total, cursor = 0, None
        try:
            for _ in range(max_pages):
                params: dict[str, Any] = {"status": status, "limit": limit}
                if cursor:
                    params["cursor"] = cursor
                page = self._call("GET", "/v1/deliveries", self.tenant_key, (200,), params=params)
                total += len(page.get("data", []))
                cursor = page.get("next_cursor")
                if not cursor:
                    break
        except (ApiError, httpx.HTTPError, ValueError, AttributeError):
            return None
        return total
