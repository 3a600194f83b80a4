"""``webhooks up``: the whole platform on one machine, owned by this one process.

Order: lock the data folder (a second ``up`` there stops with the holder's pid), start the
embedded Redis unless ``WEBHOOKS_REDIS_URL``/``_SENTINELS`` name one, check the data format in it
(webhooks/queueing/dataformat.py), then start the API, the workers and the scheduler as children
(cli/supervisor.py: they end when this process ends, however it ends), wait for ``/readyz``,
print a summary and record ``<data>/platform.json`` for the operator commands. Children's logs go
to ``<data>/logs/``; ``--verbose`` shows them here too. A child that dies is
restarted; Ctrl-C, SIGTERM or SIGHUP stop everything cleanly (exit 0).

``--dev`` is for trying it out on a laptop: private and loopback targets are allowed
(``WEBHOOKS_ALLOW_PRIVATE_TARGETS=true``, so a receiver on localhost works) and retries follow a
short schedule (:data:`DEV_RETRY_SCHEDULE`, unless ``WEBHOOKS_RETRY_SCHEDULE`` is set); the
summary says so.
"""

import argparse
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from cli import platform_info
from cli.datalock import DataLock
from cli.embedded import EmbeddedRedis, find_server, free_port
from cli.logtail import LogTail
from cli.processes import check_acknowledgement
from cli.snapshot import server_name
from cli.supervisor import Supervisor
from webhooks import __version__
from webhooks.errors import ConfigError
from webhooks.queueing import dataformat
from webhooks.runtime.connection import RedisTarget, sync_client, warn_if_not_durable
from webhooks.settings import Settings
from webhooks.wiring import target_of

READY_TIMEOUT_S = 60.0
DEV_RETRY_SCHEDULE = "1,2,4"  # seconds: a failing delivery dies in about 7 s under --dev
ME = [sys.executable, "-m", "cli"]


def persisted(path: Path, make: Callable[[], str]) -> str:
    """A value kept in a 0600 file under the data directory, created on first use."""
    if path.exists():
        return path.read_text().strip()
    value = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    return value


def port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def short(path: Path) -> str:
    """``path`` relative to the working directory when it is under it (summary lines stay short)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


class StopFlag:
    """Set by SIGINT, SIGTERM or SIGHUP; the main loop then stops everything."""

    def __init__(self) -> None:
        self.set = False
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, _: FrameType | None) -> None:
        self.set = True


def cmd_up(s: Settings, args: argparse.Namespace) -> int:
    if s.redis_cluster_nodes:
        raise ConfigError(
            "WEBHOOKS_REDIS_CLUSTER_NODES: `webhooks up` runs one machine's platform; on a Redis Cluster "
            "run `webhooks api`, `webhooks worker` and `webhooks scheduler` (docs/scaling.md)"
        )
    data_dir = s.data_dir.resolve()
    lock = DataLock.acquire(data_dir)
    try:
        return Up(s, args, data_dir, lock).run()
    finally:
        lock.release()


class Up:
    def __init__(self, s: Settings, args: argparse.Namespace, data_dir: Path, lock: DataLock) -> None:
        self.s, self.args, self.data_dir, self.lock = s, args, data_dir, lock
        self.env = dict(os.environ)
        self.dev = bool(getattr(args, "dev", False))
        if self.dev:
            self.env["WEBHOOKS_ALLOW_PRIVATE_TARGETS"] = "true"
            self.env.setdefault("WEBHOOKS_RETRY_SCHEDULE", DEV_RETRY_SCHEDULE)
        self.sup = Supervisor(data_dir / "logs", self.env)
        self.embedded: EmbeddedRedis | None = None
        self.api_url = f"http://{s.api_host}:{s.api_port}"
        self.metrics: dict[str, int] = {}
        self.info: platform_info.PlatformInfo | None = None

    def run(self) -> int:
        if not port_free(self.s.api_host, self.s.api_port):
            raise ConfigError(f"{self.s.api_host}:{self.s.api_port} is in use (set WEBHOOKS_API_PORT)")
        tail = LogTail(self.sup.log_dir) if self.args.verbose else None
        stop = StopFlag()
        try:
            redis_desc = self._redis()
            if redis_desc is None:
                return 2
            token_line = self._credentials()
            self._check_format()
            self._children()
            if tail:
                tail.start()
            if not self._wait_ready(stop):
                return 0 if stop.set else 1
            self._announce(token_line, redis_desc)
            while not stop.set:
                for child, status in self.sup.restart_dead():
                    print(
                        f"{child.name} exited with status {status}; restarted (see {child.log_path})",
                        file=sys.stderr,
                        flush=True,
                    )
                    self._record()
                if self.embedded and self.embedded.proc and self.embedded.proc.poll() is not None:
                    print(
                        f"the embedded Redis exited; see {self.embedded.logfile}; stopping", file=sys.stderr
                    )
                    return 1
                time.sleep(0.2)
            print("stopping…", flush=True)
            return 0
        finally:
            started = bool(self.sup.children)
            self._stop_all()
            if tail:
                tail.stop()
            if started:
                print("stopped", flush=True)

    def _redis(self) -> str | None:
        """Start the embedded Redis or check the given one; a description for the summary (None: refused)."""
        if not self.s.redis_url and not self.s.redis_sentinels:
            if self.s.ack_replicas:
                raise ConfigError(
                    f"WEBHOOKS_ACK_REPLICAS={self.s.ack_replicas}: the embedded Redis of `webhooks up` has "
                    "no replicas; point WEBHOOKS_REDIS_URL or _SENTINELS at a primary with replicas"
                )
            server = find_server(self.s.embedded_server)
            self.embedded = EmbeddedRedis(self.data_dir / "redis", server, self.sup.log_dir / "redis.log")

            def spawn(argv: list[str]) -> "subprocess.Popen[bytes]":
                # The server shares the folder lock, so the folder stays locked until it is gone too.
                child = self.sup.spawn("redis", argv, log=False, pass_fds=(self.lock.fd,), restart=False)
                assert child.proc is not None
                return child.proc

            url = self.embedded.start(spawn)
            self.env["WEBHOOKS_REDIS_URL"] = url
            with sync_client(RedisTarget(url)) as conn:
                check_acknowledgement(conn, self.s.ack)
            address = url.removeprefix("redis://").removesuffix("/0")
            aof = short(self.embedded.data_dir)
            return f"{server.name} {server.version} from {server.source} on {address} (AOF in {aof})"
        conn = sync_client(target_of(self.s))
        check_acknowledgement(conn, self.s.ack)
        problems = warn_if_not_durable(conn)
        if problems and not self.args.allow_unsafe_redis:
            print(
                "refusing to start: " + "; ".join(problems) + " (or pass --allow-unsafe-redis)",
                file=sys.stderr,
            )
            return None
        version = server_name(conn.info("server"))
        conn.close()
        return f"{version} at {target_of(self.s).describe()}"

    def _check_format(self) -> None:
        """The data format, checked once before the children start (they check it again): data newer
        than this code stops ``up`` with one line instead of children failing and being restarted."""
        url = self.env.get("WEBHOOKS_REDIS_URL")
        target = RedisTarget(url) if self.embedded and url else target_of(self.s)
        conn = sync_client(target)
        try:
            dataformat.ensure(conn)
        finally:
            conn.close()

    def _credentials(self) -> str:
        if self.s.admin_token:
            token_line = "set by WEBHOOKS_ADMIN_TOKEN"
            self.env["WEBHOOKS_ADMIN_TOKEN"] = self.s.admin_token.get_secret_value()
        else:
            path = self.data_dir / platform_info.ADMIN_TOKEN_FILE
            self.env["WEBHOOKS_ADMIN_TOKEN"] = persisted(path, lambda: secrets.token_urlsafe(32))
            token_line = f"{self.env['WEBHOOKS_ADMIN_TOKEN']}  (in {short(path)})"
        if self.s.secret_key is None:
            self.env["WEBHOOKS_SECRET_KEY"] = persisted(
                self.data_dir / "secret-key", lambda: secrets.token_urlsafe(48)
            )
        return token_line

    def _children(self) -> None:
        with_metrics = "metrics_port" in Settings.model_fields  # the observability settings, when present
        self.sup.spawn("api", [*ME, "api"])
        names = [f"worker-{i + 1}" for i in range(self.args.workers)] + ["scheduler"]
        for name in names:
            env = {}
            if with_metrics:
                self.metrics[name] = free_port()
                env["WEBHOOKS_METRICS_PORT"] = str(self.metrics[name])
            argv = [*ME, "scheduler"] if name == "scheduler" else [*ME, "worker", "--no-scheduler"]
            self.sup.spawn(name, argv, env=env)

    def _wait_ready(self, stop: StopFlag) -> bool:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not stop.set:
            if http_status(self.api_url + "/readyz") == 200:
                return True
            if time.monotonic() > deadline:
                log = self.sup.log_dir / "api.log"
                print(f"the API did not become ready in {READY_TIMEOUT_S:g}s; see {log}", file=sys.stderr)
                return False
            self.sup.restart_dead()
            time.sleep(0.1)
        return False

    def _announce(self, token_line: str, redis_desc: str) -> None:
        console = self.api_url + "/console"
        has_console = http_status(console) not in (None, 404)
        n, logs = self.args.workers, short(self.sup.log_dir)
        lines = [
            f"webhooks {__version__} is up",
            f"  API:          {self.api_url}  (OpenAPI: /docs)",
            *([f"  console:      {console}"] if has_console else []),
            f"  admin token:  {token_line}",
            f"  data folder:  {self.data_dir}",
            f"  redis:        {redis_desc}",
            f"  writes:       {self.s.ack.describe()}",
            f"  processes:    api, {n} worker{'s' if n != 1 else ''}, scheduler (logs in {logs}"
            + (")" if self.args.verbose else "; --verbose shows them here)"),
        ]
        if self.dev:
            lines.append(
                "  dev mode:     private and loopback targets allowed; retries after "
                f"{self.env['WEBHOOKS_RETRY_SCHEDULE']} s (not for production)"
            )
        if self.metrics:
            host = self.s.metrics_host
            ports = ", ".join(f"{name} http://{host}:{port}/metrics" for name, port in self.metrics.items())
            lines.append(f"  metrics:      api {self.api_url}/metrics, {ports}")
        lines.append(f"  stop:         Ctrl-C, or kill {os.getpid()}")
        self.info = platform_info.PlatformInfo(
            pid=os.getpid(),
            started_at=datetime.now(UTC).isoformat(timespec="seconds"),
            data_dir=str(self.data_dir),
            api_url=self.api_url,
            redis_url=self.env.get("WEBHOOKS_REDIS_URL"),
            redis_server=redis_desc,
            redis_sentinels=self.s.redis_sentinels,
            redis_sentinel_master=self.s.redis_sentinel_master,
            console_url=console if has_console else None,
            metrics_ports=self.metrics,
            processes={},
        )
        self._record()  # before the summary: whoever reads the summary can use the operator commands
        print("\n".join(lines), flush=True)

    def _record(self) -> None:
        """(Re)write platform.json with the children's current pids."""
        assert self.info is not None
        self.info.processes = {n: c.pid for n, c in self.sup.children.items() if c.pid is not None}
        platform_info.write(self.data_dir, self.info)

    def _stop_all(self) -> None:
        platform_info.remove(self.data_dir, os.getpid())
        self.sup.stop([n for n in self.sup.children if n != "redis"])
        if self.embedded:
            self.embedded.stop()
        self.sup.close()
