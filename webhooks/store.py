"""Tenants, API keys, endpoints, events, deliveries and dead letters in Redis.

:class:`Store` is the only way the API and the CLI read or change this state.
Ownership is enforced here: every read takes the caller's tenant id and an
object of another tenant answers :class:`NotFound`, exactly like a missing one.
Key names come from :mod:`webhooks.keys`; queue transitions from
:mod:`webhooks.queue`.
"""

import base64
import binascii
import re
import secrets
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

import orjson
from redis.asyncio import Redis

from webhooks import ids, keys, queue, routing, validation
from webhooks.auth import API_KEY_PREFIX, Authenticator, hash_api_key
from webhooks.errors import Conflict, Invalid, LimitExceeded, NotFound
from webhooks.ingest import EventIn, Ingestor
from webhooks.models import (
    ApiKey,
    ApiKeyCreated,
    Attempt,
    Delivery,
    DeliveryDetail,
    DeliveryStatus,
    DeliverySummary,
    Endpoint,
    EndpointWithSecret,
    Event,
    Page,
    ReplayResult,
    Secret,
    Tenant,
    TenantCreated,
)
from webhooks.netguard import check_target_url
from webhooks.secretbox import SecretBox
from webhooks.signing import HMAC_SHA256, NewKey, check_scheme, generate_key
from webhooks.timefmt import iso_from_ms

MAX_PAGE = 1000
DEFAULT_PAGE = 50
SCAN_FACTOR = 20  # a filtered page reads at most this many times `limit` candidates
MIN_REPLAY_RATE = 0.001  # deliveries per second; spacing stays below 1000 s


@dataclass(frozen=True, slots=True)
class Policy:
    """What the operator allows; built from Settings by the caller."""

    allow_private_targets: bool = False
    https_only: bool = False
    max_payload_bytes: int = 262144
    max_endpoints_per_tenant: int = 1000
    max_batch: int = 1000
    tenant_rate_per_s: float = 0.0  # API requests per second per tenant; 0 = unlimited
    tenant_burst: float = 0.0
    retention_ms: int = queue.DEFAULT_RETENTION_MS


@dataclass(frozen=True, slots=True)
class DeadFilter:
    endpoint_id: str | None = None
    event_type: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None


ID_CURSOR = re.compile(r"[a-z]{2,4}_[0-9a-z]{26}")  # an object id (webhooks.ids)
DEAD_CURSOR = re.compile(r"[0-9]{1,16}:[a-z]{2,4}_[0-9a-z]{26}")  # "<dead ms>:<delivery id>"


def encode_cursor(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None, shape: "re.Pattern[str]" = ID_CURSOR) -> str | None:
    """The position a cursor names; :class:`Invalid` for anything this API did not hand out."""
    if not cursor:
        return None
    try:
        value = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True).decode()
    except (ValueError, binascii.Error, UnicodeDecodeError):
        value = ""
    if not shape.fullmatch(value):
        raise Invalid("cursor: not a cursor this API returned (pass back a next_cursor unchanged)")
    return value


def check_limit(limit: int | None) -> int:
    if limit is None:
        return DEFAULT_PAGE
    if not 1 <= limit <= MAX_PAGE:
        raise Invalid(f"limit: between 1 and {MAX_PAGE}")
    return limit


def _int(value: Any) -> int | None:
    return None if value in (None, "") else int(value)


def _delivery_from_hash(h: dict[str, str]) -> Delivery:
    return Delivery(
        id=h["id"],
        tenant_id=h["tenant_id"],
        event_id=h["event_id"],
        endpoint_id=h["endpoint_id"],
        event_type=h.get("event_type", ""),
        status=DeliveryStatus(h["status"]),
        attempt_count=int(h.get("attempt_count", 0)),
        created_at=iso_from_ms(int(h["created_at"])) or "",
        updated_at=iso_from_ms(int(h.get("updated_at", h["created_at"]))) or "",
        next_attempt_at=iso_from_ms(_int(h.get("next_attempt_at"))),
        last_status_code=_int(h.get("last_status_code")),
        dead_at=iso_from_ms(_int(h.get("dead_at"))),
    )


class Store:
    def __init__(self, r: "Redis", box: SecretBox, policy: Policy | None = None) -> None:
        self.r = r
        self.box = box
        self.policy = policy or Policy()
        self.auth = Authenticator(r, rate_per_s=self.policy.tenant_rate_per_s, burst=self.policy.tenant_burst)
        self.ingestor = Ingestor(
            r, max_payload_bytes=self.policy.max_payload_bytes, retention_ms=self.policy.retention_ms
        )

    # -- tenants and API keys ------------------------------------------------------------

    async def create_tenant(self, name: str, now_ms: int) -> TenantCreated:
        name = name.strip()
        if not name or len(name) > 200 or not validation.is_utf8_text(name):
            raise Invalid("name: 1 to 200 characters")
        tenant_id = ids.new_id(ids.TENANT, now_ms)
        async with self.r.pipeline(transaction=True) as pipe:
            pipe.hset(keys.tenant(tenant_id), mapping={"id": tenant_id, "name": name, "created_at": now_ms})
            pipe.zadd(keys.TENANTS, {tenant_id: 0})
            await pipe.execute()
        created = await self.create_api_key(tenant_id, now_ms)
        tenant = Tenant(id=tenant_id, name=name, created_at=iso_from_ms(now_ms) or "")
        return TenantCreated(**tenant.model_dump(), api_key=created.api_key)

    async def get_tenant(self, tenant_id: str) -> Tenant:
        h = cast(dict[str, str], await self.r.hgetall(keys.tenant(tenant_id)))
        if not h:
            raise NotFound("no such tenant")
        return Tenant(
            id=h["id"],
            name=h["name"],
            created_at=iso_from_ms(int(h["created_at"])) or "",
            strict_event_types=h.get("strict_event_types") == "1",
        )

    async def list_tenants(self, limit: int | None, cursor: str | None) -> Page[Tenant]:
        page_ids, next_cursor = await self._lex_page(keys.TENANTS, check_limit(limit), decode_cursor(cursor))
        tenants = []
        for tenant_id in page_ids:
            try:
                tenants.append(await self.get_tenant(tenant_id))
            except NotFound:
                continue
        return Page[Tenant](data=tenants, next_cursor=next_cursor)

    async def delete_tenant(self, tenant_id: str) -> None:
        await self.get_tenant(tenant_id)
        key_docs = await self.r.hgetall(keys.tenant_api_keys(tenant_id))
        endpoint_ids = await self.r.zrange(keys.tenant_endpoints(tenant_id), 0, -1)
        async with self.r.pipeline(transaction=True) as pipe:
            for doc in key_docs.values():
                pipe.delete(keys.api_key(orjson.loads(doc)["hash"]))
            for endpoint_id in cast(list[str], endpoint_ids):
                pipe.delete(keys.endpoint(endpoint_id))
            pipe.delete(
                keys.tenant_api_keys(tenant_id), keys.tenant_endpoints(tenant_id), keys.tenant(tenant_id)
            )
            pipe.delete(keys.event_types(tenant_id), keys.event_type_names(tenant_id))
            pipe.incr(keys.endpoint_version(tenant_id))
            pipe.zrem(keys.TENANTS, tenant_id)
            await pipe.execute()
        for doc in key_docs.values():
            self.auth.forget(orjson.loads(doc)["hash"])

    async def create_api_key(self, tenant_id: str, now_ms: int) -> ApiKeyCreated:
        key = API_KEY_PREFIX + secrets.token_urlsafe(32)
        key_id = ids.new_id(ids.API_KEY, now_ms)
        key_hash = hash_api_key(key)
        doc = {"id": key_id, "prefix": key[:10], "hash": key_hash, "created_at": now_ms}
        async with self.r.pipeline(transaction=True) as pipe:
            pipe.hset(keys.tenant_api_keys(tenant_id), key_id, orjson.dumps(doc))
            pipe.set(keys.api_key(key_hash), f"{tenant_id}:{key_id}")
            await pipe.execute()
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
        async with self.r.pipeline(transaction=True) as pipe:
            pipe.delete(keys.api_key(orjson.loads(doc)["hash"]))
            pipe.hdel(keys.tenant_api_keys(tenant_id), key_id)
            await pipe.execute()
        self.auth.forget(orjson.loads(doc)["hash"])

    # -- endpoints ---------------------------------------------------------------------------

    def _endpoint_out(self, doc: dict[str, Any], disabled: str | None, reason: str | None) -> Endpoint:
        return Endpoint(
            id=doc["id"],
            tenant_id=doc["tenant_id"],
            url=doc["url"],
            description=doc.get("description", ""),
            event_types=doc.get("event_types"),
            headers=doc.get("headers") or {},
            rate_limit_per_s=doc.get("rate_limit_per_s"),
            disabled=disabled == "1",
            disabled_reason=reason if disabled == "1" else None,
            created_at=iso_from_ms(doc["created_at"]) or "",
            updated_at=iso_from_ms(doc["updated_at"]) or "",
            signing=doc.get("signing", HMAC_SHA256),
            public_key=doc.get("public_key"),
        )

    def _check_url(self, url: str) -> str:
        return check_target_url(
            url, allow_private=self.policy.allow_private_targets, https_only=self.policy.https_only
        )

    @staticmethod
    def _check_event_types(event_types: Sequence[str] | None) -> list[str] | None:
        if event_types is None:
            return None
        if len(event_types) > validation.MAX_EVENT_TYPES:
            raise Invalid(f"event_types: at most {validation.MAX_EVENT_TYPES}")
        for t in event_types:
            routing.check_event_type(t, "event_types")
        return list(dict.fromkeys(event_types))

    async def _endpoint_raw(self, tenant_id: str, endpoint_id: str) -> tuple[dict[str, Any], dict[str, str]]:
        h = await self.r.hgetall(keys.endpoint(endpoint_id))
        if not h:
            raise NotFound("no such endpoint")
        doc = orjson.loads(h["doc"])
        if doc["tenant_id"] != tenant_id:
            raise NotFound("no such endpoint")
        return doc, cast(dict[str, str], h)

    async def create_endpoint(
        self,
        tenant_id: str,
        *,
        url: str,
        now_ms: int,
        description: str | None = None,
        event_types: Sequence[str] | None = None,
        headers: dict[str, str] | None = None,
        rate_limit_per_s: float | None = None,
        disabled: bool = False,
        signing: str = HMAC_SHA256,
    ) -> EndpointWithSecret:
        await self.get_tenant(tenant_id)
        doc: dict[str, Any] = {
            "id": ids.new_id(ids.ENDPOINT, now_ms),
            "tenant_id": tenant_id,
            "url": self._check_url(url),
            "description": validation.check_description(description),
            "event_types": self._check_event_types(event_types),
            "headers": validation.check_headers(headers),
            "rate_limit_per_s": validation.check_rate_limit(rate_limit_per_s),
            "signing": check_scheme(signing),
            "created_at": now_ms,
            "updated_at": now_ms,
        }
        count = await self.r.zcard(keys.tenant_endpoints(tenant_id))
        if count >= self.policy.max_endpoints_per_tenant:
            raise LimitExceeded(f"a tenant has at most {self.policy.max_endpoints_per_tenant} endpoints")
        key = generate_key(signing)
        doc["secrets"] = [{"s": self.box.seal(key.stored), "exp": None}]
        doc["public_key"] = key.public_key
        async with self.r.pipeline(transaction=True) as pipe:
            pipe.hset(
                keys.endpoint(doc["id"]),
                mapping={
                    "doc": orjson.dumps(doc),
                    "disabled": "1" if disabled else "0",
                    "disabled_reason": "",
                },
            )
            pipe.zadd(keys.tenant_endpoints(tenant_id), {doc["id"]: 0})
            pipe.incr(keys.endpoint_version(tenant_id))
            await pipe.execute()
        out = self._endpoint_out(doc, "1" if disabled else "0", "disabled on creation")
        return EndpointWithSecret(**out.model_dump(), secret=_shown_secret(key))

    async def get_endpoint(self, tenant_id: str, endpoint_id: str) -> Endpoint:
        doc, h = await self._endpoint_raw(tenant_id, endpoint_id)
        return self._endpoint_out(doc, h.get("disabled"), h.get("disabled_reason"))

    async def endpoint_secret(self, tenant_id: str, endpoint_id: str) -> Secret:
        """The newest key as the receiver needs it; an Ed25519 private key is never shown."""
        doc, _ = await self._endpoint_raw(tenant_id, endpoint_id)
        scheme = doc.get("signing", HMAC_SHA256)
        secret = self.box.open(doc["secrets"][0]["s"]) if scheme == HMAC_SHA256 else None
        return Secret(secret=secret, signing=scheme, public_key=doc.get("public_key"))

    async def list_endpoints(self, tenant_id: str, limit: int | None, cursor: str | None) -> Page[Endpoint]:
        page_ids, next_cursor = await self._lex_page(
            keys.tenant_endpoints(tenant_id), check_limit(limit), decode_cursor(cursor)
        )
        out = []
        for endpoint_id in page_ids:
            try:
                out.append(await self.get_endpoint(tenant_id, endpoint_id))
            except NotFound:
                continue
        return Page[Endpoint](data=out, next_cursor=next_cursor)

    async def update_endpoint(
        self, tenant_id: str, endpoint_id: str, changes: dict[str, Any], now_ms: int
    ) -> Endpoint:
        """Apply the given fields (absent ones stay); ``disabled: false`` re-enables, clearing the reason."""
        doc, h = await self._endpoint_raw(tenant_id, endpoint_id)
        if changes.get("signing") not in (None, doc.get("signing", HMAC_SHA256)):
            raise Invalid("signing: changes by rotation (POST /v1/endpoints/{id}/secret/rotate {signing})")
        if "url" in changes:
            if changes["url"] is None:
                raise Invalid("url: may not be null")
            doc["url"] = self._check_url(changes["url"])
        if "description" in changes:
            doc["description"] = validation.check_description(changes["description"])
        if "event_types" in changes:
            doc["event_types"] = self._check_event_types(changes["event_types"])
        if "headers" in changes:
            doc["headers"] = validation.check_headers(changes["headers"])
        if "rate_limit_per_s" in changes:
            doc["rate_limit_per_s"] = validation.check_rate_limit(changes["rate_limit_per_s"])
        doc["updated_at"] = now_ms
        fields: dict[str, str | bytes] = {"doc": orjson.dumps(doc)}
        disabled, reason = h.get("disabled", "0"), h.get("disabled_reason", "")
        if "disabled" in changes and changes["disabled"] is not None:
            disabled = "1" if changes["disabled"] else "0"
            reason = "disabled by the tenant" if changes["disabled"] else ""
            fields.update(disabled=disabled, disabled_reason=reason)
        async with self.r.pipeline(transaction=True) as pipe:
            pipe.hset(keys.endpoint(endpoint_id), mapping=fields)  # type: ignore[arg-type]  # invariant key type
            pipe.incr(keys.endpoint_version(tenant_id))  # routing may change: see webhooks/ingest.py
            await pipe.execute()
        return self._endpoint_out(doc, disabled, reason)

    async def delete_endpoint(self, tenant_id: str, endpoint_id: str) -> None:
        await self._endpoint_raw(tenant_id, endpoint_id)
        async with self.r.pipeline(transaction=True) as pipe:
            pipe.delete(keys.endpoint(endpoint_id))
            pipe.zrem(keys.tenant_endpoints(tenant_id), endpoint_id)
            pipe.incr(keys.endpoint_version(tenant_id))
            await pipe.execute()

    async def rotate_secret(
        self, tenant_id: str, endpoint_id: str, grace_period_s: float, now_ms: int, signing: str | None = None
    ) -> Secret:
        """A new key (of ``signing``, default the current scheme); the previous keys keep signing
        (more signatures in the header, whatever their scheme) until the grace period ends."""
        if not 0 <= grace_period_s <= 30 * 86400:
            raise Invalid("grace_period_s: between 0 and 2592000 (30 days)")
        doc, _ = await self._endpoint_raw(tenant_id, endpoint_id)
        key = generate_key(signing or doc.get("signing", HMAC_SHA256))
        # Every older secret keeps signing until this grace period ends (or its own, if sooner).
        grace_end = now_ms + int(grace_period_s * 1000)
        old = [
            {"s": s["s"], "exp": grace_end if s["exp"] is None else min(s["exp"], grace_end)}
            for s in doc["secrets"]
            if s["exp"] is None or s["exp"] > now_ms
        ]
        doc["secrets"] = [{"s": self.box.seal(key.stored), "exp": None}, *old[:4]]
        doc["signing"], doc["public_key"] = key.scheme, key.public_key
        doc["updated_at"] = now_ms
        await self.r.hset(keys.endpoint(endpoint_id), "doc", orjson.dumps(doc))
        return Secret(secret=_shown_secret(key), signing=key.scheme, public_key=key.public_key)

    # -- events ------------------------------------------------------------------------------

    async def accept(
        self, tenant_id: str, events: Sequence[EventIn], now_ms: int, *, batch: bool = False
    ) -> list[tuple[queue.NewEvent, dict[str, Any] | None]]:
        """Store events all-or-nothing (see :class:`webhooks.ingest.Ingestor`); per event, the stored
        document when its id or idempotency key was seen before (nothing new is queued for it)."""
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
        for new, existing in await self.accept(tenant_id, events, now_ms, batch=batch):
            if existing is None:
                out.append(
                    Event(
                        id=new.event_id,
                        tenant_id=tenant_id,
                        event_type=new.event_type,
                        created_at=iso_from_ms(now_ms) or "",
                        payload=orjson.loads(new.body)["data"],
                        deliveries=[
                            DeliverySummary(id=d, endpoint_id=e, status=DeliveryStatus.PENDING)
                            for d, e in new.deliveries
                        ],
                    )
                )
            else:
                out.append(await self.event_out(existing))
        return out

    async def event_out(self, doc: dict[str, Any]) -> Event:
        """An event as the API shows it, from its stored document, with its deliveries' statuses."""
        pairs = doc["deliveries"]
        statuses = []
        if pairs:
            async with self.r.pipeline(transaction=False) as pipe:
                for delivery_id, _ in pairs:
                    pipe.hget(keys.delivery(delivery_id), "status")
                statuses = await pipe.execute()
        return Event(
            id=doc["id"],
            tenant_id=doc["tenant_id"],
            event_type=doc["event_type"],
            created_at=iso_from_ms(doc["created_at"]) or "",
            payload=orjson.loads(doc["body"])["data"],
            deliveries=[
                DeliverySummary(id=d, endpoint_id=e, status=DeliveryStatus(s or "pending"))
                for (d, e), s in zip(pairs, statuses, strict=True)
            ],
        )

    async def get_event(self, tenant_id: str, event_id: str) -> Event:
        raw = await self.r.get(keys.event(tenant_id, event_id))
        if raw is None:
            raise NotFound("no such event")
        return await self.event_out(orjson.loads(raw))

    # -- deliveries ----------------------------------------------------------------------------

    async def _delivery_hash(self, tenant_id: str | None, delivery_id: str) -> dict[str, str]:
        h = cast(dict[str, str], await self.r.hgetall(keys.delivery(delivery_id)))
        if not h or (tenant_id is not None and h.get("tenant_id") != tenant_id):
            raise NotFound("no such delivery")
        return h

    async def get_delivery(self, tenant_id: str | None, delivery_id: str) -> DeliveryDetail:
        h = await self._delivery_hash(tenant_id, delivery_id)
        raw_attempts = await self.r.lrange(keys.attempts(delivery_id), 0, -1)
        attempts = [Attempt(**orjson.loads(a)) for a in raw_attempts]
        return DeliveryDetail(**_delivery_from_hash(h).model_dump(), attempts=attempts)

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
        """Newest first. ``next_cursor`` is null on the last page.

        A filtered page reads at most ``SCAN_FACTOR * limit`` candidates, so it may hold fewer than
        ``limit`` items (even none) and still have a next cursor.
        """
        limit = check_limit(limit)
        after = decode_cursor(cursor)
        if event_id is not None:
            raw = await self.r.get(keys.event(tenant_id, event_id))
            candidates = sorted((d for d, _ in orjson.loads(raw)["deliveries"]), reverse=True) if raw else []
            if after:
                candidates = [c for c in candidates if c < after]
            source: AsyncIterator[list[str]] = _chunks_of(candidates, max(limit, 100))
        else:
            index = (
                keys.endpoint_deliveries(endpoint_id) if endpoint_id else keys.tenant_deliveries(tenant_id)
            )
            if endpoint_id:
                await self._endpoint_raw(tenant_id, endpoint_id)
            source = self._lex_scan(index, after, max(limit, 100))
        out: list[Delivery] = []
        scanned = 0
        last: str | None = None  # the last candidate this page has dealt with
        more = False
        async for chunk in source:
            async with self.r.pipeline(transaction=False) as pipe:
                for delivery_id in chunk:
                    pipe.hgetall(keys.delivery(delivery_id))
                rows = await pipe.execute()
            for delivery_id, h in zip(chunk, rows, strict=True):
                matches = (
                    bool(h)
                    and h.get("tenant_id") == tenant_id
                    and (not endpoint_id or h["endpoint_id"] == endpoint_id)
                    and (not status or h["status"] == status)
                )
                if matches and len(out) == limit:
                    more = True  # one more match exists: the page is full and not the last
                    break
                if matches:
                    out.append(_delivery_from_hash(h))
                last = delivery_id
                scanned += 1
                if scanned >= limit * SCAN_FACTOR:
                    more = True  # read budget spent; the next page carries on from here
                    break
            if more:
                break
        return Page[Delivery](data=out, next_cursor=encode_cursor(last) if more and last else None)

    async def retry_delivery(self, tenant_id: str, delivery_id: str, now_ms: int) -> DeliveryDetail:
        """One new attempt now, whatever the delivery's state (but not while one is under way)."""
        await self._delivery_hash(tenant_id, delivery_id)
        (before,) = await queue.requeue(
            self.r, [delivery_id], mode="retry", now_ms=now_ms, retention_ms=self.policy.retention_ms
        )
        if before == DeliveryStatus.DELIVERING:
            raise Conflict("an attempt of this delivery is under way; try again when it has finished")
        return await self.get_delivery(tenant_id, delivery_id)

    # -- dead letters ----------------------------------------------------------------------------

    async def _dead_scan(
        self, tenant_id: str | None, f: DeadFilter, after: str | None
    ) -> AsyncIterator[list[tuple[Delivery, int]]]:
        """Dead deliveries matching ``f`` with their dead-letter score, newest first, in chunks.

        The order is (score, id) descending, the order of ZREVRANGEBYSCORE; ``after`` is a cursor
        ``"<score>:<id>"`` and the scan starts right after it. Many deliveries share a score (a
        worker records a whole batch at one instant), so rows at the cursor's own score are
        skipped by position until the scan has passed the cursor.
        """
        index = keys.tenant_dead(tenant_id) if tenant_id else keys.DEAD_ALL
        high = "+inf" if f.until_ms is None else str(f.until_ms)
        low = "-inf" if f.since_ms is None else str(f.since_ms)
        after_score: int | None = None
        after_id: str | None = None
        if after:
            score_text, _, after_id = after.partition(":")
            after_score = int(score_text)
            high = str(after_score) if f.until_ms is None else str(min(after_score, f.until_ms))
        skip = 0
        while True:
            raw = await self.r.zrevrangebyscore(index, high, low, start=skip, num=500, withscores=True)
            if not raw:
                return
            rows = [(str(m), int(sc)) for m, sc in cast("list[tuple[str, float]]", raw)]
            if after_id is not None and after_score is not None:
                a_score, a_id = after_score, after_id
                rows = [(m, sc) for m, sc in rows if sc < a_score or (sc == a_score and m < a_id)]
            if not rows:
                skip += len(raw)  # all at the cursor's score and not past it yet: read on
                continue
            async with self.r.pipeline(transaction=False) as pipe:
                for member, _ in rows:
                    pipe.hgetall(keys.delivery(member))
                hashes = await pipe.execute()
            chunk = []
            for (_, score), h in zip(rows, hashes, strict=True):
                if not h or h.get("status") != "dead":
                    continue
                if tenant_id is not None and h.get("tenant_id") != tenant_id:
                    continue
                if f.endpoint_id and h["endpoint_id"] != f.endpoint_id:
                    continue
                if f.event_type and h.get("event_type") != f.event_type:
                    continue
                chunk.append((_delivery_from_hash(h), score))
            yield chunk
            after_id, after_score = rows[-1]
            high = str(after_score)
            skip = 0

    async def list_dead(
        self, tenant_id: str | None, f: DeadFilter, limit: int | None, cursor: str | None
    ) -> Page[Delivery]:
        """Newest first; ``next_cursor`` is null on the last page."""
        limit = check_limit(limit)
        out: list[tuple[Delivery, int]] = []
        async for chunk in self._dead_scan(tenant_id, f, decode_cursor(cursor, DEAD_CURSOR)):
            out.extend(chunk)
            if len(out) > limit:
                break
        page = out[:limit]
        next_cursor = None
        if len(out) > limit:
            last, score = page[-1]
            next_cursor = encode_cursor(f"{score}:{last.id}")
        return Page[Delivery](data=[d for d, _ in page], next_cursor=next_cursor)

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
        """Requeue matching dead deliveries for a fresh retry series; ``rate_per_s`` spaces them out."""
        if rate_per_s is not None and not MIN_REPLAY_RATE <= rate_per_s <= 100000:
            raise Invalid(f"rate_per_s: a number from {MIN_REPLAY_RATE} to 100000")
        matched: list[str] = []
        if delivery_ids is not None:
            if len(delivery_ids) > 10000:
                raise Invalid("ids: at most 10000")
            unique = list(dict.fromkeys(delivery_ids))
            async with self.r.pipeline(transaction=False) as pipe:
                for delivery_id in unique:
                    pipe.hmget(keys.delivery(delivery_id), ["tenant_id", "status", "endpoint_id"])
                rows = await pipe.execute()
            for delivery_id, (owner, status, endpoint_id) in zip(unique, rows, strict=True):
                # A named id that is missing or another tenant's answers 404, like any other object.
                if owner is None or (tenant_id is not None and owner != tenant_id):
                    raise NotFound(f"ids.{delivery_ids.index(delivery_id)}: no such delivery")
                if status == "dead" and (not f.endpoint_id or endpoint_id == f.endpoint_id):
                    matched.append(delivery_id)
        else:
            async for chunk in self._dead_scan(tenant_id, f, None):
                matched.extend(d.id for d, _ in chunk)
        if dry_run:
            return ReplayResult(replay_id=None, matched=len(matched), dry_run=True)
        replay_id = ids.new_id(ids.REPLAY, now_ms)
        step_ms = int(1000 / rate_per_s) if rate_per_s else 0
        first_due = now_ms if rate_per_s else 0
        requeued = 0
        for start in range(0, len(matched), 500):
            part = matched[start : start + 500]
            before = await queue.requeue(
                self.r,
                part,
                mode="replay",
                now_ms=now_ms,
                first_due_ms=first_due,
                step_ms=step_ms,
                retention_ms=self.policy.retention_ms,
            )
            n = sum(1 for s in before if s == "dead")
            requeued += n
            if first_due:
                first_due += n * step_ms
        await self.r.hset(
            keys.replay(replay_id),
            mapping={
                "id": replay_id,
                "matched": requeued,
                "created_at": now_ms,
                "tenant_id": tenant_id or "",
            },
        )
        await self.r.expire(keys.replay(replay_id), 30 * 86400)
        return ReplayResult(replay_id=replay_id, matched=requeued, dry_run=False)

    # -- paging helpers ----------------------------------------------------------------------------

    async def _lex_page(self, index: str, limit: int, after: str | None) -> tuple[list[str], str | None]:
        high = f"({after}" if after else "+"
        found = cast(list[str], await self.r.zrevrangebylex(index, high, "-", start=0, num=limit + 1))
        page = found[:limit]
        return page, (encode_cursor(page[-1]) if len(found) > limit else None)

    async def _lex_scan(self, index: str, after: str | None, chunk: int) -> AsyncIterator[list[str]]:
        high = f"({after}" if after else "+"
        while True:
            found = cast(list[str], await self.r.zrevrangebylex(index, high, "-", start=0, num=chunk))
            if not found:
                return
            yield found
            high = f"({found[-1]}"


def _shown_secret(key: NewKey) -> str | None:
    """What the tenant may see of a new key: a shared secret, never an Ed25519 private key."""
    return key.stored if key.scheme == HMAC_SHA256 else None


async def _chunks_of(items: list[str], size: int) -> AsyncIterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
