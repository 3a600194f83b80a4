"""The event-type catalogue through the live API: CRUD, isolation, schema checks at ingest, strict mode."""

from collections.abc import Callable
from typing import Any

import httpx
import pytest
import redis

from tests.api.helpers import assert_error, post_event
from webhooks import keys

INVOICE_SCHEMA = {
    "type": "object",
    "required": ["amount", "currency"],
    "properties": {
        "amount": {"type": "integer", "minimum": 0},
        "currency": {"enum": ["usd", "eur"]},
        "lines": {"type": "array", "items": {"type": "object", "required": ["sku"]}},
    },
}
GOOD = {"amount": 4200, "currency": "usd"}


@pytest.fixture
def make_type(api: httpx.Client, tenant: Any) -> Callable[..., dict[str, Any]]:
    def make(name: str = "invoice.paid", **fields: Any) -> dict[str, Any]:
        resp = api.post("/v1/event-types", json={"name": name, **fields}, headers=tenant.auth)
        assert resp.status_code == 201, resp.text
        return dict(resp.json())

    return make


def events_stored(rds: "redis.Redis") -> int:
    return len(rds.keys("wh:{t:*}:e:*"))


def test_create_get_update_delete(
    api: httpx.Client, tenant: Any, make_type: Callable[..., dict[str, Any]]
) -> None:
    created = make_type(description="An invoice was paid", schema=INVOICE_SCHEMA)
    assert created["name"] == "invoice.paid" and created["tenant_id"] == tenant.id
    assert created["schema"] == INVOICE_SCHEMA and created["archived"] is False
    assert created["description"] == "An invoice was paid" and created["created_at"].endswith("Z")
    path = "/v1/event-types/invoice.paid"
    assert api.get(path, headers=tenant.auth).json() == created

    patched = api.patch(path, json={"description": "paid", "archived": True}, headers=tenant.auth).json()
    assert patched["description"] == "paid" and patched["archived"] is True
    assert patched["schema"] == INVOICE_SCHEMA, "absent fields stay"
    cleared = api.patch(path, json={"schema": None}, headers=tenant.auth).json()
    assert cleared["schema"] is None and cleared["archived"] is True

    assert api.delete(path, headers=tenant.auth).status_code == 204
    assert_error(api.get(path, headers=tenant.auth), 404)
    assert_error(api.delete(path, headers=tenant.auth), 404)


def test_list_is_paginated_in_name_order_and_hides_archived_unless_asked(
    api: httpx.Client, tenant: Any, make_type: Callable[..., dict[str, Any]]
) -> None:
    names = ["a.one", "b.two", "c.three", "d.four", "e.five"]
    for name in reversed(names):
        make_type(name, archived=name == "c.three")
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, "include_archived": "true"}
        if cursor:
            params["cursor"] = cursor
        page = api.get("/v1/event-types", params=params, headers=tenant.auth).json()
        seen += [t["name"] for t in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == names
    live = api.get("/v1/event-types", headers=tenant.auth).json()
    assert [t["name"] for t in live["data"]] == ["a.one", "b.two", "d.four", "e.five"]
    assert live["next_cursor"] is None
    assert_error(api.get("/v1/event-types", params={"cursor": "bm90IG91cnM"}, headers=tenant.auth), 422)


def test_duplicate_and_bad_names_are_refused(
    api: httpx.Client, tenant: Any, make_type: Callable[..., dict[str, Any]]
) -> None:
    make_type()
    assert_error(api.post("/v1/event-types", json={"name": "invoice.paid"}, headers=tenant.auth), 409)
    assert_error(api.post("/v1/event-types", json={"name": "no spaces"}, headers=tenant.auth), 422, "name")


@pytest.mark.parametrize(
    ("schema", "needle"),
    [
        ({"type": "nope"}, "schema.type"),
        ({"properties": {"amount": {"minimum": "zero"}}}, "schema.properties.amount.minimum"),
        ({"pattern": "("}, "regex"),
        (["not", "a", "schema"], "object or a boolean"),
        ({"$schema": "http://json-schema.org/draft-07/schema#"}, "2020-12"),
        ({"$ref": "http://169.254.169.254/latest/meta-data"}, "169.254.169.254"),
        ({"$ref": "#/$defs/missing"}, "missing"),
    ],
)
def test_an_invalid_schema_is_refused_with_the_validators_message(
    api: httpx.Client, tenant: Any, schema: Any, needle: str
) -> None:
    resp = api.post("/v1/event-types", json={"name": "a.b", "schema": schema}, headers=tenant.auth)
    assert_error(resp, 422, "schema", needle)
    assert_error(api.get("/v1/event-types/a.b", headers=tenant.auth), 404)


def test_another_tenants_type_answers_404_and_admin_passes_tenant_id(
    api: httpx.Client,
    tenant: Any,
    make_tenant: Callable[..., Any],
    make_type: Callable[..., dict[str, Any]],
    admin: dict[str, str],
) -> None:
    make_type(schema=INVOICE_SCHEMA)
    other = make_tenant("other")
    path = "/v1/event-types/invoice.paid"
    assert_error(api.get(path, headers=other.auth), 404)
    assert_error(api.patch(path, json={"archived": True}, headers=other.auth), 404)
    assert_error(api.delete(path, headers=other.auth), 404)
    assert api.get("/v1/event-types", headers=other.auth).json()["data"] == []
    assert api.get(path, params={"tenant_id": other.id}, headers=tenant.auth).status_code == 404

    assert_error(api.post("/v1/event-types", json={"name": "x.y"}, headers=admin), 422, "tenant_id")
    made = api.post("/v1/event-types", json={"name": "x.y", "tenant_id": other.id}, headers=admin)
    assert made.status_code == 201 and made.json()["tenant_id"] == other.id
    assert api.get("/v1/event-types/x.y", params={"tenant_id": other.id}, headers=admin).status_code == 200
    assert api.get("/v1/event-types/x.y", headers=other.auth).status_code == 200
    assert_error(api.get("/v1/event-types/x.y", headers=tenant.auth), 404)


def test_single_ingest_checks_the_payload_against_the_schema(
    api: httpx.Client, tenant: Any, make_type: Callable[..., dict[str, Any]], rds: "redis.Redis"
) -> None:
    make_type(schema=INVOICE_SCHEMA)
    post_event(api, tenant.auth, "invoice.paid", GOOD)
    post_event(api, tenant.auth, "user.created", {"anything": True})  # not catalogued, not strict

    bad_amount = {"event_type": "invoice.paid", "payload": {"amount": -1, "currency": "usd"}}
    body = assert_error(api.post("/v1/events", json=bad_amount, headers=tenant.auth), 422, "payload.amount")
    assert "minimum" in body["message"]
    nested = {"event_type": "invoice.paid", "payload": {**GOOD, "lines": [{"sku": "a"}, {"qty": 1}]}}
    assert_error(api.post("/v1/events", json=nested, headers=tenant.auth), 422, "payload.lines.1", "sku")
    missing = {"event_type": "invoice.paid", "payload": {"amount": 1}}
    assert_error(api.post("/v1/events", json=missing, headers=tenant.auth), 422, "payload: ", "currency")
    assert events_stored(rds) == 2


def test_a_batch_with_one_bad_payload_is_refused_whole(
    api: httpx.Client, tenant: Any, make_type: Callable[..., dict[str, Any]], rds: "redis.Redis"
) -> None:
    make_type(schema=INVOICE_SCHEMA)
    events = [{"event_type": "invoice.paid", "payload": GOOD} for _ in range(5)]
    events[3] = {"event_type": "invoice.paid", "payload": {"amount": "12", "currency": "usd"}}

    resp = api.post("/v1/events/batch", json={"events": events}, headers=tenant.auth)

    assert_error(resp, 422, "events.3.payload.amount", "integer")
    assert events_stored(rds) == 0
    events[3] = {"event_type": "invoice.paid", "payload": GOOD}
    ok = api.post("/v1/events/batch", json={"events": events}, headers=tenant.auth)
    assert ok.status_code == 202, ok.text
    assert events_stored(rds) == 5


def test_strict_mode_refuses_types_not_in_the_catalogue_or_archived(
    api: httpx.Client,
    tenant: Any,
    make_type: Callable[..., dict[str, Any]],
    admin: dict[str, str],
    rds: "redis.Redis",
) -> None:
    make_type("invoice.paid")
    make_type("invoice.old", archived=True)
    shown = api.patch(f"/v1/tenants/{tenant.id}", json={"strict_event_types": True}, headers=tenant.auth)
    assert shown.status_code == 200 and shown.json()["strict_event_types"] is True, shown.text
    assert api.get(f"/v1/tenants/{tenant.id}", headers=admin).json()["strict_event_types"] is True

    post_event(api, tenant.auth, "invoice.paid", {"free": "form"})
    for event_type in ("user.created", "invoice.old"):
        resp = api.post("/v1/events", json={"event_type": event_type, "payload": {}}, headers=tenant.auth)
        assert_error(resp, 422, "event_type", event_type, "strict_event_types")
    batch = [{"event_type": "invoice.paid", "payload": {}}, {"event_type": "nope.nope", "payload": {}}]
    assert_error(
        api.post("/v1/events/batch", json={"events": batch}, headers=tenant.auth), 422, "events.1.event_type"
    )
    assert events_stored(rds) == 1

    off = api.patch(f"/v1/tenants/{tenant.id}", json={"strict_event_types": False}, headers=admin)
    assert off.status_code == 200 and off.json()["strict_event_types"] is False
    post_event(api, tenant.auth, "user.created", {})


def test_tenant_settings_of_another_tenant_answer_404(
    api: httpx.Client, tenant: Any, make_tenant: Callable[..., Any]
) -> None:
    other = make_tenant("other")
    resp = api.patch(f"/v1/tenants/{other.id}", json={"strict_event_types": True}, headers=tenant.auth)
    assert_error(resp, 404)
    assert api.get(f"/v1/tenants/{tenant.id}", headers=tenant.auth).json()["strict_event_types"] is False


def test_catalogue_changes_apply_to_the_next_event_in_every_api_process(
    api: httpx.Client,
    tenant: Any,
    make_type: Callable[..., dict[str, Any]],
    make_api: Callable[..., httpx.Client],
) -> None:
    other_process = make_api()
    bad = {"event_type": "invoice.paid", "payload": {"amount": -5, "currency": "usd"}}
    assert other_process.post("/v1/events", json=bad, headers=tenant.auth).status_code == 202  # cached: none

    make_type(schema=INVOICE_SCHEMA)
    assert_error(other_process.post("/v1/events", json=bad, headers=tenant.auth), 422, "payload.amount")

    api.patch("/v1/event-types/invoice.paid", json={"schema": None}, headers=tenant.auth)
    assert other_process.post("/v1/events", json=bad, headers=tenant.auth).status_code == 202

    api.patch(f"/v1/tenants/{tenant.id}", json={"strict_event_types": True}, headers=tenant.auth)
    stray = {"event_type": "user.created", "payload": {}}
    assert_error(other_process.post("/v1/events", json=stray, headers=tenant.auth), 422, "strict")
    api.patch(f"/v1/tenants/{tenant.id}", json={"strict_event_types": False}, headers=tenant.auth)
    assert other_process.post("/v1/events", json=stray, headers=tenant.auth).status_code == 202


def test_deleting_the_tenant_deletes_its_catalogue(
    api: httpx.Client,
    tenant: Any,
    make_type: Callable[..., dict[str, Any]],
    admin: dict[str, str],
    rds: "redis.Redis",
) -> None:
    make_type(schema=INVOICE_SCHEMA)
    catalogue = [keys.event_types(tenant.id), keys.event_type_names(tenant.id)]
    assert rds.exists(*catalogue) == 2
    # The catalogue goes with the answer; the rest of the tenant's data in a job.
    assert api.delete(f"/v1/tenants/{tenant.id}", headers=admin).status_code == 204
    assert rds.exists(*catalogue) == 0
