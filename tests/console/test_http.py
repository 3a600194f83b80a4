"""The console over plain HTTP: CSRF refusals, security headers, errors as pages, the portal-links route."""

import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN_TOKEN, Tenant
from tests.console.conftest import csrf_of
from tests.support.api_server import ApiServer

Endpoint = Callable[..., dict[str, Any]]
SignIn = Callable[[str, str], httpx.Client]


def endpoint_count(api: httpx.Client, tenant: Tenant) -> int:
    return len(api.get("/v1/endpoints", headers=tenant.auth).json()["data"])


def test_every_form_post_without_the_session_csrf_token_is_refused(
    api_server: ApiServer, api: httpx.Client, tenant: Tenant, make_endpoint: Endpoint, http_sign_in: SignIn
) -> None:
    console = http_sign_in(api_server.url, tenant.api_key)
    ep = make_endpoint("http://127.0.0.1:9/ok/csrf")
    token = csrf_of(console.get("/console/endpoints").text)
    new = {"url": "http://127.0.0.1:9/ok/new"}
    posts = [
        ("/console/endpoints", new),
        (f"/console/endpoints/{ep['id']}", {"url": "http://127.0.0.1:9/ok/changed"}),
        (f"/console/endpoints/{ep['id']}/disable", {}),
        (f"/console/endpoints/{ep['id']}/secret", {}),
        (f"/console/endpoints/{ep['id']}/rotate", {"grace_period_s": "0"}),
        (f"/console/endpoints/{ep['id']}/test", {}),
        ("/console/dead-letters/replay", {"what": "matching"}),
        ("/console/logout", {}),
    ]
    for path, fields in posts:
        for bad in ({}, {"csrf": "not-the-token"}, {"csrf": token + "x"}):
            answer = console.post(path, data={**fields, **bad})
            assert answer.status_code == 403, (path, bad, answer.status_code)
            assert "did not carry a valid token" in answer.text
    assert endpoint_count(api, tenant) == 1
    assert api.get(f"/v1/endpoints/{ep['id']}", headers=tenant.auth).json()["url"].endswith("/ok/csrf")
    assert api.get(f"/v1/endpoints/{ep['id']}", headers=tenant.auth).json()["disabled"] is False
    # The same form from another site is refused even with the token; from the console it passes.
    foreign = console.post(
        "/console/endpoints", data={**new, "csrf": token}, headers={"Origin": "https://evil.example"}
    )
    assert foreign.status_code == 403
    assert console.post("/console/endpoints", data={**new, "csrf": token}).status_code == 303
    assert endpoint_count(api, tenant) == 2


def test_signing_in_needs_the_sign_in_form_token(api_server: ApiServer, tenant: Tenant) -> None:
    with httpx.Client(base_url=api_server.url) as client:
        client.get("/console/login")  # sets the sign-in token cookie
        refused = client.post("/console/login", data={"token": tenant.api_key})
        assert refused.status_code == 403 and "wh_console=" not in refused.headers.get("set-cookie", "")
    with httpx.Client(base_url=api_server.url) as client:  # a form posted without the cookie
        refused = client.post("/console/login", data={"token": tenant.api_key, "login_csrf": "forged"})
        assert refused.status_code == 403


def test_a_wrong_token_is_told_so_and_no_session_is_made(api_server: ApiServer) -> None:
    with httpx.Client(base_url=api_server.url) as client:
        form = client.get("/console/login").text
        login_csrf = re.search(r'name="login_csrf" value="([^"]+)"', form).group(1)  # type: ignore[union-attr]
        for wrong in ("whk_not-a-key", "x" * 40, ""):
            answer = client.post("/console/login", data={"login_csrf": login_csrf, "token": wrong})
            assert answer.status_code == 401 and "neither the admin token nor a live API key" in answer.text
        assert "wh_console" not in client.cookies


def test_every_console_answer_carries_the_security_headers(
    api_server: ApiServer, tenant: Tenant, http_sign_in: SignIn
) -> None:
    console = http_sign_in(api_server.url, tenant.api_key)
    for path in ("/console/login", "/console/endpoints", "/console/events", "/console/no-such-page/x"):
        answer = console.get(path, follow_redirects=True)
        csp = answer.headers.get("content-security-policy", "")
        assert answer.status_code == (404 if "no-such" in path else 200)
        directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
        assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"
        assert directives["default-src"] == "'none'" and directives["frame-ancestors"] == "'none'"
        assert directives["form-action"] == "'self'" and "unsafe-inline" not in csp
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["referrer-policy"] == "no-referrer"
        assert answer.headers["cache-control"] == "no-store"
        assert "<script>" not in answer.text and " style=" not in answer.text  # nothing inline
    js = console.get("/console/static/console.js")
    assert js.headers["content-type"].startswith("text/javascript") and js.headers["x-content-type-options"]
    assert console.get("/console/static/../app.py").status_code == 404


def test_what_a_tenant_typed_comes_back_escaped(
    api_server: ApiServer, api: httpx.Client, tenant: Tenant, make_endpoint: Endpoint, http_sign_in: SignIn
) -> None:
    ep = make_endpoint("http://127.0.0.1:9/ok/x", description='<script>alert("x")</script>')
    page = http_sign_in(api_server.url, tenant.api_key).get(f"/console/endpoints/{ep['id']}").text
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page


def test_bad_input_answers_a_page_never_a_500(
    api_server: ApiServer, tenant: Tenant, make_endpoint: Endpoint, http_sign_in: SignIn
) -> None:
    console = http_sign_in(api_server.url, tenant.api_key)
    token = csrf_of(console.get("/console/endpoints").text)
    bad_url = console.post("/console/endpoints", data={"csrf": token, "url": "not a url"})
    assert bad_url.status_code == 422 and "url" in bad_url.text and 'value="not a url"' in bad_url.text
    bad_header = console.post(
        "/console/endpoints", data={"csrf": token, "url": "http://127.0.0.1:9/", "headers": "no colon"}
    )
    assert bad_header.status_code == 422 and "line 1 is not" in bad_header.text
    assert console.get("/console/endpoints/ep_nope").status_code == 404
    assert console.get("/console/events?status=bogus").status_code == 422
    assert console.get("/console/dead-letters?since=yesterday").status_code == 422
    assert console.get("/console/events?cursor=garbage").status_code == 422
    assert console.get("/console/replays/rpl_nope").status_code == 404
    ep = make_endpoint("http://127.0.0.1:9/ok/off", disabled=True)
    refused = console.post(f"/console/endpoints/{ep['id']}/test", data={"csrf": token})
    assert refused.status_code == 409 and "enable it" in refused.text


def test_admin_creates_a_portal_link(api: httpx.Client, admin: dict[str, str], tenant: Tenant) -> None:
    before = datetime.now().astimezone()
    answer = api.post(f"/v1/tenants/{tenant.id}/portal-links", headers=admin)
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert set(body) == {"url", "expires_at"}
    assert re.fullmatch(rf"{api.base_url}/console/portal/{tenant.id}/[A-Za-z0-9_-]{{43}}", body["url"])
    expires = datetime.fromisoformat(body["expires_at"])
    assert timedelta(seconds=590) < expires - before < timedelta(seconds=610), "600 s by default"
    short = api.post(f"/v1/tenants/{tenant.id}/portal-links", json={"expires_in_s": 30}, headers=admin).json()
    assert datetime.fromisoformat(short["expires_at"]) - before < timedelta(seconds=40)
    assert short["url"] != body["url"]


@pytest.mark.parametrize(
    ("body", "field"),
    [({"expires_in_s": 0}, "expires_in_s"), ({"expires_in_s": 86401}, "expires_in_s"), ({"x": 1}, "x")],
)
def test_portal_link_bounds(
    api: httpx.Client, admin: dict[str, str], tenant: Tenant, body: dict[str, Any], field: str
) -> None:
    answer = api.post(f"/v1/tenants/{tenant.id}/portal-links", json=body, headers=admin)
    assert answer.status_code == 422 and answer.json()["details"][0]["field"] == field


def test_only_the_admin_makes_portal_links_and_only_for_a_tenant_that_exists(
    api: httpx.Client, admin: dict[str, str], tenant: Tenant
) -> None:
    assert api.post(f"/v1/tenants/{tenant.id}/portal-links", headers=tenant.auth).status_code == 403
    assert api.post(f"/v1/tenants/{tenant.id}/portal-links").status_code == 401
    assert api.post("/v1/tenants/ten_nope/portal-links", headers=admin).status_code == 404


def test_an_unknown_or_malformed_portal_link_answers_a_page(api_server: ApiServer, tenant: Tenant) -> None:
    for path in (
        f"/console/portal/{tenant.id}/{'A' * 43}",
        "/console/portal/x/y",
        f"/console/portal/{tenant.id}/",
    ):
        with httpx.Client() as client:
            answer = client.get(api_server.url + path)
        assert answer.status_code in (404, 410), (path, answer.status_code)
        if answer.status_code == 410:
            assert "This link has expired" in answer.text and "wh_console=" not in answer.headers.get(
                "set-cookie", ""
            )


def test_an_operator_session_ends_when_the_admin_token_changes(redis_url: str, http_sign_in: SignIn) -> None:
    import dataclasses

    from tests.conftest import api_config

    first = ApiServer(api_config(redis_url)).start()
    try:
        console = http_sign_in(first.url, ADMIN_TOKEN)
        assert console.get("/console/tenants").status_code == 200
    finally:
        first.stop()
    second = ApiServer(
        dataclasses.replace(api_config(redis_url), admin_token="another-admin-token-0123456789")
    ).start()
    try:
        console.base_url = httpx.URL(second.url)
        answer = console.get("/console/tenants")
        assert answer.status_code == 303 and answer.headers["location"] == "/console/login"
    finally:
        second.stop()


def test_the_event_log_filters_by_type_status_and_endpoint(
    api_server: ApiServer,
    api: httpx.Client,
    tenant: Tenant,
    make_endpoint: Endpoint,
    receiver: Any,
    procs: Any,
    http_sign_in: SignIn,
) -> None:
    from tests.e2e.test_delivery import post_event, wait_status

    good = make_endpoint(receiver.url("ok/log"))
    bad = make_endpoint(receiver.url("fail/log"), event_types=["invoice.failed"])
    procs.worker()
    paid = post_event(api, tenant, "invoice.paid")
    failed = post_event(api, tenant, "invoice.failed")
    for event in (paid, failed):
        for d in event["deliveries"]:
            wait_status(api, tenant, d["id"], "dead" if d["endpoint_id"] == bad["id"] else "succeeded")
    console = http_sign_in(api_server.url, tenant.api_key)

    def listed(**params: str) -> set[str]:
        page = console.get("/console/events", params=params)
        assert page.status_code == 200, page.text
        return set(re.findall(r'href="/console/events/(evt_\w+)"', page.text))

    assert listed() == {paid["id"], failed["id"]}
    assert listed(event_type="invoice.paid") == {paid["id"]}
    assert listed(status="dead") == {failed["id"]}
    assert listed(status="succeeded") == {paid["id"], failed["id"]}
    assert listed(endpoint_id=bad["id"]) == {failed["id"]}
    assert listed(endpoint_id=good["id"], event_type="invoice.failed") == {failed["id"]}
    jump = console.get("/console/events", params={"event_id": paid["id"]})
    assert jump.status_code == 303 and jump.headers["location"] == f"/console/events/{paid['id']}"


def test_an_operator_creates_a_tenant_and_a_portal_link_and_sees_every_tenants_dead_letters(
    api_server: ApiServer, http_sign_in: SignIn
) -> None:
    console = http_sign_in(api_server.url, ADMIN_TOKEN)
    token = csrf_of(console.get("/console/tenants").text)
    created = console.post("/console/tenants", data={"csrf": token, "name": "Initech"})
    assert created.status_code == 200 and "Tenant Initech created" in created.text
    api_key = re.search(r'value="(whk_[^"]+)"', created.text).group(1)  # type: ignore[union-attr]
    tenant_id = re.search(r"<code>(ten_\w+)</code>", created.text).group(1)  # type: ignore[union-attr]
    assert httpx.get(
        f"{api_server.url}/v1/tenants/{tenant_id}", headers={"Authorization": f"Bearer {api_key}"}
    ).is_success
    linked = console.post(f"/console/tenants/{tenant_id}/portal-link", data={"csrf": token})
    url = re.search(r'value="(http://[^"]+/console/portal/[^"]+)"', linked.text).group(1)  # type: ignore[union-attr]
    with httpx.Client() as opener:
        assert opener.get(url).status_code == 303
    dead = console.get("/console/dead-letters")
    assert dead.status_code == 200 and "Operator · all tenants" in dead.text and ">Tenant</th>" in dead.text
    assert console.get("/console/endpoints").headers["location"] == "/console/tenants", "pick a tenant first"
