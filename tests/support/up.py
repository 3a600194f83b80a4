"""``webhooks up`` as a user runs it, under test: start, read its summary, stop or kill it.

Every process it started is recorded (from ``platform.json`` and the process tree) so that a
test can check none is left, and teardown kills by pid whatever a failing test left behind.
"""

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil

from tests.support.poll import poll

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(sys.executable).parent / "webhooks"


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any WEBHOOKS_* setting (the tests' own choice of server kept)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBHOOKS_")}
    if "WEBHOOKS_TEST_SERVER" in os.environ:
        env["WEBHOOKS_EMBEDDED_SERVER"] = os.environ["WEBHOOKS_TEST_SERVER"]
    env.update(extra)
    return env


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper counts as gone)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def servers_on(folder: Path) -> list[int]:
    """Pids of the processes whose working directory is ``folder`` (redis-server chdirs to its --dir)."""
    found = []
    for proc in psutil.process_iter(["cwd", "name"]):
        try:
            if proc.info["cwd"] and Path(proc.info["cwd"]) == folder.resolve() and alive(proc.pid):
                found.append(proc.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


class UpProcess:
    def __init__(self, data_dir: Path, port: int, env: dict[str, str], cwd: Path = ROOT) -> None:
        self.data_dir, self.port, self.cwd = data_dir, port, cwd
        self.env = {**env, "WEBHOOKS_DATA_DIR": str(data_dir), "WEBHOOKS_API_PORT": str(port)}
        self.lines: list[str] = []
        self.proc: subprocess.Popen[str] | None = None
        self.seen: set[int] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def start(self, *args: str, argv: list[str] | None = None) -> "UpProcess":
        self.proc = subprocess.Popen(
            [*(argv or [str(SCRIPT)]), "up", *args],
            env=self.env,
            cwd=self.cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        with self.proc.stdout:
            for line in self.proc.stdout:
                self.lines.append(line)

    def wait_summary(self, timeout_s: float = 90) -> str:
        poll(
            lambda: "  stop:" in self.output or (self.proc is not None and self.proc.poll() is not None),
            timeout_s=timeout_s,
            what="the summary of `webhooks up`",
        )
        assert "  stop:" in self.output, self.output + self.logs()
        self.record()
        return self.output

    def token(self) -> str:
        found = re.search(r"admin token:\s+(\S+)", self.output)
        assert found, self.output
        return found.group(1)

    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token()}"}

    def ready(self) -> bool:
        try:
            return httpx.get(self.url + "/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def record(self) -> set[int]:
        """Every process of this ``up`` now: itself and its whole tree."""
        assert self.proc is not None
        try:
            me = psutil.Process(self.proc.pid)
            self.seen |= {self.proc.pid, *(c.pid for c in me.children(recursive=True))}
        except psutil.NoSuchProcess:
            pass
        return set(self.seen)

    def logs(self) -> str:
        return "\n".join(
            f"==> {p.name}\n{p.read_text(errors='replace')[-3000:]}"
            for p in sorted(self.data_dir.glob("logs/*.log"))
        )

    def interrupt(self, timeout_s: float = 60) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        rc = self.proc.wait(timeout=timeout_s)
        self.reader.join(timeout=5)
        return rc

    def kill9(self) -> None:
        assert self.proc is not None
        self.record()
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.reader.join(timeout=5)

    def left(self) -> list[int]:
        return sorted(p for p in self.seen if alive(p))

    def cleanup(self) -> None:
        """Kill (by pid) anything of this ``up`` still running."""
        if self.proc is not None and self.proc.poll() is None:
            self.record()
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        if self.proc is not None:
            self.reader.join(timeout=5)
        deadline = time.monotonic() + 10
        while self.left() and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in self.left():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
