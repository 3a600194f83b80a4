"""RQ's Redis is no single point of failure: a worker delivers while it hangs or is dead.

RQ's trigger queue is on a Redis of its own (``WEBHOOKS_RQ_REDIS_URL``), the platform's data on
another. RQ's Redis is SIGSTOPped (a hung server: connections open, nothing answers) or SIGKILLed
(a dead one); meanwhile events posted are delivered by the worker's own polling of the platform's
queue (workers/fallback.py), and the scheduler keeps promoting retries (its RQ calls run in a
thread with timeouts, workers/scheduler.py). Once RQ's Redis is back, RQ's worker runs jobs again:
its ``successful_job_count`` on that Redis grows.
"""

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from rq import Queue, Worker
from rq.registry import StartedJobRegistry

from tests.conftest import Processes, Tenant
from tests.faults.cluster import SentinelCluster
from tests.support.poll import poll
from tests.support.receiver import Receiver
from tests.support.redis_proc import RedisProc
from webhooks import keys

Endpoint = Callable[..., dict[str, Any]]


@pytest.fixture
def rq_redis(tmp_path: Path) -> Iterator[RedisProc]:
    proc = RedisProc(tmp_path / "rq").start()
    yield proc
    if proc.proc and proc.proc.poll() is None:
        os.kill(proc.proc.pid, signal.SIGCONT)
    proc.kill()


def post(api: httpx.Client, tenant: Tenant, n: int, event_type: str = "invoice.paid") -> list[str]:
    """Event ids of ``n`` events posted in one batch."""
    return [ev["id"] for ev in post_events(api, tenant, n, event_type)]


def post_events(api: httpx.Client, tenant: Tenant, n: int, event_type: str) -> list[dict[str, Any]]:
    body = {"events": [{"event_type": event_type, "payload": {"i": i}} for i in range(n)]}
    resp = api.post("/v1/events/batch", json=body, headers=tenant.auth)
    assert resp.status_code == 202, resp.text
    return list(resp.json())


def arrived(receiver: Receiver, path: str, ids: list[str]) -> bool:
    return set(ids) <= {r.headers["webhook-id"] for r in receiver.to(path)}


def rq_jobs_run(url: str) -> int:
    """Jobs RQ's workers started or ran to success, as RQ's Redis records them: the started
    registry and each worker's ``successful_job_count`` (a worker hash, created by the count on a
    fresh server where the worker never registered). 0 when RQ's Redis cannot be read."""
    conn = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
    try:
        done = sum(
            int(conn.hget(k, "successful_job_count") or 0)
            for k in conn.scan_iter("rq:worker:*", _type="hash")
        )
        return done + StartedJobRegistry(keys.RQ_QUEUE, connection=conn).count
    except redis.RedisError:
        return 0
    finally:
        conn.close()


def quiet(url: str, data: "redis.Redis") -> bool:
    """RQ's worker waits for a job, none is queued, and no tenant has work: nothing RQ started or
    could start would deliver what the test posts next."""
    conn = redis.Redis.from_url(url, socket_timeout=1)
    try:
        workers = Worker.all(connection=conn)
        idle = bool(workers) and all(w.get_state() == "idle" for w in workers)
        return idle and Queue(keys.RQ_QUEUE, connection=conn).count == 0 and not data.llen(keys.ACTIVE)
    finally:
        conn.close()


def triggers_resume(api: httpx.Client, tenant: Tenant, url: str, before: int) -> None:
    """RQ runs a drain job again: events keep coming so the scheduler has a reason to enqueue one."""

    def resumed() -> bool:
        post(api, tenant, 1)
        return rq_jobs_run(url) > before

    poll(resumed, 60, interval_s=0.5, what="RQ's worker to run a job again")


def test_a_worker_delivers_while_rqs_redis_hangs_or_dies_and_rq_resumes_after(
    api: httpx.Client,
    tenant: Tenant,
    make_endpoint: Endpoint,
    receiver: Receiver,
    procs: Processes,
    rq_redis: RedisProc,
    rds: "redis.Redis",
    tmp_path: Path,
) -> None:
    make_endpoint(receiver.url("ok/a"))
    worker = procs.worker(env={"WEBHOOKS_RQ_REDIS_URL": rq_redis.url})
    first = post(api, tenant, 1)
    poll(lambda: arrived(receiver, "ok/a", first), 30, what="a first delivery")
    poll(lambda: rq_jobs_run(rq_redis.url) > 0, 30, what="a drain job run by RQ")
    poll(lambda: quiet(rq_redis.url, rds), 30, what="RQ's worker idle, no job queued, no work")
    assert rq_redis.proc is not None

    # A hung RQ Redis: deliveries go on, through the worker's own polling.
    os.kill(rq_redis.proc.pid, signal.SIGSTOP)
    stopped_at = time.monotonic()
    ids = post(api, tenant, 20)
    poll(lambda: arrived(receiver, "ok/a", ids), 30, what="deliveries while RQ's Redis is stopped")
    hung_s = time.monotonic() - stopped_at
    assert worker.poll() is None
    time.sleep(0.5)  # what RQ still holds (none: it was idle) would show up as a job next
    os.kill(rq_redis.proc.pid, signal.SIGCONT)
    triggers_resume(api, tenant, rq_redis.url, rq_jobs_run(rq_redis.url))

    # A dead RQ Redis, then a new empty one on the same port: the same, and RQ starts again.
    poll(lambda: quiet(rq_redis.url, rds), 60, what="RQ's worker idle again")
    rq_redis.kill()
    killed_at = time.monotonic()
    ids = post(api, tenant, 20)
    poll(lambda: arrived(receiver, "ok/a", ids), 30, what="deliveries while RQ's Redis is dead")
    dead_s = time.monotonic() - killed_at
    assert worker.poll() is None
    fresh = RedisProc(tmp_path / "rq-new", port=rq_redis.port).start()
    try:
        triggers_resume(api, tenant, fresh.url, 0)
    finally:
        fresh.kill()
    print(
        f"\n20 events delivered {hung_s:.1f}s after RQ's Redis was stopped, {dead_s:.1f}s after it was killed"
    )
    assert "delivering without RQ's jobs" in procs.logs()


def test_the_scheduler_promotes_retries_while_rqs_redis_does_not_answer(
    api: httpx.Client,
    tenant: Tenant,
    make_endpoint: Endpoint,
    receiver: Receiver,
    procs: Processes,
    rq_redis: RedisProc,
) -> None:
    """A standalone scheduler (the worker runs none): each retry of the flaky endpoint needs a tick
    to move it from its due zset back to the ready list. A tick blocked on RQ would leave it there."""
    rq_env = {"WEBHOOKS_RQ_REDIS_URL": rq_redis.url}
    make_endpoint(receiver.url("flaky/2/b"), event_types=["flaky.b"])
    make_endpoint(receiver.url("ok/b"), event_types=["ok.b"])
    procs.start("scheduler", env=rq_env)
    procs.worker("--no-scheduler", env=rq_env)
    first = post(api, tenant, 1, "ok.b")
    poll(lambda: arrived(receiver, "ok/b", first), 30, what="a first delivery")
    assert rq_redis.proc is not None
    os.kill(rq_redis.proc.pid, signal.SIGSTOP)

    (event,) = post_events(api, tenant, 1, "flaky.b")
    (delivery,) = event["deliveries"]

    def status() -> Any:
        return api.get(f"/v1/deliveries/{delivery['id']}", headers=tenant.auth).json()

    done = poll(lambda: (d := status())["status"] == "succeeded" and d, 30, 0.1, "two retries promoted, sent")
    assert [a["status_code"] for a in done["attempts"]] == [500, 500, 200]
    assert {r.headers["webhook-id"] for r in receiver.to("flaky/2/b")} == {event["id"]}
    assert rq_redis.proc.poll() is None
    os.kill(rq_redis.proc.pid, signal.SIGCONT)


def test_rqs_redis_on_sentinel_fails_over_and_deliveries_never_stop(
    api: httpx.Client,
    tenant: Tenant,
    make_endpoint: Endpoint,
    receiver: Receiver,
    procs: Processes,
    rds: "redis.Redis",
    tmp_path: Path,
) -> None:
    """``WEBHOOKS_RQ_REDIS_SENTINELS``: RQ's primary is SIGKILLed; events posted meanwhile are
    delivered, and RQ's worker runs jobs on the promoted replica."""
    rq_set = SentinelCluster(tmp_path / "rq-sentinel", master_name="rqmaster").start()
    try:
        make_endpoint(receiver.url("ok/c"))
        env = {
            "WEBHOOKS_RQ_REDIS_SENTINELS": rq_set.addresses,
            "WEBHOOKS_RQ_REDIS_SENTINEL_MASTER": "rqmaster",
        }
        worker = procs.worker(env=env)
        first = post(api, tenant, 1)
        poll(lambda: arrived(receiver, "ok/c", first), 30, what="a first delivery")
        primary = rq_set.primary.url
        assert rq_jobs_run(primary) > 0, "RQ's jobs ran on the Sentinel-managed primary"
        poll(lambda: quiet(primary, rds), 30, what="RQ's worker idle, no job queued, no work")

        rq_set.crash_primary()
        crashed_at = time.monotonic()
        ids = post(api, tenant, 20)
        poll(lambda: arrived(receiver, "ok/c", ids), 30, what="deliveries while RQ's primary is gone")
        gap_s = time.monotonic() - crashed_at

        promoted = poll(
            lambda: rq_set.master_address() != ("127.0.0.1", rq_set.primary.port), 30, 0.2, "promotion"
        )
        assert promoted
        triggers_resume(api, tenant, rq_set.replica.url, rq_jobs_run(rq_set.replica.url))
        assert worker.poll() is None
        print(f"\n20 events delivered {gap_s:.1f}s after RQ's Sentinel-managed primary was killed")
    finally:
        rq_set.stop()
