"""An embedded ``redis-server`` for ``webhooks up``: AOF on, noeviction, loopback only.

Data lives under the data directory, so stopping and starting again keeps every
accepted event. The server is stopped with SHUTDOWN (which flushes the AOF)
when the supervisor exits.
"""

import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis

from webhooks.errors import ConfigError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class EmbeddedRedis:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.resolve()
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> str:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ConfigError(
                "redis-server is not installed: install it (e.g. `apt-get install redis-server`) "
                "or set WEBHOOKS_REDIS_URL"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.data_dir),
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--save",
                "",
                "--maxmemory-policy",
                "noeviction",
                "--logfile",
                str(self.data_dir / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if client.ping():
                    break
            except redis.ConnectionError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise ConfigError(
                    f"the embedded redis-server did not start; see {self.data_dir / 'redis.log'}"
                )
            time.sleep(0.05)
        # Loading a large AOF answers LOADING for a while; wait until it is done.
        while client.info("persistence").get("loading", 0):
            time.sleep(0.1)
        client.close()
        return self.url

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            redis.Redis(port=self.port, socket_connect_timeout=1).shutdown(nosave=False)
        except redis.RedisError:
            pass  # SHUTDOWN closes the connection; that is the success case too
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
