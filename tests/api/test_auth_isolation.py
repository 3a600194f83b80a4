"""Authentication on every route of the OpenAPI document, and isolation between tenants.

Another tenant's object answers 404 exactly like a missing one (never 403, never the object);
the admin token acts for a tenant named by ``tenant_id``.
"""

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import redis

from tests.api.helpers import assert_error, delivery_ids, post_event, ready_ids

PUBLIC = {"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"}
URL = "http://127.0.0.1:9/hook"


def operations(api: httpx.Client) -> Iterator[tuple[str, str, dict[str, Any]]]:
    doc = api.get("/openapi.json").json()
    for path, item in doc["paths"].items():
        for method, op in item.items():
            yield method.upper(), path, op


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x", path)


def body_for(op: dict[str, Any]) -> dict[str, Any] | None:
    return {} if "requestBody" in op else None


def test_the_document_lists_the_contract_routes(api: httpx.Client) -> None:
    found = {(m, p) for m, p, _ in operations(api)}

    for route in [
        ("POST", "/v1/tenants"),
        ("GET", "/v1/tenants"),
        ("GET", "/v1/tenants/{tenant_id}"),
        ("DELETE", "/v1/tenants/{tenant_id}"),
        ("POST", "/v1/endpoints"),
        ("GET", "/v1/endpoints"),
        ("GET", "/v1/endpoints/{endpoint_id}"),
        ("PATCH", "/v1/endpoints/{endpoint_id}"),
        ("DELETE", "/v1/endpoints/{endpoint_id}"),
        ("POST", "/v1/endpoints/{endpoint_id}/secret/rotate"),
        ("POST", "/v1/events"),
        ("POST", "/v1/events/batch"),
        ("GET", "/v1/events/{event_id}"),
        ("GET", "/v1/deliveries"),
        ("GET", "/v1/deliveries/{delivery_id}"),
        ("POST", "/v1/deliveries/{delivery_id}/retry"),
        ("GET", "/v1/dead-letters"),
        ("POST", "/v1/dead-letters/replay"),
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),
    ]:
        assert route in found, route


def test_every_route_needs_credentials(api: httpx.Client) -> None:
    checked = 0
    for method, path, op in operations(api):
        if path in PUBLIC:
            continue
        resp = api.request(method, concrete(path), json=body_for(op))
        assert resp.status_code == 401, f"{method} {path}: {resp.status_code} {resp.text}"
        assert resp.json()["error"] == "unauthorized" and resp.json()["message"]
        assert resp.headers["www-authenticate"] == "Bearer"
        checked += 1
    assert checked >= 20


@pytest.mark.parametrize(
    "token", ["wrong", "whk_" + "A" * 43, "test-admin-token-0123456789abcde", "whk_"], ids=str
)
def test_every_route_refuses_a_wrong_token(api: httpx.Client, tenant: Any, token: str) -> None:
    for method, path, op in operations(api):
        if path in PUBLIC:
            continue
        resp = api.request(
            method, concrete(path), json=body_for(op), headers={"Authorization": f"Bearer {token}"}
        )
        assert resp.status_code == 401, f"{method} {path}: {resp.status_code} {resp.text}"


@pytest.mark.parametrize("path", sorted(PUBLIC))
def test_public_routes_answer_without_credentials(api: httpx.Client, path: str) -> None:
    resp = api.get(path)

    assert resp.status_code == 200, resp.text
    if path == "/metrics":
        assert "webhooks_http_requests_total" in resp.text
    if path == "/readyz":
        assert resp.json()["status"] == "ready"


@dataclass
class Owned:
    """Tenant A's objects: an endpoint, an event, its delivery (dead), and tenant B."""

    a: Any
    b: Any
    endpoint: dict[str, Any]
    event: dict[str, Any]
    delivery: str


@pytest.fixture
def owned(api: httpx.Client, make_tenant: Callable[..., Any], settle: Callable[..., int]) -> Owned:
    a, b = make_tenant("tenant-a"), make_tenant("tenant-b")
    created = api.post(
        "/v1/endpoints", json={"url": URL + "/a-private-path", "description": "A's hook"}, headers=a.auth
    )
    endpoint = created.json()
    event = post_event(api, a.auth, "invoice.paid", {"card": "a-secret-payload"}, id="a-event-1")
    (delivery,) = delivery_ids([event])
    assert settle({delivery: "dead"}) == 1
    api.post("/v1/endpoints", json={"url": URL + "/b"}, headers=b.auth)
    return Owned(a, b, endpoint, event, delivery)


def test_another_tenants_objects_answer_404_never_the_object(
    api: httpx.Client, owned: Owned, rds: "redis.Redis"
) -> None:
    ep, ev, dl = owned.endpoint["id"], owned.event["id"], owned.delivery
    attempts = [
        ("GET", f"/v1/endpoints/{ep}", None),
        ("PATCH", f"/v1/endpoints/{ep}", {"url": URL + "/hijack"}),
        ("PATCH", f"/v1/endpoints/{ep}", {"disabled": True}),
        ("DELETE", f"/v1/endpoints/{ep}", None),
        ("GET", f"/v1/endpoints/{ep}/secret", None),
        ("POST", f"/v1/endpoints/{ep}/secret/rotate", {}),
        ("GET", f"/v1/events/{ev}", None),
        ("GET", f"/v1/deliveries/{dl}", None),
        ("POST", f"/v1/deliveries/{dl}/retry", None),
        ("GET", f"/v1/deliveries?endpoint_id={ep}", None),
        ("POST", "/v1/dead-letters/replay", {"ids": [dl]}),
        ("POST", "/v1/dead-letters/replay", {"ids": [dl], "dry_run": True}),
        ("GET", f"/v1/tenants/{owned.a.id}", None),
        ("GET", f"/v1/tenants/{owned.a.id}/api-keys", None),
        ("GET", f"/v1/endpoints?tenant_id={owned.a.id}", None),
        ("POST", f"/v1/events?tenant_id={owned.a.id}", {"event_type": "x.y", "payload": 1}),
    ]
    secret = owned.endpoint["secret"]
    for method, path, body in attempts:
        resp = api.request(method, path, json=body, headers=owned.b.auth)
        assert resp.status_code == 404, f"{method} {path}: {resp.status_code} {resp.text}"
        assert resp.json()["error"] == "not_found"
        for leak in ("a-private-path", "A's hook", "a-secret-payload", secret, owned.a.id, "tenant-a"):
            assert leak not in resp.text, f"{method} {path} leaks {leak!r}"

    # A's objects are untouched (health is the engine's live view: A's own delivery failed meanwhile).
    assert {
        k: v for k, v in api.get(f"/v1/endpoints/{ep}", headers=owned.a.auth).json().items() if k != "health"
    } == {k: v for k, v in owned.endpoint.items() if k not in ("secret", "health")}
    assert api.get(f"/v1/endpoints/{ep}/secret", headers=owned.a.auth).json()["secret"] == secret
    assert api.get(f"/v1/deliveries/{dl}", headers=owned.a.auth).json()["status"] == "dead"
    assert len(ready_ids(rds)) == 0


def test_404_for_another_tenants_object_is_the_same_as_for_a_missing_one(
    api: httpx.Client, owned: Owned
) -> None:
    pairs = [
        (f"/v1/endpoints/{owned.endpoint['id']}", "/v1/endpoints/ep_01m8000000000000000000000a"),
        (f"/v1/events/{owned.event['id']}", "/v1/events/evt_missing"),
        (f"/v1/deliveries/{owned.delivery}", "/v1/deliveries/dlv_01m8000000000000000000000a"),
    ]
    for foreign, missing in pairs:
        assert api.get(foreign, headers=owned.b.auth).json() == api.get(missing, headers=owned.b.auth).json()


def test_lists_show_only_the_callers_objects(api: httpx.Client, owned: Owned) -> None:
    b = owned.b.auth

    endpoints = api.get("/v1/endpoints", headers=b).json()["data"]
    deliveries = api.get("/v1/deliveries", headers=b).json()["data"]
    dead = api.get("/v1/dead-letters", headers=b).json()["data"]
    replay = api.post("/v1/dead-letters/replay", json={}, headers=b).json()

    assert [e["tenant_id"] for e in endpoints] == [owned.b.id]
    assert deliveries == []
    assert dead == []
    assert replay["matched"] == 0
    assert api.get(f"/v1/deliveries/{owned.delivery}", headers=owned.a.auth).json()["status"] == "dead"


# Every list (and replay) route with an id filter: method, path, query, body; "EP" and "EV" stand
# for the endpoint and the event the filter names.
FILTERS: list[tuple[str, str, dict[str, Any] | None, dict[str, Any] | None]] = [
    ("GET", "/v1/deliveries", {"endpoint_id": "EP"}, None),
    ("GET", "/v1/deliveries", {"event_id": "EV"}, None),
    ("GET", "/v1/deliveries", {"event_id": "EV", "status": "dead"}, None),
    ("GET", "/v1/dead-letters", {"endpoint_id": "EP"}, None),
    ("GET", "/v1/dead-letters", {"endpoint_id": "EP", "event_type": "invoice.paid"}, None),
    ("POST", "/v1/dead-letters/replay", None, {"endpoint_id": "EP"}),
    ("POST", "/v1/dead-letters/replay", None, {"endpoint_id": "EP", "dry_run": True}),
    ("POST", "/v1/endpoints/EP/recover", None, {"since": "2026-01-01T00:00:00Z"}),
]
MISSING = {"EP": "ep_01m8000000000000000000000a", "EV": "evt_missing"}


@pytest.mark.parametrize("foreign", [True, False], ids=["another tenant's", "missing"])
@pytest.mark.parametrize(
    ("method", "path", "query", "body"), FILTERS, ids=[f"{m} {p} {q or b}" for m, p, q, b in FILTERS]
)
def test_a_filter_naming_another_tenants_or_no_object_answers_404(
    api: httpx.Client,
    owned: Owned,
    rds: "redis.Redis",
    foreign: bool,
    method: str,
    path: str,
    query: dict[str, Any] | None,
    body: dict[str, Any] | None,
) -> None:
    named = {"EP": owned.endpoint["id"], "EV": owned.event["id"]} if foreign else MISSING

    def fill(values: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if values is None else {k: named.get(str(v), v) for k, v in values.items()}

    before = ready_ids(rds)

    resp = api.request(
        method, path.replace("EP", named["EP"]), params=fill(query), json=fill(body), headers=owned.b.auth
    )

    assert_error(resp, 404, "no such")
    assert resp.json()["error"] == "not_found"
    assert owned.a.id not in resp.text and "a-private-path" not in resp.text
    assert ready_ids(rds) == before, "nothing was replayed"


@pytest.mark.parametrize(
    "path",
    ["/v1/endpoints", "/v1/events", "/v1/deliveries", "/v1/dead-letters", "/v1/replays", "/v1/event-types"],
)
def test_a_list_naming_another_tenant_by_tenant_id_answers_404(
    api: httpx.Client, owned: Owned, path: str
) -> None:
    resp = api.get(path, params={"tenant_id": owned.a.id}, headers=owned.b.auth)

    assert_error(resp, 404)
    assert owned.a.id not in resp.text


def test_filters_naming_the_callers_own_objects_answer_200(api: httpx.Client, owned: Owned) -> None:
    a, ep, ev = owned.a.auth, owned.endpoint["id"], owned.event["id"]

    by_event = api.get("/v1/deliveries", params={"event_id": ev}, headers=a)
    by_endpoint = api.get("/v1/deliveries", params={"endpoint_id": ep}, headers=a)
    dead = api.get("/v1/dead-letters", params={"endpoint_id": ep}, headers=a)
    counted = api.post("/v1/dead-letters/replay", json={"endpoint_id": ep, "dry_run": True}, headers=a)

    assert [d["id"] for d in by_event.json()["data"]] == [owned.delivery]
    assert [d["id"] for d in by_endpoint.json()["data"]] == [owned.delivery]
    assert [d["id"] for d in dead.json()["data"]] == [owned.delivery]
    assert counted.status_code == 202 and counted.json()["matched"] == 1
    # An own endpoint with nothing dead is an empty page, not a 404.
    other = api.post("/v1/endpoints", json={"url": URL + "/a2"}, headers=a).json()["id"]
    empty = api.get("/v1/dead-letters", params={"endpoint_id": other}, headers=a)
    assert empty.status_code == 200 and empty.json() == {"data": [], "next_cursor": None}


def test_a_deleted_endpoints_dead_letters_stay_listable_by_its_id(api: httpx.Client, owned: Owned) -> None:
    a, ep = owned.a.auth, owned.endpoint["id"]
    assert api.delete(f"/v1/endpoints/{ep}", headers=a).status_code == 204

    dead = api.get("/v1/dead-letters", params={"endpoint_id": ep}, headers=a)

    assert dead.status_code == 200 and [d["id"] for d in dead.json()["data"]] == [owned.delivery]
    assert_error(api.get("/v1/dead-letters", params={"endpoint_id": ep}, headers=owned.b.auth), 404)


def test_the_admin_filtering_every_tenants_dead_letters_by_a_missing_endpoint_is_404(
    api: httpx.Client, owned: Owned, admin: dict[str, str]
) -> None:
    mine = api.get("/v1/dead-letters", params={"endpoint_id": owned.endpoint["id"]}, headers=admin)
    none = api.get("/v1/dead-letters", params={"endpoint_id": "ep_01m8000000000000000000000a"}, headers=admin)

    assert [d["id"] for d in mine.json()["data"]] == [owned.delivery]
    assert_error(none, 404, "endpoint_id")


def test_same_event_id_in_another_tenant_is_another_event(api: httpx.Client, owned: Owned) -> None:
    theirs = post_event(api, owned.b.auth, "invoice.paid", {"mine": True}, id=owned.event["id"])

    assert theirs["tenant_id"] == owned.b.id and theirs["payload"] == {"mine": True}
    assert set(delivery_ids([theirs])).isdisjoint(delivery_ids([owned.event]))
    assert api.get(f"/v1/events/{owned.event['id']}", headers=owned.a.auth).json()["payload"] == {
        "card": "a-secret-payload"
    }


def test_admin_acts_for_a_tenant_named_by_tenant_id(
    api: httpx.Client, admin: dict[str, str], owned: Owned, rds: "redis.Redis"
) -> None:
    a = {"tenant_id": owned.a.id}
    ep, ev, dl = owned.endpoint["id"], owned.event["id"], owned.delivery

    assert api.get("/v1/endpoints", params=a, headers=admin).json()["data"][0]["id"] == ep
    assert api.get(f"/v1/endpoints/{ep}", params=a, headers=admin).json()["url"] == owned.endpoint["url"]
    by_query = api.post("/v1/endpoints", params=a, json={"url": URL + "/admin-q"}, headers=admin)
    by_body = api.post("/v1/endpoints", json={"url": URL + "/admin-b", **a}, headers=admin)
    assert by_query.status_code == by_body.status_code == 201
    assert by_query.json()["tenant_id"] == by_body.json()["tenant_id"] == owned.a.id
    assert api.get(f"/v1/events/{ev}", params=a, headers=admin).json()["id"] == ev
    event = api.post("/v1/events", params=a, json={"event_type": "x.y", "payload": 1}, headers=admin)
    assert event.status_code == 202 and event.json()["tenant_id"] == owned.a.id
    assert len(event.json()["deliveries"]) == 3  # A's three endpoints
    assert api.get(f"/v1/deliveries/{dl}", params=a, headers=admin).json()["status"] == "dead"
    assert {d["id"] for d in api.get("/v1/deliveries", params=a, headers=admin).json()["data"]} >= {dl}
    assert [d["id"] for d in api.get("/v1/dead-letters", params=a, headers=admin).json()["data"]] == [dl]
    retried = api.post(f"/v1/deliveries/{dl}/retry", params=a, headers=admin)
    assert retried.status_code == 202 and retried.json()["status"] == "pending"
    assert dl in ready_ids(rds)
    # The admin acting for B does not see A's objects either.
    assert_error(api.get(f"/v1/endpoints/{ep}", params={"tenant_id": owned.b.id}, headers=admin), 404)


def test_admin_with_an_unknown_tenant_id_is_404(api: httpx.Client, admin: dict[str, str]) -> None:
    assert_error(api.get("/v1/endpoints", params={"tenant_id": "ten_nothere"}, headers=admin), 404, "tenant")


def test_admin_without_tenant_id_on_tenant_routes_is_422_naming_tenant_id(
    api: httpx.Client, admin: dict[str, str], tenant: Any
) -> None:
    checked = []
    for method, path, op in operations(api):
        params = {p["name"] for p in op.get("parameters", []) if p["in"] == "query"}
        if "tenant_id" not in params or path.startswith(("/v1/dead-letters", "/v1/replays")):
            continue  # not tenant-scoped; the admin sees every tenant's dead letters and replays
        if (method, path) == ("GET", "/v1/deliveries/{delivery_id}"):
            continue  # the admin reads a delivery of whichever tenant holds it (test_deliveries.py)
        body: dict[str, Any] | None = None
        if path == "/v1/endpoints" and method == "POST":
            body = {"url": URL}
        elif path == "/v1/events" and method == "POST":
            body = {"event_type": "a.b", "payload": 1}
        elif path == "/v1/events/batch":
            body = {"events": [{"event_type": "a.b", "payload": 1}]}
        elif path == "/v1/event-types" and method == "POST":
            body = {"name": "a.b"}
        elif "requestBody" in op:
            body = {}
        resp = api.request(method, concrete(path), json=body, headers=admin)
        assert_error(resp, 422, "tenant_id")
        checked.append(f"{method} {path}")
    assert len(checked) >= 12, checked


def test_a_tenant_key_may_name_its_own_tenant(api: httpx.Client, tenant: Any) -> None:
    resp = api.get("/v1/endpoints", params={"tenant_id": tenant.id}, headers=tenant.auth)

    assert resp.status_code == 200
