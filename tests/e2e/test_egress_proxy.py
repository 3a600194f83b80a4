"""WEBHOOKS_PROXY_URL: every delivery through a real forward proxy on loopback, and SSRF checks first.

The proxy (tests/support/proxy.py) connects upstream from 127.0.0.2, so the receiver on 127.0.0.1
sees whether a request came through it (peer 127.0.0.2) or around it (peer 127.0.0.1).
"""

import base64
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from tests.conftest import Processes, Tenant
from tests.support.poll import poll
from tests.support.proxy import ForwardProxy
from tests.support.receiver import Receiver
from tests.support.tls import make_local_tls

Endpoint = Callable[..., dict[str, Any]]


# The loopback proxy of tests/support drops tunnels when the test ends; under heavy load asyncio
# may report one of its half-closed streams as unraisable. That is the harness, not the product.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


@pytest.fixture
def proxy() -> Iterator[ForwardProxy]:
    p = ForwardProxy().start()
    yield p
    p.stop()


def post_events(api: httpx.Client, tenant: Tenant, n: int) -> list[dict[str, Any]]:
    events = [{"event_type": "invoice.paid", "payload": {"n": i}} for i in range(n)]
    resp = api.post("/v1/events/batch", json={"events": events}, headers=tenant.auth)
    assert resp.status_code == 202, resp.text
    return list(resp.json())


def test_http_deliveries_all_go_through_the_proxy_with_its_credentials(
    api: httpx.Client,
    tenant: Tenant,
    make_endpoint: Endpoint,
    receiver: Receiver,
    procs: Processes,
    proxy: ForwardProxy,
) -> None:
    eps = [make_endpoint(receiver.url(f"ok/p{i}")) for i in range(2)]
    procs.worker(env={"WEBHOOKS_PROXY_URL": proxy.url("egress:s3cret")})
    events = post_events(api, tenant, 5)

    poll(lambda: len(receiver.all()) == 10, what="10 deliveries")
    got = receiver.all()
    assert {r.peer for r in got} == {"127.0.0.2"}, "every request came from the proxy, none around it"
    assert sorted(p.target for p in proxy.forwarded) == sorted(receiver.base + r.path for r in got)
    assert proxy.tunnels == []
    expected_auth = "Basic " + base64.b64encode(b"egress:s3cret").decode()
    assert {p.proxy_authorization for p in proxy.forwarded} == {expected_auth}
    assert all("proxy-authorization" not in r.headers for r in got)
    for r in got:  # the signature covers what arrived through the proxy
        ep = next(e for e in eps if e["url"].endswith(r.path))
        Webhook(ep["secret"]).verify(r.body, r.headers)
    assert {r.headers["webhook-id"] for r in got} == {e["id"] for e in events}


def test_https_deliveries_tunnel_through_connect(
    api: httpx.Client,
    tenant: Tenant,
    make_endpoint: Endpoint,
    procs: Processes,
    proxy: ForwardProxy,
    tmp_path: Path,
) -> None:
    tls = make_local_tls(tmp_path)
    receiver = Receiver()
    receiver.server.socket = tls.server_context.wrap_socket(receiver.server.socket, server_side=True)
    receiver.start()
    try:
        port = receiver.server.server_address[1]
        ep = make_endpoint(f"https://127.0.0.1:{port}/ok/tls")
        procs.worker(env={"WEBHOOKS_PROXY_URL": proxy.url(), "SSL_CERT_FILE": str(tls.ca_file)})
        post_events(api, tenant, 3)
        poll(lambda: len(receiver.all()) == 3, what="3 deliveries over TLS")
        assert {r.peer for r in receiver.all()} == {"127.0.0.2"}
        assert proxy.forwarded == [], "no https request was sent to the proxy in the clear"
        assert proxy.tunnels and {t.target for t in proxy.tunnels} == {f"127.0.0.1:{port}"}
        for r in receiver.all():
            Webhook(ep["secret"]).verify(r.body, r.headers)
    finally:
        receiver.stop()


def test_a_target_resolving_to_a_forbidden_address_is_refused_before_the_proxy(
    api: httpx.Client,
    tenant: Tenant,
    make_endpoint: Endpoint,
    receiver: Receiver,
    procs: Processes,
    proxy: ForwardProxy,
) -> None:
    # The test API allows loopback endpoints (its receivers live there); the worker does not, as in
    # production. `localhost` is a name: the worker resolves it and finds only loopback addresses.
    port = receiver.server.server_address[1]
    make_endpoint(f"http://localhost:{port}/ok/by-name")
    make_endpoint(receiver.url("ok/by-address"))
    procs.worker(env={"WEBHOOKS_PROXY_URL": proxy.url(), "WEBHOOKS_ALLOW_PRIVATE_TARGETS": "false"})
    (event,) = post_events(api, tenant, 1)

    def first_attempts() -> list[dict[str, Any]] | None:
        out = []
        for d in event["deliveries"]:
            attempts = api.get(f"/v1/deliveries/{d['id']}", headers=tenant.auth).json()["attempts"]
            if not attempts:
                return None
            out.append(attempts[0])
        return out

    attempts = poll(first_attempts, what="a first attempt of both deliveries")
    for attempt in attempts:
        assert attempt["status_code"] is None
        assert attempt["error"].startswith("refused:") and "loopback" in attempt["error"], attempt
    assert proxy.passed == [], "the proxy saw nothing"
    assert receiver.all() == []


def test_without_a_proxy_deliveries_go_direct(
    api: httpx.Client, tenant: Tenant, make_endpoint: Endpoint, receiver: Receiver, procs: Processes
) -> None:
    """The control for the peer-address check above: a direct delivery comes from 127.0.0.1."""
    make_endpoint(receiver.url("ok/direct"))
    procs.worker()
    post_events(api, tenant, 1)
    (got,) = poll(lambda: receiver.to("ok/direct"), what="the delivery")
    assert got.peer == "127.0.0.1"
