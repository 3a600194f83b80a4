"""Connections per receiver host: a worker keeps to WEBHOOKS_MAX_CONNECTIONS_PER_HOST, reuses them,
and a request waiting for one is not timed out for the wait (webhooks/outbound/hostslots.py)."""

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Processes, Tenant
from tests.support.conn_receiver import ConnReceiver
from tests.support.poll import poll
from tests.support.tls import make_local_tls

ENDPOINTS = 50
EVENTS = 12  # each to every endpoint: 600 deliveries to one host


@pytest.fixture
def conn_receiver() -> Iterator[ConnReceiver]:
    # 600 answers of 40 ms over 4 connections: about 6 s of queueing behind the host's slots, twice
    # the request timeout (3 s): a wait that counted against it would time deliveries out.
    rec = ConnReceiver(delay_s=0.04).start()
    yield rec
    rec.stop()


def test_a_worker_keeps_to_its_connections_per_host_and_reuses_them(
    api: httpx.Client, tenant: Tenant, conn_receiver: ConnReceiver, procs: Processes
) -> None:
    for i in range(ENDPOINTS):
        resp = api.post(
            "/v1/endpoints",
            json={"url": conn_receiver.url(f"hook/{i}"), "max_in_flight": 16},
            headers=tenant.auth,
        )
        assert resp.status_code == 201, resp.text
    events = [{"event_type": "order.paid", "payload": {"i": i}} for i in range(EVENTS)]
    accepted = api.post("/v1/events/batch", json={"events": events}, headers=tenant.auth)
    assert accepted.status_code == 202, accepted.text
    event_ids = [e["id"] for e in accepted.json()]
    procs.worker(env={"WEBHOOKS_MAX_CONNECTIONS_PER_HOST": "4"})

    def succeeded() -> bool:
        for event_id in event_ids:
            event = api.get(f"/v1/events/{event_id}", headers=tenant.auth).json()
            if [d["status"] for d in event["deliveries"]] != ["succeeded"] * ENDPOINTS:
                return False
        return True

    poll(succeeded, 60, interval_s=0.5, what="every delivery succeeded")
    assert conn_receiver.peak_open <= 4, conn_receiver.peak_open
    assert conn_receiver.peak_open == 4  # the backlog did use every connection it may
    # Each delivery arrived once: none timed out (or failed) and was sent again.
    assert len(conn_receiver.delivered) == conn_receiver.requests == ENDPOINTS * EVENTS
    # Kept alive: the 4 connections carried the 600 requests (a new one per request would be 1).
    assert conn_receiver.reuse() > 20, (conn_receiver.opened, conn_receiver.requests)


HOSTS = [f"127.0.0.{i}" for i in range(2, 42)]  # 40 receiver hosts, 10 endpoints each


def test_two_workers_open_at_most_twice_the_limit_to_each_of_40_tls_hosts(
    api: httpx.Client, tenant: Tenant, procs: Processes, tmp_path: Path
) -> None:
    tls = make_local_tls(tmp_path, HOSTS)
    receivers = [ConnReceiver(host, delay_s=0.01, tls=tls.server_context).start() for host in HOSTS]
    try:
        for rec in receivers:
            for i in range(10):
                resp = api.post("/v1/endpoints", json={"url": rec.url(f"hook/{i}")}, headers=tenant.auth)
                assert resp.status_code == 201, resp.text
        events = [
            {"event_type": "order.paid", "payload": {"i": i}}
            for i in range(int(os.environ.get("CONNS_EVENTS", "8")))
        ]
        assert api.post("/v1/events/batch", json={"events": events}, headers=tenant.auth).status_code == 202
        limit = os.environ.get("CONNS_LIMIT", "8")  # CONNS_LIMIT=0: how it was without the bound
        for _ in range(2):
            procs.worker(env={"SSL_CERT_FILE": str(tls.ca_file), "WEBHOOKS_MAX_CONNECTIONS_PER_HOST": limit})
        total = 400 * len(events)
        poll(lambda: sum(len(r.delivered) for r in receivers) == total, 120, interval_s=0.2, what="all")
        opened = sum(r.opened for r in receivers)
        peaks = sorted(r.peak_open for r in receivers)
        print(
            f"\nlimit {limit}: {opened} TLS connections (handshakes) for {total} deliveries, "
            f"{total / opened:.1f} requests each; most open to one host {peaks[-1]}, median {peaks[20]}"
        )
        assert sum(r.requests for r in receivers) == total  # none timed out and was sent again
        if limit != "0":
            assert peaks[-1] <= 2 * int(limit), peaks  # N workers x the limit per host
            assert total / opened > 5, opened
    finally:
        for rec in receivers:
            rec.stop()
