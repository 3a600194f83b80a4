"""The data format in Redis (webhooks/queueing/dataformat.py) on a real Redis: recorded at first start,
refused when newer than the code, migrated once, under a lock, resumed after a kill."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import redis
from rq import Queue, Worker

from tests.conftest import ROOT, Processes
from tests.support.poll import poll
from tests.support.redis_proc import free_port
from tests.support.up import SCRIPT, clean_env
from tests.upgrade.fake_migration import fake_key, migration, seed
from webhooks import keys
from webhooks.errors import DataFormatError
from webhooks.queueing import dataformat

N_TENANTS = 200  # 20 chunks


@pytest.fixture
def r(redis_url: str) -> "redis.Redis":
    return redis.Redis.from_url(redis_url, decode_responses=True)


def test_an_empty_redis_is_recorded_as_the_current_format(r: "redis.Redis") -> None:
    assert dataformat.ensure(r) == dataformat.CURRENT
    assert r.get(keys.DATA_FORMAT) == str(dataformat.CURRENT)
    # A later format's code on an empty Redis records its own, with no migration to run.
    r.delete(keys.DATA_FORMAT)
    assert dataformat.ensure(r, current=7, migrations={}) == 7
    assert r.get(keys.DATA_FORMAT) == "7"


def test_data_without_a_format_is_the_unversioned_format(r: "redis.Redis") -> None:
    r.zadd(keys.TENANTS, {"t1": 0})  # what release 900e4e7 leaves: data, no format key
    assert dataformat.ensure(r) == 1 == dataformat.UNVERSIONED
    assert r.get(keys.DATA_FORMAT) == "1"
    # The same data met by a format-2 release with no migration from 1: refused, not relabelled.
    r.delete(keys.DATA_FORMAT)
    with pytest.raises(DataFormatError, match="format 1, and this version \\(format 2\\) has no migration"):
        dataformat.ensure(r, current=2, migrations={})
    assert r.get(keys.DATA_FORMAT) == "1"
    # A gap further on is found before the first step runs: nothing is half converted.
    cursors: list[str] = []
    with pytest.raises(DataFormatError, match="has no migration from format 2"):
        dataformat.ensure(r, current=3, migrations={1: migration(0.0, cursors)})
    assert cursors == [] and r.get(keys.DATA_FORMAT) == "1"


def test_newer_data_is_refused_naming_both_formats(r: "redis.Redis") -> None:
    r.set(keys.DATA_FORMAT, str(dataformat.CURRENT + 1))
    with pytest.raises(DataFormatError) as err:
        dataformat.ensure(r)
    assert f"format {dataformat.CURRENT + 1}, newer than this version knows" in str(err.value)
    assert f"it reads format {dataformat.CURRENT} at most" in str(err.value)
    assert r.get(keys.DATA_FORMAT) == str(dataformat.CURRENT + 1), "left as it was"


@pytest.mark.parametrize("command", ["worker", "scheduler", "api"])
def test_each_process_refuses_newer_data_with_one_line_and_exits_1(
    command: str, r: "redis.Redis", env: dict[str, str], tmp_path: Path
) -> None:
    newer = dataformat.CURRENT + 1
    r.set(keys.DATA_FORMAT, str(newer))
    done = subprocess.run(
        [sys.executable, "-m", "cli", command],
        env={**env, "WEBHOOKS_LOG_LEVEL": "ERROR", "WEBHOOKS_DATA_DIR": str(tmp_path)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith(f"webhooks: the data in Redis is format {newer}, newer than"), lines
    assert f"it reads format {dataformat.CURRENT} at most" in lines[-1]
    assert "Traceback" not in done.stderr


def rewrites(r: "redis.Redis", ids: list[str]) -> dict[str, tuple[str, int]]:
    out = {}
    for tenant_id in ids:
        v, n = r.hmget(fake_key(tenant_id), ["v", "n"])
        out[tenant_id] = (str(v), int(n or 0))
    return out


def test_a_migration_killed_half_way_is_resumed_from_its_cursor_and_migrates_each_key_once(
    r: "redis.Redis", redis_url: str
) -> None:
    ids = seed(r, N_TENANTS)
    ttl_ms = 1500
    first = subprocess.Popen(
        [sys.executable, "-m", "tests.upgrade.fake_migration", redis_url, "0.1", str(ttl_ms)], cwd=ROOT
    )
    try:
        poll(
            lambda: (r.hget(keys.DATA_FORMAT_PROGRESS, "1") or "") >= "t0079",
            timeout_s=30,
            what="8 chunks of the migration recorded",
        )
        first.send_signal(signal.SIGKILL)
    finally:
        first.wait()
    cursor = r.hget(keys.DATA_FORMAT_PROGRESS, "1")
    assert cursor and cursor < ids[-1], "killed half way"
    assert r.get(keys.DATA_FORMAT) == "1", "the format changes only when the migration ends"
    assert r.get(keys.DATA_FORMAT_LOCK), "the dead process' lock is left to expire"
    done_before = sum(v == "new" for v, _ in rewrites(r, ids).values())
    assert 0 < done_before < N_TENANTS

    cursors: list[str] = []
    started = time.monotonic()
    assert dataformat.ensure(r, current=2, migrations={1: migration(0.0, cursors)}, lock_ttl_ms=ttl_ms) == 2
    waited_s = time.monotonic() - started
    assert cursors[0] == cursor, "resumed at the recorded cursor, not from the start"
    assert len(cursors) < N_TENANTS // 10, "only the chunks left"
    assert waited_s < ttl_ms / 1000 + 5, "the dead owner's lock expired and was taken over"
    assert rewrites(r, ids) == {t: ("new", 1) for t in ids}, "every key migrated exactly once"
    assert r.get(keys.DATA_FORMAT) == "2"
    assert not r.exists(keys.DATA_FORMAT_PROGRESS) and not r.exists(keys.DATA_FORMAT_LOCK)
    assert dataformat.ensure(r, current=2, migrations={1: migration(0.0, cursors)}) == 2
    assert len(cursors) < N_TENANTS // 10, "run once: a later start migrates nothing"


def test_processes_starting_together_run_the_migration_once(r: "redis.Redis", redis_url: str) -> None:
    ids = seed(r, N_TENANTS)
    argv = [sys.executable, "-m", "tests.upgrade.fake_migration", redis_url, "0.02", "3000"]
    starters = [subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, text=True) for _ in range(3)]
    outputs = [p.communicate(timeout=60)[0].strip() for p in starters]
    assert [p.returncode for p in starters] == [0, 0, 0]
    assert outputs == ["2", "2", "2"], "each started on format 2"
    assert rewrites(r, ids) == {t: ("new", 1) for t in ids}


def test_the_migration_lock_is_fenced_by_its_owner_token(r: "redis.Redis") -> None:
    a, b = dataformat.Lock(r, ttl_ms=60_000), dataformat.Lock(r, ttl_ms=60_000)
    assert a.acquire() and not b.acquire()
    assert a.acquire(), "its owner renews it"
    b.release()  # not b's: nothing changes
    assert r.get(keys.DATA_FORMAT_LOCK) == a.owner
    a.release()
    assert not r.exists(keys.DATA_FORMAT_LOCK) and b.acquire()
    b.release()


def test_a_running_worker_and_scheduler_stop_when_a_newer_release_converts_the_data(
    procs: Processes, rds: "redis.Redis", redis_url: str
) -> None:
    worker = procs.worker("--no-scheduler")
    scheduler = procs.start("scheduler")
    rq = redis.Redis.from_url(redis_url)
    poll(lambda: len(Worker.all(connection=rq)) == 1, timeout_s=60, what="the worker waiting for jobs")
    poll(lambda: rds.exists(keys.SCHEDULER_LOCK), timeout_s=60, what="the scheduler acting")
    assert rds.get(keys.DATA_FORMAT) == str(dataformat.CURRENT)

    newer = dataformat.CURRENT + 1
    rds.set(keys.DATA_FORMAT, str(newer))  # what a newer release's migration ends with
    # A drain job, as a scheduler enqueues when work arrives: the worker checks before it leases.
    Queue(keys.RQ_QUEUE, connection=rq).enqueue("workers.jobs.drain", 1.0, result_ttl=0)
    assert worker.wait(timeout=30) == 0, procs.logs()
    assert scheduler.wait(timeout=30) == 0, "the scheduler stops at its next sweep (every 10 s)"
    line = f"stopping: the data in Redis is format {newer}, newer than this version knows"
    assert procs.logs().count(line) == 2, procs.logs()
    rq.close()


def test_up_refuses_newer_data_before_starting_any_child(
    r: "redis.Redis", redis_url: str, tmp_path: Path
) -> None:
    newer = dataformat.CURRENT + 1
    r.set(keys.DATA_FORMAT, str(newer))
    data = tmp_path / "data"
    port = str(free_port())
    env = clean_env(WEBHOOKS_REDIS_URL=redis_url, WEBHOOKS_DATA_DIR=str(data), WEBHOOKS_API_PORT=port)
    argv = [str(SCRIPT), "up"]
    done = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stdout + done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"webhooks: the data in Redis is format {newer}, newer than this"), last
    assert not list((data / "logs").glob("*.log")), "no child was started"


@pytest.mark.parametrize("api_workers", ["1", "2"])
def test_a_running_api_stops_when_a_newer_release_converts_the_data(
    api_workers: str, procs: Processes, rds: "redis.Redis"
) -> None:
    port = free_port()
    api = procs.start("api", env={"WEBHOOKS_API_PORT": str(port), "WEBHOOKS_API_WORKERS": api_workers})

    def ready() -> bool:
        assert api.poll() is None, procs.logs()
        try:
            return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    poll(ready, timeout_s=60, what="the API's /readyz")
    newer = dataformat.CURRENT + 1
    rds.set(keys.DATA_FORMAT, str(newer))
    api.wait(timeout=30)  # read every 5 s; then the graceful stop of uvicorn
    assert f"stopping: the data in Redis is format {newer}, newer than this version knows" in procs.logs()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
