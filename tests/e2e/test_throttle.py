"""Throttle signals end to end: 502s lower an endpoint's requests in flight, successes raise them again."""

import httpx

from tests.conftest import Processes, Tenant
from tests.support.poll import poll
from tests.support.receiver import Receiver


def test_502s_leave_fewer_requests_in_flight_recovering_as_successes_return(
    api: httpx.Client, tenant: Tenant, receiver: Receiver, procs: Processes
) -> None:
    throttled, steady = "throttle/6/150/t", "slow/150/s"
    for path in (throttled, steady):
        resp = api.post(
            "/v1/endpoints",
            json={"url": receiver.url(path), "max_in_flight": 16, "event_types": [path.split("/")[-1]]},
            headers=tenant.auth,
        )
        assert resp.status_code == 201, resp.text
    # Both endpoints share the receiver's host: no bound per host, so each shows its own window.
    # Quick retries of the 502s, but a long schedule span: a delivery held behind the throttle ends
    # dead once the span since its creation has passed (1.2 s with six 0.2 s retries, less than a
    # loaded machine may take to open the window back up: some of the 80 then never arrived).
    procs.worker(
        env={"WEBHOOKS_RETRY_SCHEDULE": "0.2,0.2,0.2,0.2,0.2,60", "WEBHOOKS_MAX_CONNECTIONS_PER_HOST": "0"}
    )
    for name in ("t", "s"):
        events = [{"event_type": name, "payload": {"i": i}} for i in range(80)]
        assert api.post("/v1/events/batch", json={"events": events}, headers=tenant.auth).status_code == 202
    poll(
        lambda: len({r.headers["webhook-id"] for r in receiver.to(throttled)}) == 80,
        60,
        what="the throttled 80",
    )
    poll(lambda: len({r.headers["webhook-id"] for r in receiver.to(steady)}) == 80, 60, what="the steady 80")
    seen = receiver.concurrency["/" + throttled]
    after = seen[6:30]  # the first requests after the six 502s
    assert receiver.peak["/" + steady] >= 12  # without 502s the endpoint runs near its max_in_flight (16)
    assert max(after[:4]) <= 4, after  # halved per 502 (16 -> 8 -> 4 -> 2 -> 1), then one more per success
    assert receiver.peak["/" + throttled] > max(after[:4])  # it grows back as successes return
