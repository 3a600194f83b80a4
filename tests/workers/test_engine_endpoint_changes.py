"""A lease held past ``endpoint_recheck_s`` is re-checked before anything of it is sent.

Without a rate limit a lease's requests start as it arrives, so a held copy of an endpoint is
rarely old; when it is (a stalled event loop, a long queue of tasks), the engine reads the current
revisions first. Here the stall is made explicit: the engine is handed a lease taken a second
ago, the endpoint having been changed meanwhile. A real Redis and a real loopback receiver.
"""

import asyncio
import time
from collections.abc import Iterator

import pytest

from tests.support.receiver import Receiver
from webhooks.intake.ingest import EventIn
from webhooks.outbound.egress import delivery_transport
from webhooks.outbound.secretbox import SecretBox
from webhooks.queueing import queue
from webhooks.runtime.connection import RedisTarget, async_client
from webhooks.stores.policy import Policy
from webhooks.stores.store import Store
from workers.engine import Engine, EngineConfig


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    lp = asyncio.new_event_loop()
    yield lp
    lp.close()


@pytest.mark.parametrize("change", ["none", "url", "delete"])
def test_a_lease_held_past_the_recheck_bound_is_not_sent_on_a_changed_endpoint(
    redis_url: str, receiver: Receiver, loop: asyncio.AbstractEventLoop, change: str
) -> None:
    box = SecretBox(None)
    r = async_client(RedisTarget(redis_url))
    store = Store(r, box, Policy(allow_private_targets=True))
    config = EngineConfig(schedule=(1.0,), idle_exit_s=0.05, endpoint_recheck_s=0.1)

    async def scenario() -> list[tuple[str, int]]:
        now_ms = int(time.time() * 1000)
        tenant = await store.tenants.create_tenant("acme", now_ms)
        ep = await store.endpoints.create_endpoint(tenant.id, url=receiver.url("ok/old"), now_ms=now_ms)
        await store.accept(tenant.id, [EventIn("a.b", {"n": i}) for i in range(5)], now_ms)
        transport = delivery_transport(None, allow_private=True, limit=16, timeout_s=5)
        engine = Engine(r, transport, box, config)
        try:
            held_since = time.monotonic() - 1.0  # as if the lease had waited a second to start
            lease = await queue.lease(r, tenant.id, 16, 10_000, now_ms)
            assert len(lease.deliveries) == 5
            if change == "url":
                await store.endpoints.update_endpoint(
                    tenant.id, ep.id, {"url": receiver.url("ok/new")}, now_ms
                )
            elif change == "delete":
                await store.endpoints.delete_endpoint(tenant.id, ep.id)
            await engine.drain(0)  # starts the engine's writer and heartbeat, leases nothing
            engine._start_lease(lease, held_since)
            await engine.idle()
            await engine.drain(1.0)  # what was handed back is leased again, under the new settings
            await engine.idle()
            page = await store.deliveries.list_deliveries(tenant.id, limit=100)
            # the held lease was re-read once, and what changed was handed back, not sent
            assert engine.totals.rechecks == 1
            assert engine.totals.changed == (0 if change == "none" else 5)
        finally:
            await engine.shutdown()
            await transport.aclose()
            await r.aclose()
        return sorted((d.status, d.attempt_count) for d in page.data)

    statuses = loop.run_until_complete(scenario())
    if change == "none":  # re-checked and still current: sent on the lease's copy
        assert (len(receiver.to("ok/old")), statuses) == (5, [("succeeded", 1)] * 5)
    elif change == "url":
        assert (len(receiver.to("ok/old")), len(receiver.to("ok/new"))) == (0, 5)
        assert statuses == [("succeeded", 1)] * 5
    else:
        assert receiver.all() == []
        assert statuses == [("dead", 0)] * 5  # ended without an attempt
