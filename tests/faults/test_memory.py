"""Bounded memory on a real redis-server with a small ``maxmemory``.

- 150,000 events through a 64 MB Redis: settled history gives way oldest first, so every event is
  accepted and delivered while used memory stays below the limit throughout.
- A Redis truly full of pending work (its endpoint down): ingest answers 503 ``storage_full`` with
  ``Retry-After``, reads answer 200, ``/readyz`` 503, no process exits, and once the endpoint
  answers again every accepted event is delivered.
"""

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.conftest import ADMIN_TOKEN, ROOT, SECRET_KEY, Processes
from tests.support.poll import poll
from tests.support.receiver import Receiver
from tests.support.redis_proc import RedisProc, free_port
from webhooks import keys

MB = 1024 * 1024


class Stack:
    """A Redis with ``maxmemory``, the API and two workers (each with its embedded scheduler)."""

    def __init__(self, tmp: Path, maxmemory_mb: int, **settings: str) -> None:
        self.redis = RedisProc(tmp / "redis", extra=["--maxmemory", f"{maxmemory_mb}mb"]).start()
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("WEBHOOKS_")}
        env.update(
            WEBHOOKS_REDIS_URL=self.redis.url,
            WEBHOOKS_ADMIN_TOKEN=ADMIN_TOKEN,
            WEBHOOKS_SECRET_KEY=SECRET_KEY,
            WEBHOOKS_ALLOW_PRIVATE_TARGETS="true",
            WEBHOOKS_API_PORT=str(self.port),
            WEBHOOKS_TENANT_RATE_LIMIT_PER_S="0",
            WEBHOOKS_LEASE_TTL_S="3",
            **settings,
        )
        self.procs = Processes(env, tmp)
        self.api_proc = self.procs.start("api")
        self.workers = [self.procs.worker(), self.procs.worker()]
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30)
        self.r = redis.Redis.from_url(self.redis.url, decode_responses=True)
        self.admin = {"authorization": f"Bearer {ADMIN_TOKEN}"}

    def _ready(self) -> bool:
        try:
            return self.http.get("/healthz").status_code == 200
        except httpx.HTTPError:
            return False

    def tenant(self, url: str) -> dict[str, str]:
        t = self.http.post("/v1/tenants", json={"name": "mem"}, headers=self.admin).json()
        auth = {"authorization": f"Bearer {t['api_key']}"}
        assert self.http.post("/v1/endpoints", json={"url": url}, headers=auth).status_code == 201
        return auth

    def alive(self) -> bool:
        return all(p.poll() is None for p in [self.api_proc, *self.workers])

    def stop(self) -> None:
        self.http.close()
        self.r.close()
        self.procs.stop_all()
        self.redis.stop()


@pytest.fixture
def make_stack(tmp_path: Path) -> Iterator[Any]:
    made: list[Stack] = []

    def make(maxmemory_mb: int, **settings: str) -> Stack:
        made.append(Stack(tmp_path, maxmemory_mb, **settings))
        poll(made[-1]._ready, 60, what="the API")
        return made[-1]

    yield make
    for s in made:
        s.stop()


class BenchReceiver:
    """The benchmark's fast receiver (bench/receiver.py) in its own process: counts unique ids."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.receiver", "--port", str(self.port)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=10)
        poll(self._up, 20, what="the receiver")

    def _up(self) -> bool:
        try:
            return self.http.get("/healthz").status_code == 200
        except httpx.HTTPError:
            return False

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/instant/{name}"

    def unique(self) -> int:
        return int(self.http.get("/stats").json()["modes"].get("instant", {}).get("unique", 0))

    def stop(self) -> None:
        self.http.close()
        self.proc.kill()
        self.proc.wait()


def post_all(stack: Stack, auth: dict[str, str], events: list[dict[str, Any]]) -> int:
    """Post in batches of 1,000 (ids make a retry safe); on 503 storage_full wait Retry-After and
    post the same batch again. Returns how many 503s were met."""
    refused = 0
    for start in range(0, len(events), 1000):
        batch = events[start : start + 1000]
        while True:
            resp = stack.http.post("/v1/events/batch", json={"events": batch}, headers=auth)
            if resp.status_code == 202:
                break
            assert resp.status_code == 503 and resp.json()["error"] == "storage_full", resp.text
            assert int(resp.headers["retry-after"]) >= 1
            refused += 1
            time.sleep(0.5)
    return refused


def test_150k_events_through_a_64mb_redis_all_accepted_and_delivered(make_stack: Any) -> None:
    stack = make_stack(64)
    receiver = BenchReceiver()
    try:
        auth = stack.tenant(receiver.url("mem"))
        peak = [0]
        done = threading.Event()

        def watch() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], int(stack.r.info("memory")["used_memory"]))
                time.sleep(0.1)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        events = [{"id": f"m{i}", "event_type": "a.b", "payload": {"n": i}} for i in range(150_000)]
        post_all(stack, auth, events)
        poll(lambda: receiver.unique() >= 150_000, 600, what="150,000 deliveries", interval_s=1.0)
        done.set()
        watcher.join()
        assert peak[0] < 64 * MB, f"used memory peaked at {peak[0] / MB:.1f} MB"
        assert receiver.unique() == 150_000
        assert stack.alive()
        # history gave way, oldest first: a 64 MB Redis keeps about 50,000 settled events below its
        # 70 % watermark, so most of the 150,000 are gone and the newest are the ones kept
        (tenant_id,) = stack.r.zrange(keys.TENANTS, 0, -1)
        kept = stack.r.zrange(keys.events(tenant_id), 0, -1)
        assert 10_000 < len(kept) < 90_000, len(kept)
        assert f"m{149_999}" in kept and "m0" not in kept
    finally:
        receiver.stop()


def test_a_redis_full_of_pending_work_refuses_ingest_keeps_reads_and_loses_nothing(make_stack: Any) -> None:
    stack = make_stack(
        12,
        WEBHOOKS_RETRY_SCHEDULE=",".join(["1"] * 40),
        WEBHOOKS_BREAKER_PAUSE_S="1",
        WEBHOOKS_BREAKER_MAX_PAUSE_S="2",
    )
    receiver = Receiver().start()
    try:
        receiver.down.add("full")
        auth = stack.tenant(receiver.url("switch/full"))
        accepted: list[str] = []
        answer = None
        for i in range(400):
            batch = [{"id": f"p{i}-{j}", "event_type": "a.b", "payload": {"n": j}} for j in range(500)]
            resp = stack.http.post("/v1/events/batch", json={"events": batch}, headers=auth)
            if resp.status_code != 202:
                answer = resp
                break
            accepted += [e["id"] for e in resp.json()]
        assert answer is not None, "Redis never filled up"
        assert answer.status_code == 503 and answer.json()["error"] == "storage_full", answer.text
        assert "storage" in answer.json()["message"] and int(answer.headers["retry-after"]) >= 1
        # Reads keep answering: authentication and the rate limit need no write for them.
        assert stack.http.get("/v1/endpoints", headers=auth).status_code == 200
        assert stack.http.get("/v1/deliveries?limit=5", headers=auth).status_code == 200
        ready = poll(lambda: (r := stack.http.get("/readyz")).status_code == 503 and r, 30, what="readyz 503")
        assert ready.json()["status"] == "storage_full"
        # Workers and scheduler ride on at full memory: the breaker's probes and the retries the
        # scheduler makes due keep reaching the receiver.
        seen = len(receiver.to("switch/full"))
        poll(lambda: len(receiver.to("switch/full")) >= seen + 3, 30, what="attempts at full memory")
        assert stack.alive()
        receiver.down.clear()
        want = set(accepted)
        poll(
            lambda: want <= {r.headers["webhook-id"] for r in receiver.to("switch/full")},
            300,
            what=f"all {len(want)} accepted events delivered",
            interval_s=1.0,
        )
        assert stack.alive()
        poll(lambda: stack.http.get("/readyz").status_code == 200, 60, what="readyz 200 again")
    finally:
        receiver.stop()
