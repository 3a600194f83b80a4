"""Bad input answers 422 (never 500) with ``{"error", "message"}``, the message naming the field."""

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.api.helpers import assert_error

JSON = {"content-type": "application/json"}
URL = "http://127.0.0.1:9/hook"


@pytest.mark.parametrize(
    ("method", "path", "raw", "field"),
    [
        ("POST", "/v1/events", '{"event_type": "a.b", "payload": ', "body"),
        ("POST", "/v1/events", "{'event_type': 'a.b'}", "body"),
        ("POST", "/v1/events", "", "body"),
        ("POST", "/v1/events", "null", "body"),
        ("POST", "/v1/events", '["event_type", "a.b"]', "body"),
        ("POST", "/v1/events", b"\xff\xfe{}", "body"),  # not UTF-8
        ("POST", "/v1/events", "[" * 100_000 + "]" * 100_000, "body"),  # deeper than the parser goes
        ("POST", "/v1/events/batch", '{"events": [}', "body"),
        ("POST", "/v1/endpoints", '{"url": "http://x.example"', "body"),
        ("PATCH", "/v1/endpoints/ep_x", "{,}", "body"),
        ("POST", "/v1/dead-letters/replay", "nope", "body"),
        ("POST", "/v1/endpoints/ep_x/secret/rotate", "{", "body"),
    ],
)
def test_malformed_json_is_422(
    api: httpx.Client, tenant: Any, method: str, path: str, raw: Any, field: str
) -> None:
    resp = api.request(method, path, content=raw, headers={**tenant.auth, **JSON})

    body = assert_error(resp, 422, field)
    assert body["error"] == "invalid"


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/events", {"event_type": 5, "payload": {}}, "event_type"),
        ("/v1/events", {"event_type": ["a.b"], "payload": {}}, "event_type"),
        ("/v1/events", {"event_type": "a.b", "payload": {}, "id": 7}, "id"),
        ("/v1/events", {"event_type": "a.b"}, "payload"),
        ("/v1/events", {"payload": {}}, "event_type"),
        ("/v1/events", {"event_type": "a.b", "payload": {}, "tenant": "x"}, "tenant"),
        (
            "/v1/events/batch",
            {"events": [{"event_type": "a.b", "payload": 1}, {"payload": 1}]},
            "events.1.event_type",
        ),
        ("/v1/events/batch", {"events": "many"}, "events"),
        ("/v1/endpoints", {"url": 123}, "url"),
        ("/v1/endpoints", {}, "url"),
        ("/v1/endpoints", {"url": URL, "event_types": [1, 2]}, "event_types.0"),
        ("/v1/endpoints", {"url": URL, "headers": {"X-A": 1}}, "headers.X-A"),
        ("/v1/endpoints", {"url": URL, "rate_limit_per_s": "fast"}, "rate_limit_per_s"),
        ("/v1/endpoints", {"url": URL, "colour": "blue"}, "colour"),
        ("/v1/dead-letters/replay", {"ids": "dlv_x"}, "ids"),
        ("/v1/dead-letters/replay", {"since": "yesterday"}, "since"),
        ("/v1/dead-letters/replay", {"until": "2024-13-45T00:00:00Z"}, "until"),
        ("/v1/dead-letters/replay", {"dry_run": "perhaps"}, "dry_run"),
        ("/v1/dead-letters/replay", {"everything": True}, "everything"),
    ],
)
def test_wrong_types_missing_and_unknown_fields_are_422(
    api: httpx.Client, tenant: Any, path: str, body: dict[str, Any], field: str
) -> None:
    resp = api.post(path, json=body, headers=tenant.auth)

    out = assert_error(resp, 422, field)
    assert out["error"] == "invalid"
    assert any(d["field"] == field for d in out["details"]), out["details"]


LISTS = ["/v1/endpoints", "/v1/deliveries", "/v1/dead-letters"]


@pytest.mark.parametrize("path", [*LISTS, "/v1/tenants"])
@pytest.mark.parametrize("limit", ["0", "5000", "1001", "-1", "ten", "1.5", ""])
def test_bad_limit_is_422(
    api: httpx.Client, tenant: Any, admin: dict[str, str], path: str, limit: str
) -> None:
    auth = admin if path == "/v1/tenants" else tenant.auth

    resp = api.get(path, params={"limit": limit}, headers=auth)

    assert_error(resp, 422, "limit")


@pytest.mark.parametrize("path", [*LISTS, "/v1/tenants"])
def test_limit_of_1000_is_allowed(api: httpx.Client, tenant: Any, admin: dict[str, str], path: str) -> None:
    auth = admin if path == "/v1/tenants" else tenant.auth

    assert api.get(path, params={"limit": 1000}, headers=auth).status_code == 200


@pytest.mark.parametrize("path", [*LISTS, "/v1/tenants"])
@pytest.mark.parametrize(
    "cursor",
    ["!!!", "Zm9v", "not a cursor", "a" * 500, "%00", "ZGx2X3g", "MTIzOmFiYw", "8J+Ygg"],
)
def test_bad_cursor_is_422(
    api: httpx.Client, tenant: Any, admin: dict[str, str], path: str, cursor: str
) -> None:
    auth = admin if path == "/v1/tenants" else tenant.auth

    resp = api.get(path, params={"cursor": cursor}, headers=auth)

    assert_error(resp, 422, "cursor")


def test_a_cursor_from_one_list_is_refused_by_another(
    api: httpx.Client, tenant: Any, make_endpoint: Callable[..., dict[str, Any]]
) -> None:
    make_endpoint(URL)
    make_endpoint(URL + "/2")
    cursor = api.get("/v1/endpoints", params={"limit": 1}, headers=tenant.auth).json()["next_cursor"]
    assert cursor

    resp = api.get("/v1/dead-letters", params={"cursor": cursor}, headers=tenant.auth)

    assert_error(resp, 422, "cursor")


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("since", "yesterday"),
        ("since", "2024-02-30T00:00:00Z"),
        ("until", "2024-01-01T25:00:00Z"),
        ("until", "tomorrow at noon"),
        ("since", "2024-01-01T00:00:00+25:00"),
    ],
)
def test_bad_datetime_is_422(api: httpx.Client, tenant: Any, param: str, value: str) -> None:
    resp = api.get("/v1/dead-letters", params={param: value}, headers=tenant.auth)

    assert_error(resp, 422, param)


@pytest.mark.parametrize(
    "value",
    [
        "2024-01-01T00:00:00Z",
        "2024-01-01T00:00:00+02:00",
        "2024-01-01",
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-01:00",
    ],
)
def test_good_and_extreme_datetimes_are_accepted(api: httpx.Client, tenant: Any, value: str) -> None:
    resp = api.get("/v1/dead-letters", params={"since": value, "until": value}, headers=tenant.auth)

    assert resp.status_code == 200, resp.text


@pytest.mark.parametrize("status", ["bogus", "DEAD", "failed", ""])
def test_bad_status_filter_is_422(api: httpx.Client, tenant: Any, status: str) -> None:
    resp = api.get("/v1/deliveries", params={"status": status}, headers=tenant.auth)

    assert_error(resp, 422, "status")


def test_query_parameter_too_long_is_422(api: httpx.Client, tenant: Any) -> None:
    resp = api.get("/v1/deliveries", params={"endpoint_id": "e" * 100}, headers=tenant.auth)

    assert_error(resp, 422, "endpoint_id")


def test_error_messages_are_summaries_of_details(api: httpx.Client, tenant: Any) -> None:
    resp = api.post("/v1/endpoints", json={"url": 1, "disabled": "x", "bogus": 1}, headers=tenant.auth)

    out = assert_error(resp, 422, "url", "disabled", "bogus")
    assert {d["field"] for d in out["details"]} == {"url", "disabled", "bogus"}
    assert all(d["message"] for d in out["details"])


def test_unknown_route_and_wrong_method_are_json(api: httpx.Client, tenant: Any) -> None:
    missing = api.get("/v1/nothing-here", headers=tenant.auth)
    wrong = api.put("/v1/endpoints", headers=tenant.auth)

    assert_error(missing, 404)
    assert_error(wrong, 405)
    assert set(wrong.headers["allow"].split(", ")) == {"GET", "POST"}
