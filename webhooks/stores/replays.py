"""Replays as a resource: what a dead-letter replay requeued, and its progress (part of
:class:`webhooks.stores.store.Store`).

A replay's record (``keys.replay``) is written when it is asked for (``deliveries.replay``), before
its RQ job runs (:mod:`webhooks.stores.operations`): ``phase`` is ``matching`` until the job starts,
``requeueing`` while it scans and requeues in chunks, ``finished`` when it went through, ``failed``
when it failed for good. The record names the tenants the job walks; each tenant's list of what it
requeued (``keys.replay_members``) is what progress is read from: ``done`` counts those settled
again (succeeded, or dead again), ``remaining`` the rest. Cancelling first marks the record and
each tenant's progress (the job's next chunk is refused), then sends what has not gone out yet
(pending, paced for later, or waiting for a retry) back to the dead letters; what is in flight
finishes.
"""

from typing import cast

import orjson
from redis.asyncio import Redis

from webhooks import ids, keys
from webhooks.errors import NotFound
from webhooks.models import Page, Replay, ReplayState
from webhooks.queueing import queue
from webhooks.stores import paging
from webhooks.timefmt import iso_from_ms

REPLAY_TTL_S = 30 * 86400
SETTLED = ("succeeded", "dead")


async def create(
    r: "Redis",
    replay_id: str,
    tenant_id: str | None,
    tenants: list[str],
    matched: int,
    spec: dict[str, object],
    rate_per_s: float | None,
    now_ms: int,
) -> None:
    """The replay's record, before its job runs (``phase`` ``matching``): ``tenants`` are those its
    job walks, ``spec`` what it selects (a filter, or named ids already put on each tenant's
    ``keys.replay_todo``), ``matched`` the count known when it was asked for."""
    fields: dict[str, str | int | float] = {
        "id": replay_id,
        "tenant_id": tenant_id or "",
        "matched": matched,
        "created_at": now_ms,
        "tenants": ",".join(tenants),
        "rate": rate_per_s or 0,
        "spec": orjson.dumps(spec).decode(),
        "phase": "matching",
    }
    async with r.pipeline(transaction=False) as pipe:
        pipe.hset(keys.replay(replay_id), mapping=fields)  # type: ignore[arg-type]
        pipe.expire(keys.replay(replay_id), REPLAY_TTL_S)
        pipe.zadd(keys.REPLAYS, {replay_id: now_ms})
        await pipe.execute()
    for t in tenants:  # a tenant sees the replay (and can cancel it) from the start
        await r.zadd(keys.tenant_replays(t), {replay_id: now_ms})


async def set_phase(r: "Redis", replay_id: str, phase: str, error: str | None = None) -> None:
    """``requeueing``, ``finished`` (all requeued) or ``failed`` (with ``error``), kept by its job."""
    fields: dict[str, str | int | float] = {"phase": phase}
    if error is not None:
        fields["error"] = error[:500]
    if await r.exists(keys.replay(replay_id)):
        await r.hset(keys.replay(replay_id), mapping=fields)  # type: ignore[arg-type]


async def requeued_counts(r: "Redis", tenants: list[str], replay_id: str) -> list[int]:
    """How many each tenant's part of the job requeued so far (``keys.replay_progress``)."""
    async with r.pipeline(transaction=False) as pipe:
        for t in tenants:
            pipe.hget(keys.replay_progress(t, replay_id), "n")
        return [int(n or 0) for n in await pipe.execute()]


async def _record_of(r: "Redis", caller: str | None, replay_id: str) -> dict[str, str]:
    h = cast(dict[str, str], await r.hgetall(keys.replay(replay_id)))
    if not h or (
        caller is not None and caller not in h.get("tenants", "").split(",") and h["tenant_id"] != caller
    ):
        raise NotFound("no such replay")
    return h


async def _statuses(r: "Redis", tenant_id: str, replay_id: str) -> list[str | None]:
    members = cast(list[str], await r.lrange(keys.replay_members(tenant_id, replay_id), 0, -1))
    out: list[str | None] = []
    for start in range(0, len(members), 5000):
        async with r.pipeline(transaction=False) as pipe:
            for d in members[start : start + 5000]:
                pipe.hget(keys.delivery(tenant_id, d), "s")
            out += await pipe.execute()
    return out


async def get(r: "Redis", caller: str | None, replay_id: str) -> Replay:
    """A replay and its progress; a tenant sees only the part of an operator's replay that is its own."""
    h = await _record_of(r, caller, replay_id)
    tenants = [t for t in h.get("tenants", "").split(",") if t and (caller is None or t == caller)]
    statuses: list[str | None] = []
    for t in tenants:
        statuses += await _statuses(r, t, replay_id)
    succeeded = sum(1 for s in statuses if s == "succeeded")
    dead = sum(1 for s in statuses if s == "dead")
    gone = sum(1 for s in statuses if s is None)  # expired or trimmed since: settled long ago
    done = succeeded + dead + gone
    requeued = len(statuses)
    phase = h.get("phase", "finished")  # a record from before replays ran as jobs: all requeued
    # Until its job went through, ``matched`` is the count known when it was asked for.
    matched = requeued if phase == "finished" else max(int(h.get("matched") or 0), requeued)
    if h.get("cancelled_at"):
        state = ReplayState.CANCELLED
    elif phase == "failed":
        state = ReplayState.FAILED
    elif phase == "matching":
        state = ReplayState.MATCHING
    elif phase == "requeueing":
        state = ReplayState.REQUEUEING
    elif done >= requeued:
        state = ReplayState.DONE
    else:
        state = ReplayState.DELIVERING
    return Replay(
        id=replay_id,
        tenant_id=h["tenant_id"] or None,
        matched=matched,
        done=done,
        remaining=max(matched - done, 0),
        succeeded=succeeded,
        dead=dead,
        state=state,
        rate_per_s=float(h.get("rate") or 0) or None,
        created_at=iso_from_ms(int(h["created_at"])) or "",
        cancelled_at=iso_from_ms(int(h["cancelled_at"])) if h.get("cancelled_at") else None,
        requeued=requeued,
        error=h.get("error") or None,
    )


async def list_page(r: "Redis", caller: str | None, limit: int | None, cursor: str | None) -> Page[Replay]:
    """Newest first: a tenant's replays (its own and the operator's that touched it), or all of them."""
    index = keys.REPLAYS if caller is None else keys.tenant_replays(caller)
    page_ids, next_cursor = await paging.lex_page(
        r, index, paging.check_limit(limit), paging.decode_cursor(cursor)
    )
    out = []
    for replay_id in page_ids:
        try:
            out.append(await get(r, caller, replay_id))
        except NotFound:  # its record expired: drop the index entry
            await r.zrem(index, replay_id)
    return Page[Replay](data=out, next_cursor=next_cursor)


async def cancel(r: "Redis", caller: str | None, replay_id: str, now_ms: int, retention_ms: int) -> Replay:
    """Call a replay off: what has not gone out yet goes back to the dead letters (in-flight attempts
    finish). Cancelling a finished or cancelled replay changes nothing."""
    h = await _record_of(r, caller, replay_id)
    tenants = [t for t in h.get("tenants", "").split(",") if t and (caller is None or t == caller)]
    if not h.get("cancelled_at"):  # first: the job stops at its next chunk (lua/replay_chunk.lua)
        await r.hset(keys.replay(replay_id), "cancelled_at", now_ms)
    for t in tenants:
        await r.hset(keys.replay_progress(t, replay_id), "x", 1)
        await r.pexpire(keys.replay_progress(t, replay_id), REPLAY_TTL_S * 1000)
        members = cast(list[str], await r.lrange(keys.replay_members(t, replay_id), 0, -1))
        for start in range(0, len(members), 500):
            await queue.requeue(
                r, t, members[start : start + 500], mode="cancel", now_ms=now_ms, retention_ms=retention_ms
            )
    return await get(r, caller, replay_id)


def new_id(now_ms: int) -> str:
    return ids.new_id(ids.REPLAY, now_ms)
