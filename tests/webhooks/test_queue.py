"""The queue's Lua transitions against a real Redis: atomic, lease-guarded, recoverable."""

import pytest

from webhooks import keys, queue
from webhooks.queue import NewEvent, Outcome

NOW = 1_800_000_000_000


def new_event(event_id: str, n: int = 2, key: str = "") -> NewEvent:
    return NewEvent(
        "ten_1",
        event_id,
        "a.b",
        NOW,
        '{"data":1}',
        key,
        [(f"dlv_{event_id}_{i}", f"ep_{i}") for i in range(n)],
    )


def test_ingest_stores_event_deliveries_and_ready_in_one_step(ar, loop, rds) -> None:  # type: ignore[no-untyped-def]
    assert loop.run_until_complete(queue.ingest(ar, [new_event("e1"), new_event("e2", 1)])) == [None, None]
    assert rds.lrange(keys.READY, 0, -1) == ["dlv_e1_0", "dlv_e1_1", "dlv_e2_0"]
    assert rds.hget(keys.delivery("dlv_e1_1"), "status") == "pending"
    assert rds.exists(keys.event("ten_1", "e1"))


def test_same_event_id_or_key_returns_the_stored_event_and_queues_nothing(ar, loop, rds) -> None:  # type: ignore[no-untyped-def]
    loop.run_until_complete(queue.ingest(ar, [new_event("e1", key="k")]))
    again = loop.run_until_complete(queue.ingest(ar, [new_event("e1"), new_event("other-id", key="k")]))
    assert [a and a["id"] for a in again] == ["e1", "e1"]
    assert rds.llen(keys.READY) == 2


def _lease(ar, loop, n=10, now=NOW):  # type: ignore[no-untyped-def]
    return loop.run_until_complete(queue.lease(ar, n, 2000, now))


def _ok(d: queue.LeasedDelivery, lease_id: str) -> Outcome:
    return Outcome(
        d.id,
        lease_id,
        "succeeded",
        d.attempt_count + 1,
        d.series_attempts + 1,
        d.tenant_id,
        d.endpoint_id,
        attempt={"number": 1},
        ok=True,
        status_code=200,
    )


def test_lease_hands_out_deliveries_with_their_event_and_endpoint(ar, loop, rds) -> None:  # type: ignore[no-untyped-def]
    loop.run_until_complete(queue.ingest(ar, [new_event("e1")]))
    lease = _lease(ar, loop)
    assert lease is not None and [d.id for d in lease.deliveries] == ["dlv_e1_0", "dlv_e1_1"]
    assert lease.events["ten_1:e1"]["body"] == '{"data":1}'
    assert rds.llen(keys.READY) == 0
    assert rds.lrange(keys.lease(lease.id), 0, -1) == ["dlv_e1_0", "dlv_e1_1"]
    assert rds.zscore(keys.LEASES, lease.id) == NOW + 2000
    assert rds.hget(keys.delivery("dlv_e1_0"), "status") == "delivering"
    assert _lease(ar, loop) is None


def test_complete_applies_outcomes_and_releases_the_lease(ar, loop, rds) -> None:  # type: ignore[no-untyped-def]
    loop.run_until_complete(queue.ingest(ar, [new_event("e1")]))
    lease = _lease(ar, loop)
    d0, d1 = lease.deliveries
    retry = Outcome(
        d1.id,
        lease.id,
        "retrying",
        1,
        1,
        d1.tenant_id,
        d1.endpoint_id,
        attempt={"number": 1},
        due_ms=NOW + 5000,
        status_code=500,
    )
    applied = loop.run_until_complete(queue.complete(ar, [_ok(d0, lease.id), retry], [lease.id], NOW))
    assert applied == 2
    assert rds.hget(keys.delivery(d0.id), "status") == "succeeded"
    assert rds.hget(keys.delivery(d1.id), "status") == "retrying"
    assert rds.zscore(keys.DUE, d1.id) == NOW + 5000
    assert not rds.exists(keys.lease(lease.id)) and rds.zscore(keys.LEASES, lease.id) is None
    assert rds.llen(keys.attempts(d0.id)) == 1


def test_outcome_of_a_reclaimed_lease_is_dropped(ar, loop, rds) -> None:  # type: ignore[no-untyped-def]
    loop.run_until_complete(queue.ingest(ar, [new_event("e1", 1)]))
    stale = _lease(ar, loop)
    assert loop.run_until_complete(queue.reclaim(ar, NOW + 2001)) == (1, 1)
    assert rds.lrange(keys.READY, 0, -1) == ["dlv_e1_0"]
    fresh = _lease(ar, loop)
    d = stale.deliveries[0]
    assert loop.run_until_complete(queue.complete(ar, [_ok(d, stale.id)], [stale.id], NOW)) == 0
    assert rds.hget(keys.delivery(d.id), "status") == "delivering"
    assert rds.hget(keys.delivery(d.id), "lease") == fresh.id


def test_reclaim_returns_only_unrecorded_deliveries_to_the_front(ar, loop, rds) -> None:  # type: ignore[no-untyped-def]
    loop.run_until_complete(queue.ingest(ar, [new_event("e1", 3)]))
    lease = _lease(ar, loop)
    loop.run_until_complete(queue.complete(ar, [_ok(lease.deliveries[0], lease.id)], [], NOW))
    loop.run_until_complete(queue.ingest(ar, [new_event("e2", 1)]))
    assert loop.run_until_complete(queue.reclaim(ar, NOW + 1000)) == (0, 0), "not expired yet"
    assert loop.run_until_complete(queue.reclaim(ar, NOW + 2000)) == (1, 2)
    assert rds.lrange(keys.READY, 0, -1) == ["dlv_e1_1", "dlv_e1_2", "dlv_e2_0"]
    assert rds.hget(keys.delivery("dlv_e1_0"), "status") == "succeeded"


def test_heartbeat_extends_live_leases_but_never_revives_reclaimed_ones(ar, loop, rds) -> None:  # type: ignore[no-untyped-def]
    loop.run_until_complete(queue.ingest(ar, [new_event("e1", 1)]))
    lease = _lease(ar, loop)
    loop.run_until_complete(queue.heartbeat(ar, [lease.id], NOW + 9000))
    assert rds.zscore(keys.LEASES, lease.id) == NOW + 9000
    loop.run_until_complete(queue.reclaim(ar, NOW + 9000))
    loop.run_until_complete(queue.heartbeat(ar, [lease.id], NOW + 20000))
    assert rds.zscore(keys.LEASES, lease.id) is None


def test_promote_moves_due_deliveries_back_to_ready(ar, loop, rds) -> None:  # type: ignore[no-untyped-def]
    loop.run_until_complete(queue.ingest(ar, [new_event("e1", 2)]))
    lease = _lease(ar, loop)
    outs = [
        Outcome(d.id, lease.id, "retrying", 1, 1, d.tenant_id, d.endpoint_id, due_ms=NOW + 1000 * (i + 1))
        for i, d in enumerate(lease.deliveries)
    ]
    loop.run_until_complete(queue.complete(ar, outs, [lease.id], NOW))
    assert loop.run_until_complete(queue.promote(ar, NOW + 1500)) == 1
    assert rds.lrange(keys.READY, 0, -1) == ["dlv_e1_0"]
    assert rds.hget(keys.delivery("dlv_e1_0"), "status") == "pending"
    assert rds.zrange(keys.DUE, 0, -1) == ["dlv_e1_1"]


def test_replay_requeues_dead_only_and_resets_the_series(ar, loop, rds) -> None:  # type: ignore[no-untyped-def]
    loop.run_until_complete(queue.ingest(ar, [new_event("e1", 2)]))
    lease = _lease(ar, loop)
    d0, d1 = lease.deliveries
    dead = Outcome(d0.id, lease.id, "dead", 4, 4, d0.tenant_id, d0.endpoint_id)
    loop.run_until_complete(queue.complete(ar, [dead, _ok(d1, lease.id)], [lease.id], NOW))
    assert rds.zscore(keys.DEAD_ALL, d0.id) is not None
    before = loop.run_until_complete(queue.requeue(ar, [d0.id, d1.id, "missing"], mode="replay", now_ms=NOW))
    assert before == ["dead", "succeeded", ""]
    assert rds.lrange(keys.READY, 0, -1) == [d0.id]
    assert rds.hget(keys.delivery(d0.id), "series_attempts") == "0"
    assert rds.hget(keys.delivery(d0.id), "attempt_count") == "4", "attempt numbering continues"
    assert rds.zscore(keys.DEAD_ALL, d0.id) is None and rds.zcard(keys.tenant_dead("ten_1")) == 0


def test_manual_retry_requeues_any_settled_delivery_once(ar, loop, rds) -> None:  # type: ignore[no-untyped-def]
    loop.run_until_complete(queue.ingest(ar, [new_event("e1", 1)]))
    assert loop.run_until_complete(queue.requeue(ar, ["dlv_e1_0"], mode="retry", now_ms=NOW)) == ["pending"]
    assert rds.llen(keys.READY) == 1, "already queued: not pushed twice"
    lease = _lease(ar, loop)
    assert loop.run_until_complete(queue.requeue(ar, ["dlv_e1_0"], mode="retry", now_ms=NOW)) == [
        "delivering"
    ]
    loop.run_until_complete(queue.complete(ar, [_ok(lease.deliveries[0], lease.id)], [lease.id], NOW))
    assert loop.run_until_complete(queue.requeue(ar, ["dlv_e1_0"], mode="retry", now_ms=NOW)) == ["succeeded"]
    assert rds.lrange(keys.READY, 0, -1) == ["dlv_e1_0"]


def test_settled_deliveries_expire_and_requeued_ones_do_not(ar, loop, rds) -> None:  # type: ignore[no-untyped-def]
    loop.run_until_complete(queue.ingest(ar, [new_event("e1", 2)], retention_ms=60_000))
    assert 0 < rds.pttl(keys.event("ten_1", "e1")) <= 60_000
    lease = _lease(ar, loop)
    d0, d1 = lease.deliveries
    assert rds.pttl(keys.delivery(d0.id)) == -1, "an active delivery never expires"
    dead = Outcome(d1.id, lease.id, "dead", 4, 4, d1.tenant_id, d1.endpoint_id, attempt={"number": 4})
    loop.run_until_complete(
        queue.complete(ar, [_ok(d0, lease.id), dead], [lease.id], NOW, retention_ms=5_000)
    )
    assert 0 < rds.pttl(keys.delivery(d0.id)) <= 5_000
    assert 0 < rds.pttl(keys.attempts(d1.id)) <= 5_000
    loop.run_until_complete(queue.requeue(ar, [d1.id], mode="replay", now_ms=NOW, retention_ms=90_000))
    assert rds.pttl(keys.delivery(d1.id)) == -1 and rds.pttl(keys.attempts(d1.id)) == -1
    assert rds.pttl(keys.event("ten_1", "e1")) > 60_000, (
        "a replay keeps the event for another retention period"
    )


def test_trim_drops_index_entries_older_than_the_cutoff(ar, loop, rds) -> None:  # type: ignore[no-untyped-def]
    from webhooks import ids

    old, new = ids.new_id(ids.DELIVERY, NOW - 10_000), ids.new_id(ids.DELIVERY, NOW)
    rds.zadd(keys.TENANTS, {"ten_1": 0})
    rds.zadd(keys.tenant_endpoints("ten_1"), {"ep_1": 0})
    for index in (keys.tenant_deliveries("ten_1"), keys.endpoint_deliveries("ep_1")):
        rds.zadd(index, {old: 0, new: 0})
    rds.zadd(keys.DEAD_ALL, {old: NOW - 10_000, new: NOW})
    rds.zadd(keys.tenant_dead("ten_1"), {old: NOW - 10_000, new: NOW})
    assert loop.run_until_complete(queue.trim(ar, NOW - 5_000)) == 4
    for index in (
        keys.tenant_deliveries("ten_1"),
        keys.endpoint_deliveries("ep_1"),
        keys.DEAD_ALL,
        keys.tenant_dead("ten_1"),
    ):
        assert rds.zrange(index, 0, -1) == [new], index


def test_ingest_routed_with_a_stale_endpoint_version_writes_nothing(ar, loop, rds) -> None:  # type: ignore[no-untyped-def]
    from dataclasses import replace

    rds.set(keys.endpoint_version("ten_1"), 3)
    fresh = replace(new_event("e1"), routes_version="3")
    stale = replace(new_event("e2"), routes_version="2")
    with pytest.raises(queue.StaleRoutes) as err:
        loop.run_until_complete(queue.ingest(ar, [fresh, stale]))
    assert err.value.tenant_id == "ten_1"
    assert rds.llen(keys.READY) == 0 and not rds.exists(keys.event("ten_1", "e1"))
    assert loop.run_until_complete(queue.ingest(ar, [fresh])) == [None]


def test_releasing_a_lease_requeues_what_is_still_under_it(ar, loop, rds) -> None:  # type: ignore[no-untyped-def]
    """A lease's outcomes may be written in two calls; if the first was lost (failover with lag),
    the release by the second must not orphan the deliveries the first one covered."""
    loop.run_until_complete(queue.ingest(ar, [new_event("e1", 2)]))
    lease = _lease(ar, loop)
    d0, d1 = lease.deliveries
    assert loop.run_until_complete(queue.complete(ar, [_ok(d1, lease.id)], [lease.id], NOW)) == 1
    assert rds.hget(keys.delivery(d0.id), "status") == "pending"
    assert rds.lrange(keys.READY, 0, -1) == [d0.id]
    assert rds.zscore(keys.LEASES, lease.id) is None and not rds.exists(keys.lease(lease.id))
