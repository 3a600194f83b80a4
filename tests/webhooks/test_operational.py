"""Operational notifications against a real Redis, on the scripts' own clock (``now`` is an argument):
recorded by the outcome script, summarised per window, emitted once as events of the operator tenant."""

import asyncio
from typing import Any

import orjson
import pytest
import redis
import redis.asyncio

from tests.support.outcomes import outcome_of
from webhooks import ids, keys
from webhooks.errors import ConfigError
from webhooks.intake import operational
from webhooks.intake.operational import OPERATOR_ENDPOINT, OPERATOR_TENANT, Target
from webhooks.outbound.secretbox import SecretBox
from webhooks.outbound.signing import generate_secret
from webhooks.queueing import arrivals, history, queue
from webhooks.queueing.arrivals import NewEvent
from webhooks.queueing.queue import Breaker, Lease, Outcome
from webhooks.settings import load

NOW = 1_800_000_000_000
DAY_MS = 86400 * 1000
WINDOW_MS = 1000
A = "ten_a"
NO_BREAKER = Breaker(failures=1000, disable_after_ms=5 * DAY_MS)


def endpoint(rds: "redis.Redis", tenant: str, ep: str) -> None:
    doc = {"id": ep, "tenant_id": tenant, "url": f"https://{ep}.example.com/hook", "secrets": []}
    rds.hset(keys.endpoint(tenant, ep), mapping={"doc": orjson.dumps(doc), "disabled": "0", "mif": 1000})


def event(tenant: str, event_id: str, ep: str) -> NewEvent:
    stem = ids.new_stem(1, NOW)
    record = history.event_record("a.b", NOW, stem, 1, b"{}")
    return NewEvent(tenant, event_id, "a.b", NOW, record, "", [(ids.stem_members(stem, 1)[0], ep)])


def run(loop: asyncio.AbstractEventLoop, coro: Any) -> Any:
    return loop.run_until_complete(coro)


def leased(ar: Any, loop: Any, tenant: str, n: int, ep: str = "ep_1") -> Lease:
    run(loop, arrivals.ingest(ar, [event(tenant, f"e{i}", ep) for i in range(n)]))
    return run(loop, queue.lease(ar, tenant, n, 60_000, NOW, quantum=n))  # type: ignore[no-any-return]


def failed(lease: Lease, i: int, status: str = "retrying", code: int = 500, **kw: Any) -> Outcome:
    """The first attempt's outcome (a retry is due a day later)."""
    due_ms = NOW + DAY_MS if status == "retrying" else None
    return outcome_of(lease.id, lease.deliveries[i], status, code, at_ms=NOW, due_ms=due_ms, **kw)


def complete(ar: Any, loop: Any, outcomes: list[Outcome], now: int, **kw: Any) -> queue.Completed:
    kw.setdefault("breaker", NO_BREAKER)
    kw.setdefault("ops_window_ms", WINDOW_MS)
    return run(loop, queue.complete(ar, outcomes, [], now, **kw))  # type: ignore[no-any-return]


def outbox(rds: "redis.Redis", tenant: str = A) -> list[dict[str, Any]]:
    return [orjson.loads(e) for e in rds.lrange(keys.ops_outbox(tenant), 0, -1)]


def operator_events(rds: "redis.Redis") -> list[tuple[str, dict[str, Any]]]:
    out = []
    for event_id in rds.zrange(keys.events(OPERATOR_TENANT), 0, -1):
        stored = history.StoredEvent(
            OPERATOR_TENANT, event_id, rds.get(keys.event(OPERATOR_TENANT, event_id))
        )
        out.append((stored.event_type, orjson.loads(stored.payload_json)))
    return out


def test_disable_after_the_window_on_the_injected_clock_records_one_endpoint_disabled(ar, loop, rds) -> None:  # type: ignore[no-untyped-def]
    endpoint(rds, A, "ep_1")
    lease = leased(ar, loop, A, 3)
    complete(ar, loop, [failed(lease, 0)], NOW)
    one_ms_short = complete(ar, loop, [failed(lease, 1)], NOW + 5 * DAY_MS - 1)
    assert one_ms_short.disabled == [] and outbox(rds) == []
    done = complete(ar, loop, [failed(lease, 2)], NOW + 5 * DAY_MS)
    assert [(t, e) for t, e, _ in done.disabled] == [(A, "ep_1")]
    assert rds.hget(keys.endpoint(A, "ep_1"), "disabled") == "1"
    (note,) = outbox(rds)
    assert (note["k"], note["ep"], note["since"], note["at"]) == (
        "endpoint.disabled",
        "ep_1",
        NOW,
        NOW + 5 * DAY_MS,
    )
    assert note["reason"] == "failing without a success for 432000 s"
    assert rds.zscore(keys.OPS_DUE, A) == NOW + 5 * DAY_MS  # due at once


def test_emitting_stores_each_notification_once_as_an_operator_event_even_when_repeated(
    ar, loop, rds
) -> None:  # type: ignore[no-untyped-def]
    box = SecretBox(None)
    target = Target("https://ops.example.com/hook", generate_secret(), WINDOW_MS)
    assert run(loop, operational.ensure(ar, box, target, NOW)) is True
    assert run(loop, operational.ensure(ar, box, target, NOW + 1)) is False  # idempotent
    endpoint(rds, A, "ep_1")
    lease = leased(ar, loop, A, 1)
    complete(ar, loop, [failed(lease, 0, gone=True, status="dead", code=410)], NOW)
    (note,) = outbox(rds)
    # an emitter that stored the event and died before removing it from the outbox
    kind, body = operational.payload(A, note, "https://ep_1.example.com/hook")
    again = operational.prepare(
        OPERATOR_TENANT,
        operational.EventIn(kind, body, operational.event_id_of(A, note)),
        [(OPERATOR_ENDPOINT, False, None)],
        NOW,
        1 << 20,
    )
    run(loop, arrivals.ingest(ar, [again]))
    assert run(loop, operational.emit_due(ar, NOW, WINDOW_MS)) == 1
    assert outbox(rds) == []
    assert operator_events(rds) == [
        (
            "endpoint.disabled",
            {
                "tenant_id": A,
                "endpoint_id": "ep_1",
                "url": "https://ep_1.example.com/hook",
                "reason": "receiver answered 410 Gone",
                "failing_since": "2027-01-15T08:00:00.000Z",
                "disabled_at": "2027-01-15T08:00:00.000Z",
            },
        )
    ]
    assert rds.llen(keys.ready(OPERATOR_TENANT, OPERATOR_ENDPOINT)) == 1  # the engine delivers it


def test_many_deaths_make_one_summary_per_window_whose_counts_add_up(ar, loop, rds) -> None:  # type: ignore[no-untyped-def]
    run(
        loop,
        operational.ensure(ar, SecretBox(None), Target("https://ops.example.com/", generate_secret()), NOW),
    )
    endpoint(rds, A, "ep_1")
    lease = leased(ar, loop, A, 50)
    complete(ar, loop, [failed(lease, i, "dead", 503, error="HTTP 503") for i in range(30)], NOW)
    assert run(loop, operational.emit_due(ar, NOW + WINDOW_MS - 1, WINDOW_MS)) == 0  # window still open
    complete(ar, loop, [failed(lease, i, "dead", 500) for i in range(30, 35)], NOW + 500)
    assert run(loop, operational.emit_due(ar, NOW + WINDOW_MS, WINDOW_MS)) == 1
    complete(ar, loop, [failed(lease, i, "dead", 502) for i in range(35, 50)], NOW + 1500)
    assert rds.zscore(keys.OPS_DUE, A) == NOW + 1500 + WINDOW_MS
    assert run(loop, operational.emit_due(ar, NOW + 2500, WINDOW_MS)) == 1
    summaries = [body for kind, body in operator_events(rds) if kind == "delivery.dead"]
    assert [s["count"] for s in summaries] == [35, 15]
    first, second = summaries
    assert first["sample_delivery_ids"] == [d.id for d in lease.deliveries[:5]]
    assert (first["last_status_code"], first["last_error"], first["window_s"]) == (500, None, 1.0)
    assert first["first_dead_at"] < first["last_dead_at"] <= second["first_dead_at"]
    assert rds.exists(keys.ops_dead(A)) == 0 and outbox(rds) == []


def test_a_breaker_closing_after_it_opened_records_endpoint_recovered(ar, loop, rds) -> None:  # type: ignore[no-untyped-def]
    breaker = Breaker(failures=2, pause_ms=1000, max_pause_ms=4000, disable_after_ms=0)
    endpoint(rds, A, "ep_1")
    lease = leased(ar, loop, A, 6)
    complete(ar, loop, [failed(lease, 0)], NOW, breaker=breaker)
    complete(ar, loop, [failed(lease, 1, "succeeded", 200)], NOW + 10, breaker=breaker)
    assert outbox(rds) == []  # a success before the breaker opened is no recovery
    complete(ar, loop, [failed(lease, 2)], NOW + 20, breaker=breaker)
    complete(ar, loop, [failed(lease, 3)], NOW + 30, breaker=breaker)  # the second in a row: it opens
    assert rds.hget(keys.endpoint(A, "ep_1"), "h") == "1"
    complete(ar, loop, [failed(lease, 4, "succeeded", 200)], NOW + 2000, breaker=breaker)
    (note,) = outbox(rds)
    assert (note["k"], note["ep"], note["since"], note["at"]) == (
        "endpoint.recovered",
        "ep_1",
        NOW + 20,
        NOW + 2000,
    )
    complete(ar, loop, [failed(lease, 5, "succeeded", 200)], NOW + 2001, breaker=breaker)
    assert len(outbox(rds)) == 1  # once per outage


def test_an_endpoint_disabled_by_the_engine_and_re_enabled_records_recovered_at_its_first_success(
    ar, loop, rds
) -> None:  # type: ignore[no-untyped-def]
    endpoint(rds, A, "ep_1")
    lease = leased(ar, loop, A, 2)
    complete(ar, loop, [failed(lease, 0, "dead", 410, gone=True)], NOW)
    rds.hset(keys.endpoint(A, "ep_1"), "disabled", "0")  # what PATCH {"disabled": false} sets
    complete(ar, loop, [failed(lease, 1, "succeeded", 200)], NOW + 60_000)
    assert [(n["k"], n["since"], n["at"]) for n in outbox(rds)] == [
        ("endpoint.disabled", NOW, NOW),
        ("endpoint.recovered", NOW, NOW + 60_000),
    ]


def test_with_operational_webhooks_off_or_for_the_operator_tenant_nothing_is_recorded(ar, loop, rds) -> None:  # type: ignore[no-untyped-def]
    breaker = Breaker(failures=1, pause_ms=1000, disable_after_ms=1)
    for tenant, window, skip in ((A, 0, ""), (OPERATOR_TENANT, WINDOW_MS, OPERATOR_TENANT)):
        endpoint(rds, tenant, "ep_1")
        lease = leased(ar, loop, tenant, 3)
        kw = {"breaker": breaker, "ops_window_ms": window, "ops_skip": skip}
        complete(ar, loop, [failed(lease, 0)], NOW, **kw)
        done = complete(ar, loop, [failed(lease, 1, "dead", 500)], NOW + 10, **kw)
        complete(ar, loop, [failed(lease, 2, "succeeded", 200)], NOW + 5000, **kw)
        assert done.disabled and done.ops_due == {}
        assert rds.exists(keys.ops_outbox(tenant), keys.ops_dead(tenant), keys.ops_sequence(tenant)) == 0
    assert rds.exists(keys.OPS_DUE) == 0


def test_the_settings_go_together_and_a_bad_one_names_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir("/")  # no .env of the working folder
    secret = generate_secret()
    with pytest.raises(
        ConfigError, match="WEBHOOKS_OPERATIONAL_WEBHOOK_URL and WEBHOOKS_OPERATIONAL_WEBHOOK_SECRET"
    ):
        load(operational_webhook_url="https://ops.example.com/")
    with pytest.raises(ConfigError, match=r"^WEBHOOKS_OPERATIONAL_WEBHOOK_SECRET: a whsec_ secret"):
        load(operational_webhook_url="https://ops.example.com/", operational_webhook_secret="not-a-secret")
    with pytest.raises(ConfigError, match="WEBHOOKS_OPERATIONAL_WEBHOOK_URL: invalid endpoint URL"):
        load(operational_webhook_url="http://127.0.0.1:9/", operational_webhook_secret=secret)
    assert load().operational is None
    on = load(operational_webhook_url="https://ops.example.com/", operational_webhook_secret=secret)
    assert on.operational == Target("https://ops.example.com/", secret, 60_000)
    assert secret not in repr(on.operational)


def test_a_tenant_reaching_80_and_100_percent_of_its_share_is_told_once_each(ar, loop, rds) -> None:  # type: ignore[no-untyped-def]
    box = SecretBox(None)
    target = Target("https://ops.example.com/hook", generate_secret(), WINDOW_MS)
    run(loop, operational.ensure(ar, box, target, NOW))
    rds.hset(keys.tenant(A), mapping={"id": A, "name": "a", "created_at": NOW})

    def at(used: int) -> int:
        rds.hset(keys.tenant(A), "sb", used)
        return run(loop, operational.note_shares(ar, [(A, 1000)], NOW, 0.8))  # type: ignore[no-any-return]

    assert at(700) == 0
    assert at(800) == 1 and at(900) == 0  # 80 %: once
    assert at(1000) == 1 and at(1200) == 0  # 100 %: once
    assert at(650) == 0 and at(850) == 1  # below 70 % again: told anew at 80 %
    assert [n["level"] for n in outbox(rds)] == [80, 100, 80]
    assert run(loop, operational.emit_due(ar, NOW, WINDOW_MS)) == 3
    kinds = operator_events(rds)
    assert [k for k, _ in kinds] == ["tenant.storage"] * 3
    assert sorted((b["percent"], b["used_bytes"]) for _, b in kinds) == [(80, 800), (80, 850), (100, 1000)]
    assert next(b for _, b in kinds if b["percent"] == 100) == {
        "tenant_id": A,
        "used_bytes": 1000,
        "limit_bytes": 1000,
        "percent": 100,
        "at": "2027-01-15T08:00:00.000Z",
    }
