"""Deliveries: filters and pagination, the detail with its attempts, manual retry.

Deliveries are driven to their states with the queue's own transitions (see ``settle``), no worker.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import redis

from tests.api.helpers import RETRY_IN_MS, assert_error, dead_ids, due_ids, now_ms, post_event, ready_ids
from webhooks.timefmt import iso_from_ms

URL = "http://127.0.0.1:9/hook"


@dataclass
class World:
    """Two endpoints, three events, six deliveries in known states."""

    ep1: str
    ep2: str
    events: list[str]
    by: dict[tuple[int, str], str]  # (event index, endpoint id) -> delivery id
    status: dict[str, str]  # delivery id -> status
    at_ms: int


@pytest.fixture
def world(
    api: httpx.Client,
    tenant: Any,
    make_endpoint: Callable[..., dict[str, Any]],
    settle: Callable[..., int],
) -> World:
    ep1, ep2 = make_endpoint(URL + "/1")["id"], make_endpoint(URL + "/2")["id"]
    events = [post_event(api, tenant.auth, "invoice.paid", {"i": i}) for i in range(3)]
    by = {(i, d["endpoint_id"]): d["id"] for i, e in enumerate(events) for d in e["deliveries"]}
    kinds = {
        by[0, ep1]: "succeeded",
        by[0, ep2]: "retrying",
        by[1, ep1]: "dead",
        by[1, ep2]: "timeout",
        # by[2, *] stay pending on the ready list
    }
    at = now_ms() - 5000
    assert settle(kinds, at_ms=at) == 4
    status = {d: "pending" for d in by.values()}
    status.update({d: {"timeout": "retrying"}.get(k, k) for d, k in kinds.items()})
    return World(ep1, ep2, [e["id"] for e in events], by, status, at)


def list_all(api: httpx.Client, auth: dict[str, str], **params: Any) -> tuple[list[dict[str, Any]], int]:
    """Every page of /v1/deliveries with these filters: the items and the number of pages."""
    out: list[dict[str, Any]] = []
    cursor = None
    for pages in range(1, 100):
        query = {**params, **({"cursor": cursor} if cursor else {})}
        resp = api.get("/v1/deliveries", params=query, headers=auth)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        out += body["data"]
        cursor = body["next_cursor"]
        if cursor is None:
            return out, pages
    raise AssertionError("pagination does not end")


def test_list_deliveries_newest_first_with_their_ids(api: httpx.Client, tenant: Any, world: World) -> None:
    resp = api.get("/v1/deliveries", headers=tenant.auth)

    assert resp.status_code == 200
    page = resp.json()
    assert page["next_cursor"] is None
    ids = [d["id"] for d in page["data"]]
    assert ids == sorted(world.by.values(), reverse=True)
    for d in page["data"]:
        assert d["tenant_id"] == tenant.id
        assert d["event_id"] in world.events and d["endpoint_id"] in (world.ep1, world.ep2)
        assert d["status"] == world.status[d["id"]]
        assert d["event_type"] == "invoice.paid"


def test_filter_by_event_id(api: httpx.Client, tenant: Any, world: World) -> None:
    items, _ = list_all(api, tenant.auth, event_id=world.events[1])

    assert {d["id"] for d in items} == {world.by[1, world.ep1], world.by[1, world.ep2]}
    # An unknown event is a 404, as on GET /v1/events/{id} (test_auth_isolation.py covers more).
    unknown = api.get("/v1/deliveries", params={"event_id": "evt_unknown"}, headers=tenant.auth)
    assert_error(unknown, 404, "event_id")


def test_filter_by_endpoint_id(api: httpx.Client, tenant: Any, world: World) -> None:
    items, _ = list_all(api, tenant.auth, endpoint_id=world.ep2)

    assert [d["id"] for d in items] == sorted((world.by[i, world.ep2] for i in range(3)), reverse=True)
    assert_error(api.get("/v1/deliveries", params={"endpoint_id": "ep_unknown"}, headers=tenant.auth), 404)


@pytest.mark.parametrize("status", ["pending", "succeeded", "retrying", "dead", "delivering"])
def test_filter_by_status(api: httpx.Client, tenant: Any, world: World, status: str) -> None:
    items, _ = list_all(api, tenant.auth, status=status)

    assert {d["id"] for d in items} == {d for d, s in world.status.items() if s == status}
    assert all(d["status"] == status for d in items)


def test_filters_combine(api: httpx.Client, tenant: Any, world: World) -> None:
    items, _ = list_all(api, tenant.auth, endpoint_id=world.ep2, status="retrying")
    one, _ = list_all(api, tenant.auth, event_id=world.events[0], endpoint_id=world.ep1, status="succeeded")
    none, _ = list_all(api, tenant.auth, event_id=world.events[0], status="dead")

    assert {d["id"] for d in items} == {world.by[0, world.ep2], world.by[1, world.ep2]}
    assert [d["id"] for d in one] == [world.by[0, world.ep1]]
    assert none == []


@pytest.mark.parametrize(
    "filters",
    [{}, {"endpoint_id": "ep1"}, {"status": "pending"}, {"event_id": "event0"}],
    ids=["all", "endpoint", "status", "event"],
)
def test_pagination_visits_each_delivery_once(
    api: httpx.Client, tenant: Any, world: World, filters: dict[str, str]
) -> None:
    resolved = {k: {"ep1": world.ep1, "event0": world.events[0]}.get(v, v) for k, v in filters.items()}
    everything, _ = list_all(api, tenant.auth, limit=1000, **resolved)

    paged, pages = list_all(api, tenant.auth, limit=1, **resolved)

    assert [d["id"] for d in paged] == [d["id"] for d in everything]
    assert pages == len(everything)  # no trailing empty page: the last full page has no cursor


def test_a_full_last_page_has_no_cursor(api: httpx.Client, tenant: Any, world: World) -> None:
    first = api.get("/v1/deliveries", params={"limit": 3}, headers=tenant.auth).json()
    second = api.get(
        "/v1/deliveries", params={"limit": 3, "cursor": first["next_cursor"]}, headers=tenant.auth
    ).json()

    assert len(first["data"]) == len(second["data"]) == 3
    assert second["next_cursor"] is None


def test_delivery_detail_has_attempts_and_next_attempt_at(
    api: httpx.Client, tenant: Any, world: World
) -> None:
    retrying = api.get(f"/v1/deliveries/{world.by[0, world.ep2]}", headers=tenant.auth)

    assert retrying.status_code == 200
    d = retrying.json()
    assert d["id"] == world.by[0, world.ep2]
    assert d["event_id"] == world.events[0] and d["endpoint_id"] == world.ep2
    assert d["status"] == "retrying"
    assert d["next_attempt_at"] == iso_from_ms(world.at_ms + RETRY_IN_MS)
    assert d["attempt_count"] == 1 and d["last_status_code"] == 500
    assert d["attempts"] == [
        {
            "number": 1,
            "at": iso_from_ms(world.at_ms),
            "status_code": 500,
            "duration_ms": 12,
            "error": None,
            "response_excerpt": '{"received": true}',
        }
    ]


def test_delivery_detail_of_a_timeout(api: httpx.Client, tenant: Any, world: World) -> None:
    d = api.get(f"/v1/deliveries/{world.by[1, world.ep2]}", headers=tenant.auth).json()

    (attempt,) = d["attempts"]
    assert set(attempt) == {"number", "at", "status_code", "duration_ms", "error", "response_excerpt"}
    assert attempt["status_code"] is None and attempt["error"].startswith("timeout")
    assert d["next_attempt_at"] is not None


@pytest.mark.parametrize(
    ("key", "status"), [((0, "ep1"), "succeeded"), ((1, "ep1"), "dead"), ((2, "ep1"), "pending")]
)
def test_final_and_pending_deliveries_have_no_next_attempt(
    api: httpx.Client, tenant: Any, world: World, key: tuple[int, str], status: str
) -> None:
    d = api.get(f"/v1/deliveries/{world.by[key[0], world.ep1]}", headers=tenant.auth).json()

    assert d["status"] == status
    assert d["next_attempt_at"] is None
    assert len(d["attempts"]) == (0 if status == "pending" else 1)
    assert (d["dead_at"] is not None) == (status == "dead")


def test_get_unknown_delivery_is_404(api: httpx.Client, tenant: Any) -> None:
    assert_error(api.get("/v1/deliveries/dlv_nothere", headers=tenant.auth), 404)


@pytest.mark.parametrize("which", [(1, "ep1"), (0, "ep2"), (0, "ep1")], ids=["dead", "retrying", "succeeded"])
def test_retry_puts_the_delivery_on_the_ready_list_now(
    api: httpx.Client, tenant: Any, world: World, rds: "redis.Redis", which: tuple[int, str]
) -> None:
    delivery_id = world.by[which[0], {"ep1": world.ep1, "ep2": world.ep2}[which[1]]]
    ready = len(ready_ids(rds))

    resp = api.post(f"/v1/deliveries/{delivery_id}/retry", headers=tenant.auth)

    assert resp.status_code == 202, resp.text
    assert resp.json()["id"] == delivery_id and resp.json()["status"] == "pending"
    assert resp.json()["next_attempt_at"] is None
    assert ready_ids(rds).count(delivery_id) == 1
    assert len(ready_ids(rds)) == ready + 1
    assert delivery_id not in dict(due_ids(rds))
    assert delivery_id not in dead_ids(rds)
    assert rds.zscore(f"wh:{{t:{tenant.id}}}:dead", delivery_id) is None
    assert api.get(f"/v1/deliveries/{delivery_id}", headers=tenant.auth).json()["status"] == "pending"
    dead = api.get("/v1/dead-letters", headers=tenant.auth).json()["data"]
    assert delivery_id not in [x["id"] for x in dead]


def test_retry_of_a_delivery_already_ready_does_not_queue_it_twice(
    api: httpx.Client, tenant: Any, world: World, rds: "redis.Redis"
) -> None:
    delivery_id = world.by[2, world.ep1]
    before = ready_ids(rds)
    assert delivery_id in before

    resp = api.post(f"/v1/deliveries/{delivery_id}/retry", headers=tenant.auth)

    assert resp.status_code == 202
    assert resp.json()["status"] == "pending"
    assert ready_ids(rds) == before


def test_retry_while_an_attempt_is_under_way_is_409(
    api: httpx.Client, tenant: Any, world: World, lease_all: Callable[[], list[str]]
) -> None:
    delivery_id = world.by[2, world.ep1]
    assert delivery_id in lease_all()

    resp = api.post(f"/v1/deliveries/{delivery_id}/retry", headers=tenant.auth)

    assert_error(resp, 409, "under way")
    assert api.get(f"/v1/deliveries/{delivery_id}", headers=tenant.auth).json()["status"] == "delivering"


def test_retry_of_unknown_delivery_is_404(api: httpx.Client, tenant: Any, rds: "redis.Redis") -> None:
    assert_error(api.post("/v1/deliveries/dlv_nothere/retry", headers=tenant.auth), 404)
    assert len(ready_ids(rds)) == 0


def test_the_admin_reads_a_delivery_of_any_tenant_without_tenant_id(
    api: httpx.Client,
    admin: dict[str, str],
    tenant: Any,
    make_endpoint: Callable[..., dict[str, Any]],
    make_tenant: Callable[..., Any],
) -> None:
    make_endpoint(URL)
    (delivery,) = post_event(api, tenant.auth)["deliveries"]
    other = make_tenant("other")

    found = api.get(f"/v1/deliveries/{delivery['id']}", headers=admin)

    assert found.status_code == 200, found.text
    assert found.json()["tenant_id"] == tenant.id and found.json()["attempts"] == []
    assert_error(api.get("/v1/deliveries/dlv_nothere", headers=admin), 404)
    # Naming a tenant still scopes the read, and a tenant key still sees only its own.
    assert_error(
        api.get(f"/v1/deliveries/{delivery['id']}", params={"tenant_id": other.id}, headers=admin), 404
    )
    assert_error(api.get(f"/v1/deliveries/{delivery['id']}", headers=other.auth), 404)
