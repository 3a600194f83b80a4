"""Graceful shutdown: SIGTERM a real worker with requests in flight, leased-but-unsent work and a backlog.

The worker holds a slow endpoint's requests in flight (a real receiver that answers after 4 s)
and a rate-limited endpoint's deliveries leased but waiting for their send slots. On SIGTERM it
must stop leasing, finish the requests in flight and record their outcomes, hand the unsent
deliveries back to their ready list at once (the lease TTL is 60 s here, so a return after the
lease expired cannot pass for it), and exit 0. A second worker then delivers everything, each
delivery exactly once.
"""

import json
import signal
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import redis

from tests.conftest import Processes, Tenant
from tests.support.poll import poll
from tests.support.receiver import Receiver
from webhooks import keys

Endpoint = Callable[..., dict[str, Any]]
LEASE_TTL_S = 60
SLOW_MS = 4000
SLOW_PATH, PACED_PATH = f"slow/{SLOW_MS}/s", "ok/paced"
N_SLOW, N_PACED, SLOW_SLOTS = 9, 8, 3


def post_batch(api: httpx.Client, tenant: Tenant, event_type: str, n: int) -> list[str]:
    body = {"events": [{"event_type": event_type, "payload": {"i": i}} for i in range(n)]}
    resp = api.post("/v1/events/batch", json=body, headers=tenant.auth)
    assert resp.status_code == 202, resp.text
    return [d["id"] for ev in resp.json() for d in ev["deliveries"]]


def statuses(api: httpx.Client, tenant: Tenant, ids: list[str]) -> dict[str, dict[str, Any]]:
    out = {}
    for delivery_id in ids:
        resp = api.get(f"/v1/deliveries/{delivery_id}", headers=tenant.auth)
        assert resp.status_code == 200, resp.text
        out[delivery_id] = resp.json()
    return out


def test_sigterm_finishes_in_flight_hands_back_unsent_and_a_second_worker_delivers_the_rest(
    api: httpx.Client,
    tenant: Tenant,
    make_endpoint: Endpoint,
    receiver: Receiver,
    procs: Processes,
    rds: "redis.Redis",
) -> None:
    slow = make_endpoint(receiver.url(SLOW_PATH), event_types=["slow.x"], max_in_flight=SLOW_SLOTS)
    paced = make_endpoint(
        receiver.url(PACED_PATH), event_types=["paced.x"], rate_limit_per_s=1, max_in_flight=N_PACED
    )
    slow_ids = post_batch(api, tenant, "slow.x", N_SLOW)
    paced_ids = post_batch(api, tenant, "paced.x", N_PACED)
    settings = {"WEBHOOKS_LEASE_TTL_S": str(LEASE_TTL_S), "WEBHOOKS_REQUEST_TIMEOUT_S": "10"}
    first = procs.worker(env=settings)

    paced_ready = keys.ready(tenant.id, paced["id"])
    slow_ready = keys.ready(tenant.id, slow["id"])
    poll(lambda: receiver.in_flight[f"/{SLOW_PATH}"] == SLOW_SLOTS, what="the slow requests in flight")
    poll(lambda: rds.llen(paced_ready) == 0, what="every paced delivery leased")
    assert rds.llen(slow_ready) == N_SLOW - SLOW_SLOTS, "the slow endpoint's backlog waits unleased"
    sent_before = len(receiver.to(PACED_PATH))
    assert sent_before < N_PACED - 2, "most paced deliveries are leased and waiting for their rate slot"

    first.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    # Handed back at once: the unsent paced deliveries are on their ready list again while the
    # slow requests are still in flight, long before the 60 s lease could expire.
    poll(
        lambda: rds.llen(paced_ready) + len(receiver.to(PACED_PATH)) == N_PACED,
        timeout_s=5,
        what="the unsent paced deliveries back on their ready list",
    )
    handed_back_after_s = time.monotonic() - signalled
    assert handed_back_after_s < SLOW_MS / 1000 / 2
    assert receiver.in_flight[f"/{SLOW_PATH}"] == SLOW_SLOTS, "the hand-back did not wait for in-flight work"
    back = rds.lrange(paced_ready, 0, -1)
    assert all(rds.hget(keys.delivery(tenant.id, d), "s") == "pending" for d in back)
    assert all(rds.hget(keys.delivery(tenant.id, d), "l") is None for d in back), "no longer leased"
    assert int(rds.hget(keys.stats(tenant.id), "deliveries_handed_back") or 0) == len(back)

    # The requests in flight finish, their outcomes are written, and the process exits 0 in time.
    assert first.wait(timeout=SLOW_MS / 1000 + 10) == 0, procs.logs()
    assert time.monotonic() - signalled < SLOW_MS / 1000 + 5
    assert receiver.in_flight[f"/{SLOW_PATH}"] == 0
    assert len(receiver.to(SLOW_PATH)) == SLOW_SLOTS, "no new lease after SIGTERM"
    done = statuses(api, tenant, slow_ids)
    finished = [d for d in done.values() if d["status"] == "succeeded"]
    assert len(finished) == SLOW_SLOTS, [d["status"] for d in done.values()]
    assert all([a["status_code"] for a in d["attempts"]] == [200] for d in finished)
    assert rds.llen(slow_ready) == N_SLOW - SLOW_SLOTS
    assert rds.zcard(keys.leases(tenant.id)) == 0, "the stopped worker released its lease"

    # A second worker delivers everything; each delivery reaches its receiver exactly once.
    procs.worker(env={"WEBHOOKS_REQUEST_TIMEOUT_S": "10"})
    poll(
        lambda: all(d["status"] == "succeeded" for d in statuses(api, tenant, slow_ids + paced_ids).values()),
        timeout_s=60,
        what="every delivery succeeded",
    )
    for path, n in ((SLOW_PATH, N_SLOW), (PACED_PATH, N_PACED)):
        seen = Counter(json.loads(r.body)["data"]["i"] for r in receiver.to(path))
        assert seen == Counter(range(n)), (path, seen)
