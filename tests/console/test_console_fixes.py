"""Console fixes of issue 24 over plain HTTP against a real API, worker and Redis: the dead letters
say why a delivery got no answer, and the replays page lists every replay, whatever started it."""

import re
import socket
from typing import Any

import httpx

from tests.conftest import Processes, Tenant
from tests.support.api_server import ApiServer
from tests.support.poll import poll


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_dead_letters_show_the_error_and_replays_started_by_the_api_are_listed(
    api_server: ApiServer, api: httpx.Client, tenant: Tenant, procs: Processes, http_sign_in: Any
) -> None:
    url = f"http://127.0.0.1:{closed_port()}/gone"
    assert api.post("/v1/endpoints", json={"url": url}, headers=tenant.auth).status_code == 201
    procs.worker(env={"WEBHOOKS_RETRY_SCHEDULE": "0.1"})
    api.post("/v1/events", json={"event_type": "a.b", "payload": {}}, headers=tenant.auth)
    (dead,) = poll(
        lambda: api.get("/v1/dead-letters", headers=tenant.auth).json()["data"], 20, what="a dead letter"
    )
    assert dead["last_status_code"] is None and "ConnectionRefusedError" in dead["last_error"]

    console = http_sign_in(api_server.url, tenant.api_key)
    page = console.get("/console/dead-letters").text
    assert '<th scope="col">Error</th>' in page
    row = re.search(rf"{dead['id']}.*?</tr>", page, re.S)
    assert row and "ConnectionRefusedError: [Errno 111]" in row.group(0), (
        "the error column names it (not just 'Last code —')"
    )

    started = api.post("/v1/dead-letters/replay", json={}, headers=tenant.auth).json()
    listed = console.get("/console/replays").text
    assert started["replay_id"] in listed and "API or CLI" in listed
    detail = console.get(f"/console/replays/{started['replay_id']}")
    assert detail.status_code == 200 and "1 requeued" in detail.text


def test_a_held_delivery_says_it_waits_for_the_endpoint_to_be_resumed(
    api_server: ApiServer, api: httpx.Client, tenant: Tenant, http_sign_in: Any
) -> None:
    ep = api.post("/v1/endpoints", json={"url": "http://127.0.0.1:9/x"}, headers=tenant.auth).json()
    assert (
        api.patch(f"/v1/endpoints/{ep['id']}", json={"paused": True}, headers=tenant.auth).status_code == 200
    )
    event = api.post("/v1/events", json={"event_type": "a.b", "payload": {}}, headers=tenant.auth).json()
    (d,) = event["deliveries"]
    page = http_sign_in(api_server.url, tenant.api_key).get(f"/console/deliveries/{d['id']}").text
    shown = re.search(r'id="delivery-next">(.*?)</dd>', page, re.S)
    assert shown and "when the endpoint is resumed" in shown.group(1), "not 'Next attempt —'"


def test_the_portal_shows_endpoint_health_too(
    api_server: ApiServer, api: httpx.Client, admin: dict[str, str], tenant: Tenant
) -> None:
    ep = api.post("/v1/endpoints", json={"url": "http://127.0.0.1:9/x"}, headers=tenant.auth).json()
    assert (
        api.patch(f"/v1/endpoints/{ep['id']}", json={"paused": True}, headers=tenant.auth).status_code == 200
    )
    link = api.post(f"/v1/tenants/{tenant.id}/portal-links", headers=admin).json()["url"]
    with httpx.Client(base_url=api_server.url, timeout=30, follow_redirects=True) as portal:
        listed = portal.get(link)  # signs in and lands on the endpoint list
        assert listed.status_code == 200 and "/console/endpoints" in str(listed.url)
        assert 'data-health="paused"' in listed.text
        page = portal.get(f"/console/endpoints/{ep['id']}").text
        assert 'data-health="paused"' in page and "Resume" in page
