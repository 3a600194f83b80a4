"""Events, deliveries and dead letters as callers read them, and retry/replay (``store.deliveries``,
a repository the :class:`webhooks.stores.store.Store` holds).

Records are in their compact forms (:mod:`webhooks.queueing.history`). Events are listed through the
tenant's events index (created ms, newest first); deliveries through the events they belong
to, so no second index per delivery is kept (memory: see ``docs/memory.md``).
"""

from collections.abc import AsyncIterator, Sequence
from typing import cast

from redis.asyncio import Redis

from webhooks import ids, keys
from webhooks.errors import Conflict, Invalid, NotFound, StorageError
from webhooks.models import (
    Delivery,
    DeliveryDetail,
    DeliveryStatus,
    DeliverySummary,
    Event,
    Page,
    Replay,
    ReplayResult,
)
from webhooks.queueing import depths, history, queue
from webhooks.queueing.history import StoredEvent
from webhooks.stores import paging, replays
from webhooks.stores.deadfilter import DeadFilter, count_dead, dead_matches
from webhooks.stores.endpoints import Endpoints
from webhooks.stores.jobqueue import OperationQueue
from webhooks.stores.policy import Policy
from webhooks.timefmt import iso_from_ms

MIN_REPLAY_RATE = 0.001  # deliveries per second; spacing stays below 1000 s


def _split(value: str) -> tuple[int, str]:
    score, _, member = value.partition(" ")
    return int(score), member


class Deliveries:
    """A tenant's events, deliveries, dead letters and replays; ``endpoints`` answers whether an
    endpoint a filter names exists."""

    def __init__(
        self, r: "Redis", policy: Policy, endpoints: Endpoints, operations: "OperationQueue | None" = None
    ) -> None:
        self.r = r
        self.policy = policy
        self.endpoints = endpoints
        self.operations = operations

    # -- events ------------------------------------------------------------------------------

    async def event_out(self, ev: StoredEvent) -> Event:
        """An event as the API shows it, with its deliveries' statuses."""
        delivery_ids = ev.delivery_ids
        rows = []
        if delivery_ids:
            async with self.r.pipeline(transaction=False) as pipe:
                for delivery_id in delivery_ids:
                    pipe.hmget(keys.delivery(ev.tenant_id, delivery_id), ["s", "p"])
                rows = await pipe.execute()
        return Event(
            id=ev.event_id,
            tenant_id=ev.tenant_id,
            event_type=ev.event_type,
            created_at=iso_from_ms(ev.created_ms) or "",
            payload=ev.payload,
            deliveries=[
                DeliverySummary(id=d, endpoint_id=p, status=DeliveryStatus(s or "pending"))
                for d, (s, p) in zip(delivery_ids, rows, strict=True)
                if p is not None  # trimmed or expired with its history
            ],
        )

    async def _stored_event(self, tenant_id: str, event_id: str) -> StoredEvent | None:
        raw = await self.r.get(keys.event(tenant_id, event_id))
        return None if raw is None else StoredEvent(tenant_id, event_id, raw)

    async def get_event(self, tenant_id: str, event_id: str) -> Event:
        ev = await self._stored_event(tenant_id, event_id)
        if ev is None:
            raise NotFound("no such event")
        return await self.event_out(ev)

    async def list_events(
        self,
        tenant_id: str,
        *,
        event_type: str | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[Event]:
        """Newest first; a filtered page reads at most ``SCAN_FACTOR * limit`` candidates."""
        limit = paging.check_limit(limit)
        after = paging.decode_cursor(cursor, paging.SCORED_CURSOR)
        out: list[Event] = []
        last: tuple[str, int] | None = None
        more, scanned = False, 0
        scan = paging.scored_scan(
            self.r,
            keys.events(tenant_id),
            since_ms=since_ms,
            until_ms=until_ms,
            after=_split(after) if after else None,
            chunk=max(limit, 100),
        )
        async for rows in scan:
            async with self.r.pipeline(transaction=False) as pipe:
                for event_id, _ in rows:
                    pipe.get(keys.event(tenant_id, event_id))
                records = await pipe.execute()
            for (event_id, score), record in zip(rows, records, strict=True):
                if record is not None:
                    ev = StoredEvent(tenant_id, event_id, record)
                    if not event_type or ev.event_type == event_type:
                        if len(out) == limit:
                            more = True
                            break
                        out.append(await self.event_out(ev))
                last = (event_id, score)
                scanned += 1
                if scanned >= limit * paging.SCAN_FACTOR:
                    more = True
                    break
            if more:
                break
        next_cursor = paging.encode_cursor(f"{last[1]} {last[0]}") if more and last else None
        return Page[Event](data=out, next_cursor=next_cursor)

    # -- deliveries ----------------------------------------------------------------------------

    async def _delivery_hash(self, tenant_id: str, delivery_id: str) -> dict[str, str]:
        if not ids.has_prefix(delivery_id, ids.DELIVERY):
            raise NotFound("no such delivery")
        h = cast(dict[str, str], await self.r.hgetall(keys.delivery(tenant_id, delivery_id)))
        if "s" not in h:
            raise NotFound("no such delivery")
        return h

    async def _owner_of(self, delivery_id: str) -> str:
        """The tenant holding a delivery (for the operator, who may name any); NotFound if none."""
        tenants = await depths.tenant_ids(self.r)
        async with self.r.pipeline(transaction=False) as pipe:
            for t in tenants:
                pipe.exists(keys.delivery(t, delivery_id))
            found = await pipe.execute()
        for t, hit in zip(tenants, found, strict=True):
            if hit:
                return t
        raise NotFound("no such delivery")

    async def get_delivery(self, tenant_id: str | None, delivery_id: str) -> DeliveryDetail:
        """A delivery with its attempts; with no tenant (the operator) whichever tenant holds it."""
        if tenant_id is None:
            tenant_id = await self._owner_of(delivery_id)
        h = await self._delivery_hash(tenant_id, delivery_id)
        d = history.delivery(tenant_id, delivery_id, h)
        return DeliveryDetail(**d.model_dump(), attempts=history.attempts(h.get("a")))

    async def _events_newest_first(
        self, tenant_id: str, event_id: str | None, after: tuple[int, str] | None, chunk: int
    ) -> AsyncIterator[list[tuple[StoredEvent, int]]]:
        if event_id is not None:
            ev = await self._stored_event(tenant_id, event_id)
            if ev is not None:
                yield [(ev, ev.created_ms)]
            return
        async for rows in paging.scored_scan(self.r, keys.events(tenant_id), after=after, chunk=chunk):
            async with self.r.pipeline(transaction=False) as pipe:
                for member, _ in rows:
                    pipe.get(keys.event(tenant_id, member))
                records = await pipe.execute()
            yield [
                (StoredEvent(tenant_id, member, rec), score)
                for (member, score), rec in zip(rows, records, strict=True)
                if rec is not None
            ]

    async def list_deliveries(
        self,
        tenant_id: str,
        *,
        event_id: str | None = None,
        endpoint_id: str | None = None,
        status: DeliveryStatus | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[Delivery]:
        """Newest first (by event, then delivery). ``next_cursor`` is null on the last page.

        A filtered page reads at most ``SCAN_FACTOR * limit`` candidates, so it may hold fewer than
        ``limit`` items (even none) and still have a next cursor.
        """
        limit = paging.check_limit(limit)
        position = paging.decode_cursor(cursor, paging.DELIVERY_CURSOR)
        after_event: tuple[int, str] | None = None
        after_delivery: str | None = None
        if position:
            score, event, after_delivery = position.split(" ")
            after_event = (int(score), event)
        if endpoint_id:
            await self.endpoints.endpoint_raw(tenant_id, endpoint_id)
        if event_id and not await self.r.exists(keys.event(tenant_id, event_id)):
            raise NotFound("event_id: no such event")  # as GET /v1/events/{id}: missing or not ours
        out: list[Delivery] = []
        scanned, more = 0, False
        last: str | None = None
        # Resume inside the cursor's own event first, then carry on with older events.
        resume: list[tuple[StoredEvent, int]] = []
        if after_event is not None and after_delivery is not None:
            ev = await self._stored_event(tenant_id, after_event[1])
            if ev is not None:
                resume = [(ev, after_event[0])]
        source = self._events_newest_first(tenant_id, event_id, after_event, max(limit, 100))

        async def chunks() -> AsyncIterator[list[tuple[StoredEvent, int]]]:
            if resume:
                yield resume
            if not (event_id is not None and after_event is not None):
                async for c in source:
                    yield c

        async for events in chunks():
            candidates = [
                (ev, score, d)
                for ev, score in events
                for d in sorted(ev.delivery_ids, reverse=True)
                if not (after_delivery and ev.event_id == after_event[1] and d >= after_delivery)  # type: ignore[index]
            ]
            async with self.r.pipeline(transaction=False) as pipe:
                for _, _, d in candidates:
                    pipe.hgetall(keys.delivery(tenant_id, d))
                rows = await pipe.execute()
            for (ev, at_ms, d), h in zip(candidates, rows, strict=True):
                matches = (
                    "s" in h
                    and (not endpoint_id or h["p"] == endpoint_id)
                    and (not status or h["s"] == status)
                )
                if matches and len(out) == limit:
                    more = True
                    break
                if matches:
                    out.append(history.delivery(tenant_id, d, h))
                last = f"{at_ms} {ev.event_id} {d}"
                scanned += 1
                if scanned >= limit * paging.SCAN_FACTOR:
                    more = True
                    break
            if more:
                break
        return Page[Delivery](data=out, next_cursor=paging.encode_cursor(last) if more and last else None)

    async def retry_delivery(self, tenant_id: str, delivery_id: str, now_ms: int) -> DeliveryDetail:
        """One new attempt now, whatever the delivery's state (but not while one is under way)."""
        await self._delivery_hash(tenant_id, delivery_id)
        (before,) = await queue.requeue(
            self.r,
            tenant_id,
            [delivery_id],
            mode="retry",
            now_ms=now_ms,
            retention_ms=self.policy.retention_ms,
        )
        if before == DeliveryStatus.DELIVERING:
            raise Conflict("an attempt of this delivery is under way; try again when it has finished")
        return await self.get_delivery(tenant_id, delivery_id)

    # -- dead letters ----------------------------------------------------------------------------

    async def _dead_scan(
        self, tenant_id: str, f: DeadFilter, after: tuple[int, str] | None
    ) -> AsyncIterator[list[tuple[Delivery, int]]]:
        """One tenant's dead deliveries matching ``f`` with their time of death, newest first."""
        scan = paging.scored_scan(
            self.r, keys.tenant_dead(tenant_id), since_ms=f.since_ms, until_ms=f.until_ms, after=after
        )
        async for rows in scan:
            async with self.r.pipeline(transaction=False) as pipe:
                for member, _ in rows:
                    pipe.hgetall(keys.delivery(tenant_id, member))
                hashes = await pipe.execute()
            yield [
                (history.delivery(tenant_id, member, h), score)
                for (member, score), h in zip(rows, hashes, strict=True)
                if dead_matches(tenant_id, member, h, f)
            ]

    async def _dead_page(
        self, tenant_id: str, f: DeadFilter, after: tuple[int, str] | None, want: int
    ) -> list[tuple[Delivery, int]]:
        out: list[tuple[Delivery, int]] = []
        async for chunk in self._dead_scan(tenant_id, f, after):
            out.extend(chunk)
            if len(out) >= want:
                break
        return out[:want]

    async def list_dead(
        self, tenant_id: str | None, f: DeadFilter, limit: int | None, cursor: str | None
    ) -> Page[Delivery]:
        """Newest first; ``next_cursor`` is null on the last page. With no tenant (the admin), every
        tenant's dead letters merged by time of death."""
        limit = paging.check_limit(limit)
        position = paging.decode_cursor(cursor, paging.SCORED_CURSOR)
        after = _split(position) if position else None
        tenants = [tenant_id] if tenant_id is not None else await depths.tenant_ids(self.r)
        rows: list[tuple[Delivery, int]] = []
        for t in tenants:
            rows += await self._dead_page(t, f, after, limit + 1)
        rows.sort(key=lambda row: (row[1], row[0].id), reverse=True)
        page = rows[:limit]
        if not page and not position and f.endpoint_id:
            await self._dead_endpoint(tenant_id, f.endpoint_id)
        next_cursor = None
        if len(rows) > limit:
            last, score = page[-1]
            next_cursor = paging.encode_cursor(f"{score} {last.id}")
        return Page[Delivery](data=[d for d, _ in page], next_cursor=next_cursor)

    async def _dead_endpoint(self, tenant_id: str | None, endpoint_id: str) -> None:
        """Raise :class:`NotFound` unless ``endpoint_id`` is, or was, an endpoint of the tenant (of
        any tenant for the admin's ``None``): a filter naming another tenant's endpoint, or none,
        answers 404 like the endpoint's own routes. Dead letters outlive a deleted endpoint, so
        this runs only when nothing matched: a deleted endpoint's dead letters stay listable."""
        if not ids.has_prefix(endpoint_id, ids.ENDPOINT):
            raise NotFound("endpoint_id: no such endpoint")
        tenants = [tenant_id] if tenant_id is not None else await depths.tenant_ids(self.r)
        for t in tenants:
            if await self.r.exists(keys.endpoint(t, endpoint_id)):
                return
        raise NotFound("endpoint_id: no such endpoint")

    async def _named_dead(
        self, tenant_id: str | None, f: DeadFilter, delivery_ids: Sequence[str]
    ) -> dict[str, list[str]]:
        """The named deliveries that are dead (and match the endpoint filter), by tenant; a named id
        that is missing or another tenant's answers 404, like any other object."""
        if len(delivery_ids) > 10000:
            raise Invalid("ids: at most 10000")
        unique = list(dict.fromkeys(delivery_ids))
        tenants = [tenant_id] if tenant_id is not None else await depths.tenant_ids(self.r)
        found: dict[str, tuple[str, str | None, str | None]] = {}
        for t in tenants:
            async with self.r.pipeline(transaction=False) as pipe:
                for d in unique:
                    pipe.hmget(keys.delivery(t, d), ["s", "p"])
                rows = await pipe.execute()
            for d, (st, ep) in zip(unique, rows, strict=True):
                if st is not None:
                    found[d] = (t, st, ep)
        matched: dict[str, list[str]] = {}
        for i, d in enumerate(delivery_ids):
            if d not in found:
                raise NotFound(f"ids.{i}: no such delivery")
        for d in unique:
            t, st, ep = found[d]
            if st == "dead" and (not f.endpoint_id or ep == f.endpoint_id):
                matched.setdefault(t, []).append(d)
        return matched

    async def replay(
        self,
        tenant_id: str | None,
        f: DeadFilter,
        delivery_ids: Sequence[str] | None,
        *,
        dry_run: bool,
        rate_per_s: float | None,
        now_ms: int,
    ) -> ReplayResult:
        """Start a replay of the matching dead deliveries (a fresh retry series each; ``rate_per_s``
        spaces them out): its record, then its RQ job (:mod:`webhooks.stores.operations`), which
        scans and requeues. ``matched`` is counted now; a dry run only counts. Dead letters that die
        after now (a replayed one dying again among them) are not this replay's."""
        if rate_per_s is not None and not MIN_REPLAY_RATE <= rate_per_s <= 100000:
            raise Invalid(f"rate_per_s: a number from {MIN_REPLAY_RATE} to 100000")
        until_ms = now_ms if f.until_ms is None else min(f.until_ms, now_ms)
        named: dict[str, list[str]] = {}
        if delivery_ids is not None:
            named = await self._named_dead(tenant_id, f, delivery_ids)
            tenants = [t for t, v in named.items() if v]
            total = sum(len(v) for v in named.values())
        else:
            tenants = [tenant_id] if tenant_id is not None else await depths.tenant_ids(self.r)
            counts = [await count_dead(self.r, t, f, until_ms) for t in tenants]
            tenants = [t for t, n in zip(tenants, counts, strict=True) if n]
            total = sum(counts)
        if not total and f.endpoint_id:
            await self._dead_endpoint(tenant_id, f.endpoint_id)
        if dry_run:
            return ReplayResult(replay_id=None, matched=total, dry_run=True)
        if self.operations is None:
            raise StorageError("replays run as RQ jobs: this store has no operations queue")
        replay_id = replays.new_id(now_ms)
        spec: dict[str, object] = {
            "mode": "ids" if delivery_ids is not None else "filter",
            "endpoint_id": f.endpoint_id,
            "event_type": f.event_type,
            "since_ms": f.since_ms,
            "until_ms": until_ms,
            "status_code": f.status_code,
        }
        for t, part in named.items():
            async with self.r.pipeline(transaction=True) as pipe:
                for start in range(0, len(part), 5000):
                    pipe.rpush(keys.replay_todo(t, replay_id), *part[start : start + 5000])
                pipe.expire(keys.replay_todo(t, replay_id), replays.REPLAY_TTL_S)
                await pipe.execute()
        await replays.create(self.r, replay_id, tenant_id, tenants, total, spec, rate_per_s, now_ms)
        await self.operations.enqueue_replay(replay_id)
        return ReplayResult(replay_id=replay_id, matched=total, dry_run=False)

    async def get_replay(self, tenant_id: str | None, replay_id: str) -> Replay:
        return await replays.get(self.r, tenant_id, replay_id)

    async def list_replays(
        self, tenant_id: str | None, limit: int | None, cursor: str | None
    ) -> Page[Replay]:
        return await replays.list_page(self.r, tenant_id, limit, cursor)

    async def cancel_replay(self, tenant_id: str | None, replay_id: str, now_ms: int) -> Replay:
        return await replays.cancel(self.r, tenant_id, replay_id, now_ms, self.policy.retention_ms)

    async def recover(
        self, tenant_id: str, endpoint_id: str, since_ms: int, until_ms: int | None, now_ms: int
    ) -> ReplayResult:
        """Re-send what died at this endpoint in ``[since, until]`` (a replay filtered to it)."""
        await self.endpoints.endpoint_raw(tenant_id, endpoint_id)
        if until_ms is not None and until_ms < since_ms:
            raise Invalid("until: not before since")
        f = DeadFilter(endpoint_id=endpoint_id, since_ms=since_ms, until_ms=until_ms)
        return await self.replay(tenant_id, f, None, dry_run=False, rate_per_s=None, now_ms=now_ms)
