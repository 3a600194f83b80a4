"""The circuit breaker end to end: a receiver down for a while, then back; disabling after the window."""

import asyncio
import time
from typing import Any

import httpx
import redis
import redis.asyncio as aredis

from cli.snapshot import PlatformStatus, snapshot
from tests.conftest import Processes, Tenant
from tests.support.poll import poll
from tests.support.receiver import Receiver
from webhooks import keys

BREAKER = {
    "WEBHOOKS_BREAKER_FAILURES": "3",
    "WEBHOOKS_BREAKER_PAUSE_S": "0.5",
    "WEBHOOKS_BREAKER_MAX_PAUSE_S": "1",
    "WEBHOOKS_RETRY_SCHEDULE": ",".join(["30"] * 8),  # retries alone would take minutes
}


async def status_of(redis_url: str) -> PlatformStatus:
    """What ``webhooks status`` would show of that Redis."""
    r = aredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        return await snapshot(r, int(time.time() * 1000))
    finally:
        await r.aclose()


def test_an_outage_costs_few_attempts_and_the_waiting_deliveries_flow_once_it_ends(
    api: httpx.Client,
    tenant: Tenant,
    receiver: Receiver,
    procs: Processes,
    rds: "redis.Redis",
    redis_url: str,
) -> None:
    receiver.down.add("out")
    api.post(
        "/v1/endpoints", json={"url": receiver.url("switch/out"), "max_in_flight": 4}, headers=tenant.auth
    )
    procs.worker(env=BREAKER)
    events = [{"event_type": "a.b", "payload": {"i": i}} for i in range(100)]
    sent = api.post("/v1/events/batch", json={"events": events}, headers=tenant.auth).json()

    def outage_s() -> float:
        """How long the breaker has been probing: from the 3rd failure (it opens) to the last probe."""
        got = receiver.to("switch/out")
        return got[-1].at - got[2].at if len(got) > 3 else 0.0

    # The outage lasts through several probes (one every 0.5 to 1 s); without the breaker all 100
    # waiting deliveries would have been tried within the first second.
    poll(lambda: outage_s() >= 2, 20, what="the breaker probing for 2 s")
    during = len(receiver.to("switch/out"))
    assert asyncio.run(status_of(redis_url)).breakers_open == 1, "webhooks status names the open breaker"
    assert during < 30, f"{during} attempts during a {outage_s():.1f} s outage of 100 waiting deliveries"
    receiver.down.clear()
    ended = time.time()
    want = {e["id"] for e in sent}
    poll(
        lambda: want <= {r.headers["webhook-id"] for r in receiver.to("switch/out")},
        30,
        what="every waiting delivery once the endpoint answers",
    )
    # the failed ones did not wait out their 30 s retry step: the probe's success sent them at once
    assert time.time() - ended < 20
    refused = receiver.answered["/switch/out"].count(503)
    poll(
        lambda: int(rds.hget(keys.stats(tenant.id), "attempts_failed") or 0) == refused,
        10,
        what="every refused attempt counted as failed, and no other",
    )


def test_an_endpoint_failing_for_the_whole_window_is_disabled_with_a_reason(
    api: httpx.Client, tenant: Tenant, receiver: Receiver, procs: Processes
) -> None:
    ep: dict[str, Any] = api.post(
        "/v1/endpoints", json={"url": receiver.url("fail/always")}, headers=tenant.auth
    ).json()
    # failures every second (a short schedule), so attempts keep coming past the 2 s window
    procs.worker(
        env={**BREAKER, "WEBHOOKS_DISABLE_AFTER_S": "2", "WEBHOOKS_RETRY_SCHEDULE": ",".join(["1"] * 20)}
    )
    for _ in range(3):
        api.post("/v1/events", json={"event_type": "a.b", "payload": {}}, headers=tenant.auth)
    got = poll(
        lambda: (e := api.get(f"/v1/endpoints/{ep['id']}", headers=tenant.auth).json())["disabled"] and e,
        30,
        what="the endpoint disabled",
    )
    assert got["disabled_reason"].startswith("failing without a success for")
