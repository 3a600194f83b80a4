"""The console in a real headless Chromium, against the real API, a real worker and a real receiver."""

import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from tests.conftest import ADMIN_TOKEN, Processes, Tenant
from tests.console.conftest import assert_labelled, sign_in
from tests.e2e.test_delivery import post_event, wait_status
from tests.support.receiver import Receiver

expect = pytest.importorskip("playwright.sync_api", reason="playwright is not installed").expect
Endpoint = Callable[..., dict[str, Any]]


def test_a_tenant_creates_an_endpoint_sends_a_test_event_sees_it_delivered_and_opens_its_attempts(
    page: Any, tenant: Tenant, receiver: Receiver, procs: Processes
) -> None:
    procs.worker()
    sign_in(page, tenant.api_key)
    expect(page.get_by_role("heading", name="Endpoints")).to_be_visible()
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"

    page.get_by_role("link", name="New endpoint").click()
    assert_labelled(page)
    page.get_by_label("URL").fill(receiver.url("ok/console"))
    page.get_by_label("Description").fill("billing service")
    page.get_by_label("Event types").fill("invoice.paid")
    page.get_by_label("Custom headers").fill("X-Team: blue")
    page.get_by_role("button", name="Create endpoint").click()
    expect(page.get_by_role("heading", name=receiver.url("ok/console"))).to_be_visible()
    assert_labelled(page)

    page.get_by_role("button", name="Send test event").click()
    expect(page.get_by_role("status")).to_have_text("Test event sent.")
    event_id = re.search(r"/events/(evt_\w+)", page.url).group(1)  # type: ignore[union-attr]
    # The page follows the delivery by itself (console.js) until it has succeeded.
    expect(page.locator("#event-deliveries .status")).to_have_text("succeeded")
    (got,) = receiver.to("ok/console")
    assert got.headers["webhook-id"] == event_id
    assert got.headers["x-team"] == "blue"
    assert b'"type":"webhooks.test"' in got.body, "sent although the endpoint only takes invoice.paid"

    page.get_by_role("link", name=re.compile("Attempts of dlv_")).click()
    attempt = page.locator("article.attempt")
    expect(attempt.get_by_role("heading")).to_have_text(re.compile(r"Attempt 1 · 200 · \d+ ms"))
    expect(attempt.locator("pre.excerpt")).to_have_text('{"received": true}')
    attempt.get_by_text("Request headers sent").click()
    shown = attempt.locator("pre.headers").inner_text()
    assert f"webhook-id: {event_id}" in shown
    assert f"webhook-timestamp: {got.headers['webhook-timestamp']}" in shown
    assert "X-Team: blue" in shown and "content-type: application/json" in shown
    assert "webhook-signature: v1,<signature hidden>" in shown

    page.get_by_role("link", name=receiver.url("ok/console")).click()
    page.get_by_role("button", name="Show signing secret").click()
    secret = page.get_by_label("Signing secret").input_value()
    assert secret.startswith("whsec_")
    Webhook(secret).verify(got.body, got.headers)  # the secret shown is the one that signed
    page.get_by_role("button", name="Copy").click()
    expect(page.locator('[data-copied-for="signing-secret"]')).not_to_be_empty()
    expect(page.locator("figure.chart figcaption")).to_contain_text("100.0 % of 1 attempts succeeded")


def test_a_dead_letter_replayed_from_the_console_succeeds_and_the_page_shows_its_progress(
    page: Any,
    api: httpx.Client,
    tenant: Tenant,
    make_endpoint: Endpoint,
    receiver: Receiver,
    procs: Processes,
) -> None:
    ep = make_endpoint(receiver.url("fail/dl"))
    procs.worker()
    delivery_id = post_event(api, tenant)["deliveries"][0]["id"]
    wait_status(api, tenant, delivery_id, "dead")
    sign_in(page, tenant.api_key)

    page.goto(f"/console/endpoints/{ep['id']}/edit")
    page.get_by_label("URL").fill(receiver.url("ok/dl"))
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("heading", name=receiver.url("ok/dl"))).to_be_visible()

    page.get_by_role("link", name="Dead letters").click()
    assert_labelled(page)
    page.get_by_label("Event type").fill("invoice.paid")
    page.get_by_role("button", name="Filter").click()
    page.get_by_label(f"Select {delivery_id}").check()
    page.get_by_role("button", name="Replay selected").click()
    page.wait_for_url(re.compile(r".*/console/replays/rpl_\w+$"))
    # The progress updates in place until the replayed delivery has settled.
    expect(page.locator("#replay-progress .state")).to_have_text("Finished.")
    expect(page.locator("#replay-progress")).to_contain_text("1 of 1 settled")
    expect(page.locator("#replay-progress")).to_contain_text("1 succeeded")
    assert page.locator("#replay-bar").get_attribute("value") == "1"
    assert len(receiver.to("ok/dl")) == 1
    assert wait_status(api, tenant, delivery_id, "succeeded")["attempts"][-1]["status_code"] == 200

    page.get_by_role("link", name="Replays").click()
    expect(page.get_by_role("link", name=re.compile("rpl_"))).to_have_count(1)
    page.get_by_role("link", name="Dead letters").click()
    expect(page.get_by_text("No dead letters match.")).to_be_visible()


def test_an_operator_signs_in_with_the_admin_token_picks_a_tenant_and_signs_out(
    browse: Any, api: httpx.Client, make_tenant: Callable[..., Tenant]
) -> None:
    acme, beta = make_tenant("acme"), make_tenant("beta")
    for t, path in ((acme, "ok/acme"), (beta, "ok/beta")):
        assert api.post(
            "/v1/endpoints", json={"url": "http://127.0.0.1:9/" + path}, headers=t.auth
        ).is_success
    window = browse()
    page = window.new_page()
    sign_in(page, ADMIN_TOKEN)
    assert page.url.endswith("/console/tenants")
    expect(page.get_by_text("Operator · all tenants")).to_be_visible()
    assert_labelled(page)
    page.get_by_role("button", name="Open tenant acme").click()
    expect(page.get_by_text("Operator · tenant acme")).to_be_visible()
    expect(page.get_by_role("link", name="http://127.0.0.1:9/ok/acme")).to_be_visible()
    expect(page.get_by_text("ok/beta")).to_have_count(0)

    (cookie,) = [c for c in window.context.cookies() if c["name"] == "wh_console"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/console"
    assert ADMIN_TOKEN not in cookie["value"]

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/console/login")
    assert [c for c in window.context.cookies() if c["name"] == "wh_console"] == []
    page.goto("/console/endpoints")
    page.wait_for_url("**/console/login")


def test_a_portal_link_opens_once_and_shows_only_its_tenant(
    browse: Any, api: httpx.Client, admin: dict[str, str], make_tenant: Callable[..., Tenant]
) -> None:
    acme, beta = make_tenant("acme"), make_tenant("beta")
    own = api.post("/v1/endpoints", json={"url": "http://127.0.0.1:9/ok/acme"}, headers=acme.auth).json()
    other = api.post("/v1/endpoints", json={"url": "http://127.0.0.1:9/ok/beta"}, headers=beta.auth).json()
    link = api.post(f"/v1/tenants/{acme.id}/portal-links", json={}, headers=admin)
    assert link.status_code == 201, link.text
    url = link.json()["url"]

    window = browse()
    page = window.new_page()
    page.goto(url)
    page.wait_for_url("**/console/endpoints")
    expect(page.get_by_text("acme · webhooks portal")).to_be_visible()
    expect(page.get_by_role("link", name=own["url"])).to_be_visible()
    expect(page.get_by_text("ok/beta")).to_have_count(0)
    expect(page.get_by_role("link", name="Tenants")).to_have_count(0)
    (cookie,) = [c for c in window.context.cookies() if c["name"] == "wh_console"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    assert url.rsplit("/", 1)[1] not in cookie["value"], "the link's token is not the session"

    assert page.goto(f"/console/endpoints/{other['id']}").status == 404
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    assert page.goto("/console/tenants").status == 404
    assert page.goto("/console/events").ok

    stranger = browse().new_page()
    answer = stranger.goto(url)
    assert answer.status == 410
    expect(stranger.get_by_role("heading", name="This link was already used")).to_be_visible()


def test_pages_fit_a_phone_screen(browse: Any, tenant: Tenant, make_endpoint: Endpoint) -> None:
    ep = make_endpoint("http://127.0.0.1:9/a/very/long/path/that/would/not/fit/on/a/phone/screen/at/all")
    page = browse(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True).new_page()
    sign_in(page, tenant.api_key)
    viewport = page.locator('meta[name="viewport"]').get_attribute("content")
    assert viewport == "width=device-width, initial-scale=1"
    for path in (
        "/console/endpoints",
        f"/console/endpoints/{ep['id']}",
        "/console/events",
        "/console/dead-letters",
    ):
        page.goto(path)
        wide = page.evaluate("document.documentElement.scrollWidth")
        assert wide <= 390, f"{path} is {wide}px wide on a 390px screen"
    page.goto(f"/console/endpoints/{ep['id']}")
    box = page.locator("figure.chart svg.chart-success").bounding_box()
    assert box is not None and 0 < box["width"] <= 390, box
