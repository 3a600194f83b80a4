"""Request bodies of the HTTP API. Responses use the domain models in :mod:`webhooks.models`."""

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from webhooks.intake.routing import EVENT_TYPE_RE
from webhooks.intake.validation import EVENT_ID_RE


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TenantCreate(_In):
    name: str = Field(min_length=1, max_length=200)


class EndpointCreate(_In):
    url: str = Field(max_length=2048)
    description: str | None = Field(None, max_length=1024)
    event_types: list[str] | None = None
    headers: dict[str, str] | None = None
    rate_limit_per_s: float | None = None
    max_in_flight: int | None = Field(None, ge=1, le=10000)
    ordering: Literal["parallel", "fifo"] | None = None
    disabled: bool = False
    signing: Literal["hmac-sha256", "ed25519"] = "hmac-sha256"
    tenant_id: str | None = None  # admin only: the tenant to act for


class EndpointUpdate(_In):
    url: str | None = Field(None, max_length=2048)
    description: str | None = Field(None, max_length=1024)
    event_types: list[str] | None = None
    headers: dict[str, str] | None = None
    rate_limit_per_s: float | None = None
    max_in_flight: int | None = Field(None, ge=1, le=10000)
    ordering: Literal["parallel", "fifo"] | None = None
    disabled: bool | None = None
    # true: nothing is sent until false again; deliveries wait pending, new events still route to it
    paused: StrictBool | None = None
    # Accepted only when it names the current scheme (so a whole object can be sent back);
    # the scheme changes through POST /v1/endpoints/{id}/secret/rotate {"signing": ...}.
    signing: Literal["hmac-sha256", "ed25519"] | None = None


class SecretRotate(_In):
    grace_period_s: float = Field(86400, ge=0, le=30 * 86400)
    # The new key's scheme (default: the current one); the only way to change an endpoint's scheme.
    signing: Literal["hmac-sha256", "ed25519"] | None = None


EVENT_FIELD_MAX = 256  # characters of an event's type and id (api/ingest.py checks it too)


class EventCreate(_In):
    # The patterns are checked by webhooks.intake (routing.check_event_type,
    # validation.check_event_id), whose messages the API answers; here they document it.
    event_type: str = Field(max_length=EVENT_FIELD_MAX, json_schema_extra={"pattern": EVENT_TYPE_RE.pattern})
    payload: Any = Field(...)
    id: str | None = Field(
        None, max_length=EVENT_FIELD_MAX, json_schema_extra={"pattern": EVENT_ID_RE.pattern}
    )


class EventBatch(_In):
    events: list[EventCreate] = Field(min_length=1)


class ReplayRequest(_In):
    endpoint_id: str | None = None
    event_type: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    status_code: str | None = Field(None, max_length=8)  # 500, a class (5xx), or none
    ids: list[str] | None = Field(None, max_length=10000)
    dry_run: bool = False
    rate_per_s: float | None = Field(None, ge=0.001, le=100000)


class EventTypeCreate(_In):
    name: str = Field(max_length=256)
    description: str | None = Field(None, max_length=1024)
    # A JSON Schema (draft 2020-12) the events' payloads must match; null for none.
    json_schema: Any = Field(None, alias="schema")
    archived: bool = False
    tenant_id: str | None = None  # admin only: the tenant to act for


class EventTypeUpdate(_In):
    description: str | None = Field(None, max_length=1024)
    json_schema: Any = Field(None, alias="schema")  # null removes the schema
    archived: bool | None = None


class TenantUpdate(_In):
    # On: only event types in the tenant's catalogue (and not archived) are accepted at ingest.
    strict_event_types: bool | None = None


class RecoverRequest(_In):
    since: datetime
    until: datetime | None = None
