"""Tenants and their API keys (``store.tenants``, a repository the :class:`webhooks.stores.store.Store`
holds). A tenant is one hash (``keys.tenant``) listed in ``keys.TENANTS``; its API keys are kept
hashed (:mod:`webhooks.stores.auth`), each as a document in the tenant's key hash and a lookup key
from the hash to ``tenant:key id``. Deleting a tenant spans its endpoints too, so it is
:meth:`webhooks.stores.store.Store.start_tenant_deletion`.
"""

import secrets
from typing import cast

import orjson
from redis.asyncio import Redis

from webhooks import ids, keys
from webhooks.errors import Invalid, NotFound
from webhooks.intake import validation
from webhooks.intake.operational import OPERATOR_TENANT
from webhooks.models import ApiKey, ApiKeyCreated, Page, Tenant, TenantCreated, TenantStorage
from webhooks.queueing import memory, shares
from webhooks.stores import paging
from webhooks.stores.auth import API_KEY_PREFIX, Authenticator, hash_api_key
from webhooks.timefmt import iso_from_ms


class Tenants:
    """Tenants and API keys; ``auth`` forgets a revoked key's cached verdict."""

    def __init__(self, r: "Redis", auth: Authenticator, max_share: float = shares.DEFAULT_MAX_SHARE) -> None:
        self.r = r
        self.auth = auth
        self.max_share = max_share  # WEBHOOKS_TENANT_MAX_SHARE: a tenant's share unless it has its own

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
            max_share=float(h["share"]) if "share" in h else None,
        )

    async def storage(self, tenant_id: str) -> TenantStorage:
        """What the tenant holds against its share of Redis' memory (``webhooks.queueing.shares``)."""
        await self.get_tenant(tenant_id)
        budget = await memory.usage(self.r)
        (u,) = await shares.usage(self.r, [tenant_id], budget.max_bytes, self.max_share)
        return TenantStorage(
            used_bytes=u.used_bytes,
            limit_bytes=u.limit_bytes or None,
            max_share=u.max_share,
            fraction=round(u.fraction, 4) if u.limit_bytes else None,
        )

    async def set_max_share(self, tenant_id: str, share: float | None) -> None:
        await self.get_tenant(tenant_id)
        await shares.set_share(self.r, tenant_id, share)

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
