"""The child processes of ``webhooks up`` and ``webhooks demo``: started bound to us, logged to files.

Each child is started through :mod:`cli.lifeline` (parent-death signal) and inherits the read end
of the supervisor's pipe, so it ends when the supervisor ends, however that happens. Its output
goes to ``<log_dir>/<name>.log`` (appended across restarts). Children run in their own process
group, so a Ctrl-C in the terminal reaches the supervisor only, which then stops them in order.
Call every method from the main thread (see :mod:`cli.lifeline` for why).
"""

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from cli import lifeline


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path | None
    pass_fds: tuple[int, ...] = ()
    restart: bool = True
    proc: "subprocess.Popen[bytes] | None" = None
    started_at: float = 0.0
    restarts: int = 0

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class Supervisor:
    log_dir: Path
    env: dict[str, str]
    children: dict[str, Child] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        # The write end stays in this process only (pipes are not inherited unless passed).
        self._read_fd, self._write_fd = os.pipe()

    def spawn(
        self,
        name: str,
        argv: list[str],
        *,
        env: dict[str, str] | None = None,
        log: bool = True,
        pass_fds: tuple[int, ...] = (),
        restart: bool = True,
    ) -> Child:
        """Start ``argv`` as child ``name`` (replacing a dead child of that name)."""
        child = Child(
            name,
            argv,
            {**self.env, **(env or {}), lifeline.ENV_FD: str(self._read_fd)},
            self.log_dir / f"{name}.log" if log else None,
            pass_fds,
            restart,
        )
        if name in self.children:
            child.restarts = self.children[name].restarts
        self.children[name] = child
        self._start(child)
        return child

    def _start(self, child: Child) -> None:
        out = open(child.log_path, "ab") if child.log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            child.proc = subprocess.Popen(
                lifeline.wrap(child.argv),
                env=child.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                pass_fds=(self._read_fd, *child.pass_fds),
                start_new_session=True,
            )
        finally:
            if not isinstance(out, int):
                out.close()
        child.started_at = time.monotonic()

    def restart_dead(self, min_interval_s: float = 1.0) -> list[tuple[Child, int]]:
        """Restart exited children (each at most once per ``min_interval_s``); returns (child, status)."""
        restarted = []
        for child in self.children.values():
            if not child.restart or child.proc is None or child.alive():
                continue
            if time.monotonic() - child.started_at < min_interval_s:
                continue
            status = child.proc.returncode
            child.restarts += 1
            self._start(child)
            restarted.append((child, status))
        return restarted

    def kill(self, name: str) -> int:
        """SIGKILL one child (and its process group); it is not restarted. Returns its pid."""
        child = self.children[name]
        assert child.proc is not None
        child.restart = False
        self._signal(child, signal.SIGKILL)
        child.proc.wait()
        return child.proc.pid

    def _signal(self, child: Child, signum: int) -> None:
        assert child.proc is not None
        try:
            os.killpg(child.proc.pid, signum)
        except ProcessLookupError:
            pass

    def stop(self, names: list[str], timeout_s: float = 20.0) -> None:
        """SIGTERM the named children at once, wait up to ``timeout_s``, SIGKILL what is left."""
        chosen = [self.children[n] for n in names if n in self.children]
        for child in chosen:
            child.restart = False
            if child.alive():
                self._signal(child, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for child in chosen:
            assert child.proc is not None
            try:
                child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                print(f"{child.name} did not stop in {timeout_s:g}s; killing it", file=sys.stderr, flush=True)
                self._signal(child, signal.SIGKILL)
                child.proc.wait()

    def close(self) -> None:
        """Close the pipe: any child still running (there should be none) sees end of file and exits."""
        for fd in (self._write_fd, self._read_fd):
            try:
                os.close(fd)
            except OSError:
                pass
