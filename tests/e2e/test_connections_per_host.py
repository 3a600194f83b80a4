"""Connections per receiver host: a worker keeps to WEBHOOKS_MAX_CONNECTIONS_PER_HOST, reuses them,
and a request waiting for one is not timed out for the wait (webhooks/outbound/hostslots.py)."""

from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import Processes, Tenant
from tests.support.conn_receiver import ConnReceiver
from tests.support.poll import poll

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
