"""SSRF: refused at registration in every spelling, and again at delivery on the resolved address."""

from typing import Any

import httpx
import pytest

from tests.conftest import Processes, Tenant
from tests.support.poll import poll
from tests.support.receiver import Receiver

FORBIDDEN_URLS = [
    "http://127.0.0.1/",
    "http://localhost/",
    "http://app.localhost/",
    "http://2130706433/",
    "http://0x7f000001/",
    "http://0177.0.0.1/",
    "http://127.1/",
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:7f00:1]/",
    "http://10.0.0.1/",
    "http://172.16.5.4/",
    "http://192.168.1.1/",
    "http://169.254.169.254/latest/meta-data/",
    "http://100.64.0.1/",
    "http://224.0.0.1/",
    "http://240.0.0.1/",
    "http://0.0.0.0/",
    "http://[::]/",
    "http://[fe80::1]/",
    "http://[fc00::1]/",
    "http://[64:ff9b::a00:1]/",
    "http://198.18.0.1/",
    "http://alice:s3cr3tpw@example.com/",
    "ftp://example.com/",
    "file:///etc/passwd",
    "gopher://example.com/",
    "http://example.com\\@127.0.0.1/",
]


@pytest.mark.parametrize("url", FORBIDDEN_URLS)
def test_registration_refuses_private_and_malformed_targets(
    url: str, make_api: Any, admin: dict[str, str]
) -> None:
    api: httpx.Client = make_api(allow_private_targets=False)
    tenant = api.post("/v1/tenants", json={"name": "t"}, headers=admin).json()
    resp = api.post(
        "/v1/endpoints", json={"url": url}, headers={"Authorization": f"Bearer {tenant['api_key']}"}
    )
    assert resp.status_code == 422, resp.text
    body = resp.json()
    assert body["error"] == "invalid_target" and body["message"]
    assert "s3cr3tpw" not in body["message"], "credentials in a URL are never echoed"


def test_public_targets_are_accepted(make_api: Any, admin: dict[str, str]) -> None:
    api: httpx.Client = make_api(allow_private_targets=False)
    tenant = api.post("/v1/tenants", json={"name": "t"}, headers=admin).json()
    auth = {"Authorization": f"Bearer {tenant['api_key']}"}
    for url in ("https://example.com/hooks", "http://93.184.216.34:8080/x", "https://[2606:4700::1]/"):
        assert api.post("/v1/endpoints", json={"url": url}, headers=auth).status_code == 201, url


def test_delivery_time_check_refuses_a_name_that_resolves_to_loopback(
    api: httpx.Client, tenant: Tenant, receiver: Receiver, procs: Processes
) -> None:
    """The API here allows private targets (registration passes), the worker does not: the connect-time
    check on the resolved address is what stops the request."""
    port = receiver.base.rsplit(":", 1)[1]
    by_name = api.post("/v1/endpoints", json={"url": f"http://localhost:{port}/ok/n"}, headers=tenant.auth)
    by_ip = api.post("/v1/endpoints", json={"url": f"http://127.0.0.1:{port}/ok/i"}, headers=tenant.auth)
    assert by_name.status_code == by_ip.status_code == 201
    procs.worker(env={"WEBHOOKS_ALLOW_PRIVATE_TARGETS": "false", "WEBHOOKS_RETRY_SCHEDULE": "0.1"})
    ev = api.post("/v1/events", json={"event_type": "a.b", "payload": {}}, headers=tenant.auth).json()
    for d in ev["deliveries"]:
        got = poll(
            lambda d=d: (
                (x := api.get(f"/v1/deliveries/{d['id']}", headers=tenant.auth).json())["status"] == "dead"
                and x
            ),
            what="the delivery to be refused and dead",
        )
        assert all(a["status_code"] is None for a in got["attempts"])
        assert all(a["error"].startswith("refused:") for a in got["attempts"]), got["attempts"]
    assert receiver.all() == [], "no request reached the loopback receiver"
