"""Ingest: cached routing never outlives an endpoint change; concurrent requests share writes."""

import asyncio

import orjson
import pytest
import redis
import redis.asyncio

from webhooks import keys
from webhooks.errors import Invalid, PayloadTooLarge, RoutesChanging, StorageError
from webhooks.intake.ingest import (
    STALE_BACKOFF_MAX_S,
    STALE_BACKOFF_S,
    STALE_TRIES,
    EventIn,
    Ingestor,
    stale_backoff_s,
)

NOW = 1_800_000_000_000


def add_endpoint(
    rds: "redis.Redis", tenant: str, endpoint_id: str, event_types: list[str] | None = None
) -> None:
    doc = {"id": endpoint_id, "tenant_id": tenant, "event_types": event_types}
    rds.hset(keys.endpoint(tenant, endpoint_id), mapping={"doc": orjson.dumps(doc), "disabled": "0"})
    rds.zadd(keys.tenant_endpoints(tenant), {endpoint_id: 0})
    rds.incr(keys.endpoint_version(tenant))


def ready_count(rds: "redis.Redis") -> int:
    return sum(int(rds.llen(k)) for k in rds.keys("wh:{t:*}:r:*"))


def endpoints_of(stored: list) -> list[list[str]]:  # type: ignore[type-arg]
    return [[ep for _, ep in new.deliveries] for new, _ in stored]


def test_routes_are_cached_until_the_endpoint_version_moves(ar, loop, rds) -> None:  # type: ignore[no-untyped-def]
    ing = Ingestor(ar, max_payload_bytes=10_000)
    add_endpoint(rds, "t1", "ep_a")
    first = loop.run_until_complete(ing.ingest("t1", [EventIn("a.b", 1)], NOW))
    assert endpoints_of(first) == [["ep_a"]]
    add_endpoint(rds, "t1", "ep_b")  # the cache still holds [ep_a]; the script refuses it
    second = loop.run_until_complete(ing.ingest("t1", [EventIn("a.b", 2)], NOW))
    assert endpoints_of(second) == [["ep_a", "ep_b"]]
    assert ready_count(rds) == 3


def test_a_changed_endpoint_document_is_read_again_after_a_stale_refusal(ar, loop, rds) -> None:  # type: ignore[no-untyped-def]
    """The endpoint set is the same, one document changed: the reload reads the documents on the
    guess of the old set in its first round trip, and must still see the change."""
    ing = Ingestor(ar, max_payload_bytes=10_000)
    add_endpoint(rds, "t1", "ep_a")
    add_endpoint(rds, "t1", "ep_b", event_types=["x.y"])
    first = loop.run_until_complete(ing.ingest("t1", [EventIn("a.b", 1), EventIn("x.y", 2)], NOW))
    assert endpoints_of(first) == [["ep_a"], ["ep_a", "ep_b"]]

    rds.hset(keys.endpoint("t1", "ep_a"), "disabled", "1")
    doc = {"id": "ep_b", "tenant_id": "t1", "event_types": ["a.b"]}
    rds.hset(keys.endpoint("t1", "ep_b"), "doc", orjson.dumps(doc))
    rds.incr(keys.endpoint_version("t1"))
    second = loop.run_until_complete(ing.ingest("t1", [EventIn("a.b", 3), EventIn("x.y", 4)], NOW))

    assert endpoints_of(second) == [["ep_b"], []]
    rds.zrem(keys.tenant_endpoints("t1"), "ep_b")  # and a changed set is read whole again
    rds.incr(keys.endpoint_version("t1"))
    third = loop.run_until_complete(ing.ingest("t1", [EventIn("a.b", 5)], NOW))
    assert endpoints_of(third) == [[]]


def test_concurrent_requests_share_script_calls_and_each_gets_its_own_answer(ar, loop, rds) -> None:  # type: ignore[no-untyped-def]
    ing = Ingestor(ar, max_payload_bytes=10_000)
    for t in ("t1", "t2"):
        add_endpoint(rds, t, f"ep_{t}")
    rds.config_resetstat()

    async def many() -> list:  # type: ignore[type-arg]
        return await asyncio.gather(
            *(ing.ingest(f"t{1 + i % 2}", [EventIn("a.b", i, event_id=f"e{i}")], NOW) for i in range(200))
        )

    results = loop.run_until_complete(many())
    assert [r[0][0].event_id for r in results] == [f"e{i}" for i in range(200)]
    assert all(r[0][1] is None for r in results)
    assert ready_count(rds) == 200
    calls = rds.info("commandstats")
    script_calls = sum(v["calls"] for k, v in calls.items() if k in ("cmdstat_evalsha", "cmdstat_eval"))
    assert script_calls < 50, f"200 requests took {script_calls} script calls"


def test_an_invalid_event_fails_its_request_only(ar, loop, rds) -> None:  # type: ignore[no-untyped-def]
    ing = Ingestor(ar, max_payload_bytes=100)
    add_endpoint(rds, "t1", "ep_a")
    with pytest.raises(Invalid, match=r"events\.1\.event_type"):
        loop.run_until_complete(ing.ingest("t1", [EventIn("ok", 1), EventIn("bad type", 1)], NOW, batch=True))
    with pytest.raises(PayloadTooLarge):
        loop.run_until_complete(ing.ingest("t1", [EventIn("ok", "x" * 200)], NOW))
    assert ready_count(rds) == 0


class _RacedIngestor(Ingestor):
    """Every read of the routes is overtaken by an endpoint change (a real INCR of the version)."""

    loads = 0

    async def _load_routes(self, tenant_id: str):  # type: ignore[no-untyped-def]
        view = await super()._load_routes(tenant_id)
        self.loads += 1
        await self.r.incr(keys.endpoint_version(tenant_id))
        return view


def test_routes_that_change_under_every_try_give_routes_changing_and_store_nothing(ar, loop, rds) -> None:  # type: ignore[no-untyped-def]
    ing = _RacedIngestor(ar, max_payload_bytes=10_000)
    add_endpoint(rds, "t1", "ep_a")
    started = loop.time()
    with pytest.raises(RoutesChanging, match="nothing was stored") as raised:
        loop.run_until_complete(ing.ingest("t1", [EventIn("a.b", 1, event_id="e1")], NOW))
    elapsed_s = loop.time() - started
    assert ing.loads == STALE_TRIES
    assert not isinstance(raised.value, StorageError), "Redis answered: not a storage error"
    assert raised.value.retry_after_s >= 1
    # It backed off between tries, within a bound a producer can wait for.
    least = sum(stale_backoff_s_floor(a) for a in range(2, STALE_TRIES))
    assert least <= elapsed_s < 2.0, elapsed_s
    assert ready_count(rds) == 0 and not rds.exists(keys.event("t1", "e1"))


def stale_backoff_s_floor(attempt: int) -> float:
    return min(STALE_BACKOFF_MAX_S, STALE_BACKOFF_S * 2 ** (attempt - 2)) / 2


def test_the_backoff_grows_from_milliseconds_to_a_bounded_wait() -> None:
    assert stale_backoff_s(2) <= STALE_BACKOFF_S
    assert all(STALE_BACKOFF_MAX_S / 2 <= stale_backoff_s(a) <= STALE_BACKOFF_MAX_S for a in (7, 20))
