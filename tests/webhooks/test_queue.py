"""The queue's Lua transitions against a real Redis: fair, capped, lease-guarded, recoverable, trimmable."""

import asyncio
import dataclasses
from typing import Any

import orjson
import redis
import redis.asyncio

from tests.support.outcomes import outcome_of
from webhooks import ids, keys
from webhooks.queueing import arrivals, history, queue, shares, upkeep
from webhooks.queueing.arrivals import NewEvent
from webhooks.queueing.queue import Breaker, Lease, Outcome

NOW = 1_800_000_000_000
A, B = "ten_a", "ten_b"


def endpoint(rds: "redis.Redis", tenant: str, ep: str, *, mif: int = 64, fifo: bool = False) -> None:
    doc = {"id": ep, "tenant_id": tenant, "url": "http://127.0.0.1:9/", "secrets": []}
    rds.hset(keys.endpoint(tenant, ep), mapping={"doc": orjson.dumps(doc), "disabled": "0", "mif": mif})
    if fifo:
        rds.hset(keys.endpoint(tenant, ep), "fifo", "1")


def event(tenant: str, event_id: str, endpoints: list[str], key: str = "", at: int = NOW) -> NewEvent:
    stem = ids.new_stem(len(endpoints), at)
    record = history.event_record("a.b", at, stem, len(endpoints), b'{"n":1}')
    deliveries = list(zip(ids.stem_members(stem, len(endpoints)), endpoints, strict=True))
    return NewEvent(tenant, event_id, "a.b", at, record, key, deliveries)


def run(loop: asyncio.AbstractEventLoop, coro: Any) -> Any:
    return loop.run_until_complete(coro)


def ingest(ar: "redis.asyncio.Redis", loop: asyncio.AbstractEventLoop, *events: NewEvent) -> list[Any]:
    return list(run(loop, arrivals.ingest(ar, list(events))))


def lease_next(
    ar: "redis.asyncio.Redis", loop: asyncio.AbstractEventLoop, n: int = 100, now: int = NOW
) -> Lease | None:
    tenant = run(loop, queue.next_tenant(ar))
    return None if tenant is None else run(loop, queue.lease(ar, tenant, n, 2000, now, quantum=n))


def nothing_leased(lease: Lease | None) -> bool:
    """No tenant on the rotation, or one that gave nothing."""
    return lease is None or lease.deliveries == []


def outcome(lease: Lease, i: int, status: str = "succeeded", code: int = 200, **kw: Any) -> Outcome:
    return outcome_of(lease.id, lease.deliveries[i], status, code, at_ms=NOW, **kw)


def complete(
    ar: Any, loop: Any, outcomes: list[Outcome], leases: list[Lease], now: int = NOW, **kw: Any
) -> Any:
    return run(loop, queue.complete(ar, outcomes, [(x.tenant_id, x.id) for x in leases], now, **kw))


def status(rds: "redis.Redis", tenant: str, delivery_id: str) -> str | None:
    return rds.hget(keys.delivery(tenant, delivery_id), "s")


def test_ingest_stores_the_event_its_deliveries_and_queues_them_per_endpoint(ar, loop, rds) -> None:  # type: ignore[no-untyped-def]
    endpoint(rds, A, "ep_1")
    endpoint(rds, A, "ep_2")
    e = event(A, "e1", ["ep_1", "ep_2"])
    assert ingest(ar, loop, e) == [None]
    (d1, _), (d2, _) = e.deliveries
    assert rds.lrange(keys.ready(A, "ep_1"), 0, -1) == [d1]
    assert rds.lrange(keys.ready(A, "ep_2"), 0, -1) == [d2]
    assert rds.lrange(keys.runnable(A), 0, -1) == ["ep_1", "ep_2"]
    assert rds.lrange(keys.ACTIVE, 0, -1) == [A]
    assert status(rds, A, d1) == "pending" and rds.zscore(keys.events(A), "e1") == NOW
    assert history.StoredEvent(A, "e1", rds.get(keys.event(A, "e1"))).delivery_ids == [d1, d2]


def test_same_event_id_or_key_returns_the_stored_event_and_queues_nothing(ar, loop, rds) -> None:  # type: ignore[no-untyped-def]
    endpoint(rds, A, "ep_1")
    ingest(ar, loop, event(A, "e1", ["ep_1"], key="k"))
    again = ingest(ar, loop, event(A, "e1", ["ep_1"]), event(A, "other", ["ep_1"], key="k"))
    assert [a.event_id for a in again] == ["e1", "e1"]
    assert rds.llen(keys.ready(A, "ep_1")) == 1
    assert rds.lrange(keys.ACTIVE, 0, -1) == [A]  # activated once


def test_stale_routes_write_nothing_for_that_tenant_only(ar, loop, rds) -> None:  # type: ignore[no-untyped-def]
    endpoint(rds, A, "ep_1")
    endpoint(rds, B, "ep_2")
    rds.set(keys.endpoint_version(A), "7")
    stale = dataclasses.replace(event(A, "e1", ["ep_1"]), routes_version="6")
    out = ingest(ar, loop, stale, event(B, "e2", ["ep_2"]))
    assert isinstance(out[0], arrivals.StaleRoutes) and out[1] is None
    assert not rds.exists(keys.event(A, "e1")) and rds.exists(keys.event(B, "e2"))


def test_workers_take_tenants_round_robin_whatever_one_holds(ar, loop, rds) -> None:  # type: ignore[no-untyped-def]
    endpoint(rds, A, "ep_busy", mif=10_000)
    endpoint(rds, B, "ep_quiet")
    ingest(ar, loop, *[event(A, f"a{i}", ["ep_busy"]) for i in range(1000)])
    ingest(ar, loop, event(B, "b1", ["ep_quiet"]))
    first = lease_next(ar, loop, n=50)
    second = lease_next(ar, loop, n=50)
    assert first is not None and second is not None
    assert (first.tenant_id, len(first.deliveries)) == (A, 50)
    assert (second.tenant_id, len(second.deliveries)) == (B, 1)  # not behind A's 950 others
    assert rds.smembers(keys.IDLE) == {B}  # B had nothing left: reported idle...
    assert run(loop, upkeep.retire_idle(ar)) == 1
    assert rds.lrange(keys.ACTIVE, 0, -1) == [A]  # ...and the scheduler took it off the rotation


def test_an_endpoint_gives_no_more_than_its_free_slots_across_all_leases(ar, loop, rds) -> None:  # type: ignore[no-untyped-def]
    endpoint(rds, A, "ep_1", mif=3)
    ingest(ar, loop, *[event(A, f"e{i}", ["ep_1"]) for i in range(10)])
    one = lease_next(ar, loop, n=2)
    two = lease_next(ar, loop, n=100)
    assert one is not None and two is not None
    assert (len(one.deliveries), len(two.deliveries)) == (2, 1)  # 3 slots, shared by both "workers"
    assert nothing_leased(lease_next(ar, loop))
    complete(ar, loop, [outcome(one, 0)], [])  # one slot comes back
    three = lease_next(ar, loop)
    assert three is not None and len(three.deliveries) == 1


def test_within_a_tenant_endpoints_take_turns(ar, loop, rds) -> None:  # type: ignore[no-untyped-def]
    for ep in ("ep_1", "ep_2"):
        endpoint(rds, A, ep)
    ingest(ar, loop, *[event(A, f"x{i}", ["ep_1"]) for i in range(20)], event(A, "y", ["ep_2"]))
    tenant = run(loop, queue.next_tenant(ar))
    lease = run(loop, queue.lease(ar, tenant, 6, 2000, NOW, quantum=3))
    assert [d.endpoint_id for d in lease.deliveries] == ["ep_1"] * 3 + ["ep_2"] + ["ep_1"] * 2


def test_outcomes_apply_only_under_the_lease_and_free_the_slots(ar, loop, rds) -> None:  # type: ignore[no-untyped-def]
    endpoint(rds, A, "ep_1")
    ingest(ar, loop, event(A, "e1", ["ep_1"]), event(A, "e2", ["ep_1"]))
    lease = lease_next(ar, loop)
    assert lease is not None and rds.hget(keys.endpoint(A, "ep_1"), "if") == "2"
    stale = Outcome(lease.deliveries[0].id, "lse_other", "dead", 1, 1, A, "ep_1")
    done = complete(ar, loop, [stale, outcome(lease, 1)], [lease])
    assert done.applied == 1
    assert status(rds, A, lease.deliveries[1].id) == "succeeded"
    # the unrecorded one went back to the head of its ready list when the lease was released
    assert rds.lrange(keys.ready(A, "ep_1"), 0, -1) == [lease.deliveries[0].id]
    assert status(rds, A, lease.deliveries[0].id) == "pending"
    assert rds.hget(keys.endpoint(A, "ep_1"), "if") == "0"
    assert rds.ttl(keys.delivery(A, lease.deliveries[1].id)) > 0  # settled: expires


def test_expired_leases_are_reclaimed_in_order_and_never_revived(ar, loop, rds) -> None:  # type: ignore[no-untyped-def]
    endpoint(rds, A, "ep_1")
    ingest(ar, loop, *[event(A, f"e{i}", ["ep_1"]) for i in range(3)])
    lease = lease_next(ar, loop)
    assert lease is not None
    assert rds.zscore(keys.WAKE, A) == NOW + 2000  # the scheduler will look at the expiry
    done = run(loop, upkeep.tick(ar, [A], NOW + 2001))
    assert (done.leases, done.reclaimed) == (1, 3)
    assert rds.lrange(keys.ready(A, "ep_1"), 0, -1) == [d.id for d in lease.deliveries]
    assert rds.hget(keys.endpoint(A, "ep_1"), "if") == "0"
    assert run(loop, queue.heartbeat(ar, [(A, lease.id)], NOW + 9000)) == [lease.id]
    assert A in rds.lrange(keys.ACTIVE, 0, -1)


def test_retries_wait_in_their_endpoints_due_zset_until_the_tick(ar, loop, rds) -> None:  # type: ignore[no-untyped-def]
    endpoint(rds, A, "ep_1")
    ingest(ar, loop, event(A, "e1", ["ep_1"]))
    lease = lease_next(ar, loop)
    assert lease is not None
    complete(ar, loop, [outcome(lease, 0, "retrying", 500, due_ms=NOW + 5000)], [lease])
    d = lease.deliveries[0].id
    assert status(rds, A, d) == "retrying" and rds.zscore(keys.due(A, "ep_1"), d) == NOW + 5000
    run(loop, upkeep.tick(ar, [A], NOW + 4999))
    assert rds.llen(keys.ready(A, "ep_1")) == 0
    assert rds.zscore(keys.WAKE, A) == NOW + 5000
    run(loop, upkeep.tick(ar, [A], NOW + 5000))
    assert rds.lrange(keys.ready(A, "ep_1"), 0, -1) == [d] and status(rds, A, d) == "pending"


def test_a_fifo_endpoint_holds_everything_behind_a_failing_delivery(ar, loop, rds) -> None:  # type: ignore[no-untyped-def]
    endpoint(rds, A, "ep_f", fifo=True)
    ingest(ar, loop, *[event(A, f"e{i}", ["ep_f"]) for i in range(3)])
    first = lease_next(ar, loop)
    assert first is not None and len(first.deliveries) == 1  # one at a time
    head = first.deliveries[0].id
    complete(ar, loop, [outcome(first, 0, "retrying", 500, due_ms=NOW + 5000)], [first])
    assert rds.lindex(keys.ready(A, "ep_f"), 0) == head
    assert nothing_leased(lease_next(ar, loop, now=NOW + 10))
    run(loop, upkeep.tick(ar, [A], NOW + 5000))
    again = lease_next(ar, loop, now=NOW + 5000)
    assert again is not None and [d.id for d in again.deliveries] == [head]


def test_the_breaker_opens_probes_and_lets_the_waiting_deliveries_go_at_once(ar, loop, rds) -> None:  # type: ignore[no-untyped-def]
    breaker = Breaker(failures=2, pause_ms=1000, max_pause_ms=4000, disable_after_ms=0)
    endpoint(rds, A, "ep_1")
    ingest(ar, loop, *[event(A, f"e{i}", ["ep_1"]) for i in range(5)])
    lease = lease_next(ar, loop, n=2)
    assert lease is not None
    fails = [outcome(lease, i, "retrying", 500, due_ms=NOW + 60_000) for i in range(2)]
    assert complete(ar, loop, fails, [lease], breaker=breaker).breakers_opened == 1
    assert rds.hget(keys.endpoint(A, "ep_1"), "pu") == str(NOW + 1000)
    assert nothing_leased(lease_next(ar, loop, now=NOW + 10))  # paused: three wait, no attempt burnt
    run(loop, upkeep.tick(ar, [A], NOW + 1000))
    probe = lease_next(ar, loop, now=NOW + 1000)
    assert probe is not None and len(probe.deliveries) == 1  # half-open: one request
    complete(ar, loop, [outcome(probe, 0)], [probe], now=NOW + 1001, breaker=breaker)
    # closed: the two failed ones left their due zset at once, not after their 60 s
    assert rds.zcard(keys.due(A, "ep_1")) == 0
    assert rds.llen(keys.ready(A, "ep_1")) == 4
    rest = lease_next(ar, loop, now=NOW + 1002)
    assert rest is not None and len(rest.deliveries) == 4


def test_throttle_answers_halve_the_endpoint_cap_and_successes_raise_it(ar, loop, rds) -> None:  # type: ignore[no-untyped-def]
    endpoint(rds, A, "ep_1", mif=8)
    ingest(ar, loop, *[event(A, f"e{i}", ["ep_1"]) for i in range(10)])
    lease = lease_next(ar, loop, n=1)
    assert lease is not None
    complete(ar, loop, [outcome(lease, 0, "retrying", 502, due_ms=NOW + 60_000, throttle=True)], [lease])
    assert rds.hget(keys.endpoint(A, "ep_1"), "cap") == "4"
    lease = lease_next(ar, loop)
    assert lease is not None and len(lease.deliveries) == 4
    complete(ar, loop, [outcome(lease, 0)], [])
    assert rds.hget(keys.endpoint(A, "ep_1"), "cap") == "5"


def test_replay_and_retry_requeue_onto_the_endpoint(ar, loop, rds) -> None:  # type: ignore[no-untyped-def]
    endpoint(rds, A, "ep_1")
    ingest(ar, loop, event(A, "e1", ["ep_1"]), event(A, "e2", ["ep_1"]))
    lease = lease_next(ar, loop)
    assert lease is not None
    complete(ar, loop, [outcome(lease, 0, "dead", 500), outcome(lease, 1)], [lease])
    dead, ok = (d.id for d in lease.deliveries)
    assert rds.zscore(keys.tenant_dead(A), dead) is not None
    before = run(loop, queue.requeue(ar, A, [dead, ok], mode="replay", now_ms=NOW))
    assert before == ["dead", "succeeded"]
    assert rds.lrange(keys.ready(A, "ep_1"), 0, -1) == [dead]
    assert rds.hget(keys.delivery(A, dead), "sn") == "0" and rds.ttl(keys.delivery(A, dead)) == -1
    assert run(loop, queue.requeue(ar, A, [ok], mode="retry", now_ms=NOW)) == ["succeeded"]
    assert rds.lrange(keys.ready(A, "ep_1"), 0, -1) == [dead, ok]


def test_trim_drops_settled_history_oldest_first_and_never_pending_work(ar, loop, rds) -> None:  # type: ignore[no-untyped-def]
    endpoint(rds, A, "ep_1", mif=1000)
    events = [event(A, f"e{i}", ["ep_1"], at=NOW + i) for i in range(6)]
    ingest(ar, loop, *events)
    lease = lease_next(ar, loop)
    assert lease is not None
    by_event = {d.event_id: i for i, d in enumerate(lease.deliveries)}
    outs = [outcome(lease, by_event[e]) for e in ("e0", "e2", "e4", "e5")]
    outs.append(outcome(lease, by_event["e3"], "dead", 500))
    complete(ar, loop, outs, [])  # e1 stays delivering
    done = run(loop, upkeep.trim(ar, [A], 0, most=4, now_ms=NOW + 10**9))
    assert done.events == 2  # e0 and e2; e1 is at work, e3 is a dead letter
    assert not rds.exists(keys.event(A, "e0")) and rds.exists(keys.event(A, "e1"))
    done = run(loop, upkeep.trim(ar, [A], 0, most=4, now_ms=NOW + 10**9))  # carries on after its cursor
    assert done.events == 2 and done.exhausted == [A]
    assert rds.zrange(keys.events(A), 0, -1) == ["e1", "e3"]
    # fresh work stops the scan: what comes after it is fresher still
    assert run(loop, upkeep.trim(ar, [A], 0, most=100, now_ms=NOW)).scanned == 1
    assert run(loop, upkeep.trim(ar, [A], 0, most=100, now_ms=NOW + 10**9)).events == 0
    rds.hdel(keys.tenant(A), "tc", "tk")
    assert run(loop, upkeep.trim(ar, [A], 0, most=100, allow_dead=True, now_ms=NOW + 10**9)).events == 1


def test_the_sweep_puts_back_an_active_tenant_missing_from_the_rotation(ar, loop, rds) -> None:  # type: ignore[no-untyped-def]
    endpoint(rds, A, "ep_1")
    ingest(ar, loop, event(A, "e1", ["ep_1"]))
    rds.delete(keys.ACTIVE)  # as if the process died between the ingest script and the RPUSH
    assert run(loop, upkeep.repair(ar, [A], NOW)) == 1
    assert rds.lrange(keys.ACTIVE, 0, -1) == [A]
    assert run(loop, upkeep.repair(ar, [A], NOW)) == 0
    rds.rpush(keys.ACTIVE, A, A)  # duplicates left by crashes: one entry stays
    run(loop, upkeep.repair(ar, [A], NOW))
    assert rds.lrange(keys.ACTIVE, 0, -1) == [A]


def test_racing_deactivations_never_drop_a_tenant_with_work(ar, loop, rds) -> None:  # type: ignore[no-untyped-def]
    """Two workers' leases find nothing runnable while a completion makes the tenant runnable
    again in between: whatever order their reports arrive in, the tenant keeps an entry."""
    endpoint(rds, A, "ep_1", mif=1)
    ingest(ar, loop, event(A, "e1", ["ep_1"]), event(A, "e2", ["ep_1"]))
    first = lease_next(ar, loop)  # takes the one slot: nothing runnable left -> idle
    assert first is not None and len(first.deliveries) == 1
    assert nothing_leased(lease_next(ar, loop))  # another worker: idle again
    complete(ar, loop, [outcome(first, 0)], [first])  # a slot comes back: runnable, active again
    run(loop, upkeep.retire_idle(ar))
    assert A in rds.lrange(keys.ACTIVE, 0, -1)
    second = lease_next(ar, loop)
    assert second is not None and len(second.deliveries) == 1


def test_stale_idle_reports_racing_activations_never_drop_a_tenant_with_work(ar, loop, rds) -> None:  # type: ignore[no-untyped-def]
    """Two idle workers rotate onto the same entry and both report the tenant idle; the scheduler
    retires it on the first report and reads the second (stale) one while an ingest activates the
    tenant again. Run as it happens, concurrently, many times: every time the tenant has ready
    work it must be marked active and on the rotation, or it waits for the next sweep."""
    endpoint(rds, A, "ep_1", mif=1000)
    stranded: list[int] = []

    async def worker() -> None:
        tenant = await queue.next_tenant(ar)
        if tenant is not None:
            got = await queue.lease(ar, tenant, 10, 2000, NOW, quantum=10)
            if got.deliveries:
                done = [outcome(got, i) for i in range(len(got.deliveries))]
                await queue.complete(ar, done, [(A, got.id)], NOW)

    async def scenario(i: int) -> None:
        await asyncio.gather(
            worker(), worker(), upkeep.retire_idle(ar), arrivals.ingest(ar, [event(A, f"e{i}", ["ep_1"])])
        )
        await asyncio.gather(worker(), worker(), upkeep.retire_idle(ar))
        # Quiet now: whatever is ready must be reachable through the rotation.
        if rds.llen(keys.tenant_base(A) + "r:ep_1") and A not in rds.lrange(keys.ACTIVE, 0, -1):
            stranded.append(i)
            rds.rpush(keys.ACTIVE, A)  # as the sweep would, so the next rounds test afresh

    for i in range(400):
        run(loop, scenario(i))
    assert stranded == []


def test_a_tenant_at_its_endpoint_cap_keeps_one_entry_on_the_rotation(ar, loop, rds) -> None:  # type: ignore[no-untyped-def]
    """Each lease at the cap deactivates the tenant and each outcome activates it again; with no
    retirement in between, the rotation must still hold it once, or it gets that many turns per
    turn of every other tenant."""
    endpoint(rds, A, "ep_1", mif=1)
    endpoint(rds, B, "ep_b")
    ingest(ar, loop, *(event(A, f"a{i}", ["ep_1"]) for i in range(30)))
    ingest(ar, loop, event(B, "b0", ["ep_b"]))
    for _ in range(20):
        got = run(loop, queue.lease(ar, A, 10, 2000, NOW, quantum=10))  # takes the one slot
        assert len(got.deliveries) == 1
        complete(ar, loop, [outcome(got, 0)], [got])  # gives it back: active again
    assert rds.lrange(keys.ACTIVE, 0, -1).count(A) == 1
    assert rds.lrange(keys.ACTIVE, 0, -1).count(B) == 1


HELD = upkeep.HeldLimit(span_ms=10_000, retention_ms=60_000, ops_window_ms=5_000)


def test_held_deliveries_end_dead_once_the_schedules_span_has_passed(ar, loop, rds) -> None:  # type: ignore[no-untyped-def]
    breaker = Breaker(failures=2, pause_ms=1000, max_pause_ms=4000, disable_after_ms=0)
    endpoint(rds, A, "ep_1")
    ingest(ar, loop, *[event(A, f"e{i}", ["ep_1"]) for i in range(5)])
    lease = lease_next(ar, loop, n=2)
    assert lease is not None
    fails = [outcome(lease, i, "retrying", 500, due_ms=NOW + 1000) for i in range(2)]
    assert complete(ar, loop, fails, [lease], breaker=breaker).breakers_opened == 1
    done = run(loop, upkeep.tick(ar, [A], NOW + 1000, held=HELD))
    assert done.expired == 0 and done.promoted == 0  # the two retries wait behind the three pending
    probe = lease_next(ar, loop, now=NOW + 1000)
    assert probe is not None and len(probe.deliveries) == 1
    fail = [outcome(probe, 0, "retrying", 500, due_ms=NOW + 5000)]
    complete(ar, loop, fail, [probe], now=NOW + 1001, breaker=breaker)
    assert run(loop, upkeep.tick(ar, [A], NOW + 9999, held=HELD)).expired == 0  # not yet: 10 s from the start
    # the scheduler is asked back at the end of the span (not only at the breaker's next pause end)
    assert rds.zscore(keys.WAKE, A) is not None and rds.zscore(keys.WAKE, A) <= NOW + 10_000
    done = run(loop, upkeep.tick(ar, [A], NOW + 10_000, held=HELD))
    assert done.expired == 5
    every = [d.id for d in lease.deliveries + probe.deliveries] + rds.lrange(keys.ready(A, "ep_1"), 0, -1)
    assert rds.llen(keys.ready(A, "ep_1")) == 0 and rds.zcard(keys.due(A, "ep_1")) == 0
    assert rds.zcard(keys.tenant_dead(A)) == 5
    for d in rds.zrange(keys.tenant_dead(A), 0, -1):
        h = rds.hgetall(keys.delivery(A, d))
        assert h["s"] == "dead" and h["da"] == str(NOW + 10_000) and "retry schedule" in h["dr"]
        assert history.delivery(A, d, h).dead_reason == h["dr"]
        assert 0 < rds.pttl(keys.delivery(A, d)) <= 60_000  # kept as a dead letter, then gone
    assert set(every) <= set(rds.zrange(keys.tenant_dead(A), 0, -1))
    summary = orjson.loads(rds.hget(keys.ops_dead(A), "ep_1"))  # the delivery.dead summary
    assert summary["n"] == 5 and "retry schedule" in summary["err"]
    assert rds.zscore(keys.OPS_DUE, A) == NOW + 10_000 + 5_000
    assert rds.hget(keys.stats(A), "deliveries_dead") == "5"


def test_a_paused_endpoint_holds_its_deliveries_without_end(ar, loop, rds) -> None:  # type: ignore[no-untyped-def]
    breaker = Breaker(failures=1, pause_ms=1000, max_pause_ms=1000, disable_after_ms=0)
    endpoint(rds, A, "ep_1")
    ingest(ar, loop, *[event(A, f"e{i}", ["ep_1"]) for i in range(3)])
    lease = lease_next(ar, loop, n=1)
    assert lease is not None
    complete(ar, loop, [outcome(lease, 0, "retrying", 500, due_ms=NOW + 1000)], [lease], breaker=breaker)
    # the flag PATCH /v1/endpoints/{id} {"paused": true} sets (issue 24)
    rds.hset(keys.endpoint(A, "ep_1"), "pz", "1")
    assert run(loop, upkeep.tick(ar, [A], NOW + 1_000_000, held=HELD)).expired == 0
    assert rds.zcard(keys.tenant_dead(A)) == 0
    rds.hset(keys.endpoint(A, "ep_1"), "pz", "0")  # resumed: its probe fails, the breaker opens again
    later = NOW + 1_000_001
    probe = lease_next(ar, loop, now=later)
    assert probe is not None and len(probe.deliveries) == 1
    fail = [outcome(probe, 0, "retrying", 500, due_ms=later + 5000)]
    complete(ar, loop, fail, [probe], now=later, breaker=breaker)
    # the two waiting in the ready list end; the probe's delivery waits for its retry time
    assert run(loop, upkeep.tick(ar, [A], later + 1000, held=HELD)).expired == 2


def test_a_healthy_endpoints_waiting_deliveries_never_expire(ar, loop, rds) -> None:  # type: ignore[no-untyped-def]
    endpoint(rds, A, "ep_1", mif=1)
    rds.hset(keys.endpoint(A, "ep_1"), "cap", 1)  # a new endpoint's slow start is no throttle
    ingest(ar, loop, *[event(A, f"e{i}", ["ep_1"]) for i in range(3)])
    lease = lease_next(ar, loop, n=1)
    assert lease is not None
    complete(ar, loop, [outcome(lease, 0, "retrying", 500, due_ms=NOW + 1000)], [lease])
    done = run(loop, upkeep.tick(ar, [A], NOW + 1_000_000, held=HELD))
    assert done.expired == 0 and done.promoted == 1 and rds.llen(keys.ready(A, "ep_1")) == 3


def test_a_tenants_stored_bytes_count_what_ingest_outcomes_and_trim_change(ar, loop, rds) -> None:  # type: ignore[no-untyped-def]
    endpoint(rds, A, "ep_1")
    events = [event(A, f"e{i}", ["ep_1"]) for i in range(3)]
    ingest(ar, loop, *events)
    stored = sum(len(e.record) + shares.EVENT_BYTES + shares.DELIVERY_BYTES for e in events)
    assert rds.hget(keys.tenant(A), "sb") == str(stored)
    lease = lease_next(ar, loop)
    assert lease is not None
    done = [outcome(lease, i) for i in range(3)]
    complete(ar, loop, done, [lease])
    stored += sum(len(o.attempt or "") + 1 for o in done)  # each attempt line, and its newline
    assert rds.hget(keys.tenant(A), "sb") == str(stored)
    assert run(loop, upkeep.trim(ar, [A], 0, most=10, now_ms=NOW + 10**9)).events == 3
    assert rds.hget(keys.tenant(A), "sb") == "0"


def test_deliveries_held_by_a_throttle_end_dead_and_the_throttle_flag_goes_with_it(ar, loop, rds) -> None:  # type: ignore[no-untyped-def]
    endpoint(rds, A, "ep_1", mif=2)
    ingest(ar, loop, *[event(A, f"e{i}", ["ep_1"]) for i in range(4)])
    lease = lease_next(ar, loop, n=1)
    assert lease is not None
    complete(ar, loop, [outcome(lease, 0, "retrying", 502, due_ms=NOW + 1000, throttle=True)], [lease])
    assert rds.hget(keys.endpoint(A, "ep_1"), "th") == str(NOW)
    done = run(loop, upkeep.tick(ar, [A], NOW + 10_000, held=HELD))
    assert done.expired == 4  # the three waiting, and the retry that fell due after the span
    assert rds.hget(keys.delivery(A, lease.deliveries[0].id), "dr") is not None
    ingest(ar, loop, event(A, "e9", ["ep_1"], at=NOW + 10_000))
    more = lease_next(ar, loop, now=NOW + 10_000)
    assert more is not None
    complete(ar, loop, [outcome(more, 0)], [more], now=NOW + 10_001)  # back to max_in_flight
    assert rds.hget(keys.endpoint(A, "ep_1"), "th") is None
