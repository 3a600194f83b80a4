"""The OpenAPI document describes event ingest as the fast path (api/ingest.py) serves it.

FastAPI has no route for ``POST /v1/events[/batch]``: :mod:`api.ingest_schema` writes both
operations into the document. Here requests are drawn from the document's own request schemas
(hypothesis) and sent to the live server: each is answered 202 with a body the document's 202
schema accepts and that shows what was sent. Then one request per error the fast path can give:
each answers a status the document lists for that operation, with its error body, and together
they reach every status listed.
"""

import re
from collections.abc import Callable
from typing import Any

import httpx
import jsonschema_rs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.ingest_schema import ERROR_STATUSES
from tests.conftest import ADMIN_TOKEN, ApiServers, Tenant, api_config
from tests.support.receiver import Receiver
from tests.support.redis_proc import free_port

ROUTES = ("/v1/events", "/v1/events/batch")
# What a payload may hold (docs/api.md, the JSON rules): integers within 64 bits, finite floats.
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
HEADER_TEXT = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1)  # what HTTP carries


def inline(node: Any, doc: dict[str, Any]) -> Any:
    """``node`` with every ``$ref`` into the document's components replaced by its target."""
    if isinstance(node, dict):
        if "$ref" in node:
            return inline(doc["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]], doc)
        return {k: inline(v, doc) for k, v in node.items()}
    if isinstance(node, list):
        return [inline(v, doc) for v in node]
    return node


def values_of(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values valid under ``schema``: the JSON Schema keywords the two request bodies use."""
    if "anyOf" in schema:
        rest = {k: v for k, v in schema.items() if k != "anyOf"}
        return st.one_of([values_of({**rest, **branch}) for branch in schema["anyOf"]])
    kind = schema.get("type")
    if kind is None:
        return JSON_VALUES
    if kind == "null":
        return st.none()
    if kind == "string":
        longest = schema.get("maxLength", 64)
        if "pattern" not in schema:
            return st.text(max_size=longest)
        pattern = schema["pattern"]
        return st.from_regex(pattern, fullmatch=True).filter(
            lambda s: len(s) <= longest and re.fullmatch(pattern, s) is not None
        )
    if kind == "array":
        return st.lists(values_of(schema["items"]), min_size=schema.get("minItems", 0), max_size=5)
    assert kind == "object", schema
    assert schema.get("additionalProperties") is False, "a request body with open fields"
    required = set(schema.get("required", ()))
    properties = {k: values_of(v) for k, v in schema["properties"].items()}
    return st.fixed_dictionaries(
        {k: v for k, v in properties.items() if k in required},
        optional={k: v for k, v in properties.items() if k not in required},
    )


@pytest.fixture
def doc(api: httpx.Client) -> dict[str, Any]:
    document: dict[str, Any] = api.get("/openapi.json").json()
    return document


def operation(doc: dict[str, Any], route: str) -> dict[str, Any]:
    op: dict[str, Any] = doc["paths"][route]["post"]
    return op


def body_schema(doc: dict[str, Any], route: str) -> dict[str, Any]:
    schema: dict[str, Any] = inline(
        operation(doc, route)["requestBody"]["content"]["application/json"]["schema"], doc
    )
    return schema


def answer_schema(doc: dict[str, Any], route: str, status: int) -> dict[str, Any]:
    schema: dict[str, Any] = inline(
        operation(doc, route)["responses"][str(status)]["content"]["application/json"]["schema"], doc
    )
    return schema


@pytest.mark.parametrize("route", ROUTES)
def test_the_document_describes_both_routes_with_their_models(doc: dict[str, Any], route: str) -> None:
    op = operation(doc, route)
    assert op["requestBody"]["required"] is True
    request_model = {"/v1/events": "EventCreate", "/v1/events/batch": "EventBatch"}[route]
    assert op["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": f"#/components/schemas/{request_model}"
    }
    accepted = op["responses"]["202"]["content"]["application/json"]["schema"]
    event = {"$ref": "#/components/schemas/Event"}
    assert accepted == event if route == "/v1/events" else accepted["items"] == event
    assert sorted(int(s) for s in op["responses"]) == [202, *ERROR_STATUSES]
    assert {p["name"] for p in op["parameters"]} == (
        {"tenant_id", "idempotency-key"} if route == "/v1/events" else {"tenant_id"}
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_requests_drawn_from_the_document_are_accepted_as_it_says(
    api: httpx.Client,
    tenant: Tenant,
    make_endpoint: Callable[..., dict[str, Any]],
    receiver: Receiver,
    doc: dict[str, Any],
    data: st.DataObject,
) -> None:
    if not api.get("/v1/endpoints", headers=tenant.auth).json()["data"]:
        make_endpoint(receiver.url("ok/schema"))  # the 202 then lists a delivery
    route = data.draw(st.sampled_from(ROUTES))
    body = data.draw(values_of(body_schema(doc, route)))
    headers = dict(tenant.auth)
    if route == "/v1/events" and data.draw(st.booleans()):
        headers["Idempotency-Key"] = data.draw(HEADER_TEXT.filter(lambda k: len(k) <= 256))
    got = api.post(route, json=body, headers=headers)
    assert got.status_code == 202, got.text
    answer = got.json()
    jsonschema_rs.validate(answer_schema(doc, route, 202), answer)
    sent = body["events"] if route == "/v1/events/batch" else [body]
    shown = answer if route == "/v1/events/batch" else [answer]
    assert len(shown) == len(sent)
    fresh = "Idempotency-Key" not in headers  # a key or an id seen before shows the earlier event
    for event, given_event in zip(shown, sent, strict=True):
        if fresh and given_event.get("id") is None:
            assert (event["event_type"], event["payload"]) == (
                given_event["event_type"],
                given_event["payload"],
            )


def test_every_error_the_fast_path_gives_is_one_the_document_lists(
    api: httpx.Client, tenant: Tenant, doc: dict[str, Any], redis_url: str
) -> None:
    servers = ApiServers()
    try:
        limited = servers.start(api_config(redis_url, tenant_rate_per_s=0.001, tenant_burst=1))
        no_redis = servers.start(api_config(f"redis://127.0.0.1:{free_port()}"))
        seen: set[int] = set()
        for route in ROUTES:
            one = {"event_type": "a.b", "payload": {}}
            good = one if route == "/v1/events" else {"events": [one]}
            big = {"event_type": "a.b", "payload": "x" * 300_000}
            too_big = big if route == "/v1/events" else {"events": [big]}
            bad = {"event_type": "not an event type", "payload": {}}
            invalid = bad if route == "/v1/events" else {"events": [bad]}
            admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
            cases: list[tuple[int, httpx.Response]] = [
                (401, api.post(route, json=good)),
                (404, api.post(route, json=good, headers=admin, params={"tenant_id": "no_such_tenant"})),
                (413, api.post(route, json=too_big, headers=tenant.auth)),
                (
                    415,
                    api.post(route, content=b"{}", headers={**tenant.auth, "Content-Type": "text/plain"}),
                ),
                (422, api.post(route, json=invalid, headers=tenant.auth)),
                (429, next_limited(limited, route, good, tenant)),
                (503, no_redis.post(route, json=good, headers=tenant.auth)),
            ]
            for want, got in cases:
                assert got.status_code == want, (route, got.status_code, got.text)
                assert str(want) in operation(doc, route)["responses"], (route, want)
                jsonschema_rs.validate(answer_schema(doc, route, want), got.json())
                seen.add(want)
        assert seen == set(ERROR_STATUSES), "a status the document lists that no request reached"
    finally:
        servers.stop_all()


def next_limited(client: httpx.Client, route: str, good: dict[str, Any], tenant: Tenant) -> httpx.Response:
    """Requests until the tenant's API bucket (one request, refilled every 1000 s) refuses one."""
    first = client.post(route, json=good, headers=tenant.auth)
    if first.status_code == 429:
        return first
    assert first.status_code == 202, first.text
    return client.post(route, json=good, headers=tenant.auth)
