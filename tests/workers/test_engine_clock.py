"""The engine on an injected clock: five days of failures without waiting five days.

A real Redis and a real loopback receiver; only time is the test's. The endpoint fails once, the
clock jumps past ``disable_after``, the next failure disables it, and the operational notification
that records it travels through the same engine to the operator URL, signed.
"""

import asyncio
import time
from collections.abc import Iterator

import orjson
import pytest
from standardwebhooks.webhooks import Webhook

from tests.support.poll import poll
from tests.support.receiver import Receiver
from webhooks.intake import operational
from webhooks.intake.ingest import EventIn
from webhooks.intake.operational import Target
from webhooks.outbound.egress import delivery_transport
from webhooks.outbound.secretbox import SecretBox
from webhooks.outbound.signing import generate_secret
from webhooks.queueing import depths, queue, upkeep
from webhooks.runtime.connection import RedisTarget, async_client
from webhooks.stores.policy import Policy
from webhooks.stores.store import Store
from workers.engine import Engine, EngineConfig

DAY_MS = 86400 * 1000
DISABLE_AFTER_MS = 5 * DAY_MS


class Clock:
    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    lp = asyncio.new_event_loop()
    yield lp
    lp.close()


def test_an_endpoint_failing_for_five_days_on_the_engine_clock_is_disabled_and_the_operator_told(
    redis_url: str, receiver: Receiver, loop: asyncio.AbstractEventLoop
) -> None:
    # the last failure lands at about the real time, so the signature's timestamp is current
    clock = Clock(int(time.time() * 1000) - DISABLE_AFTER_MS - 60_000)
    secret = generate_secret()
    target = Target(receiver.url("ok/ops"), secret, window_ms=1000)
    box = SecretBox(None)
    r = async_client(RedisTarget(redis_url))
    store = Store(r, box, Policy(allow_private_targets=True))
    config = EngineConfig(
        schedule=(1.0,) * 5,
        idle_exit_s=0.05,
        breaker=queue.Breaker(failures=1000, disable_after_ms=DISABLE_AFTER_MS),
        ops_window_ms=target.window_ms,
    )

    async def scenario() -> str:
        await operational.ensure(r, box, target, clock())
        tenant = await store.tenants.create_tenant("acme", clock())
        ep = await store.endpoints.create_endpoint(tenant.id, url=receiver.url("fail/days"), now_ms=clock())
        transport = delivery_transport(None, allow_private=True, limit=16, timeout_s=5)
        engine = Engine(r, transport, box, config, clock=clock)
        try:
            await store.accept(tenant.id, [EventIn("a.b", {"n": 1})], clock())
            await engine.drain(1.0)
            await engine.idle()
            assert (await store.endpoints.get_endpoint(tenant.id, ep.id)).disabled is False
            clock.ms += DISABLE_AFTER_MS  # five days on: the retry is due, and fails again
            await upkeep.tick(r, await depths.tenant_ids(r), clock())
            await engine.drain(1.0)
            await engine.idle()
            got = await store.endpoints.get_endpoint(tenant.id, ep.id)
            assert got.disabled and got.disabled_reason == "failing without a success for 432000 s"
            assert await operational.emit_due(r, clock(), target.window_ms) == 1
            await engine.drain(1.0)  # the notification goes out through the same engine
            await engine.idle()
        finally:
            await engine.shutdown()
            await transport.aclose()
            await r.aclose()
        return tenant.id

    tenant_id = loop.run_until_complete(scenario())
    assert len(receiver.to("fail/days")) == 2
    (got,) = poll(lambda: receiver.to("ok/ops"), 10, what="the operational webhook")
    Webhook(secret).verify(got.body, got.headers)
    body = orjson.loads(got.body)
    assert body["type"] == "endpoint.disabled"
    assert (body["data"]["tenant_id"], body["data"]["url"]) == (tenant_id, receiver.url("fail/days"))
