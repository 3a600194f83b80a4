"""Every resource that exists today, through the blocking client, against the real API."""

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from hookyard_client import UNSET, ApiError, Client, DeliveryStatus, EventInput
from tests.client.conftest import Recorder
from tests.conftest import ADMIN_TOKEN, Processes
from tests.support.api_server import ApiServer
from tests.support.poll import poll
from tests.support.receiver import Receiver


def test_tenants_and_api_keys(admin_client: Client, api_server: ApiServer) -> None:
    created = admin_client.tenants.create("acme")
    assert created.name == "acme" and created.id.startswith("ten_") and created.api_key.startswith("whk_")
    assert admin_client.tenants.get(created.id).name == "acme"
    assert [t.id for t in admin_client.tenants.list()] == [created.id]

    extra = admin_client.tenants.create_api_key(created.id)
    keys = admin_client.tenants.list_api_keys(created.id)
    assert {k.id for k in keys} >= {extra.id} and len(keys) == 2
    with Client(api_server.url, extra.api_key) as own:
        assert own.tenants.get(created.id).id == created.id, "a tenant key reads its own tenant"
        admin_client.tenants.revoke_api_key(created.id, extra.id)
        with pytest.raises(ApiError) as revoked:
            own.tenants.get(created.id)
        assert (revoked.value.status, revoked.value.code) == (401, "unauthorized")
    assert extra.id not in {k.id for k in admin_client.tenants.list_api_keys(created.id)}

    admin_client.tenants.delete(created.id)
    with pytest.raises(ApiError) as gone:
        admin_client.tenants.get(created.id)
    assert (gone.value.status, gone.value.code) == (404, "not_found")


def test_endpoints_create_get_update_rotate_delete(client: Client, receiver: Receiver) -> None:
    ep = client.endpoints.create(
        receiver.url("ok/a"), description="billing", event_types=["invoice.paid"], headers={"X-Tag": "1"}
    )
    assert ep.secret.startswith("whsec_") and ep.event_types == ["invoice.paid"] and not ep.disabled
    assert client.endpoints.get(ep.id).headers == {"X-Tag": "1"}
    assert client.endpoints.get_secret(ep.id).secret == ep.secret

    changed = client.endpoints.update(ep.id, description="billing v2", event_types=None, disabled=True)
    assert changed.description == "billing v2" and changed.event_types is None and changed.disabled
    same = client.endpoints.update(ep.id, rate_limit_per_s=UNSET, disabled=False)
    assert same.description == "billing v2" and not same.disabled, "fields not given stay as they are"
    held = client.endpoints.update(ep.id, paused=True)
    assert held.paused and held.health is not None and held.health.state == "paused"
    assert not client.endpoints.update(ep.id, paused=False).paused

    rotated = client.endpoints.rotate_secret(ep.id, grace_period_s=60)
    assert rotated.secret.startswith("whsec_") and rotated.secret != ep.secret
    assert client.endpoints.get_secret(ep.id).secret == rotated.secret

    client.endpoints.delete(ep.id)
    with pytest.raises(ApiError) as gone:
        client.endpoints.get(ep.id)
    assert gone.value.status == 404 and gone.value.message == "no such endpoint"


def test_list_follows_the_cursor_over_several_pages(
    make_client: Callable[..., Client], recorder: Recorder, receiver: Receiver
) -> None:
    client = make_client(http=recorder.http)
    made = [client.endpoints.create(receiver.url(f"ok/{i}")).id for i in range(7)]
    recorder.sent.clear()
    listed = client.endpoints.list(page_size=3)
    assert recorder.sent == [], "pages are fetched as the iteration reaches them"
    assert [e.id for e in listed] == sorted(made, reverse=True), "every endpoint once, newest first"
    assert [p for _, _, p in recorder.sent] == ["/v1/endpoints"] * 3, "7 items at 3 a page are 3 pages"


def test_events_send_get_and_idempotency(client: Client, receiver: Receiver) -> None:
    ep = client.endpoints.create(receiver.url("ok/a"))
    ev = client.events.send("invoice.paid", {"amount": 42})
    assert ev.event_type == "invoice.paid" and ev.payload == {"amount": 42}
    assert [(d.endpoint_id, d.status) for d in ev.deliveries] == [(ep.id, DeliveryStatus.PENDING)]
    assert client.events.get(ev.id).payload == {"amount": 42}

    first = client.events.send("invoice.paid", {"n": 1}, idempotency_key="order-7")
    again = client.events.send("invoice.paid", {"n": 1}, idempotency_key="order-7")
    assert again.id == first.id, "the same key answers the stored event"
    by_id = client.events.send("invoice.paid", {"n": 2}, id="evt-custom-1")
    assert by_id.id == "evt-custom-1"
    assert client.events.send("invoice.paid", {"n": 2}, id="evt-custom-1").id == "evt-custom-1"
    other = client.events.send("invoice.paid", {"n": 1})
    assert other.id not in {ev.id, first.id}, "without a key of yours, each send is a new event"
    assert len(list(client.deliveries.list())) == 4, "one delivery per distinct event, none for repeats"


def test_send_batch_all_or_nothing_with_ids(client: Client, receiver: Receiver) -> None:
    client.endpoints.create(receiver.url("ok/a"))
    batch = [EventInput("a.b", {"i": i}) for i in range(3)] + [{"event_type": "a.c", "payload": None}]
    events = client.events.send_batch(batch)
    assert [e.event_type for e in events] == ["a.b", "a.b", "a.b", "a.c"]
    assert all(e.id.startswith("evt_") for e in events) and events[3].payload is None
    repeat = client.events.send_batch([EventInput("a.b", {"i": 0}, id=events[0].id)])
    assert repeat[0].id == events[0].id and repeat[0].payload == {"i": 0}
    with pytest.raises(ApiError) as bad:
        client.events.send_batch([EventInput("ok.type", {}), EventInput("not a type", {})])
    assert bad.value.status == 422 and bad.value.message.startswith("events.1.event_type")
    assert len(list(client.deliveries.list())) == 4, "the refused batch stored nothing"


def test_deliveries_list_filters_and_pages(client: Client, receiver: Receiver) -> None:
    a = client.endpoints.create(receiver.url("ok/a"))
    b = client.endpoints.create(receiver.url("ok/b"), event_types=["only.b"])
    events = [client.events.send("x.y", {"i": i}) for i in range(5)]
    client.events.send("only.b", {})
    everything = list(client.deliveries.list(page_size=2))
    assert len(everything) == 7
    assert {d.endpoint_id for d in client.deliveries.list(endpoint_id=b.id)} == {b.id}
    one = list(client.deliveries.list(event_id=events[2].id))
    assert [(d.event_id, d.endpoint_id) for d in one] == [(events[2].id, a.id)]
    assert len(list(client.deliveries.list(status="pending", page_size=3))) == 7
    assert list(client.deliveries.list(status=DeliveryStatus.DEAD)) == []
    detail = client.deliveries.get(one[0].id)
    assert detail.status == "pending" and detail.attempts == []


def test_delivered_dead_replayed_and_retried_with_a_worker(
    client: Client, receiver: Receiver, procs: Processes
) -> None:
    ep = client.endpoints.create(receiver.url("fail/x"))
    procs.worker()
    ev = client.events.send("invoice.paid", {"n": 1})
    delivery_id = ev.deliveries[0].id
    dead = poll(lambda: list(client.dead_letters.list()), what="the delivery to die")
    assert [d.id for d in dead] == [delivery_id] and dead[0].dead_at is not None
    assert [a.status_code for a in client.deliveries.get(delivery_id).attempts] == [500] * 4
    assert list(client.dead_letters.list(endpoint_id=ep.id, event_type="invoice.paid"))
    assert list(client.dead_letters.list(event_type="other.type")) == []
    later = datetime.now(UTC) + timedelta(hours=1)
    assert list(client.dead_letters.list(since=later)) == []
    assert [d.id for d in client.dead_letters.list(status_code=500)] == [delivery_id]
    assert list(client.dead_letters.list(status_code="4xx")) == []

    assert client.dead_letters.replay(dry_run=True, status_code="none").matched == 0
    assert client.dead_letters.replay(dry_run=True).matched == 1
    assert client.deliveries.get(delivery_id).status == "dead", "a dry run changes nothing"
    client.endpoints.update(ep.id, url=receiver.url("ok/x"))
    replay = client.dead_letters.replay(endpoint_id=ep.id)
    assert replay.matched == 1 and replay.replay_id and not replay.dry_run
    poll(lambda: client.deliveries.get(delivery_id).status == "succeeded", what="the replayed delivery")
    assert list(client.dead_letters.list()) == []

    retried = client.deliveries.retry(delivery_id)
    assert retried.id == delivery_id
    done = poll(
        lambda: (
            (d := client.deliveries.get(delivery_id)).status == "succeeded" and len(d.attempts) == 6 and d
        ),
        what="the retried attempt",
    )
    assert [a.status_code for a in done.attempts] == [500, 500, 500, 500, 200, 200]
    assert len(receiver.to("ok/x")) == 2


def test_api_error_carries_status_code_message_and_details(
    client: Client, admin_client: Client, api_server: ApiServer
) -> None:
    with pytest.raises(ApiError) as missing:
        client.deliveries.get("dlv_00000000000000000000000000")
    e = missing.value
    assert (e.status, e.code, e.message) == (404, "not_found", "no such delivery")
    assert str(e) == "404 not_found: no such delivery"

    with pytest.raises(ApiError) as invalid:
        client.dead_letters.replay(rate_per_s=0)
    assert (invalid.value.status, invalid.value.code) == (422, "invalid")
    assert "rate_per_s" in invalid.value.message
    assert [d["field"] for d in invalid.value.details] == ["rate_per_s"]

    with pytest.raises(ApiError) as not_admin:
        list(client.tenants.list())
    assert (not_admin.value.status, not_admin.value.code) == (403, "forbidden")

    with Client(api_server.url, "whk_not-a-key") as stranger, pytest.raises(ApiError) as unknown:
        stranger.events.send("a.b", {})
    assert (unknown.value.status, unknown.value.code) == (401, "unauthorized")

    with pytest.raises(ApiError) as needs_tenant:
        admin_client.endpoints.create("http://127.0.0.1:9/x")
    assert needs_tenant.value.status == 422 and "tenant_id" in needs_tenant.value.message


def test_admin_client_acts_for_a_tenant(
    admin_client: Client, api_server: ApiServer, receiver: Receiver, make_client: Callable[..., Client]
) -> None:
    other = make_client("other")
    other.endpoints.create(receiver.url("ok/other"))
    tenant = admin_client.tenants.create("acme")
    with Client(api_server.url, ADMIN_TOKEN, tenant_id=tenant.id) as acting:
        ep = acting.endpoints.create(receiver.url("ok/a"))
        assert ep.tenant_id == tenant.id
        assert [e.id for e in acting.endpoints.list()] == [ep.id], "only that tenant's endpoints"
        assert acting.events.send("a.b", {}).tenant_id == tenant.id
        assert acting.tenants.get(tenant.id).name == "acme", "tenant routes take no tenant_id"
