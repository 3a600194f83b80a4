"""Tenants and their API keys: admin CRUD, pagination, isolation, revocation, keys stored as hashes."""

import hashlib
import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import redis

from tests.api.helpers import assert_error, redis_text

ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_admin_creates_a_tenant_with_an_api_key(api: httpx.Client, admin: dict[str, str]) -> None:
    resp = api.post("/v1/tenants", json={"name": "Acme Inc"}, headers=admin)

    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert set(body) == {"id", "name", "created_at", "api_key", "strict_event_types", "max_share", "storage"}
    assert body["id"].startswith("ten_")
    assert body["name"] == "Acme Inc"
    assert ISO_UTC.fullmatch(body["created_at"])
    assert body["api_key"].startswith("whk_") and len(body["api_key"]) > 30
    # The key works at once, and acts for this tenant.
    own = api.get(f"/v1/tenants/{body['id']}", headers=bearer(body["api_key"]))
    assert own.status_code == 200
    assert own.json() == {
        "id": body["id"],
        "name": "Acme Inc",
        "created_at": body["created_at"],
        "strict_event_types": False,
        "max_share": None,
        # what it holds against its share of Redis' memory (this Redis has no maxmemory: no limit)
        "storage": {"used_bytes": 0, "limit_bytes": None, "max_share": 0.25, "fraction": None},
    }


def test_the_admin_sets_a_tenants_share_of_storage_and_its_usage_counts_its_events(
    api: httpx.Client, admin: dict[str, str]
) -> None:
    created = api.post("/v1/tenants", json={"name": "acme"}, headers=admin).json()
    tid, own = created["id"], bearer(created["api_key"])
    refused = api.patch(f"/v1/tenants/{tid}", json={"max_share": 0.5}, headers=own)
    assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
    assert api.patch(f"/v1/tenants/{tid}", json={"max_share": 0}, headers=admin).status_code == 422
    patched = api.patch(f"/v1/tenants/{tid}", json={"max_share": 0.5}, headers=admin)
    assert patched.status_code == 200 and patched.json()["max_share"] == 0.5
    api.post("/v1/endpoints", json={"url": "http://127.0.0.1:9/x"}, headers=own)
    sent = api.post("/v1/events", json={"event_type": "a.b", "payload": {"n": "x" * 40}}, headers=own)
    assert sent.status_code == 202, sent.text
    storage = api.get(f"/v1/tenants/{tid}", headers=own).json()["storage"]
    assert storage["max_share"] == 0.5 and 700 < storage["used_bytes"] < 900  # one event, one delivery
    reset = api.patch(f"/v1/tenants/{tid}", json={"max_share": None}, headers=admin)
    assert reset.json()["max_share"] is None


def test_get_tenant_shows_no_api_key(api: httpx.Client, admin: dict[str, str], make_tenant: Any) -> None:
    t = make_tenant("visible")

    resp = api.get(f"/v1/tenants/{t.id}", headers=admin)

    assert resp.status_code == 200
    assert resp.json()["name"] == "visible"
    assert "api_key" not in resp.json()
    assert t.api_key not in resp.text


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"name": 42}, "name"),
        ({"name": "ok", "plan": "gold"}, "plan"),
    ],
)
def test_create_tenant_rejects_bad_names(
    api: httpx.Client, admin: dict[str, str], rds: "redis.Redis", body: dict[str, Any], field: str
) -> None:
    resp = api.post("/v1/tenants", json=body, headers=admin)

    assert_error(resp, 422, field)
    assert rds.zcard("wh:tenants") == 0


def test_list_tenants_paginates_newest_first_with_limit_and_cursor(
    api: httpx.Client, admin: dict[str, str], make_tenant: Callable[..., Any]
) -> None:
    created = [make_tenant(f"t{i}").id for i in range(5)]

    pages: list[list[str]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        resp = api.get("/v1/tenants", params=params, headers=admin)
        assert resp.status_code == 200, resp.text
        page = resp.json()
        assert set(page) == {"data", "next_cursor"}
        pages.append([t["id"] for t in page["data"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert len(pages) < 10, "pagination does not end"

    assert [len(p) for p in pages] == [2, 2, 1]
    seen = [i for p in pages for i in p]
    assert seen == sorted(created, reverse=True)  # every tenant once, newest first


def test_list_tenants_last_full_page_has_no_cursor(
    api: httpx.Client, admin: dict[str, str], make_tenant: Callable[..., Any]
) -> None:
    for i in range(4):
        make_tenant(f"t{i}")

    first = api.get("/v1/tenants", params={"limit": 2}, headers=admin).json()
    second = api.get("/v1/tenants", params={"limit": 2, "cursor": first["next_cursor"]}, headers=admin)

    assert len(second.json()["data"]) == 2
    assert second.json()["next_cursor"] is None


def test_list_tenants_default_limit_is_50(
    api: httpx.Client, admin: dict[str, str], make_tenant: Callable[..., Any]
) -> None:
    for i in range(51):
        make_tenant(f"t{i}")

    page = api.get("/v1/tenants", headers=admin).json()

    assert len(page["data"]) == 50
    assert page["next_cursor"] is not None


def test_get_unknown_tenant_is_404(api: httpx.Client, admin: dict[str, str]) -> None:
    assert_error(api.get("/v1/tenants/ten_nothere", headers=admin), 404)


def test_delete_tenant_removes_it_and_revokes_its_keys(
    api: httpx.Client,
    admin: dict[str, str],
    make_tenant: Callable[..., Any],
    rds: "redis.Redis",
    run_jobs: Callable[[], int],
) -> None:
    t = make_tenant("doomed")
    other = make_tenant("stays")
    assert api.get("/v1/endpoints", headers=t.auth).status_code == 200
    api.post("/v1/endpoints", json={"url": "http://127.0.0.1:9/h"}, headers=t.auth).raise_for_status()
    events = [{"event_type": "a.b", "payload": {"i": i}} for i in range(50)]
    assert api.post("/v1/events/batch", json={"events": events}, headers=t.auth).status_code == 202

    resp = api.delete(f"/v1/tenants/{t.id}", headers=admin)

    # Answered at once: the tenant is gone for callers, its data waits for its job.
    assert resp.status_code == 204, resp.text
    assert resp.headers["location"] == f"/v1/tenants/{t.id}/deletion"
    deletion = api.get(resp.headers["location"], headers=admin).json()
    assert deletion["state"] == "deleting" and deletion["tenant_id"] == t.id
    assert rds.exists(f"wh:{{t:{t.id}}}:ev")
    assert_error(api.get(f"/v1/tenants/{t.id}", headers=admin), 404)
    assert_error(api.get("/v1/endpoints", headers=t.auth), 401)
    assert_error(api.delete(f"/v1/tenants/{t.id}", headers=admin), 404)
    listed = [x["id"] for x in api.get("/v1/tenants", headers=admin).json()["data"]]
    assert listed == [other.id]
    assert api.get("/v1/endpoints", headers=other.auth).status_code == 200
    assert run_jobs() == 1
    deletion = api.get(f"/v1/tenants/{t.id}/deletion", headers=admin).json()
    assert deletion["state"] == "done" and deletion["deleted_keys"] >= 100  # 50 events, 50 deliveries
    assert list(rds.scan_iter(match=f"wh:{{t:{t.id}}}:*")) == []
    assert list(rds.scan_iter(match=f"wh:{{t:{other.id}}}:*")) != []


def test_tenant_key_cannot_use_admin_routes(
    api: httpx.Client, tenant: Any, make_tenant: Callable[..., Any]
) -> None:
    other = make_tenant("other")

    assert_error(api.get("/v1/tenants", headers=tenant.auth), 403, "admin")
    assert_error(api.post("/v1/tenants", json={"name": "mine"}, headers=tenant.auth), 403)
    assert_error(api.delete(f"/v1/tenants/{tenant.id}", headers=tenant.auth), 403)
    # Forbidden by route, whatever the id: nothing was deleted.
    assert_error(api.delete(f"/v1/tenants/{other.id}", headers=tenant.auth), 403)
    assert api.get(f"/v1/tenants/{other.id}", headers=other.auth).status_code == 200


def test_tenant_key_sees_only_its_own_tenant(
    api: httpx.Client, tenant: Any, make_tenant: Callable[..., Any]
) -> None:
    other = make_tenant("secret-name-of-other")

    own = api.get(f"/v1/tenants/{tenant.id}", headers=tenant.auth)
    foreign = api.get(f"/v1/tenants/{other.id}", headers=tenant.auth)
    missing = api.get("/v1/tenants/ten_00000000000000000000000000", headers=tenant.auth)

    assert own.status_code == 200 and own.json()["id"] == tenant.id
    body = assert_error(foreign, 404)
    assert "secret-name-of-other" not in foreign.text
    # The same answer as an id that does not exist: nothing leaks.
    assert body == missing.json()


def test_api_keys_create_list_and_revoke(api: httpx.Client, tenant: Any) -> None:
    created = api.post(f"/v1/tenants/{tenant.id}/api-keys", headers=tenant.auth)
    assert created.status_code == 201, created.text
    second = created.json()
    assert set(second) == {"id", "tenant_id", "prefix", "created_at", "api_key"}
    assert second["tenant_id"] == tenant.id
    assert second["api_key"].startswith(second["prefix"]) and second["api_key"] != tenant.api_key
    assert len(second["prefix"]) < len(second["api_key"]) // 2
    assert api.get("/v1/endpoints", headers=bearer(second["api_key"])).status_code == 200

    listed = api.get(f"/v1/tenants/{tenant.id}/api-keys", headers=tenant.auth)
    assert listed.status_code == 200
    keys = listed.json()
    assert len(keys) == 2
    for key in keys:
        assert set(key) == {"id", "tenant_id", "prefix", "created_at"}
    assert {k["prefix"] for k in keys} == {tenant.api_key[:10], second["prefix"]}
    assert tenant.api_key not in listed.text and second["api_key"] not in listed.text

    revoked = api.delete(f"/v1/tenants/{tenant.id}/api-keys/{second['id']}", headers=tenant.auth)
    assert revoked.status_code == 204
    assert_error(api.get("/v1/endpoints", headers=bearer(second["api_key"])), 401)
    assert api.get("/v1/endpoints", headers=tenant.auth).status_code == 200
    remaining = api.get(f"/v1/tenants/{tenant.id}/api-keys", headers=tenant.auth).json()
    assert [k["prefix"] for k in remaining] == [tenant.api_key[:10]]
    assert_error(api.delete(f"/v1/tenants/{tenant.id}/api-keys/{second['id']}", headers=tenant.auth), 404)


def test_admin_manages_api_keys_of_any_tenant(api: httpx.Client, admin: dict[str, str], tenant: Any) -> None:
    created = api.post(f"/v1/tenants/{tenant.id}/api-keys", headers=admin)
    assert created.status_code == 201
    key = created.json()

    assert len(api.get(f"/v1/tenants/{tenant.id}/api-keys", headers=admin).json()) == 2
    assert api.delete(f"/v1/tenants/{tenant.id}/api-keys/{key['id']}", headers=admin).status_code == 204
    assert_error(api.get("/v1/endpoints", headers=bearer(key["api_key"])), 401)
    assert_error(api.post("/v1/tenants/ten_nothere/api-keys", headers=admin), 404)


def test_tenant_key_cannot_touch_another_tenants_keys(
    api: httpx.Client, tenant: Any, make_tenant: Callable[..., Any], admin: dict[str, str]
) -> None:
    other = make_tenant("other")
    other_key = api.get(f"/v1/tenants/{other.id}/api-keys", headers=admin).json()[0]

    assert_error(api.get(f"/v1/tenants/{other.id}/api-keys", headers=tenant.auth), 404)
    assert_error(api.post(f"/v1/tenants/{other.id}/api-keys", headers=tenant.auth), 404)
    assert_error(api.delete(f"/v1/tenants/{other.id}/api-keys/{other_key['id']}", headers=tenant.auth), 404)
    # Revoking another tenant's key through one's own tenant path finds nothing either.
    assert_error(api.delete(f"/v1/tenants/{tenant.id}/api-keys/{other_key['id']}", headers=tenant.auth), 404)
    assert api.get("/v1/endpoints", headers=other.auth).status_code == 200
    assert len(api.get(f"/v1/tenants/{other.id}/api-keys", headers=admin).json()) == 1


def test_api_keys_are_stored_only_as_hashes(api: httpx.Client, tenant: Any, rds: "redis.Redis") -> None:
    second = api.post(f"/v1/tenants/{tenant.id}/api-keys", headers=tenant.auth).json()["api_key"]

    everything = redis_text(rds)

    for key in (tenant.api_key, second):
        assert key not in everything
        assert key[len("whk_") :] not in everything  # not even without its prefix
        assert hashlib.sha256(key.encode()).hexdigest() in everything  # looked up by its hash


@pytest.mark.parametrize(
    "header",
    [
        "Bearer not-a-real-token",
        "Bearer whk_forgedforgedforgedforgedforgedforgedforge",
        "Bearer",
        "Bearer  whk_",
        "Basic dXNlcjpwYXNz",
        "test-admin-token-0123456789abcdef",  # the admin token without the scheme
        "Bearer test-admin-token-0123456789abcdeX",
    ],
)
def test_wrong_credentials_are_401_with_www_authenticate(api: httpx.Client, header: str) -> None:
    resp = api.get("/v1/tenants", headers={"Authorization": header})

    assert_error(resp, 401)
    assert resp.headers["www-authenticate"] == "Bearer"
