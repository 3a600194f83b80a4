"""Accepting events fast: cached routing checked at write time, and group commit.

- **Routing** needs the tenant's endpoints. They are cached per tenant together
  with the tenant's endpoint *version* (bumped in the same transaction as every
  endpoint change, and by a 410). The ingest script refuses to write anything
  routed with a version that is no longer current (:class:`arrivals.StaleRoutes`),
  so a cached route is never used after a change: the events are routed again.
- **Event-type catalogue**: the tenant's compiled schemas and strict mode
  (:mod:`webhooks.intake.event_types`) are read and cached with the routes, under the same version
  (catalogue changes bump it too). A stale catalogue never decides: an event it let through is
  refused by the script like a stale route, and before an event is refused by it the version is
  read again.
- **Group commit**: concurrent requests are written by one script call. The
  first request starts a write at once; requests arriving while it runs join the
  next one, so there is no added wait and the number of Redis round trips falls
  as load rises. Up to ``MAX_WRITERS`` (2) writes are in flight, so Redis never
  waits for the event loop between two groups. Each request still gets its own
  all-or-nothing answer: the script writes all of a group or none of it.
- **Contention**: a request whose routes went stale is routed again, at once the first time,
  then after a short growing wait with jitter (``STALE_BACKOFF_S``), up to ``STALE_TRIES``
  tries (about 0.3 s in all). If the tenant's endpoints still change under every try, nothing
  is written and the request gets :class:`~webhooks.errors.RoutesChanging` (503
  ``routes_changing`` with ``Retry-After``), never a storage error: Redis answered every time.
"""

import asyncio
import random
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson
from redis.asyncio import Redis
from redis.exceptions import OutOfMemoryError

from webhooks import ids, keys
from webhooks.errors import Invalid, PayloadTooLarge, RoutesChanging, StorageFull
from webhooks.intake import event_types, routing, validation
from webhooks.queueing import arrivals, history, queue, shares
from webhooks.queueing.history import StoredEvent
from webhooks.queueing.memory import LevelCache
from webhooks.runtime import replication
from webhooks.runtime.replication import NO_ACK, AckPolicy

Route = tuple[str, bool, list[str] | None]  # (endpoint id, disabled, event types)
MAX_GROUP_EVENTS = 2000
# Writes in flight at once. Two, so that Redis has the next group's script queued behind the
# current one: with one, Redis idled from each reply until the event loop, busy preparing the next
# batch (routing, ids, records: ~20 ms of Python per 1,000 events), got round to sending the next
# write; the API and Redis then took turns instead of working at the same time.
MAX_WRITERS = 2
ROUTE_CACHE_TENANTS = 10_000
STALE_TRIES = 8  # routings of one request while its tenant's endpoints change under it
STALE_BACKOFF_S = 0.005  # the wait before the third try; it doubles per try after that...
STALE_BACKOFF_MAX_S = 0.1  # ...up to this (each wait is drawn from its upper half: jitter)
WIRE_OVERHEAD = len('{"type":"","timestamp":"2026-01-01T00:00:00.000Z","data":}')
_valid_types: set[str] = set()  # event types already checked (the same few recur)


# Not frozen: one is made per event or delivery on the hot path, and a frozen dataclass's
# __init__ costs about three times as much. Treated as immutable all the same.
@dataclass(slots=True)
class EventIn:
    event_type: str
    payload: Any
    event_id: str | None = None
    idempotency_key: str | None = None


def prepare(
    tenant_id: str,
    event: EventIn,
    routes: Sequence[Route],
    now_ms: int,
    max_payload_bytes: int,
    routes_version: str | None = None,
    catalogue: event_types.Catalogue = event_types.EMPTY,
    endpoint_ids: list[str] | None = None,
) -> arrivals.NewEvent:
    """Validate one event, serialize its body once and pick its deliveries (pure but for random ids).

    ``endpoint_ids``, when given, is what ``routing.route(routes, event.event_type)`` returns
    (a batch routes each of its event types once)."""
    if event.event_type not in _valid_types:
        routing.check_event_type(event.event_type)
        if len(_valid_types) > 10_000:
            _valid_types.clear()
        _valid_types.add(event.event_type)
    if endpoint_ids is None:
        endpoint_ids = routing.route(routes, event.event_type)
    stem = ids.new_stem(len(endpoint_ids), now_ms)
    stem_derives = ids.derived(stem)
    if event.event_id is not None:
        event_id = validation.check_event_id(event.event_id)
    elif stem_derives:
        event_id = ids.event_id_of_stem(stem)  # one random id serves the event and its deliveries
    else:
        event_id = ids.new_id(ids.EVENT, now_ms)
    own_ids = event.event_id is None and stem_derives
    idem = validation.check_idempotency_key(event.idempotency_key) if event.idempotency_key else ""
    try:
        payload_json = orjson.dumps(event.payload)
    except orjson.JSONEncodeError as exc:
        # Integers beyond 64 bits, lone surrogates, nesting deeper than 254 levels...
        raise Invalid(f"payload: cannot be stored as JSON ({exc})") from None
    size = len(payload_json) + len(event.event_type) + WIRE_OVERHEAD
    if size > max_payload_bytes:
        raise PayloadTooLarge(f"payload: the event body is {size} bytes; the limit is {max_payload_bytes}")
    if catalogue.active:  # after serializing: orjson bounds the payload's depth first
        catalogue.check(event.event_type, event.payload)
    return arrivals.NewEvent(
        tenant_id,
        event_id,
        event.event_type,
        now_ms,
        history.event_record(
            event.event_type, now_ms, "" if own_ids else stem, len(endpoint_ids), payload_json
        ),
        idem,
        list(zip(ids.stem_members(stem, len(endpoint_ids)), endpoint_ids, strict=True)),
        routes_version=routes_version,
        generated_id=event.event_id is None,
        derived_ids=own_ids,
    )


def stale_backoff_s(attempt: int) -> float:
    """The wait before try number ``attempt`` (0-based, from the third on) of a stale request."""
    ceiling = min(STALE_BACKOFF_MAX_S, STALE_BACKOFF_S * 2 ** max(0, attempt - 2))
    return random.uniform(ceiling / 2, ceiling)  # jitter, not a secret


class _TenantView(NamedTuple):
    version: str  # the tenant's endpoint version the rest was read at
    routes: list[Route]
    catalogue: event_types.Catalogue
    endpoint_ids: list[str]  # the tenant's endpoint set as read (the next read's guess)


@dataclass
class _Pending:
    events: list[arrivals.NewEvent]
    done: "asyncio.Future[list[StoredEvent | None]]"


class Ingestor:
    def __init__(
        self,
        r: "Redis",
        *,
        max_payload_bytes: int,
        retention_ms: int = queue.DEFAULT_RETENTION_MS,
        ack: AckPolicy = NO_ACK,
        tenant_max_share: float = shares.DEFAULT_MAX_SHARE,
    ) -> None:
        self.r = r
        self.ack = ack
        self.tenant_max_share = tenant_max_share
        self.max_payload_bytes = max_payload_bytes
        self.retention_ms = retention_ms
        self._routes: OrderedDict[str, _TenantView] = OrderedDict()
        self._loading: dict[str, asyncio.Future[_TenantView]] = {}
        self._guesses: dict[str, list[str]] = {}  # endpoint sets of views dropped as stale
        self._queue: list[_Pending] = []
        self._writers = 0  # write loops running (at most MAX_WRITERS)
        self.memory = LevelCache(r)

    async def routes(self, tenant_id: str) -> "_TenantView":
        """The tenant's routes and catalogue and the endpoint version they were read at (cached)."""
        cached = self._routes.get(tenant_id)
        if cached is not None:
            self._routes.move_to_end(tenant_id)
            return cached
        loading = self._loading.get(tenant_id)
        if loading is None:  # one read per tenant however many requests miss at once
            loading = self._loading[tenant_id] = asyncio.ensure_future(self._load_routes(tenant_id))
            loading.add_done_callback(lambda _: self._loading.pop(tenant_id, None))
        return await asyncio.shield(loading)

    async def _load_routes(self, tenant_id: str) -> "_TenantView":
        """Read the tenant's routes. The version is read first: a change racing this read leaves a
        version that is already old, which the ingest script refuses, so the routes are read again.

        After a stale refusal the endpoint set usually stayed the same (a PATCH changes one
        endpoint's document): their documents are read in the same round trip as the version,
        on the guess, and read again only when the set did change. One round trip fewer makes
        the window in which a change can overtake the request shorter."""
        guess = self._guesses.pop(tenant_id, None) or []
        async with self.r.pipeline(transaction=False) as pipe:
            pipe.get(keys.endpoint_version(tenant_id))
            pipe.zrange(keys.tenant_endpoints(tenant_id), 0, -1)
            event_types.read(pipe, tenant_id)
            for endpoint_id in guess:
                pipe.hmget(keys.endpoint(tenant_id, endpoint_id), ["doc", "disabled"])
            version, endpoint_ids, *replies = await pipe.execute()
        catalogue_replies, rows = replies[: len(replies) - len(guess)], replies[len(replies) - len(guess) :]
        if endpoint_ids != guess:
            async with self.r.pipeline(transaction=False) as pipe:
                for endpoint_id in endpoint_ids:
                    pipe.hmget(keys.endpoint(tenant_id, endpoint_id), ["doc", "disabled"])
                rows = await pipe.execute()
        routes: list[Route] = []
        for doc, disabled in rows:
            if doc:
                d = orjson.loads(doc)
                routes.append((d["id"], disabled == "1", d.get("event_types")))
        catalogue = event_types.catalogue(*catalogue_replies)
        entry = _TenantView(str(version or "0"), routes, catalogue, list(endpoint_ids))
        self._routes[tenant_id] = entry
        if len(self._routes) > ROUTE_CACHE_TENANTS:
            self._routes.popitem(last=False)
        return entry

    def forget(self, tenant_id: str) -> None:
        view = self._routes.pop(tenant_id, None)
        if view is not None and view.endpoint_ids:
            if len(self._guesses) >= ROUTE_CACHE_TENANTS:
                self._guesses.clear()
            self._guesses[tenant_id] = view.endpoint_ids

    async def ingest(
        self, tenant_id: str, events: Sequence[EventIn], now_ms: int, *, batch: bool = False
    ) -> list[tuple[arrivals.NewEvent, StoredEvent | None]]:
        """Store events all-or-nothing; per event, the stored event when its id or key was seen before.

        With ``batch``, a validation error names the event by position (``events.3.event_type: ...``).
        Raises :class:`StorageFull` while pending work fills Redis' memory budget, and
        :class:`TenantStorageFull` while this tenant holds its whole share of it (nothing is written).
        """
        if await self.memory.level() == "full":
            raise StorageFull()
        for attempt in range(STALE_TRIES):
            if attempt >= 2:  # the first retry follows a single change at once; then back off
                await asyncio.sleep(stale_backoff_s(attempt))
            version, routes, catalogue, _ = await self.routes(tenant_id)
            prepared = []
            routed: dict[str, list[str]] = {}  # event type -> endpoint ids, for this batch
            try:
                for i, e in enumerate(events):
                    endpoint_ids = routed.get(e.event_type)
                    if endpoint_ids is None:
                        endpoint_ids = routed[e.event_type] = routing.route(routes, e.event_type)
                    try:
                        prepared.append(
                            prepare(
                                tenant_id,
                                e,
                                routes,
                                now_ms,
                                self.max_payload_bytes,
                                version,
                                catalogue,
                                endpoint_ids,
                            )
                        )
                    except (Invalid, PayloadTooLarge) as exc:
                        if not batch:
                            raise
                        raise type(exc)(f"events.{i}.{exc}") from None
            except event_types.SchemaMismatch:
                if await self._is_current(tenant_id, version):
                    raise
                self.forget(tenant_id)  # refused by an old catalogue: check with the current one
                continue
            try:
                stored = await self._commit(prepared)
            except arrivals.StaleRoutes as stale:
                self.forget(stale.tenant_id)
                continue
            return list(zip(prepared, stored, strict=True))
        raise RoutesChanging()

    async def _is_current(self, tenant_id: str, version: str) -> bool:
        return str(await self.r.get(keys.endpoint_version(tenant_id)) or "0") == version

    async def _commit(self, events: list[arrivals.NewEvent]) -> list[StoredEvent | None]:
        done: asyncio.Future[list[StoredEvent | None]] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(events, done))
        if self._writers < MAX_WRITERS:
            self._writers += 1
            asyncio.get_running_loop().create_task(self._write_groups())
        return await done

    async def _write_groups(self) -> None:
        try:
            while self._queue:
                group: list[_Pending] = []
                size = 0
                while self._queue and (not group or size + len(self._queue[0].events) <= MAX_GROUP_EVENTS):
                    pending = self._queue.pop(0)
                    group.append(pending)
                    size += len(pending.events)
                await self._write(group)
        finally:
            self._writers -= 1

    async def _write(self, group: list[_Pending]) -> None:
        try:
            events = [e for p in group for e in p.events]
            stored = await arrivals.ingest(
                self.r,
                events,
                self.retention_ms,
                errors_in_place=True,
                max_bytes=self.memory.max_bytes,
                max_share=self.tenant_max_share,
            )
            written = {
                e.tenant_id for e, x in zip(events, stored, strict=True) if not isinstance(x, Exception)
            }
            if written:  # one WAIT (and fence) per group commit: webhooks/runtime/replication.py
                await replication.acknowledge(self.r, self.ack, written)
        except Exception as exc:  # noqa: BLE001 - every waiting request gets the failure
            failure = self._failure(exc)
            for p in group:
                if not p.done.done():  # a request whose client went away is cancelled
                    p.done.set_exception(failure)
            return
        at = 0
        for p in group:
            part = stored[at : at + len(p.events)]
            at += len(p.events)
            if p.done.done():
                continue
            # Nothing of this request's tenant was written: stale routes (it routes again), or
            # its tenant's script failed (the others of the group are stored and answered).
            failed = next((x for x in part if isinstance(x, Exception)), None)
            if failed is None:
                p.done.set_result([x for x in part if not isinstance(x, Exception)])
            else:
                p.done.set_exception(self._failure(failed))

    def _failure(self, exc: Exception) -> Exception:
        """What a request is told when its write failed: :class:`StorageFull` (the memory level
        marked full at once) when Redis refused it for memory, else the error itself."""
        if isinstance(exc, OutOfMemoryError):
            self.memory.mark_full()
            return StorageFull()
        return exc
