"""Pausing an endpoint end to end (a real worker with its scheduler, real Redis, a loopback receiver):
nothing is sent while paused, its deliveries wait ``pending`` with no attempt, resuming sends each
once (in order on a FIFO endpoint), and the pause survives a restart of every process."""

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import redis

from tests.conftest import Processes, Tenant, api_config
from tests.support.api_server import ApiServer
from tests.support.poll import poll
from tests.support.receiver import Receiver
from tests.support.redis_proc import RedisProc
from webhooks import keys

LEASE_PASSES = 5


def ids_at(receiver: Receiver, path: str) -> list[str]:
    return [r.headers["webhook-id"] for r in receiver.to(path)]


def post_events(api: httpx.Client, tenant: Tenant, n: int, start: int = 0) -> list[str]:
    events = [{"event_type": "a.b", "payload": {"i": i}} for i in range(start, start + n)]
    resp = api.post("/v1/events/batch", json={"events": events}, headers=tenant.auth)
    assert resp.status_code == 202, resp.text
    return [e["id"] for e in resp.json()]


def prove_nothing_leased_for(
    api: httpx.Client, tenant: Tenant, receiver: Receiver, rds: "redis.Redis", paused: str, ep_id: str
) -> None:
    """The worker keeps leasing for the tenant (each event below to the other endpoint needs a
    lease pass of its own, and is received) while the paused endpoint is given nothing."""
    # first let everything else settle (after a restart, the killed worker's unrecorded deliveries
    # are reclaimed and sent again, at least once), so the lease counter moves only for what follows
    poll(
        lambda: (
            rds.zcard(keys.leases(tenant.id)) == 0
            and all(
                d["status"] == "succeeded"
                for d in api.get("/v1/deliveries", params={"limit": 1000}, headers=tenant.auth).json()["data"]
                if d["endpoint_id"] != ep_id
            )
        ),
        30,
        what="the other endpoint settled",
    )
    leased = int(rds.hget(keys.stats(tenant.id), "deliveries_leased") or 0)
    for i in range(LEASE_PASSES):
        (event_id,) = post_events(api, tenant, 1, 1000 + i)
        poll(lambda e=event_id: e in ids_at(receiver, "ok/other"), 20, what=f"lease pass {i} delivered")  # type: ignore[misc]
    after = int(rds.hget(keys.stats(tenant.id), "deliveries_leased") or 0)
    assert after - leased == LEASE_PASSES, "exactly the other endpoint's deliveries were leased"
    assert receiver.to(paused) == []
    assert int(rds.hget(keys.endpoint(tenant.id, ep_id), "if") or 0) == 0


def deliveries_of(api: httpx.Client, tenant: Tenant, endpoint_id: str) -> list[dict[str, Any]]:
    resp = api.get("/v1/deliveries", params={"endpoint_id": endpoint_id, "limit": 1000}, headers=tenant.auth)
    assert resp.status_code == 200, resp.text
    return list(resp.json()["data"])


def test_a_paused_endpoint_gets_nothing_and_resuming_sends_its_backlog_once_in_order(
    api: httpx.Client,
    tenant: Tenant,
    receiver: Receiver,
    procs: Processes,
    rds: "redis.Redis",
    make_endpoint: Callable[..., dict[str, Any]],
) -> None:
    paused_path = "ok/paused"
    ep = make_endpoint(receiver.url(paused_path), ordering="fifo")
    make_endpoint(receiver.url("ok/other"))
    procs.worker()
    resp = api.patch(f"/v1/endpoints/{ep['id']}", json={"paused": True}, headers=tenant.auth)
    assert resp.status_code == 200, resp.text
    assert resp.json()["paused"] is True and resp.json()["health"]["state"] == "paused"
    backlog = post_events(api, tenant, 30)
    poll(lambda: set(backlog) <= set(ids_at(receiver, "ok/other")), 30, what="the other endpoint's 30")
    prove_nothing_leased_for(api, tenant, receiver, rds, paused_path, ep["id"])

    held = deliveries_of(api, tenant, ep["id"])
    assert len(held) == 30 + LEASE_PASSES
    assert {d["status"] for d in held} == {"pending"}
    assert {d["attempt_count"] for d in held} == {0}
    got = api.get(f"/v1/endpoints/{ep['id']}", headers=tenant.auth).json()
    assert got["paused"] is True
    assert got["health"] == {
        "state": "paused",
        "consecutive_failures": 0,
        "next_attempt_at": None,
        "in_flight": 0,
        "ready": 30 + LEASE_PASSES,
        "retrying": 0,
    }
    listed = api.get("/v1/endpoints", headers=tenant.auth).json()["data"]
    states = {e["id"]: e["health"]["state"] for e in listed}
    assert states[ep["id"]] == "paused" and sorted(states.values()) == ["healthy", "paused"]
    # a non-boolean is refused and changes nothing
    assert (
        api.patch(f"/v1/endpoints/{ep['id']}", json={"paused": "no"}, headers=tenant.auth).status_code == 422
    )

    resp = api.patch(f"/v1/endpoints/{ep['id']}", json={"paused": False}, headers=tenant.auth)
    assert resp.status_code == 200 and resp.json()["paused"] is False
    want = backlog + [d for d in ids_at(receiver, "ok/other") if d not in backlog]
    poll(lambda: len(ids_at(receiver, paused_path)) >= len(want), 30, what="the backlog after resuming")
    poll(
        lambda: {d["status"] for d in deliveries_of(api, tenant, ep["id"])} == {"succeeded"},
        20,
        what="every held delivery succeeded",
    )
    sent = ids_at(receiver, paused_path)
    assert sent == want, "each once, in ingest order (FIFO)"
    assert {d["attempt_count"] for d in deliveries_of(api, tenant, ep["id"])} == {1}
    assert api.get(f"/v1/endpoints/{ep['id']}", headers=tenant.auth).json()["health"]["state"] == "healthy"


def test_a_pause_survives_a_restart_of_every_process(
    tenant: Tenant,
    receiver: Receiver,
    procs: Processes,
    rds: "redis.Redis",
    redis_proc: RedisProc,
    redis_url: str,
) -> None:
    first = ApiServer(api_config(redis_url)).start()
    with httpx.Client(base_url=first.url, timeout=30) as api:
        ep = api.post("/v1/endpoints", json={"url": receiver.url("ok/held")}, headers=tenant.auth).json()
        api.post("/v1/endpoints", json={"url": receiver.url("ok/other")}, headers=tenant.auth)
        worker = procs.worker()
        assert (
            api.patch(f"/v1/endpoints/{ep['id']}", json={"paused": True}, headers=tenant.auth).status_code
            == 200
        )
        backlog = post_events(api, tenant, 10)
        poll(lambda: set(backlog) <= set(ids_at(receiver, "ok/other")), 30, what="the other endpoint's 10")
    # every process stops: the worker (with its scheduler), the API, and Redis itself
    worker.kill()
    worker.wait()
    first.stop()
    redis_proc.stop()
    redis_proc.start()
    procs.worker()
    second = ApiServer(api_config(redis_url)).start()
    try:
        with httpx.Client(base_url=second.url, timeout=30) as api:
            got = api.get(f"/v1/endpoints/{ep['id']}", headers=tenant.auth).json()
            assert got["paused"] is True and got["health"]["state"] == "paused"
            assert got["health"]["ready"] == 10
            prove_nothing_leased_for(api, tenant, receiver, rds, "ok/held", ep["id"])
            assert (
                api.patch(
                    f"/v1/endpoints/{ep['id']}", json={"paused": False}, headers=tenant.auth
                ).status_code
                == 200
            )
            poll(
                lambda: len(ids_at(receiver, "ok/held")) == 10 + LEASE_PASSES,
                30,
                what="the backlog after resuming",
            )
            assert len(set(ids_at(receiver, "ok/held"))) == 10 + LEASE_PASSES
    finally:
        second.stop()


def test_deliveries_a_worker_already_holds_go_back_unsent_when_the_endpoint_is_paused(
    api: httpx.Client, tenant: Tenant, receiver: Receiver, procs: Processes, rds: "redis.Redis"
) -> None:
    # a rate-limited backlog: the worker holds many deliveries at once, waiting for their slots
    ep = api.post(
        "/v1/endpoints",
        json={"url": receiver.url("ok/limited"), "rate_limit_per_s": 4, "max_in_flight": 40},
        headers=tenant.auth,
    ).json()
    procs.worker()
    post_events(api, tenant, 40)
    poll(lambda: len(receiver.to("ok/limited")) >= 4, 30, what="the backlog flowing")
    held_by_worker = int(rds.hget(keys.endpoint(tenant.id, ep["id"]), "if") or 0)
    resp = api.patch(f"/v1/endpoints/{ep['id']}", json={"paused": True}, headers=tenant.auth)
    answered = time.time()
    assert resp.status_code == 200, resp.text
    assert held_by_worker > 1, "the pause must come while the worker holds deliveries"

    # what the worker held goes back: nothing in flight, every unsent delivery pending, no attempt
    poll(lambda: int(rds.hget(keys.endpoint(tenant.id, ep["id"]), "if") or 0) == 0, 10, what="handed back")
    sent = len(receiver.to("ok/limited"))
    late = [r.at - answered for r in receiver.to("ok/limited") if r.at > answered]
    assert max(late, default=0.0) <= 0.25, f"{len(late)} sent after the pause was answered"
    waiting = [d for d in deliveries_of(api, tenant, ep["id"]) if d["status"] != "succeeded"]
    assert len(waiting) == 40 - sent
    assert {(d["status"], d["attempt_count"]) for d in waiting} == {("pending", 0)}
    assert int(rds.hget(keys.stats(tenant.id), "deliveries_handed_back") or 0) >= 1

    assert (
        api.patch(f"/v1/endpoints/{ep['id']}", json={"paused": False}, headers=tenant.auth).status_code == 200
    )
    poll(lambda: len(ids_at(receiver, "ok/limited")) == 40, 30, what="the rest after resuming")
    assert len(set(ids_at(receiver, "ok/limited"))) == 40, "each once"


@pytest.mark.parametrize("change", ["disable", "delete"])
def test_disabling_or_deleting_a_paused_endpoint_still_ends_what_waits_dead(
    api: httpx.Client, tenant: Tenant, receiver: Receiver, procs: Processes, change: str
) -> None:
    ep = api.post("/v1/endpoints", json={"url": receiver.url("ok/gone")}, headers=tenant.auth).json()
    assert (
        api.patch(f"/v1/endpoints/{ep['id']}", json={"paused": True}, headers=tenant.auth).status_code == 200
    )
    procs.worker()
    post_events(api, tenant, 5)
    if change == "disable":
        resp = api.patch(f"/v1/endpoints/{ep['id']}", json={"disabled": True}, headers=tenant.auth)
        assert resp.json()["paused"] is True and resp.json()["health"]["state"] == "disabled"
    else:
        resp = api.delete(f"/v1/endpoints/{ep['id']}", headers=tenant.auth)
    assert resp.status_code in (200, 204), resp.text
    poll(
        lambda: (
            len(api.get("/v1/deliveries", params={"status": "dead"}, headers=tenant.auth).json()["data"]) == 5
        ),
        20,
        what="every waiting delivery dead, as disabling or deleting does",
    )
    assert receiver.to("ok/gone") == []
