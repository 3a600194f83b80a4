"""Fair queueing end to end: real workers, real receivers, two tenants, capped and FIFO endpoints."""

import signal
import statistics
import time
from collections.abc import Callable
from typing import Any

import httpx
import redis

from tests.conftest import Processes, Tenant
from tests.support.poll import poll
from tests.support.receiver import Received, Receiver
from webhooks import keys


def post_batch(api: httpx.Client, tenant: Tenant, n: int, payload: Any = None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for start in range(0, n, 1000):
        events = [
            {"event_type": "a.b", "payload": payload or {"n": i}} for i in range(start, min(n, start + 1000))
        ]
        resp = api.post("/v1/events/batch", json={"events": events}, headers=tenant.auth)
        assert resp.status_code == 202, resp.text
        out += resp.json()
    return out


def endpoint(api: httpx.Client, tenant: Tenant, url: str, **fields: Any) -> dict[str, Any]:
    resp = api.post("/v1/endpoints", json={"url": url, **fields}, headers=tenant.auth)
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def first_arrivals(receiver: Receiver, path: str) -> list[str]:
    """webhook-ids in the order they first reached ``path``."""
    seen: dict[str, None] = {}
    for r in receiver.to(path):
        seen.setdefault(r.headers["webhook-id"], None)
    return list(seen)


def arrival(receiver: Receiver, path: str, event_id: str) -> Callable[[], Received | None]:
    return lambda: next((r for r in receiver.to(path) if r.headers["webhook-id"] == event_id), None)


def test_one_tenants_backlog_does_not_delay_another_tenants_deliveries(
    api: httpx.Client, make_tenant: Any, receiver: Receiver, procs: Processes
) -> None:
    noisy, quiet = make_tenant("noisy"), make_tenant("quiet")
    # 32 in flight at 50 ms: about 640/s, so the backlog lasts ~30 s, longer than the quiet run
    endpoint(api, noisy, receiver.url("slow/50/backlog"), max_in_flight=32)
    endpoint(api, quiet, receiver.url("ok/quiet"))
    procs.worker()
    procs.worker()
    post_batch(api, noisy, 20_000)
    poll(lambda: len(receiver.to("slow/50/backlog")) >= 50, 30, what="the backlog to start flowing")
    latencies = []
    for _ in range(20):
        sent = time.time()
        resp = api.post("/v1/events", json={"event_type": "a.b", "payload": {}}, headers=quiet.auth)
        assert resp.status_code == 202
        got = poll(arrival(receiver, "ok/quiet", resp.json()["id"]), 10, what="the quiet tenant's delivery")
        latencies.append(got.at - sent)
    backlog_done = len(first_arrivals(receiver, "slow/50/backlog"))
    # The quiet tenant was served while the other tenant still held most of its 20,000.
    assert backlog_done < 15_000, backlog_done
    assert max(latencies) < 3.0, latencies  # first-come-first-served would be ~15 s here
    assert statistics.median(latencies) < 1.0, latencies


def test_max_in_flight_holds_across_all_workers(
    api: httpx.Client, tenant: Tenant, receiver: Receiver, procs: Processes
) -> None:
    endpoint(api, tenant, receiver.url("slow/150/capped"), max_in_flight=4)
    procs.worker()
    procs.worker()
    post_batch(api, tenant, 60)
    poll(lambda: len(first_arrivals(receiver, "slow/150/capped")) == 60, 60, what="all 60 deliveries")
    assert receiver.peak["/slow/150/capped"] == 4  # reached, never passed, with two workers leasing


def test_fifo_keeps_ingest_order_across_retries_and_a_worker_kill(
    api: httpx.Client, tenant: Tenant, receiver: Receiver, procs: Processes
) -> None:
    endpoint(api, tenant, receiver.url("flaky/2/fifo"), ordering="fifo", event_types=["a.b"])
    slow = endpoint(api, tenant, receiver.url("slow/300/fifo-kill"), ordering="fifo", event_types=["k.k"])
    assert slow["ordering"] == "fifo"
    events = post_batch(api, tenant, 12)
    resp = api.post(
        "/v1/events/batch",
        json={"events": [{"event_type": "k.k", "payload": {"i": i}} for i in range(8)]},
        headers=tenant.auth,
    )
    kill_events = resp.json()
    victim = procs.worker()
    poll(lambda: len(first_arrivals(receiver, "slow/300/fifo-kill")) >= 2, 30, what="two FIFO deliveries")
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    procs.worker()
    poll(lambda: len(first_arrivals(receiver, "flaky/2/fifo")) == 12, 60, what="the flaky FIFO endpoint")
    poll(
        lambda: len(first_arrivals(receiver, "slow/300/fifo-kill")) == 8,
        60,
        what="the FIFO endpoint after the kill",
    )
    # The first delivery failed twice and held the other eleven behind it: order is ingest order.
    assert first_arrivals(receiver, "flaky/2/fifo") == [e["id"] for e in events]
    assert first_arrivals(receiver, "slow/300/fifo-kill") == [e["id"] for e in kill_events]
    assert receiver.peak["/flaky/2/fifo"] == 1 and receiver.peak["/slow/300/fifo-kill"] == 1


def test_a_hot_endpoints_deliveries_are_leased_about_once_each(
    api: httpx.Client, tenant: Tenant, receiver: Receiver, procs: Processes, rds: "redis.Redis"
) -> None:
    endpoint(api, tenant, receiver.url("ok/hot"), max_in_flight=16)
    procs.worker()
    procs.worker()
    post_batch(api, tenant, 3000)
    poll(lambda: len(first_arrivals(receiver, "ok/hot")) == 3000, 90, what="3,000 deliveries")
    leased = int(rds.hget(keys.stats(tenant.id), "deliveries_leased") or 0)
    assert 3000 <= leased <= 3030, leased  # nothing leased and handed back for lack of room
