"""Start-up checks: every process inspects the Redis it connects to.

A Redis without AOF, or with a maxmemory-policy other than noeviction, or one
that hides its configuration, makes ``webhooks api|worker|scheduler`` log a loud
``DURABILITY WARNING`` and ``webhooks up`` refuse to start. A durable Redis makes
no warning at all.
"""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.faults.cluster import ROOT, RedisServer, platform_env, stable_port, wait_until

AOF_OFF = "DURABILITY WARNING: AOF is off"
EVICTION = "DURABILITY WARNING: maxmemory-policy is 'allkeys-lru'"
HIDDEN = "DURABILITY WARNING: cannot read the Redis configuration"


def _start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "cli", *argv],
            env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def _up(env: dict[str, str], tmp: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", "up", "--workers", "1"],
        env={**env, "WEBHOOKS_DATA_DIR": str(tmp / "data")},
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.fixture
def unsafe_redis(tmp_path: Path):  # type: ignore[no-untyped-def]
    server = RedisServer(tmp_path / "unsafe", appendonly=False, maxmemory_policy="allkeys-lru").start()
    yield server
    server.kill()


def _wait_for(text: str | tuple[str, ...], log: Path, what: str, timeout_s: float = 60) -> None:
    wanted = (text,) if isinstance(text, str) else text
    try:
        wait_until(lambda: all(t in log.read_text() for t in wanted), timeout_s, what, 0.05)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}; {log.name} says:\n{log.read_text()[-3000:]}") from None


def test_every_process_warns_loudly_on_a_redis_that_can_lose_data(
    unsafe_redis: RedisServer, tmp_path: Path
) -> None:
    env = platform_env(api_port=stable_port(), redis_url=unsafe_redis.url)
    commands = {"api": ["api"], "worker": ["worker"], "scheduler": ["scheduler"]}
    procs = {name: _start(argv, env, tmp_path / f"{name}.log") for name, argv in commands.items()}
    try:
        for name in procs:
            _wait_for((AOF_OFF, EVICTION), tmp_path / f"{name}.log", f"the {name}'s durability warnings")
    finally:
        for proc in procs.values():
            _stop(proc)


def test_up_refuses_a_redis_that_can_lose_data(unsafe_redis: RedisServer, tmp_path: Path) -> None:
    done = _up(platform_env(api_port=stable_port(), redis_url=unsafe_redis.url), tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "refusing to start" in done.stderr
    assert "AOF is off" in done.stderr and "noeviction" in done.stderr


def test_up_refuses_a_redis_that_hides_its_configuration(tmp_path: Path) -> None:
    hidden = RedisServer(tmp_path / "hidden", extra=["--rename-command", "CONFIG", ""]).start()
    try:
        env = platform_env(api_port=stable_port(), redis_url=hidden.url)
        done = _up(env, tmp_path)
        assert done.returncode == 2, done.stdout + done.stderr
        assert "cannot read the Redis configuration" in done.stderr
        proc = _start(["scheduler"], env, tmp_path / "scheduler.log")
        try:
            _wait_for(HIDDEN, tmp_path / "scheduler.log", "the warning")
        finally:
            _stop(proc)
    finally:
        hidden.kill()


def test_a_durable_redis_draws_no_warning(tmp_path: Path) -> None:
    durable = RedisServer(tmp_path / "durable", appendfsync="everysec").start()
    try:
        env = platform_env(api_port=stable_port(), redis_url=durable.url)
        proc = _start(["scheduler"], env, tmp_path / "scheduler.log")
        try:
            # The check runs and logs before the scheduler starts (workers/process.py:
            # run_scheduler), so once it says " active" a warning would already be in its log.
            wait_until(
                lambda: " active" in (tmp_path / "scheduler.log").read_text(), 30, "the scheduler to start"
            )
        finally:
            _stop(proc)
        assert "DURABILITY WARNING" not in (tmp_path / "scheduler.log").read_text()
    finally:
        durable.kill()
