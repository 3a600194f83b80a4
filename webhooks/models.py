"""The domain objects as callers see them (also the API's response shapes).

Timestamps are ISO 8601 UTC strings; storage keeps Unix milliseconds and
converts at this boundary (:mod:`webhooks.timefmt`).

The Python client (clients/python, its own distribution) repeats the response shapes in
``hookyard_client.models``; tests/client/test_models.py fails when the two differ, so a field
changed here is changed there too.
"""

import enum
from typing import Any, Generic, TypeVar

from pydantic import BaseModel


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"
    DELIVERING = "delivering"
    SUCCEEDED = "succeeded"
    RETRYING = "retrying"
    DEAD = "dead"


class TenantStorage(BaseModel):
    """A tenant's stored bytes (pending work, history, dead letters; counted by record sizes)
    against its share of Redis' maxmemory (limit and fraction null: Redis has no maxmemory)."""

    used_bytes: int
    limit_bytes: int | None
    max_share: float
    fraction: float | None


class Tenant(BaseModel):
    id: str
    name: str
    created_at: str
    strict_event_types: bool = False  # only catalogued, unarchived event types are accepted
    max_share: float | None = None  # its own share of Redis' memory, set by the admin (None: the default)
    storage: TenantStorage | None = None  # on GET /v1/tenants/{id}: what it holds against its share


class TenantCreated(Tenant):
    api_key: str


class ApiKey(BaseModel):
    id: str
    tenant_id: str
    prefix: str  # the first characters, to recognise a key without revealing it
    created_at: str


class ApiKeyCreated(ApiKey):
    api_key: str


class EndpointHealth(BaseModel):
    """How an endpoint is doing, from the state the engine keeps (webhooks/stores/health.py)."""

    state: str  # healthy, failing, circuit_open, throttled, paused, disabled
    consecutive_failures: int
    next_attempt_at: str | None  # the probe when the circuit is open; else the earliest retry
    in_flight: int
    ready: int  # deliveries waiting to be sent now (or when resumed, or when the circuit closes)
    retrying: int  # deliveries waiting for a retry time


class Endpoint(BaseModel):
    id: str
    tenant_id: str
    url: str
    description: str
    event_types: list[str] | None
    headers: dict[str, str]
    rate_limit_per_s: float | None
    max_in_flight: int
    ordering: str  # "parallel" or "fifo": one delivery at a time, in ingest order
    disabled: bool
    disabled_reason: str | None
    created_at: str
    updated_at: str
    signing: str = "hmac-sha256"  # or "ed25519": the scheme of the newest key
    public_key: str | None = None  # whpk_... when signing is "ed25519"
    paused: bool = False  # paused by PATCH {"paused": true}: nothing is sent until resumed
    health: EndpointHealth | None = None  # on reads; absent from create and update answers


class EndpointWithSecret(Endpoint):
    secret: str | None  # whsec_...; null for an ed25519 endpoint (no symmetric secret exists)


class Secret(BaseModel):
    """The endpoint's newest key as a receiver needs it: the shared secret, or the public key."""

    secret: str | None
    signing: str = "hmac-sha256"
    public_key: str | None = None


class Attempt(BaseModel):
    number: int
    at: str
    status_code: int | None
    duration_ms: int
    error: str | None
    response_excerpt: str | None


class DeliverySummary(BaseModel):
    id: str
    endpoint_id: str
    status: DeliveryStatus


class Delivery(BaseModel):
    id: str
    tenant_id: str
    event_id: str
    endpoint_id: str
    event_type: str
    status: DeliveryStatus
    attempt_count: int
    created_at: str
    updated_at: str
    next_attempt_at: str | None
    last_status_code: int | None
    dead_at: str | None
    last_error: str | None = None  # the last attempt's error when it got no response ("connection refused")
    dead_reason: str | None = None  # set when it ended without its attempts (held past the schedule's span)


class DeliveryDetail(Delivery):
    attempts: list[Attempt]


class Event(BaseModel):
    id: str
    tenant_id: str
    event_type: str
    created_at: str
    payload: Any
    deliveries: list[DeliverySummary]


class ReplayResult(BaseModel):
    replay_id: str | None
    matched: int
    dry_run: bool


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    data: list[T]
    next_cursor: str | None


class ReplayState(enum.StrEnum):
    MATCHING = "matching"  # answered; its job has not started scanning yet
    REQUEUEING = "requeueing"  # its job scans the dead letters and requeues the matching ones
    DELIVERING = "delivering"  # all requeued; requeued deliveries still at work
    DONE = "done"  # every requeued delivery settled again
    CANCELLED = "cancelled"  # called off: what had not gone out went back to the dead letters
    FAILED = "failed"  # its job failed for good (``error`` says why); what it requeued goes on


class Replay(BaseModel):
    """A dead-letter replay and its progress (``done`` = requeued deliveries settled again)."""

    id: str
    tenant_id: str | None  # None: the operator's replay across tenants
    matched: int
    done: int
    remaining: int
    succeeded: int
    dead: int
    state: ReplayState
    rate_per_s: float | None
    created_at: str
    cancelled_at: str | None
    requeued: int = 0  # requeued so far by its job
    error: str | None = None  # why its job failed, when ``state`` is ``failed``


class TenantDeletionState(enum.StrEnum):
    DELETING = "deleting"  # its job deletes the tenant's keys (or waits for a worker to start)
    DONE = "done"  # nothing of the tenant is left
    FAILED = "failed"  # its job failed for good (``error`` says why)


class TenantDeletion(BaseModel):
    """A tenant's deletion, run as an RQ job whose id is the tenant id (``DELETE /v1/tenants/{id}``)."""

    tenant_id: str
    state: TenantDeletionState
    deleted_keys: int  # keys deleted so far
    created_at: str
    finished_at: str | None
    error: str | None = None
