"""An endpoint's revision: every endpoint write bumps it, a lease carries it, the rate limit checks it.

A worker holding deliveries compares the revision its copy of the endpoint was read at with the
current one (``workers/engine.py``); these tests pin the domain half against a real Redis.
"""

import asyncio
from typing import Any

import redis.asyncio

from tests.support.outcomes import outcome_of
from webhooks import keys
from webhooks.intake.ingest import EventIn
from webhooks.outbound.secretbox import SecretBox
from webhooks.queueing import queue
from webhooks.stores.policy import Policy
from webhooks.stores.store import Store

NOW = 1_800_000_000_000


def run(loop: asyncio.AbstractEventLoop, coro: Any) -> Any:
    return loop.run_until_complete(coro)


def test_every_endpoint_write_bumps_its_revision_and_only_its_own(
    ar: "redis.asyncio.Redis", loop: asyncio.AbstractEventLoop
) -> None:
    store = Store(ar, SecretBox(None), Policy(allow_private_targets=True))
    tenant = run(loop, store.tenants.create_tenant("acme", NOW))
    ep = run(loop, store.endpoints.create_endpoint(tenant.id, url="http://127.0.0.1:9/a", now_ms=NOW))
    other = run(loop, store.endpoints.create_endpoint(tenant.id, url="http://127.0.0.1:9/b", now_ms=NOW))

    def revisions() -> dict[str, str]:
        return dict(run(loop, queue.endpoint_revisions(ar, tenant.id, [ep.id, other.id])))

    seen = [revisions()[ep.id]]
    writes = [
        store.endpoints.update_endpoint(tenant.id, ep.id, {"url": "http://127.0.0.1:9/c"}, NOW),
        store.endpoints.update_endpoint(tenant.id, ep.id, {"headers": {"x-a": "1"}}, NOW),
        store.endpoints.update_endpoint(tenant.id, ep.id, {"rate_limit_per_s": 3}, NOW),
        store.endpoints.update_endpoint(tenant.id, ep.id, {"max_in_flight": 2}, NOW),
        store.endpoints.update_endpoint(tenant.id, ep.id, {"disabled": True}, NOW),
        store.endpoints.update_endpoint(tenant.id, ep.id, {"disabled": False}, NOW),
        store.endpoints.rotate_secret(tenant.id, ep.id, 0, NOW),
        store.endpoints.rotate_secret(tenant.id, ep.id, 60, NOW, signing="ed25519"),
        store.endpoints.delete_endpoint(tenant.id, ep.id),
    ]
    for write in writes:
        run(loop, write)
        seen.append(revisions()[ep.id])
    assert len(set(seen)) == len(seen), seen  # each write moved it
    assert revisions()[other.id] == "0"  # the other endpoint's copies stay current


def test_a_lease_carries_the_revision_and_a_stale_one_gets_no_rate_slot(
    ar: "redis.asyncio.Redis", loop: asyncio.AbstractEventLoop
) -> None:
    store = Store(ar, SecretBox(None), Policy(allow_private_targets=True))
    tenant = run(loop, store.tenants.create_tenant("acme", NOW))
    ep = run(
        loop,
        store.endpoints.create_endpoint(
            tenant.id, url="http://127.0.0.1:9/a", now_ms=NOW, rate_limit_per_s=1
        ),
    )
    run(loop, store.endpoints.update_endpoint(tenant.id, ep.id, {"description": "one"}, NOW))
    run(loop, store.accept(tenant.id, [EventIn("a.b", {"n": 1})], NOW))
    lease = run(loop, queue.lease(ar, tenant.id, 10, 10_000, NOW))
    assert [d.endpoint_id for d in lease.deliveries] == [ep.id]
    assert lease.revisions == {ep.id: "1"}

    slot = keys.tenant_base(tenant.id) + f"rl:{ep.id}:{NOW // 1000}"
    assert run(loop, queue.take_send_slot(ar, tenant.id, ep.id, 1, NOW, "1")) == 0  # current: granted
    run(loop, store.endpoints.update_endpoint(tenant.id, ep.id, {"url": "http://127.0.0.1:9/b"}, NOW))
    assert run(loop, queue.take_send_slot(ar, tenant.id, ep.id, 1, NOW, "1")) == queue.STALE
    assert run(loop, ar.get(slot)) == "1"  # the stale ask took no slot
    assert (
        run(loop, queue.take_send_slot(ar, tenant.id, ep.id, 1, NOW, "2")) > 0
    )  # current: the window is full


def test_the_engine_disabling_an_endpoint_on_410_bumps_its_revision(
    ar: "redis.asyncio.Redis", loop: asyncio.AbstractEventLoop
) -> None:
    store = Store(ar, SecretBox(None), Policy(allow_private_targets=True))
    tenant = run(loop, store.tenants.create_tenant("acme", NOW))
    ep = run(loop, store.endpoints.create_endpoint(tenant.id, url="http://127.0.0.1:9/a", now_ms=NOW))
    run(loop, store.accept(tenant.id, [EventIn("a.b", {"n": 1}), EventIn("a.b", {"n": 2})], NOW))
    lease = run(loop, queue.lease(ar, tenant.id, 10, 10_000, NOW))
    gone = outcome_of(lease.id, lease.deliveries[0], "dead", 410, at_ms=NOW, gone=True)
    run(loop, queue.complete(ar, [gone], [], NOW))
    assert (run(loop, store.endpoints.get_endpoint(tenant.id, ep.id))).disabled
    # the other delivery, still held under the lease, is on a stale copy now
    assert run(loop, queue.endpoint_revisions(ar, tenant.id, [ep.id])) != lease.revisions
