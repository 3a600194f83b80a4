"""Real processes for the fault scenarios: redis-server (plain or with Sentinel) and the platform's own.

Everything here is started by the caller, on loopback ports it picked, and is
killed by process id only. Ports are picked below the kernel's ephemeral range so
that a port freed by a SIGKILL cannot be taken by an outgoing connection before
the process that owned it is restarted on it.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis

from tests.support.servers import server_binary

ROOT = Path(__file__).resolve().parents[2]
REDIS_SERVER = server_binary().path

ADMIN_TOKEN = "fault-admin-token-0123456789abcdef"
SECRET_KEY = "fault-secret-key-0123456789abcdef0123456789"

_taken: set[int] = set()
_taken_lock = threading.Lock()


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def stable_port() -> int:
    """A free loopback port outside the ephemeral range, never handed out twice by this process."""
    high = min(_ephemeral_low() - 1, 32000)
    low = 12000 if high > 13000 else 1025
    rng = random.Random()
    for _ in range(2000):
        port = rng.randint(low, high)
        with _taken_lock:
            if port in _taken:
                continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        with _taken_lock:
            _taken.add(port)
        return port
    raise RuntimeError("no free loopback port below the ephemeral range")


def wait_until(fn: Callable[[], object], timeout_s: float, what: str, interval_s: float = 0.02) -> object:
    deadline = time.monotonic() + timeout_s
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:g}s waiting for {what}")
        time.sleep(interval_s)


# ---------------------------------------------------------------------------------------- redis


class RedisServer:
    """One redis-server with AOF in ``data_dir``; SIGKILL and restart on the same port and files."""

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        appendonly: bool = True,
        appendfsync: str = "always",
        maxmemory_policy: str = "noeviction",
        extra: list[str] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.port = port or stable_port()
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.maxmemory_policy = maxmemory_policy
        self.extra = list(extra or [])
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def aof_dir(self) -> Path:
        return self.data_dir / "appendonlydir"

    def argv(self) -> list[str]:
        return [
            REDIS_SERVER,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.data_dir),
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", self.appendfsync,
            "--save", "",
            "--maxmemory-policy", self.maxmemory_policy,
            "--logfile", str(self.data_dir / "redis.log"),
            *self.extra,
        ]  # fmt: skip

    def start(self, timeout_s: float = 30.0) -> RedisServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            self.argv(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        self.starts += 1
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5, socket_timeout=2)
        try:

            def up() -> bool:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise RuntimeError(f"redis-server exited at start; see {self.data_dir / 'redis.log'}")
                try:
                    return bool(client.ping()) and not client.info("persistence").get("loading", 0)
                except (redis.ConnectionError, redis.BusyLoadingError, redis.TimeoutError):
                    return False

            wait_until(up, timeout_s, f"redis-server on port {self.port}")
        finally:
            client.close()
        return self

    def kill(self) -> None:
        """SIGKILL: nothing is flushed beyond what the AOF policy already wrote."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def snapshot_aof(self, dest: Path) -> Path:
        """Copy the AOF as it is now (call it between kill and restart: the state at the kill)."""
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copytree(self.aof_dir, dest / "appendonlydir")
        return dest

    def client(self, **kw: object) -> redis.Redis:
        return redis.Redis(port=self.port, decode_responses=True, socket_connect_timeout=1, **kw)  # type: ignore[arg-type]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


class AofSnapshot:
    """Loads an AOF copy into a throw-away redis-server and hands out a client to read it."""

    def __init__(self, snapshot_dir: Path) -> None:
        self.server = RedisServer(snapshot_dir, appendfsync="no")

    def __enter__(self) -> redis.Redis:
        self.server.start(timeout_s=60)
        self.client = self.server.client()
        return self.client

    def __exit__(self, *exc: object) -> None:
        self.client.close()
        self.server.kill()


class DelayProxy:
    """A TCP proxy in front of a primary that makes its replication stream late.

    Everybody (sentinels, clients, the replica) reaches the primary through the proxy, so
    the primary's address as Sentinel knows it is the proxy's: a replica following another
    address would be re-pointed by Sentinel. Bytes from the primary on a connection that
    asked for a replication stream (``PSYNC``/``SYNC``) are handed on ``delay_s`` late, in
    order; other connections are not delayed. :meth:`crash` drops everything still on its
    way, as the crash of the primary's machine would.
    """

    def __init__(self, upstream_port: int, delay_s: float) -> None:
        self.upstream_port = upstream_port
        self.delay_s = delay_s
        self.port = stable_port()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.writers: list[asyncio.StreamWriter] = []
        # Every accepted connection, recorded as it is accepted: a connection whose task is cancelled
        # before its first step (the proxy stopping) never runs _client, and would stay open.
        self.accepted: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None
        self.thread = threading.Thread(target=self._run, name="delay-proxy", daemon=True)
        self.ready = threading.Event()

    def start(self) -> DelayProxy:
        self.thread.start()
        if not self.ready.wait(10):
            raise RuntimeError("the delay proxy did not start")
        return self

    def _run(self) -> None:
        loop = self.loop = asyncio.new_event_loop()
        listening = asyncio.start_server(self._accept, "127.0.0.1", self.port)
        server = self.server = loop.run_until_complete(listening)
        self.ready.set()
        loop.run_forever()
        server.close()
        # A connection accepted just before (clients reconnect at once after a crash) is a bare
        # socket until its pending task makes the transport and calls _accept: cancelled before
        # that first step, the task would never close it. Let those tasks take their first steps.
        for _ in range(3):
            loop.run_until_complete(asyncio.sleep(0))
        tasks = asyncio.all_tasks(loop)
        for task in tasks:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        for w in self.writers + self.accepted:
            w.transport.abort()
        # Let the aborted transports (and any a cancelled connect closed) close their sockets: each
        # close is a callback of the next loop step.
        for _ in range(3):
            loop.run_until_complete(asyncio.sleep(0))
        loop.close()

    def _accept(
        self, down_r: asyncio.StreamReader, down_w: asyncio.StreamWriter
    ) -> Coroutine[Any, Any, None]:
        """Called as a connection is accepted, before any task runs: record it, then serve it."""
        self.accepted.append(down_w)
        return self._client(down_r, down_w)

    async def _client(self, down_r: asyncio.StreamReader, down_w: asyncio.StreamWriter) -> None:
        try:
            await self._serve(down_r, down_w)
        except asyncio.CancelledError:
            # The proxy is going away (crash or stop): end quietly, without leaving the socket of a
            # connection accepted before its upstream was open (not yet in self.writers) unclosed.
            down_w.transport.abort()

    async def _serve(self, down_r: asyncio.StreamReader, down_w: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            down_w.close()
            return
        self.writers += [down_w, up_w]
        replication = {"delay": 0.0}

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter, upstream: bool) -> None:
            queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

            async def send() -> None:
                while True:
                    due, chunk = await queue.get()
                    if due > time.monotonic():
                        await asyncio.sleep(due - time.monotonic())
                    w.write(chunk)
                    await w.drain()

            sender = asyncio.ensure_future(send())
            try:
                while chunk := await r.read(65536):
                    if not upstream and (b"PSYNC" in chunk or b"\r\nSYNC\r\n" in chunk):
                        replication["delay"] = self.delay_s
                    queue.put_nowait((time.monotonic() + (replication["delay"] if upstream else 0.0), chunk))
                while not queue.empty():
                    await asyncio.sleep(0.01)
            except (ConnectionError, OSError):
                pass
            finally:
                sender.cancel()
                w.close()

        await asyncio.gather(pipe(up_r, down_w, True), pipe(down_r, up_w, False), return_exceptions=True)

    def crash(self) -> None:
        """Drop every connection at once, with whatever bytes had not been handed on yet."""
        if self.loop is None or not self.thread.is_alive():
            return

        def drop() -> None:
            if self.server is not None:
                self.server.close()  # the machine is gone: nothing more is accepted
            for w in self.writers + self.accepted:
                w.transport.abort()
            assert self.loop is not None
            self.loop.stop()

        self.loop.call_soon_threadsafe(drop)
        self.thread.join(timeout=5)


class SentinelCluster:
    """A primary, ``replicas`` replicas (default one) and three sentinels on loopback; all with AOF."""

    def __init__(
        self,
        base: Path,
        *,
        master_name: str = "whmaster",
        appendfsync: str = "everysec",
        # Above a sentinel's ping period (1 s): right after a switch a sentinel times its new link to
        # the promoted primary from the link's creation and pings only a period later, so at 1000 ms
        # all three sentinels could call the just-promoted primary down before its first answer and
        # promote the other replica while the first stayed a primary for seconds (seen: a second
        # failover 1.0 s after the first, two primaries for 11 s, 256 duplicate deliveries).
        down_after_ms: int = 2000,
        failover_timeout_ms: int = 10000,
        primary_extra: list[str] | None = None,
        replication_delay_s: float = 0.0,
        replicas: int = 1,
    ) -> None:
        self.base = base
        self.master_name = master_name
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.primary = RedisServer(base / "primary", appendfsync=appendfsync, extra=primary_extra)
        # With a delay, the replica replicates through a proxy that lags (see DelayProxy).
        self.proxy = DelayProxy(self.primary.port, replication_delay_s) if replication_delay_s > 0 else None
        upstream = self.proxy.port if self.proxy is not None else self.primary.port
        self.replicas = [
            RedisServer(
                base / ("replica" if i == 0 else f"replica-{i + 1}"),
                appendfsync=appendfsync,
                extra=["--replicaof", "127.0.0.1", str(upstream), *(primary_extra or [])],
            )
            for i in range(replicas)
        ]
        self.replica = self.replicas[0]
        self.sentinel_ports = [stable_port() for _ in range(3)]
        self.sentinels: list[subprocess.Popen[bytes]] = []
        self.sentinel_clients: list[redis.Redis] = []

    @property
    def addresses(self) -> str:
        return ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)

    @property
    def primary_port(self) -> int:
        """The primary's port as everybody knows it (the proxy's, when replication is delayed)."""
        return self.proxy.port if self.proxy is not None else self.primary.port

    def _sentinel(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, decode_responses=True, socket_connect_timeout=0.5, socket_timeout=2)

    def start(self, timeout_s: float = 30.0) -> SentinelCluster:
        self.primary.start()
        if self.proxy is not None:
            self.proxy.start()
        for replica in self.replicas:
            replica.start()
            rep = replica.client()
            wait_until(
                lambda rep=rep: rep.info("replication").get("master_link_status") == "up",
                timeout_s,
                "the replica to sync",
            )
            rep.close()
        for i, port in enumerate(self.sentinel_ports):
            d = self.base / f"sentinel-{i}"
            d.mkdir(parents=True, exist_ok=True)
            conf = d / "sentinel.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndaemonize no\ndir {d}\nlogfile {d / 'sentinel.log'}\n"
                f"sentinel monitor {self.master_name} 127.0.0.1 {self.primary_port} 2\n"
                f"sentinel down-after-milliseconds {self.master_name} {self.down_after_ms}\n"
                f"sentinel failover-timeout {self.master_name} {self.failover_timeout_ms}\n"
                f"sentinel parallel-syncs {self.master_name} 1\n"
            )
            self.sentinels.append(
                subprocess.Popen(
                    [REDIS_SERVER, str(conf), "--sentinel"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )

        def settled() -> bool:
            for port in self.sentinel_ports:
                try:
                    s = self._sentinel(port)
                    replicas = s.sentinel_slaves(self.master_name)
                    peers = s.sentinel_sentinels(self.master_name)
                    s.close()
                except redis.RedisError:
                    return False
                if len(peers) < 2 or not any("s_down" not in str(r.get("flags")) for r in replicas):
                    return False
            return True

        wait_until(settled, timeout_s, "the sentinels to see the replica and each other", 0.1)
        return self

    def master_address(self) -> tuple[str, int] | None:
        for port in self.sentinel_ports:
            try:
                s = self._sentinel(port)
                addr = s.sentinel_get_master_addr_by_name(self.master_name)
                s.close()
                if addr:
                    return str(addr[0]), int(addr[1])
            except redis.RedisError:
                continue
        return None

    def master_client(self) -> redis.Redis:
        from redis.sentinel import Sentinel

        sentinel = Sentinel([("127.0.0.1", p) for p in self.sentinel_ports], socket_timeout=2)
        self.sentinel_clients.extend(sentinel.sentinels)  # closed by stop(); the caller closes the master
        return sentinel.master_for(self.master_name, decode_responses=True, socket_timeout=5)

    def crash_primary(self) -> None:
        """SIGKILL the primary; with a replication delay, what was still on its way is lost too."""
        self.primary.kill()
        if self.proxy is not None:
            self.proxy.crash()

    def stop(self) -> None:
        for client in self.sentinel_clients:
            client.close()
        for proc in self.sentinels:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        for replica in self.replicas:
            replica.kill()
        self.primary.kill()
        if self.proxy is not None:
            self.proxy.crash()


# ----------------------------------------------------------------------------- platform processes


def platform_env(
    *,
    api_port: int,
    redis_url: str | None = None,
    sentinels: str | None = None,
    sentinel_master: str | None = None,
    lease_ttl_s: float | None = 2.0,
    retry_schedule: str = "0.2,0.2,0.2",
    request_timeout_s: float = 3.0,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """Settings for ``python -m cli ...`` subprocesses (the tests' fast schedule and short leases)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBHOOKS_")}
    env.update(
        WEBHOOKS_ADMIN_TOKEN=ADMIN_TOKEN,
        WEBHOOKS_SECRET_KEY=SECRET_KEY,
        WEBHOOKS_ALLOW_PRIVATE_TARGETS="true",
        WEBHOOKS_RETRY_SCHEDULE=retry_schedule,
        WEBHOOKS_REQUEST_TIMEOUT_S=str(request_timeout_s),
        WEBHOOKS_API_HOST="127.0.0.1",
        WEBHOOKS_API_PORT=str(api_port),
        WEBHOOKS_LOG_LEVEL="INFO",
        PYTHONPATH=str(ROOT),
    )
    if lease_ttl_s is not None:  # None: the shipped default
        env["WEBHOOKS_LEASE_TTL_S"] = str(lease_ttl_s)
    if sentinels:
        env["WEBHOOKS_REDIS_SENTINELS"] = sentinels
        env["WEBHOOKS_REDIS_SENTINEL_MASTER"] = sentinel_master or ""
    else:
        env["WEBHOOKS_REDIS_URL"] = redis_url or ""
    env.update(extra or {})
    return env


@dataclass
class ProcEvent:
    at: float
    name: str
    what: str  # "killed", "restarted", "exited rc=N"


@dataclass
class _Managed:
    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    generation: int = 0
    restart_at: float | None = None  # wall time; set after a kill or an unexpected exit
    killed: bool = False


@dataclass
class Fleet:
    """The platform's processes, supervised like ``webhooks up`` does: whatever dies is restarted.

    A process killed by the scenario comes back after the delay the kill asked for;
    one that exits on its own (an unexpected exit, reported) after one second.
    """

    env: dict[str, str]
    log_dir: Path
    workers: int = 2
    embedded_scheduler: bool = False
    standalone_scheduler: bool = True
    unexpected_restart_delay_s: float = 1.0
    events: list[ProcEvent] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        me = [sys.executable, "-m", "cli"]
        worker = [*me, "worker"] if self.embedded_scheduler else [*me, "worker", "--no-scheduler"]
        self.procs: dict[str, _Managed] = {"api": _Managed("api", [*me, "api"])}
        for i in range(self.workers):
            self.procs[f"worker-{i + 1}"] = _Managed(f"worker-{i + 1}", worker)
        if self.standalone_scheduler:
            self.procs["scheduler"] = _Managed("scheduler", [*me, "scheduler"])
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.watcher = threading.Thread(target=self._watch, name="fleet-watcher", daemon=True)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.env['WEBHOOKS_API_PORT']}"

    def _spawn(self, m: _Managed) -> None:
        m.generation += 1
        log = open(self.log_dir / f"{m.name}-{m.generation}.log", "wb")  # noqa: SIM115
        m.proc = subprocess.Popen(
            m.argv, env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        m.restart_at = None
        m.killed = False

    def start(self, ready_timeout_s: float = 60.0) -> Fleet:
        for m in self.procs.values():
            self._spawn(m)
        self.watcher.start()
        self.wait_api(ready_timeout_s)
        return self

    def wait_api(self, timeout_s: float = 60.0) -> None:
        def ready() -> bool:
            try:
                return httpx.get(self.api_url + "/readyz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, timeout_s, "the API to answer /readyz", 0.05)

    def names(self, prefix: str) -> list[str]:
        return [n for n in self.procs if n.startswith(prefix)]

    def pid(self, name: str) -> int | None:
        m = self.procs[name]
        return m.proc.pid if m.proc is not None and m.proc.poll() is None else None

    def kill(self, name: str, restart_after_s: float | None) -> int:
        """SIGKILL one process (by its id); it comes back after ``restart_after_s`` (None: never)."""
        with self.lock:
            m = self.procs[name]
            assert m.proc is not None and m.proc.poll() is None, f"{name} is not running"
            pid = m.proc.pid
            os.kill(pid, signal.SIGKILL)
            m.proc.wait()
            m.killed = True
            now = time.time()
            m.restart_at = None if restart_after_s is None else now + restart_after_s
            self.events.append(ProcEvent(now, name, f"killed pid {pid}"))
        return pid

    def _watch(self) -> None:
        while not self.stopping.wait(0.05):
            with self.lock:
                now = time.time()
                for m in self.procs.values():
                    if m.proc is None or m.proc.poll() is None:
                        continue
                    if not m.killed and m.restart_at is None:
                        self.events.append(
                            ProcEvent(now, m.name, f"exited on its own, rc={m.proc.returncode}")
                        )
                        m.restart_at = now + self.unexpected_restart_delay_s
                    if m.restart_at is not None and now >= m.restart_at:
                        self._spawn(m)
                        self.events.append(ProcEvent(now, m.name, f"restarted as pid {m.proc.pid}"))

    def unexpected_exits(self) -> list[ProcEvent]:
        return [e for e in self.events if e.what.startswith("exited on its own")]

    def logs(self) -> str:
        return "\n".join(
            f"==> {p.name}\n" + p.read_text(errors="replace") for p in sorted(self.log_dir.glob("*.log"))
        )

    def stop(self) -> None:
        self.stopping.set()
        if self.watcher.is_alive():
            self.watcher.join(timeout=5)
        with self.lock:
            for m in self.procs.values():
                if m.proc is not None and m.proc.poll() is None:
                    os.kill(m.proc.pid, signal.SIGKILL)
                    m.proc.wait()


def tcp_peer_ports(pid: int, remote_port: int) -> set[int]:
    """Local ports of ``pid``'s TCP connections to ``remote_port`` on this host (Linux /proc; no psutil)."""
    inodes: set[str] = set()
    fd_dir = f"/proc/{pid}/fd"
    try:
        fds = os.listdir(fd_dir)
    except OSError:
        return set()
    for fd in fds:
        try:
            link = os.readlink(f"{fd_dir}/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    ports: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if (
                        len(parts) > 9
                        and parts[9] in inodes
                        and int(parts[2].rsplit(":", 1)[1], 16) == remote_port
                    ):
                        ports.add(int(parts[1].rsplit(":", 1)[1], 16))
        except OSError:
            continue
    return ports
