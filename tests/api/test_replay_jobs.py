"""A replay's job, run by hand: a run that dies mid-way is resumed by the next run from its kept
cursor, and a chunk applied twice is refused (``lua/replay_chunk.lua``)."""

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import redis
from redis.asyncio import Redis as AsyncRedis

from tests.api.helpers import dead_ids, now_ms, post_event, ready_ids
from webhooks import keys
from webhooks.queueing import queue
from webhooks.stores import operations

URL = "http://127.0.0.1:9/hook"


class Died(Exception):
    """The job's worker "dies" here: the run stops between two chunks."""


def make_dead(api: httpx.Client, tenant: Any, settle: Callable[..., int], n: int) -> list[str]:
    events = [post_event(api, tenant.auth) for _ in range(n)]
    ids = [d["id"] for e in events for d in e["deliveries"]]
    assert settle(dict.fromkeys(ids, "dead")) == len(ids)
    return ids


def test_a_replay_job_that_dies_mid_way_is_resumed_and_requeues_each_dead_letter_once(
    api: httpx.Client,
    tenant: Any,
    make_endpoint: Callable[..., dict[str, Any]],
    settle: Callable[..., int],
    rds: "redis.Redis",
    redis_url: str,
) -> None:
    make_endpoint(URL + "/1")
    make_endpoint(URL + "/2")
    dead = make_dead(api, tenant, settle, 7)  # 14 dead letters, two endpoints
    # one died held behind an open breaker (tick.lua writes its reason, shown as dead_reason)
    rds.hset(keys.delivery(tenant.id, dead[0]), "dr", "held past the retry schedule's span")
    replay_id = api.post("/v1/dead-letters/replay", json={}, headers=tenant.auth).json()["replay_id"]

    async def run(die_after: int | None) -> int:
        r = AsyncRedis.from_url(redis_url, decode_responses=True)
        beats = 0

        async def beat() -> None:
            nonlocal beats
            beats += 1
            if die_after is not None and beats > die_after:
                raise Died

        try:
            return await operations.run_replay(r, replay_id, 86400_000, now_ms, beat, chunk=3)
        finally:
            await r.aclose()

    try:
        asyncio.run(run(die_after=2))  # two chunks of 3 applied, then the worker dies
        raise AssertionError("the run was to die")
    except Died:
        pass
    record = api.get(f"/v1/replays/{replay_id}", headers=tenant.auth).json()
    assert (record["state"], record["requeued"]) == ("requeueing", 6)
    assert len(ready_ids(rds)) == 6 and len(dead_ids(rds)) == 8

    assert asyncio.run(run(die_after=None)) == 14  # run again: on from the kept cursor

    members = rds.lrange(f"wh:{{t:{tenant.id}}}:rp:{replay_id}", 0, -1)
    assert sorted(members) == sorted(dead) and len(set(members)) == 14
    assert sorted(ready_ids(rds)) == sorted(dead) and dead_ids(rds) == []
    record = api.get(f"/v1/replays/{replay_id}", headers=tenant.auth).json()
    assert (record["state"], record["matched"], record["requeued"]) == ("delivering", 14, 14)
    # requeued, it is not dead any more: no dead_reason left over (as requeue.lua does for a retry)
    assert api.get(f"/v1/deliveries/{dead[0]}", headers=tenant.auth).json()["dead_reason"] is None


def test_a_chunk_applied_twice_is_refused(
    api: httpx.Client,
    tenant: Any,
    make_endpoint: Callable[..., dict[str, Any]],
    settle: Callable[..., int],
    rds: "redis.Redis",
    redis_url: str,
) -> None:
    make_endpoint(URL)
    dead = make_dead(api, tenant, settle, 3)

    async def chunk(cursor: str, ids: list[str]) -> int:
        r = AsyncRedis.from_url(redis_url, decode_responses=True)
        try:
            return await queue.replay_chunk(
                r,
                tenant.id,
                "rpl_test",
                ids,
                cursor=cursor,
                next_cursor="after-first",
                last=False,
                step_ms=0,
                now_ms=now_ms(),
                retention_ms=86400_000,
                created_ms=now_ms(),
                ttl_ms=60_000,
            )
        finally:
            await r.aclose()

    assert asyncio.run(chunk("", dead[:2])) == 2
    # The same chunk again (a run that died before it knew the first went through): refused.
    assert asyncio.run(chunk("", dead[:2])) == -1
    assert rds.lrange(keys.replay_members(tenant.id, "rpl_test"), 0, -1) == dead[:2]
    assert rds.hget(keys.replay_progress(tenant.id, "rpl_test"), "c") == "after-first"
    assert sorted(ready_ids(rds)) == sorted(dead[:2]) and dead_ids(rds) == [dead[2]]
