"""Endpoint health in the console, in a real headless Chromium against the real API, a real worker
and a real receiver: the list's badges and the endpoint page of a paused endpoint and of one whose
circuit breaker is open (with the probe's time), pausing and resuming from the page. The pages are
photographed into the test's temporary folder, or into docs/img/ (console-endpoints-health.png,
console-endpoint-circuit-open.png) when WEBHOOKS_SCREENSHOTS=docs: a test run leaves the tree as it
found it."""

import os
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT, Processes, Tenant
from tests.console.conftest import sign_in
from tests.e2e.test_breaker import BREAKER
from tests.support.poll import poll
from tests.support.receiver import Receiver

expect = pytest.importorskip("playwright.sync_api", reason="playwright is not installed").expect
DOCS_IMG = ROOT / "docs" / "img"


def state_of(api: httpx.Client, tenant: Tenant, endpoint_id: str) -> str:
    return str(api.get(f"/v1/endpoints/{endpoint_id}", headers=tenant.auth).json()["health"]["state"])


def test_the_list_and_the_endpoint_page_show_a_paused_and_an_open_circuit_endpoint(
    browse: Any, api: httpx.Client, tenant: Tenant, receiver: Receiver, procs: Processes, tmp_path: Path
) -> None:
    img = DOCS_IMG if os.environ.get("WEBHOOKS_SCREENSHOTS") == "docs" else tmp_path
    receiver.down.add("down")
    held = api.post(
        "/v1/endpoints", json={"url": receiver.url("ok/held"), "description": "held"}, headers=tenant.auth
    ).json()
    broken = api.post(
        "/v1/endpoints", json={"url": receiver.url("switch/down"), "description": "down"}, headers=tenant.auth
    ).json()
    procs.worker(env={**BREAKER, "WEBHOOKS_BREAKER_PAUSE_S": "20", "WEBHOOKS_BREAKER_MAX_PAUSE_S": "30"})
    events = [{"event_type": "a.b", "payload": {"i": i}} for i in range(6)]
    assert api.post("/v1/events/batch", json={"events": events}, headers=tenant.auth).status_code == 202
    poll(lambda: state_of(api, tenant, broken["id"]) == "circuit_open", 20, what="the circuit open")

    page = browse(viewport={"width": 1200, "height": 800}).new_page()
    page.on("dialog", lambda dialog: dialog.accept())  # "Pause this endpoint?"
    sign_in(page, tenant.api_key)
    # pause from the endpoint page
    page.get_by_role("link", name=receiver.url("ok/held")).click()
    page.get_by_role("button", name="Pause").click()
    expect(page.get_by_role("status")).to_contain_text("Paused")
    expect(page.locator("#health .status")).to_have_text("paused")
    expect(page.locator("#next-attempt")).to_have_text("when resumed")
    assert api.get(f"/v1/endpoints/{held['id']}", headers=tenant.auth).json()["paused"] is True
    assert api.post("/v1/events/batch", json={"events": events}, headers=tenant.auth).status_code == 202

    page.get_by_role("link", name="Endpoints").first.click()
    rows = {
        row.locator("td.url").inner_text(): row.locator("[data-health]").inner_text()
        for row in page.locator("tbody tr").all()
    }
    assert rows == {receiver.url("ok/held"): "paused", receiver.url("switch/down"): "circuit open"}
    expect(page.locator("tbody tr", has_text="switch/down")).to_contain_text(re.compile(r"probe \d{4}-"))
    expect(page.locator("tbody tr", has_text="ok/held")).to_contain_text("6 ready")
    img.mkdir(exist_ok=True)
    page.screenshot(path=str(img / "console-endpoints-health.png"), full_page=True)

    page.get_by_role("link", name=receiver.url("switch/down")).click()
    expect(page.locator("#health .status")).to_have_text("circuit open")
    probe = api.get(f"/v1/endpoints/{broken['id']}", headers=tenant.auth).json()["health"]["next_attempt_at"]
    shown = probe.replace("T", " ").split(".")[0] + " UTC"
    expect(page.locator("#next-attempt")).to_have_text(f"circuit breaker probe {shown}")
    page.screenshot(path=str(img / "console-endpoint-circuit-open.png"), full_page=True)

    # resume from the page: what waited is sent
    page.get_by_role("link", name="Endpoints").first.click()
    page.get_by_role("link", name=receiver.url("ok/held")).click()
    page.get_by_role("button", name="Resume").click()
    expect(page.get_by_role("status")).to_contain_text("Resumed")
    poll(lambda: len(receiver.to("ok/held")) == 12, 20, what="the held six sent after resuming")
