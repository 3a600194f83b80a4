"""An endpoint's ``health`` end to end, read through the API while a real worker delivers:
healthy -> failing -> circuit_open (with the probe's time) -> healthy, and throttled after 502s;
``webhooks status`` lists the endpoints that are not healthy."""

import asyncio
from datetime import datetime
from typing import Any

import httpx

from tests.conftest import Processes, Tenant
from tests.e2e.test_breaker import BREAKER, status_of
from tests.support.poll import poll
from tests.support.receiver import Receiver


def health(api: httpx.Client, tenant: Tenant, endpoint_id: str) -> dict[str, Any]:
    resp = api.get(f"/v1/endpoints/{endpoint_id}", headers=tenant.auth)
    assert resp.status_code == 200, resp.text
    return dict(resp.json()["health"])


def send(api: httpx.Client, tenant: Tenant, n: int = 1) -> None:
    events = [{"event_type": "a.b", "payload": {"i": i}} for i in range(n)]
    assert api.post("/v1/events/batch", json={"events": events}, headers=tenant.auth).status_code == 202


def test_health_goes_failing_then_circuit_open_with_the_probe_time_then_healthy(
    api: httpx.Client, tenant: Tenant, receiver: Receiver, procs: Processes, redis_url: str
) -> None:
    receiver.down.add("h")
    ep = api.post(
        "/v1/endpoints", json={"url": receiver.url("switch/h"), "max_in_flight": 1}, headers=tenant.auth
    ).json()
    assert health(api, tenant, ep["id"])["state"] == "healthy"
    procs.worker(env={**BREAKER, "WEBHOOKS_BREAKER_PAUSE_S": "2", "WEBHOOKS_BREAKER_MAX_PAUSE_S": "4"})
    send(api, tenant)
    failing = poll(
        lambda: (h := health(api, tenant, ep["id"]))["state"] == "failing" and h, 20, what="failing"
    )
    assert failing["consecutive_failures"] == 1 and failing["retrying"] == 1
    assert failing["next_attempt_at"] is not None  # the retry's time (30 s schedule)
    send(api, tenant, 2)  # two more failures: the breaker opens at three
    opened = poll(
        lambda: (h := health(api, tenant, ep["id"]))["state"] == "circuit_open" and h, 20, what="circuit open"
    )
    assert opened["consecutive_failures"] >= 3
    probe = datetime.fromisoformat(opened["next_attempt_at"].replace("Z", "+00:00"))
    assert 0 < (probe - datetime.now(probe.tzinfo)).total_seconds() <= 4.5  # the probe, within the pause
    st = asyncio.run(status_of(redis_url))
    assert [(e.endpoint_id, e.state) for e in st.endpoints_not_healthy] == [(ep["id"], "circuit_open")]
    listed = api.get("/v1/endpoints", headers=tenant.auth).json()["data"]
    assert [e["health"]["state"] for e in listed] == ["circuit_open"]
    receiver.down.clear()
    send(api, tenant)  # the probe's delivery: its success closes the breaker and sends what waits
    healed = poll(
        lambda: (h := health(api, tenant, ep["id"]))["state"] == "healthy" and h["retrying"] == 0 and h,
        30,
        what="healthy again, nothing waiting",
    )
    assert healed["consecutive_failures"] == 0 and healed["next_attempt_at"] is None
    assert asyncio.run(status_of(redis_url)).endpoints_not_healthy == []


def test_502s_show_throttled(
    api: httpx.Client, tenant: Tenant, receiver: Receiver, procs: Processes, redis_url: str
) -> None:
    ep = api.post("/v1/endpoints", json={"url": receiver.url("throttle/3/0/t")}, headers=tenant.auth).json()
    procs.worker()
    send(api, tenant, 5)
    poll(lambda: len(receiver.to("throttle/3/0/t")) >= 8, 20, what="three 502s and the five successes")
    h = health(api, tenant, ep["id"])
    assert h["state"] == "throttled", h  # its cap was halved and has not grown back to max_in_flight
    assert h["consecutive_failures"] == 0
    st = asyncio.run(status_of(redis_url))
    assert [(e.endpoint_id, e.state) for e in st.endpoints_not_healthy] == [(ep["id"], "throttled")]
