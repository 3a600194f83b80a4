"""``webhooks up`` says which acknowledgement it runs with (issue 20), and refuses what its
embedded Redis cannot give: replicas (it has none), or ``WAITAOF`` on a server older than 7.2."""

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.embedded import server_version
from tests.support.poll import poll
from tests.support.redis_proc import free_port
from tests.support.up import UpProcess, clean_env, servers_on


@pytest.fixture
def ups() -> Iterator[list[UpProcess]]:
    started: list[UpProcess] = []
    yield started
    for up in started:
        up.cleanup()


def _refused(up: UpProcess) -> str:
    assert up.proc is not None
    poll(lambda: up.proc is not None and up.proc.poll() is not None, timeout_s=60, what="`up` to exit")
    up.reader.join(timeout=5)
    assert up.proc.returncode == 2, up.output
    return up.output.strip().splitlines()[-1]


def test_up_prints_the_acknowledgement_mode(tmp_path: Path, ups: list[UpProcess]) -> None:
    up = UpProcess(
        tmp_path / "data",
        free_port(),
        clean_env(WEBHOOKS_EMBEDDED_SERVER="valkey", WEBHOOKS_ACK_FSYNC="true"),
    )
    ups.append(up)
    out = up.start("--workers", "1").wait_summary()
    assert "  writes:       answered after the primary's AOF fsync acknowledged it" in out, out
    assert up.interrupt() == 0


def test_up_refuses_ack_replicas_with_its_embedded_redis(tmp_path: Path, ups: list[UpProcess]) -> None:
    up = UpProcess(tmp_path / "data", free_port(), clean_env(WEBHOOKS_ACK_REPLICAS="1"))
    ups.append(up)
    up.start("--workers", "1")
    assert _refused(up) == (
        "webhooks: WEBHOOKS_ACK_REPLICAS=1: the embedded Redis of `webhooks up` has no replicas; "
        "point WEBHOOKS_REDIS_URL or _SENTINELS at a primary with replicas"
    )


def _old_redis() -> bool:
    path = shutil.which("redis-server")
    return path is not None and tuple(int(x) for x in (server_version(path) or "0.0").split(".")[:2]) < (7, 2)


@pytest.mark.skipif(not _old_redis(), reason="needs a redis-server older than 7.2 (no WAITAOF) on the PATH")
def test_up_refuses_fsync_on_a_server_without_waitaof(tmp_path: Path, ups: list[UpProcess]) -> None:
    up = UpProcess(
        tmp_path / "data", free_port(), clean_env(WEBHOOKS_EMBEDDED_SERVER="redis", WEBHOOKS_ACK_FSYNC="true")
    )
    ups.append(up)
    up.start("--workers", "1")
    last = _refused(up)
    assert last.startswith("webhooks: WEBHOOKS_ACK_FSYNC needs WAITAOF: Redis 7.2 or later"), last
    assert (tmp_path / "data" / "redis").is_dir(), "the embedded Redis was started, then the check refused"
    assert not servers_on(tmp_path / "data" / "redis"), "the embedded Redis it started is stopped again"
