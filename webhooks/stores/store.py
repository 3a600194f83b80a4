"""Tenants, API keys, endpoints, events, deliveries and dead letters in Redis.

:class:`Store` is the only way the API and the CLI read or change this state.
Ownership is enforced here: every read takes the caller's tenant id, and every
key of a tenant carries that tenant's hash tag, so an object of another tenant
answers :class:`NotFound`, exactly like a missing one. Endpoints live in
:mod:`webhooks.stores.endpoints`, events, deliveries and dead letters in
:mod:`webhooks.stores.deliveries`; key names come from :mod:`webhooks.keys`,
queue transitions from :mod:`webhooks.queueing.queue`.
"""

import secrets
from collections.abc import Sequence
from typing import cast

import orjson
from redis.asyncio import Redis

from webhooks import ids, keys
from webhooks.errors import Conflict, Invalid, NotFound
from webhooks.intake import validation
from webhooks.intake.ingest import EventIn, Ingestor, prepare
from webhooks.intake.operational import OPERATOR_TENANT
from webhooks.models import (
    ApiKey,
    ApiKeyCreated,
    DeliveryStatus,
    DeliverySummary,
    Event,
    Page,
    Tenant,
    TenantCreated,
)
from webhooks.outbound.secretbox import SecretBox
from webhooks.queueing import arrivals
from webhooks.queueing.history import StoredEvent
from webhooks.stores import paging
from webhooks.stores.auth import API_KEY_PREFIX, Authenticator, hash_api_key
from webhooks.stores.deliveries import DeadFilter, DeliveriesMixin
from webhooks.stores.policy import Policy
from webhooks.timefmt import iso_from_ms

__all__ = ["DeadFilter", "Policy", "Store"]

TEST_EVENT_TYPE = "webhooks.test"


class Store(DeliveriesMixin):
    def __init__(self, r: "Redis", box: SecretBox, policy: Policy | None = None) -> None:
        self.r = r
        self.box = box
        self.policy = policy or Policy()
        self.auth = Authenticator(r, rate_per_s=self.policy.tenant_rate_per_s, burst=self.policy.tenant_burst)
        self.ingestor = Ingestor(
            r,
            max_payload_bytes=self.policy.max_payload_bytes,
            retention_ms=self.policy.retention_ms,
            ack=self.policy.ack,
        )

    # -- tenants and API keys ------------------------------------------------------------

    async def create_tenant(self, name: str, now_ms: int) -> TenantCreated:
        name = name.strip()
        if not name or len(name) > 200 or not validation.is_utf8_text(name):
            raise Invalid("name: 1 to 200 characters")
        tenant_id = ids.new_id(ids.TENANT, now_ms)
        # The tenant's own keys first, then the global list (another slot): a crash between the two
        # leaves an unlisted tenant nobody holds a key to, never a listed one without its record.
        await self.r.hset(
            keys.tenant(tenant_id), mapping={"id": tenant_id, "name": name, "created_at": now_ms}
        )
        created = await self.create_api_key(tenant_id, now_ms)
        await self.r.zadd(keys.TENANTS, {tenant_id: 0})
        tenant = Tenant(id=tenant_id, name=name, created_at=iso_from_ms(now_ms) or "")
        return TenantCreated(**tenant.model_dump(), api_key=created.api_key)

    async def get_tenant(self, tenant_id: str) -> Tenant:
        if not ids.has_prefix(tenant_id, ids.TENANT):
            raise NotFound("no such tenant")
        h = cast(dict[str, str], await self.r.hgetall(keys.tenant(tenant_id)))
        if "name" not in h:
            raise NotFound("no such tenant")
        return Tenant(
            id=h["id"],
            name=h["name"],
            created_at=iso_from_ms(int(h["created_at"])) or "",
            strict_event_types=h.get("strict_event_types") == "1",
        )

    async def list_tenants(self, limit: int | None, cursor: str | None) -> Page[Tenant]:
        page_ids, next_cursor = await paging.lex_page(
            self.r, keys.TENANTS, paging.check_limit(limit), paging.decode_cursor(cursor)
        )
        tenants = []
        for tenant_id in page_ids:
            if tenant_id == OPERATOR_TENANT:
                continue  # reserved (webhooks/intake/operational.py): reachable by id, not listed
            try:
                tenants.append(await self.get_tenant(tenant_id))
            except NotFound:
                continue
        return Page[Tenant](data=tenants, next_cursor=next_cursor)

    async def delete_tenant(self, tenant_id: str) -> None:
        """Delete the tenant, its keys and endpoints; its history expires by retention (or is trimmed
        first under memory pressure) and queued deliveries end ``dead`` ("endpoint deleted"). The
        operator tenant (``webhooks.intake.operational``) is refused with :class:`Conflict`."""
        await self.get_tenant(tenant_id)
        if tenant_id == OPERATOR_TENANT:
            raise Conflict("this tenant is reserved for operational webhooks and cannot be deleted")
        key_docs = await self.r.hgetall(keys.tenant_api_keys(tenant_id))
        endpoint_ids = cast(list[str], await self.r.zrange(keys.tenant_endpoints(tenant_id), 0, -1))
        for doc in key_docs.values():
            await self.r.delete(keys.api_key(orjson.loads(doc)["hash"]))
            self.auth.forget(orjson.loads(doc)["hash"])
        for endpoint_id in endpoint_ids:
            await self.delete_endpoint(tenant_id, endpoint_id)
        async with self.r.pipeline(transaction=True) as pipe:
            pipe.delete(keys.tenant_api_keys(tenant_id), keys.tenant_endpoints(tenant_id))
            pipe.delete(keys.event_types(tenant_id), keys.event_type_names(tenant_id))
            pipe.hdel(keys.tenant(tenant_id), "id", "name", "created_at", "strict_event_types")
            pipe.incr(keys.endpoint_version(tenant_id))
            await pipe.execute()
        await self.r.zrem(keys.TENANTS, tenant_id)

    async def create_api_key(self, tenant_id: str, now_ms: int) -> ApiKeyCreated:
        key = API_KEY_PREFIX + secrets.token_urlsafe(32)
        key_id = ids.new_id(ids.API_KEY, now_ms)
        key_hash = hash_api_key(key)
        doc = {"id": key_id, "prefix": key[:10], "hash": key_hash, "created_at": now_ms}
        await self.r.hset(keys.tenant_api_keys(tenant_id), key_id, orjson.dumps(doc))
        await self.r.set(keys.api_key(key_hash), f"{tenant_id}:{key_id}")
        return ApiKeyCreated(
            id=key_id, tenant_id=tenant_id, prefix=key[:10], created_at=iso_from_ms(now_ms) or "", api_key=key
        )

    async def list_api_keys(self, tenant_id: str) -> list[ApiKey]:
        docs = await self.r.hgetall(keys.tenant_api_keys(tenant_id))
        out = [orjson.loads(d) for d in docs.values()]
        return [
            ApiKey(
                id=d["id"],
                tenant_id=tenant_id,
                prefix=d["prefix"],
                created_at=iso_from_ms(d["created_at"]) or "",
            )
            for d in sorted(out, key=lambda d: d["id"])
        ]

    async def revoke_api_key(self, tenant_id: str, key_id: str) -> None:
        doc = await self.r.hget(keys.tenant_api_keys(tenant_id), key_id)
        if doc is None:
            raise NotFound("no such API key")
        await self.r.hdel(keys.tenant_api_keys(tenant_id), key_id)  # the key stops working here
        await self.r.delete(keys.api_key(orjson.loads(doc)["hash"]))
        self.auth.forget(orjson.loads(doc)["hash"])

    # -- ingest --------------------------------------------------------------------------------

    async def accept(
        self, tenant_id: str, events: Sequence[EventIn], now_ms: int, *, batch: bool = False
    ) -> list[tuple[arrivals.NewEvent, StoredEvent | None]]:
        """Store events all-or-nothing (see :class:`webhooks.intake.ingest.Ingestor`); per event, the stored
        event when its id or idempotency key was seen before (nothing new is queued for it)."""
        if len(events) > self.policy.max_batch:
            raise Invalid(f"events: a batch holds at most {self.policy.max_batch} events (got {len(events)})")
        return await self.ingestor.ingest(tenant_id, events, now_ms, batch=batch)

    async def ingest(
        self, tenant_id: str, events: Sequence[EventIn], now_ms: int, *, batch: bool = False
    ) -> list[Event]:
        """Accept events all-or-nothing; an id or idempotency key seen before answers the stored event.

        With ``batch``, an error names the event by its position (``events.3.event_type: ...``).
        """
        out = []
        for (new, existing), given in zip(
            await self.accept(tenant_id, events, now_ms, batch=batch), events, strict=True
        ):
            if existing is None:
                out.append(
                    Event(
                        id=new.event_id,
                        tenant_id=tenant_id,
                        event_type=new.event_type,
                        created_at=iso_from_ms(now_ms) or "",
                        payload=given.payload,
                        deliveries=[
                            DeliverySummary(id=d, endpoint_id=e, status=DeliveryStatus.PENDING)
                            for d, e in new.deliveries
                        ],
                    )
                )
            else:
                out.append(await self.event_out(existing))
        return out

    async def send_test_event(self, tenant_id: str, endpoint_id: str, now_ms: int) -> Event:
        """A ``webhooks.test`` event delivered to this endpoint only, whatever its event types (the
        console's "send a test event"); :class:`Conflict` when it is disabled, as nothing would go."""
        endpoint = await self.get_endpoint(tenant_id, endpoint_id)
        if endpoint.disabled:
            raise Conflict("the endpoint is disabled: enable it to send a test event")
        payload = {"message": "a test event from the webhooks console", "endpoint_id": endpoint_id}
        new = prepare(
            tenant_id, EventIn(TEST_EVENT_TYPE, payload), [(endpoint_id, False, None)], now_ms, 1 << 20
        )
        await arrivals.ingest(self.r, [new], self.policy.retention_ms)
        return Event(
            id=new.event_id,
            tenant_id=tenant_id,
            event_type=TEST_EVENT_TYPE,
            created_at=iso_from_ms(now_ms) or "",
            payload=payload,
            deliveries=[
                DeliverySummary(id=d, endpoint_id=e, status=DeliveryStatus.PENDING) for d, e in new.deliveries
            ],
        )
