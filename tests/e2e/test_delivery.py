"""End to end: API + real worker processes + a real receiver on loopback."""

import json
import signal
import time
from collections.abc import Callable
from typing import Any

import httpx
from standardwebhooks.webhooks import Webhook

from tests.conftest import Processes, Tenant
from tests.support.poll import poll
from tests.support.receiver import Receiver

Endpoint = Callable[..., dict[str, Any]]


def post_event(
    api: httpx.Client, tenant: Tenant, event_type: str = "invoice.paid", **extra: Any
) -> dict[str, Any]:
    resp = api.post(
        "/v1/events", json={"event_type": event_type, "payload": {"n": 1}, **extra}, headers=tenant.auth
    )
    assert resp.status_code == 202, resp.text
    return dict(resp.json())


def delivery(api: httpx.Client, tenant: Tenant, delivery_id: str) -> dict[str, Any]:
    resp = api.get(f"/v1/deliveries/{delivery_id}", headers=tenant.auth)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def wait_status(
    api: httpx.Client, tenant: Tenant, delivery_id: str, status: str, timeout_s: float = 20
) -> dict[str, Any]:
    return poll(
        lambda: (d := delivery(api, tenant, delivery_id))["status"] == status and d,
        timeout_s,
        what=f"delivery {delivery_id} to be {status}",
    )


def test_delivery_is_signed_and_verifies_with_standardwebhooks(
    api: httpx.Client, tenant: Tenant, make_endpoint: Endpoint, receiver: Receiver, procs: Processes
) -> None:
    ep = make_endpoint(receiver.url("ok/a"), headers={"X-Tenant-Tag": "blue"})
    procs.worker()
    ev = post_event(api, tenant, payload={"amount": 42})
    (got,) = poll(lambda: receiver.to("ok/a"), what="the delivery")
    payload = Webhook(ep["secret"]).verify(got.body, got.headers)
    assert payload == {"type": "invoice.paid", "timestamp": ev["created_at"], "data": {"amount": 42}}
    assert got.headers["webhook-id"] == ev["id"]
    assert got.headers["content-type"] == "application/json"
    assert got.headers["user-agent"].startswith("webhooks/")
    assert got.headers["x-tenant-tag"] == "blue"
    d = wait_status(api, tenant, ev["deliveries"][0]["id"], "succeeded")
    (attempt,) = d["attempts"]
    assert attempt["number"] == 1 and attempt["status_code"] == 200 and attempt["error"] is None
    assert attempt["response_excerpt"] == '{"received": true}'


def test_flaky_endpoint_succeeds_on_the_third_attempt(
    api: httpx.Client, tenant: Tenant, make_endpoint: Endpoint, receiver: Receiver, procs: Processes
) -> None:
    make_endpoint(receiver.url("flaky/2/x"))
    procs.worker()
    ev = post_event(api, tenant)
    d = wait_status(api, tenant, ev["deliveries"][0]["id"], "succeeded")
    assert [a["status_code"] for a in d["attempts"]] == [500, 500, 200]
    assert [a["number"] for a in d["attempts"]] == [1, 2, 3]
    assert len(receiver.to("flaky/2/x")) == 3
    ids = {r.headers["webhook-id"] for r in receiver.to("flaky/2/x")}
    assert ids == {ev["id"]}, "the webhook-id is the same on every attempt"


def test_always_failing_endpoint_dies_after_all_attempts_then_replay_delivers_after_fix(
    api: httpx.Client, tenant: Tenant, make_endpoint: Endpoint, receiver: Receiver, procs: Processes
) -> None:
    ep = make_endpoint(receiver.url("fail/y"))
    procs.worker()
    ev = post_event(api, tenant)
    delivery_id = ev["deliveries"][0]["id"]
    d = wait_status(api, tenant, delivery_id, "dead")
    schedule_len = 3  # FAST_SCHEDULE in conftest
    assert len(d["attempts"]) == 1 + schedule_len
    assert len(receiver.to("fail/y")) == 1 + schedule_len
    assert d["next_attempt_at"] is None and d["dead_at"] is not None
    dead = api.get("/v1/dead-letters", headers=tenant.auth).json()["data"]
    assert [x["id"] for x in dead] == [delivery_id]

    fixed = api.patch(f"/v1/endpoints/{ep['id']}", json={"url": receiver.url("ok/y")}, headers=tenant.auth)
    assert fixed.status_code == 200
    replay = api.post("/v1/dead-letters/replay", json={"endpoint_id": ep["id"]}, headers=tenant.auth)
    assert replay.status_code == 202 and replay.json()["matched"] == 1
    d = wait_status(api, tenant, delivery_id, "succeeded")
    assert len(d["attempts"]) == 2 + schedule_len and d["attempts"][-1]["status_code"] == 200
    assert len(receiver.to("ok/y")) == 1
    assert api.get("/v1/dead-letters", headers=tenant.auth).json()["data"] == []


def test_410_disables_the_endpoint_and_kills_the_delivery(
    api: httpx.Client, tenant: Tenant, make_endpoint: Endpoint, receiver: Receiver, procs: Processes
) -> None:
    ep = make_endpoint(receiver.url("status/410/z"))
    procs.worker()
    ev = post_event(api, tenant)
    d = wait_status(api, tenant, ev["deliveries"][0]["id"], "dead")
    assert len(d["attempts"]) == 1
    got = api.get(f"/v1/endpoints/{ep['id']}", headers=tenant.auth).json()
    assert got["disabled"] is True and "410" in got["disabled_reason"]
    assert post_event(api, tenant)["deliveries"] == [], "a disabled endpoint gets no new deliveries"


def test_event_type_filter_routes_only_matching_events(
    api: httpx.Client, tenant: Tenant, make_endpoint: Endpoint, receiver: Receiver, procs: Processes
) -> None:
    make_endpoint(receiver.url("ok/invoices"), event_types=["invoice.paid"])
    make_endpoint(receiver.url("ok/all"))
    procs.worker()
    post_event(api, tenant, "invoice.paid")
    post_event(api, tenant, "user.created")
    poll(lambda: len(receiver.to("ok/all")) == 2, what="both events at the catch-all endpoint")
    types = [json.loads(r.body)["type"] for r in receiver.to("ok/invoices")]
    assert types == ["invoice.paid"]


def test_reposting_the_same_event_id_or_key_delivers_once(
    api: httpx.Client, tenant: Tenant, make_endpoint: Endpoint, receiver: Receiver, procs: Processes
) -> None:
    make_endpoint(receiver.url("ok/once"))
    first = post_event(api, tenant, id="order-1001")
    again = post_event(api, tenant, id="order-1001")
    assert again["id"] == first["id"] and again["deliveries"][0]["id"] == first["deliveries"][0]["id"]
    keyed = api.post(
        "/v1/events",
        json={"event_type": "a.b", "payload": 1},
        headers={**tenant.auth, "Idempotency-Key": "k-1"},
    ).json()
    keyed_again = api.post(
        "/v1/events",
        json={"event_type": "a.b", "payload": 1},
        headers={**tenant.auth, "Idempotency-Key": "k-1"},
    ).json()
    assert keyed_again["id"] == keyed["id"]
    procs.worker()
    poll(lambda: len(receiver.to("ok/once")) == 2, what="two distinct events")

    def settled() -> list[tuple[str, int]]:
        page = api.get("/v1/deliveries", headers=tenant.auth).json()["data"]
        return [(d["status"], d["attempt_count"]) for d in page]

    # Two deliveries in all, each settled after one attempt: the worker has nothing left to send
    # for this tenant, so whatever the receiver holds now is all it will ever get.
    poll(lambda: settled() == [("succeeded", 1)] * 2, what="both deliveries settled after one attempt")
    assert sorted(r.headers["webhook-id"] for r in receiver.to("ok/once")) == sorted(
        [first["id"], keyed["id"]]
    )


def test_rotated_secret_signs_twice_during_the_grace_period(
    api: httpx.Client, tenant: Tenant, make_endpoint: Endpoint, receiver: Receiver, procs: Processes
) -> None:
    ep = make_endpoint(receiver.url("ok/rot"))
    rotated = api.post(
        f"/v1/endpoints/{ep['id']}/secret/rotate", json={"grace_period_s": 3600}, headers=tenant.auth
    )
    assert rotated.status_code == 200
    new_secret = rotated.json()["secret"]
    assert new_secret != ep["secret"]
    procs.worker()
    post_event(api, tenant)
    (got,) = poll(lambda: receiver.to("ok/rot"), what="the delivery")
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    Webhook(new_secret).verify(got.body, got.headers)
    Webhook(ep["secret"]).verify(got.body, got.headers)

    api.post(f"/v1/endpoints/{ep['id']}/secret/rotate", json={"grace_period_s": 0}, headers=tenant.auth)
    latest = api.get(f"/v1/endpoints/{ep['id']}/secret", headers=tenant.auth).json()["secret"]
    post_event(api, tenant)
    poll(lambda: len(receiver.to("ok/rot")) == 2, what="the second delivery")
    second = receiver.to("ok/rot")[1]
    assert len(second.headers["webhook-signature"].split(" ")) == 1, "no grace period: one signature"
    Webhook(latest).verify(second.body, second.headers)


def test_redirects_are_not_followed(
    api: httpx.Client, tenant: Tenant, make_endpoint: Endpoint, receiver: Receiver, procs: Processes
) -> None:
    make_endpoint(receiver.url("status/302/r"))
    procs.worker()
    ev = post_event(api, tenant)
    d = wait_status(api, tenant, ev["deliveries"][0]["id"], "dead")
    assert {a["status_code"] for a in d["attempts"]} == {302}


def test_retry_after_is_honoured(
    api: httpx.Client, tenant: Tenant, make_endpoint: Endpoint, receiver: Receiver, procs: Processes
) -> None:
    make_endpoint(receiver.url("retry-after/2/ra"))
    procs.worker(env={"WEBHOOKS_RETRY_SCHEDULE": "0.2,5"})
    ev = post_event(api, tenant)
    poll(lambda: len(receiver.to("retry-after/2/ra")) >= 2, timeout_s=15, what="the second attempt")
    first, second = receiver.to("retry-after/2/ra")[:2]
    assert second.at - first.at >= 1.9, "429 asked for 2 s; the 0.2 s schedule step must not win"
    assert second.at - first.at < 4.5
    d = delivery(api, tenant, ev["deliveries"][0]["id"])
    assert d["attempts"][0]["status_code"] == 429


def test_timeouts_are_retried_with_a_clear_error(
    api: httpx.Client, tenant: Tenant, make_endpoint: Endpoint, receiver: Receiver, procs: Processes
) -> None:
    make_endpoint(receiver.url("hang/t"))
    procs.worker(env={"WEBHOOKS_REQUEST_TIMEOUT_S": "0.5", "WEBHOOKS_RETRY_SCHEDULE": "0.1"})
    ev = post_event(api, tenant)
    d = wait_status(api, tenant, ev["deliveries"][0]["id"], "dead")
    assert len(d["attempts"]) == 2
    assert all(a["status_code"] is None and a["error"].startswith("timeout") for a in d["attempts"])


def test_manual_retry_makes_one_new_attempt(
    api: httpx.Client, tenant: Tenant, make_endpoint: Endpoint, receiver: Receiver, procs: Processes
) -> None:
    make_endpoint(receiver.url("ok/manual"))
    procs.worker()
    ev = post_event(api, tenant)
    delivery_id = ev["deliveries"][0]["id"]
    wait_status(api, tenant, delivery_id, "succeeded")
    resp = api.post(f"/v1/deliveries/{delivery_id}/retry", headers=tenant.auth)
    assert resp.status_code == 202
    poll(lambda: len(delivery(api, tenant, delivery_id)["attempts"]) == 2, what="the manual attempt")
    assert len(receiver.to("ok/manual")) == 2


def test_worker_killed_mid_batch_loses_nothing(
    api: httpx.Client, tenant: Tenant, make_endpoint: Endpoint, receiver: Receiver, procs: Processes
) -> None:
    make_endpoint(receiver.url("slow/1500/k"))
    events = api.post(
        "/v1/events/batch",
        json={"events": [{"event_type": "k.k", "payload": {"i": i}} for i in range(40)]},
        headers=tenant.auth,
    ).json()
    victim = procs.worker()
    poll(lambda: len(receiver.to("slow/1500/k")) >= 10, what="the worker to be mid-batch")
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    killed_at = time.time()
    seen_before = {r.headers["webhook-id"] for r in receiver.to("slow/1500/k")}
    procs.worker()
    for ev in events:
        wait_status(api, tenant, ev["deliveries"][0]["id"], "succeeded", timeout_s=40)
    arrivals = receiver.to("slow/1500/k")
    assert {r.headers["webhook-id"] for r in arrivals} == {ev["id"] for ev in events}
    retried = [r.at for r in arrivals if r.at > killed_at and r.headers["webhook-id"] in seen_before]
    assert retried, "the deliveries in flight at the kill were attempted again"
    recovery_s = min(retried) - killed_at
    print(f"re-attempted {recovery_s:.1f}s after the SIGKILL")
    assert recovery_s < 30


def test_endpoint_rate_limit_spaces_deliveries_across_workers(
    api: httpx.Client, tenant: Tenant, make_endpoint: Endpoint, receiver: Receiver, procs: Processes
) -> None:
    make_endpoint(receiver.url("ok/rl"), rate_limit_per_s=4)
    api.post(
        "/v1/events/batch",
        json={"events": [{"event_type": "r.l", "payload": {"i": i}} for i in range(12)]},
        headers=tenant.auth,
    )
    procs.worker()
    procs.worker(env={"WEBHOOKS_LEASE_TTL_S": "5"})
    poll(lambda: len(receiver.to("ok/rl")) == 12, timeout_s=30, what="all 12 deliveries")
    # Windows are whole seconds of the sender's clock, which stamps each attempt (webhook-timestamp).
    per_second: dict[int, int] = {}
    for r in receiver.to("ok/rl"):
        second = int(r.headers["webhook-timestamp"])
        per_second[second] = per_second.get(second, 0) + 1
    assert max(per_second.values()) <= 4, per_second
    assert len(per_second) >= 3, "12 sends at 4/s need three one-second windows"
