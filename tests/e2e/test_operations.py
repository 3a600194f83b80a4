"""The operators' jobs on real worker processes: replays and tenant deletions run as RQ jobs that
survive their workers' SIGKILL, stop when cancelled, and show ``failed`` when they fail for good."""

import signal
import subprocess
import time
from collections import Counter
from typing import Any

import httpx
import redis
from rq.job import Job
from rq.registry import FailedJobRegistry

from tests.conftest import Processes, Tenant
from tests.support.poll import poll
from tests.support.receiver import Receiver

# Two attempts each, and a breaker that stays closed through them (at most 1000 failures in a row per
# endpoint): the dead letters are made in seconds.
NO_BREAKER = {"WEBHOOKS_BREAKER_FAILURES": "1000", "WEBHOOKS_RETRY_SCHEDULE": "0.1"}
SLOW_JOBS = {"WEBHOOKS_OPERATION_CHUNK": "100", "WEBHOOKS_OPERATION_PAUSE_MS": "100"}


def dead_count(rds: "redis.Redis", tenant: Tenant) -> int:
    return int(rds.zcard(f"wh:{{t:{tenant.id}}}:dead"))


def make_dead(
    api: httpx.Client,
    rds: "redis.Redis",
    tenant: Tenant,
    receiver: Receiver,
    endpoints: int,
    per_endpoint: int,
) -> list[str]:
    """``endpoints`` endpoints that are down, ``per_endpoint`` events to them all, waited for until
    every delivery is dead (the fast schedule). Returns the endpoints' paths."""
    paths = [f"switch/op{i}" for i in range(endpoints)]
    receiver.down.update(p.split("/")[1] for p in paths)
    for p in paths:
        api.post("/v1/endpoints", json={"url": receiver.url(p)}, headers=tenant.auth).raise_for_status()
    for start in range(0, per_endpoint, 1000):
        events = [
            {"event_type": "a.b", "payload": {"i": i}} for i in range(start, min(per_endpoint, start + 1000))
        ]
        assert api.post("/v1/events/batch", json={"events": events}, headers=tenant.auth).status_code == 202
    total = endpoints * per_endpoint
    poll(lambda: dead_count(rds, tenant) == total, 180, what=f"{total} dead letters")
    return paths


def kill_all(workers: list["subprocess.Popen[bytes]"]) -> None:
    for w in workers:
        w.send_signal(signal.SIGKILL)
    for w in workers:
        w.wait()


def rq_job(redis_url: str, job_id: str) -> Job:
    conn = redis.Redis.from_url(redis_url)
    try:
        return Job.fetch(job_id, connection=conn)
    finally:
        conn.close()


def test_a_replay_of_5000_dead_letters_survives_every_worker_killed_mid_job(
    api: httpx.Client,
    rds: "redis.Redis",
    redis_url: str,
    tenant: Tenant,
    receiver: Receiver,
    procs: Processes,
) -> None:
    env = {**NO_BREAKER, **SLOW_JOBS}
    workers = [procs.worker(env=env), procs.worker(env=env)]
    paths = make_dead(api, rds, tenant, receiver, endpoints=20, per_endpoint=250)
    receiver.down.clear()
    before = len(receiver.requests)

    asked = time.monotonic()
    started = api.post("/v1/dead-letters/replay", json={}, headers=tenant.auth)
    answered_s = time.monotonic() - asked

    assert started.status_code == 202, started.text
    assert answered_s < 1.0, f"answered in {answered_s:.2f} s"
    assert started.json()["matched"] == 5000
    replay_id = started.json()["replay_id"]

    def record() -> dict[str, Any]:
        return dict(api.get(f"/v1/replays/{replay_id}", headers=tenant.auth).json())

    mid = poll(
        lambda: (r := record())["state"] == "requeueing" and 0 < r["requeued"] < 4000 and r,
        60,
        interval_s=0.02,
        what="the replay's job under way",
    )
    kill_all(workers)  # every worker dies while the job runs
    at_kill = record()
    assert at_kill["state"] == "requeueing" and at_kill["requeued"] >= mid["requeued"]
    workers = [procs.worker(env=env), procs.worker(env=env)]

    done = poll(lambda: (r := record())["state"] == "done" and r, 180, what="the replay done")
    assert (done["matched"], done["requeued"], done["succeeded"], done["dead"]) == (5000, 5000, 5000, 0)
    assert done["remaining"] == 0
    # No dead letter was requeued twice by the replay: its members hold each once.
    members = rds.lrange(f"wh:{{t:{tenant.id}}}:rp:{replay_id}", 0, -1)
    assert len(members) == len(set(members)) == 5000
    assert dead_count(rds, tenant) == 0
    # Every one arrived; a duplicate only from a request in flight at the kill.
    sent = Counter(
        (r.headers["webhook-id"], r.path)
        for r in receiver.requests[before:]
        if r.path.startswith("/switch/op")
    )
    assert len(sent) == 5000 and {p for _, p in sent} == {"/" + p for p in paths}
    duplicates = sum(n - 1 for n in sent.values())
    assert duplicates <= 2 * 256, duplicates
    # RQ ran it again after the kill: a retry was spent, and it finished.
    job = rq_job(redis_url, replay_id)
    assert job.get_status() == "finished" and job.retries_left is not None and job.retries_left < 10


def test_a_tenant_deletion_of_50000_keys_killed_half_way_finishes(
    api: httpx.Client,
    rds: "redis.Redis",
    admin: dict[str, str],
    make_tenant: Any,
    tenant: Tenant,
    procs: Processes,
) -> None:
    doomed = make_tenant("doomed")
    # No worker runs yet: the deliveries wait; the deletion's first step deletes their endpoint.
    api.post("/v1/endpoints", json={"url": "http://127.0.0.1:9/x"}, headers=doomed.auth).raise_for_status()
    for start in range(0, 25000, 1000):
        events = [{"event_type": "a.b", "payload": {"i": i}} for i in range(start, start + 1000)]
        assert api.post("/v1/events/batch", json={"events": events}, headers=doomed.auth).status_code == 202
    prefix = f"wh:{{t:{doomed.id}}}:"
    before = sum(1 for _ in rds.scan_iter(match=prefix + "*", count=5000))
    assert before >= 50000
    env = {"WEBHOOKS_OPERATION_PAUSE_MS": "100"}
    workers = [procs.worker(env=env), procs.worker(env=env)]

    asked = time.monotonic()
    resp = api.delete(f"/v1/tenants/{doomed.id}", headers=admin)
    assert time.monotonic() - asked < 1.0
    assert resp.status_code == 204, resp.text

    def deletion() -> dict[str, Any]:
        return dict(api.get(f"/v1/tenants/{doomed.id}/deletion", headers=admin).json())

    poll(
        lambda: (d := deletion())["state"] == "deleting" and 0 < d["deleted_keys"] < before // 2 and d,
        60,
        interval_s=0.02,
        what="the deletion under way",
    )
    kill_all(workers)
    half = deletion()
    assert half["state"] == "deleting" and half["deleted_keys"] < before
    procs.worker(env=env)

    done = poll(lambda: (d := deletion())["state"] == "done" and d, 120, what="the deletion done")
    # Counted by the job: not the few keys the request deleted (API keys, endpoints), nor a chunk
    # UNLINKed by the killed run before it wrote its count (at most one SCAN step per worker).
    assert before - 2 * 1100 <= done["deleted_keys"] <= before
    assert list(rds.scan_iter(match=prefix + "*", count=5000)) == []
    assert rds.zscore("wh:tenants", doomed.id) is None
    # The other tenant is untouched.
    assert api.get("/v1/endpoints", headers=tenant.auth).status_code == 200


def test_a_cancelled_replays_job_stops(
    api: httpx.Client,
    rds: "redis.Redis",
    redis_url: str,
    tenant: Tenant,
    receiver: Receiver,
    procs: Processes,
) -> None:
    env = {**NO_BREAKER, "WEBHOOKS_OPERATION_CHUNK": "10", "WEBHOOKS_OPERATION_PAUSE_MS": "100"}
    procs.worker(env=env)
    make_dead(api, rds, tenant, receiver, endpoints=1, per_endpoint=300)  # left down: nothing settles
    replay_id = api.post("/v1/dead-letters/replay", json={}, headers=tenant.auth).json()["replay_id"]

    def record() -> dict[str, Any]:
        return dict(api.get(f"/v1/replays/{replay_id}", headers=tenant.auth).json())

    poll(lambda: (r := record())["state"] == "requeueing" and r["requeued"] >= 20, 60, interval_s=0.02)
    cancelled = api.delete(f"/v1/replays/{replay_id}", headers=tenant.auth)
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"

    job = poll(lambda: (j := rq_job(redis_url, replay_id)).get_status() == "finished" and j, 30)
    stopped_at = record()["requeued"]
    assert stopped_at < 300 and job.return_value() == stopped_at  # the job stopped at the cancel
    time.sleep(1.0)  # a job still going would requeue 10 more per 100 ms
    assert record()["requeued"] == stopped_at
    assert record()["state"] == "cancelled"


def test_a_replay_job_failing_for_good_says_failed_on_the_replay_and_in_rqs_registry(
    api: httpx.Client,
    rds: "redis.Redis",
    redis_url: str,
    tenant: Tenant,
    receiver: Receiver,
    procs: Processes,
) -> None:
    procs.worker(env=NO_BREAKER)
    make_dead(api, rds, tenant, receiver, endpoints=1, per_endpoint=5)
    procs.stop_all()
    replay_id = api.post("/v1/dead-letters/replay", json={}, headers=tenant.auth).json()["replay_id"]
    rds.hdel(f"wh:replay:{replay_id}", "spec")  # what its job needs to know is gone: every run fails
    procs.worker(env=NO_BREAKER)

    replay = poll(
        lambda: (
            (r := api.get(f"/v1/replays/{replay_id}", headers=tenant.auth).json())["state"] == "failed" and r
        ),
        60,
        what="the replay failed",
    )
    assert replay["error"] == "KeyError: 'spec'"
    conn = redis.Redis.from_url(redis_url)
    try:
        assert replay_id in FailedJobRegistry("webhooks-operations", connection=conn).get_job_ids()
    finally:
        conn.close()
    assert rq_job(redis_url, replay_id).get_status() == "failed"
    assert dead_count(rds, tenant) == 5  # nothing was requeued
