"""Events: routing to endpoints, idempotency by id and by key, all-or-nothing batches, size limits."""

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import redis

from tests.api.helpers import assert_error, delivery_ids, post_event, ready_ids
from webhooks.queueing.history import StoredEvent

URL = "http://127.0.0.1:9/hook"


def stored_events(rds: "redis.Redis") -> list[str]:
    return sorted(rds.keys("wh:{t:*}:e:*"))


@pytest.fixture
def routed(make_endpoint: Callable[..., dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Four endpoints: invoices only, everything, users only, and a disabled catch-all."""
    return {
        "invoices": make_endpoint(URL + "/invoices", event_types=["invoice.paid", "invoice.failed"]),
        "all": make_endpoint(URL + "/all"),
        "users": make_endpoint(URL + "/users", event_types=["user.created"]),
        "disabled": make_endpoint(URL + "/disabled", disabled=True),
    }


def test_event_is_accepted_with_deliveries_for_matching_enabled_endpoints_only(
    api: httpx.Client, tenant: Any, routed: dict[str, dict[str, Any]], rds: "redis.Redis"
) -> None:
    resp = api.post(
        "/v1/events", json={"event_type": "invoice.paid", "payload": {"amount": 42}}, headers=tenant.auth
    )

    assert resp.status_code == 202, resp.text
    event = resp.json()
    assert {"id", "event_type", "created_at", "deliveries"} <= set(event)
    assert event["id"].startswith("evt_") and event["tenant_id"] == tenant.id
    assert event["event_type"] == "invoice.paid" and event["payload"] == {"amount": 42}
    assert event["created_at"].endswith("Z")
    targets = sorted(d["endpoint_id"] for d in event["deliveries"])
    assert targets == sorted([routed["invoices"]["id"], routed["all"]["id"]])
    assert all(d["status"] == "pending" and d["id"].startswith("dlv_") for d in event["deliveries"])
    # In Redis before the answer: on the ready list, one entry per delivery.
    assert sorted(ready_ids(rds)) == sorted(delivery_ids([event]))


def test_event_types_filter_routes_each_type(
    api: httpx.Client, tenant: Any, routed: dict[str, dict[str, Any]]
) -> None:
    def targets(event_type: str) -> set[str]:
        return {d["endpoint_id"] for d in post_event(api, tenant.auth, event_type)["deliveries"]}

    ids = {name: ep["id"] for name, ep in routed.items()}
    assert targets("user.created") == {ids["users"], ids["all"]}
    assert targets("invoice.failed") == {ids["invoices"], ids["all"]}
    assert targets("invoice") == {ids["all"]}  # exact types, not prefixes
    assert targets("invoice.paid.late") == {ids["all"]}


def test_event_without_matching_endpoints_is_accepted_with_no_deliveries(
    api: httpx.Client, tenant: Any, make_endpoint: Callable[..., dict[str, Any]], rds: "redis.Redis"
) -> None:
    make_endpoint(URL, event_types=["user.created"])

    event = post_event(api, tenant.auth, "invoice.paid")

    assert event["deliveries"] == []
    assert len(ready_ids(rds)) == 0
    assert api.get(f"/v1/events/{event['id']}", headers=tenant.auth).status_code == 200


def test_the_stored_body_is_the_wire_envelope(
    api: httpx.Client, tenant: Any, rds: "redis.Redis", make_endpoint: Callable[..., dict[str, Any]]
) -> None:
    make_endpoint(URL)
    event = post_event(api, tenant.auth, "invoice.paid", {"amount": 42, "nested": [1, None, "x"]})

    stored = StoredEvent(tenant.id, event["id"], rds.get(f"wh:{{t:{tenant.id}}}:e:{event['id']}") or "")

    assert json.loads(stored.body()) == {
        "type": "invoice.paid",
        "timestamp": event["created_at"],
        "data": {"amount": 42, "nested": [1, None, "x"]},
    }


@pytest.mark.parametrize(
    "payload", [None, 0, -1.5, "text", [1, "two", {"three": 3}], {"a": {"b": {"c": []}}}]
)
def test_any_json_payload_is_accepted_and_returned(api: httpx.Client, tenant: Any, payload: Any) -> None:
    resp = api.post("/v1/events", json={"event_type": "a.b", "payload": payload}, headers=tenant.auth)

    assert resp.status_code == 202, resp.text
    assert resp.json()["payload"] == payload
    assert api.get(f"/v1/events/{resp.json()['id']}", headers=tenant.auth).json()["payload"] == payload


def test_same_id_twice_is_the_same_event_and_delivers_nothing_new(
    api: httpx.Client, tenant: Any, routed: dict[str, dict[str, Any]], rds: "redis.Redis"
) -> None:
    first = post_event(api, tenant.auth, "invoice.paid", {"v": 1}, id="order-42.paid")
    ready = len(ready_ids(rds))
    assert ready == 2

    again = post_event(api, tenant.auth, "invoice.paid", {"v": 2}, id="order-42.paid")

    assert again["id"] == "order-42.paid"
    assert again["created_at"] == first["created_at"]
    assert again["payload"] == {"v": 1}  # the stored event, not the new body
    assert delivery_ids([again]) == delivery_ids([first])
    assert len(ready_ids(rds)) == ready
    assert len(stored_events(rds)) == 1


def test_same_idempotency_key_twice_is_the_same_event(
    api: httpx.Client, tenant: Any, routed: dict[str, dict[str, Any]], rds: "redis.Redis"
) -> None:
    body = {"event_type": "invoice.paid", "payload": {"v": 1}}
    key = {"Idempotency-Key": "req-7f3a"}
    first = api.post("/v1/events", json=body, headers={**tenant.auth, **key})
    ready = len(ready_ids(rds))

    again = api.post("/v1/events", json=body, headers={**tenant.auth, **key})
    other = api.post("/v1/events", json=body, headers={**tenant.auth, "Idempotency-Key": "req-other"})

    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    assert delivery_ids([again.json()]) == delivery_ids([first.json()])
    assert other.json()["id"] != first.json()["id"]
    assert len(ready_ids(rds)) == ready + 2  # only the other key delivered


def test_idempotency_keys_and_ids_are_per_tenant(
    api: httpx.Client, tenant: Any, make_tenant: Callable[..., Any], rds: "redis.Redis"
) -> None:
    other = make_tenant("other")
    key = {"Idempotency-Key": "shared-key"}
    body = {"event_type": "a.b", "payload": {"tenant": "one"}}
    mine = api.post("/v1/events", json={**body, "id": "same-id"}, headers={**tenant.auth, **key}).json()

    theirs = api.post(
        "/v1/events", json={**body, "payload": {"tenant": "two"}}, headers={**other.auth, **key}
    ).json()
    theirs_by_id = api.post(
        "/v1/events", json={**body, "payload": {"tenant": "two"}, "id": "same-id"}, headers=other.auth
    ).json()

    assert theirs["tenant_id"] == other.id and theirs["payload"] == {"tenant": "two"}
    assert theirs["id"] != mine["id"]
    assert theirs_by_id["tenant_id"] == other.id and theirs_by_id["payload"] == {"tenant": "two"}
    assert api.get("/v1/events/same-id", headers=tenant.auth).json()["payload"] == {"tenant": "one"}


@pytest.mark.parametrize(
    ("event_id", "needle"),
    [("", "id"), ("has space", "id"), ("slash/not", "id"), ("x" * 257, "id"), ("newline\n", "id")],
)
def test_event_id_syntax_is_checked(
    api: httpx.Client, tenant: Any, rds: "redis.Redis", event_id: str, needle: str
) -> None:
    resp = api.post(
        "/v1/events", json={"event_type": "a.b", "payload": 1, "id": event_id}, headers=tenant.auth
    )

    assert_error(resp, 422, needle)
    assert stored_events(rds) == []


def test_idempotency_key_syntax_is_checked(api: httpx.Client, tenant: Any, rds: "redis.Redis") -> None:
    resp = api.post(
        "/v1/events",
        json={"event_type": "a.b", "payload": 1},
        headers={**tenant.auth, "Idempotency-Key": "k" * 300},
    )

    assert_error(resp, 422, "idempotency")
    assert stored_events(rds) == []


@pytest.mark.parametrize("event_type", ["", "a..b", "a b", "invoice.*", "a.b\n"])
def test_event_type_syntax_is_checked(api: httpx.Client, tenant: Any, event_type: str) -> None:
    resp = api.post("/v1/events", json={"event_type": event_type, "payload": 1}, headers=tenant.auth)

    assert_error(resp, 422, "event_type")


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ('{"event_type": "a.b", "payload": 123456789012345678901234567890}', "payload"),  # beyond 64 bits
        # A lone surrogate is not Unicode: refused while parsing, naming where it is.
        ('{"event_type": "a.b", "payload": "\\ud800"}', "payload"),
        ('{"event_type": "a.b", "payload": {"\\udfff": 1}}', "payload"),
        # Deeper than the parser (and storage) allow: refused while parsing.
        ('{"event_type": "a.b", "payload": ' + "[" * 300 + "]" * 300 + "}", "body"),
    ],
    ids=["big-int", "surrogate", "surrogate-key", "deep"],
)
def test_payloads_that_cannot_be_stored_are_422_not_500(
    api: httpx.Client, tenant: Any, rds: "redis.Redis", raw: str, field: str
) -> None:
    resp = api.post("/v1/events", content=raw, headers={**tenant.auth, "content-type": "application/json"})

    assert_error(resp, 422, field)
    assert stored_events(rds) == []


def test_batch_is_accepted_with_deliveries_per_event(
    api: httpx.Client, tenant: Any, routed: dict[str, dict[str, Any]], rds: "redis.Redis"
) -> None:
    events = [
        {"event_type": "invoice.paid" if i % 2 else "user.created", "payload": {"i": i}} for i in range(6)
    ]

    resp = api.post("/v1/events/batch", json={"events": events}, headers=tenant.auth)

    assert resp.status_code == 202, resp.text
    out = resp.json()
    assert [e["payload"] for e in out] == [{"i": i} for i in range(6)]
    assert all(len(e["deliveries"]) == 2 for e in out)
    assert len({e["id"] for e in out}) == 6
    assert len(ready_ids(rds)) == 12
    for e in out:
        assert api.get(f"/v1/events/{e['id']}", headers=tenant.auth).status_code == 200


def test_batch_repeating_an_id_answers_the_first_event(
    api: httpx.Client, tenant: Any, routed: dict[str, dict[str, Any]], rds: "redis.Redis"
) -> None:
    events = [
        {"event_type": "invoice.paid", "payload": {"n": 1}, "id": "dup"},
        {"event_type": "invoice.paid", "payload": {"n": 2}, "id": "dup"},
    ]

    out = api.post("/v1/events/batch", json={"events": events}, headers=tenant.auth).json()

    assert out[0]["id"] == out[1]["id"] == "dup"
    assert out[1]["payload"] == {"n": 1}
    assert delivery_ids(out[:1]) == delivery_ids(out[1:])
    assert len(ready_ids(rds)) == 2


@pytest.mark.parametrize(
    ("bad", "needle"),
    [
        ({"event_type": "not valid!", "payload": 1}, "events.3.event_type"),
        ({"event_type": "a.b", "payload": 1, "id": "bad id"}, "events.3.id"),
        ({"event_type": "a.b"}, "events.3.payload"),
        ({"event_type": "a.b", "payload": 1, "extra": True}, "events.3.extra"),
        ({"event_type": "a.b", "payload": 2**70}, "events.3.payload"),
    ],
)
def test_batch_with_one_invalid_event_stores_nothing(
    api: httpx.Client,
    tenant: Any,
    routed: dict[str, dict[str, Any]],
    rds: "redis.Redis",
    bad: dict[str, Any],
    needle: str,
) -> None:
    post_event(api, tenant.auth, "invoice.paid")  # something already there
    ready, stored = len(ready_ids(rds)), stored_events(rds)
    events: list[dict[str, Any]] = [
        {"event_type": "invoice.paid", "payload": {"i": i}, "id": f"batch-{i}"} for i in range(5)
    ]
    events[3] = bad

    resp = api.post("/v1/events/batch", json={"events": events}, headers=tenant.auth)

    assert_error(resp, 422, needle)
    assert len(ready_ids(rds)) == ready
    assert stored_events(rds) == stored
    for i in (0, 1, 2, 4):
        assert_error(api.get(f"/v1/events/batch-{i}", headers=tenant.auth), 404)


def test_batch_of_1000_is_accepted(
    api: httpx.Client, tenant: Any, make_endpoint: Callable[..., dict[str, Any]], rds: "redis.Redis"
) -> None:
    make_endpoint(URL)
    events = [{"event_type": "a.b", "payload": i} for i in range(1000)]

    resp = api.post("/v1/events/batch", json={"events": events}, headers=tenant.auth)

    assert resp.status_code == 202, resp.text[:300]
    assert len(resp.json()) == 1000
    assert len(ready_ids(rds)) == 1000


def test_batch_over_1000_is_refused_with_a_clear_error(
    api: httpx.Client, tenant: Any, make_endpoint: Callable[..., dict[str, Any]], rds: "redis.Redis"
) -> None:
    make_endpoint(URL)
    events = [{"event_type": "a.b", "payload": i} for i in range(1001)]

    resp = api.post("/v1/events/batch", json={"events": events}, headers=tenant.auth)

    assert_error(resp, 422, "events", "1000")
    assert len(ready_ids(rds)) == 0
    assert stored_events(rds) == []


@pytest.mark.parametrize("body", [{"events": []}, {"events": None}, {}, {"events": {"event_type": "a.b"}}])
def test_batch_shape_is_checked(api: httpx.Client, tenant: Any, body: dict[str, Any]) -> None:
    assert_error(api.post("/v1/events/batch", json=body, headers=tenant.auth), 422, "events")


@pytest.fixture
def small_api(
    make_api: Callable[..., httpx.Client], admin: dict[str, str]
) -> tuple[httpx.Client, dict[str, str]]:
    """An API whose events may be at most 1000 bytes, a tenant on it and one endpoint."""
    client = make_api(max_payload_bytes=1000)
    created = client.post("/v1/tenants", json={"name": "small"}, headers=admin)
    auth = {"Authorization": f"Bearer {created.json()['api_key']}"}
    assert client.post("/v1/endpoints", json={"url": URL}, headers=auth).status_code == 201
    return client, auth


def test_payload_over_max_payload_bytes_is_413(
    small_api: tuple[httpx.Client, dict[str, str]], rds: "redis.Redis"
) -> None:
    client, auth = small_api

    small = client.post("/v1/events", json={"event_type": "a.b", "payload": "x" * 500}, headers=auth)
    big = client.post("/v1/events", json={"event_type": "a.b", "payload": "x" * 2000}, headers=auth)

    assert small.status_code == 202
    body = assert_error(big, 413, "1000")
    assert body["error"] == "payload_too_large"
    assert len(ready_ids(rds)) == 1
    assert len(stored_events(rds)) == 1


def test_batch_with_one_payload_over_the_limit_is_413_and_stores_nothing(
    small_api: tuple[httpx.Client, dict[str, str]], rds: "redis.Redis"
) -> None:
    client, auth = small_api
    events = [{"event_type": "a.b", "payload": "x" * 10} for _ in range(3)]
    events.append({"event_type": "a.b", "payload": "x" * 2000})

    resp = client.post("/v1/events/batch", json={"events": events}, headers=auth)

    assert_error(resp, 413, "events.3")
    assert len(ready_ids(rds)) == 0 and stored_events(rds) == []


def test_request_body_far_over_the_limit_is_413_before_it_is_read(
    small_api: tuple[httpx.Client, dict[str, str]], rds: "redis.Redis"
) -> None:
    client, auth = small_api
    huge = json.dumps({"event_type": "a.b", "payload": "x" * 200_000})

    resp = client.post("/v1/events", content=huge, headers={**auth, "content-type": "application/json"})

    assert_error(resp, 413)
    assert stored_events(rds) == []


def _chunks(data: bytes, size: int = 8192) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.mark.parametrize("payload_size", [2000, 200_000], ids=["over-event-limit", "over-body-limit"])
def test_payload_over_the_limit_sent_chunked_is_413(
    small_api: tuple[httpx.Client, dict[str, str]], rds: "redis.Redis", payload_size: int
) -> None:
    client, auth = small_api
    raw = json.dumps({"event_type": "a.b", "payload": "x" * payload_size}).encode()
    request = client.build_request(
        "POST", "/v1/events", content=_chunks(raw), headers={**auth, "content-type": "application/json"}
    )
    assert "content-length" not in request.headers
    assert request.headers["transfer-encoding"] == "chunked"

    resp = client.send(request)

    assert_error(resp, 413)
    assert stored_events(rds) == []


def test_small_payload_sent_chunked_is_accepted(small_api: tuple[httpx.Client, dict[str, str]]) -> None:
    client, auth = small_api
    raw = json.dumps({"event_type": "a.b", "payload": "x" * 100}).encode()

    resp = client.post(
        "/v1/events", content=_chunks(raw, 16), headers={**auth, "content-type": "application/json"}
    )

    assert resp.status_code == 202, resp.text


def test_get_event_shows_one_delivery_summary_per_endpoint(
    api: httpx.Client, tenant: Any, routed: dict[str, dict[str, Any]], settle: Callable[..., int]
) -> None:
    event = post_event(api, tenant.auth, "invoice.paid", {"amount": 7})
    by_endpoint = {d["endpoint_id"]: d["id"] for d in event["deliveries"]}
    settle({by_endpoint[routed["invoices"]["id"]]: "succeeded", by_endpoint[routed["all"]["id"]]: "retrying"})

    resp = api.get(f"/v1/events/{event['id']}", headers=tenant.auth)

    assert resp.status_code == 200
    got = resp.json()
    assert {k: got[k] for k in ("id", "event_type", "created_at", "payload")} == {
        k: event[k] for k in ("id", "event_type", "created_at", "payload")
    }
    summaries = {d["endpoint_id"]: d for d in got["deliveries"]}
    assert len(got["deliveries"]) == len(summaries) == 2
    assert summaries[routed["invoices"]["id"]]["status"] == "succeeded"
    assert summaries[routed["all"]["id"]]["status"] == "retrying"
    assert {d["id"] for d in got["deliveries"]} == set(by_endpoint.values())


def test_get_unknown_event_is_404(api: httpx.Client, tenant: Any) -> None:
    assert_error(api.get("/v1/events/evt_nothere", headers=tenant.auth), 404)
