"""Replays as a resource, end to end: progress, a worker SIGKILLed mid-replay, cancel, recover."""

import signal
from typing import Any

import httpx

from tests.conftest import Processes, Tenant
from tests.support.poll import poll
from tests.support.receiver import Receiver

NO_BREAKER = {"WEBHOOKS_BREAKER_FAILURES": "1000"}  # let the failures run out the schedule quickly


def dead_letters(api: httpx.Client, tenant: Tenant) -> list[dict[str, Any]]:
    return list(api.get("/v1/dead-letters?limit=1000", headers=tenant.auth).json()["data"])


def make_dead(api: httpx.Client, tenant: Tenant, receiver: Receiver, n: int) -> dict[str, Any]:
    """An endpoint that is down, ``n`` events to it, waited for until all are dead (fast schedule)."""
    receiver.down.add("rp")
    ep = api.post("/v1/endpoints", json={"url": receiver.url("switch/rp")}, headers=tenant.auth).json()
    events = [{"event_type": "a.b", "payload": {"i": i}} for i in range(n)]
    assert api.post("/v1/events/batch", json={"events": events}, headers=tenant.auth).status_code == 202
    poll(lambda: len(dead_letters(api, tenant)) == n, 60, what=f"{n} dead letters")
    return dict(ep)


def test_a_paced_replay_survives_a_worker_kill_shows_progress_and_can_be_cancelled(
    api: httpx.Client, tenant: Tenant, receiver: Receiver, procs: Processes
) -> None:
    procs.worker(env=NO_BREAKER)
    victim = procs.worker(env=NO_BREAKER)
    make_dead(api, tenant, receiver, 40)
    receiver.down.clear()
    started = api.post("/v1/dead-letters/replay", json={"rate_per_s": 4}, headers=tenant.auth)
    assert started.status_code == 202, started.text
    replay_id = started.json()["replay_id"]

    def progress() -> dict[str, Any]:
        resp = api.get(f"/v1/replays/{replay_id}", headers=tenant.auth)
        assert resp.status_code == 200, resp.text
        return dict(resp.json())

    first = poll(lambda: (p := progress())["done"] >= 5 and p, 30, what="the replay under way")
    assert first["matched"] == 40 and first["state"] == "delivering"
    assert first["done"] + first["remaining"] == 40
    victim.send_signal(signal.SIGKILL)  # the replay lives in Redis, not in a worker
    victim.wait()
    later = poll(
        lambda: (p := progress())["done"] >= first["done"] + 5 and p, 30, what="progress after the kill"
    )
    assert later["state"] == "delivering"
    cancelled = api.delete(f"/v1/replays/{replay_id}", headers=tenant.auth)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["state"] == "cancelled"
    # attempts already in flight finish; nothing else goes out
    body = poll(lambda: (p := progress())["remaining"] == 0 and p, 20, what="in-flight attempts to finish")
    assert body["state"] == "cancelled"
    assert body["succeeded"] + body["dead"] == 40 and 10 <= body["succeeded"] < 40
    # what had not gone out is back in the dead letters, and stays there: no delivery of the
    # tenant is left pending, in flight or waiting for a retry, so nothing can take one out
    assert len(dead_letters(api, tenant)) == 40 - body["succeeded"]
    for status in ("pending", "delivering", "retrying"):
        waiting = api.get("/v1/deliveries", params={"status": status}, headers=tenant.auth).json()["data"]
        assert waiting == [], status
    listed = api.get("/v1/replays", headers=tenant.auth).json()["data"]
    assert [r["id"] for r in listed] == [replay_id]


def test_recover_resends_what_died_at_an_endpoint_in_a_window(
    api: httpx.Client, tenant: Tenant, receiver: Receiver, procs: Processes
) -> None:
    procs.worker(env=NO_BREAKER)
    ep = make_dead(api, tenant, receiver, 5)
    receiver.down.clear()
    resp = api.post(
        f"/v1/endpoints/{ep['id']}/recover", json={"since": "2000-01-01T00:00:00Z"}, headers=tenant.auth
    )
    assert resp.status_code == 202, resp.text
    assert resp.json()["matched"] == 5
    poll(lambda: not dead_letters(api, tenant), 30, what="the recovered deliveries")
    got = api.get(f"/v1/replays/{resp.json()['replay_id']}", headers=tenant.auth).json()
    poll(lambda: api.get(f"/v1/replays/{got['id']}", headers=tenant.auth).json()["state"] == "done", 30)
    empty = api.post(
        f"/v1/endpoints/{ep['id']}/recover", json={"since": "2099-01-01T00:00:00Z"}, headers=tenant.auth
    )
    assert empty.status_code == 202 and empty.json()["matched"] == 0
    bad = api.post(
        f"/v1/endpoints/{ep['id']}/recover",
        json={"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
        headers=tenant.auth,
    )
    assert bad.status_code == 422
