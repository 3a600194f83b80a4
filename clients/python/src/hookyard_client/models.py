"""The objects the client returns.

The API's response shapes, as the server's ``webhooks.models`` describes them (this package
imports nothing of the server; a test of the repository checks that both list the same
fields). A field the server adds later is ignored, not an error. The few ``_Open`` models
describe routes whose server models live elsewhere; they keep any field they do not name
(``extra``), so a newer server's additions are not lost.
"""

import enum
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ApiKey",
    "ApiKeyCreated",
    "Attempt",
    "Delivery",
    "DeliveryDetail",
    "DeliveryStatus",
    "DeliverySummary",
    "Endpoint",
    "EndpointHealth",
    "EndpointWithSecret",
    "Event",
    "EventInput",
    "EventType",
    "PortalLink",
    "RecoverResult",
    "Replay",
    "ReplayResult",
    "Secret",
    "Tenant",
    "TenantCreated",
    "TenantStorage",
]


# -- the API's response shapes (the server's webhooks.models; tests/client/test_models.py
# checks that both describe the same fields) ------------------------------------------------


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"
    DELIVERING = "delivering"
    SUCCEEDED = "succeeded"
    RETRYING = "retrying"
    DEAD = "dead"


class TenantStorage(BaseModel):
    """A tenant's stored bytes (counted by record sizes) against its share of Redis' memory."""

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
    storage: TenantStorage | None = None  # on a read of one tenant: what it holds against its share


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
    """How an endpoint is doing, from the state the engine keeps."""

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
    health: EndpointHealth | None = None


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
    last_error: str | None = None  # the last attempt's error when it got no response
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


# -- routes whose server models live elsewhere: open to fields they do not name ---------------


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class Replay(_Open):
    """A replay's progress (``GET /v1/replays/{id}``); ``state``: matching, requeueing, delivering,
    done, cancelled or failed (``error`` says why)."""

    id: str
    matched: int
    done: int
    remaining: int
    state: str
    requeued: int = 0  # requeued so far by its job
    error: str | None = None


class EventType(_Open):
    """An entry of the tenant's event-type catalogue; ``json_schema`` is the API's ``schema`` field."""

    name: str
    description: str | None = None
    json_schema: dict[str, Any] | None = Field(None, alias="schema")
    archived: bool = False


class RecoverResult(_Open):
    """The answer of ``POST /v1/endpoints/{id}/recover``: the replay that re-sends what died."""

    replay_id: str | None
    matched: int


class PortalLink(_Open):
    """A one-time sign-in link to a tenant's portal."""

    url: str
    expires_at: str


@dataclass(frozen=True, slots=True)
class EventInput:
    """One event of :meth:`Events.send_batch <hookyard_client.traffic.Events.send_batch>`."""

    event_type: str
    payload: Any
    id: str | None = None
