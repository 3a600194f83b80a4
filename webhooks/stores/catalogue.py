"""A tenant's event-type catalogue in Redis: create, read, page, change, delete; strict mode.

Keys: :func:`webhooks.keys.event_types` (name -> document) and
:func:`webhooks.keys.event_type_names` (names, for paging in name order). Every write bumps the
tenant's endpoint version in the same transaction, so ingest (which caches the catalogue with
the routes, :mod:`webhooks.intake.ingest`) never accepts or refuses an event with a catalogue older
than the last change that was answered. Another tenant's type answers :class:`NotFound`: the
keys are the caller's tenant's own.
"""

import re
from typing import Any, cast

import orjson
from redis.asyncio import Redis

from webhooks import keys
from webhooks.errors import Conflict, Invalid, NotFound
from webhooks.intake import routing, validation
from webhooks.intake.event_types import EventType, compile_schema
from webhooks.models import Page
from webhooks.queueing.scripts import scripts
from webhooks.stores.paging import check_limit, decode_cursor, encode_cursor
from webhooks.timefmt import iso_from_ms

NAME_CURSOR = re.compile(routing.EVENT_TYPE_RE.pattern.strip("^$"))
MAX_TYPES_PER_TENANT = 10_000


def _out(tenant_id: str, doc: dict[str, Any]) -> EventType:
    return EventType.model_validate(
        {
            "name": doc["name"],
            "tenant_id": tenant_id,
            "description": doc.get("description", ""),
            "schema": doc.get("schema"),
            "archived": bool(doc.get("archived")),
            "created_at": iso_from_ms(doc["created_at"]) or "",
            "updated_at": iso_from_ms(doc["updated_at"]) or "",
        }
    )


def _checked_schema(schema: Any) -> Any:
    if schema is not None:
        compile_schema(schema)
    return schema


class EventTypeStore:
    def __init__(self, r: "Redis") -> None:
        self.r = r

    async def create(
        self,
        tenant_id: str,
        *,
        name: str,
        now_ms: int,
        description: str | None = None,
        schema: Any = None,
        archived: bool = False,
    ) -> EventType:
        """A new catalogue entry; :class:`Conflict` when the name is taken, :class:`Invalid` for a bad
        name, description or schema (the validator's message)."""
        doc = {
            "name": routing.check_event_type(name, "name"),
            "description": validation.check_description(description),
            "schema": _checked_schema(schema),
            "archived": bool(archived),
            "created_at": now_ms,
            "updated_at": now_ms,
        }
        if await self.r.hlen(keys.event_types(tenant_id)) >= MAX_TYPES_PER_TENANT:
            raise Invalid(f"name: a catalogue holds at most {MAX_TYPES_PER_TENANT} event types")
        async with self.r.pipeline(transaction=True) as pipe:
            pipe.hsetnx(keys.event_types(tenant_id), name, orjson.dumps(doc))
            pipe.zadd(keys.event_type_names(tenant_id), {name: 0})
            pipe.incr(keys.endpoint_version(tenant_id))
            created, _, _ = await pipe.execute()
        if not created:
            raise Conflict(f"name: the event type {name!r} exists already (PATCH it instead)")
        return _out(tenant_id, doc)

    async def _doc(self, tenant_id: str, name: str) -> dict[str, Any]:
        raw = await self.r.hget(keys.event_types(tenant_id), name)
        if raw is None:
            raise NotFound("no such event type")
        return cast(dict[str, Any], orjson.loads(raw))

    async def get(self, tenant_id: str, name: str) -> EventType:
        return _out(tenant_id, await self._doc(tenant_id, name))

    async def list(
        self, tenant_id: str, limit: int | None, cursor: str | None, *, include_archived: bool = False
    ) -> Page[EventType]:
        """In name order; archived types only with ``include_archived`` (so a page may be short)."""
        limit = check_limit(limit)
        after = decode_cursor(cursor, NAME_CURSOR)
        low = f"({after}" if after else "-"
        names = cast(
            list[str],
            await self.r.zrangebylex(keys.event_type_names(tenant_id), low, "+", start=0, num=limit + 1),
        )
        page = names[:limit]
        docs = await self.r.hmget(keys.event_types(tenant_id), page) if page else []
        out = [_out(tenant_id, orjson.loads(d)) for d in docs if d is not None]
        if not include_archived:
            out = [t for t in out if not t.archived]
        next_cursor = encode_cursor(page[-1]) if len(names) > limit else None
        return Page[EventType](data=out, next_cursor=next_cursor)

    async def update(self, tenant_id: str, name: str, changes: dict[str, Any], now_ms: int) -> EventType:
        """Apply the given fields (``schema: null`` removes the schema); absent ones stay."""
        doc = await self._doc(tenant_id, name)
        if "description" in changes:
            doc["description"] = validation.check_description(changes["description"])
        if "schema" in changes:
            doc["schema"] = _checked_schema(changes["schema"])
        if changes.get("archived") is not None:
            doc["archived"] = bool(changes["archived"])
        doc["updated_at"] = now_ms
        async with self.r.pipeline(transaction=True) as pipe:
            pipe.hset(keys.event_types(tenant_id), name, orjson.dumps(doc))
            pipe.incr(keys.endpoint_version(tenant_id))
            await pipe.execute()
        return _out(tenant_id, doc)

    async def delete(self, tenant_id: str, name: str) -> None:
        async with self.r.pipeline(transaction=True) as pipe:
            pipe.hdel(keys.event_types(tenant_id), name)
            pipe.zrem(keys.event_type_names(tenant_id), name)
            pipe.incr(keys.endpoint_version(tenant_id))
            removed, _, _ = await pipe.execute()
        if not removed:
            raise NotFound("no such event type")

    async def set_strict(self, tenant_id: str, strict: bool) -> None:
        """Turn the tenant's strict mode on or off; :class:`NotFound` for a missing (or just deleted)
        tenant, whose hash is never re-created by this (one script: ``lua/strict.lua``)."""
        done = await scripts(self.r).strict(keys=[keys.tenant_base(tenant_id)], args=["1" if strict else "0"])
        if not int(done):
            raise NotFound("no such tenant")
