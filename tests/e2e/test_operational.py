"""Operational webhooks end to end: a real worker (with its scheduler) sends signed ``endpoint.disabled``,
``endpoint.recovered`` and summarised ``delivery.dead`` events to a loopback receiver that verifies them."""

from typing import Any

import httpx
import orjson
import redis
from standardwebhooks.webhooks import Webhook

from tests.conftest import Processes, Tenant
from tests.support.poll import poll
from tests.support.receiver import Receiver
from webhooks import keys
from webhooks.intake.operational import OPERATOR_ENDPOINT, OPERATOR_TENANT
from webhooks.outbound.signing import generate_secret

SECRET = generate_secret()


def ops_env(receiver: Receiver, **extra: str) -> dict[str, str]:
    return {
        "WEBHOOKS_OPERATIONAL_WEBHOOK_URL": receiver.url("ok/ops"),
        "WEBHOOKS_OPERATIONAL_WEBHOOK_SECRET": SECRET,
        "WEBHOOKS_OPERATIONAL_SUMMARY_S": "1",
        **extra,
    }


def ops_events(receiver: Receiver, kind: str | None = None) -> list[dict[str, Any]]:
    """Every verified operational event received (the signature check raises on a bad one)."""
    out = []
    for got in receiver.to("ok/ops"):
        Webhook(SECRET).verify(got.body, got.headers)
        body = orjson.loads(got.body)
        if kind is None or body["type"] == kind:
            out.append(body)
    return out


def test_an_endpoint_failing_past_the_window_sends_one_signed_endpoint_disabled(
    api: httpx.Client, tenant: Tenant, receiver: Receiver, procs: Processes, admin: dict[str, str]
) -> None:
    ep = api.post("/v1/endpoints", json={"url": receiver.url("fail/always")}, headers=tenant.auth).json()
    procs.worker(
        env=ops_env(
            receiver,
            WEBHOOKS_DISABLE_AFTER_S="2",
            WEBHOOKS_RETRY_SCHEDULE=",".join(["1"] * 20),
        )
    )
    for _ in range(3):
        api.post("/v1/events", json={"event_type": "a.b", "payload": {}}, headers=tenant.auth)
    (disabled,) = poll(lambda: ops_events(receiver, "endpoint.disabled"), 40, what="endpoint.disabled")
    data = disabled["data"]
    assert (data["tenant_id"], data["endpoint_id"], data["url"]) == (tenant.id, ep["id"], ep["url"])
    assert data["reason"].startswith("failing without a success for")
    assert data["failing_since"] < data["disabled_at"]
    # the deliveries left behind die ("endpoint disabled") and are summarised; still one disabled
    dead = poll(lambda: ops_events(receiver, "delivery.dead"), 20, what="the dead deliveries' summary")
    assert sum(d["data"]["count"] for d in dead) >= 1
    assert len(ops_events(receiver, "endpoint.disabled")) == 1
    # the operator tenant is not listed, but an operator reaches it by id, and cannot delete it
    listed = api.get("/v1/tenants", headers=admin).json()["data"]
    assert OPERATOR_TENANT not in {t["id"] for t in listed} and tenant.id in {t["id"] for t in listed}
    eps = api.get("/v1/endpoints", params={"tenant_id": OPERATOR_TENANT}, headers=admin).json()["data"]
    assert [(e["id"], e["url"]) for e in eps] == [(OPERATOR_ENDPOINT, receiver.url("ok/ops"))]
    assert api.delete(f"/v1/tenants/{OPERATOR_TENANT}", headers=admin).status_code == 409


def test_many_deaths_at_one_endpoint_make_a_few_summaries_whose_counts_add_up(
    api: httpx.Client,
    tenant: Tenant,
    receiver: Receiver,
    procs: Processes,
    rds: "redis.Redis",
    admin: dict[str, str],
) -> None:
    ep = api.post("/v1/endpoints", json={"url": receiver.url("fail/many")}, headers=tenant.auth).json()
    procs.worker(env=ops_env(receiver))
    events = [{"event_type": "a.b", "payload": {"i": i}} for i in range(60)]
    assert api.post("/v1/events/batch", json={"events": events}, headers=tenant.auth).status_code == 202

    def counted() -> int:
        return sum(d["data"]["count"] for d in ops_events(receiver, "delivery.dead"))

    poll(lambda: counted() >= 60, 40, what="summaries counting all 60 deaths")

    def stored_operator_events() -> int:
        page = api.get("/v1/events", params={"tenant_id": OPERATOR_TENANT, "limit": 1000}, headers=admin)
        return len(page.json()["data"])

    # Nothing else can come once no summary is open or waiting (the tenant's opsdead and outbox
    # are gone) and every event the operator tenant holds has been received.
    poll(
        lambda: (
            rds.exists(keys.ops_dead(tenant.id), keys.ops_outbox(tenant.id)) == 0
            and stored_operator_events() == len(ops_events(receiver))
        ),
        20,
        what="no summary left open or unsent",
    )
    summaries = ops_events(receiver, "delivery.dead")
    assert counted() == 60 and 1 <= len(summaries) <= 6, [s["data"]["count"] for s in summaries]
    for s in summaries:
        data = s["data"]
        assert (data["tenant_id"], data["endpoint_id"], data["last_status_code"]) == (
            tenant.id,
            ep["id"],
            500,
        )
        assert 1 <= len(data["sample_delivery_ids"]) <= 5 and data["first_dead_at"] <= data["last_dead_at"]


def test_an_endpoint_answering_again_after_its_breaker_opened_sends_endpoint_recovered(
    api: httpx.Client, tenant: Tenant, receiver: Receiver, procs: Processes
) -> None:
    receiver.down.add("back")
    ep = api.post("/v1/endpoints", json={"url": receiver.url("switch/back")}, headers=tenant.auth).json()
    procs.worker(
        env=ops_env(
            receiver,
            WEBHOOKS_BREAKER_FAILURES="3",
            WEBHOOKS_BREAKER_PAUSE_S="0.5",
            WEBHOOKS_BREAKER_MAX_PAUSE_S="1",
            WEBHOOKS_RETRY_SCHEDULE=",".join(["30"] * 8),
        )
    )
    events = [{"event_type": "a.b", "payload": {"i": i}} for i in range(10)]
    api.post("/v1/events/batch", json={"events": events}, headers=tenant.auth)
    poll(lambda: len(receiver.to("switch/back")) >= 4, 20, what="the breaker opened and probed")
    assert ops_events(receiver, "endpoint.recovered") == []
    receiver.down.clear()
    (recovered,) = poll(lambda: ops_events(receiver, "endpoint.recovered"), 30, what="endpoint.recovered")
    data = recovered["data"]
    assert (data["tenant_id"], data["endpoint_id"], data["url"]) == (tenant.id, ep["id"], ep["url"])
    assert data["failing_since"] <= data["recovered_at"]  # the same clock; may share a millisecond


def test_with_the_setting_unset_nothing_is_recorded_or_sent(
    api: httpx.Client, tenant: Tenant, receiver: Receiver, procs: Processes, rds: "redis.Redis"
) -> None:
    ep = api.post("/v1/endpoints", json={"url": receiver.url("fail/quiet")}, headers=tenant.auth).json()
    # five attempts over 1.2 s: the endpoint is disabled on the way (another notification not made)
    procs.worker(env={"WEBHOOKS_DISABLE_AFTER_S": "0.5", "WEBHOOKS_RETRY_SCHEDULE": "0.3,0.3,0.3,0.3"})
    events = [{"event_type": "a.b", "payload": {"i": i}} for i in range(20)]
    api.post("/v1/events/batch", json={"events": events}, headers=tenant.auth)
    poll(lambda: rds.zcard(keys.tenant_dead(tenant.id)) == 20, 30, what="every delivery dead")
    assert rds.hget(keys.endpoint(tenant.id, ep["id"]), "disabled") == "1"
    assert rds.exists(keys.ops_outbox(tenant.id), keys.ops_dead(tenant.id), keys.OPS_DUE) == 0
    assert not rds.exists(keys.tenant(OPERATOR_TENANT)) and receiver.to("ok/ops") == []


def test_pausing_and_resuming_an_endpoint_send_endpoint_paused_and_endpoint_resumed(
    make_api: Any, tenant: Tenant, receiver: Receiver, procs: Processes
) -> None:
    api = make_api(operational_events=True)  # an API told operational webhooks are on
    ep = api.post("/v1/endpoints", json={"url": receiver.url("ok/p")}, headers=tenant.auth).json()
    procs.worker(env=ops_env(receiver))
    assert (
        api.patch(f"/v1/endpoints/{ep['id']}", json={"paused": True}, headers=tenant.auth).status_code == 200
    )
    (paused,) = poll(lambda: ops_events(receiver, "endpoint.paused"), 20, what="endpoint.paused")
    assert (paused["data"]["endpoint_id"], paused["data"]["url"]) == (ep["id"], ep["url"])
    # setting what is already set records nothing
    assert (
        api.patch(f"/v1/endpoints/{ep['id']}", json={"paused": True}, headers=tenant.auth).status_code == 200
    )
    assert (
        api.patch(f"/v1/endpoints/{ep['id']}", json={"paused": False}, headers=tenant.auth).status_code == 200
    )
    (resumed,) = poll(lambda: ops_events(receiver, "endpoint.resumed"), 20, what="endpoint.resumed")
    assert resumed["data"]["tenant_id"] == tenant.id
    assert resumed["data"]["resumed_at"] >= paused["data"]["paused_at"]
    assert len(ops_events(receiver, "endpoint.paused")) == 1
