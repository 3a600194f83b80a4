"""Shared plumbing: free ports, owned subprocesses (killed by process group), a private redis-server,
Standard Webhooks signing and the event envelope every system sends."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import psutil

from cli.embedded import find_server

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "bench" / "out"
LOG_DIR = OUT_DIR / "logs"
REDIS_SERVER = find_server().path  # redis-server or valkey-server on the PATH, else the wheel's


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def new_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` + base64 of 24 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def secret_bytes(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix("whsec_"))


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``."""
    to_sign = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, to_sign, hashlib.sha256).digest()).decode()


def signed_headers(key: bytes, msg_id: str, body: bytes) -> dict[str, str]:
    ts = int(time.time())
    return {
        "content-type": "application/json",
        "user-agent": "bench-peer/1",
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": sign(key, msg_id, ts, body),
    }


def envelope(event_type: str, payload: dict[str, Any]) -> bytes:
    """The body the contract puts on the wire, used by the peers and the ceiling too."""
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    doc = {"type": event_type, "timestamp": created, "data": payload}
    return json.dumps(doc, separators=(",", ":")).encode()


# --------------------------------------------------------------------------- processes


class Proc:
    """A subprocess we own, in its own session so the whole process group can be killed."""

    _live: list[Proc] = []
    _seq = 0

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: dict[str, str] | None = None,
        cwd: Path = ROOT,
        stdin: int | None = subprocess.DEVNULL,
    ) -> None:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.argv = list(argv)
        Proc._seq += 1
        self.seq = Proc._seq
        self.log_path = LOG_DIR / f"{self.seq:03d}-{name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self._stopped = False
        self.popen = subprocess.Popen(
            self.argv,
            cwd=cwd,
            env=full_env,
            stdin=stdin,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        Proc._live.append(self)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, n: int = 12) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def stop(self, grace: float = 3.0) -> None:
        """SIGTERM to the process (it shuts its own children down), then SIGKILL to the whole group."""
        if self._stopped:
            return
        self._stopped = True
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                self.popen.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(grace)
        # Whatever is left in the group (forked children, e.g. an RQ work horse) goes now.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(5)
        if self.popen.stdin:
            with contextlib.suppress(OSError):
                self.popen.stdin.close()
        self._log.close()
        if self in Proc._live:
            Proc._live.remove(self)

    @classmethod
    def stop_all(cls) -> None:
        for p in list(reversed(cls._live)):
            p.stop(grace=2.0)


def python_module(*args: str) -> list[str]:
    return [sys.executable, *args]


def wait_until(
    pred: Callable[[], bool], timeout: float, what: str, interval: float = 0.05, procs: Sequence[Proc] = ()
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in procs:
            if not p.alive():
                raise RuntimeError(
                    f"{p.name} exited with {p.popen.returncode} while waiting for {what}: {p.tail(3)!r}"
                )
        with contextlib.suppress(Exception):
            if pred():
                return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def http_ok(url: str) -> bool:
    return httpx.get(url, timeout=1.0).status_code == 200


def _busy_cpu_seconds() -> float:
    t = psutil.cpu_times()
    return float(t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0))


def _own_cpu_seconds() -> float:
    """CPU used by this process and every process it started (alive ones, and reaped ones through the
    ``children_*`` counters of their parents)."""
    total = 0.0
    me = psutil.Process()
    for p in [me, *me.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
    return total


class CpuMeter:
    """How many cores the whole machine, we, and everyone else kept busy over a window. Other people's
    load makes the numbers noisy; the harness reports it next to each result."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.busy0 = _busy_cpu_seconds()
        self.own0 = _own_cpu_seconds()

    def read(self) -> dict[str, float]:
        elapsed = max(time.monotonic() - self.t0, 1e-6)
        busy = (_busy_cpu_seconds() - self.busy0) / elapsed
        own = (_own_cpu_seconds() - self.own0) / elapsed
        return {
            "busy_cores": round(busy, 2),
            "ours_cores": round(own, 2),
            "foreign_cores": round(max(0.0, busy - own), 2),
        }


class RedisServer:
    """A private redis-server on a free port: no RDB snapshots, AOF on (fsync everysec), noeviction."""

    def __init__(self, name: str) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix=f"bench-redis-{name}-")
        self.proc = Proc(
            f"redis-{name}",
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                self.dir,
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--maxmemory-policy",
                "noeviction",
                "--protected-mode",
                "no",
                "--daemonize",
                "no",
            ],
        )
        self.url = f"redis://127.0.0.1:{self.port}/0"
        wait_until(self._ping, 10, f"redis on {self.port}", procs=[self.proc])

    def _ping(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")

    def stop(self) -> None:
        self.proc.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
