"""Client methods of the contract's routes that other branches are building right now.

Each test first checks that the running API documents its routes (``require_route`` reads
the OpenAPI document) and skips with "route not built yet" until they land; from then on
it runs like any other.
"""

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from hookyard_client import ApiError, Client, EventInput
from tests.conftest import Processes
from tests.support.poll import poll
from tests.support.receiver import Receiver

Require = Callable[[str, str], None]


def dead_letters(client: Client, receiver: Receiver, procs: Processes, n: int) -> tuple[str, list[str]]:
    """An endpoint with ``n`` dead deliveries (a worker runs the fast retry schedule to its end)."""
    ep = client.endpoints.create(receiver.url("fail/x"))
    procs.worker()
    ids = [client.events.send("invoice.paid", {"i": i}).deliveries[0].id for i in range(n)]
    poll(lambda: len(list(client.dead_letters.list())) == n, what=f"{n} dead letters")
    client.endpoints.update(ep.id, url=receiver.url("ok/x"))
    return ep.id, ids


def test_events_list_pages_and_filters(client: Client, require_route: Require) -> None:
    require_route("GET", "/v1/events")
    sent = [client.events.send("a.b" if i % 2 else "c.d", {"i": i}).id for i in range(5)]
    listed = [e.id for e in client.events.list(page_size=2)]
    assert sorted(listed) == sorted(sent) and len(listed) == 5
    assert listed == sorted(listed, reverse=True) or listed == sent[::-1], "newest first"
    assert {e.event_type for e in client.events.list(event_type="a.b")} == {"a.b"}
    assert len(list(client.events.list(event_type="a.b"))) == 2
    assert list(client.events.list(since=datetime.now(UTC) + timedelta(hours=1))) == []


def test_event_types_catalogue_and_schema_checked_at_ingest(client: Client, require_route: Require) -> None:
    for method, path in [
        ("POST", "/v1/event-types"),
        ("GET", "/v1/event-types"),
        ("GET", "/v1/event-types/{name}"),
        ("PATCH", "/v1/event-types/{name}"),
        ("DELETE", "/v1/event-types/{name}"),
    ]:
        require_route(method, path)
    schema = {
        "type": "object",
        "properties": {"amount": {"type": "integer"}},
        "required": ["amount"],
    }
    created = client.event_types.create("invoice.paid", description="an invoice was paid", schema=schema)
    assert created.name == "invoice.paid" and created.json_schema == schema and not created.archived
    assert client.event_types.get("invoice.paid").description == "an invoice was paid"
    assert [t.name for t in client.event_types.list()] == ["invoice.paid"]

    assert client.events.send("invoice.paid", {"amount": 5}).payload == {"amount": 5}
    with pytest.raises(ApiError) as refused:
        client.events.send("invoice.paid", {"amount": "five"})
    assert refused.value.status == 422 and "amount" in refused.value.message
    with pytest.raises(ApiError) as batch:
        client.events.send_batch([EventInput("invoice.paid", {"amount": 1}), EventInput("invoice.paid", {})])
    assert batch.value.status == 422

    changed = client.event_types.update("invoice.paid", description="paid", archived=True)
    assert changed.description == "paid" and changed.archived
    client.event_types.delete("invoice.paid")
    with pytest.raises(ApiError) as gone:
        client.event_types.get("invoice.paid")
    assert gone.value.status == 404


def test_replays_progress_list_and_cancel(
    client: Client, receiver: Receiver, procs: Processes, require_route: Require
) -> None:
    require_route("GET", "/v1/replays")
    require_route("GET", "/v1/replays/{id}")
    require_route("DELETE", "/v1/replays/{id}")
    dead_letters(client, receiver, procs, 3)
    started = client.dead_letters.replay(rate_per_s=0.2)  # one every 5 s: still running below
    assert started.replay_id and started.matched == 3
    progress = client.replays.get(started.replay_id)
    assert progress.id == started.replay_id and progress.matched == 3
    assert progress.done + progress.remaining == 3
    assert started.replay_id in [r.id for r in client.replays.list()]
    client.replays.cancel(started.replay_id)
    cancelled = client.replays.get(started.replay_id)
    assert cancelled.state in ("cancelled", "canceled") and cancelled.state != progress.state


def test_endpoint_recover_resends_what_died_in_the_window(
    client: Client, receiver: Receiver, procs: Processes, require_route: Require
) -> None:
    require_route("POST", "/v1/endpoints/{id}/recover")
    since = datetime.now(UTC) - timedelta(minutes=1)
    endpoint_id, (delivery_id,) = dead_letters(client, receiver, procs, 1)
    recovered = client.endpoints.recover(endpoint_id, since=since)
    assert recovered.matched == 1 and recovered.replay_id
    poll(lambda: client.deliveries.get(delivery_id).status == "succeeded", what="the recovered delivery")


def test_portal_link(admin_client: Client, require_route: Require) -> None:
    require_route("POST", "/v1/tenants/{id}/portal-links")
    tenant = admin_client.tenants.create("acme")
    link = admin_client.tenants.create_portal_link(tenant.id, expires_in_s=600)
    assert link.url.startswith(("http://", "https://", "/")) and link.expires_at
