"""End to end on a real 3-primary Redis Cluster: the API, workers and scheduler with
``WEBHOOKS_REDIS_CLUSTER_NODES``, RQ's trigger queue on a plain Redis (``WEBHOOKS_RQ_REDIS_URL``).

Tenants are spread over the primaries (their hash tags land in slots each primary serves); every
event is delivered, signed, retried and dead-lettered as on one Redis, and the API reads it back.
"""

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import redis.cluster
from standardwebhooks.webhooks import Webhook

from tests.cluster.conftest import ADMIN, cluster_env, new_tenant
from tests.conftest import ROOT, Processes, Tenant
from tests.e2e.test_operational import ops_env, ops_events
from tests.support.poll import poll
from tests.support.receiver import Receiver
from tests.support.redis_proc import RedisProc, free_port
from webhooks import keys
from webhooks.runtime.connection import RedisTarget

N_TENANTS, N_EVENTS = 9, 12
SCHEDULE_LEN = 3  # FAST_SCHEDULE: three retries, then dead


def endpoint(api: httpx.Client, tenant: Tenant, url: str, **fields: Any) -> dict[str, Any]:
    resp = api.post("/v1/endpoints", json={"url": url, **fields}, headers=tenant.auth)
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def post_batch(api: httpx.Client, tenant: Tenant, event_type: str, n: int) -> list[dict[str, Any]]:
    events = [{"event_type": event_type, "payload": {"tenant": tenant.id, "i": i}} for i in range(n)]
    resp = api.post("/v1/events/batch", json={"events": events}, headers=tenant.auth)
    assert resp.status_code == 202, resp.text
    return list(resp.json())


def get(api: httpx.Client, tenant: Tenant, path: str) -> dict[str, Any]:
    resp = api.get(path, headers=tenant.auth)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def wait_status(api: httpx.Client, tenant: Tenant, delivery_id: str, status: str) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        d = get(api, tenant, f"/v1/deliveries/{delivery_id}")
        return d if d["status"] == status else None

    return poll(reached, timeout_s=30, what=f"delivery {delivery_id} to be {status}")


def test_events_to_tenants_on_every_primary_are_delivered_signed_retried_and_dead_lettered(
    capi: httpx.Client,
    rc: "redis.cluster.RedisCluster",
    receiver: Receiver,
    cprocs: Processes,
) -> None:
    tenants = [new_tenant(capi, f"t{i}") for i in range(N_TENANTS)]
    owners = {rc.get_node_from_key(keys.tenant_base(t.id)).port for t in tenants}
    while len(owners) < 3:  # ids are random: add tenants until every primary holds one
        tenants.append(new_tenant(capi, f"t{len(tenants)}"))
        owners.add(rc.get_node_from_key(keys.tenant_base(tenants[-1].id)).port)
    secrets, expected = {}, {}
    for t in tenants:
        ep = endpoint(capi, t, receiver.url(f"ok/{t.id}"), event_types=["order.paid"])
        secrets[t.id] = ep["secret"]
        expected[t.id] = post_batch(capi, t, "order.paid", N_EVENTS)
    # Retries and dead letters on the first tenant of each primary.
    firsts = {rc.get_node_from_key(keys.tenant_base(t.id)).port: t for t in reversed(tenants)}.values()
    flaky, dying = {}, {}
    for t in firsts:
        endpoint(capi, t, receiver.url(f"flaky/2/{t.id}"), event_types=["order.flaky"])
        flaky[t.id] = post_batch(capi, t, "order.flaky", 1)[0]
        endpoint(capi, t, receiver.url(f"fail/{t.id}"), event_types=["order.lost"])
        dying[t.id] = post_batch(capi, t, "order.lost", 1)[0]

    # Operational webhooks too: each dead letter's tenant is summarised to the operator's endpoint,
    # on the operator tenant's own slot.
    cprocs.worker(env=ops_env(receiver))
    cprocs.worker("--no-scheduler", env=ops_env(receiver))
    total = len(tenants) * N_EVENTS
    poll(
        lambda: sum(len(receiver.to(f"ok/{t.id}")) for t in tenants) >= total,
        timeout_s=60,
        what=f"{total} deliveries",
    )
    for t in tenants:
        got = receiver.to(f"ok/{t.id}")
        ids = Counter(r.headers["webhook-id"] for r in got)
        assert ids == Counter(ev["id"] for ev in expected[t.id]), f"tenant {t.id}: each event once"
        for r in got:
            payload = Webhook(secrets[t.id]).verify(r.body, r.headers)
            assert payload["data"]["tenant"] == t.id

    for t in firsts:
        d = wait_status(capi, t, flaky[t.id]["deliveries"][0]["id"], "succeeded")
        assert [a["status_code"] for a in d["attempts"]] == [500, 500, 200]
        dead_id = dying[t.id]["deliveries"][0]["id"]
        d = wait_status(capi, t, dead_id, "dead")
        assert len(d["attempts"]) == 1 + SCHEDULE_LEN
        assert [x["id"] for x in get(capi, t, "/v1/dead-letters")["data"]] == [dead_id]
    summaries = poll(
        lambda: (found := ops_events(receiver, "delivery.dead")) and len(found) >= len(dying) and found,
        timeout_s=30,
        what="a signed delivery.dead summary per dying tenant",
    )
    assert {e["data"]["tenant_id"] for e in summaries} == set(dying)

    # The API reads each tenant's history back from whichever primary holds it.
    for t in tenants:
        events = get(capi, t, "/v1/events?limit=100")["data"]
        assert {e["id"] for e in expected[t.id]} <= {e["id"] for e in events}
        first = expected[t.id][0]["deliveries"][0]["id"]
        assert get(capi, t, f"/v1/deliveries/{first}")["status"] == "succeeded"
    # Each primary ran its own tenants' scripts: every one holds delivery state.
    per_primary = {
        port: sum(1 for t in tenants if rc.get_node_from_key(keys.tenant_base(t.id)).port == port)
        for port in owners
    }
    assert all(n >= 1 for n in per_primary.values()), per_primary
    assert "Traceback" not in cprocs.logs(), cprocs.logs()[-3000:]


def test_replay_event_types_strict_mode_and_rate_limits_work_on_the_cluster(
    capi: httpx.Client, receiver: Receiver, cprocs: Processes
) -> None:
    """The API's multi-key writes (transactions, catalogue, strict mode, replays) and the send
    rate limit on the cluster."""
    t = new_tenant(capi, "catalogue")
    made = capi.post(
        "/v1/event-types", json={"name": "user.created", "description": "a user"}, headers=t.auth
    )
    assert made.status_code == 201, made.text
    strict = capi.patch(f"/v1/tenants/{t.id}", json={"strict_event_types": True}, headers=ADMIN)
    assert strict.status_code == 200, strict.text
    refused = capi.post("/v1/events", json={"event_type": "user.gone", "payload": {}}, headers=t.auth)
    assert refused.status_code == 422, refused.text
    ep = endpoint(capi, t, receiver.url("fail/replay"))
    ev = capi.post("/v1/events", json={"event_type": "user.created", "payload": {}}, headers=t.auth)
    assert ev.status_code == 202, ev.text
    delivery_id = ev.json()["deliveries"][0]["id"]
    cprocs.worker()
    wait_status(capi, t, delivery_id, "dead")
    fixed = capi.patch(f"/v1/endpoints/{ep['id']}", json={"url": receiver.url("ok/replay")}, headers=t.auth)
    assert fixed.status_code == 200, fixed.text
    replay = capi.post("/v1/dead-letters/replay", json={"endpoint_id": ep["id"]}, headers=t.auth)
    assert replay.status_code == 202 and replay.json()["matched"] == 1, replay.text
    poll(lambda: len(receiver.to("ok/replay")) == 1, timeout_s=30, what="the replayed delivery")
    assert json.loads(receiver.to("ok/replay")[0].body)["type"] == "user.created"
    # A rate-limited endpoint (its send windows are keys of the tenant's slot: lua/rate.lua).
    endpoint(capi, t, receiver.url("ok/paced"), rate_limit_per_s=2, event_types=["user.created"])
    post_batch(capi, t, "user.created", 4)
    poll(lambda: len(receiver.to("ok/paced")) == 4, timeout_s=30, what="the paced deliveries")
    seconds = Counter(r.headers["webhook-timestamp"] for r in receiver.to("ok/paced"))
    assert max(seconds.values()) <= 2, seconds
    # The operator's view: queue figures from the cluster, the workers from RQ's own Redis.
    argv = [sys.executable, "-m", "cli", "status", "--json"]
    shown = subprocess.run(argv, env=cprocs.env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    status = json.loads(shown.stdout)
    assert len(status["workers"]) == 1 and status["dead_letters"] == 0, status
    assert status["redis_server"].startswith(("redis", "valkey")) and status["maxmemory_bytes"] >= 0


def test_a_cluster_without_an_rq_redis_fails_at_startup_with_a_clear_error(target: RedisTarget) -> None:
    env = cluster_env(target)
    del env["WEBHOOKS_RQ_REDIS_URL"]
    for command in ("worker", "scheduler", "api"):
        argv = [sys.executable, "-m", "cli", command]
        done = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert done.returncode != 0
        said = done.stderr + done.stdout
        assert "WEBHOOKS_RQ_REDIS_URL is required with WEBHOOKS_REDIS_CLUSTER_NODES" in said, said


def test_processes_started_before_their_cluster_is_reachable_wait_and_answer_503(
    rq_redis: RedisProc, tmp_path: Path
) -> None:
    """No seed node answers: the worker waits (it does not exit), the API starts and answers 503."""
    dead = RedisTarget("", cluster=(("127.0.0.1", free_port()),), rq_url=rq_redis.url)
    procs = Processes(cluster_env(dead), tmp_path)
    api_port = free_port()
    try:
        worker = procs.worker()
        procs.start("api", env={"WEBHOOKS_API_PORT": str(api_port)})

        def ready_status() -> int | None:
            try:
                return httpx.get(f"http://127.0.0.1:{api_port}/readyz", timeout=5).status_code
            except httpx.HTTPError:
                return None

        assert poll(ready_status, timeout_s=30, what="the API to answer") == 503
        event = {"event_type": "x.y", "payload": {}}
        key = {"Authorization": "Bearer whk_looked-up-in-redis-which-is-away"}
        refused = httpx.post(f"http://127.0.0.1:{api_port}/v1/events", json=event, headers=key, timeout=30)
        assert refused.status_code == 503, refused.text
        poll(lambda: "Redis is not reachable" in procs.logs(), timeout_s=30, what="the worker's warning")
        assert worker.poll() is None, "the worker waits for its cluster"
    finally:
        procs.stop_all()
