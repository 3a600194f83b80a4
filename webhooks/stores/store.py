"""Tenants, API keys, endpoints, events, deliveries and dead letters in Redis.

:class:`Store` is the only way the API and the CLI read or change this state. It holds small
repositories, one per kind of thing (``store.tenants``, ``store.endpoints``, ``store.deliveries``),
and itself does only what spans several: deleting a tenant (started here, finished by an RQ job:
:mod:`webhooks.stores.operations`), accepting events, a test event.
Ownership is enforced here: every read takes the caller's tenant id, and every
key of a tenant carries that tenant's hash tag, so an object of another tenant
answers :class:`NotFound`, exactly like a missing one. Tenants and API keys live in
:mod:`webhooks.stores.tenants`, endpoints in :mod:`webhooks.stores.endpoints`, events,
deliveries and dead letters in :mod:`webhooks.stores.deliveries`; key names come from :mod:`webhooks.keys`,
queue transitions from :mod:`webhooks.queueing.queue`.
"""

from collections.abc import Sequence
from typing import cast

import orjson
from redis.asyncio import Redis

from webhooks import keys
from webhooks.errors import Conflict, Invalid, StorageError
from webhooks.intake.ingest import EventIn, Ingestor, prepare
from webhooks.intake.operational import OPERATOR_TENANT
from webhooks.models import (
    DeliveryStatus,
    DeliverySummary,
    Event,
    TenantDeletion,
)
from webhooks.outbound.secretbox import SecretBox
from webhooks.queueing import arrivals
from webhooks.queueing.history import StoredEvent
from webhooks.stores import operations
from webhooks.stores.auth import Authenticator
from webhooks.stores.deadfilter import DeadFilter
from webhooks.stores.deliveries import Deliveries
from webhooks.stores.endpoints import Endpoints
from webhooks.stores.jobqueue import OperationQueue
from webhooks.stores.policy import Policy
from webhooks.stores.tenants import Tenants
from webhooks.timefmt import iso_from_ms

__all__ = ["DeadFilter", "Policy", "Store"]

TEST_EVENT_TYPE = "webhooks.test"


class Store:
    """The repositories (``tenants``, ``endpoints``, ``deliveries``) over one Redis, and what spans
    them: deleting a tenant, accepting events, the console's test event."""

    def __init__(
        self,
        r: "Redis",
        box: SecretBox,
        policy: Policy | None = None,
        operations: OperationQueue | None = None,
    ) -> None:
        self.r = r
        self.box = box
        self.policy = policy or Policy()
        self.auth = Authenticator(r, rate_per_s=self.policy.tenant_rate_per_s, burst=self.policy.tenant_burst)
        self.ingestor = Ingestor(
            r,
            max_payload_bytes=self.policy.max_payload_bytes,
            retention_ms=self.policy.retention_ms,
            ack=self.policy.ack,
            tenant_max_share=self.policy.tenant_max_share,
        )
        self.tenants = Tenants(r, self.auth, self.policy.tenant_max_share)
        self.endpoints = Endpoints(r, box, self.policy, self.tenants)
        self.operations = operations
        self.deliveries = Deliveries(r, self.policy, self.endpoints, operations)

    # -- what spans the repositories -------------------------------------------------------------

    async def start_tenant_deletion(self, tenant_id: str, now_ms: int) -> TenantDeletion:
        """Make the tenant vanish now, and hand the deletion of its data to an RQ job.

        At once: its API keys stop working, its endpoints are deleted (deliveries still queued for
        them end ``dead``, "endpoint deleted", as workers meet them), its record and catalogue go and
        it leaves the tenant list. Its job (:func:`webhooks.stores.operations.run_tenant_deletion`)
        then deletes every key left under its key base (history, dead letters, replays), keeping
        count in the deletion's record. The operator tenant (``webhooks.intake.operational``) is
        refused with :class:`Conflict`."""
        await self.tenants.get_tenant(tenant_id)
        if tenant_id == OPERATOR_TENANT:
            raise Conflict("this tenant is reserved for operational webhooks and cannot be deleted")
        if self.operations is None:
            raise StorageError("tenant deletions run as RQ jobs: this store has no operations queue")
        key_docs = await self.r.hgetall(keys.tenant_api_keys(tenant_id))
        endpoint_ids = cast(list[str], await self.r.zrange(keys.tenant_endpoints(tenant_id), 0, -1))
        for doc in key_docs.values():
            await self.r.delete(keys.api_key(orjson.loads(doc)["hash"]))
            self.auth.forget(orjson.loads(doc)["hash"])
        for endpoint_id in endpoint_ids:
            await self.endpoints.delete_endpoint(tenant_id, endpoint_id)
        async with self.r.pipeline(transaction=True) as pipe:
            pipe.delete(keys.tenant_api_keys(tenant_id), keys.tenant_endpoints(tenant_id))
            pipe.delete(keys.event_types(tenant_id), keys.event_type_names(tenant_id))
            pipe.hdel(keys.tenant(tenant_id), "id", "name", "created_at", "strict_event_types")
            pipe.incr(keys.endpoint_version(tenant_id))
            await pipe.execute()
        await self.r.zrem(keys.TENANTS, tenant_id)
        await operations.create_deletion(self.r, tenant_id, now_ms)
        await self.operations.enqueue_tenant_deletion(tenant_id)
        return await operations.get_deletion(self.r, tenant_id)

    # -- ingest --------------------------------------------------------------------------------

    async def accept(
        self, tenant_id: str, events: Sequence[EventIn], now_ms: int, *, batch: bool = False
    ) -> list[tuple[arrivals.NewEvent, StoredEvent | None]]:
        """Store events all-or-nothing (see :class:`webhooks.intake.ingest.Ingestor`); per event, the stored
        event when its id or idempotency key was seen before (nothing new is queued for it)."""
        if len(events) > self.policy.max_batch:
            raise Invalid(f"events: a batch holds at most {self.policy.max_batch} events (got {len(events)})")
        return await self.ingestor.ingest(tenant_id, events, now_ms, batch=batch)

    async def send_test_event(self, tenant_id: str, endpoint_id: str, now_ms: int) -> Event:
        """A ``webhooks.test`` event delivered to this endpoint only, whatever its event types (the
        console's "send a test event"); :class:`Conflict` when it is disabled, as nothing would go."""
        endpoint = await self.endpoints.get_endpoint(tenant_id, endpoint_id)
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
