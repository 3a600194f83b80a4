"""The operators' long operations as resumable work: a replay's scan and requeue, a tenant's deletion.

``workers/operations.py`` runs these as RQ jobs (:mod:`webhooks.stores.jobqueue` enqueues them).
Each goes in chunks and keeps its position in Redis with each chunk, so a job run again (RQ's
retry of a job that raised, or of one whose worker died) goes on where the last run stopped:

- A replay walks each of its tenants' dead letters newest first within its filter (its window ends
  when it was asked for, so what dies later, a replayed delivery dying again among them, is not
  its), or its list of named ids. A chunk's requeue and the move of its cursor are one script
  (``lua/replay_chunk.lua``): a chunk is applied once or not at all, so no dead letter is requeued
  twice and none is skipped, and a cancelled replay's next chunk is refused.
- A tenant's deletion (after the API made the tenant vanish: its API keys, endpoints and record,
  :meth:`webhooks.stores.store.Store.start_tenant_deletion`) SCANs the tenant's keys (all share its
  key base ``wh:{t:<id>}:``) and UNLINKs them, keeping the SCAN cursor. Deleting is idempotent, so a
  run again only reads what a dead run already deleted.

``beat`` is called with each chunk: the job's liveness (``keys.operation_alive``).
"""

from collections.abc import Awaitable, Callable
from typing import cast

import orjson
from redis.asyncio import Redis

from webhooks import keys
from webhooks.errors import NotFound
from webhooks.models import TenantDeletion, TenantDeletionState
from webhooks.queueing import queue
from webhooks.runtime.connection import is_cluster
from webhooks.stores import paging, replays
from webhooks.stores.deadfilter import DeadFilter, dead_matches
from webhooks.timefmt import iso_from_ms

CHUNK = 500  # dead letters read, and at most requeued, per chunk (one script call)
DELETE_CHUNK = 1000  # keys per SCAN step of a deletion
DELETION_TTL_S = 30 * 86400

Beat = Callable[[], Awaitable[None]]


def _split(cursor: str) -> tuple[int, str]:
    score, _, member = cursor.partition(" ")
    return int(score), member


async def _filter_chunk(
    r: "Redis", tenant_id: str, f: DeadFilter, cursor: str, chunk: int
) -> tuple[list[str], str, bool]:
    """The next chunk after ``cursor``: (matching ids, the cursor after it, whether it is the last)."""
    scan = paging.scored_scan(
        r,
        keys.tenant_dead(tenant_id),
        since_ms=f.since_ms,
        until_ms=f.until_ms,
        after=_split(cursor) if cursor else None,
        chunk=chunk,
    )
    rows: list[tuple[str, int]] = []
    async for first in scan:
        rows = first
        break
    await scan.aclose()  # type: ignore[attr-defined]
    if not rows:
        return [], cursor, True
    async with r.pipeline(transaction=False) as pipe:
        for member, _ in rows:
            pipe.hgetall(keys.delivery(tenant_id, member))
        hashes = await pipe.execute()
    ids = [m for (m, _), h in zip(rows, hashes, strict=True) if dead_matches(tenant_id, m, h, f)]
    member, score = rows[-1]
    return ids, f"{score} {member}", False


async def _ids_chunk(
    r: "Redis", tenant_id: str, replay_id: str, cursor: str, chunk: int
) -> tuple[list[str], str, bool]:
    start = int(cursor or 0)
    ids = cast(list[str], await r.lrange(keys.replay_todo(tenant_id, replay_id), start, start + chunk - 1))
    return ids, str(start + len(ids)), not ids


async def run_replay(
    r: "Redis",
    replay_id: str,
    retention_ms: int,
    now_ms: Callable[[], int],
    beat: Beat,
    chunk: int = CHUNK,
) -> int:
    """Scan and requeue what the replay selects, ``chunk`` dead letters at a time, from where its
    last run stopped; returns how many it requeued in all. Stops early (returning what was
    requeued) once it is cancelled."""
    h = cast(dict[str, str], await r.hgetall(keys.replay(replay_id)))
    if not h:
        raise NotFound(f"no such replay: {replay_id} (expired, or never recorded)")
    tenants = [t for t in h.get("tenants", "").split(",") if t]
    if h.get("cancelled_at"):
        return sum(await replays.requeued_counts(r, tenants, replay_id))
    spec = orjson.loads(h["spec"])
    f = DeadFilter(
        spec["endpoint_id"], spec["event_type"], spec["since_ms"], spec["until_ms"], spec["status_code"]
    )
    rate = float(h.get("rate") or 0)
    step_ms = int(1000 / rate) if rate else 0
    created_ms = int(h["created_at"])
    await replays.set_phase(r, replay_id, "requeueing")
    for t in tenants:
        while True:
            await beat()
            got = cast(list[str | None], await r.hmget(keys.replay_progress(t, replay_id), ["c", "fin"]))
            if got[1] == "1":
                break
            cursor = got[0] or ""
            if spec["mode"] == "ids":
                ids, after, last = await _ids_chunk(r, t, replay_id, cursor, chunk)
            else:
                ids, after, last = await _filter_chunk(r, t, f, cursor, chunk)
            n = await queue.replay_chunk(
                r,
                t,
                replay_id,
                ids,
                cursor=cursor,
                next_cursor=after,
                last=last,
                step_ms=step_ms,
                now_ms=now_ms(),
                retention_ms=retention_ms,
                created_ms=created_ms,
                ttl_ms=replays.REPLAY_TTL_S * 1000,
            )
            if n == -2:  # cancelled
                return sum(await replays.requeued_counts(r, tenants, replay_id))
            if last and n >= 0:
                break
    await replays.set_phase(r, replay_id, "finished")
    if spec["mode"] == "ids":
        for t in tenants:
            await r.delete(keys.replay_todo(t, replay_id))
    return sum(await replays.requeued_counts(r, tenants, replay_id))


# -- a tenant's deletion -------------------------------------------------------------------------


async def create_deletion(r: "Redis", tenant_id: str, now_ms: int) -> None:
    key = keys.tenant_deletion(tenant_id)
    async with r.pipeline(transaction=True) as pipe:
        pipe.delete(key)
        pipe.hset(key, mapping={"state": "deleting", "created_at": now_ms, "deleted": 0, "cursor": 0})
        pipe.expire(key, DELETION_TTL_S)
        await pipe.execute()


async def get_deletion(r: "Redis", tenant_id: str) -> TenantDeletion:
    h = cast(dict[str, str], await r.hgetall(keys.tenant_deletion(tenant_id)))
    if not h:
        raise NotFound("no deletion of this tenant")
    return TenantDeletion(
        tenant_id=tenant_id,
        state=TenantDeletionState(h["state"]),
        deleted_keys=int(h.get("deleted") or 0),
        created_at=iso_from_ms(int(h["created_at"])) or "",
        finished_at=iso_from_ms(int(h["finished_at"])) if h.get("finished_at") else None,
        error=h.get("error") or None,
    )


async def set_deletion_failed(r: "Redis", tenant_id: str, error: str) -> None:
    if await r.exists(keys.tenant_deletion(tenant_id)):
        await r.hset(keys.tenant_deletion(tenant_id), mapping={"state": "failed", "error": error[:500]})


async def _delete_pass(r: "Redis", tenant_id: str, beat: Beat) -> int:
    """One SCAN over the tenant's keys from the stored cursor, deleting as it goes; returns how
    many it deleted. The cursor is back at 0 when the pass is through."""
    record = keys.tenant_deletion(tenant_id)
    match = keys.tenant_base(tenant_id).replace("[", "\\[").replace("?", "\\?").replace("*", "\\*") + "*"
    deleted = 0
    if is_cluster(r):  # the cursor of a cluster's SCAN is per node: a run again starts over (idempotent)
        batch: list[str] = []
        async for k in r.scan_iter(match=match, count=DELETE_CHUNK):
            batch.append(k)
            if len(batch) >= DELETE_CHUNK:
                n = int(await r.unlink(*batch))
                deleted += n
                await r.hincrby(record, "deleted", n)
                batch = []
                await beat()
        if batch:
            n = int(await r.unlink(*batch))
            deleted += n
            await r.hincrby(record, "deleted", n)
        return deleted
    cursor = int(await r.hget(record, "cursor") or 0)
    while True:
        await beat()
        cursor, found = await r.scan(cursor, match=match, count=DELETE_CHUNK)
        n = int(await r.unlink(*found)) if found else 0
        deleted += n
        async with r.pipeline(transaction=True) as pipe:
            pipe.hset(record, "cursor", cursor)
            pipe.hincrby(record, "deleted", n)
            await pipe.execute()
        if cursor == 0:
            return deleted


async def run_tenant_deletion(r: "Redis", tenant_id: str, now_ms: Callable[[], int], beat: Beat) -> int:
    """Delete every key of the tenant, then its traces in the global keys; returns the keys deleted."""
    record = keys.tenant_deletion(tenant_id)
    if not await r.exists(record):
        raise NotFound(f"no deletion of tenant {tenant_id} is recorded")
    if await r.hget(record, "state") == "done":
        return int(await r.hget(record, "deleted") or 0)
    total = 0
    for _ in range(5):  # what was written while a pass ran (an attempt in flight finishing) goes next pass
        n = await _delete_pass(r, tenant_id, beat)
        total += n
        if not n:
            break
    await r.zrem(keys.WAKE, tenant_id)
    await r.lrem(keys.ACTIVE, 0, tenant_id)
    await r.srem(keys.IDLE, tenant_id)
    await r.zrem(keys.OPS_DUE, tenant_id)
    await r.zrem(keys.TENANTS, tenant_id)
    await r.hset(record, mapping={"state": "done", "finished_at": now_ms()})
    return int(await r.hget(record, "deleted") or 0)
