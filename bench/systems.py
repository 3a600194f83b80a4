"""What the harness drives: the receiver, and one adapter per system under test.

Every system answers the same five calls: ``start(workers)``, ``set_endpoints(urls)`` (a fresh set of
endpoints; every later event fans out to all of them), ``submit(events)``, ``submit_paced(events, rate)``
and ``stop()``; the recovery scenario also calls ``kill_worker()``. Each Redis-based system gets its own
redis-server (AOF on, fsync every second, no RDB snapshots). The tuned peers (arq, Celery threads) and
Temporal are in bench/systems_tuned.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import psutil

from bench.common import (
    Proc,
    RedisServer,
    envelope,
    free_port,
    http_ok,
    new_secret,
    python_module,
    wait_until,
)


@dataclass
class Event:
    id: str
    payload: dict[str, Any]
    event_type: str = "bench.test"


@dataclass
class Endpoint:
    url: str
    secret: str
    id: str = ""


def make_events(n: int, start: int = 0) -> list[Event]:
    """Events with a small, realistic payload (~250 bytes on the wire)."""
    return [
        Event(
            id=f"evt_{uuid.uuid4().hex}",
            payload={
                "n": start + i,
                "sent_at": 0.0,
                "object": "invoice",
                "customer": "cus_4f9a2c71d0",
                "amount_due": 1999 + i % 100,
                "currency": "usd",
                "lines": [{"sku": "plan_pro", "qty": 1}],
            },
        )
        for i in range(n)
    ]


# --------------------------------------------------------------------------- receiver


class Receiver:
    """The benchmark receiver (bench/receiver.py) in its own process."""

    def __init__(self) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = Proc("receiver", python_module("-m", "bench.receiver", "--port", str(self.port)))
        self.client = httpx.Client(base_url=self.base, timeout=10.0)
        wait_until(lambda: http_ok(f"{self.base}/healthz"), 20, "the receiver", procs=[self.proc])
        self.ps = psutil.Process(self.proc.pid)

    def url(self, mode: str, endpoint: str, ms: int | None = None) -> str:
        return f"{self.base}/{mode}/{endpoint}" + (f"?ms={ms}" if ms is not None else "")

    def reset(
        self, track_latency: bool = False, secrets: dict[str, str] | None = None, track_requests: bool = False
    ) -> None:
        config = {"track_latency": track_latency, "secrets": secrets or {}, "track_requests": track_requests}
        self.client.post("/reset", json=config)

    def stats(self, latency: bool = False, requests: bool = False) -> dict[str, Any]:
        params = {k: "1" for k, on in (("latency", latency), ("requests", requests)) if on}
        resp = self.client.get("/stats", params=params or None)
        resp.raise_for_status()
        result: dict[str, Any] = resp.json()
        return result

    def unique(self, mode: str) -> int:
        return int(self.stats()["modes"].get(mode, {}).get("unique", 0))

    def cpu_seconds(self) -> float:
        t = self.ps.cpu_times()
        return float(t.user + t.system)

    def stop(self) -> None:
        self.client.close()
        self.proc.stop()


# --------------------------------------------------------------------------- systems


class System:
    """Base adapter. ``name`` is the row label, ``notes`` says how the system was run."""

    name = "system"
    notes = ""
    # A system slower than the others gets its own time box (s) and cap on deliveries in (a), (b), (g).
    budget_s: float | None = None
    max_deliveries: int | None = None

    def start(self, workers: int, timeout_s: float) -> None:
        raise NotImplementedError

    def set_endpoints(self, urls: list[str]) -> list[Endpoint]:
        raise NotImplementedError

    def submit(self, events: list[Event]) -> None:
        raise NotImplementedError

    def submit_paced(self, events: list[Event], rate: float) -> float:
        """Post ``events`` one at a time at ``rate`` per second, stamping ``payload.sent_at`` as each one
        goes out. Returns the time the last one went out."""
        t0 = time.time()
        for i, event in enumerate(events):
            delay = t0 + i / rate - time.time()
            if delay > 0:
                time.sleep(delay)
            event.payload["sent_at"] = time.time()
            self.submit([event])
        return time.time()

    def worker_pids(self) -> list[int]:
        """The processes that execute deliveries (for RSS)."""
        return []

    def kill_worker(self) -> float:
        """SIGKILL one worker process and its process group, as a crash would; returns when (unix s)."""
        raise NotImplementedError(f"{self.name} has no kill_worker()")

    def stop(self) -> None:
        raise NotImplementedError

    def describe_failure(self) -> str:
        return ""


def kill_group(proc: Proc) -> float:
    """SIGKILL ``proc``'s whole process group (the worker and anything it forked); returns the time."""
    t = time.time()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    return t


def _body(event: Event) -> str:
    return envelope(event.event_type, event.payload).decode()


def tree_pids(procs: list[Proc]) -> list[int]:
    """The pids of ``procs`` and of all their children (for RSS)."""
    pids: list[int] = []
    for p in procs:
        with contextlib.suppress(psutil.Error):
            pids.append(p.pid)
            pids.extend(c.pid for c in psutil.Process(p.pid).children(recursive=True))
    return pids


class _RedisPeer(System):
    def __init__(self) -> None:
        self.redis: RedisServer | None = None
        self.procs: list[Proc] = []
        self.endpoints: list[Endpoint] = []
        self.timeout_s = 15.0
        self.producer: Any = None  # the producer's client, closed in stop()

    def _start_redis(self, timeout_s: float) -> dict[str, str]:
        """Start this peer's redis-server; returns the environment its workers need."""
        self.timeout_s = timeout_s
        self.redis = RedisServer(self.name)
        return {"BENCH_REDIS_URL": self.redis.url, "BENCH_REQUEST_TIMEOUT_S": str(timeout_s)}

    def set_endpoints(self, urls: list[str]) -> list[Endpoint]:
        self.endpoints = [Endpoint(url=u, secret=new_secret()) for u in urls]
        return self.endpoints

    def worker_pids(self) -> list[int]:
        return tree_pids(self.procs)

    def describe_failure(self) -> str:
        return "; ".join(f"{p.name}: {p.tail(2)}" for p in self.procs if not p.alive())

    def kill_worker(self) -> float:
        return kill_group(self.procs[0])

    def stop(self) -> None:
        if self.producer is not None:
            with contextlib.suppress(Exception):
                self.producer.close()
            self.producer = None
        for p in self.procs:
            p.stop()
        self.procs = []
        if self.redis:
            self.redis.stop()
            self.redis = None


RQ_MAIN = "import sys; from rq.cli import main; sys.exit(main())"


class RQPeer(_RedisPeer):
    """bench/peers/rq_peer.py run by ``rq worker`` processes (fork-per-job ``Worker`` or ``SimpleWorker``)."""

    def __init__(self, worker_class: str) -> None:
        super().__init__()
        self.worker_class = worker_class
        short = worker_class.rsplit(".", 1)[-1]
        self.name = f"rq-{'simple' if short == 'SimpleWorker' else 'fork'}"
        self.notes = f"rq {short}, one job per delivery, Retry(max=3, [5,300,1800])"
        self.queue: Any = None

    def start(self, workers: int, timeout_s: float) -> None:
        from redis import Redis
        from rq import Queue

        from bench.peers import rq_peer

        self.timeout_s = timeout_s
        self.redis = RedisServer(self.name)
        env = {"BENCH_REQUEST_TIMEOUT_S": str(timeout_s)}
        for i in range(workers):
            self.procs.append(
                Proc(
                    f"{self.name}-worker-{i}",
                    python_module(
                        "-c",
                        RQ_MAIN,
                        "worker",
                        "-u",
                        self.redis.url,
                        "-w",
                        self.worker_class,
                        "--with-scheduler",
                        "--logging_level",
                        "WARNING",
                        "-n",
                        f"bench-{i}-{uuid.uuid4().hex[:6]}",
                        rq_peer.QUEUE_NAME,
                    ),
                    env=env,
                )
            )
        self.queue = Queue(rq_peer.QUEUE_NAME, connection=Redis.from_url(self.redis.url))

    def submit(self, events: list[Event]) -> None:
        from bench.peers import rq_peer

        chunk: list[tuple[str, str, str, str]] = []
        for event in events:
            body = _body(event)
            for ep in self.endpoints:
                chunk.append((ep.url, ep.secret, event.id, body))
                if len(chunk) >= 1000:
                    rq_peer.enqueue_deliveries(self.queue, chunk)
                    chunk = []
        if chunk:
            rq_peer.enqueue_deliveries(self.queue, chunk)

    def stop(self) -> None:
        if self.queue is not None:
            with contextlib.suppress(Exception):
                self.queue.connection.close()
            self.queue = None
        super().stop()


class CeleryPeer(_RedisPeer):
    """bench/peers/celery_peer.py run by one ``celery worker --pool prefork --concurrency N``."""

    name = "celery"

    def __init__(self) -> None:
        super().__init__()
        self.concurrency = 0

    @property
    def notes(self) -> str:  # type: ignore[override]
        return (
            f"celery prefork --concurrency {self.concurrency} (+1 parent process), acks_late, "
            "prefetch 1, autoretry+retry_backoff"
        )

    def start(self, workers: int, timeout_s: float) -> None:
        from bench.peers import celery_peer

        self.concurrency = workers
        env = self._start_redis(timeout_s)
        self.procs.append(
            Proc(
                "celery-worker",
                python_module(
                    "-m",
                    "celery",
                    "-A",
                    "bench.peers.celery_peer",
                    "worker",
                    "--pool",
                    "prefork",
                    "--concurrency",
                    str(workers),
                    "--loglevel",
                    "WARNING",
                    "-n",
                    f"bench-{uuid.uuid4().hex[:6]}@%h",
                ),
                env=env,
            )
        )
        self.producer = celery_peer.make_app(self.redis.url)

    def submit(self, events: list[Event]) -> None:
        from bench.peers import celery_peer

        for event in events:
            body = _body(event)
            for ep in self.endpoints:
                celery_peer.enqueue_with(self.producer, ep.url, ep.secret, event.id, body)


class Ceiling(System):
    """bench/ceiling.py: N processes firing the signed POSTs directly, no queue, no durability."""

    name = "ceiling"

    def __init__(self, concurrency: int = 256) -> None:
        self.concurrency = concurrency
        self.procs: list[Proc] = []
        self.endpoints: list[Endpoint] = []
        self.timeout_s = 15.0
        self.notes = (
            f"no queue: httpx.AsyncClient + AiohttpTransport on uvloop, {concurrency} in flight per process"
        )

    def start(self, workers: int, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.procs = [
            Proc(f"ceiling-{i}", python_module("-m", "bench.ceiling"), stdin=subprocess.PIPE)
            for i in range(workers)
        ]

    def set_endpoints(self, urls: list[str]) -> list[Endpoint]:
        self.endpoints = [Endpoint(url=u, secret=new_secret()) for u in urls]
        return self.endpoints

    def _send_plan(self, events: list[dict[str, Any]], t0: float | None) -> None:
        if not self.procs or any(p.popen.stdin is None or p.popen.stdin.closed for p in self.procs):
            raise RuntimeError("the ceiling processes take one plan each; call start() again")
        for i, p in enumerate(self.procs):
            plan = {
                "part": i,
                "parts": len(self.procs),
                "concurrency": self.concurrency,
                "timeout_s": self.timeout_s,
                "t0": t0,
                "endpoints": [[ep.url, ep.secret] for ep in self.endpoints],
                "events": events,
            }
            assert p.popen.stdin is not None
            p.popen.stdin.write(json.dumps(plan).encode())
            p.popen.stdin.close()

    def submit(self, events: list[Event]) -> None:
        self._send_plan(
            [{"id": e.id, "payload": e.payload, "event_type": e.event_type, "at": None} for e in events], None
        )

    def submit_paced(self, events: list[Event], rate: float) -> float:
        t0 = time.time() + 0.2
        self._send_plan(
            [
                {"id": e.id, "payload": e.payload, "event_type": e.event_type, "at": i / rate}
                for i, e in enumerate(events)
            ],
            t0,
        )
        last = t0 + (len(events) - 1) / rate
        time.sleep(max(0.0, last - time.time()))
        return last

    def worker_pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def describe_failure(self) -> str:
        return "; ".join(f"{p.name}: {p.tail(2)}" for p in self.procs if not p.alive())

    def stop(self) -> None:
        for p in self.procs:
            p.stop()
        self.procs = []
