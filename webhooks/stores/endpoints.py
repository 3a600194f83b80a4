"""Endpoints: create, read, change, delete, rotate secrets (``store.endpoints``, a repository the
:class:`webhooks.stores.store.Store` holds).

An endpoint is one hash (``keys.endpoint``): its JSON document, the disabled flag and reason,
and the scheduling fields the Lua scripts keep (``mif`` max in flight, ``fifo``; see
``webhooks/queueing/lua/_common.lua``). Every change bumps the tenant's endpoint version in the same
transaction, so cached routes are never used after it (``webhooks/intake/ingest.py``), and the endpoint's
own revision (field ``rev``), so a worker holding deliveries of it under the old settings hands them
back unsent instead of sending them (``workers/engine.py``).

Pausing (``paused`` in the document, ``pz`` = 1 in the hash for the scripts) stops every attempt:
``lua/lease.lua`` leases nothing from it and ``wake_endpoint`` keeps it off the runnable list, so
its deliveries wait ``pending`` (new ones are still routed to it); the revision bump hands back
unsent what workers hold. Resuming clears ``pz`` and makes the endpoint due at once, so the
scheduler's tick puts it back on the runnable list with its ready work. Both record an
operational notification (``endpoint.paused`` / ``endpoint.resumed``) when those are on.
Reads carry the endpoint's ``health`` (:mod:`webhooks.stores.health`), one pipelined round trip
for a page.
"""

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

import orjson

from webhooks import ids, keys, timefmt
from webhooks.errors import Invalid, LimitExceeded, NotFound
from webhooks.intake import operational, routing, validation
from webhooks.models import Endpoint, EndpointHealth, EndpointWithSecret, Page, Secret
from webhooks.outbound.netguard import check_target_url
from webhooks.outbound.signing import HMAC_SHA256, NewKey, check_scheme, generate_key
from webhooks.queueing.scripts import SLOW_START
from webhooks.stores import health, paging
from webhooks.timefmt import iso_from_ms

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from webhooks.outbound.secretbox import SecretBox
    from webhooks.stores.policy import Policy
    from webhooks.stores.tenants import Tenants

ORDERINGS = ("parallel", "fifo")


def check_max_in_flight(value: int | None, default: int) -> int:
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 10000:
        raise Invalid("max_in_flight: a whole number from 1 to 10000")
    return value


def check_ordering(value: str | None) -> str:
    if value is None:
        return "parallel"
    if value not in ORDERINGS:
        raise Invalid('ordering: "parallel" or "fifo"')
    return value


class Endpoints:
    """A tenant's endpoints; ``tenants`` is asked whether a tenant exists before one is created."""

    def __init__(self, r: "Redis", box: "SecretBox", policy: "Policy", tenants: "Tenants") -> None:
        self.r = r
        self.box = box
        self.policy = policy
        self.tenants = tenants

    def _endpoint_out(
        self,
        doc: dict[str, Any],
        disabled: str | None,
        reason: str | None,
        state: EndpointHealth | None = None,
    ) -> Endpoint:
        return Endpoint(
            id=doc["id"],
            tenant_id=doc["tenant_id"],
            url=doc["url"],
            description=doc.get("description", ""),
            event_types=doc.get("event_types"),
            headers=doc.get("headers") or {},
            rate_limit_per_s=doc.get("rate_limit_per_s"),
            max_in_flight=doc.get("max_in_flight", self.policy.default_max_in_flight),
            ordering=doc.get("ordering", "parallel"),
            disabled=disabled == "1",
            disabled_reason=reason if disabled == "1" else None,
            created_at=iso_from_ms(doc["created_at"]) or "",
            updated_at=iso_from_ms(doc["updated_at"]) or "",
            signing=doc.get("signing", HMAC_SHA256),
            public_key=doc.get("public_key"),
            paused=bool(doc.get("paused")),
            health=state,
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

    async def endpoint_raw(self, tenant_id: str, endpoint_id: str) -> tuple[dict[str, Any], dict[str, str]]:
        if not ids.has_prefix(endpoint_id, ids.ENDPOINT):
            raise NotFound("no such endpoint")
        h = cast(dict[str, str], await self.r.hgetall(keys.endpoint(tenant_id, endpoint_id)))
        if "doc" not in h:  # missing, deleted (only scheduling state left), or another tenant's
            raise NotFound("no such endpoint")
        return orjson.loads(h["doc"]), h

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
        max_in_flight: int | None = None,
        ordering: str | None = None,
        disabled: bool = False,
        signing: str = HMAC_SHA256,
    ) -> EndpointWithSecret:
        await self.tenants.get_tenant(tenant_id)
        doc: dict[str, Any] = {
            "id": ids.new_id(ids.ENDPOINT, now_ms),
            "tenant_id": tenant_id,
            "url": self._check_url(url),
            "description": validation.check_description(description),
            "event_types": self._check_event_types(event_types),
            "headers": validation.check_headers(headers),
            "rate_limit_per_s": validation.check_rate_limit(rate_limit_per_s),
            "max_in_flight": check_max_in_flight(max_in_flight, self.policy.default_max_in_flight),
            "ordering": check_ordering(ordering),
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
                keys.endpoint(tenant_id, doc["id"]),
                mapping={
                    "doc": orjson.dumps(doc),
                    "disabled": "1" if disabled else "0",
                    "disabled_reason": "",
                    "mif": doc["max_in_flight"],
                    # slow start: a new endpoint begins at a few requests in flight, one more per
                    # success up to max_in_flight (lua/complete.lua), so an endpoint that is down
                    # from the start costs few attempts before its breaker opens
                    "cap": min(SLOW_START, doc["max_in_flight"]),
                    "fifo": "1" if doc["ordering"] == "fifo" else "0",
                },
            )
            pipe.zadd(keys.tenant_endpoints(tenant_id), {doc["id"]: 0})
            pipe.incr(keys.endpoint_version(tenant_id))
            await pipe.execute()
        fresh = health.health_of({"disabled": "1" if disabled else "0"}, 0, 0, [], now_ms)
        out = self._endpoint_out(doc, "1" if disabled else "0", "disabled on creation", fresh)
        return EndpointWithSecret(**out.model_dump(), secret=_shown_secret(key))

    async def get_endpoint(self, tenant_id: str, endpoint_id: str, now_ms: int | None = None) -> Endpoint:
        """The endpoint with its ``health`` (as of ``now_ms``, default the clock)."""
        page = await self._read(tenant_id, [endpoint_id], now_ms)
        if not page:
            raise NotFound("no such endpoint")
        return page[0]

    async def _read(self, tenant_id: str, endpoint_ids: list[str], now_ms: int | None) -> list[Endpoint]:
        """The endpoints that exist among ``endpoint_ids``, with their health: one round trip."""
        wanted = [e for e in endpoint_ids if ids.has_prefix(e, ids.ENDPOINT)]
        if not wanted:
            return []
        async with self.r.pipeline(transaction=False) as pipe:
            for endpoint_id in wanted:
                pipe.hgetall(keys.endpoint(tenant_id, endpoint_id))
                health.read_state(pipe, tenant_id, endpoint_id)
            replies = await pipe.execute()
        now = timefmt.now_ms() if now_ms is None else now_ms
        out = []
        step = 1 + health.READS_PER_ENDPOINT
        for i in range(len(wanted)):
            h, ready, retrying, first_due = replies[i * step : (i + 1) * step]
            if "doc" not in h:  # missing, deleted (only scheduling state left), or another tenant's
                continue
            state = health.health_of(h, int(ready), int(retrying), first_due, now)
            out.append(
                self._endpoint_out(orjson.loads(h["doc"]), h.get("disabled"), h.get("disabled_reason"), state)
            )
        return out

    async def endpoint_secret(self, tenant_id: str, endpoint_id: str) -> Secret:
        """The newest key as the receiver needs it; an Ed25519 private key is never shown."""
        doc, _ = await self.endpoint_raw(tenant_id, endpoint_id)
        scheme = doc.get("signing", HMAC_SHA256)
        secret = self.box.open(doc["secrets"][0]["s"]) if scheme == HMAC_SHA256 else None
        return Secret(secret=secret, signing=scheme, public_key=doc.get("public_key"))

    async def list_endpoints(
        self, tenant_id: str, limit: int | None, cursor: str | None, now_ms: int | None = None
    ) -> Page[Endpoint]:
        page_ids, next_cursor = await paging.lex_page(
            self.r, keys.tenant_endpoints(tenant_id), paging.check_limit(limit), paging.decode_cursor(cursor)
        )
        out = await self._read(tenant_id, [str(e) for e in page_ids], now_ms)
        return Page[Endpoint](data=out, next_cursor=next_cursor)

    async def update_endpoint(
        self, tenant_id: str, endpoint_id: str, changes: dict[str, Any], now_ms: int
    ) -> Endpoint:
        """Apply the given fields (absent ones stay); ``disabled: false`` re-enables, clearing the reason."""
        doc, h = await self.endpoint_raw(tenant_id, endpoint_id)
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
        if "max_in_flight" in changes:
            doc["max_in_flight"] = check_max_in_flight(
                changes["max_in_flight"], self.policy.default_max_in_flight
            )
        if "ordering" in changes:
            doc["ordering"] = check_ordering(changes["ordering"])
        was_paused = bool(doc.get("paused"))
        if changes.get("paused") is not None:
            if not isinstance(changes["paused"], bool):
                raise Invalid("paused: true or false")
            doc["paused"] = changes["paused"]
        pause_changed = bool(doc.get("paused")) != was_paused
        doc["updated_at"] = now_ms
        fields: dict[str, str | bytes | int] = {
            "doc": orjson.dumps(doc),
            "mif": doc.get("max_in_flight", self.policy.default_max_in_flight),
            "fifo": "1" if doc.get("ordering") == "fifo" else "0",
        }
        disabled, reason = h.get("disabled", "0"), h.get("disabled_reason", "")
        if "disabled" in changes and changes["disabled"] is not None:
            disabled = "1" if changes["disabled"] else "0"
            reason = "disabled by the tenant" if changes["disabled"] else ""
            fields.update(disabled=disabled, disabled_reason=reason)
        # `pz` holds the scripts back; disabled wins over paused (its queued deliveries end dead at
        # lease, so they must be leased), and re-enabling a still paused endpoint holds it again
        fields["pz"] = "1" if doc.get("paused") and disabled != "1" else "0"
        released = h.get("pz") == "1" and fields["pz"] == "0"
        notify = 0  # the number of the operational notification, when one is recorded
        if pause_changed and self.policy.operational_events and tenant_id != operational.OPERATOR_TENANT:
            notify = int(await self.r.incr(keys.ops_sequence(tenant_id)))
        async with self.r.pipeline(transaction=True) as pipe:
            pipe.hset(keys.endpoint(tenant_id, endpoint_id), mapping=fields)  # type: ignore[arg-type]
            pipe.hincrby(keys.endpoint(tenant_id, endpoint_id), "rev", 1)  # held copies are stale
            if changes.get("disabled") is False:
                pipe.hdel(keys.endpoint(tenant_id, endpoint_id), "f", "fs")  # a fresh start for the breaker
            pipe.incr(keys.endpoint_version(tenant_id))  # routing may change: see webhooks/intake/ingest.py
            if released:  # resumed (or disabled): the tick puts it back on the runnable list
                pipe.zadd(keys.due_endpoints(tenant_id), {endpoint_id: 0})
            if pause_changed and notify:
                _note_pause(pipe, tenant_id, endpoint_id, bool(doc.get("paused")), now_ms, notify)
            await pipe.execute()
        if released:
            await self.r.zadd(keys.WAKE, {tenant_id: 0})
        if pause_changed and notify:
            await self.r.zadd(keys.OPS_DUE, {tenant_id: now_ms}, lt=True)
        return self._endpoint_out(doc, disabled, reason)

    async def delete_endpoint(self, tenant_id: str, endpoint_id: str) -> None:
        """Delete it; deliveries still queued for it end ``dead`` ("endpoint deleted") as workers
        meet them: the endpoint is made due at once so that the scheduler puts them in reach."""
        await self.endpoint_raw(tenant_id, endpoint_id)
        async with self.r.pipeline(transaction=True) as pipe:
            pipe.hdel(keys.endpoint(tenant_id, endpoint_id), "doc", "disabled", "disabled_reason", "pu", "pz")
            pipe.hincrby(keys.endpoint(tenant_id, endpoint_id), "rev", 1)  # held copies are stale
            pipe.zrem(keys.tenant_endpoints(tenant_id), endpoint_id)
            pipe.incr(keys.endpoint_version(tenant_id))
            pipe.zadd(keys.due_endpoints(tenant_id), {endpoint_id: 0})
            await pipe.execute()
        await self.r.zadd(keys.WAKE, {tenant_id: 0})

    async def rotate_secret(
        self, tenant_id: str, endpoint_id: str, grace_period_s: float, now_ms: int, signing: str | None = None
    ) -> Secret:
        """A new key (of ``signing``, default the current scheme); the previous keys keep signing
        (more signatures in the header, whatever their scheme) until the grace period ends."""
        if not 0 <= grace_period_s <= 30 * 86400:
            raise Invalid("grace_period_s: between 0 and 2592000 (30 days)")
        doc, _ = await self.endpoint_raw(tenant_id, endpoint_id)
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
        async with self.r.pipeline(transaction=True) as pipe:
            pipe.hset(keys.endpoint(tenant_id, endpoint_id), "doc", orjson.dumps(doc))
            pipe.hincrby(keys.endpoint(tenant_id, endpoint_id), "rev", 1)  # held copies are stale
            await pipe.execute()
        return Secret(secret=_shown_secret(key), signing=key.scheme, public_key=key.public_key)


def _note_pause(pipe: Any, tenant_id: str, endpoint_id: str, paused: bool, now_ms: int, n: int) -> None:
    """Queue the operational notification of a pause or resume in the tenant's outbox (as
    ``lua/complete.lua`` records its own; the scheduler turns it into an operator event)."""
    kind = operational.ENDPOINT_PAUSED if paused else operational.ENDPOINT_RESUMED
    pipe.rpush(keys.ops_outbox(tenant_id), orjson.dumps({"k": kind, "ep": endpoint_id, "at": now_ms, "n": n}))
    pipe.ltrim(keys.ops_outbox(tenant_id), -operational.OPS_OUTBOX_MAX, -1)


def _shown_secret(key: NewKey) -> str | None:
    """What the tenant may see of a new key: a shared secret, never an Ed25519 private key."""
    return key.stored if key.scheme == HMAC_SHA256 else None
