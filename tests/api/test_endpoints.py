"""Endpoints: CRUD, validation of URLs / event types / custom headers, private targets, re-enabling,
secret rotation, and secrets encrypted at rest."""

from collections.abc import Callable
from typing import Any

import httpx
import pytest
import redis

from tests.api.helpers import assert_error, post_event, redis_text

URL = "http://127.0.0.1:9/hook"  # never called: no worker runs in these tests


def test_create_endpoint_returns_201_with_a_whsec_secret(api: httpx.Client, tenant: Any) -> None:
    resp = api.post(
        "/v1/endpoints",
        json={
            "url": URL,
            "description": "billing hooks",
            "event_types": ["invoice.paid", "invoice.failed"],
            "headers": {"X-Team": "billing"},
            "rate_limit_per_s": 5,
        },
        headers=tenant.auth,
    )

    assert resp.status_code == 201, resp.text
    ep = resp.json()
    assert ep["id"].startswith("ep_")
    assert ep["tenant_id"] == tenant.id
    assert ep["secret"].startswith("whsec_") and len(ep["secret"]) > len("whsec_") + 20
    assert ep["url"] == URL
    assert ep["description"] == "billing hooks"
    assert ep["event_types"] == ["invoice.paid", "invoice.failed"]
    assert ep["headers"] == {"X-Team": "billing"}
    assert ep["rate_limit_per_s"] == 5
    assert ep["disabled"] is False and ep["disabled_reason"] is None
    assert ep["created_at"].endswith("Z") and ep["updated_at"] == ep["created_at"]


def test_create_endpoint_defaults(make_endpoint: Callable[..., dict[str, Any]]) -> None:
    ep = make_endpoint(URL)

    assert ep["event_types"] is None  # all types
    assert ep["headers"] == {}
    assert ep["description"] == ""
    assert ep["rate_limit_per_s"] is None
    assert ep["disabled"] is False


def test_get_and_list_endpoints_hide_the_secret(
    api: httpx.Client, tenant: Any, make_endpoint: Callable[..., dict[str, Any]]
) -> None:
    ep = make_endpoint(URL)

    got = api.get(f"/v1/endpoints/{ep['id']}", headers=tenant.auth)
    listed = api.get("/v1/endpoints", headers=tenant.auth)

    assert got.status_code == 200
    assert got.json() == {k: v for k, v in ep.items() if k != "secret"}
    assert listed.status_code == 200
    assert listed.json() == {"data": [got.json()], "next_cursor": None}
    assert ep["secret"] not in got.text + listed.text
    # The dedicated route shows it.
    secret = api.get(f"/v1/endpoints/{ep['id']}/secret", headers=tenant.auth)
    assert secret.status_code == 200
    assert secret.json() == {"secret": ep["secret"], "signing": "hmac-sha256", "public_key": None}


def test_list_endpoints_paginates(
    api: httpx.Client, tenant: Any, make_endpoint: Callable[..., dict[str, Any]]
) -> None:
    ids = [make_endpoint(f"{URL}/{i}")["id"] for i in range(5)]

    seen: list[str] = []
    cursor = None
    for _ in range(5):
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = api.get("/v1/endpoints", params=params, headers=tenant.auth).json()
        seen += [e["id"] for e in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert cursor is None
    assert seen == sorted(ids, reverse=True)


def test_patch_changes_only_the_given_fields(
    api: httpx.Client, tenant: Any, make_endpoint: Callable[..., dict[str, Any]]
) -> None:
    ep = make_endpoint(URL, description="before", event_types=["a.b"], headers={"X-A": "1"})

    resp = api.patch(
        f"/v1/endpoints/{ep['id']}",
        json={"url": URL + "/v2", "event_types": ["c.d"], "rate_limit_per_s": 2.5},
        headers=tenant.auth,
    )

    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert out["url"] == URL + "/v2"
    assert out["event_types"] == ["c.d"]
    assert out["rate_limit_per_s"] == 2.5
    assert out["description"] == "before" and out["headers"] == {"X-A": "1"}
    assert out["updated_at"] >= ep["updated_at"]
    assert api.get(f"/v1/endpoints/{ep['id']}", headers=tenant.auth).json() == out


def test_patch_event_types_null_means_all_types(
    api: httpx.Client, tenant: Any, make_endpoint: Callable[..., dict[str, Any]]
) -> None:
    ep = make_endpoint(URL, event_types=["a.b"])
    assert post_event(api, tenant.auth, "x.y")["deliveries"] == []

    resp = api.patch(f"/v1/endpoints/{ep['id']}", json={"event_types": None}, headers=tenant.auth)

    assert resp.json()["event_types"] is None
    assert [d["endpoint_id"] for d in post_event(api, tenant.auth, "x.y")["deliveries"]] == [ep["id"]]


def test_patch_url_null_is_refused(
    api: httpx.Client, tenant: Any, make_endpoint: Callable[..., dict[str, Any]]
) -> None:
    ep = make_endpoint(URL)

    assert_error(api.patch(f"/v1/endpoints/{ep['id']}", json={"url": None}, headers=tenant.auth), 422, "url")


def test_delete_endpoint(
    api: httpx.Client, tenant: Any, make_endpoint: Callable[..., dict[str, Any]]
) -> None:
    ep = make_endpoint(URL)
    keep = make_endpoint(URL + "/keep")

    resp = api.delete(f"/v1/endpoints/{ep['id']}", headers=tenant.auth)

    assert resp.status_code == 204 and resp.content == b""
    assert_error(api.get(f"/v1/endpoints/{ep['id']}", headers=tenant.auth), 404)
    assert_error(api.delete(f"/v1/endpoints/{ep['id']}", headers=tenant.auth), 404)
    assert_error(api.patch(f"/v1/endpoints/{ep['id']}", json={}, headers=tenant.auth), 404)
    assert [e["id"] for e in api.get("/v1/endpoints", headers=tenant.auth).json()["data"]] == [keep["id"]]
    # A deleted endpoint gets no deliveries.
    assert [d["endpoint_id"] for d in post_event(api, tenant.auth)["deliveries"]] == [keep["id"]]


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("ftp://example.com/hook", "scheme"),
        ("file:///etc/passwd", "scheme"),
        ("javascript:alert(1)", "scheme"),
        ("gopher://example.com/", "scheme"),
        ("example.com/hook", "scheme"),
        ("//example.com/hook", "scheme"),
        ("http://", "host"),
        ("http://user:hunter2@example.com/hook", "credentials"),
        ("https://:hunter2@example.com/hook", "credentials"),
        ("https://user@example.com/hook", "credentials"),
        ("http://example.com:0/", "port"),
        ("http://example.com:99999/", "port"),
        ("http://exa mple.com/", "whitespace"),
        ("http://example.com/\nx", "whitespace"),
        ("", "scheme"),
    ],
)
def test_create_endpoint_refuses_bad_urls(
    api: httpx.Client, tenant: Any, rds: "redis.Redis", url: str, needle: str
) -> None:
    resp = api.post("/v1/endpoints", json={"url": url}, headers=tenant.auth)

    body = assert_error(resp, 422, "invalid endpoint URL", needle)
    assert "hunter2" not in body["message"]
    assert rds.zcard(f"wh:{{t:{tenant.id}}}:eps") == 0


def test_create_endpoint_refuses_a_url_that_is_too_long(api: httpx.Client, tenant: Any) -> None:
    resp = api.post("/v1/endpoints", json={"url": "https://example.com/" + "a" * 3000}, headers=tenant.auth)

    assert_error(resp, 422, "url")


@pytest.mark.parametrize(
    "event_type",
    ["", "a..b", ".a", "a.", "a b", "a-b", "a/b", "a.b\n", "é.b", "a" * 257, "*", "a.*"],
)
def test_create_endpoint_refuses_bad_event_type_syntax(
    api: httpx.Client, tenant: Any, event_type: str
) -> None:
    resp = api.post(
        "/v1/endpoints", json={"url": URL, "event_types": ["ok.type", event_type]}, headers=tenant.auth
    )

    assert_error(resp, 422, "event_types", "dot-separated")


@pytest.mark.parametrize(
    "event_types", [["invoice.paid"], ["a", "b_c.D9", "x.y.z"], [], ["a" * 256]], ids=str
)
def test_create_endpoint_accepts_good_event_types(
    api: httpx.Client, tenant: Any, event_types: list[str]
) -> None:
    resp = api.post("/v1/endpoints", json={"url": URL, "event_types": event_types}, headers=tenant.auth)

    assert resp.status_code == 201, resp.text
    assert resp.json()["event_types"] == event_types


@pytest.mark.parametrize(
    "name",
    [
        "webhook-id",
        "Webhook-Id",
        "webhook-signature",
        "webhook-timestamp",
        "content-type",
        "Content-Type",
        "host",
        "HOST",
        "user-agent",
        "content-length",
        "transfer-encoding",
    ],
)
def test_custom_headers_cannot_override_platform_headers(api: httpx.Client, tenant: Any, name: str) -> None:
    resp = api.post("/v1/endpoints", json={"url": URL, "headers": {name: "x"}}, headers=tenant.auth)

    assert_error(resp, 422, "headers", repr(name), "cannot be overridden")


@pytest.mark.parametrize(
    ("headers", "needle"),
    [
        ({"X-Bad\nName": "v"}, "header name"),
        ({"X Bad": "v"}, "header name"),
        ({"": "v"}, "header name"),
        ({"X-A\n": "v"}, "header name"),
        ({"X-A": "line\r\nInjected: 1"}, "'X-A'"),
        ({"X-A": "nul\x00"}, "'X-A'"),
        ({"X-A": "é"}, "ASCII"),
        ({"X-A": "v" * 5000}, "'X-A'"),
        ({"X-A": "1", "x-a": "2"}, "twice"),
        ({f"X-{i}": "v" for i in range(21)}, "at most"),
    ],
)
def test_custom_headers_are_validated_without_echoing_values(
    api: httpx.Client, tenant: Any, headers: dict[str, str], needle: str
) -> None:
    resp = api.post("/v1/endpoints", json={"url": URL, "headers": headers}, headers=tenant.auth)

    body = assert_error(resp, 422, "headers", needle)
    assert "Injected" not in body["message"]


def test_custom_headers_that_are_fine_are_kept(api: httpx.Client, tenant: Any) -> None:
    headers = {"X-Api-Key": "abc 123\tdef", "Authorization": "Bearer downstream"}

    resp = api.post("/v1/endpoints", json={"url": URL, "headers": headers}, headers=tenant.auth)

    assert resp.status_code == 201, resp.text
    assert resp.json()["headers"] == headers


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": URL, "rate_limit_per_s": 0}, "rate_limit_per_s"),
        ({"url": URL, "rate_limit_per_s": -1}, "rate_limit_per_s"),
        ({"url": URL, "rate_limit_per_s": 100001}, "rate_limit_per_s"),
        ({"url": URL, "description": "d" * 1025}, "description"),
        ({"url": URL, "event_types": "invoice.paid"}, "event_types"),
        ({"url": URL, "headers": ["X-A: 1"]}, "headers"),
        ({"url": URL, "disabled": "maybe"}, "disabled"),
        ({"url": URL, "secret": "whsec_mine"}, "secret"),
        ({"description": "no url"}, "url"),
    ],
)
def test_create_endpoint_validation(api: httpx.Client, tenant: Any, body: dict[str, Any], field: str) -> None:
    assert_error(api.post("/v1/endpoints", json=body, headers=tenant.auth), 422, field)


PRIVATE_URLS = [
    "http://127.0.0.1:8080/hook",
    "http://localhost/hook",
    "http://api.localhost/hook",
    "http://10.1.2.3/hook",
    "http://192.168.0.10/hook",
    "http://172.16.5.4/hook",
    "http://169.254.169.254/latest/meta-data",
    "http://[::1]/hook",
    "http://[fd00::1]/hook",
    "http://0.0.0.0/hook",
    "http://2130706433/hook",  # 127.0.0.1 as one number
    "http://0x7f.0.0.1/hook",
    "http://redis:6379/",
]


@pytest.fixture
def strict_api(
    make_api: Callable[..., httpx.Client], admin: dict[str, str]
) -> tuple[httpx.Client, dict[str, str]]:
    """An API server that refuses private targets, and a tenant on it."""
    client = make_api(allow_private_targets=False)
    created = client.post("/v1/tenants", json={"name": "strict"}, headers=admin)
    assert created.status_code == 201
    return client, {"Authorization": f"Bearer {created.json()['api_key']}"}


@pytest.mark.parametrize("url", PRIVATE_URLS)
def test_private_targets_are_refused_when_not_allowed(
    strict_api: tuple[httpx.Client, dict[str, str]], url: str
) -> None:
    client, auth = strict_api

    resp = client.post("/v1/endpoints", json={"url": url}, headers=auth)

    body = assert_error(resp, 422, "invalid endpoint URL")
    assert body["error"] == "invalid_target"


def test_private_targets_are_refused_on_patch_too(strict_api: tuple[httpx.Client, dict[str, str]]) -> None:
    client, auth = strict_api
    created = client.post("/v1/endpoints", json={"url": "https://example.com/hook"}, headers=auth)
    assert created.status_code == 201, created.text  # public names are fine (resolved at delivery)
    ep_id = created.json()["id"]

    resp = client.patch(f"/v1/endpoints/{ep_id}", json={"url": "http://127.0.0.1/x"}, headers=auth)

    assert_error(resp, 422, "invalid endpoint URL")
    assert client.get(f"/v1/endpoints/{ep_id}", headers=auth).json()["url"] == "https://example.com/hook"


def test_private_targets_are_allowed_when_the_policy_allows(api: httpx.Client, tenant: Any) -> None:
    for url in ("http://127.0.0.1:8080/hook", "http://localhost/hook", "http://10.1.2.3/hook"):
        assert api.post("/v1/endpoints", json={"url": url}, headers=tenant.auth).status_code == 201


def test_disabled_endpoint_is_re_enabled_by_patch(
    api: httpx.Client, tenant: Any, make_endpoint: Callable[..., dict[str, Any]]
) -> None:
    ep = make_endpoint(URL, disabled=True)
    assert ep["disabled"] is True and ep["disabled_reason"]
    assert post_event(api, tenant.auth)["deliveries"] == []

    resp = api.patch(f"/v1/endpoints/{ep['id']}", json={"disabled": False}, headers=tenant.auth)

    assert resp.status_code == 200
    assert resp.json()["disabled"] is False and resp.json()["disabled_reason"] is None
    assert api.get(f"/v1/endpoints/{ep['id']}", headers=tenant.auth).json()["disabled"] is False
    assert [d["endpoint_id"] for d in post_event(api, tenant.auth)["deliveries"]] == [ep["id"]]


def test_patch_disables_with_a_reason(
    api: httpx.Client, tenant: Any, make_endpoint: Callable[..., dict[str, Any]]
) -> None:
    ep = make_endpoint(URL)

    out = api.patch(f"/v1/endpoints/{ep['id']}", json={"disabled": True}, headers=tenant.auth).json()

    assert out["disabled"] is True and out["disabled_reason"] == "disabled by the tenant"
    assert post_event(api, tenant.auth)["deliveries"] == []


def test_endpoint_disabled_by_410_is_re_enabled_by_patch(
    api: httpx.Client,
    tenant: Any,
    make_endpoint: Callable[..., dict[str, Any]],
    settle: Callable[..., int],
) -> None:
    ep = make_endpoint(URL)
    (delivery,) = post_event(api, tenant.auth)["deliveries"]
    settle({delivery["id"]: "gone"})
    gone = api.get(f"/v1/endpoints/{ep['id']}", headers=tenant.auth).json()
    assert gone["disabled"] is True and "410" in gone["disabled_reason"]

    out = api.patch(f"/v1/endpoints/{ep['id']}", json={"disabled": False}, headers=tenant.auth).json()

    assert out["disabled"] is False and out["disabled_reason"] is None
    assert [d["endpoint_id"] for d in post_event(api, tenant.auth)["deliveries"]] == [ep["id"]]


def test_rotate_secret_returns_a_new_secret(
    api: httpx.Client, tenant: Any, make_endpoint: Callable[..., dict[str, Any]], rds: "redis.Redis"
) -> None:
    ep = make_endpoint(URL)

    first = api.post(f"/v1/endpoints/{ep['id']}/secret/rotate", headers=tenant.auth)
    second = api.post(
        f"/v1/endpoints/{ep['id']}/secret/rotate", json={"grace_period_s": 60}, headers=tenant.auth
    )

    assert first.status_code == 200, first.text
    assert second.status_code == 200, second.text
    secrets = [ep["secret"], first.json()["secret"], second.json()["secret"]]
    assert all(s.startswith("whsec_") for s in secrets)
    assert len(set(secrets)) == 3
    assert api.get(f"/v1/endpoints/{ep['id']}/secret", headers=tenant.auth).json()["secret"] == secrets[-1]
    everything = redis_text(rds)
    for s in secrets:
        assert s not in everything and s.removeprefix("whsec_") not in everything


@pytest.mark.parametrize("grace", [-1, 30 * 86400 + 1, "soon"])
def test_rotate_secret_validates_the_grace_period(
    api: httpx.Client, tenant: Any, make_endpoint: Callable[..., dict[str, Any]], grace: Any
) -> None:
    ep = make_endpoint(URL)

    resp = api.post(
        f"/v1/endpoints/{ep['id']}/secret/rotate", json={"grace_period_s": grace}, headers=tenant.auth
    )

    assert_error(resp, 422, "grace_period_s")
    assert api.get(f"/v1/endpoints/{ep['id']}/secret", headers=tenant.auth).json()["secret"] == ep["secret"]


def test_rotate_secret_of_unknown_endpoint_is_404(api: httpx.Client, tenant: Any) -> None:
    assert_error(api.post("/v1/endpoints/ep_nothere/secret/rotate", headers=tenant.auth), 404)


def test_secret_is_encrypted_at_rest(
    make_endpoint: Callable[..., dict[str, Any]], rds: "redis.Redis"
) -> None:
    ep = make_endpoint(URL)

    everything = redis_text(rds)

    assert ep["secret"] not in everything
    assert ep["secret"].removeprefix("whsec_") not in everything
    stored = rds.hget(f"wh:{{t:{ep['tenant_id']}}}:ep:{ep['id']}", "doc")
    assert stored is not None and "enc1:" in stored and "plain:" not in stored
