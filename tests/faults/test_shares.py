"""Per-tenant storage shares on a real redis-server with ``maxmemory`` (issue 26).

Tenant A posts steadily to an endpoint that is down (its breaker opens, its deliveries are held)
until it holds its share of Redis' memory (``WEBHOOKS_TENANT_MAX_SHARE``, 0.25 by default): from
then on A is refused with 429 ``tenant_storage_full`` and ``Retry-After``, while tenant B keeps
posting and receiving the whole time and never sees ``storage_full``. When A's endpoint answers
again, A's held deliveries go out, its settled history is trimmed (its own first) and A is
accepted again.
"""

import asyncio
import time
from typing import Any

from tests.e2e.test_breaker import status_of
from tests.faults.test_memory import make_stack  # noqa: F401 - the fixture
from tests.support.poll import poll
from tests.support.receiver import Receiver


def test_a_tenant_at_its_share_is_refused_alone_and_recovers_when_its_endpoint_is_back(
    make_stack: Any,  # noqa: F811
) -> None:
    stack = make_stack(
        24,
        WEBHOOKS_RETRY_SCHEDULE="600,600",  # held deliveries outlive the test: no expiry frees room
        WEBHOOKS_BREAKER_PAUSE_S="1",
        WEBHOOKS_BREAKER_MAX_PAUSE_S="1",
    )
    receiver = Receiver().start()
    try:
        receiver.down.add("a")
        a = stack.tenant(receiver.url("switch/a"))
        b = stack.tenant(receiver.url("ok/b"))
        a_id = stack.http.get("/v1/endpoints", headers=a).json()["data"][0]["tenant_id"]
        accepted_a: list[str] = []
        sent_b: list[str] = []
        refusal = None

        def post_b(n: int) -> None:
            batch = [
                {"id": f"b{len(sent_b)}-{j}", "event_type": "a.b", "payload": {"n": j}} for j in range(n)
            ]
            resp = stack.http.post("/v1/events/batch", json={"events": batch}, headers=b)
            assert resp.status_code == 202, resp.text  # never storage_full, nor anything else
            sent_b.extend(e["id"] for e in batch)

        for i in range(200):
            batch = [{"id": f"a{i}-{j}", "event_type": "a.b", "payload": {"n": j}} for j in range(200)]
            resp = stack.http.post("/v1/events/batch", json={"events": batch}, headers=a)
            post_b(5)
            if resp.status_code != 202:
                refusal = resp
                break
            accepted_a += [e["id"] for e in resp.json()]
        assert refusal is not None, "tenant A never reached its share"
        assert refusal.status_code == 429, refusal.text
        assert refusal.json()["error"] == "tenant_storage_full" and int(refusal.headers["retry-after"]) >= 1
        usage = stack.http.get(f"/v1/tenants/{a_id}", headers=a).json()["storage"]
        assert usage["max_share"] == 0.25 and usage["fraction"] >= 1.0, usage
        shown = asyncio.run(status_of(stack.redis.url)).tenant_storage  # what `webhooks status` shows
        assert shown[0].tenant_id == a_id and shown[0].fraction is not None and shown[0].fraction >= 1.0
        assert shown[1].fraction is not None and shown[1].fraction < 0.5  # B, far from its share
        # A stays refused while its endpoint is down; B goes on posting and receiving
        for _ in range(10):
            resp = stack.http.post("/v1/events", json={"event_type": "a.b", "payload": {}}, headers=a)
            assert resp.status_code == 429 and resp.json()["error"] == "tenant_storage_full", resp.text
            post_b(20)
            time.sleep(0.2)
        want_b = set(sent_b)
        poll(
            lambda: want_b <= {r.headers["webhook-id"] for r in receiver.to("ok/b")},
            60,
            what=f"all {len(want_b)} of B's events delivered while A is at its share",
        )
        assert stack.alive()
        # A's endpoint is back: its held deliveries go out, and A is accepted again
        receiver.down.clear()
        want_a = set(accepted_a)
        poll(
            lambda: want_a <= {r.headers["webhook-id"] for r in receiver.to("switch/a")},
            120,
            what=f"all {len(want_a)} of A's held events delivered",
            interval_s=0.5,
        )
        poll(
            lambda: (
                stack.http.post(
                    "/v1/events", json={"event_type": "a.b", "payload": {}}, headers=a
                ).status_code
                == 202
            ),
            60,
            what="A accepted again",
        )
        post_b(5)
        assert stack.alive()
    finally:
        receiver.stop()
